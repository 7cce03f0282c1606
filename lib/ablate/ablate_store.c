/* The run store of the ablations (ablation.h): one run file per canonical
 * configuration and code revision, STORE/<key>.h5, its lock file, and the
 * relative symlinks of the results folders to it. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "ablate/ablation.h"
#include "io/h5io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void moe_ablate_store_dir(const moe_ablate_opts *o, char *dir, size_t cap) {
    if (o->runs) snprintf(dir, cap, "%s", o->runs);
    else snprintf(dir, cap, "results/runs%s", o->quick ? "-quick" : "");
}

void moe_ablate_run_key(const char *config_hash, const char *code_rev, char key[17]) {
    uint64_t h = moe_fnv1a64(MOE_FNV1A64_INIT, config_hash, strlen(config_hash));
    h = moe_fnv1a64(moe_fnv1a64(h, "\n", 1), code_rev, strlen(code_rev));
    snprintf(key, 17, "%016llx", (unsigned long long)h);
}

int moe_ablate_store_match(const char *path, const char *config_hash, const char *code_rev) {
    if (access(path, F_OK) != 0) return 0;
    hid_t f;
    if (moe_h5_open_ro(path, &f) != MOE_OK) return 0;
    double fin = 0;
    char h[32] = "", r[64] = "";
    int ok = moe_h5_has_attr(f, "finished") && moe_h5_has_attr(f, "config_hash") &&
             moe_h5_has_attr(f, "code_rev") &&
             moe_h5_attr_double(f, "finished", &fin, path) == MOE_OK && fin == 1 &&
             moe_h5_attr_string(f, "config_hash", h, sizeof h, path) == MOE_OK &&
             moe_h5_attr_string(f, "code_rev", r, sizeof r, path) == MOE_OK &&
             !strcmp(h, config_hash) && !strcmp(r, code_rev);
    H5Fclose(f);
    return ok;
}

/* The pid written in lock file p, 0 if none can be read. */
static long lock_pid(const char *p) {
    FILE *f = fopen(p, "r");
    long pid = 0;
    if (f) {
        if (fscanf(f, "%ld", &pid) != 1) pid = 0;
        fclose(f);
    }
    return pid;
}

/* Whether the lock at p is stale: its pid is dead or ours (a process
 * holds one lock at a time: ours is an earlier process's whose pid was
 * reused), or it has no pid and is older than 10 s (a writer killed
 * between creating and writing it). */
static int lock_stale(const char *p, long pid) {
    if (pid > 0) return pid == (long)getpid() || (kill((pid_t)pid, 0) != 0 && errno == ESRCH);
    struct stat sb;
    return stat(p, &sb) == 0 && difftime(time(NULL), sb.st_mtime) > 10;
}

/* Moves the stale lock p (held by the dead pid) aside and deletes it; if
 * another process took it over meanwhile (the pid moved aside is not the
 * dead one), puts that lock back (link: never over a newer one). */
static void take_over(const char *p, long pid) {
    char aside[1300];
    snprintf(aside, sizeof aside, "%s.stale-%ld", p, (long)getpid());
    if (rename(p, aside) != 0) return;
    if (lock_pid(aside) != pid) (void)link(aside, p);
    unlink(aside);
}

moe_status moe_ablate_lock(const char *p, FILE *log, double poll_s) {
    int said = 0;
    for (;;) {
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd >= 0) {
            char b[32];
            const int n = snprintf(b, sizeof b, "%ld\n", (long)getpid());
            const int ok = write(fd, b, (size_t)n) == n;
            close(fd);
            if (!ok) {
                unlink(p);
                return moe_fail(MOE_EIO, "%s: cannot write the lock: %s", p, strerror(errno));
            }
            return MOE_OK;
        }
        if (errno != EEXIST)
            return moe_fail(MOE_EIO, "%s: cannot create the lock: %s", p, strerror(errno));
        const long pid = lock_pid(p);
        if (lock_stale(p, pid)) {
            if (log) fprintf(log, "ablate: %s: pid %ld is gone, taking the lock over\n", p, pid);
            take_over(p, pid);
            continue;
        }
        if (!said && log) fprintf(log, "ablate: %s: waiting for pid %ld\n", p, pid);
        said = 1;
        struct timespec ts = {(time_t)poll_s, (long)((poll_s - (double)(time_t)poll_s) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

void moe_ablate_unlock(const char *p) { unlink(p); }

/* out: the relative path from folder `from` to file `to` (both absolute,
 * without . / .. / symlinks). */
static void rel_path(const char *from, const char *to, char *out, size_t cap) {
    size_t i = 0, last = 0;
    while (from[i] && from[i] == to[i]) {
        if (from[i] == '/') last = i;
        i++;
    }
    if (!from[i] && to[i] == '/') last = i;
    size_t at = 0;
    out[0] = '\0';
    for (const char *s = from + last; *s; s++)
        if (*s == '/' && at + 4 < cap) at += (size_t)snprintf(out + at, cap - at, "../");
    snprintf(out + at, cap - at, "%s", to + last + 1);
}

moe_status moe_ablate_link(const char *target, const char *entry) {
    char dir[1200], tdir[PATH_MAX], edir[PATH_MAX], to[PATH_MAX + 64], rel[2 * PATH_MAX];
    const char *tname = strrchr(target, '/') ? strrchr(target, '/') + 1 : target;
    snprintf(dir, sizeof dir, "%s", target);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    if (!realpath(dir, tdir))
        return moe_fail(MOE_EIO, "%s: cannot resolve the folder: %s", dir, strerror(errno));
    snprintf(dir, sizeof dir, "%s", entry);
    slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    if (!realpath(dir, edir))
        return moe_fail(MOE_EIO, "%s: cannot resolve the folder: %s", dir, strerror(errno));
    snprintf(to, sizeof to, "%s/%s", tdir, tname);
    rel_path(edir, to, rel, sizeof rel);
    moe_status st = moe_ablate_remove_file(entry);
    if (st == MOE_OK && symlink(rel, entry) != 0)
        st = moe_fail(MOE_EIO, "%s: cannot link it to %s: %s", entry, rel, strerror(errno));
    return st;
}
