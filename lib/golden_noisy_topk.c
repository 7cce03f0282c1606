/* Golden handler of the noisy_topk family (placeholder until implemented). */
#include "golden.h"

moe_status golden_run_noisy_topk(gcase *c, const char *family) {
    return moe_fail(MOE_EUNSUPPORTED, "%s: family '%s' is not implemented", c->where, family);
}
