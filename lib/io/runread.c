/* A run file's datasets and root attributes, generically (see rundiff.h). */
#include "io/rundiff.h"

#include <stdlib.h>
#include <string.h>

void moe_run_names_free(char **names, int n) {
    for (int i = 0; names && i < n; i++) free(names[i]);
    free(names);
}

typedef struct {
    char **v;
    int n, cap;
    const char *prefix; /* the group visited, "/train" */
    int oom;
} name_list;

static int push(name_list *l, char *s) {
    if (!s) return l->oom = 1, -1;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        char **p = realloc(l->v, (size_t)cap * sizeof *p);
        if (!p) return free(s), l->oom = 1, -1;
        l->v = p, l->cap = cap;
    }
    l->v[l->n++] = s;
    return 0;
}

/* H5Lvisit callback: every dataset under the group, by its full path. */
static herr_t visit_dataset(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    name_list *l = data;
    H5O_info_t oi;
    if (info->type != H5L_TYPE_HARD || H5Oget_info_by_name(g, name, &oi, H5P_DEFAULT) < 0 ||
        oi.type != H5O_TYPE_DATASET)
        return 0;
    size_t len = strlen(l->prefix) + strlen(name) + 2;
    char *s = malloc(len);
    if (s) snprintf(s, len, "%s/%s", l->prefix, name);
    return push(l, s) ? -1 : 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

moe_status moe_run_list_series(hid_t f, const char *const *groups, char ***names,
                               int *n, const char *where) {
    name_list l = {0};
    for (int k = 0; groups[k]; k++) {
        const int start = l.n;
        if (!moe_h5_has(f, groups[k])) continue;
        hid_t g = H5Gopen2(f, groups[k], H5P_DEFAULT);
        l.prefix = groups[k];
        herr_t e = g < 0 ? -1 : H5Lvisit(g, H5_INDEX_NAME, H5_ITER_INC, visit_dataset, &l);
        if (g >= 0) H5Gclose(g);
        if (e < 0 || l.oom) {
            moe_run_names_free(l.v, l.n);
            if (l.oom) return moe_fail(MOE_ENOMEM, "%s: out of memory", where);
            return moe_fail(MOE_EFORMAT, "%s: cannot list group '%s'", where, groups[k]);
        }
        if (l.n > start) qsort(l.v + start, (size_t)(l.n - start), sizeof *l.v, cmp_str);
    }
    *names = l.v;
    *n = l.n;
    return MOE_OK;
}

void moe_run_series_free(moe_run_series *s) {
    free(s->v);
    memset(s, 0, sizeof *s);
}

moe_status moe_run_read_series(hid_t f, const char *path, moe_run_series *s,
                               const char *where) {
    memset(s, 0, sizeof *s);
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    if (d < 0) return moe_fail(MOE_EFORMAT, "%s: cannot open dataset '%s'", where, path);
    hid_t sp = H5Dget_space(d), ty = H5Dget_type(d);
    H5T_class_t cl = H5Tget_class(ty);
    int rank = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[4] = {0};
    moe_status st = MOE_OK;
    if ((cl != H5T_INTEGER && cl != H5T_FLOAT) || rank < 1 || rank > 4) {
        st = moe_fail(MOE_EFORMAT, "%s: dataset '%s' is not a numeric series (rank 1..4)",
                      where, path);
    } else {
        H5Sget_simple_extent_dims(sp, dims, NULL);
        s->rank = rank;
        s->rows = (int64_t)dims[0];
        s->width = 1;
        for (int k = 0; k < rank; k++) s->dims[k] = (int64_t)dims[k];
        for (int k = 1; k < rank; k++) s->width *= (int64_t)dims[k];
        const double total = (double)s->rows * (double)s->width;
        if (total > (double)(1 << 28))
            st = moe_fail(MOE_EFORMAT, "%s: dataset '%s' is too large (%.3g values)", where, path, total);
        else if (!(s->v = malloc(((size_t)total ? (size_t)total : 1) * sizeof *s->v)))
            st = moe_fail(MOE_ENOMEM, "%s: out of memory reading '%s'", where, path);
        else if (total > 0 && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->v) < 0) {
            char why[160];
            st = moe_fail(MOE_EFORMAT, "%s: cannot read dataset '%s' (%s)", where, path,
                          moe_h5_reason(why));
        }
    }
    H5Tclose(ty), H5Sclose(sp), H5Dclose(d);
    if (st != MOE_OK) moe_run_series_free(s);
    return st;
}

/* ------------------------------------------------------------ attributes */

/* The text of numeric attribute a: up to 64 values, %.17g each. */
static char *numeric_text(hid_t a, hssize_t np) {
    double v[64];
    if (np < 0 || np > 64 || H5Aread(a, H5T_NATIVE_DOUBLE, v) < 0) return NULL;
    char *s = malloc(64 * 26 + 1);
    if (!s) return NULL;
    size_t at = 0;
    s[0] = '\0';
    for (hssize_t i = 0; i < np; i++)
        at += (size_t)snprintf(s + at, 26, "%s%.17g", i ? " " : "", v[i]);
    return s;
}

/* The text of scalar string attribute `name` (at most 1 MiB). */
static char *string_text(hid_t f, hid_t a, hid_t ty, const char *name, const char *where) {
    size_t cap = H5Tis_variable_str(ty) > 0 ? (size_t)1 << 20 : H5Tget_size(ty) + 1;
    if (cap > ((size_t)1 << 20)) return NULL;
    (void)a;
    char *s = malloc(cap);
    if (s && moe_h5_attr_string(f, name, s, cap, where) != MOE_OK) {
        free(s);
        return NULL;
    }
    return s;
}

typedef struct {
    name_list names, values;
    const char *where;
    int bad;
} attr_list;

static herr_t visit_attr(hid_t f, const char *name, const H5A_info_t *info, void *data) {
    (void)info;
    attr_list *l = data;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0) return l->bad = 1, -1;
    hid_t ty = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    H5T_class_t cl = H5Tget_class(ty);
    char *v = NULL;
    if (cl == H5T_STRING && np == 1) v = string_text(f, a, ty, name, l->where);
    else if (cl == H5T_INTEGER || cl == H5T_FLOAT) v = numeric_text(a, np);
    else v = strdup("(not compared: string array or other type)");
    H5Tclose(ty), H5Sclose(sp), H5Aclose(a);
    if (!v) return l->bad = 1, -1;
    if (push(&l->values, v)) return -1;
    return push(&l->names, strdup(name)) ? -1 : 0;
}

moe_status moe_run_root_attrs(hid_t f, char ***names, char ***values, int *n,
                              const char *where) {
    attr_list l = {.where = where};
    hsize_t idx = 0;
    herr_t e = H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, &idx, visit_attr, &l);
    if (e < 0 || l.names.oom || l.values.oom || l.bad || l.names.n != l.values.n) {
        moe_run_names_free(l.names.v, l.names.n);
        moe_run_names_free(l.values.v, l.values.n);
        if (l.names.oom || l.values.oom) return moe_fail(MOE_ENOMEM, "%s: out of memory", where);
        return moe_fail(MOE_EFORMAT, "%s: cannot read the root attributes", where);
    }
    *names = l.names.v;
    *values = l.values.v;
    *n = l.names.n;
    return MOE_OK;
}
