/* moe_check_file: the table of family handlers and the driver over a
 * file's cases; the machinery of one case is in golden_case.c (golden.h). */
#include "golden/golden.h"

#include <string.h>

static const gfamily families[] = {
    {"top2_gshard", golden_run_layer},
    {"topn_stmoe", golden_run_layer},
    {"switch_top1", golden_run_layer},
    {"expert_choice", golden_run_layer},
    {"noisy_topk", golden_run_noisy_topk},
    {"soft_moe", golden_run_soft_moe},
    {"dense_softmax", golden_run_dense_softmax},
    {"hierarchical", golden_run_hierarchical},
    {"topk_dropless", golden_run_topk_dropless},
};

/* ------------------------------------------------------------ the driver */

static moe_status run_case(hid_t file, const char *path, const char *name,
                           moe_check_result *res) {
    gcase c;
    memset(&c, 0, sizeof c);
    memset(res, 0, sizeof *res);
    snprintf(res->name, sizeof res->name, "%s", name);
    snprintf(c.where, sizeof c.where, "%s: case %s", path, name);
    c.res = res;
    c.g = H5Gopen2(file, name, H5P_DEFAULT);
    moe_status st;
    if (c.g < 0) {
        st = moe_fail(MOE_EFORMAT, "%s: not a group", c.where);
    } else if ((st = gcase_string(&c, "family", res->family, sizeof res->family)) == MOE_OK) {
        const gfamily *f = NULL;
        for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
            if (strcmp(families[i].family, res->family) == 0) f = &families[i];
        if (!f)
            st = moe_fail(MOE_EUNSUPPORTED, "%s: family '%s' is not implemented",
                          c.where, res->family);
        else
            st = f->run(&c, res->family);
    }
    for (int i = 0; i < c.n_allocs; i++) free(c.allocs[i]);
    if (c.g >= 0) H5Gclose(c.g);
    if (st == MOE_OK && (res->message[0] || !(res->worst_ratio <= 1.0)))
        st = MOE_EMISMATCH;
    if (st != MOE_OK && st != MOE_EMISMATCH)
        snprintf(res->message, sizeof res->message, "%s", moe_errmsg());
    res->status = st;
    return st;
}

typedef struct {
    char (*names)[64];
    int n, cap;
} name_list;

/* Every object at the root is a case: one that is not a group (a
 * dataset in place of a case) fails as such in run_case, never skipped. */
static herr_t list_groups(hid_t g, const char *name, const H5L_info_t *info,
                          void *data) {
    (void)g, (void)info;
    name_list *l = data;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        void *p = realloc(l->names, (size_t)cap * sizeof *l->names);
        if (!p) return -1;
        l->names = p;
        l->cap = cap;
    }
    snprintf(l->names[l->n++], 64, "%s", name);
    return 0;
}

moe_status moe_check_file(const char *path, const char *only,
                          moe_check_cb cb, void *user, int *n_cases) {
    hid_t f;
    *n_cases = 0;
    moe_status st = moe_h5_open_ro(path, &f);
    if (st != MOE_OK) return st;
    char fmt[64] = "";
    st = moe_h5_attr_string(f, "format", fmt, sizeof fmt, path);
    if (st == MOE_OK && strcmp(fmt, "moe-golden/1") != 0)
        st = moe_fail(MOE_EFORMAT, "%s: format '%s' is not moe-golden/1", path, fmt);
    if (st != MOE_OK) {
        if (!moe_h5_has_attr(f, "format"))
            moe_fail(MOE_EFORMAT, "%s: no 'format' attribute (not a moe-golden/1 file)", path);
        H5Fclose(f);
        return st;
    }
    name_list l = {0};
    hsize_t idx = 0;
    if (H5Literate(f, H5_INDEX_NAME, H5_ITER_INC, &idx, list_groups, &l) < 0) {
        free(l.names);
        H5Fclose(f);
        return moe_fail(MOE_EFORMAT, "%s: cannot list the cases", path);
    }
    moe_status worst = MOE_OK;
    char first_err[512] = "";
    for (int i = 0; i < l.n; i++) {
        if (only && strcmp(only, l.names[i]) != 0) continue;
        moe_check_result r;
        moe_status s = run_case(f, path, l.names[i], &r);
        (*n_cases)++;
        if (cb) cb(path, &r, user);
        if (s != MOE_OK && (worst == MOE_OK || worst == MOE_EMISMATCH)) {
            if (worst == MOE_OK || s != MOE_EMISMATCH) {
                worst = s;
                if (s == MOE_EMISMATCH)
                    snprintf(first_err, sizeof first_err, "%s: case %s: %s", path,
                             r.name, r.message);
                else
                    snprintf(first_err, sizeof first_err, "%s", r.message);
            }
        }
    }
    free(l.names);
    H5Fclose(f);
    if (*n_cases == 0) {
        if (only) return moe_fail(MOE_EINVAL, "%s: no case named '%s'", path, only);
        return moe_fail(MOE_EFORMAT, "%s: no cases", path);
    }
    if (worst != MOE_OK) moe_fail(worst, "%s", first_err);
    return worst;
}
