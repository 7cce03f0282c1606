/* HDF5 helpers (see h5io.h). */
#include "io/h5io.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void moe_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* The first (innermost) message of the HDF5 error stack, one line. */
static herr_t walk_first(unsigned n, const H5E_error2_t *e, void *out) {
    char *buf = out;
    if (n != 0 || !e->desc) return 0;
    const char *msg = strstr(e->desc, "error message = '");
    const char *colon = strchr(e->desc, ':');
    if (msg && colon) {
        msg += strlen("error message = '");
        const char *end = strchr(msg, '\'');
        snprintf(buf, 160, "%.*s: %.*s", (int)(colon - e->desc), e->desc,
                 (int)(end ? end - msg : 80), msg);
    } else {
        snprintf(buf, 160, "%s", e->desc);
    }
    for (char *c = buf; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    return 0;
}

const char *moe_h5_reason(char buf[160]) {
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_first, buf);
    if (!buf[0]) snprintf(buf, 160, "HDF5 error");
    return buf;
}

/* ------------------------------------------------- atomic file images */

/* Writes all of img to fd (fsync'ed when sync); -1 with errno set. */
static int write_all(int fd, const char *img, size_t size, int sync) {
    for (size_t at = 0; at < size;) {
        ssize_t w = write(fd, img + at, size - at);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        if (w == 0) {
            errno = ENOSPC;
            return -1;
        }
        at += (size_t)w;
    }
    return sync && fsync(fd) != 0 ? -1 : 0;
}

/* fsync of the directory of path (best effort: the rename is done). */
static void sync_dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[1024];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

moe_status moe_h5_replace_file(const char *path, const void *img, size_t size, int sync) {
    const size_t len = strlen(path);
    char *tmp = malloc(len + 16);
    if (!tmp) return moe_fail(MOE_ENOMEM, "%s: out of memory", path);
    snprintf(tmp, len + 16, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        moe_status st = moe_fail(MOE_EIO, "%s: cannot create a temporary file in its directory (%s)",
                                 path, strerror(errno));
        free(tmp);
        return st;
    }
    (void)fchmod(fd, 0644);
    moe_status st = MOE_OK;
    if (write_all(fd, img, size, sync) != 0)
        st = moe_fail(MOE_EIO, "%s: writing %s failed (%s), previous file kept", path, tmp,
                      strerror(errno));
    if (close(fd) != 0 && st == MOE_OK)
        st = moe_fail(MOE_EIO, "%s: closing %s failed (%s), previous file kept", path, tmp,
                      strerror(errno));
    if (st == MOE_OK && rename(tmp, path) != 0)
        st = moe_fail(MOE_EIO, "%s: rename from %s failed (%s), previous file kept", path, tmp,
                      strerror(errno));
    if (st != MOE_OK) unlink(tmp);
    else if (sync) sync_dir_of(path);
    free(tmp);
    return st;
}

moe_status moe_h5_commit_image(hid_t f, const char *path, int sync) {
    char why[160] = "out of memory";
    ssize_t sz = H5Fflush(f, H5F_SCOPE_GLOBAL) >= 0 ? H5Fget_file_image(f, NULL, 0) : -1;
    void *img = sz > 0 ? malloc((size_t)sz) : NULL;
    if (img && H5Fget_file_image(f, img, (size_t)sz) != sz) {
        free(img);
        img = NULL;
    }
    if (!img) {
        if (sz <= 0) moe_h5_reason(why);
        return moe_fail(MOE_ENOMEM, "%s: cannot make the file image (%s), previous file kept",
                        path, why);
    }
    moe_status st = moe_h5_replace_file(path, img, (size_t)sz, sync);
    free(img);
    return st;
}

moe_status moe_h5_open_ro(const char *path, hid_t *out) {
    moe_h5_quiet();
    struct stat sb;
    if (stat(path, &sb) != 0)
        return moe_fail(MOE_EIO, "%s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return moe_fail(MOE_EIO, "%s: not a regular file", path);
    if (H5Fis_hdf5(path) <= 0)
        return moe_fail(MOE_EFORMAT, "%s: not an HDF5 file (empty, truncated or another format)", path);
    /* No file lock for readers: a run file being written (bin/moe train
     * holds it open) reads as of its last flush instead of failing. */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
#if H5_VERSION_GE(1, 10, 7)
    H5Pset_file_locking(fapl, 0, 1);
#endif
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0) {
        char why[160];
        return moe_fail(MOE_EFORMAT, "%s: corrupt or truncated HDF5 file (%s)", path, moe_h5_reason(why));
    }
    *out = f;
    return MOE_OK;
}

moe_status moe_h5_open_format(const char *path, const char *format, hid_t *out) {
    hid_t f;
    moe_status st = moe_h5_open_ro(path, &f);
    if (st != MOE_OK) return st;
    char fmt[64] = "";
    if (!moe_h5_has_attr(f, "format") ||
        moe_h5_attr_string(f, "format", fmt, sizeof fmt, path) != MOE_OK || strcmp(fmt, format)) {
        H5Fclose(f);
        return moe_fail(MOE_EUNSUPPORTED, "%s: not a %s file (format '%s')", path, format, fmt);
    }
    *out = f;
    return MOE_OK;
}

int moe_h5_has_attr(hid_t loc, const char *name) {
    return H5Aexists(loc, name) > 0;
}

int moe_h5_has(hid_t loc, const char *path) {
    /* check each prefix: H5Lexists fails on a missing intermediate group */
    char buf[256];
    size_t len = strlen(path);
    if (len >= sizeof buf) return 0;
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        int ok = H5Lexists(loc, buf, H5P_DEFAULT) > 0;
        buf[i] = c;
        if (!ok) return 0;
    }
    return 1;
}

static moe_status attr_open(hid_t loc, const char *name, hid_t *a,
                            const char *where) {
    if (!moe_h5_has_attr(loc, name))
        return moe_fail(MOE_EFORMAT, "%s: missing attribute '%s'", where, name);
    *a = H5Aopen(loc, name, H5P_DEFAULT);
    if (*a < 0)
        return moe_fail(MOE_EFORMAT, "%s: cannot open attribute '%s'", where, name);
    return MOE_OK;
}

moe_status moe_h5_attr_doubles(hid_t loc, const char *name, double *out,
                               int cap, int *count, const char *where) {
    hid_t a;
    moe_status st = attr_open(loc, name, &a, where);
    if (st != MOE_OK) return st;
    hid_t sp = H5Aget_space(a), ty = H5Aget_type(a);
    H5T_class_t cls = H5Tget_class(ty);
    hssize_t npts = H5Sget_simple_extent_npoints(sp);
    for (int i = 0; i < cap; i++) out[i] = NAN; /* nothing stale survives a short read */
    /* floats: IEEE binary32/64 only (another float layout goes through
     * HDF5's soft conversion, which a damaged type message can fool) */
    const int ieee = cls == H5T_FLOAT &&
                     (H5Tequal(ty, H5T_IEEE_F32LE) > 0 || H5Tequal(ty, H5T_IEEE_F32BE) > 0 ||
                      H5Tequal(ty, H5T_IEEE_F64LE) > 0 || H5Tequal(ty, H5T_IEEE_F64BE) > 0);
    if (cls == H5T_STRING)
        st = moe_fail(MOE_EFORMAT, "%s: attribute '%s' is a string, not a number", where, name);
    else if (cls != H5T_INTEGER && !ieee)
        st = moe_fail(MOE_EFORMAT, "%s: attribute '%s' is not numeric (allowed: integers, "
                      "IEEE float32/float64)", where, name);
    else if (npts < 0 || npts > cap)
        st = moe_fail(MOE_EFORMAT, "%s: attribute '%s' has %lld values (at most %d allowed)",
                      where, name, (long long)npts, cap);
    else if (H5Aread(a, H5T_NATIVE_DOUBLE, out) < 0)
        st = moe_fail(MOE_EFORMAT, "%s: cannot read attribute '%s'", where, name);
    else if (count)
        *count = (int)npts;
    H5Tclose(ty);
    H5Sclose(sp);
    H5Aclose(a);
    return st;
}

moe_status moe_h5_attr_double(hid_t loc, const char *name, double *out,
                              const char *where) {
    int n = 0;
    moe_status st = moe_h5_attr_doubles(loc, name, out, 1, &n, where);
    if (st == MOE_OK && n != 1)
        return moe_fail(MOE_EFORMAT, "%s: attribute '%s' is empty", where, name);
    return st;
}

moe_status moe_h5_attr_string(hid_t loc, const char *name, char *out,
                              size_t cap, const char *where) {
    hid_t a;
    moe_status st = attr_open(loc, name, &a, where);
    if (st != MOE_OK) return st;
    hid_t ty = H5Aget_type(a);
    if (H5Tget_class(ty) != H5T_STRING) {
        st = moe_fail(MOE_EFORMAT, "%s: attribute '%s' is not a string", where, name);
    } else if (H5Tis_variable_str(ty) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1), sp = H5Aget_space(a);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(ty)); /* h5py writes UTF-8; HDF5 does not convert csets */
        char *s = NULL;
        const int one = H5Sget_simple_extent_npoints(sp) == 1;
        H5Sclose(sp);
        if (!one) {
            st = moe_fail(MOE_EFORMAT, "%s: attribute '%s' is not one string", where, name);
        } else if (H5Aread(a, mt, &s) < 0 || !s) {
            st = moe_fail(MOE_EFORMAT, "%s: cannot read attribute '%s'", where, name);
        } else {
            snprintf(out, cap, "%s", s);
            H5free_memory(s);
        }
        H5Tclose(mt);
    } else {
        size_t sz = H5Tget_size(ty);
        if (sz + 1 > cap) {
            st = moe_fail(MOE_EFORMAT, "%s: attribute '%s' is longer than %zu bytes",
                          where, name, cap - 1);
        } else {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, sz + 1);
            H5Tset_strpad(mt, H5T_STR_NULLTERM);
            memset(out, 0, cap);
            if (H5Aread(a, mt, out) < 0)
                st = moe_fail(MOE_EFORMAT, "%s: cannot read attribute '%s'", where, name);
            H5Tclose(mt);
        }
    }
    H5Tclose(ty);
    H5Aclose(a);
    return st;
}

static void dims_str(char *buf, size_t cap, int rank, const int64_t *d) {
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < rank && at < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%lld", i ? ", " : "", (long long)d[i]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
}

/* Opens a dataset and checks class, rank and dims. */
static moe_status open_checked(hid_t loc, const char *path, int rank,
                               int64_t *want, H5T_class_t cls, hid_t *out,
                               size_t *count, const char *where) {
    if (!moe_h5_has(loc, path))
        return moe_fail(MOE_EFORMAT, "%s: missing dataset '%s'", where, path);
    hid_t ds = H5Dopen2(loc, path, H5P_DEFAULT);
    if (ds < 0) return moe_fail(MOE_EFORMAT, "%s: '%s' is not a dataset", where, path);
    hid_t sp = H5Dget_space(ds), ty = H5Dget_type(ds);
    int r = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[16];
    moe_status st = MOE_OK;
    H5T_class_t c = H5Tget_class(ty);
    if (c != cls && !(cls == H5T_FLOAT && c == H5T_INTEGER)) {
        st = moe_fail(MOE_EFORMAT, "%s: dataset '%s' has the wrong type (%s expected)",
                      where, path, cls == H5T_FLOAT ? "float" : "integer");
    } else if (r != rank || r > 16) {
        st = moe_fail(MOE_EFORMAT, "%s: dataset '%s' has rank %d, expected %d",
                      where, path, r, rank);
    } else {
        H5Sget_simple_extent_dims(sp, dims, NULL);
        size_t n = 1;
        int bad = 0;
        int64_t got[16];
        for (int i = 0; i < r; i++) {
            got[i] = (int64_t)dims[i];
            if (want[i] >= 0 && want[i] != got[i]) bad = 1;
            n *= (size_t)dims[i];
        }
        if (bad) {
            char a[128], b[128];
            dims_str(a, sizeof a, r, got);
            dims_str(b, sizeof b, r, want);
            st = moe_fail(MOE_EFORMAT, "%s: dataset '%s' has shape %s, expected %s",
                          where, path, a, b);
        } else {
            for (int i = 0; i < r; i++) want[i] = got[i];
            *count = n;
        }
    }
    H5Tclose(ty);
    H5Sclose(sp);
    if (st != MOE_OK) H5Dclose(ds);
    else *out = ds;
    return st;
}

/* Reads a whole dataset converted to the memory type mt (elements of sz
 * bytes) into a new malloc'd array, after the class/rank/shape checks. */
static moe_status read_as(hid_t loc, const char *path, int rank, int64_t *want,
                          H5T_class_t cls, hid_t mt, size_t sz, void **out,
                          const char *where) {
    hid_t ds;
    size_t n = 0;
    *out = NULL;
    moe_status st = open_checked(loc, path, rank, want, cls, &ds, &n, where);
    if (st != MOE_OK) return st;
    void *v = malloc((n ? n : 1) * sz);
    if (!v) st = moe_fail(MOE_ENOMEM, "%s: out of memory reading '%s'", where, path);
    else if (H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
        st = moe_fail(MOE_EFORMAT, "%s: cannot read dataset '%s'", where, path);
    H5Dclose(ds);
    if (st != MOE_OK) free(v);
    else *out = v;
    return st;
}

moe_status moe_h5_read_doubles(hid_t loc, const char *path, int rank,
                               int64_t *want, double **out,
                               const char *where) {
    return read_as(loc, path, rank, want, H5T_FLOAT, H5T_NATIVE_DOUBLE,
                   sizeof **out, (void **)out, where);
}

moe_status moe_h5_read_ints(hid_t loc, const char *path, int rank,
                            int64_t *want, int32_t **out, const char *where) {
    return read_as(loc, path, rank, want, H5T_INTEGER, H5T_NATIVE_INT32,
                   sizeof **out, (void **)out, where);
}
