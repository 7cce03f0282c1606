/* moe-run/1 writer (runlog.h). */
#include "io/runlog.h"

#include "io/h5io.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#ifndef MOE_GIT_REV
#define MOE_GIT_REV "unknown"
#endif
#ifndef MOE_CODE_REV
#define MOE_CODE_REV "unknown"
#endif

char *openblas_get_config(void); /* OpenBLAS; no header of ours declares it */

#define CHUNK_ROWS 256
#define MAX_SERIES 1024
#define MAX_KEEP 8

typedef struct {
    hid_t ds;
    moe_rl_type type;
    int rank;            /* 1 .. 3 */
    hsize_t dims[3];     /* dims[0]: rows in the file */
    size_t row_bytes;
    unsigned char *buf;  /* buffered rows */
    int64_t nbuf, cap;
} series;

struct moe_runlog {
    char path[512];
    hid_t f;
    int64_t resume_step; /* -1: a new file */
    double time0;
    int n_series;
    series s[MAX_SERIES];
    int n_keep;
    char keep_group[MAX_KEEP][32];
    int64_t keep_rows[MAX_KEEP];
    int dirty;  /* changed since the last image written */
    int broken; /* an HDF5 call failed: the image is never written again */
};

static moe_status h5_fail(moe_runlog *R, const char *what) {
    char why[160];
    R->broken = 1;
    return moe_fail(MOE_EIO, "%s: %s: %s", R->path, what, moe_h5_reason(why));
}

static hid_t mem_type(moe_rl_type t) {
    switch (t) {
    case MOE_RL_I64: return H5T_NATIVE_INT64;
    case MOE_RL_I32: return H5T_NATIVE_INT32;
    case MOE_RL_F64: return H5T_NATIVE_DOUBLE;
    case MOE_RL_F32: return H5T_NATIVE_FLOAT;
    default: return H5T_NATIVE_UINT8;
    }
}

static hid_t file_type(moe_rl_type t) {
    switch (t) {
    case MOE_RL_I64: return H5T_STD_I64LE;
    case MOE_RL_I32: return H5T_STD_I32LE;
    case MOE_RL_F64: return H5T_IEEE_F64LE;
    case MOE_RL_F32: return H5T_IEEE_F32LE;
    default: return H5T_STD_U8LE;
    }
}

static size_t type_size(moe_rl_type t) {
    return t == MOE_RL_I64 || t == MOE_RL_F64 ? 8 : t == MOE_RL_U8 ? 1 : 4;
}

moe_status moe_runlog_check_new(const char *path, int force) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return moe_fail(MOE_EINVAL, "%s: is a directory (run.metrics names the metrics file "
                        "to write)", path);
    if (!force && stat(path, &sb) == 0)
        return moe_fail(MOE_EINVAL, "%s: exists (refusing to overwrite a metrics file: use "
                        "--force, or --resume to continue it)", path);
    return MOE_OK;
}

/* The file lives in memory (HDF5 core driver, no backing store): HDF5
 * never writes to path; each flush writes the whole image atomically
 * (moe_h5_commit_image), so a SIGKILL or a full disk at any moment leaves
 * the previous flushed file. */
static hid_t core_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_core(fapl, 1 << 16, 0);
    return fapl;
}

static moe_runlog *alloc_log(const char *path) {
    moe_runlog *R = calloc(1, sizeof *R);
    if (R) snprintf(R->path, sizeof R->path, "%s", path), R->f = -1;
    return R;
}

const char *moe_runlog_code_rev(void) { return MOE_CODE_REV; }

/* The build's and libraries' versions and the start time. */
static moe_status write_versions(moe_runlog *R) {
    unsigned maj, min, rel;
    char v[64], now[32];
    H5get_libversion(&maj, &min, &rel);
    snprintf(v, sizeof v, "%u.%u.%u", maj, min, rel);
    const time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
    const char *ob = openblas_get_config();
    moe_status st;
    if ((st = moe_runlog_attr_str(R, "/", "git_rev", MOE_GIT_REV)) ||
        (st = moe_runlog_attr_str(R, "/", "code_rev", MOE_CODE_REV)) ||
        (st = moe_runlog_attr_str(R, "/", "hdf5_version", v)) ||
        (st = moe_runlog_attr_str(R, "/", "openblas_config", ob ? ob : "unknown")))
        return st;
    return moe_runlog_attr_str(R, "/", "created", now);
}

moe_status moe_runlog_create(const char *path, int force, moe_runlog **out) {
    *out = NULL;
    moe_status st = moe_runlog_check_new(path, force);
    if (st != MOE_OK) return st;
    moe_runlog *R = alloc_log(path);
    if (!R) return moe_fail(MOE_ENOMEM, "%s: out of memory", path);
    moe_h5_quiet();
    R->resume_step = -1;
    hid_t fapl = core_fapl();
    R->f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (R->f < 0) st = h5_fail(R, "cannot create");
    if (st == MOE_OK && !(st = moe_runlog_attr_str(R, "/", "format", MOE_RUN_FORMAT)) &&
        !(st = moe_runlog_attr_i64(R, "/", "finished", 0)))
        st = write_versions(R);
    if (st == MOE_OK) st = moe_runlog_flush(R); /* the file exists from now on */
    if (st != MOE_OK) {
        R->broken = 1;
        moe_runlog_close(R);
        return st;
    }
    *out = R;
    return MOE_OK;
}

/* Reads the last kept /train/time_s of a resumed file. */
static void read_time0(moe_runlog *R) {
    const int64_t keep = R->n_keep ? R->keep_rows[0] : 0;
    if (keep <= 0 || !moe_h5_has(R->f, "train/time_s")) return;
    hid_t ds = H5Dopen2(R->f, "train/time_s", H5P_DEFAULT), fs = H5Dget_space(ds);
    hsize_t at = (hsize_t)keep - 1, one = 1;
    hid_t ms = H5Screate_simple(1, &one, NULL);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, &at, NULL, &one, NULL);
    if (H5Dread(ds, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, &R->time0) < 0) R->time0 = 0.0;
    H5Sclose(ms), H5Sclose(fs), H5Dclose(ds);
}

static moe_status keep_rows(moe_runlog *R, const char *series_path, int64_t *keep);

moe_status moe_runlog_resume(const char *path, int64_t step, moe_runlog **out) {
    *out = NULL;
    moe_runlog *R = alloc_log(path);
    if (!R) return moe_fail(MOE_ENOMEM, "%s: out of memory", path);
    moe_h5_quiet();
    R->resume_step = step;
    moe_status st = MOE_OK;
    hid_t fapl = core_fapl();
    R->f = H5Fopen(path, H5F_ACC_RDWR, fapl);
    H5Pclose(fapl);
    if (R->f < 0) st = h5_fail(R, "cannot open to resume");
    char fmt[32] = "";
    if (st == MOE_OK && (moe_h5_attr_string(R->f, "format", fmt, sizeof fmt, path) != MOE_OK ||
                         strcmp(fmt, MOE_RUN_FORMAT)))
        st = moe_fail(MOE_EFORMAT, "%s: not a " MOE_RUN_FORMAT " file (format '%s')", path, fmt);
    int64_t keep;
    if (st == MOE_OK) st = keep_rows(R, "train/step", &keep);
    if (st == MOE_OK) st = moe_runlog_attr_i64(R, "/", "finished", 0);
    if (st != MOE_OK) {
        R->broken = 1;
        moe_runlog_close(R);
        return st;
    }
    read_time0(R);
    *out = R;
    return MOE_OK;
}

double moe_runlog_time_offset(const moe_runlog *R) { return R->time0; }

/* ---------------------------------------------------------- attributes */

/* Opens obj, creating it (and missing groups along its path) as a group. */
static hid_t open_obj(moe_runlog *R, const char *obj) {
    if (strcmp(obj, "/") && !moe_h5_has(R->f, obj)) {
        hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        hid_t g = H5Gcreate2(R->f, obj, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        H5Pclose(lcpl);
        if (g < 0) return -1;
        H5Gclose(g);
    }
    return H5Oopen(R->f, obj, H5P_DEFAULT);
}

/* Writes attribute name of obj (type ty, space sp, data v), replacing it. */
static moe_status put_attr(moe_runlog *R, const char *obj, const char *name, hid_t ty,
                           hid_t sp, hid_t mty, const void *v) {
    hid_t o = open_obj(R, obj), a = -1;
    herr_t e = -1;
    if (o >= 0 && (H5Aexists(o, name) <= 0 || H5Adelete(o, name) >= 0) &&
        (a = H5Acreate2(o, name, ty, sp, H5P_DEFAULT, H5P_DEFAULT)) >= 0)
        e = H5Awrite(a, mty, v);
    if (a >= 0) H5Aclose(a);
    if (o >= 0) H5Oclose(o);
    H5Sclose(sp);
    R->dirty = 1;
    if (e >= 0) return MOE_OK;
    char what[160];
    snprintf(what, sizeof what, "cannot write attribute '%s' of '%s'", name, obj);
    return h5_fail(R, what);
}

moe_status moe_runlog_attr_str(moe_runlog *R, const char *obj, const char *name,
                               const char *v) {
    hid_t ty = H5Tcopy(H5T_C_S1);
    H5Tset_size(ty, strlen(v) > 0 ? strlen(v) : 1);
    H5Tset_strpad(ty, H5T_STR_NULLTERM);
    moe_status st = put_attr(R, obj, name, ty, H5Screate(H5S_SCALAR), ty, v);
    H5Tclose(ty);
    return st;
}

moe_status moe_runlog_attr_strs(moe_runlog *R, const char *obj, const char *name,
                                const char *const *v, int32_t n) {
    hid_t ty = H5Tcopy(H5T_C_S1);
    H5Tset_size(ty, H5T_VARIABLE);
    hsize_t dn = (hsize_t)n;
    moe_status st = put_attr(R, obj, name, ty, H5Screate_simple(1, &dn, NULL), ty, v);
    H5Tclose(ty);
    return st;
}

moe_status moe_runlog_attr_i64s(moe_runlog *R, const char *obj, const char *name,
                                const int64_t *v, int32_t n) {
    hsize_t dn = (hsize_t)n;
    return put_attr(R, obj, name, H5T_STD_I64LE, H5Screate_simple(1, &dn, NULL),
                    H5T_NATIVE_INT64, v);
}

moe_status moe_runlog_attr_i64(moe_runlog *R, const char *obj, const char *name,
                               int64_t v) {
    return put_attr(R, obj, name, H5T_STD_I64LE, H5Screate(H5S_SCALAR), H5T_NATIVE_INT64, &v);
}

moe_status moe_runlog_attr_f64(moe_runlog *R, const char *obj, const char *name,
                               double v) {
    return put_attr(R, obj, name, H5T_IEEE_F64LE, H5Screate(H5S_SCALAR), H5T_NATIVE_DOUBLE, &v);
}

/* -------------------------------------------------------------- series */

/* Resume: rows of the top group of series_path to keep (steps <= the
 * resumed step, by "<top>/step"; "routing" follows "train") into *keep.
 * A group without a readable step series is an error (its rows would be
 * dropped): the file is then never rewritten. */
static moe_status keep_rows(moe_runlog *R, const char *series_path, int64_t *keep) {
    char top[32];
    size_t len = strcspn(series_path, "/");
    snprintf(top, sizeof top, "%.*s", (int)(len < sizeof top ? len : sizeof top - 1), series_path);
    if (!strcmp(top, "routing")) snprintf(top, sizeof top, "train");
    for (int i = 0; i < R->n_keep; i++)
        if (!strcmp(R->keep_group[i], top)) return *keep = R->keep_rows[i], MOE_OK;
    char sp[64];
    snprintf(sp, sizeof sp, "%s/step", top);
    int64_t want = -1, k = 0;
    double *steps = NULL;
    if (moe_h5_has(R->f, sp)) {
        if (moe_h5_read_doubles(R->f, sp, 1, &want, &steps, R->path) != MOE_OK) {
            char why[400];
            snprintf(why, sizeof why, "%s", moe_errmsg());
            R->broken = 1;
            return moe_fail(MOE_EFORMAT, "%s: cannot read '%s' to resume (%s); the file is "
                            "left unchanged (copy its readable rows elsewhere, or start "
                            "a new run file)", R->path, sp, why);
        }
        while (k < want && steps[k] <= (double)R->resume_step) k++;
        free(steps);
    } else if (moe_h5_has(R->f, top)) {
        R->broken = 1;
        return moe_fail(MOE_EFORMAT, "%s: group '%s' has no '%s' to resume by; the file is "
                        "left unchanged", R->path, top, sp);
    }
    if (R->n_keep < MAX_KEEP) {
        snprintf(R->keep_group[R->n_keep], sizeof R->keep_group[0], "%s", top);
        R->keep_rows[R->n_keep++] = k;
    }
    *keep = k;
    return MOE_OK;
}

static hid_t create_series(moe_runlog *R, const char *path, const series *s) {
    hsize_t maxd[3] = {H5S_UNLIMITED, s->dims[1], s->dims[2]};
    hsize_t chunk[3] = {CHUNK_ROWS, s->dims[1], s->dims[2]};
    hid_t sp = H5Screate_simple(s->rank, s->dims, maxd), pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(pl, s->rank, chunk);
    H5Pset_shuffle(pl);
    H5Pset_deflate(pl, 4);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE); /* groups along the path */
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = H5Dcreate2(R->f, path, file_type(s->type), sp, lcpl, pl, H5P_DEFAULT);
    H5Pclose(lcpl), H5Pclose(pl), H5Sclose(sp);
    return ds;
}

/* Resume: opens the dataset and drops the rows past the kept ones. */
static hid_t reopen_series(moe_runlog *R, const char *path, series *s) {
    hid_t ds = H5Dopen2(R->f, path, H5P_DEFAULT);
    if (ds < 0) return -1;
    hid_t fs = H5Dget_space(ds);
    hsize_t d[3] = {0, 1, 1};
    const int rank = H5Sget_simple_extent_ndims(fs);
    H5Sget_simple_extent_dims(fs, d, NULL);
    H5Sclose(fs);
    int64_t keep = 0;
    if (keep_rows(R, path, &keep) != MOE_OK) {
        H5Dclose(ds);
        return -3;
    }
    if (rank != s->rank || d[1] != s->dims[1] || d[2] != s->dims[2]) {
        H5Dclose(ds);
        return -2;
    }
    s->dims[0] = (hsize_t)keep < d[0] ? (hsize_t)keep : d[0];
    if (H5Dset_extent(ds, s->dims) < 0) {
        H5Dclose(ds);
        return -1;
    }
    return ds;
}

moe_status moe_runlog_series(moe_runlog *R, const char *path, moe_rl_type t,
                             int32_t d1, int32_t d2, int *id) {
    MOE_ASSERT(R && path && id && d1 >= 0 && d2 >= 0 && (d1 > 0 || d2 == 0));
    if (R->n_series == MAX_SERIES)
        return moe_fail(MOE_EINVAL, "%s: more than %d series", R->path, MAX_SERIES);
    series *s = &R->s[R->n_series];
    memset(s, 0, sizeof *s);
    s->type = t;
    s->rank = 1 + (d1 > 0) + (d2 > 0);
    s->dims[1] = d1 > 0 ? (hsize_t)d1 : 1, s->dims[2] = d2 > 0 ? (hsize_t)d2 : 1;
    s->row_bytes = type_size(t) * s->dims[1] * s->dims[2];
    s->ds = R->resume_step >= 0 && moe_h5_has(R->f, path) ? reopen_series(R, path, s)
                                                           : create_series(R, path, s);
    if (s->ds == -3) return MOE_EFORMAT; /* keep_rows' message */
    R->dirty = 1;
    if (s->ds == -2) R->broken = 1;
    if (s->ds == -2)
        return moe_fail(MOE_EFORMAT, "%s: dataset '%s' has another shape than this run's",
                        R->path, path);
    if (s->ds < 0) {
        char what[300];
        snprintf(what, sizeof what, "cannot create dataset '%s'", path);
        return h5_fail(R, what);
    }
    *id = R->n_series++;
    return MOE_OK;
}

moe_status moe_runlog_append(moe_runlog *R, int id, const void *row) {
    MOE_ASSERT(R && id >= 0 && id < R->n_series && row);
    series *s = &R->s[id];
    if (s->nbuf == s->cap) {
        const int64_t cap = s->cap ? 2 * s->cap : 16;
        unsigned char *b = realloc(s->buf, (size_t)cap * s->row_bytes);
        if (!b) return moe_fail(MOE_ENOMEM, "%s: out of memory for buffered rows", R->path);
        s->buf = b, s->cap = cap;
    }
    memcpy(s->buf + (size_t)s->nbuf * s->row_bytes, row, s->row_bytes);
    s->nbuf++;
    R->dirty = 1;
    return MOE_OK;
}

int64_t moe_runlog_rows(const moe_runlog *R, int id) {
    return (int64_t)R->s[id].dims[0] + R->s[id].nbuf;
}

static herr_t write_rows(series *s) {
    hsize_t start[3] = {s->dims[0], 0, 0}, cnt[3] = {(hsize_t)s->nbuf, s->dims[1], s->dims[2]};
    hsize_t nd[3] = {s->dims[0] + (hsize_t)s->nbuf, s->dims[1], s->dims[2]};
    if (H5Dset_extent(s->ds, nd) < 0) return -1;
    hid_t fs = H5Dget_space(s->ds), ms = H5Screate_simple(s->rank, cnt, NULL);
    herr_t e = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
    if (e >= 0) e = H5Dwrite(s->ds, mem_type(s->type), ms, fs, H5P_DEFAULT, s->buf);
    H5Sclose(ms), H5Sclose(fs);
    if (e >= 0) s->dims[0] = nd[0], s->nbuf = 0;
    return e;
}

moe_status moe_runlog_flush(moe_runlog *R) {
    if (R->broken)
        return moe_fail(MOE_EIO, "%s: not written after an earlier error (file left as "
                        "of its last flush)", R->path);
    for (int i = 0; i < R->n_series; i++)
        if (R->s[i].nbuf > 0 && write_rows(&R->s[i]) < 0) return h5_fail(R, "cannot append rows");
    if (!R->dirty) return MOE_OK;
    moe_status st = moe_h5_commit_image(R->f, R->path, 1);
    if (st == MOE_OK) R->dirty = 0;
    return st;
}

moe_status moe_runlog_close(moe_runlog *R) {
    if (!R) return MOE_OK;
    moe_status st = R->f >= 0 && !R->broken ? moe_runlog_flush(R) : MOE_OK;
    for (int i = 0; i < R->n_series; i++) {
        if (R->s[i].ds >= 0) H5Dclose(R->s[i].ds);
        free(R->s[i].buf);
    }
    if (R->f >= 0 && H5Fclose(R->f) < 0 && st == MOE_OK) st = h5_fail(R, "cannot close");
    free(R);
    return st;
}
