/* Fixture moe-run/1 files for the plot suite (results/FORMAT.md). */
#ifndef MOE_PLOT_FIXTURE_H
#define MOE_PLOT_FIXTURE_H

#include <stdint.h>

enum {
    FIX_S = 200,   /* training steps (step = 1..S)          */
    FIX_E = 4,     /* experts                               */
    FIX_LAYER = 1, /* the MoE layer (moe_layers = [1])      */
    FIX_V = 4,     /* validations (plus one extra-cf row)   */
    FIX_K = 10,    /* trace samples, at steps 20, 40, .. S  */
    FIX_T = 32,    /* tokens per sample                     */
    FIX_TK = 2,    /* ranks                                 */
    FIX_TAGS = 3   /* NOUN VERB ADJ                         */
};

/* Flags of fixture_run / fixture_dir. */
enum { FIX_NO_CE = 1, FIX_NO_TRACE = 2, FIX_NO_INI = 4 };

/* Known series: /train/ce row i of arm a; the mean tail
 * dropped_capacity of a run at capacity factor cf (its dropped_policy,
 * 0.02, is not part of it); each token's tag and its rank-0 expert in the
 * traces of the last 50% of steps. */
double fixture_ce(int arm, int64_t i);
double fixture_dropped(double cf);
static inline int fixture_tag(int t) { return t % FIX_TAGS; }
static inline int fixture_expert(int arm, int tag) { return (tag + arm) % FIX_E; }

/* Added to every /valid/ce row (not the extra-cf row) of the files
 * written next (0 unless a test sets it). */
extern double fixture_valid_offset;

/* The plot suite's tests of the forest and diff plots and the styles
 * (test_plot_claims.c), added to suite s. */
#include <CUnit/CUnit.h>
void plot_claims_tests(CU_pSuite s);

/* One run file of arm index `arm` (0 or 1) at capacity factor cf; 0 on
 * success. */
int fixture_run(const char *path, int arm, double cf, const char *name, int flags);
/* A results folder: cf1-s1.h5 (arm 0, cf 1), cf2-s1.h5 (arm 1, cf 2), an
 * HDF5 file that is not a run (other.h5) and ablation.ini (x =
 * moe.capacity_factor, arms listed cf2 first, with labels). */
int fixture_dir(const char *dir, int flags);

#endif
