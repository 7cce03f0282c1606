/* The ablation driver: every arm and seed into a results folder
 * (ablation.h); the folder's paths and cleaning are in ablate_dir.c. */
#include "ablate/ablation.h"
#include "io/h5io.h"

#include <string.h>
#include <time.h>

/* DIR/ablation.ini: the ablation file with its base line replaced by
 * "base = base.ini", and DIR/base.ini: a copy of the base config. */
static moe_status copy_ablation(const moe_ablation *a, const char *dir) {
    char *abl = NULL, *base = NULL, p[1200];
    size_t na = 0, nb = 0;
    moe_status st = moe_read_file(a->path, &abl, &na);
    if (st == MOE_OK) st = moe_read_file(a->base, &base, &nb);
    const size_t cap = na + 64;
    char *out = abl ? malloc(cap) : NULL;
    if (st == MOE_OK && !out) st = moe_fail(MOE_ENOMEM, "%s: out of memory copying it", a->path);
    size_t at = 0;
    int ln = 1;
    for (const char *s = abl; st == MOE_OK && *s; ln++) {
        const char *e = strchr(s, '\n');
        size_t len = e ? (size_t)(e - s + 1) : strlen(s);
        if (ln == a->base_line) at += (size_t)snprintf(out + at, cap - at, "base = base.ini\n");
        else memcpy(out + at, s, len), at += len;
        s += len;
    }
    if (out) out[at] = '\0';
    if (st == MOE_OK) {
        snprintf(p, sizeof p, "%s/base.ini", dir);
        st = moe_write_file(p, base, nb);
    }
    if (st == MOE_OK) {
        snprintf(p, sizeof p, "%s/ablation.ini", dir);
        st = moe_write_file(p, out, at);
    }
    free(abl), free(base), free(out);
    return st;
}

static void set_string_attr(hid_t f, const char *name, const char *v) {
    if (H5Aexists(f, name) > 0) H5Adelete(f, name);
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(t, strlen(v) + 1);
    hid_t at = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (at >= 0) H5Awrite(at, t, v), H5Aclose(at);
    H5Sclose(sp), H5Tclose(t);
}

/* Root attributes arm and ablation of a finished run file. */
static moe_status tag_arm_file(const char *path, const moe_ablation *a, int arm) {
    moe_h5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return moe_fail(MOE_EIO, "arm %s: run file %s was not written", a->arms[arm].name, path);
    set_string_attr(f, "arm", a->arms[arm].name);
    set_string_attr(f, "ablation", a->name);
    H5Fclose(f);
    return MOE_OK;
}

/* Trains one (arm, seed) into path. */
static moe_status run_arm(const moe_ablation *a, const moe_ablate_opts *o, int arm,
                          uint64_t seed, const char *path) {
    size_t nk;
    const ini_key *keys = moe_train_keys(&nk);
    moe_train_config cfg;
    moe_status st = moe_ablation_config(a, arm, seed, o->quick, &cfg, NULL, 0);
    char arg[1300];
    snprintf(arg, sizeof arg, "run.metrics=%s", path);
    if (st == MOE_OK) st = ini_set_arg(keys, nk, &cfg, arg);
    if (st != MOE_OK) return st;
    cfg.checkpoint[0] = '\0';
    if (o->threads > 0) cfg.threads = o->threads;
    static char text[32768];
    if (ini_dump(keys, nk, &cfg, text, sizeof text) < 0)
        return moe_fail(MOE_ENOMEM, "arm %s: config text too long", a->arms[arm].name);
    if ((st = moe_ablate_remove_file(path)) != MOE_OK) return st;
    moe_train_opts to = {NULL, 0, 0, o->train_log};
    moe_train_result r;
    st = moe_train_run(&cfg, text, &to, &r);
    if (st == MOE_OK) st = tag_arm_file(path, a, arm);
    return st;
}

/* Refuses a folder holding a finished arm unless --force / --continue. */
static moe_status check_dir(const moe_ablation *a, const moe_ablate_opts *o, const char *dir) {
    char p[1200];
    if (o->force && o->cont) return moe_fail(MOE_EINVAL, "--force and --continue exclude each other");
    if (o->only && moe_ablation_arm_index(a, o->only) < 0)
        return moe_fail(MOE_EINVAL, "%s: --only %s: no such arm", a->path, o->only);
    for (int i = 0; i < a->n_arms; i++)
        for (int s = 0; s < a->n_seeds; s++) {
            moe_ablate_arm_path(dir, a->arms[i].name, a->seeds[s], p, sizeof p);
            if (!o->force && !o->cont && moe_ablate_arm_state(p) == 1)
                return moe_fail(MOE_EINVAL, "%s holds the finished arm file %s: --force "
                                "replaces the run, --continue keeps finished arms", dir, p);
        }
    return MOE_OK;
}

/* Whether (arm, seed) is to run. */
static int wanted(const moe_ablation *a, const moe_ablate_opts *o, const char *dir, int i,
                  int s) {
    char p[1200];
    if (o->only && strcmp(o->only, a->arms[i].name)) return 0;
    moe_ablate_arm_path(dir, a->arms[i].name, a->seeds[s], p, sizeof p);
    return !(o->cont && moe_ablate_arm_state(p) == 1);
}

/* " (run 3 of 15, about 4m10s left)": the runs to do in this call and,
 * after the first, the time left at the mean time of those done. */
static void progress(char *out, size_t cap, int done, int total, double elapsed) {
    if (done == 0) {
        snprintf(out, cap, " (run 1 of %d)", total);
        return;
    }
    const double left = elapsed / done * (total - done);
    snprintf(out, cap, " (run %d of %d, about %dm%02ds left)", done + 1, total,
             (int)(left / 60), (int)left % 60);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

moe_status moe_ablate_run(const moe_ablation *a, const moe_ablate_opts *o,
                          char *dir_out, size_t cap) {
    char dir[1024], p[1200], prog[96];
    moe_ablate_dir(a, o, dir, sizeof dir);
    if (dir_out) snprintf(dir_out, cap, "%s", dir);
    moe_status st = check_dir(a, o, dir);
    if (st == MOE_OK) st = moe_make_dirs(dir);
    if (st == MOE_OK && o->force) st = moe_ablate_clean(a, dir);
    if (st == MOE_OK) st = copy_ablation(a, dir);
    int total = 0, done = 0;
    for (int i = 0; i < a->n_arms; i++)
        for (int s = 0; s < a->n_seeds; s++) total += wanted(a, o, dir, i, s);
    const double t0 = now_s();
    for (int i = 0; st == MOE_OK && i < a->n_arms; i++)
        for (int s = 0; st == MOE_OK && s < a->n_seeds; s++) {
            if (!wanted(a, o, dir, i, s)) continue;
            moe_ablate_arm_path(dir, a->arms[i].name, a->seeds[s], p, sizeof p);
            progress(prog, sizeof prog, done, total, now_s() - t0);
            if (o->log)
                fprintf(o->log, "ablate: arm %d/%d %s seed %llu -> %s%s\n", i + 1, a->n_arms,
                        a->arms[i].name, (unsigned long long)a->seeds[s], p, prog);
            st = run_arm(a, o, i, a->seeds[s], p);
            done++;
            if (st != MOE_OK) {
                char why[512];
                snprintf(why, sizeof why, "%s", moe_errmsg());
                st = moe_fail(st, "arm %s seed %llu failed: %s", a->arms[i].name,
                              (unsigned long long)a->seeds[s], why);
            }
        }
    if (st == MOE_OK) st = moe_ablation_table(dir, 1, o->table);
    return st;
}
