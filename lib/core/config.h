/* The configuration helpers shared by every family (config.c); each
 * family's own defaults and checks are in lib/families/, put together by
 * lib/families/registry.c (moe_config_default, moe_config_validate). */
#ifndef MOE_CORE_CONFIG_H
#define MOE_CORE_CONFIG_H

#include "base/internal.h"

/* Families added after hash have no public constant (moe.h): the core
 * names here the few it must tell apart (params.c: which have a router),
 * and lib/families/registry.c checks each against its registry place. */
#define MOE_FAMILY_ID_TOPK_DROPLESS ((moe_family)10)

/* The shared defaults of a config of `family`: every field 0 except act
 * relu, policy random, threshold 0.2, capacity factors 1.25 / 2.0,
 * balance_coef 1e-2, priority token, dropless.renormalize true. */
moe_config moe_config_base(moe_family family);
/* Checks the range of every field that `family` (its name) uses, from
 * the range table (config_fields.h), then the rules between shared fields
 * (causal and priority, router noise and its eps, mult_bias and geglu):
 * MOE_EINVAL with a message naming the field, its value and the allowed
 * range. The family's own rules are in its descriptor's validate. */
moe_status moe_config_validate_shared(const moe_config *c, const char *family);
/* Looks s up in names[0..n) for *out; MOE_EINVAL naming `what` and
 * listing the allowed values otherwise. */
moe_status moe_name_parse(const char *what, const char *s,
                          const char *const *names, int n, int *out);

#endif
