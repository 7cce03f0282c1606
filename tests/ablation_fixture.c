/* moe-run/1 fixture files for suite ablation (test_ablation.h), written
 * with the HDF5 C API as results/FORMAT.md lays them out. */
#include "test_ablation.h"
#include "test_util.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static hid_t lcpl(void) {
    hid_t p = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(p, 1);
    return p;
}

static void dset(hid_t f, const char *path, hid_t type, int rank, const hsize_t *dims,
                 const void *data) {
    hid_t sp = H5Screate_simple(rank, dims, NULL), lp = lcpl();
    hid_t d = H5Dcreate2(f, path, type, sp, lp, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(d >= 0);
    H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    H5Dclose(d), H5Pclose(lp), H5Sclose(sp);
}

static void col(hid_t f, const char *path, const double *v, hsize_t n) {
    dset(f, path, H5T_NATIVE_DOUBLE, 1, &n, v);
}

static void attr_str(hid_t loc, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(t, strlen(v) + 1);
    hid_t a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, v);
    H5Aclose(a), H5Sclose(sp), H5Tclose(t);
}

static void attr_i64(hid_t loc, const char *name, const int64_t *v, hsize_t n) {
    hid_t sp = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
    hid_t a = H5Acreate2(loc, name, H5T_NATIVE_INT64, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, v);
    H5Aclose(a), H5Sclose(sp);
}

static void attr_f64(hid_t loc, const char *name, double v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_DOUBLE, &v);
    H5Aclose(a), H5Sclose(sp);
}

static void write_train(hid_t f, const fx_run *r) {
    double loss[10], half[10], one5[10];
    for (int i = 0; i < 10; i++) loss[i] = r->loss0 + i, half[i] = 0.5, one5[i] = 1.5;
    int64_t st[10];
    for (int i = 0; i < 10; i++) st[i] = i + 1;
    hsize_t n = 10;
    dset(f, "/train/step", H5T_NATIVE_INT64, 1, &n, st);
    col(f, "/train/loss", loss, n);
    col(f, "/train/dropped", half, n);
    col(f, "/routing/layer1/cv_load", half, n);
    col(f, "/routing/layer3/cv_load", one5, n);
    /* tokens_after (10 steps, 4 experts): layer 1 balanced except the last
     * 2 steps (all on expert 0: max/mean 4), layer 3 always 2 2 0 0 (2) */
    int32_t t1[10][4], t3[10][4];
    for (int i = 0; i < 10; i++)
        for (int e = 0; e < 4; e++) t1[i][e] = i < 8 ? 1 : 4 * (e == 0), t3[i][e] = 2 * (e < 2);
    hsize_t d2[2] = {10, 4};
    dset(f, "/routing/layer1/tokens_after", H5T_NATIVE_INT32, 2, d2, t1);
    dset(f, "/routing/layer3/tokens_after", H5T_NATIVE_INT32, 2, d2, t3);
}

static void write_valid(hid_t f, const fx_run *r) {
    double step[3] = {5, 10, 10}, ppl[3] = {1000, r->ppl, r->extra_ppl}, cf[3] = {2, 2, r->extra_cf};
    double ce[3], acc[3] = {0, 0.5, 0.25};
    for (int i = 0; i < 3; i++) ce[i] = log(ppl[i]);
    hsize_t n = r->extra_cf > 0 ? 3 : 2;
    col(f, "/valid/step", step, n);
    col(f, "/valid/ppl", ppl, n);
    col(f, "/valid/ce", ce, n);
    col(f, "/valid/acc", acc, n);
    col(f, "/valid/capacity_factor", cf, n);
}

static void write_trace(hid_t f, const fx_run *r) {
    enum { K = 5, T = 16 };
    int64_t step[K];
    int32_t tag[K][T], src[K][T], ex[K][T][2];
    for (int s = 0; s < K; s++) {
        step[s] = 2 * (s + 1);
        int late = 2 * step[s] >= 10;
        for (int t = 0; t < T; t++) {
            tag[s][t] = t % 4, src[s][t] = t / 4 % 4;
            if (r->trace == 1) ex[s][t][0] = late ? tag[s][t] : 0;
            else ex[s][t][0] = late ? src[s][t] : tag[s][t];
            ex[s][t][1] = -1;
        }
    }
    hsize_t dk = K, d2[2] = {K, T}, d3[3] = {K, T, 2};
    dset(f, "/trace/step", H5T_NATIVE_INT64, 1, &dk, step);
    dset(f, "/trace/tag", H5T_NATIVE_INT32, 2, d2, tag);
    dset(f, "/trace/source", H5T_NATIVE_INT32, 2, d2, src);
    dset(f, "/trace/layer1/expert", H5T_NATIVE_INT32, 3, d3, ex);
    dset(f, "/trace/layer3/expert", H5T_NATIVE_INT32, 3, d3, ex);
}

void fx_write(const char *path, const fx_run *r) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    int64_t layers[2] = {1, 3}, fin = r->finished, np = 12345;
    attr_str(f, "format", "moe-run/1");
    attr_str(f, "config", r->config ? r->config : "[moe]\nfamily = top2_gshard\ncapacity_factor = 1.25\n");
    attr_i64(f, "moe_layers", layers, 2);
    attr_i64(f, "n_params", &np, 1);
    attr_i64(f, "finished", &fin, 1);
    write_train(f, r);
    write_valid(f, r);
    if (r->trace) write_trace(f, r);
    hid_t g = H5Gcreate2(f, "/summary", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    attr_f64(g, "wall_s", 42);
    attr_f64(g, "tokens_per_s", 1000);
    attr_f64(g, "diverged", 0);
    H5Gclose(g);
    H5Fclose(f);
}

const char *fx_text(const char *name, const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "%s", tmpdir_path(name));
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
    return path;
}

void fx_base(void) {
    fx_text("base.ini", "[model]\nd_model = 16\nn_layer = 2\nn_head = 2\nd_ff = 32\nseq_len = 8\n"
                        "[moe]\nn_expert = 4\nd_hidden = 16\n"
                        "[data]\nbatch_size = 4\nsynth_vocab = 32\nsynth_docs = 64\nsynth_doc_len = 32\n"
                        "[optim]\nwarmup_steps = 1\n"
                        "[run]\nsteps = 2\neval_every = 0\neval_batches = 1\nlog_every = 1\n");
}

const char *fx_read(const char *path) {
    static char buf[1 << 17];
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) return buf;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* The bytes of a file into a new malloc'd buffer (*n bytes), NULL if missing. */
static char *slurp(const char *path, long *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)*n + 1);
    if (b && fread(b, 1, (size_t)*n, f) != (size_t)*n) *n = -1;
    fclose(f);
    return b;
}

int fx_same_file(const char *a, const char *b) {
    long na = 0, nb = 0;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na > 0 && na == nb && !memcmp(x, y, (size_t)na);
    free(x), free(y);
    return same;
}
