/* Suite dense_softmax (placeholder until the module is implemented). */
#include "test_util.h"

void suite_dense_softmax(void) {}
