/* Suite hierarchical (placeholder until the module is implemented). */
#include "test_util.h"

void suite_hierarchical(void) {}
