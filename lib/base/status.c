/* Status codes and the per-thread error message. */
#include "base/internal.h"

#include <stdarg.h>
#include <string.h>

static _Thread_local char errbuf[512];

moe_status moe_fail(moe_status s, const char *fmt, ...) {
    char tmp[sizeof errbuf]; /* the arguments may point into errbuf */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(errbuf, tmp, sizeof errbuf);
    return s;
}

void moe_clear_error(void) { errbuf[0] = '\0'; }

const char *moe_errmsg(void) { return errbuf; }

const char *moe_status_str(moe_status s) {
    switch (s) {
    case MOE_OK: return "ok";
    case MOE_EINVAL: return "invalid argument";
    case MOE_ENOMEM: return "out of memory";
    case MOE_EIO: return "i/o error";
    case MOE_EFORMAT: return "bad file format";
    case MOE_EUNSUPPORTED: return "not supported";
    case MOE_EMISMATCH: return "mismatch";
    }
    return "unknown status";
}

uint64_t moe_fnv1a64(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}
