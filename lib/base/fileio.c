/* Whole-file reads and writes, and folders (internal.h). */
#include "base/internal.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

moe_status moe_read_file(const char *path, char **buf, size_t *len) {
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return moe_fail(MOE_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        n += fread(b + n, 1, cap - 1 - n, f);
        if (n < cap - 1) break;
        char *nb = realloc(b, cap *= 2);
        if (!nb) free(b);
        b = nb;
    }
    int err = ferror(f);
    int e = errno;
    fclose(f);
    if (!b) return moe_fail(MOE_ENOMEM, "%s: out of memory reading it", path);
    if (err) {
        free(b);
        return moe_fail(MOE_EIO, "%s: read error: %s", path, strerror(e));
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return MOE_OK;
}

moe_status moe_write_file(const char *path, const char *text, size_t len) {
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return moe_fail(MOE_EINVAL, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return moe_fail(MOE_EIO, "%s: cannot write: %s", tmp, strerror(errno));
    /* the OS reason of the first failing step (disk full, file size
     * limit, a folder removed meanwhile) */
    int err = 0;
    const char *what = "writing";
    if (fwrite(text, 1, len, f) != len || fflush(f) != 0) err = errno ? errno : EIO;
    if (fclose(f) != 0 && !err) err = errno ? errno : EIO;
    if (!err && rename(tmp, path) != 0) err = errno, what = "renaming";
    if (err) {
        unlink(tmp);
        return moe_fail(MOE_EIO, "%s: cannot write (%s %s: %s)", path, what, tmp, strerror(err));
    }
    return MOE_OK;
}

moe_status moe_make_dirs(const char *dir) {
    char p[1024];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
        return moe_fail(MOE_EINVAL, "%s: path too long", dir);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s) continue;
        const char c = *s;
        *s = '\0';
        struct stat sb;
        if (mkdir(p, 0777) != 0 && !(errno == EEXIST && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)))
            return moe_fail(MOE_EIO, "%s: cannot create folder: %s", p, strerror(errno));
        *s = c;
        if (!c) return MOE_OK;
    }
}

moe_status moe_writable_check(const char *path, const char *what) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return moe_fail(MOE_EINVAL, "%s: is a directory (%s is a file to write)", path, what);
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int err = 0;
    if (stat(dir, &sb) != 0) err = errno;
    else if (!S_ISDIR(sb.st_mode)) err = ENOTDIR;
    else if (access(dir, W_OK | X_OK) != 0) err = errno;
    if (err)
        return moe_fail(MOE_EIO, "%s: cannot write %s in %s: %s", path, what, dir,
                        strerror(err));
    return MOE_OK;
}
