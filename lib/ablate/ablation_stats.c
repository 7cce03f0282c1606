/* Paired statistics over seeds for the claims of an ablation table
 * (ablation.h): Student's t quantile, the paired confidence interval and
 * the verdict it gives. */
#include "ablate/ablation.h"

#include <math.h>

double moe_t975(int df) {
    /* t_{0.975, df} for df = 1..30 (standard tables, 4 digits) */
    static const double t[30] = {
        12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
        2.2010,  2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
        2.0796,  2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423};
    MOE_ASSERT(df >= 1);
    if (df <= 30) return t[df - 1];
    /* Cornish-Fisher expansion around z = 1.959964: error < 1e-4 for df > 30 */
    const double z = 1.959964, n = df;
    return z + (z * z * z + z) / (4 * n) +
           (5 * pow(z, 5) + 16 * z * z * z + 3 * z) / (96 * n * n);
}

void moe_paired_ci(const double *d, int n, double *mean, double *lo, double *hi) {
    double sum = 0, sq = 0;
    for (int i = 0; i < n; i++) sum += d[i];
    *mean = n ? sum / n : NAN;
    *lo = *hi = NAN;
    if (n < 2) return;
    for (int i = 0; i < n; i++) sq += (d[i] - *mean) * (d[i] - *mean);
    const double half = moe_t975(n - 1) * sqrt(sq / (n - 1) / n);
    *lo = *mean - half, *hi = *mean + half;
}

const char *moe_claim_verdict(int less, int tie, double margin, double lo, double hi) {
    if (!isfinite(lo) || !isfinite(hi)) return "undecided";
    if (tie) {
        if (lo > -margin && hi < margin) return "reproduced";
        if (lo >= margin || hi <= -margin) return "contradicted";
        return "undecided";
    }
    if (less ? hi < 0 : lo > 0) return "reproduced";
    if (less ? lo > 0 : hi < 0) return "contradicted";
    return "undecided";
}
