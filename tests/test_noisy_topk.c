/* Suite noisy_topk (placeholder until the module is implemented). */
#include "test_util.h"

void suite_noisy_topk(void) {}
