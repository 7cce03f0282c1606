/* The range table of moe_config: one entry per field a user sets, with
 * its type, place, allowed range (or names) and the families using it.
 * One table read by moe_config_validate (config.c), the "moe.*" INI keys
 * (lib/train/train_config.c) and the golden handlers (lib/golden/). */
#ifndef MOE_CORE_CONFIG_FIELDS_H
#define MOE_CORE_CONFIG_FIELDS_H

#include "base/internal.h"

#include <stdbool.h>

typedef enum {
    MOE_FIELD_INT32,  /* int32_t: integers lo..hi                       */
    MOE_FIELD_FLOAT,  /* float: finite, lo..hi (lo_open / hi_open)      */
    MOE_FIELD_BOOL,   /* bool: nothing to check                         */
    MOE_FIELD_CHOICE  /* an enum (int-sized): index into choices        */
} moe_field_type;

/* One field of moe_config. */
typedef struct {
    const char *key;    /* INI key without "moe.", e.g. "capacity_factor" */
    const char *field;  /* the member of moe_config, named in messages,
                           e.g. "capacity_factor_train", "gshard.policy" */
    moe_field_type type;
    size_t offset;      /* offsetof(moe_config, member)                  */
    double lo, hi;      /* allowed range, bounds included unless open    */
    bool lo_open, hi_open; /* validation refuses the bound itself (the INI
                              key accepts it; validation refuses it later) */
    bool zero_unused;   /* 0 means "not used": the INI key accepts 0 too  */
    const char *const *choices; /* CHOICE: NULL-terminated names         */
    const char *families; /* NULL: every family; otherwise the names of
                             the families using it, space-separated: the
                             range is checked for those only            */
    const char *help;   /* one line for --keys; NULL: no INI key (set by
                           the model, e.g. d_model)                     */
} moe_config_field;

/* The names of the enum values, NULL-terminated (index = value). */
extern const char *const moe_act_names[];
extern const char *const moe_policy_names[];
extern const char *const moe_priority_names[];
extern const char *const moe_router_noise_names[];
extern const char *const moe_capacity_mode_names[];
extern const char *const moe_expert_kind_names[];
extern const char *const moe_precision_names[];
extern const char *const moe_router_init_names[];
extern const char *const moe_soft_variant_names[];
/* The families whose router is a matrix, space-separated: those
 * moe_config.router_init = zero applies to. */
const char *moe_config_router_matrix_families(void);

/* The table, in the order of the INI keys; *n entries. */
const moe_config_field *moe_config_fields(size_t *n);
/* The entry of INI key `key` (without "moe."); MOE_ASSERT that it exists
 * (a programmer error otherwise). */
const moe_config_field *moe_config_field_find(const char *key);
/* Whether family (its name) uses f: f->families is NULL or names it. */
bool moe_config_field_used(const moe_config_field *f, const char *family);
/* Checks c's value of f against f's range: MOE_EINVAL with a message
 * naming the field, the value and the allowed range ("d_model = 0:
 * allowed 1..1048576", "gshard.threshold = 0: allowed (0, 1]",
 * "act: unknown value 7 (allowed relu|gelu|geglu)"). */
moe_status moe_config_field_check(const moe_config_field *f, const moe_config *c);

#endif
