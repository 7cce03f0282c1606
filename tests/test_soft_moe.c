/* Suite soft_moe (placeholder until the module is implemented). */
#include "test_util.h"

void suite_soft_moe(void) {}
