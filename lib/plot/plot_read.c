/* Reading moe-run/1 files and ablation.ini for the plots (see plot.h). */
#include "io/h5io.h"
#include "plot/plot.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

void moe_plot_run_free(moe_plot_run *r) {
    free(r->config);
    free(r->step), free(r->ce), free(r->vstep), free(r->vce), free(r->vacc);
    free(r->load), free(r->lse);
    free(r->tstep), free(r->tag), free(r->expert);
    for (int32_t i = 0; r->tag_names && i < r->n_tags; i++) free(r->tag_names[i]);
    free(r->tag_names);
    memset(r, 0, sizeof *r);
}

/* arm and seed from "<arm>-s<seed>.h5" (else arm = name without .h5). */
static int name_arm_seed(const char *path, char *arm, size_t cap, int64_t *seed) {
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t n = strlen(base);
    if (n > 3 && !strcmp(base + n - 3, ".h5")) n -= 3;
    size_t d = n;
    while (d > 0 && isdigit((unsigned char)base[d - 1])) d--;
    int has_seed = d < n && d >= 3 && base[d - 1] == 's' && base[d - 2] == '-';
    size_t len = has_seed ? d - 2 : n;
    snprintf(arm, cap, "%.*s", (int)len, base);
    if (has_seed) *seed = strtoll(base + d, NULL, 10);
    return has_seed;
}

/* A string array attribute (fixed or variable length) into new strings. */
static moe_status attr_strings(hid_t loc, const char *name, char ***out,
                               int32_t *n, const char *where) {
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return moe_fail(MOE_EFORMAT, "%s: cannot open attribute '%s'", where, name);
    hid_t ty = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    moe_status st = MOE_OK;
    char **v = NULL;
    if (H5Tget_class(ty) != H5T_STRING || np < 0 || np > 100000) {
        st = moe_fail(MOE_EFORMAT, "%s: attribute '%s' is not a string array", where, name);
    } else if (!(v = calloc((size_t)np + 1, sizeof *v))) {
        st = moe_fail(MOE_ENOMEM, "%s: out of memory", where);
    } else if (H5Tis_variable_str(ty) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        char **raw = calloc((size_t)np + 1, sizeof *raw);
        if (!raw || H5Aread(a, mt, raw) < 0)
            st = moe_fail(MOE_EFORMAT, "%s: cannot read attribute '%s'", where, name);
        for (hssize_t i = 0; raw && i < np; i++) {
            v[i] = strdup(raw[i] ? raw[i] : "");
            H5free_memory(raw[i]);
        }
        free(raw);
        H5Tclose(mt);
    } else {
        size_t sz = H5Tget_size(ty);
        char *buf = calloc((size_t)np + 1, sz + 1);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, sz + 1);
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
        if (!buf || H5Aread(a, mt, buf) < 0)
            st = moe_fail(MOE_EFORMAT, "%s: cannot read attribute '%s'", where, name);
        for (hssize_t i = 0; buf && st == MOE_OK && i < np; i++)
            v[i] = strndup(buf + (size_t)i * (sz + 1), sz);
        free(buf);
        H5Tclose(mt);
    }
    H5Tclose(ty), H5Sclose(sp), H5Aclose(a);
    if (st != MOE_OK) {
        for (hssize_t i = 0; v && i < np; i++) free(v[i]);
        free(v);
        return st;
    }
    *out = v;
    *n = (int32_t)np;
    return MOE_OK;
}

/* Mean of dropped_capacity over the last 20% of rows. */
static moe_status tail_dropped(hid_t f, int32_t L, int64_t S, double *out,
                               const char *where) {
    char p[64];
    snprintf(p, sizeof p, "/routing/layer%d/dropped_capacity", (int)L);
    int64_t w[1] = {S};
    double *a = NULL;
    moe_status st = moe_h5_read_doubles(f, p, 1, w, &a, where);
    double sum = 0;
    int64_t n = 0;
    for (int64_t i = S - (S + 4) / 5; st == MOE_OK && i < S; i++)
        if (isfinite(a[i])) sum += a[i], n++;
    *out = n ? sum / (double)n : NAN;
    free(a);
    return st;
}

/* /routing of the MoE layers: load and lse of the first, drops of all. */
static moe_status read_routing(hid_t f, moe_plot_run *r, const double *layers,
                               const char *where) {
    char p[64];
    r->layer = (int32_t)layers[0];
    snprintf(p, sizeof p, "/routing/layer%d/tokens_before", (int)r->layer);
    int64_t w[2] = {r->S, -1}, w1[1] = {r->S};
    moe_status st = moe_h5_read_ints(f, p, 2, w, &r->load, where);
    if (st != MOE_OK) return st;
    r->E = w[1];
    snprintf(p, sizeof p, "/routing/layer%d/mean_lse", (int)r->layer);
    st = moe_h5_read_doubles(f, p, 1, w1, &r->lse, where);
    double sum = 0;
    int n = 0;
    for (int32_t l = 0; st == MOE_OK && l < r->n_layers; l++) {
        double d;
        st = tail_dropped(f, (int32_t)layers[l], r->S, &d, where);
        if (st == MOE_OK && isfinite(d)) sum += d, n++;
    }
    r->dropped_tail = n ? sum / n : NAN;
    return st;
}

/* /trace: steps, tags and the first MoE layer's experts (if present). */
static moe_status read_trace(hid_t f, moe_plot_run *r, const char *where) {
    int64_t ws[1] = {-1};
    moe_status st = moe_h5_read_doubles(f, "/trace/step", 1, ws, &r->tstep, where);
    if (st != MOE_OK) return st;
    int64_t wt[2] = {ws[0], -1};
    st = moe_h5_read_ints(f, "/trace/tag", 2, wt, &r->tag, where);
    if (st != MOE_OK) return st;
    char p[64];
    snprintf(p, sizeof p, "/trace/layer%d/expert", (int)r->layer);
    int64_t we[3] = {ws[0], wt[1], -1};
    st = moe_h5_read_ints(f, p, 3, we, &r->expert, where);
    if (st != MOE_OK) return st;
    r->K = ws[0], r->T = wt[1], r->k = we[2];
    if (moe_h5_has_attr(f, "tag_names"))
        st = attr_strings(f, "tag_names", &r->tag_names, &r->n_tags, where);
    return st;
}

/* Everything after the format check. */
static moe_status read_run(hid_t f, moe_plot_run *r, const char *where) {
    static char cfg[65536];
    cfg[0] = '\0';
    if (moe_h5_has_attr(f, "config") &&
        moe_h5_attr_string(f, "config", cfg, sizeof cfg, where) != MOE_OK)
        return MOE_EFORMAT;
    if (!(r->config = strdup(cfg))) return moe_fail(MOE_ENOMEM, "%s: out of memory", where);
    int64_t w[1] = {-1};
    moe_status st = moe_h5_read_doubles(f, "/train/step", 1, w, &r->step, where);
    if (st != MOE_OK) return st;
    r->S = w[0];
    st = moe_h5_read_doubles(f, "/train/ce", 1, w, &r->ce, where);
    if (st != MOE_OK) return st;
    if (moe_h5_has(f, "/valid")) {
        int64_t wv[1] = {-1};
        st = moe_h5_read_doubles(f, "/valid/step", 1, wv, &r->vstep, where);
        if (st == MOE_OK) st = moe_h5_read_doubles(f, "/valid/ce", 1, wv, &r->vce, where);
        if (st == MOE_OK && moe_h5_has(f, "/valid/acc"))
            st = moe_h5_read_doubles(f, "/valid/acc", 1, wv, &r->vacc, where);
        if (st != MOE_OK) return st;
        r->V = wv[0];
    }
    double layers[64];
    int nl = 0;
    r->layer = -1;
    r->dropped_tail = NAN;
    if (moe_h5_has_attr(f, "moe_layers") &&
        moe_h5_attr_doubles(f, "moe_layers", layers, 64, &nl, where) != MOE_OK)
        return MOE_EFORMAT;
    r->n_layers = nl;
    if (nl == 0) return MOE_OK;
    st = read_routing(f, r, layers, where);
    if (st == MOE_OK && moe_h5_has(f, "/trace")) st = read_trace(f, r, where);
    return st;
}

moe_status moe_plot_run_load(const char *path, moe_plot_run *r) {
    memset(r, 0, sizeof *r);
    hid_t f;
    moe_status st = moe_h5_open_format(path, "moe-run/1", &f);
    if (st != MOE_OK) return st;
    snprintf(r->path, sizeof r->path, "%s", path);
    if (!name_arm_seed(path, r->arm, sizeof r->arm, &r->seed)) {
        double s = 0;
        if (moe_h5_has_attr(f, "seed")) moe_h5_attr_double(f, "seed", &s, path);
        r->seed = (int64_t)s;
    }
    st = read_run(f, r, path);
    H5Fclose(f);
    if (st != MOE_OK) moe_plot_run_free(r);
    return st;
}

/* s without leading and trailing blanks (in place). */
static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

/* Splits "key = value  # comment" into trimmed key and value; 0 if no '='. */
static int split_kv(char *line, char **key, char **val) {
    char *eq = strchr(line, '=');
    if (!eq) return 0;
    *eq = '\0';
    char *v = eq + 1, *hash = strpbrk(v, "#;");
    if (hash) *hash = '\0';
    *key = trim(line);
    *val = trim(v);
    return 1;
}

moe_status moe_plot_ablation_load(const char *path, moe_plot_ablation *a) {
    memset(a, 0, sizeof *a);
    FILE *f = fopen(path, "r");
    if (!f) return MOE_OK; /* absent: arms named after their files */
    char line[1024];
    enum { OTHER, ABLATION, ARM } sec = OTHER;
    while (fgets(line, sizeof line, f)) {
        char *s = trim(line), *k, *v;
        if (*s == '#' || *s == ';' || !*s) continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (end) *end = '\0';
            s = trim(s + 1);
            sec = OTHER;
            if (!strcmp(s, "ablation")) {
                sec = ABLATION;
            } else if (!strncmp(s, "arm", 3) && isspace((unsigned char)s[3]) && a->n_arms < 64) {
                sec = ARM;
                snprintf(a->arm[a->n_arms], sizeof a->arm[0], "%s", trim(s + 3));
                memcpy(a->label[a->n_arms], a->arm[a->n_arms], sizeof a->label[0]);
                a->n_arms++;
            }
        } else if (split_kv(s, &k, &v)) {
            if (sec == ABLATION && !strcmp(k, "x")) snprintf(a->x, sizeof a->x, "%s", v);
            if (sec == ABLATION && !strcmp(k, "title")) snprintf(a->title, sizeof a->title, "%s", v);
            if (sec == ABLATION && !strcmp(k, "baseline"))
                snprintf(a->baseline, sizeof a->baseline, "%s", v);
            if (sec == ABLATION && !strcmp(k, "columns"))
                snprintf(a->columns, sizeof a->columns, "%s", v);
            if (sec == ARM && !strcmp(k, "label") && *v)
                snprintf(a->label[a->n_arms - 1], sizeof a->label[0], "%s", v);
        }
    }
    int bad = ferror(f);
    fclose(f);
    return bad ? moe_fail(MOE_EIO, "%s: read error", path) : MOE_OK;
}

void moe_plot_smooth(const double *v, int64_t n, int64_t w, double *out) {
    double sum = 0;
    int64_t cnt = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isfinite(v[i])) sum += v[i], cnt++;
        if (i >= w && isfinite(v[i - w])) sum -= v[i - w], cnt--;
        out[i] = cnt ? sum / (double)cnt : NAN;
    }
}
