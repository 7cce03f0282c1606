/* A writer of small moe-run/1 files for the plot suite, following
 * results/FORMAT.md (extendable datasets in chunks of 256 rows, shuffle +
 * deflate 4), with known series (plot_fixture.h). */
#include "plot_fixture.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

double fixture_ce(int arm, int64_t i) {
    return 5.0 - 3.0 * (double)i / FIX_S + 0.1 * sin((double)i) + 0.2 * arm;
}

double fixture_dropped(double cf) { return 0.1 / cf; }

double fixture_valid_offset;

/* A time series dataset: first dimension unlimited, chunked, compressed. */
static void put(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int rank,
                const hsize_t *dims, const void *data) {
    hsize_t maxd[3], chunk[3];
    for (int i = 0; i < rank; i++) {
        maxd[i] = i ? dims[i] : H5S_UNLIMITED;
        chunk[i] = i ? dims[i] : 256;
    }
    hid_t sp = H5Screate_simple(rank, dims, maxd);
    hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(pl, rank, chunk);
    H5Pset_shuffle(pl);
    H5Pset_deflate(pl, 4);
    hid_t ds = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    if (ds >= 0) H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    H5Dclose(ds), H5Pclose(pl), H5Sclose(sp);
}

static void put_d(hid_t loc, const char *name, const double *v, hsize_t n) {
    put(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n, v);
}

static void put_steps(hid_t loc, const char *name, const int64_t *v, hsize_t n) {
    put(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n, v);
}

static void attr_str(hid_t loc, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, &v);
    H5Aclose(a), H5Sclose(sp), H5Tclose(t);
}

static void attr_i64s(hid_t loc, const char *name, const int64_t *v, hsize_t n) {
    hid_t sp = n ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, v);
    H5Aclose(a), H5Sclose(sp);
}

static void attr_i64(hid_t loc, const char *name, int64_t v) { attr_i64s(loc, name, &v, 0); }

static void root_attrs(hid_t f, int arm, double cf, const char *name) {
    char cfg[512];
    snprintf(cfg, sizeof cfg,
             "[model]\nd_model = 32\n\n[moe]\nfamily = top2_gshard\nn_expert = %d\n"
             "capacity_factor = %g\nz_loss = %g\n\n[run]\nsteps = %d\nmetrics = %s-s1.h5\nseed = 1\n",
             FIX_E, cf, arm ? 0.001 : 0.0, FIX_S, name);
    attr_str(f, "format", "moe-run/1");
    attr_str(f, "config", cfg);
    attr_str(f, "git_rev", "unknown");
    attr_str(f, "created", "2024-01-01T00:00:00Z");
    attr_str(f, "task", "lm");
    attr_str(f, "family", "top2_gshard");
    attr_str(f, "arm", name);
    attr_str(f, "ablation", "fixture");
    attr_str(f, "hdf5_version", "1.10"), attr_str(f, "openblas_config", "fixture");
    attr_i64(f, "seed", 1), attr_i64(f, "threads", 1), attr_i64(f, "n_expert", FIX_E);
    attr_i64(f, "trace_k", FIX_TK), attr_i64(f, "n_params", 1000), attr_i64(f, "finished", 1);
    int64_t layers[1] = {FIX_LAYER};
    attr_i64s(f, "moe_layers", layers, 1);
    const char *tags[FIX_TAGS] = {"NOUN", "VERB", "ADJ"};
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hsize_t nt = FIX_TAGS;
    hid_t sp = H5Screate_simple(1, &nt, NULL);
    hid_t a = H5Acreate2(f, "tag_names", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, tags);
    H5Aclose(a), H5Sclose(sp), H5Tclose(t);
}

static void train_group(hid_t f, int arm, int flags) {
    hid_t g = H5Gcreate2(f, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int64_t step[FIX_S];
    double ce[FIX_S], other[FIX_S];
    for (int i = 0; i < FIX_S; i++) step[i] = i + 1, ce[i] = fixture_ce(arm, i), other[i] = 0.01 * i;
    put_steps(g, "step", step, FIX_S);
    if (!(flags & FIX_NO_CE)) put_d(g, "ce", ce, FIX_S);
    put_d(g, "loss", ce, FIX_S);
    const char *names[] = {"aux", "balance_loss", "z_loss", "cv2_importance", "cv2_load", "lr",
                           "grad_norm", "tokens_per_s", "time_s", "dropped"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) put_d(g, names[k], other, FIX_S);
    H5Gclose(g);
}

static void routing_group(hid_t f, int arm, double cf) {
    hid_t r = H5Gcreate2(f, "routing", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    char name[32];
    snprintf(name, sizeof name, "layer%d", FIX_LAYER);
    hid_t g = H5Gcreate2(r, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    static int32_t load[FIX_S][FIX_E];
    int32_t cap[FIX_S];
    double dc[FIX_S], dp[FIX_S], lse[FIX_S], zero[FIX_S];
    for (int i = 0; i < FIX_S; i++) {
        for (int e = 0; e < FIX_E; e++) load[i][e] = 100 + 20 * e * (arm + 1) * i / FIX_S;
        cap[i] = 160, dc[i] = 0.1 / cf, dp[i] = 0.02, zero[i] = 0;
        lse[i] = 2.0 + 3.0 * (1 - arm) * (1.0 - exp(-i / 50.0)) + 0.5 * arm;
    }
    hsize_t d2[2] = {FIX_S, FIX_E};
    put(g, "tokens_before", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, d2, load);
    put(g, "tokens_after", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, d2, load);
    hsize_t s = FIX_S;
    put(g, "capacity", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &s, cap);
    put_d(g, "dropped_capacity", dc, FIX_S);
    put_d(g, "dropped_policy", dp, FIX_S);
    put_d(g, "mean_lse", lse, FIX_S);
    const char *names[] = {"unrouted", "second_frac", "cv_importance", "cv_load", "max_mean_load",
                           "entropy", "balance_loss", "z_loss"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) put_d(g, names[k], zero, FIX_S);
    H5Gclose(g), H5Gclose(r);
}

static void valid_group(hid_t f, int arm, double cf) {
    hid_t g = H5Gcreate2(f, "valid", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int64_t step[FIX_V + 1];
    double ce[FIX_V + 1], ppl[FIX_V + 1], zero[FIX_V + 1], cfs[FIX_V + 1];
    for (int i = 0; i <= FIX_V; i++) { /* the last row: an extra eval cf */
        step[i] = i < FIX_V ? (i + 1) * FIX_S / FIX_V : FIX_S;
        ce[i] = i < FIX_V ? 4.5 - 0.5 * i - 0.1 * arm + fixture_valid_offset : 9.0;
        ppl[i] = exp(ce[i]), zero[i] = 0, cfs[i] = i < FIX_V ? cf : 0.5;
    }
    put_steps(g, "step", step, FIX_V + 1);
    put_d(g, "ce", ce, FIX_V + 1), put_d(g, "ppl", ppl, FIX_V + 1);
    put_d(g, "acc", zero, FIX_V + 1), put_d(g, "dropped", zero, FIX_V + 1);
    put_d(g, "capacity_factor", cfs, FIX_V + 1);
    H5Gclose(g);
}

static void trace_group(hid_t f, int arm) {
    hid_t g = H5Gcreate2(f, "trace", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int64_t step[FIX_K];
    static int32_t tok[FIX_K][FIX_T], tag[FIX_K][FIX_T], ex[FIX_K][FIX_T][FIX_TK], pos[FIX_K][FIX_T][FIX_TK];
    static float gate[FIX_K][FIX_T][FIX_TK];
    static uint8_t drop[FIX_K][FIX_T][FIX_TK];
    for (int s = 0; s < FIX_K; s++) {
        step[s] = (s + 1) * FIX_S / FIX_K;
        for (int t = 0; t < FIX_T; t++) {
            tok[s][t] = t, tag[s][t] = fixture_tag(t);
            /* early samples route elsewhere: only the last 50% counts */
            ex[s][t][0] = step[s] >= FIX_S / 2 ? fixture_expert(arm, tag[s][t]) : FIX_E - 1;
            ex[s][t][1] = (tag[s][t] + 1) % FIX_E;
            for (int k = 0; k < FIX_TK; k++) gate[s][t][k] = 0.5f, pos[s][t][k] = t, drop[s][t][k] = 0;
        }
    }
    hsize_t k1 = FIX_K, d2[2] = {FIX_K, FIX_T}, d3[3] = {FIX_K, FIX_T, FIX_TK};
    put(g, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &k1, step);
    put(g, "token", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, d2, tok);
    put(g, "tag", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, d2, tag);
    put(g, "source", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, d2, tok);
    char name[32];
    snprintf(name, sizeof name, "layer%d", FIX_LAYER);
    hid_t l = H5Gcreate2(g, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    put(l, "expert", H5T_STD_I32LE, H5T_NATIVE_INT32, 3, d3, ex);
    put(l, "gate", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, d3, gate);
    put(l, "position", H5T_STD_I32LE, H5T_NATIVE_INT32, 3, d3, pos);
    put(l, "dropped", H5T_STD_U8LE, H5T_NATIVE_UINT8, 3, d3, drop);
    attr_i64(g, "n_tags", FIX_TAGS), attr_i64(g, "n_sources", FIX_T);
    H5Gclose(l), H5Gclose(g);
}

int fixture_run(const char *path, int arm, double cf, const char *name, int flags) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return -1;
    root_attrs(f, arm, cf, name);
    train_group(f, arm, flags);
    routing_group(f, arm, cf);
    valid_group(f, arm, cf);
    if (!(flags & FIX_NO_TRACE)) trace_group(f, arm);
    hid_t s = H5Gcreate2(f, "summary", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    attr_i64(s, "steps", FIX_S), attr_i64(s, "diverged", 0);
    H5Gclose(s);
    return H5Fclose(f) < 0 ? -1 : 0;
}

int fixture_dir(const char *dir, int flags) {
    char p[512];
    if (mkdir(dir, 0755) != 0) return -1;
    snprintf(p, sizeof p, "%s/cf1-s1.h5", dir);
    if (fixture_run(p, 0, 1.0, "cf1", flags)) return -1;
    snprintf(p, sizeof p, "%s/cf2-s1.h5", dir);
    if (fixture_run(p, 1, 2.0, "cf2", flags)) return -1;
    snprintf(p, sizeof p, "%s/other.h5", dir); /* HDF5, not a run: ignored */
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    if (flags & FIX_NO_INI) return 0;
    snprintf(p, sizeof p, "%s/ablation.ini", dir);
    FILE *ini = fopen(p, "w");
    if (!ini) return -1;
    fputs("[ablation]\ntitle = Fixture: capacity factor\nx = moe.capacity_factor\nseeds = 1\n\n"
          "[arm cf2]\nlabel = capacity 2.0 (z-loss)\nmoe.capacity_factor = 2\n\n"
          "[arm cf1]\nlabel = capacity 1.0\nmoe.capacity_factor = 1\n", ini);
    return fclose(ini);
}
