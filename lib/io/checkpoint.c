/* moe-checkpoint/1: named flat buffers in HDF5, written atomically (see
 * checkpoint.h). */
#include "io/checkpoint.h"

#include "io/h5io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME_MAX_LEN 200

const char *moe_ckpt_dtype_name(moe_ckpt_dtype t) {
    switch (t) {
    case MOE_CKPT_F32: return "float32";
    case MOE_CKPT_I64: return "int64";
    case MOE_CKPT_U64: return "uint64";
    default: return "unknown";
    }
}

static hid_t file_type(moe_ckpt_dtype t) {
    return t == MOE_CKPT_F32 ? H5T_IEEE_F32LE
         : t == MOE_CKPT_I64 ? H5T_STD_I64LE : H5T_STD_U64LE;
}

static hid_t mem_type(moe_ckpt_dtype t) {
    return t == MOE_CKPT_F32 ? H5T_NATIVE_FLOAT
         : t == MOE_CKPT_I64 ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64;
}

/* ------------------------------------------------------------ checksums */


static size_t dtype_size(moe_ckpt_dtype t) { return t == MOE_CKPT_F32 ? 4 : 8; }

/* The checksum of an entry's values (little-endian bytes, as stored). */
static uint64_t entry_sum(const moe_ckpt_entry *e) {
    return moe_fnv1a64(MOE_FNV1A64_INIT, e->data, e->len * dtype_size(e->dtype));
}

/* The checksum of the header: the step (8 bytes little-endian), then the
 * configuration text with its NUL. */
static uint64_t header_sum(int64_t step, const char *config) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)step >> (8 * i));
    const char *t = config ? config : "";
    return moe_fnv1a64(moe_fnv1a64(MOE_FNV1A64_INIT, b, 8), t, strlen(t) + 1);
}

/* Reads the uint64 attribute name of obj into *v; 0 if absent or not a
 * 64-bit unsigned integer. */
static int read_sum(hid_t obj, const char *name, uint64_t *v) {
    if (H5Aexists(obj, name) <= 0) return 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT), ty = a >= 0 ? H5Aget_type(a) : -1;
    hid_t sp = a >= 0 ? H5Aget_space(a) : -1;
    int ok = ty >= 0 && H5Tequal(ty, H5T_STD_U64LE) > 0 && H5Sget_simple_extent_npoints(sp) == 1 &&
             H5Aread(a, H5T_NATIVE_UINT64, v) >= 0;
    if (sp >= 0) H5Sclose(sp);
    if (ty >= 0) H5Tclose(ty);
    if (a >= 0) H5Aclose(a);
    return ok;
}

static herr_t write_sum(hid_t obj, const char *name, uint64_t v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a >= 0 ? H5Awrite(a, H5T_NATIVE_UINT64, &v) : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return e;
}

/* ------------------------------------------------------ HDF5 messages */

/* The innermost HDF5 error description of the current error stack, on
 * one line: "truncated file: eof = ...", or for a failed system call its
 * head and errno text, "file write failed: File too large". */
/* ----------------------------------------------------------- opening */

/* Opens path read-only and checks the format attribute. */
static moe_status open_ckpt(const char *path, hid_t *out) {
    hid_t f;
    moe_status st0 = moe_h5_open_ro(path, &f);
    if (st0 != MOE_OK) return st0;
    char fmt[64];
    moe_status st = moe_h5_attr_string(f, "format", fmt, sizeof fmt, path);
    if (st == MOE_OK && strcmp(fmt, MOE_CKPT_FORMAT) != 0)
        st = moe_fail(MOE_EFORMAT, "%s: format is '%s', not a " MOE_CKPT_FORMAT " file", path, fmt);
    else if (st != MOE_OK)
        st = moe_fail(MOE_EFORMAT, "%s: not a " MOE_CKPT_FORMAT " file (no readable 'format' attribute)", path);
    if (st != MOE_OK) {
        H5Fclose(f);
        return st;
    }
    *out = f;
    return MOE_OK;
}

/* Reads the step and (if config) the configuration text. */
static moe_status read_header(hid_t f, const char *path, int64_t *step,
                              char **config) {
    hid_t a = H5Aexists(f, "step") > 0 ? H5Aopen(f, "step", H5P_DEFAULT) : -1;
    if (a < 0) return moe_fail(MOE_EFORMAT, "%s: missing attribute 'step'", path);
    hid_t ty = H5Aget_type(a);
    int64_t s = 0;
    int ok = H5Tget_class(ty) == H5T_INTEGER &&
             H5Aread(a, H5T_NATIVE_INT64, &s) >= 0;
    H5Tclose(ty);
    H5Aclose(a);
    if (!ok) return moe_fail(MOE_EFORMAT, "%s: attribute 'step' is not an integer", path);
    a = H5Aexists(f, "config") > 0 ? H5Aopen(f, "config", H5P_DEFAULT) : -1;
    if (a < 0) return moe_fail(MOE_EFORMAT, "%s: missing attribute 'config'", path);
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    char *vl = NULL;
    ty = H5Aget_type(a);
    H5Tset_cset(mt, H5Tget_cset(ty)); /* HDF5 does not convert csets */
    ok = H5Tget_class(ty) == H5T_STRING && H5Tis_variable_str(ty) > 0 &&
         H5Aread(a, mt, &vl) >= 0;
    H5Tclose(ty);
    H5Tclose(mt);
    H5Aclose(a);
    if (!ok) return moe_fail(MOE_EFORMAT, "%s: attribute 'config' is not a string", path);
    char *copy = strdup(vl ? vl : "");
    if (vl) H5free_memory(vl);
    if (!copy) return moe_fail(MOE_ENOMEM, "%s: out of memory reading 'config'", path);
    uint64_t want = 0;
    if (!read_sum(f, "checksum", &want)) {
        free(copy);
        return moe_fail(MOE_EFORMAT, "%s: no header checksum (attribute 'checksum', uint64): "
                        "not written by this version, or damaged", path);
    }
    if (want != header_sum(s, copy)) {
        free(copy);
        return moe_fail(MOE_EFORMAT, "%s: the header (step %lld, config) does not match its "
                        "checksum: the file was changed or is corrupt", path, (long long)s);
    }
    if (config) *config = copy;
    else free(copy);
    if (step) *step = s;
    return MOE_OK;
}

moe_status moe_ckpt_info(const char *path, int64_t *step, char **config) {
    if (config) *config = NULL;
    hid_t f;
    moe_status st = open_ckpt(path, &f);
    if (st != MOE_OK) return st;
    st = read_header(f, path, step, config);
    H5Fclose(f);
    return st;
}

/* ----------------------------------------------------------- reading */

/* Whether a file datatype is exactly dtype t. */
static int dtype_matches(hid_t ty, moe_ckpt_dtype t) {
    return H5Tequal(ty, file_type(t)) > 0;
}

static const char *dtype_of(hid_t ty) {
    for (int t = 0; t < MOE_CKPT_DTYPE_COUNT; t++)
        if (dtype_matches(ty, (moe_ckpt_dtype)t)) return moe_ckpt_dtype_name((moe_ckpt_dtype)t);
    return H5Tget_class(ty) == H5T_FLOAT ? "another float type"
         : H5Tget_class(ty) == H5T_INTEGER ? "another integer type" : "not numeric";
}

/* Opens entry e and checks its dtype and length. */
static moe_status open_entry(hid_t f, const char *path, const moe_ckpt_entry *e,
                             hid_t *out) {
    if (!moe_h5_has(f, e->name))
        return moe_fail(MOE_EFORMAT, "%s: missing entry '%s'", path, e->name);
    hid_t ds = H5Dopen2(f, e->name, H5P_DEFAULT);
    if (ds < 0) return moe_fail(MOE_EFORMAT, "%s: entry '%s' is not a dataset", path, e->name);
    hid_t sp = H5Dget_space(ds), ty = H5Dget_type(ds);
    hsize_t dim = 0;
    moe_status st = MOE_OK;
    if (!dtype_matches(ty, e->dtype))
        st = moe_fail(MOE_EFORMAT, "%s: entry '%s' is %s, expected %s", path, e->name,
                      dtype_of(ty), moe_ckpt_dtype_name(e->dtype));
    else if (H5Sget_simple_extent_ndims(sp) != 1)
        st = moe_fail(MOE_EFORMAT, "%s: entry '%s' is not 1-D", path, e->name);
    else if (H5Sget_simple_extent_dims(sp, &dim, NULL) < 0 || dim != (hsize_t)e->len)
        st = moe_fail(MOE_EFORMAT, "%s: entry '%s' has %llu values, expected %zu (a checkpoint of another model?)",
                      path, e->name, (unsigned long long)dim, e->len);
    H5Tclose(ty);
    H5Sclose(sp);
    if (st != MOE_OK) H5Dclose(ds);
    else *out = ds;
    return st;
}

/* Reads entry e from ds: all of it, or part q into the same places. */
static herr_t read_part(hid_t ds, const moe_ckpt_entry *e, const moe_ckpt_part *q) {
    if (!q || !q->n_ranges)
        return H5Dread(ds, mem_type(e->dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, e->data);
    const hsize_t len = e->len;
    hid_t sp = H5Screate_simple(1, &len, NULL);
    herr_t r = sp < 0 ? -1 : H5Sselect_none(sp);
    for (int32_t k = 0; r >= 0 && k < q->n_ranges; k++) {
        const size_t lo = q->ranges[2 * k], hi = q->ranges[2 * k + 1];
        MOE_ASSERT(lo <= hi && hi <= e->len && (k == 0 || q->ranges[2 * k - 1] <= lo));
        const hsize_t start = lo, count = hi - lo;
        if (count) r = H5Sselect_hyperslab(sp, H5S_SELECT_OR, &start, NULL, &count, NULL);
    }
    if (r >= 0) r = H5Dread(ds, mem_type(e->dtype), sp, sp, H5P_DEFAULT, e->data);
    if (sp >= 0) H5Sclose(sp);
    return r;
}

/* Checks every entry, then reads them all. */
static moe_status read_entries(hid_t f, const char *path, const moe_ckpt_entry *es,
                               const moe_ckpt_part *parts, int32_t n) {
    for (int32_t i = 0; i < n; i++) {
        hid_t ds;
        moe_status st = open_entry(f, path, &es[i], &ds);
        if (st != MOE_OK) return st;
        H5Dclose(ds);
    }
    for (int32_t i = 0; i < n; i++) {
        hid_t ds;
        moe_status st = open_entry(f, path, &es[i], &ds);
        if (st != MOE_OK) return st;
        herr_t r = es[i].len ? read_part(ds, &es[i], parts ? &parts[i] : NULL) : 0;
        uint64_t want = 0;
        const int has_sum = read_sum(ds, "fnv1a64", &want);
        H5Dclose(ds);
        if (r < 0) {
            char why[160];
            return moe_fail(MOE_EFORMAT, "%s: cannot read entry '%s', corrupt or truncated file (%s)",
                            path, es[i].name, moe_h5_reason(why));
        }
        if (!has_sum)
            return moe_fail(MOE_EFORMAT, "%s: entry '%s' has no checksum (attribute 'fnv1a64', "
                            "uint64)", path, es[i].name);
        /* a part (expert parallelism) leaves the rest of data unread */
        const int whole = !parts || !parts[i].n_ranges;
        if (whole && entry_sum(&es[i]) != want)
            return moe_fail(MOE_EFORMAT, "%s: entry '%s' does not match its checksum (stored "
                            "%016llx, computed %016llx): the file was changed or is corrupt",
                            path, es[i].name, (unsigned long long)want,
                            (unsigned long long)entry_sum(&es[i]));
    }
    return MOE_OK;
}

moe_status moe_ckpt_load(const char *path, int64_t *step, char **config,
                         const moe_ckpt_entry *entries, int32_t n) {
    return moe_ckpt_load_parts(path, step, config, entries, NULL, n);
}

moe_status moe_ckpt_load_parts(const char *path, int64_t *step, char **config,
                               const moe_ckpt_entry *entries, const moe_ckpt_part *parts,
                               int32_t n) {
    MOE_ASSERT(path && n >= 0 && (n == 0 || entries));
    for (int32_t i = 0; i < n; i++)
        MOE_ASSERT(entries[i].name && (entries[i].data || entries[i].len == 0) &&
                   (unsigned)entries[i].dtype < MOE_CKPT_DTYPE_COUNT);
    if (config) *config = NULL;
    hid_t f;
    moe_status st = open_ckpt(path, &f);
    if (st != MOE_OK) return st;
    char *text = NULL;
    int64_t s = 0;
    st = read_header(f, path, &s, config ? &text : NULL);
    if (st == MOE_OK) st = read_entries(f, path, entries, parts, n);
    H5Fclose(f);
    if (st != MOE_OK) {
        free(text);
        return st;
    }
    if (step) *step = s;
    if (config) *config = text;
    return MOE_OK;
}

/* ----------------------------------------------------------- writing */

static int name_char_ok(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

static int name_ok(const char *s) {
    size_t len = strlen(s);
    if (len == 0 || len > NAME_MAX_LEN || s[0] == '/' || s[len - 1] == '/')
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '/' ? s[i + 1] == '/' : !name_char_ok(s[i])) return 0;
        if (s[i] == '.' && (i == 0 || s[i - 1] == '/')) return 0; /* no "." / ".." parts */
    }
    return 1;
}

/* Whether entry name g is a group in name s ("a" of "a/b"). */
static int is_group_of(const char *g, const char *s) {
    size_t n = strlen(g);
    return strncmp(g, s, n) == 0 && s[n] == '/';
}

static moe_status check_entries(const char *path, const moe_ckpt_entry *es,
                                int32_t n) {
    for (int32_t i = 0; i < n; i++) {
        MOE_ASSERT(es[i].name && (es[i].data || es[i].len == 0) &&
                   (unsigned)es[i].dtype < MOE_CKPT_DTYPE_COUNT);
        if (!name_ok(es[i].name))
            return moe_fail(MOE_EINVAL, "%s: bad entry name '%s' (allowed: [A-Za-z0-9_.-] parts joined by '/')",
                            path, es[i].name);
        for (int32_t j = 0; j < i; j++) {
            if (strcmp(es[i].name, es[j].name) == 0)
                return moe_fail(MOE_EINVAL, "%s: entry '%s' given twice", path, es[i].name);
            const char *in = is_group_of(es[i].name, es[j].name) ? es[i].name
                           : is_group_of(es[j].name, es[i].name) ? es[j].name : NULL;
            if (in)
                return moe_fail(MOE_EINVAL, "%s: entry '%s' is also the group of entry '%s'", path,
                                in, in == es[i].name ? es[j].name : es[i].name);
        }
    }
    return MOE_OK;
}

/* MOE_OK if path is absent or a moe-checkpoint/1 file we may replace. */
static moe_status check_overwrite(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT) return MOE_OK;
        return moe_fail(MOE_EIO, "%s: %s", path, strerror(errno));
    }
    hid_t f;
    if (!S_ISREG(sb.st_mode) || open_ckpt(path, &f) != MOE_OK)
        return moe_fail(MOE_EINVAL, "%s: exists and is not a " MOE_CKPT_FORMAT " file; refusing to overwrite it",
                        path);
    H5Fclose(f);
    return MOE_OK;
}

static moe_status write_attrs(hid_t f, int64_t step, const char *config,
                              char why[160]) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t ft = H5Tcopy(H5T_C_S1);
    H5Tset_size(ft, strlen(MOE_CKPT_FORMAT));
    hid_t vt = H5Tcopy(H5T_C_S1);
    H5Tset_size(vt, H5T_VARIABLE);
    H5Tset_cset(vt, H5T_CSET_UTF8);
    hid_t a1 = H5Acreate2(f, "format", ft, sp, H5P_DEFAULT, H5P_DEFAULT);
    hid_t a2 = H5Acreate2(f, "step", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    hid_t a3 = H5Acreate2(f, "config", vt, sp, H5P_DEFAULT, H5P_DEFAULT);
    const char *text = config ? config : "";
    int ok = a1 >= 0 && a2 >= 0 && a3 >= 0 &&
             H5Awrite(a1, ft, MOE_CKPT_FORMAT) >= 0 &&
             H5Awrite(a2, H5T_NATIVE_INT64, &step) >= 0 &&
             H5Awrite(a3, vt, &text) >= 0 &&
             write_sum(f, "checksum", header_sum(step, text)) >= 0;
    if (!ok) moe_h5_reason(why);
    if (a1 >= 0) H5Aclose(a1);
    if (a2 >= 0) H5Aclose(a2);
    if (a3 >= 0) H5Aclose(a3);
    H5Tclose(vt);
    H5Tclose(ft);
    H5Sclose(sp);
    return ok ? MOE_OK : MOE_EIO;
}

/* On failure, why gets the HDF5 reason (before the closes clear it). */
static moe_status write_entry(hid_t f, const moe_ckpt_entry *e, char why[160]) {
    hsize_t dim = (hsize_t)e->len;
    hid_t sp = H5Screate_simple(1, &dim, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = H5Dcreate2(f, e->name, file_type(e->dtype), sp, lcpl,
                          H5P_DEFAULT, H5P_DEFAULT);
    int ok = ds >= 0 && (e->len == 0 ||
                         H5Dwrite(ds, mem_type(e->dtype), H5S_ALL, H5S_ALL,
                                  H5P_DEFAULT, e->data) >= 0) &&
             write_sum(ds, "fnv1a64", entry_sum(e)) >= 0;
    if (!ok) moe_h5_reason(why);
    if (ds >= 0) ok = H5Dclose(ds) >= 0 && ok;
    H5Pclose(lcpl);
    H5Sclose(sp);
    return ok ? MOE_OK : MOE_EIO;
}

/* Builds the whole file in memory (HDF5 core driver, no backing store)
 * and returns its image (malloc'd, *size bytes). HDF5 never writes to
 * disk: a failed write of a real file can leave HDF5 with a file id it
 * can neither flush nor close (and crashes at exit), so every disk write
 * is ours, in write_image. Costs a second copy of the file in memory. */
static moe_status build_image(const char *path, int64_t step,
                              const char *config, const moe_ckpt_entry *es,
                              int32_t n, void **image, size_t *size) {
    char why[160] = "";
    size_t bytes = 1 << 20;
    for (int32_t i = 0; i < n; i++) bytes += es[i].len * (es[i].dtype == MOE_CKPT_F32 ? 4 : 8);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_core(fapl, bytes, 0);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0)
        return moe_fail(MOE_ENOMEM, "%s: cannot create the file in memory (%s)", path, moe_h5_reason(why));
    moe_status st = write_attrs(f, step, config, why);
    const char *what = "the header";
    for (int32_t i = 0; i < n && st == MOE_OK; i++) {
        st = write_entry(f, &es[i], why);
        what = es[i].name;
    }
    ssize_t sz = st == MOE_OK && H5Fflush(f, H5F_SCOPE_GLOBAL) >= 0
                     ? H5Fget_file_image(f, NULL, 0) : -1;
    void *img = sz > 0 ? malloc((size_t)sz) : NULL;
    if (img && H5Fget_file_image(f, img, (size_t)sz) != sz) {
        free(img);
        img = NULL;
    }
    if (!img && st == MOE_OK) what = "the file image";
    H5Fclose(f);
    if (!img)
        return moe_fail(MOE_ENOMEM, "%s: building %s in memory failed, previous file kept (%s)",
                        path, what, why[0] ? why : "out of memory");
    *image = img;
    *size = (size_t)sz;
    return MOE_OK;
}

moe_status moe_ckpt_save(const char *path, int64_t step, const char *config,
                         const moe_ckpt_entry *entries, int32_t n) {
    MOE_ASSERT(path && n >= 0 && (n == 0 || entries));
    moe_h5_quiet();
    moe_status st = check_entries(path, entries, n);
    if (st == MOE_OK) st = check_overwrite(path);
    if (st != MOE_OK) return st;
    void *img = NULL;
    size_t size = 0;
    st = build_image(path, step, config, entries, n, &img, &size);
    if (st != MOE_OK) return st;
    st = moe_h5_replace_file(path, img, size, 1);
    free(img);
    return st;
}
