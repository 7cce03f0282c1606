/* The results folder of an ablation (ablation.h): its path, the path and
 * state of each arm's run file, and deleting what --force replaces. */
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

moe_status moe_ablate_remove_file(const char *path) {
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
            st = moe_ablate_remove_file(f);
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

/* Unlinking a folder's entry removes the symlink only: the store file it
 * points to stays for the other folders linking to it (runs_gc.sh). */
moe_status moe_ablate_clean(const moe_ablation *a, const char *dir) {
    char p[1200];
    moe_status st = MOE_OK;
    for (int i = 0; i < a->n_arms && st == MOE_OK; i++)
        for (int s = 0; s < a->n_seeds && st == MOE_OK; s++) {
            moe_ablate_arm_path(dir, a->arms[i].name, a->seeds[s], p, sizeof p);
            st = moe_ablate_remove_file(p);
        }
    const char *gen[] = {"table.md", "summary.csv"};
    for (int i = 0; i < 2 && st == MOE_OK; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, gen[i]);
        st = moe_ablate_remove_file(p);
    }
    return st == MOE_OK ? remove_plots(dir) : st;
}
