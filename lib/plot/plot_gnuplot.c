/* Running gnuplot on the plot scripts (see plot.h): fork + execvp, no
 * shell; output to temporary names renamed on success. */
#include "plot/plot.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int moe_plot_find_gnuplot(char *buf, size_t cap) {
    const char *path = getenv("PATH");
    if (!path || !*path) return 0;
    const char *p = path;
    while (*p) {
        size_t n = strcspn(p, ":");
        snprintf(buf, cap, "%.*s/gnuplot", (int)n, n ? p : ".");
        struct stat sb;
        if (stat(buf, &sb) == 0 && S_ISREG(sb.st_mode) && access(buf, X_OK) == 0) return 1;
        p += n + (p[n] == ':');
    }
    return 0;
}

void moe_plot_gp_quote(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s == '\n' ? ' ' : *s, f);
    }
    fputc('\'', f);
}

/* The last non-blank line of a file (gnuplot's error) into out. */
static void last_line(const char *path, char *out, size_t cap) {
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        size_t n = strcspn(line, "\r\n");
        line[n] = '\0';
        char *s = line;
        while (*s == ' ' || *s == '\t' || *s == '^') s++;
        if (*s) snprintf(out, cap, "%.*s", (int)(cap - 1), s);
    }
    fclose(f);
}

/* Runs gnuplot in dir with its stderr to log; returns the exit status
 * (-1 if it could not start). */
static int run_gnuplot(const char *gnuplot, const char *dir, const char *arg_e,
                       const char *script, const char *log) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int nul = open("/dev/null", O_RDWR);
        if (fd >= 0) dup2(fd, 2);
        if (nul >= 0) dup2(nul, 1), dup2(nul, 0);
        if (chdir(dir) != 0) _exit(126);
        char *argv[] = {(char *)gnuplot, "-e", (char *)arg_e, (char *)script, NULL};
        execv(gnuplot, argv);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Nonzero if path is a non-empty regular file. */
static int non_empty(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0;
}

moe_status moe_plot_gp_render(const char *gnuplot, const char *data_dir,
                              const char *out_dir, const char *name,
                              int png, int svg) {
    char tmp[1024], arg[1200], script[256], log[1024];
    /* the script runs in data_dir: the output prefix is absolute */
    char cwd[512] = "";
    if (out_dir[0] != '/' && !getcwd(cwd, sizeof cwd))
        return moe_fail(MOE_EIO, "%s: cannot get the current folder (%s)", out_dir, strerror(errno));
    snprintf(tmp, sizeof tmp, "%s%s%s/.%s.tmp", cwd, cwd[0] ? "/" : "", out_dir, name);
    if (strchr(tmp, '\'') || strchr(tmp, '\n'))
        return moe_fail(MOE_EINVAL, "%s: a quote or newline in the output path", out_dir);
    snprintf(arg, sizeof arg, "out='%s'", tmp);
    snprintf(script, sizeof script, "%s.gp", name);
    snprintf(log, sizeof log, "%s/%s.log", data_dir, name);
    int rc = run_gnuplot(gnuplot, data_dir, arg, script, log);
    const char *ext[2] = {"png", "svg"};
    int want[2] = {png, svg};
    char from[1100], to[1100];
    int ok = rc == 0;
    for (int i = 0; i < 2; i++) {
        snprintf(from, sizeof from, "%s.%s", tmp, ext[i]);
        if (want[i] && !non_empty(from)) ok = 0;
    }
    for (int i = 0; i < 2; i++) {
        snprintf(from, sizeof from, "%s.%s", tmp, ext[i]);
        snprintf(to, sizeof to, "%s/%s.%s", out_dir, name, ext[i]);
        if (ok && want[i] && rename(from, to) != 0) {
            unlink(from);
            return moe_fail(MOE_EIO, "%s: %s", to, strerror(errno));
        }
        if (!ok) unlink(from);
    }
    if (ok) {
        unlink(log);
        return MOE_OK;
    }
    char why[400];
    last_line(log, why, sizeof why);
    return moe_fail(MOE_EIO, "%s/%s: gnuplot failed (exit %d)%s%s", data_dir, script, rc,
                    why[0] ? ": " : "", why);
}
