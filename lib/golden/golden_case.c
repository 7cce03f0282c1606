/* The machinery of one moe-golden/1 case (golden.h): reading attributes
 * and tensors with shape checks, comparing against the file's tolerances. */
#include "golden/golden.h"
#include "core/config_fields.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

#define MAX_RANK 6

static void *gcase_keep(gcase *c, void *p) {
    MOE_ASSERT(c->n_allocs < GCASE_MAX_ALLOCS);
    c->allocs[c->n_allocs++] = p;
    return p;
}

float *gcase_floats(gcase *c, size_t n) {
    float *p = calloc(n ? n : 1, sizeof *p);
    if (!p) {
        moe_fail(MOE_ENOMEM, "%s: out of memory", c->where);
        return NULL;
    }
    return gcase_keep(c, p);
}

moe_status gcase_double(gcase *c, const char *name, double *out) {
    return moe_h5_attr_double(c->g, name, out, c->where);
}

moe_status gcase_float(gcase *c, const char *name, float *out) {
    double v;
    moe_status st = gcase_double(c, name, &v);
    if (st == MOE_OK) *out = (float)v;
    return st;
}

moe_status gcase_opt_float(gcase *c, const char *name, float *out) {
    return moe_h5_has_attr(c->g, name) ? gcase_float(c, name, out) : MOE_OK;
}

moe_status gcase_int(gcase *c, const char *name, int64_t lo, int64_t hi,
                     int32_t *out) {
    double v;
    moe_status st = moe_h5_attr_double(c->g, name, &v, c->where);
    if (st != MOE_OK) return st;
    if (v != floor(v) || v < (double)lo || v > (double)hi)
        return moe_fail(MOE_EFORMAT, "%s: attribute '%s' = %g: allowed integers %lld..%lld",
                        c->where, name, v, (long long)lo, (long long)hi);
    *out = (int32_t)v;
    return MOE_OK;
}

moe_status gcase_opt_int(gcase *c, const char *name, int64_t lo, int64_t hi,
                         int32_t *out) {
    return moe_h5_has_attr(c->g, name) ? gcase_int(c, name, lo, hi, out) : MOE_OK;
}

moe_status gcase_config_field(gcase *c, const char *attr, const char *key, moe_config *cfg) {
    const moe_config_field *f = moe_config_field_find(key);
    MOE_ASSERT(f->type == MOE_FIELD_INT32 || f->type == MOE_FIELD_BOOL);
    int32_t v = 0;
    const moe_status st = gcase_int(c, attr, (int64_t)f->lo, (int64_t)f->hi, &v);
    if (st != MOE_OK) return st;
    char *at = (char *)cfg + f->offset;
    if (f->type == MOE_FIELD_BOOL) *(bool *)at = v != 0;
    else memcpy(at, &v, sizeof v);
    return MOE_OK;
}

moe_status gcase_opt_config_field(gcase *c, const char *attr, const char *key,
                                  moe_config *cfg) {
    return moe_h5_has_attr(c->g, attr) ? gcase_config_field(c, attr, key, cfg) : MOE_OK;
}

moe_status gcase_string(gcase *c, const char *name, char *out, size_t cap) {
    return moe_h5_attr_string(c->g, name, out, cap, c->where);
}

moe_status gcase_opt_string(gcase *c, const char *name, char *out, size_t cap) {
    return moe_h5_has_attr(c->g, name) ? gcase_string(c, name, out, cap) : MOE_OK;
}

moe_status gcase_parsed(gcase *c, moe_status lookup) {
    if (lookup == MOE_OK) return MOE_OK;
    return moe_fail(MOE_EFORMAT, "%s: %s", c->where, moe_errmsg());
}

static void collect_dims(int rank, va_list ap, int64_t *dims) {
    MOE_ASSERT(rank >= 0 && rank <= MAX_RANK);
    for (int i = 0; i < rank; i++) dims[i] = va_arg(ap, int64_t);
}

/* Fills dims[MAX_RANK] with the int64 arguments after `rank` of the
 * variadic function it is used in. */
#define VA_DIMS(rank, dims)                                                 \
    do {                                                                    \
        va_list ap_;                                                        \
        va_start(ap_, rank);                                                \
        collect_dims(rank, ap_, dims);                                      \
        va_end(ap_);                                                        \
    } while (0)

static size_t dims_count(int rank, const int64_t *dims) {
    size_t n = 1;
    for (int i = 0; i < rank; i++) n *= (size_t)dims[i];
    return n;
}

/* Dataset `path` as doubles in new storage (*n of them) after checking
 * its dims (rank <= MAX_RANK, rank 0 a scalar). */
static moe_status read_ref(gcase *c, const char *path, int rank,
                           const int64_t *dims_in, double **out, size_t *n) {
    int64_t dims[MAX_RANK + 1] = {0};
    MOE_ASSERT(rank >= 0 && rank <= MAX_RANK);
    for (int i = 0; i < rank; i++) dims[i] = dims_in[i];
    moe_status st = moe_h5_read_doubles(c->g, path, rank, dims, out, c->where);
    if (st == MOE_OK) *n = dims_count(rank, dims);
    return st;
}

moe_status gcase_f32_dims(gcase *c, const char *path, float **dst, int rank,
                          const int64_t *dims) {
    double *v;
    size_t n;
    moe_status st = read_ref(c, path, rank, dims, &v, &n);
    if (st != MOE_OK) return st;
    if (!*dst) {
        *dst = malloc((n ? n : 1) * sizeof **dst);
        if (!*dst) {
            free(v);
            return moe_fail(MOE_ENOMEM, "%s: out of memory", c->where);
        }
        gcase_keep(c, *dst);
    }
    for (size_t i = 0; i < n; i++) (*dst)[i] = (float)v[i];
    free(v);
    return MOE_OK;
}

moe_status gcase_f32(gcase *c, const char *path, float **out, int rank, ...) {
    int64_t dims[MAX_RANK];
    VA_DIMS(rank, dims);
    *out = NULL;
    return gcase_f32_dims(c, path, out, rank, dims);
}

/* The file's tolerance of tensor `key`: attribute tolerance/<key>, where
 * routing tensors route/<k> are stored as output/<k>; the floor when the
 * file has none. One that is there but not a finite positive number (a
 * string, an odd float type, 0, NaN) is an error, never the floor. */
static moe_status tolerance(gcase *c, const char *key_in, double *tol) {
    *tol = strncmp(key_in, "grad/", 5) == 0 ? 1e-4 : 1e-5;
    char key[96];
    if (strncmp(key_in, "route/", 6) == 0)
        snprintf(key, sizeof key, "output/%s", key_in + 6);
    else
        snprintf(key, sizeof key, "%s", key_in);
    if (!moe_h5_has(c->g, "tolerance")) return MOE_OK;
    hid_t t = H5Gopen2(c->g, "tolerance", H5P_DEFAULT);
    if (t < 0) return moe_fail(MOE_EFORMAT, "%s: 'tolerance' is not a group", c->where);
    double v = NAN;
    moe_status st = MOE_OK;
    char where[448];
    snprintf(where, sizeof where, "%s: tolerance", c->where);
    if (moe_h5_has_attr(t, key)) {
        st = moe_h5_attr_double(t, key, &v, where);
        if (st == MOE_OK && !(isfinite(v) && v > 0))
            st = moe_fail(MOE_EFORMAT, "%s: attribute '%s' = %g: allowed a finite number > 0",
                          where, key, v);
        if (st == MOE_OK) *tol = v;
    }
    H5Gclose(t);
    return st;
}

static void record(gcase *c, const char *key, double err, double tol) {
    moe_check_result *r = c->res;
    double ratio = isnan(err) ? INFINITY : err / tol;
    if (ratio > r->worst_ratio || r->worst_key[0] == '\0') {
        r->worst_ratio = ratio;
        r->worst_err = err;
        r->worst_tol = tol;
        snprintf(r->worst_key, sizeof r->worst_key, "%s", key);
    }
    if (!(ratio <= 1.0) && r->message[0] == '\0')
        snprintf(r->message, sizeof r->message, "%s: relative error %.3g > tolerance %.3g",
                 key, err, tol);
}

static double rel_err(const float *got, const double *ref, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double dlt = (double)got[i] - ref[i];
        num += dlt * dlt;
        den += ref[i] * ref[i];
    }
    return sqrt(num) / (den > 0 ? sqrt(den) : 1.0);
}

moe_status gcase_cmp(gcase *c, const char *key, const float *got, int rank, ...) {
    int64_t dims[MAX_RANK];
    VA_DIMS(rank, dims);
    return gcase_cmp_dims(c, key, got, rank, dims);
}

moe_status gcase_cmp_dims(gcase *c, const char *key, const float *got, int rank,
                          const int64_t *dims) {
    double *ref;
    size_t n;
    moe_status st = read_ref(c, key, rank, dims, &ref, &n);
    if (st != MOE_OK) return st;
    double tol;
    st = tolerance(c, key, &tol);
    if (st == MOE_OK) record(c, key, rel_err(got, ref, n), tol);
    free(ref);
    return st;
}

moe_status gcase_cmp_scalar(gcase *c, const char *key, double got, int required) {
    if (!required && !moe_h5_has(c->g, key)) return MOE_OK;
    const float g = (float)got;
    return gcase_cmp_dims(c, key, &g, 0, NULL);
}

moe_status gcase_cmp_ints(gcase *c, const char *key, const int32_t *got, int rank, ...) {
    int64_t dims[MAX_RANK];
    VA_DIMS(rank, dims);
    int32_t *ref;
    moe_status st = moe_h5_read_ints(c->g, key, rank, dims, &ref, c->where);
    if (st != MOE_OK) return st;
    size_t n = dims_count(rank, dims), bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (got[i] != ref[i] && bad++ == 0) first = i;
    c->res->decisions += (int64_t)n;
    c->res->decision_mismatches += (int64_t)bad;
    if (bad && c->res->message[0] == '\0')
        snprintf(c->res->message, sizeof c->res->message,
                 "%s: %zu of %zu decisions differ (first at flat index %zu: got %d, want %d)",
                 key, bad, n, first, got[first], ref[first]);
    free(ref);
    return MOE_OK;
}

moe_status gcase_cmp_attr_int(gcase *c, const char *group, const char *name,
                              int64_t got) {
    if (!moe_h5_has(c->g, group))
        return moe_fail(MOE_EFORMAT, "%s: missing group '%s'", c->where, group);
    hid_t gr = H5Gopen2(c->g, group, H5P_DEFAULT);
    double v = 0;
    char where[448];
    snprintf(where, sizeof where, "%s: %s", c->where, group);
    moe_status st = moe_h5_attr_double(gr, name, &v, where);
    H5Gclose(gr);
    if (st != MOE_OK) return st;
    c->res->decisions++;
    if ((double)got != v) {
        c->res->decision_mismatches++;
        if (c->res->message[0] == '\0')
            snprintf(c->res->message, sizeof c->res->message,
                     "%s/@%s: got %lld, want %g", group, name, (long long)got, v);
    }
    return MOE_OK;
}
