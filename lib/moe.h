/* libmoe: mixture-of-experts layers in C, forward and backward.
 *
 * This header is the layer API: status codes, the configuration, the
 * layer, threading. It includes the rest of the public API: moe_rng.h
 * (the counter-based generator), moe_params.h (a layer's tensors),
 * moe_expert.h (user-defined experts), moe_block.h (the ST-MoE block).
 * The golden checker, a tool outside the library, is in moe_golden.h.
 *
 * Conventions (see lib/core/README.md):
 * - Tensors are row-major float32; every pointer carries its shape in a
 *   comment, e.g. x (T, d) where T = b * n tokens in b routing groups of n.
 * - Forward writes its outputs; backward ADDS into gradient buffers (zero
 *   them with moe_params_zero / memset first).
 * - Run-time failures (bad configuration, I/O, allocation) return a
 *   moe_status and leave a one-line message in moe_errmsg(). Programmer
 *   errors (NULL where forbidden, shapes that contradict the config) stop
 *   through MOE_ASSERT with file:line.
 */
#ifndef MOE_H
#define MOE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- status */

typedef enum {
    MOE_OK = 0,
    MOE_EINVAL,       /* invalid configuration or argument value */
    MOE_ENOMEM,       /* allocation failed */
    MOE_EIO,          /* file missing, unreadable or unwritable */
    MOE_EFORMAT,      /* file readable but not what was expected */
    MOE_EUNSUPPORTED, /* feature or family not implemented */
    MOE_EMISMATCH     /* a golden comparison failed */
} moe_status;

/* The message of the last failure on this thread ("" if none). The pointer
 * stays valid until the next failing call on the same thread. */
const char *moe_errmsg(void);
/* Name of a status code, e.g. "invalid argument". */
const char *moe_status_str(moe_status s);

#include "moe_rng.h"    /* moe_rng_*: the counter-based generator */
/* ---------------------------------------------------------------- config */

typedef enum {
    MOE_FAMILY_TOP2_GSHARD = 0, /* GShard top-2 with second-expert policies     */
    MOE_FAMILY_TOPN_STMOE,      /* ST-MoE top-n with per-rank thresholds        */
    MOE_FAMILY_SWITCH_TOP1,     /* Switch top-1, raw probability gate           */
    MOE_FAMILY_EXPERT_CHOICE,   /* Zhou et al. 2022: experts pick top-k tokens  */
    MOE_FAMILY_NOISY_TOPK,      /* Shazeer et al. 2017: noisy top-k, importance
                            and load losses, no capacity               */
    MOE_FAMILY_SOFT_MOE,        /* Puigcerver et al. 2023: soft slots          */
    MOE_FAMILY_DENSE_SOFTMAX,   /* every expert, softmax of a gate MLP         */
    MOE_FAMILY_HIERARCHICAL,    /* 2-level top-2 (mesh-tf moe_layer_v2)        */
    MOE_FAMILY_HASH             /* Roller et al. 2021: token id -> expert      */
    /* further families (e.g. "uniform") have no name here: get their
     * value with moe_family_parse */
} moe_family;

/* Number of registered families (lib/families/registry.c): the values
 * 0 .. MOE_FAMILY_COUNT - 1 are families, each with a name. */
int moe_family_count(void);
#define MOE_FAMILY_COUNT (moe_family_count())

/* Router exploration noise of the token-choice families, training only
 * (Switch Table 11): multiplicative input jitter U[1 - eps, 1 + eps] on the
 * router input, Gumbel noise added to the router logits, or input dropout:
 * each element of the router input is zeroed with probability eps and the
 * others scaled by 1 / (1 - eps). Jitter and dropout touch the router's
 * copy of x only (the experts see the clean x); their backward applies
 * the same multipliers to the router's input gradient. All draws come
 * from the layer's generator (seed, stream), one purpose per kind. */
typedef enum {
    MOE_NOISE_NONE = 0,
    MOE_NOISE_JITTER,
    MOE_NOISE_GUMBEL,
    MOE_NOISE_DROPOUT
} moe_router_noise;

/* Expert activations. geglu and swiglu are gated: W1 has 2h columns, the
 * first h the value v, the last h the gate g; a = v * gelu(g) (geglu) or
 * a = v * silu(g), silu(g) = g sigmoid(g) (swiglu, Mixtral's experts). */
typedef enum { MOE_ACT_RELU = 0, MOE_ACT_GELU, MOE_ACT_GEGLU, MOE_ACT_SWIGLU } moe_act;

/* Operands of the matrix products: float32, or bfloat16 (rounded to
 * nearest even) with float32 accumulation through libxsmm; parameters,
 * gradients and optimizer state stay float32 either way. */
typedef enum { MOE_FP32 = 0, MOE_BF16 } moe_precision;

typedef enum {
    MOE_POLICY_ALL = 0,   /* second expert always kept                   */
    MOE_POLICY_NONE,      /* never                                       */
    MOE_POLICY_THRESHOLD, /* kept if its renormalised gate > threshold   */
    MOE_POLICY_RANDOM     /* kept if u < gate / threshold                */
} moe_policy;

typedef enum {
    MOE_PRIORITY_TOKEN = 0, /* capacity slots filled in token order      */
    MOE_PRIORITY_BPR        /* batch prioritized: by descending top-1 p  */
} moe_priority;

/* Capacity of the ranked token-choice families (top2_gshard, topn_stmoe,
 * switch_top1): per expert and group of n tokens, with k the family's
 * ranks per token and min = min_expert_capacity,
 *   shared:     max(min, min(n, floor(n cf / e)))    (mesh_tensorflow;
 *               every rank shares it: the golden files)
 *   per_choice: max(min, min(n, floor(k n cf / e)))  (GShard's 2N/E) */
typedef enum { MOE_CAPACITY_SHARED = 0, MOE_CAPACITY_PER_CHOICE } moe_capacity_mode;

/* The built-in expert networks (cfg->expert = NULL): the FFN, or the
 * Soft MoE write-up's LayerNorm MLP (moe_expert_ln_mlp). */
typedef enum { MOE_EXPERT_FFN = 0, MOE_EXPERT_LN_MLP } moe_expert_kind;

/* The router matrices at init: drawn like every matrix (default), or 0
 * (Shazeer et al. 2017 App. A start W_g and W_noise at zero). */
typedef enum { MOE_ROUTER_INIT_NORMAL = 0, MOE_ROUTER_INIT_ZERO } moe_router_init;

/* Soft MoE's routing ablations (Puigcerver et al. 2023, Table 2): the
 * dispatch weights D (softmax over a group's tokens, or uniform 1/n) and
 * the combine weights C (softmax over a token's slots, or uniform 1/S);
 * identity: D = C = the identity, slot j is token j of the group (needs
 * n_expert x slots = the group's tokens), no token mixing. */
typedef enum {
    MOE_SOFT_SOFT = 0,      /* learned dispatch and combine (Soft MoE)     */
    MOE_SOFT_SOFT_UNIFORM,  /* learned dispatch, uniform combine           */
    MOE_SOFT_UNIFORM_SOFT,  /* uniform dispatch, learned combine           */
    MOE_SOFT_UNIFORM,       /* both uniform                                */
    MOE_SOFT_IDENTITY       /* slot j = token j                            */
} moe_soft_variant;

#define MOE_MAX_TOPN 8

/* A user-defined expert network (see "experts" below); NULL in a config
 * means the built-in FFN (moe_expert_ffn). */
typedef struct moe_expert_ops moe_expert_ops;

typedef struct {
    /* ------------------------------------------- every family */
    moe_family family;
    int32_t d_model;     /* d: token width                               */
    int32_t d_hidden;    /* h: expert hidden width (gated: value width)  */
    int32_t n_expert;    /* e (hierarchical: the outer count)            */
    int32_t top_n;       /* ranks per token: top2 = 2, switch = 1,
                            noisy_topk and uniform: k                    */
    moe_act act;
    bool bias;           /* experts have b1, b2                          */
    bool mult_bias;      /* gated experts: multiplicative bias (e, h)    */
    float capacity_factor_train;
    float capacity_factor_eval;
    float balance_coef;  /* GShard/Switch balance loss (token choice,
                            hierarchical: both levels)                   */
    float z_coef;        /* router z-loss (any softmax-router family)    */
    uint64_t seed;       /* key of the layer's random draws              */
    bool causal;         /* decoder use: a token's output never depends
                            on later tokens. Capacity slots are filled
                            token by token (every rank of token t before
                            token t+1) instead of rank by rank; expert
                            choice, soft_moe, hierarchical and BPR are
                            refused (their routing looks ahead)         */
    /* The experts' network: NULL = the built-in FFN (act, bias, mult_bias,
     * d_hidden above); otherwise user ops, kept by pointer (they must
     * outlive every layer and parameter view made with this config). */
    const moe_expert_ops *expert;
    /* The built-in experts when expert is NULL: ffn (default) or ln_mlp
     * (moe_expert_ln_mlp); must be ffn when expert is set. */
    moe_expert_kind expert_kind;
    /* ------------- token-choice families (top2, topn, switch) */
    int32_t min_expert_capacity; /* capacity floor (mesh_tensorflow's
                            moe_min_expert_capacity), default 4; also
                            hierarchical's both levels                  */
    moe_capacity_mode capacity_mode; /* shared (default) or per_choice  */
    /* Tokens per routing group (capacity, slot positions and the balance
     * loss's means are per group): 0 (default) = one group per sequence
     * (the n tokens of one b row); S > 0 = groups of S consecutive tokens
     * of the (b, n) batch, spanning S / n sequences: S must be a multiple
     * of n and divide b n (else moe_layer_forward fails with MOE_EINVAL).
     * With causal, slots fill position-major across the group (every
     * sequence's position t before any position t + 1). Token-choice
     * families and topk_dropless only; the others refuse S != 0. */
    int32_t group_size;
    moe_priority priority; /* topn_stmoe and switch_top1 only            */
    moe_router_noise router_noise; /* training only                    */
    float router_noise_eps; /* jitter half-width in (0, 1) (router_noise
                            = jitter); drop probability in [0, 1)
                            (router_noise = dropout)                    */
    /* Straight-through dispatch (st-moe-pytorch's default). An expert
     * input row is x_t * (1 + g - stopgrad(g)) for the row's combine
     * weight g: the same value as x_t, but dL/dg gains <dL/dxe_row, x_t>.
     * false (default): the dispatch carries no gradient (mesh_tensorflow). */
    bool straight_through;
    /* The experts' products (built-in FFN), forward and backward: fp32
     * (default) or bf16 operands with float32 sums. */
    moe_precision precision;
    /* The router logits (token-choice families) from the router input and
     * weights rounded to bf16 (MOE_BF16; float32 sums, its backward is
     * float32) or float32 (default): Switch's "selective precision". */
    moe_precision router_precision;
    /* normal (default): the router matrices (w_gate, hierarchical's
     * w_gate_inner) drawn N(0, init_scale^2 / d); zero: all 0, so every
     * expert starts equally likely (noisy_topk's w_noise starts at 0
     * either way). Only the families whose router is a matrix (token
     * choice, expert_choice, noisy_topk, hierarchical, topk_dropless);
     * moe_config_validate refuses zero for the others. */
    moe_router_init router_init;
    /* ------------------------------------- each family's own */
    struct {             /* top2_gshard and hierarchical                 */
        moe_policy policy;   /* second-expert policy                     */
        float threshold;     /* threshold / random policy                */
    } gshard;
    struct {             /* topn_stmoe                                   */
        float thresholds[MOE_MAX_TOPN]; /* [r] for rank r+1 >= 2 (r >= 1);
                                           [0] is unused (rank 1 always) */
    } stmoe;
    struct {             /* noisy_topk (top_n is k)                      */
        bool noisy;          /* learned noise std at training time       */
        float noise_epsilon; /* added to softplus(x w_noise)             */
        float w_importance, w_load;
    } noisy_topk;
    struct {             /* soft_moe                                     */
        int32_t slots;       /* per expert                               */
        bool normalize;      /* l2-normalise tokens and phi, learned scale */
        moe_soft_variant variant; /* Table 2 ablations (default soft);
                                the experts see the normalised tokens
                                (normalize) whatever the variant        */
    } soft_moe;
    struct {             /* dense_softmax                                */
        int32_t d_gate;      /* hidden width of the gate MLP             */
    } dense_softmax;
    struct {             /* hierarchical                                 */
        int32_t n_expert_inner;
        /* capacity factor of the inner level (mesh_tensorflow's
         * moe_capacity_factor_second_level, used in training and eval
         * alike); 0 (default): the outer level's factor of the mode */
        float capacity_factor_second_level;
    } hierarchical;
    struct {             /* topk_dropless (top_n is k)                   */
        bool renormalize;    /* weights = the k probabilities over their
                                sum (Mixtral; default, set by every
                                moe_config_default); false: the raw
                                probabilities (OLMoE, Qwen-MoE)         */
    } dropless;
    struct {             /* expert_choice                                */
        int32_t cap;         /* EC-CAP (Zhou et al. 2022 Table 4): a token
                                is taken by at most cap experts; 0
                                (default): no cap                        */
    } expert_choice;
} moe_config;

/* Defaults for a family: d=0 etc. must still be set by the caller.
 * top2: policy random, threshold 0.2, cf 1.25 / 2.0, balance 1e-2;
 * topn: top_n 2, thresholds 0.2, z 1e-3; switch: cf 1.25 / 2.0, no z-loss;
 * expert choice: cf 2.0, no balance loss. z_coef may be set on any family
 * (the router z-loss applies to every softmax router). */
moe_config moe_config_default(moe_family family);
/* Checks every field; MOE_EINVAL with a message naming the field and the
 * allowed range otherwise. */
moe_status moe_config_validate(const moe_config *cfg);

const char *moe_family_name(moe_family f);
const char *moe_act_name(moe_act a);
const char *moe_policy_name(moe_policy p);
/* Name lookups: MOE_EINVAL with the allowed values listed on failure. */
moe_status moe_family_parse(const char *s, moe_family *out);
moe_status moe_act_parse(const char *s, moe_act *out);
moe_status moe_policy_parse(const char *s, moe_policy *out);
moe_status moe_priority_parse(const char *s, moe_priority *out);

/* Capacity of one expert in a group of n tokens:
 * max(4, min(n, floor(n * capacity_factor / e))). */
int32_t moe_capacity(int32_t n, int32_t n_expert, double capacity_factor);
/* The same with the floor min_capacity (>= 0) and k choices per token
 * sharing the factor (k >= 1):
 * max(min_capacity, min(n, floor(k * n * capacity_factor / e))).
 * moe_capacity(n, e, cf) = moe_capacity_min_k(n, e, cf, 4, 1). */
int32_t moe_capacity_min_k(int32_t n, int32_t n_expert, double capacity_factor,
                           int32_t min_capacity, int32_t k);
/* Tokens per expert of expert choice: clamp(floor(n * cf / e), 1, n). */
int32_t moe_expert_choice_capacity(int32_t n, int32_t n_expert, double capacity_factor);

#include "moe_params.h" /* moe_params: a layer's tensors, count, map, init */
#include "moe_expert.h" /* moe_expert_ops: user-defined experts */
/* ----------------------------------------------------------------- layer */

typedef struct moe_layer moe_layer;

/* Auxiliary losses and routing statistics of the last forward. */
typedef struct {
    double aux_loss;      /* the weighted sum of the parts below           */
    double balance_loss;  /* unweighted (hierarchical: outer + inner)      */
    double z_loss;        /* unweighted                                    */
    double cv_importance; /* noisy_topk: cv^2 of importance, unweighted    */
    double cv_load;       /* noisy_topk: cv^2 of load, unweighted          */
    double outer_balance_loss, inner_balance_loss; /* hierarchical         */
    int32_t capacity;     /* per expert per group (ec: tokens per expert)  */
    int64_t n_choices;    /* token-expert choices before any dropping      */
    int64_t n_dropped_policy;   /* ranks >= 2 turned off by the policy     */
    int64_t n_dropped_capacity; /* choices lost to a full expert           */
    int64_t n_tokens_unrouted;  /* tokens with no expert at all (y = 0)    */
} moe_aux;

/* Routing decisions of the last forward (views owned by the layer). For
 * token choice: k = top_n ranks over T = b*n tokens; for expert choice the
 * arrays are ec_token / ec_gate of shape (b, e, k). */
typedef struct {
    int32_t k, T, n_expert;
    const float *logits;   /* (T, e)                                      */
    const float *probs;    /* (T, e) softmax of logits                    */
    const int32_t *expert; /* (k, T) chosen expert of each rank           */
    const int32_t *position; /* (k, T) slot in (group, expert), -1 dropped */
    const float *gate;     /* (k, T) combine weight after dropping        */
    const uint8_t *routed; /* (k, T) token choice, hierarchical outer: 1 if
                              the policy / thresholds kept the rank (NULL:
                              every rank is kept by policy)               */
    const int32_t *ec_token; /* (b, e, k) expert choice: token in group   */
    const float *ec_gate;    /* (b, e, k)                                 */
    const float *gates;      /* (T, e) noisy_topk, dense_softmax          */
    const float *load;       /* (e) noisy_topk                            */
    const float *importance; /* (e) noisy_topk                            */
    const float *dispatch;   /* (b, n, e, s) soft_moe, softmax over n     */
    const float *combine;    /* (b, n, e, s) soft_moe, softmax over (e, s) */
    /* hierarchical: the outer level is expert / position / gate above
     * (k = 2, capacity = outer capacity); the inner level: */
    int32_t inner_capacity;
    const int32_t *inner_expert;   /* (2, eo, b, c1), -1 at empty slots   */
    const int32_t *inner_position; /* (2, eo, b, c1)                     */
    const float *inner_gate;       /* (2, eo, b, c1) after dropping      */
    const float *inner_importance; /* (eo, b, c1) 1, 0.5 or 0            */
} moe_route;

/* Creates a layer for cfg (validated first). *out is NULL on failure. */
moe_status moe_layer_create(const moe_config *cfg, moe_layer **out);
void moe_layer_free(moe_layer *L);
const moe_config *moe_layer_config(const moe_layer *L);
/* Training mode (1, default) or eval (0). Eval uses capacity_factor_eval
 * and turns off the training-only noise (router_noise, noisy_topk's
 * learned noise); the second-expert policies (random included) apply in
 * both modes, as mesh_tensorflow's default eval policy does. */
void moe_layer_set_train(moe_layer *L, int train);
/* The capacity factor of eval mode from the next forward on (cf > 0). */
void moe_layer_set_capacity_factor_eval(moe_layer *L, float cf);
/* Stream of the layer's own draws (e.g. layer id << 32 | step). */
void moe_layer_set_stream(moe_layer *L, uint64_t stream);
/* Token ids (b*n) of the next forward, kept by pointer until then: hash
 * routing needs them; other families ignore them. NULL clears them. */
void moe_layer_set_token_ids(moe_layer *L, const int32_t *ids);

/* Forward of b groups of n tokens: y (b*n, d) from x (b*n, d).
 * draws: the family's random inputs, or NULL to draw them from the
 * layer's counter-based generator:
 *   top2_gshard (random policy): uniforms (1, b*n);
 *   topn_stmoe: uniforms (top_n - 1, b*n) for ranks 2..top_n;
 *   noisy_topk (noisy, training): standard normals (b*n, e);
 *   hierarchical (random policy): uniforms u_outer (b*n), then
 *   u_inner (eo, b, c1) with c1 the outer capacity.
 * Router exploration noise always comes from the layer's generator.
 * Keeps what backward needs until the next forward. MOE_ENOMEM if the
 * workspace cannot grow. */
moe_status moe_layer_forward(moe_layer *L, const moe_params *p,
                             const float *x, int32_t b, int32_t n,
                             const float *draws, float *y);
/* Backward of the last forward for L = sum(y * dy) + aux_loss: ADDS
 * dL/dparam into g and dL/dx into dx (b*n, d). x and p must be the ones
 * given to forward. */
moe_status moe_layer_backward(moe_layer *L, const moe_params *p,
                              const float *x, const float *dy,
                              moe_params *g, float *dx);
const moe_aux *moe_layer_aux(const moe_layer *L);
void moe_layer_route(const moe_layer *L, moe_route *out);

#include "moe_block.h"  /* moe_block_*: the ST-MoE block */
/* ------------------------------------------------------------- threading */

/* Threads for the library's parallel loops (OpenMP); 0 = all cores.
 * Results are bit-identical for every value. */
void moe_set_threads(int n);
int moe_get_threads(void);

#ifdef __cplusplus
}
#endif
#endif /* MOE_H */
