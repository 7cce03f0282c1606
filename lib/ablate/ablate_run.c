/* The ablation driver: every arm and seed into a results folder
 * (ablation.h). */
#include "ablate/ablation.h"
#include "io/h5io.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void moe_ablate_dir(const moe_ablation *a, const moe_ablate_opts *o, char *dir,
                    size_t cap) {
    if (o->out) snprintf(dir, cap, "%s", o->out);
    else snprintf(dir, cap, "results/%s/%s%s", a->paper, a->name, o->quick ? "-quick" : "");
}

void moe_ablate_arm_path(const char *dir, const char *arm, uint64_t seed,
                         char *path, size_t cap) {
    snprintf(path, cap, "%s/%s-s%llu.h5", dir, arm, (unsigned long long)seed);
}

int moe_ablate_arm_state(const char *path) {
    if (access(path, F_OK) != 0) return -1;
    hid_t f;
    if (moe_h5_open_ro(path, &f) != MOE_OK) return 0;
    double fin = 0;
    int ok = moe_h5_has_attr(f, "finished") &&
             moe_h5_attr_double(f, "finished", &fin, path) == MOE_OK && fin == 1;
    H5Fclose(f);
    return ok;
}

static moe_status remove_file(const char *path) {
    if (unlink(path) != 0 && errno != ENOENT)
        return moe_fail(MOE_EIO, "%s: cannot delete: %s", path, strerror(errno));
    return MOE_OK;
}

/* Deletes folder p with its files and, depth > 0, its subfolders (the
 * plots: PNG / SVG and plots/data/ with gnuplot's .dat and .gp files). */
static moe_status remove_tree(const char *p, int depth) {
    DIR *d = opendir(p);
    if (!d) return MOE_OK;
    moe_status st = MOE_OK;
    for (struct dirent *e = readdir(d); e && st == MOE_OK; e = readdir(d)) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char f[1600];
        snprintf(f, sizeof f, "%s/%s", p, e->d_name);
        struct stat sb;
        if (depth > 0 && lstat(f, &sb) == 0 && S_ISDIR(sb.st_mode))
            st = remove_tree(f, depth - 1);
        else
            st = remove_file(f);
    }
    closedir(d);
    if (st == MOE_OK && rmdir(p) != 0)
        st = moe_fail(MOE_EIO, "%s: cannot delete: %s", p, strerror(errno));
    return st;
}

static moe_status remove_plots(const char *dir) {
    char p[1200];
    snprintf(p, sizeof p, "%s/plots", dir);
    return remove_tree(p, 1);
}

moe_status moe_ablate_clean(const moe_ablation *a, const char *dir) {
    char p[1200];
    moe_status st = MOE_OK;
    for (int i = 0; i < a->n_arms && st == MOE_OK; i++)
        for (int s = 0; s < a->n_seeds && st == MOE_OK; s++) {
            moe_ablate_arm_path(dir, a->arms[i].name, a->seeds[s], p, sizeof p);
            st = remove_file(p);
        }
    const char *gen[] = {"table.md", "summary.csv"};
    for (int i = 0; i < 2 && st == MOE_OK; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, gen[i]);
        st = remove_file(p);
    }
    return st == MOE_OK ? remove_plots(dir) : st;
}

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
    if ((st = remove_file(path)) != MOE_OK) return st;
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

moe_status moe_ablate_run(const moe_ablation *a, const moe_ablate_opts *o,
                          char *dir_out, size_t cap) {
    char dir[1024], p[1200];
    moe_ablate_dir(a, o, dir, sizeof dir);
    if (dir_out) snprintf(dir_out, cap, "%s", dir);
    moe_status st = check_dir(a, o, dir);
    if (st == MOE_OK) st = moe_make_dirs(dir);
    if (st == MOE_OK && o->force) st = moe_ablate_clean(a, dir);
    if (st == MOE_OK) st = copy_ablation(a, dir);
    for (int i = 0; st == MOE_OK && i < a->n_arms; i++)
        for (int s = 0; st == MOE_OK && s < a->n_seeds; s++) {
            if (!wanted(a, o, dir, i, s)) continue;
            moe_ablate_arm_path(dir, a->arms[i].name, a->seeds[s], p, sizeof p);
            if (o->log)
                fprintf(o->log, "ablate: arm %d/%d %s seed %llu -> %s\n", i + 1, a->n_arms,
                        a->arms[i].name, (unsigned long long)a->seeds[s], p);
            st = run_arm(a, o, i, a->seeds[s], p);
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
