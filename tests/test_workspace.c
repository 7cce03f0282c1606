/* Suite workspace: the workspace helper (lib/base/workspace.h): sizes,
 * growth on demand, the failure path, freeing. */
#include "test_util.h"

#include "base/workspace.h"

#include <stdint.h>
#include <string.h>

/* An owner of three buffers, as the layer, model and families hold them. */
typedef struct {
    MOE_WS_FIELD(float, a);
    MOE_WS_FIELD(int32_t, b);
    MOE_WS_FIELD(double, c);
} owner;

#define N_WS 3

/* The owner's table for T tokens and width d; c needs nc elements. */
static void table(owner *o, size_t T, size_t d, size_t nc, moe_workspace_entry *w) {
    const moe_workspace_entry t[] = {
        MOE_WS(o->a, T * d), /* (T, d) */
        MOE_WS(o->b, 0),     /* empty  */
        MOE_WS(o->c, nc),    /* (nc)   */
    };
    memcpy(w, t, sizeof t);
}

static void test_entries_grow_to_their_sizes(void) {
    owner o = {0};
    moe_workspace_entry w[N_WS];
    table(&o, 3, 2, 5, w);
    CU_ASSERT_EQUAL(w[0].size, sizeof(float));
    CU_ASSERT_EQUAL(w[2].size, sizeof(double));
    CU_ASSERT_STRING_EQUAL(w[0].name, "o->a");
    CU_ASSERT_EQUAL(moe_workspace_grow("test", 3, w, N_WS), MOE_OK);
    CU_ASSERT_EQUAL(o.a_cap, 6);
    CU_ASSERT_PTR_NOT_NULL(o.a);
    CU_ASSERT_PTR_NULL(o.b); /* size 0: never allocated */
    CU_ASSERT_EQUAL(o.b_cap, 0);
    CU_ASSERT_EQUAL(o.c_cap, 5);
    for (int i = 0; i < 6; i++) o.a[i] = (float)i; /* writable (ASan) */
    for (int i = 0; i < 5; i++) o.c[i] = i;
    CU_ASSERT_EQUAL(moe_workspace_bytes(w, N_WS), 6 * sizeof(float) + 5 * sizeof(double));
    moe_workspace_free(w, N_WS);
}

static void test_buffers_grow_on_demand_and_never_shrink(void) {
    owner o = {0};
    moe_workspace_entry w[N_WS];
    table(&o, 4, 4, 1, w);
    CU_ASSERT_EQUAL(moe_workspace_grow("test", 4, w, N_WS), MOE_OK);
    float *a = o.a;
    table(&o, 2, 4, 1, w); /* smaller: kept as it is */
    CU_ASSERT_EQUAL(moe_workspace_grow("test", 2, w, N_WS), MOE_OK);
    CU_ASSERT_PTR_EQUAL(o.a, a);
    CU_ASSERT_EQUAL(o.a_cap, 16);
    table(&o, 8, 4, 3, w); /* larger: grown */
    CU_ASSERT_EQUAL(moe_workspace_grow("test", 8, w, N_WS), MOE_OK);
    CU_ASSERT_EQUAL(o.a_cap, 32);
    CU_ASSERT_EQUAL(o.c_cap, 3);
    for (int i = 0; i < 32; i++) o.a[i] = 1.0f;
    moe_workspace_free(w, N_WS);
}

static void test_failure_names_the_workspace_the_tokens_and_the_buffer(void) {
    owner o = {0};
    moe_workspace_entry w[N_WS];
    table(&o, 7, 1, SIZE_MAX / 4, w); /* n * sizeof(double) overflows */
    CU_ASSERT_EQUAL(moe_workspace_grow("test_ws", 7, w, N_WS), MOE_ENOMEM);
    const char *msg = moe_errmsg();
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "test_ws: out of memory for 7 tokens"));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "o->c"));
    CU_ASSERT_EQUAL(o.a_cap, 7); /* the entries before it were grown */
    CU_ASSERT_EQUAL(o.c_cap, 0);
    CU_ASSERT_PTR_NULL(o.c);
    moe_workspace_free(w, N_WS); /* and are freed as usual */
    CU_ASSERT_PTR_NULL(o.a);
}

static void test_free_empties_every_buffer(void) {
    owner o = {0};
    moe_workspace_entry w[N_WS];
    table(&o, 2, 2, 2, w);
    CU_ASSERT_EQUAL(moe_workspace_grow("test", 2, w, N_WS), MOE_OK);
    table(&o, 0, 0, 0, w); /* the sizes are not read */
    moe_workspace_free(w, N_WS);
    CU_ASSERT(!o.a && !o.b && !o.c);
    CU_ASSERT(o.a_cap == 0 && o.b_cap == 0 && o.c_cap == 0);
    CU_ASSERT_EQUAL(moe_workspace_bytes(w, N_WS), 0);
    moe_workspace_free(w, N_WS); /* twice: nothing left to free */
    CU_ASSERT_EQUAL(moe_workspace_grow("test", 0, w, 0), MOE_OK); /* no entries */
}

void suite_workspace(void) {
    ADD_SUITE("workspace",
              {"entries_grow_to_their_sizes", test_entries_grow_to_their_sizes},
              {"buffers_grow_on_demand_and_never_shrink", test_buffers_grow_on_demand_and_never_shrink},
              {"failure_names_the_workspace_the_tokens_and_the_buffer", test_failure_names_the_workspace_the_tokens_and_the_buffer},
              {"free_empties_every_buffer", test_free_empties_every_buffer});
}
