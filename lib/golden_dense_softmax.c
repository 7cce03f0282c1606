/* Golden handler of the dense_softmax family (placeholder until implemented). */
#include "golden.h"

moe_status golden_run_dense_softmax(gcase *c, const char *family) {
    return moe_fail(MOE_EUNSUPPORTED, "%s: family '%s' is not implemented", c->where, family);
}
