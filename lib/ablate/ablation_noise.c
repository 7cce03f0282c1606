/* Seed noise for the claims of an ablation table (ablation.h): the spread
 * of a quality metric over the seeds of a baseline run folder. */
#include "ablate/ablation.h"

#include <dirent.h>
#include <math.h>
#include <string.h>

/* The quality metric of m that seed noise applies to (valid_ppl@2 ->
 * valid_ppl), or NULL for the others (routing statistics, cost). */
static const char *quality_metric(const char *m, char *buf, size_t cap) {
    static const char *const q[] = {"valid_ppl", "valid_ce", "valid_nlp", "valid_acc", NULL};
    snprintf(buf, cap, "%.*s", (int)strcspn(m, "@"), m);
    for (int i = 0; q[i]; i++)
        if (!strcmp(buf, q[i])) return buf;
    return NULL;
}

/* dir/../../noise, with "-quick" when dir itself is a quick folder. */
static void noise_dir(const char *dir, const char *noise, char *out, size_t cap) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    const int quick = n > 6 && !strncmp(dir + n - 6, "-quick", 6);
    for (int up = 0; up < 2; up++) {
        while (n > 0 && dir[n - 1] != '/') n--; /* drop the last component */
        while (n > 1 && dir[n - 1] == '/') n--;
    }
    if (n == 0) snprintf(out, cap, "%s%s", noise, quick ? "-quick" : "");
    else snprintf(out, cap, "%.*s/%s%s", (int)n, dir, noise, quick ? "-quick" : "");
}

double moe_ablation_noise_sd(const char *dir, const char *noise, const char *metric,
                             int *n_runs) {
    char m[48], nd[1024];
    *n_runs = 0;
    if (!noise[0] || !quality_metric(metric, m, sizeof m)) return NAN;
    noise_dir(dir, noise, nd, sizeof nd);
    DIR *d = opendir(nd);
    if (!d) return NAN;
    double v[256], sum = 0, sq = 0;
    int n = 0;
    const char *names[1] = {m};
    for (struct dirent *e = readdir(d); e && n < 256; e = readdir(d)) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".h5") || !strstr(e->d_name, "-s")) continue;
        char p[1400];
        int fin = 0;
        snprintf(p, sizeof p, "%s/%s", nd, e->d_name);
        if (moe_run_metrics(p, names, 1, &v[n], &fin) == MOE_OK && fin && isfinite(v[n]))
            sum += v[n++];
    }
    closedir(d);
    if (n < 2) return NAN;
    for (int i = 0; i < n; i++) sq += (v[i] - sum / n) * (v[i] - sum / n);
    *n_runs = n;
    return sqrt(sq / (n - 1));
}
