/* The layer object and the interface a routing family implements.
 *
 * Most families are "routers": they write a list of choices (expert,
 * token, gate, id) into the layer's ch_* arrays; the shared core builds
 * the plan, gathers rows per expert, runs the experts (one sgemm per
 * expert product) and combines. Backward: the core computes dL/dgate of
 * every row (dgate_row, in plan row order, with plan.row_id the family's
 * id of the choice) and the experts' gradients; the family then
 * differentiates its router. A family with its own pipeline (Soft MoE)
 * sets forward/backward instead and reuses moe_layer_experts_*. */
#ifndef MOE_LAYER_INTERNAL_H
#define MOE_LAYER_INTERNAL_H

#include "core/dispatch.h"
#include "core/expert.h"
#include "core/router.h"
#include "base/workspace.h"

#include <stdbool.h>

typedef struct moe_family_ops moe_family_ops;

/* Seconds spent in each phase of the router path, accumulated over the
 * calls made while timing is on (moe_layer_set_timing); families with
 * their own pipeline (soft_moe) record only the two totals. */
typedef struct {
    double route, dispatch, experts, combine;                 /* forward  */
    double combine_bwd, experts_bwd, dispatch_bwd, route_bwd; /* backward */
    double forward, backward; /* whole calls                              */
} moe_layer_timing;

struct moe_layer {
    moe_config cfg;
    const moe_family_ops *ops;
    int train;
    uint64_t stream;
    const int32_t *token_ids; /* (T) or NULL: set_token_ids            */
    int64_t draw_t0;          /* global index of token 0 of the batch:
                                 offsets the router-noise and policy
                                 draws, so that a slice of a batch
                                 (expert parallelism, lib/mpi/) draws
                                 what the whole batch would; 0 otherwise */
    int64_t draw_T;           /* tokens of that whole batch (row q of the
                                 policy draws at q * draw_T); 0: T       */
    int32_t G, n, T, cap;     /* routing groups, tokens per group, tokens,
                                 cap (group_size S > 0: G = T / S, n = S) */
    int32_t seq;              /* sequence length of the batch (<= n)   */
    int64_t n_choice;         /* choices written by the router         */
    moe_gate_rule rule;       /* token-choice families                 */
    moe_gating gating;
    moe_plan plan;
    moe_aux aux;
    moe_route route;          /* filled by the family (views)          */
    void *fam;                /* family state, freed by ops->free      */
    moe_layer_timing *timing; /* NULL: no phase timing (default)       */
    /* Workspace of the core and of the token-choice families, one
     * buffer per role, grown on demand by moe_layer_ensure (its table in
     * layer.c gives each buffer's shape); contents not kept across sizes. */
    MOE_WS_FIELD(float, logits); MOE_WS_FIELD(float, probs);
    MOE_WS_FIELD(float, lse); MOE_WS_FIELD(float, draws);
    MOE_WS_FIELD(int32_t, expert); MOE_WS_FIELD(float, gate);
    MOE_WS_FIELD(float, gate_out); MOE_WS_FIELD(float, denom);
    MOE_WS_FIELD(uint8_t, routed); MOE_WS_FIELD(int32_t, pos);
    MOE_WS_FIELD(int32_t, order); MOE_WS_FIELD(int32_t, tmp);
    MOE_WS_FIELD(float, key); MOE_WS_FIELD(int32_t, count);
    MOE_WS_FIELD(float, first_frac);
    MOE_WS_FIELD(int32_t, ch_expert); MOE_WS_FIELD(int32_t, ch_token);
    MOE_WS_FIELD(int32_t, ch_id); MOE_WS_FIELD(float, ch_gate);
    MOE_WS_FIELD(int32_t, offset); MOE_WS_FIELD(int32_t, row_token);
    MOE_WS_FIELD(int32_t, row_id); MOE_WS_FIELD(float, row_gate);
    MOE_WS_FIELD(int32_t, tok_offset); MOE_WS_FIELD(int32_t, tok_rows);
    MOE_WS_FIELD(float, xe); MOE_WS_FIELD(float, saved);
    MOE_WS_FIELD(float, ye); MOE_WS_FIELD(float, dye);
    MOE_WS_FIELD(float, scratch); MOE_WS_FIELD(float, dxe);
    MOE_WS_FIELD(float, dgate_row); MOE_WS_FIELD(float, dgate);
    MOE_WS_FIELD(float, dprobs); MOE_WS_FIELD(float, dlogits);
    MOE_WS_FIELD(int32_t, ec_token); MOE_WS_FIELD(float, ec_gate);
    MOE_WS_FIELD(float, xr); MOE_WS_FIELD(float, noise);
};

/* A routing family: its facts (read by lib/families/registry.c, which
 * holds one line per family) and its hooks (called by the layer core).
 * The core never names a family; families sit above it. */
struct moe_family_ops {
    /* ---- facts */
    const char *name; /* moe_family_name / moe_family_parse, e.g. "hash" */
    /* Fills the family's fields of c after the shared defaults
     * (moe_config_base); NULL: none. */
    void (*defaults)(moe_config *c);
    /* Checks the family's own fields (the shared ones are checked before):
     * MOE_EINVAL with a one-line message naming field, value and the
     * allowed range; NULL: nothing to check. */
    moe_status (*validate)(const moe_config *c);
    bool causal_ok;    /* routing never looks at later tokens (decoder)  */
    bool has_balance;  /* a balance loss: balance_coef may be != 0       */
    bool has_z_loss;   /* a softmax router: z_coef may be != 0           */
    bool bpr_ok;       /* priority = bpr supported                       */
    bool token_choice; /* router_noise and straight_through supported    */
    bool group_ok;     /* group_size != 0 supported (groups of sequences) */
    bool ranked;       /* moe_route is k ranks per token: expert,
                          position, gate (k, T) (route_stats.c)          */
    /* Sets L->rule beyond moe_layer_new's defaults (policy all, no
     * normalisation, cfg's priority, token-major if causal); NULL: none. */
    void (*gate_rule)(moe_layer *L);
    /* ---- hooks */
    /* Most choices the router can write for G groups of n tokens. */
    size_t (*max_choices)(const moe_layer *L, int32_t G, int32_t n);
    /* Routes x (T, d): writes L->ch_* (n_choice entries, in the order
     * that fixes each expert's row order), L->aux (losses and counts, and
     * aux_loss) and L->route; L->G, n, T are set and the core workspace
     * is sized. */
    moe_status (*route)(moe_layer *L, const moe_params *p, const float *x,
                        const float *draws);
    /* Router backward: L->dgate_row (R) holds dL/d(row gate); ADDS the
     * router's parameter gradients into g and dL/dx into dx. */
    void (*route_backward)(moe_layer *L, const moe_params *p, const float *x,
                           moe_params *g, float *dx);
    /* Own pipeline instead of the router path (NULL for routers). */
    moe_status (*forward)(moe_layer *L, const moe_params *p, const float *x,
                          const float *draws, float *y);
    moe_status (*backward)(moe_layer *L, const moe_params *p, const float *x,
                           const float *dy, moe_params *g, float *dx);
    /* Frees L->fam (may be NULL). */
    void (*free)(moe_layer *L);
};

/* A layer for cfg (already validated) run by ops: the gate rule set from
 * cfg and ops->gate_rule. MOE_ENOMEM with a message if allocation fails.
 * moe_layer_create (lib/families/registry.c) calls it. */
moe_status moe_layer_new(const moe_config *cfg, const moe_family_ops *ops,
                         moe_layer **out);

/* Phase timing of the following calls into *t (not cleared here: the
 * caller zeroes it), or off with t = NULL. Costs two clock reads per
 * phase when on, one branch when off. */
void moe_layer_set_timing(moe_layer *L, moe_layer_timing *t);

/* Sizes the core workspace for G groups of n tokens (router families);
 * MOE_ENOMEM / MOE_EINVAL with a message. moe_layer_forward calls it; a
 * family's own forward (or a wrapper, lib/mpi/ep_layer.c) may too. */
moe_status moe_layer_ensure(moe_layer *L, int32_t G, int32_t n);
/* Bytes the core workspace of L holds now (not the family's state). */
size_t moe_layer_workspace_bytes(const moe_layer *L);
/* After the router: L->plan of its L->n_choice choices over L->T tokens,
 * and aux.n_tokens_unrouted counted from it. */
void moe_layer_plan(moe_layer *L);
/* Runs expert j (cfg's ops, moe_expert_ops_of) on rows offset[j] ..
 * offset[j+1]-1 of xe (R, d) for every j < E, experts in parallel:
 * ye (R, d), saved (R, moe_expert_saved) kept for backward. Every family
 * runs its experts through this pair. */
void moe_layer_experts_forward(const moe_config *c, const moe_params *p,
                               const int32_t *offset, const float *xe,
                               float *saved, float *ye);
/* Its backward: ADDS expert gradients into g, WRITES dxe (R, d); scratch
 * (R, moe_expert_scratch). */
void moe_layer_experts_backward(const moe_config *c, const moe_params *p,
                                moe_params *g, const int32_t *offset,
                                const float *xe, const float *saved,
                                const float *dye, float *scratch, float *dxe);

#endif
