/* The ablation driver: every arm and seed into the run store, linked from
 * a results folder (ablation.h); the folder's paths and cleaning are in
 * ablate_dir.c, the store and its locks in ablate_store.c. */
#include "ablate/ablation.h"

#include "io/runlog.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
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

/* Seconds since the epoch (the wall clock, as file times are). */
static double wall_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The modification time of path (seconds since the epoch), -1 if none. */
static double mtime_s(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) return -1;
    return (double)sb.st_mtim.tv_sec + 1e-9 * (double)sb.st_mtim.tv_nsec;
}

/* Trains one (arm, seed) into the store (or reuses its finished run file
 * there), then links the folder's entry to it. t0: when this ablate call
 * began (wall clock), for --force. */
static moe_status run_arm(const moe_ablation *a, const moe_ablate_opts *o, int arm,
                          uint64_t seed, const char *entry, double t0) {
    size_t nk;
    const ini_key *keys = moe_train_keys(&nk);
    moe_train_config cfg;
    moe_status st = moe_ablation_config(a, arm, seed, o->quick, &cfg, NULL, 0);
    if (st != MOE_OK) return st;
    cfg.checkpoint[0] = '\0';
    if (o->threads > 0) cfg.threads = o->threads;
    static char text[32768];
    char store[1024], path[1100], lock[1100], arg[1300], hash[17], key[17];
    if (ini_dump(keys, nk, &cfg, text, sizeof text) < 0)
        return moe_fail(MOE_ENOMEM, "arm %s: config text too long", a->arms[arm].name);
    moe_train_config_hash(text, hash); /* run.metrics is not part of it */
    const char *rev = moe_runlog_code_rev();
    moe_ablate_run_key(hash, rev, key);
    moe_ablate_store_dir(o, store, sizeof store);
    snprintf(path, sizeof path, "%s/%s.h5", store, key);
    snprintf(lock, sizeof lock, "%s/%s.lock", store, key);
    snprintf(arg, sizeof arg, "run.metrics=%s", path);
    if ((st = ini_set_arg(keys, nk, &cfg, arg)) != MOE_OK) return st;
    if (ini_dump(keys, nk, &cfg, text, sizeof text) < 0)
        return moe_fail(MOE_ENOMEM, "arm %s: config text too long", a->arms[arm].name);
    if ((st = moe_make_dirs(store)) != MOE_OK) return st;
    if ((st = moe_ablate_lock(lock, o->log, 0.5)) != MOE_OK) return st;
    const int reuse = moe_ablate_store_match(path, hash, rev) &&
                      (!o->force || mtime_s(path) >= t0);
    if (reuse) {
        if (o->log) fprintf(o->log, "ablate: cached: %s (config_hash %s, code_rev %s)\n",
                            path, hash, rev);
    } else { /* into KEY.h5.part, renamed over KEY.h5 once finished: a
                reader (another folder's table) sees the old run or the new */
        char part[1200];
        snprintf(part, sizeof part, "%s.part", path);
        snprintf(arg, sizeof arg, "run.metrics=%s", part); /* the text keeps KEY.h5 */
        st = ini_set_arg(keys, nk, &cfg, arg);
        if (st == MOE_OK) st = moe_ablate_remove_file(part);
        moe_train_opts to = {NULL, 0, 0, o->train_log};
        moe_train_result r;
        if (st == MOE_OK) st = moe_train_run(&cfg, text, &to, &r);
        if (st == MOE_OK && rename(part, path) != 0)
            st = moe_fail(MOE_EIO, "%s: cannot rename it to %s: %s", part, path, strerror(errno));
    }
    moe_ablate_unlock(lock);
    return st == MOE_OK ? moe_ablate_link(path, entry) : st;
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
    const double t0 = now_s(), wall0 = wall_s();
    for (int i = 0; st == MOE_OK && i < a->n_arms; i++)
        for (int s = 0; st == MOE_OK && s < a->n_seeds; s++) {
            if (!wanted(a, o, dir, i, s)) continue;
            moe_ablate_arm_path(dir, a->arms[i].name, a->seeds[s], p, sizeof p);
            progress(prog, sizeof prog, done, total, now_s() - t0);
            if (o->log)
                fprintf(o->log, "ablate: arm %d/%d %s seed %llu -> %s%s\n", i + 1, a->n_arms,
                        a->arms[i].name, (unsigned long long)a->seeds[s], p, prog);
            st = run_arm(a, o, i, a->seeds[s], p, wall0);
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
