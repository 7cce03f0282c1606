/* Golden handler of the soft_moe family (placeholder until implemented). */
#include "golden.h"

moe_status golden_run_soft_moe(gcase *c, const char *family) {
    return moe_fail(MOE_EUNSUPPORTED, "%s: family '%s' is not implemented", c->where, family);
}
