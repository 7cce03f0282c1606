/* A small pre-norm transformer with MoE layers (llm.c style: one flat
 * buffer per role for parameters, gradients and activations).
 *
 *   x = wte[tok] + wpe[pos]
 *   for each layer l:
 *     x = x + Attn(Norm(x)) W_o      (causal in decoder mode)
 *     x = x + FFN_l(Norm(x))         dense, or a MoE layer every moe_every
 *                                    (MoE layers: optionally between
 *                                    x = x + FFN(Norm(x)) sub-blocks,
 *                                    ff_before_moe / ff_after_moe)
 *   logits = Norm(x) W_out            (vocab classes: next-token LM; tag
 *                                      classes: per-token tagging)
 *   loss = mean cross-entropy + sum over MoE layers of their aux_loss
 *
 * Each sequence of a batch is one routing group of the MoE layers. In
 * decoder mode the MoE layers run with causal = 1, so routers that look
 * ahead (expert choice, Soft MoE, hierarchical, BPR) are refused. */
#ifndef MOE_MODEL_H
#define MOE_MODEL_H

#include "moe.h"

typedef enum { MOE_DECODER = 0, MOE_ENCODER } moe_model_mode;
typedef enum { MOE_RMSNORM = 0, MOE_LAYERNORM } moe_norm_kind;

typedef struct {
    moe_model_mode mode;
    int32_t vocab;       /* input token ids in [0, vocab)                  */
    int32_t n_class;     /* outputs: vocab (LM) or tag classes (encoder)   */
    int32_t seq_len;     /* maximum positions N                            */
    int32_t d_model, n_layer, n_head;
    int32_t d_ff;        /* hidden width of the dense FFNs                 */
    moe_norm_kind norm;
    float norm_eps;
    int32_t moe_every;   /* layer l is MoE when (l + 1) % moe_every == 0;
                            0: all dense (GShard, Switch: every other = 2) */
    int32_t ff_before_moe; /* 1: every MoE layer gets a pre-norm residual
                              dense FFN sub-block (own norm, W1, W2 of
                              width d_ff, the experts' activation) before
                              its MoE sub-block (ST-MoE Table 16)         */
    int32_t ff_after_moe;  /* 1: the same after it                        */
    moe_config moe;      /* the MoE layers (d_model, causal are set here)  */
    /* The model's products: attention projections, dense FFNs, output
     * layer, and the MoE layers' experts (with MOE_BF16 whatever
     * moe.precision says; moe.precision = bf16 alone: the experts only).
     * Norms, softmaxes, losses and routers stay float32. */
    moe_precision precision;
} moe_model_config;

/* Defaults: decoder, d 128, 4 layers, 4 heads, d_ff 512, RMSNorm 1e-6,
 * moe_every 2, MoE = top2_gshard of 8 GELU experts of 512, no FFN
 * sub-blocks around the MoE layers. */
moe_model_config moe_model_config_default(void);
/* Checks every field (and the MoE config as the model will use it). */
moe_status moe_model_config_validate(const moe_model_config *cfg);

typedef struct moe_model moe_model;

/* Parameters of a model of cfg (validated), without building it; 0 if
 * the count itself cannot be allocated. */
size_t moe_model_param_count(const moe_model_config *cfg);

/* What training a model of cfg needs, in bytes (model_mem.c). */
typedef struct {
    double n_params;    /* parameters (a count, not bytes)                */
    double params;      /* parameters, 4 bytes each                       */
    double grads;       /* gradients, the same                            */
    double optim;       /* optimizer state: optim_floats per parameter    */
    double activations; /* forward activations and backward workspaces of
                           the model and every layer (MoE: router, plan
                           rows, expert inputs, outputs, saved values)    */
    double total;
} moe_model_mem;

/* Estimates the bytes of training cfg (validated) on batches of B
 * sequences of seq_len tokens with optim_floats floats of optimizer state
 * per parameter (AdamW: 2), from the same shapes as the workspace tables
 * (lib/model/model_pass.c, lib/core/layer.c); not counted: the corpus,
 * OpenBLAS's and HDF5's buffers, the metrics. Measured against the
 * allocations of a tiny model (tests/alloc_fail/alloc_fail.c): within
 * 0.8x..2x of the peak. */
moe_model_mem moe_model_memory(const moe_model_config *cfg, int32_t B, int optim_floats);
/* Bytes this machine can still give: MemAvailable + SwapFree of
 * /proc/meminfo (0 if unknown: not Linux, or unreadable). */
double moe_memory_available(void);
/* MOE_ENOMEM when m->total exceeds available (> 0), with the message
 * "WHO: this configuration needs about X GB (P parameters: ... ), more
 * than the Y GB this machine has available (MemAvailable + SwapFree)"
 * (who NULL: no prefix); MOE_OK otherwise (available 0: unknown, not
 * refused). */
moe_status moe_model_memory_refuse(const moe_model_mem *m, double available, const char *who);
/* moe_model_memory then moe_model_memory_refuse with
 * moe_memory_available(): what the trainer, the bench and the examples
 * call before allocating. */
moe_status moe_model_memory_check(const moe_model_config *cfg, int32_t B, int optim_floats,
                                  const char *who);

/* Creates a model: validates, allocates parameters, gradients and the
 * layers (activations grow on first use). *out NULL on failure;
 * MOE_ENOMEM, naming the bytes, when the parameters and gradients exceed
 * the machine's memory and swap or cannot be allocated. */
moe_status moe_model_create(const moe_model_config *cfg, moe_model **out);
void moe_model_free(moe_model *M);
const moe_model_config *moe_model_config_of(const moe_model *M);
/* The flat parameter and gradient buffers (moe_model_n_params floats). */
float *moe_model_params(moe_model *M);
float *moe_model_grads(moe_model *M);
size_t moe_model_n_params(const moe_model *M);
/* Deterministic init: weights truncated normal (2 sd) with sd =
 * sqrt(init_scale / fan_in) (Switch Transformers: init_scale 0.1),
 * norm gains 1, biases 0, keyed by seed. */
void moe_model_init(moe_model *M, float init_scale, uint64_t seed);
/* The same on parts of the tensors (expert parallelism): of tensor i only
 * elements [lo[i], hi[i]), each with moe_model_init's value; the rest of
 * the buffer is not touched. */
void moe_model_init_part(moe_model *M, float init_scale, uint64_t seed, const size_t *lo,
                         const size_t *hi);
/* Training mode (capacity factor, noise) and the stream of this step's
 * random draws (every MoE layer gets its own stream from it). */
void moe_model_set_train(moe_model *M, int train);
void moe_model_set_stream(moe_model *M, uint64_t stream);
/* The eval capacity factor of every MoE layer (and of cfg.moe), cf > 0. */
void moe_model_set_capacity_factor_eval(moe_model *M, double cf);

/* Losses of the last forward. */
typedef struct {
    double loss;      /* ce + aux: what backward differentiates          */
    double ce;        /* mean cross-entropy over the counted targets     */
    double aux;       /* sum of the MoE layers' weighted aux losses      */
    int64_t counted;  /* targets used (targets < 0 are ignored)          */
    int64_t dropped;  /* MoE choices dropped for capacity, all layers    */
    int64_t routed;   /* MoE choices proposed, all layers                */
} moe_model_losses;

/* dropped / routed of l (0 when nothing was routed). */
static inline double moe_model_dropped_frac(const moe_model_losses *l) {
    return l->routed ? (double)l->dropped / (double)l->routed : 0.0;
}

/* Forward of B sequences of N <= seq_len tokens: tok (B*N) in [0, vocab),
 * targets (B*N) in [0, n_class) or < 0 to ignore (NULL: no loss).
 * logits (B*N, n_class) are kept inside (moe_model_logits). */
moe_status moe_model_forward(moe_model *M, const int32_t *tok,
                             const int32_t *targets, int32_t B, int32_t N);
/* Backward of the last forward's loss: ADDS into the gradient buffer. */
moe_status moe_model_backward(moe_model *M);
const moe_model_losses *moe_model_losses_of(const moe_model *M);
/* Replaces the losses of the last forward, e.g. by the totals over the
 * data-parallel ranks (lib/mpi/): backward then normalises the
 * cross-entropy gradient by l->counted, the whole batch's target count. */
void moe_model_set_losses(moe_model *M, const moe_model_losses *l);
const float *moe_model_logits(const moe_model *M); /* (B*N, n_class) */
/* The parameter tensors, in buffer order: name (e.g. "h1.attn.w_qkv",
 * "h1.moe.w1", "h1.ffb.w1" / "h1.ffa.ln.g" for the FFN sub-blocks before /
 * after a MoE sub-block), offset and length in floats, and whether weight decay
 * applies (matrices yes; norm gains, biases, scalars no). */
int32_t moe_model_n_tensors(const moe_model *M);
void moe_model_tensor(const moe_model *M, int32_t i, const char **name,
                      size_t *offset, size_t *len, int *decay);
/* The MoE layer of layer l (NULL if dense), for routes and statistics. */
moe_layer *moe_model_moe_layer(moe_model *M, int32_t l);

#endif
