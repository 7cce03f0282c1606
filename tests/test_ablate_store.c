/* Suite ablation, part 3: the run store (lib/ablate/ablate_store.c). Two
 * ablation files sharing an arm train it once; keys, locks, --force, and
 * the table through the folders' symlinks. Synthetic quick runs (2 steps). */
#include "ablate/ablation.h"
#include "io/h5io.h"
#include "io/rundiff.h"
#include "io/runlog.h"
#include "test_ablation.h"
#include "test_util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Two ablation files: one: a (the base) and b (top-1); two: same (the base,
 * another arm name: shares a's run) and lr (one key changed: its own). */
static const char *ini_one(void) {
    fx_base();
    return fx_text("st_one.ini", "[ablation]\npaper = p\nbase = base.ini\ncolumns = valid_ppl\n"
                                 "[arm a]\n[arm b]\nmoe.family = switch_top1\nmoe.top_n = 1\n");
}
static const char *ini_two(void) {
    fx_base();
    return fx_text("st_two.ini", "[ablation]\npaper = p\nbase = base.ini\ncolumns = valid_ppl\n"
                                 "[arm same]\n[arm lr]\noptim.lr = 0.002\n");
}

/* Runs ablation file ini into tmpdir folder `out` with store `runs`; the
 * log (header lines) into log (cap bytes). */
static moe_status ablate(const char *ini, const char *out, const char *runs, int force,
                         char *log, size_t cap) {
    moe_ablation *a = NULL;
    moe_status st = moe_ablation_load(ini, &a);
    char o_dir[400], r_dir[400];
    snprintf(o_dir, sizeof o_dir, "%s", tmpdir_path(out));
    snprintf(r_dir, sizeof r_dir, "%s", tmpdir_path(runs));
    FILE *lf = tmpfile();
    moe_ablate_opts o = {0};
    o.quick = 1, o.force = force, o.out = o_dir, o.runs = r_dir, o.log = lf;
    if (st == MOE_OK) st = moe_ablate_run(a, &o, NULL, 0);
    moe_ablation_free(a);
    log[0] = '\0';
    if (lf) {
        rewind(lf);
        size_t n = fread(log, 1, cap - 1, lf);
        log[n] = '\0';
        fclose(lf);
    }
    return st;
}

/* The stat of tmpdir file name (through symlinks). */
static struct stat stat_of(const char *name) {
    struct stat sb;
    memset(&sb, 0, sizeof sb);
    CU_ASSERT_EQUAL(stat(tmpdir_path(name), &sb), 0);
    return sb;
}

/* Files named *.h5 in tmpdir folder dir. */
static int count_h5(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c '\\.h5$'", tmpdir_path(dir));
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *s = strstr(hay, needle); s; s = strstr(s + 1, needle)) n++;
    return n;
}

void test_two_ablations_sharing_an_arm_train_it_once(void) {
    static char log[8192];
    CU_ASSERT_EQUAL_FATAL(ablate(ini_one(), "s1", "runs_s", 0, log, sizeof log), MOE_OK);
    CU_ASSERT_EQUAL(count(log, "cached"), 0);
    CU_ASSERT_EQUAL(count_h5("runs_s"), 2);
    struct stat a0 = stat_of("s1/a-s1.h5");
    CU_ASSERT_EQUAL_FATAL(ablate(ini_two(), "s2", "runs_s", 0, log, sizeof log), MOE_OK);
    /* `same` is a's run: reused (one "cached" line), not trained again */
    CU_ASSERT_EQUAL(count(log, "cached"), 1);
    CU_ASSERT_EQUAL(count_h5("runs_s"), 3);
    struct stat a1 = stat_of("s1/a-s1.h5"), same = stat_of("s2/same-s1.h5");
    CU_ASSERT_EQUAL(a1.st_ino, a0.st_ino);
    CU_ASSERT_EQUAL(a1.st_mtim.tv_sec, a0.st_mtim.tv_sec);
    CU_ASSERT_EQUAL(a1.st_mtim.tv_nsec, a0.st_mtim.tv_nsec);
    CU_ASSERT_EQUAL(same.st_ino, a0.st_ino);
    CU_ASSERT_NOT_EQUAL(stat_of("s2/lr-s1.h5").st_ino, a0.st_ino); /* one key changed */
    /* the folder entries are relative symlinks into the store */
    char link[400] = "";
    ssize_t n = readlink(tmpdir_path("s2/same-s1.h5"), link, sizeof link - 1);
    CU_ASSERT(n > 0);
    link[n > 0 ? n : 0] = '\0';
    CU_ASSERT_EQUAL(strncmp(link, "../runs_s/", 10), 0);
    /* the same bits as training it alone, into another store */
    CU_ASSERT_EQUAL_FATAL(ablate(ini_two(), "s3", "runs_alone", 0, log, sizeof log), MOE_OK);
    CU_ASSERT_EQUAL(count(log, "cached"), 0);
    moe_run_diff_opts dopt = {0, 0, 1, NULL};
    dopt.out = tmpfile();
    moe_run_diff_result res;
    CU_ASSERT_EQUAL(moe_run_diff(tmpdir_path("s2/same-s1.h5"), tmpdir_path("s3/same-s1.h5"),
                                 &dopt, &res), MOE_OK);
    CU_ASSERT(res.series > 10);
    CU_ASSERT_EQUAL(res.differ, 0);
    CU_ASSERT_EQUAL(res.mismatched, 0);
    if (dopt.out) fclose(dopt.out);
    CU_ASSERT_STRING_EQUAL(fx_read(tmpdir_path("s3/summary.csv")),
                           fx_read(tmpdir_path("s2/summary.csv")));
}

void test_the_key_changes_with_the_config_hash_and_the_code_rev(void) {
    char k0[17], k1[17], k2[17], k3[17];
    moe_ablate_run_key("0123456789abcdef", "abc", k0);
    moe_ablate_run_key("0123456789abcdef", "abc", k1);
    moe_ablate_run_key("0123456789abcdee", "abc", k2);
    moe_ablate_run_key("0123456789abcdef", "abc-dirty", k3);
    CU_ASSERT_STRING_EQUAL(k0, k1);
    CU_ASSERT_STRING_NOT_EQUAL(k0, k2);
    CU_ASSERT_STRING_NOT_EQUAL(k0, k3);
    CU_ASSERT_EQUAL(strlen(k0), 16);
    CU_ASSERT_EQUAL(strspn(k0, "0123456789abcdef"), 16);
    /* a finished store file matches only its own config_hash and code_rev */
    char log[4096];
    CU_ASSERT_EQUAL_FATAL(ablate(ini_one(), "k1", "runs_k", 0, log, sizeof log), MOE_OK);
    hid_t f;
    char hash[32] = "", rev[64] = "";
    const char *p = tmpdir_path("k1/a-s1.h5");
    CU_ASSERT_EQUAL_FATAL(moe_h5_open_ro(p, &f), MOE_OK);
    CU_ASSERT_EQUAL(moe_h5_attr_string(f, "config_hash", hash, sizeof hash, p), MOE_OK);
    CU_ASSERT_EQUAL(moe_h5_attr_string(f, "code_rev", rev, sizeof rev, p), MOE_OK);
    CU_ASSERT(!moe_h5_has_attr(f, "arm")); /* shared files name no arm */
    static char config[16384];
    CU_ASSERT_EQUAL(moe_h5_attr_string(f, "config", config, sizeof config, p), MOE_OK);
    CU_ASSERT_PTR_NULL(strstr(config, ".part")); /* trained into KEY.h5.part, named KEY.h5 */
    CU_ASSERT_PTR_NOT_NULL(strstr(config, "runs_k/"));
    H5Fclose(f);
    CU_ASSERT_STRING_EQUAL(rev, moe_runlog_code_rev());
    char key[17], name[64];
    moe_ablate_run_key(hash, rev, key);
    snprintf(name, sizeof name, "runs_k/%s.h5", key); /* the file is named by its key */
    CU_ASSERT_EQUAL(stat_of(name).st_ino, stat_of("k1/a-s1.h5").st_ino);
    CU_ASSERT(moe_ablate_store_match(p, hash, rev));
    CU_ASSERT(!moe_ablate_store_match(p, hash, "other"));
    CU_ASSERT(!moe_ablate_store_match(p, "0000000000000000", rev));
    CU_ASSERT(!moe_ablate_store_match(tmpdir_path("k1/none.h5"), hash, rev));
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void test_a_stale_lock_is_taken_over_and_a_live_one_waited_for(void) {
    const char *p = fx_text("k.lock", "");
    unlink(p);
    /* a dead pid: a child that has exited and been reaped */
    pid_t c = fork();
    CU_ASSERT_FATAL(c >= 0);
    if (c == 0) _exit(0);
    waitpid(c, NULL, 0);
    char txt[32];
    snprintf(txt, sizeof txt, "%ld\n", (long)c);
    fx_text("k.lock", txt);
    double t0 = now_s();
    CU_ASSERT_EQUAL(moe_ablate_lock(p, NULL, 0.01), MOE_OK);
    CU_ASSERT(now_s() - t0 < 1);
    snprintf(txt, sizeof txt, "%ld\n", (long)getpid());
    CU_ASSERT_STRING_EQUAL(fx_read(p), txt);
    moe_ablate_unlock(p);
    CU_ASSERT_EQUAL(access(p, F_OK), -1);
    /* a live holder: waited for until it releases the lock (0.3 s) */
    c = fork();
    CU_ASSERT_FATAL(c >= 0);
    if (c == 0) {
        if (moe_ablate_lock(p, NULL, 0.01) != MOE_OK) _exit(1);
        struct timespec ts = {0, 300000000L};
        nanosleep(&ts, NULL);
        moe_ablate_unlock(p);
        _exit(0);
    }
    for (int i = 0; i < 2000 && access(p, F_OK) != 0; i++) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    t0 = now_s();
    CU_ASSERT_EQUAL(moe_ablate_lock(p, NULL, 0.01), MOE_OK);
    CU_ASSERT(now_s() - t0 > 0.1);
    int status = -1;
    waitpid(c, &status, 0);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_STRING_EQUAL(fx_read(p), txt);
    moe_ablate_unlock(p);
}

void test_force_retrains_only_the_folders_store_files(void) {
    static char log[8192];
    CU_ASSERT_EQUAL_FATAL(ablate(ini_one(), "f1", "runs_f", 0, log, sizeof log), MOE_OK);
    CU_ASSERT_EQUAL_FATAL(ablate(ini_two(), "f2", "runs_f", 0, log, sizeof log), MOE_OK);
    CU_ASSERT_EQUAL(count(log, "cached"), 1);
    struct stat a0 = stat_of("f1/a-s1.h5"), lr0 = stat_of("f2/lr-s1.h5");
    /* without --force a finished folder is refused, the store untouched */
    CU_ASSERT_EQUAL(ablate(ini_one(), "f1", "runs_f", 0, log, sizeof log), MOE_EINVAL);
    CU_ASSERT_EQUAL(stat_of("f1/a-s1.h5").st_ino, a0.st_ino);
    CU_ASSERT_EQUAL_FATAL(ablate(ini_one(), "f1", "runs_f", 1, log, sizeof log), MOE_OK);
    CU_ASSERT_EQUAL(count(log, "cached"), 0); /* both retrained */
    struct stat a1 = stat_of("f1/a-s1.h5");
    CU_ASSERT(a1.st_mtim.tv_sec != a0.st_mtim.tv_sec || a1.st_mtim.tv_nsec != a0.st_mtim.tv_nsec);
    CU_ASSERT_EQUAL(stat_of("f2/same-s1.h5").st_ino, a1.st_ino); /* f2 links to it still */
    CU_ASSERT_EQUAL(moe_ablate_arm_state(tmpdir_path("f2/same-s1.h5")), 1);
    /* f2's own run (lr) is neither deleted nor retrained */
    CU_ASSERT_EQUAL(stat_of("f2/lr-s1.h5").st_ino, lr0.st_ino);
    CU_ASSERT_EQUAL(count_h5("runs_f"), 3);
}

void test_the_table_through_symlinks_equals_the_old_layouts(void) {
    static char log[8192];
    CU_ASSERT_EQUAL_FATAL(ablate(ini_one(), "t_link", "runs_t", 0, log, sizeof log), MOE_OK);
    /* the old layout: the folder with regular files (cp -L) */
    char cmd[1200], from[400];
    snprintf(from, sizeof from, "%s", tmpdir_path("t_link"));
    snprintf(cmd, sizeof cmd, "cp -rL %s %s", from, tmpdir_path("t_copy"));
    CU_ASSERT_FATAL(system(cmd) == 0);
    struct stat sb;
    CU_ASSERT_EQUAL(lstat(tmpdir_path("t_copy/a-s1.h5"), &sb), 0);
    CU_ASSERT(S_ISREG(sb.st_mode));
    CU_ASSERT_EQUAL(lstat(tmpdir_path("t_link/a-s1.h5"), &sb), 0);
    CU_ASSERT(S_ISLNK(sb.st_mode));
    static char t_link[8192], t_copy[8192];
    CU_ASSERT_EQUAL(moe_ablation_table(tmpdir_path("t_link"), 1, NULL), MOE_OK);
    snprintf(t_link, sizeof t_link, "%s", fx_read(tmpdir_path("t_link/table.md")));
    CU_ASSERT_EQUAL(moe_ablation_table(tmpdir_path("t_copy"), 1, NULL), MOE_OK);
    snprintf(t_copy, sizeof t_copy, "%s", fx_read(tmpdir_path("t_copy/table.md")));
    CU_ASSERT_STRING_EQUAL(t_link, t_copy);
    CU_ASSERT_PTR_NULL(strstr(t_link, "not run"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t_link, "| b "));
    /* --force on the old layout replaces its regular files by links */
    CU_ASSERT_EQUAL(ablate(ini_one(), "t_copy", "runs_t", 1, log, sizeof log), MOE_OK);
    CU_ASSERT_EQUAL(lstat(tmpdir_path("t_copy/a-s1.h5"), &sb), 0);
    CU_ASSERT(S_ISLNK(sb.st_mode));
}
