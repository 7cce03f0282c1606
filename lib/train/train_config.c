/* The training configuration: defaults and the key table (train.h). */
#include "train/train.h"

#include <stddef.h>
#include <string.h>

moe_train_config moe_train_config_default(void) {
    moe_train_config c;
    memset(&c, 0, sizeof c);
    c.model = moe_model_config_default();
    c.model.seq_len = 64;
    c.topn_threshold = 0.2f;
    c.optim = moe_optim_config_default();
    c.optim.warmup_steps = 100;
    c.optim.schedule = MOE_SCHED_COSINE;
    c.optim.min_lr_ratio = 0.1;
    c.optim.clip_norm = 1.0;
    c.data_source = MOE_DATA_SYNTH;
    c.task = MOE_TASK_LM;
    snprintf(c.data_dir, sizeof c.data_dir, "%s", MOE_BROWN_DIR);
    c.max_words = 4096;
    c.synth = moe_synth_config_default();
    c.batch_size = 16;
    c.steps = 1000;
    c.optim.total_steps = c.steps;
    c.log_every = 10;
    c.eval_every = 200;
    c.eval_batches = 20;
    c.checkpoint_every = 0;
    c.seed = 1;
    c.init_scale = 1.0f;
    c.flush_every = 50;
    return c;
}

static const char *const modes[] = {"decoder", "encoder", NULL};
static const char *const norms[] = {"rmsnorm", "layernorm", NULL};
static const char *const families[] = {"top2_gshard", "topn_stmoe", "switch_top1",
                                       "expert_choice", "noisy_topk", "soft_moe",
                                       "dense_softmax", "hierarchical", "hash", NULL};
static const char *const acts[] = {"relu", "gelu", "geglu", NULL};
static const char *const policies[] = {"all", "none", "threshold", "random", NULL};
static const char *const priorities[] = {"token", "bpr", NULL};
static const char *const noises[] = {"none", "jitter", "gumbel", "dropout", NULL};
static const char *const schedules[] = {"constant", "cosine", "rsqrt", NULL};
static const char *const sources[] = {"synthetic", "brown", NULL};
static const char *const tasks[] = {"lm", "tag", NULL};

#define OFF(f) offsetof(moe_train_config, f)
#define I(k, f, lo, hi, h) {k, INI_INT, OFF(f), lo, hi, NULL, 0, h}
#define B(k, f, h) {k, INI_BOOL, OFF(f), 0, 1, NULL, 0, h}
#define L(k, f, lo, hi, h) {k, INI_I64, OFF(f), lo, hi, NULL, 0, h}
#define U(k, f, h) {k, INI_U64, OFF(f), 0, 1.8e19, NULL, 0, h}
#define F(k, f, lo, hi, h) {k, INI_FLOAT, OFF(f), lo, hi, NULL, 0, h}
#define D(k, f, lo, hi, h) {k, INI_DOUBLE, OFF(f), lo, hi, NULL, 0, h}
#define C(k, f, ch, h) {k, INI_CHOICE, OFF(f), 0, 0, ch, 0, h}
#define S(k, f, h) {k, INI_STRING, OFF(f), 0, 0, NULL, sizeof(((moe_train_config *)0)->f), h}

static const ini_key keys[] = {
    C("model.mode", model.mode, modes, "decoder (causal LM) or encoder (tagging)"),
    I("model.d_model", model.d_model, 1, 65536, "width"),
    I("model.n_layer", model.n_layer, 1, 1024, "layers"),
    I("model.n_head", model.n_head, 1, 65536, "attention heads (divides d_model)"),
    I("model.d_ff", model.d_ff, 1, 1 << 20, "hidden width of the dense FFNs"),
    I("model.seq_len", model.seq_len, 1, 65536, "tokens per sequence (= routing group)"),
    C("model.norm", model.norm, norms, "normalisation"),
    F("model.norm_eps", model.norm_eps, 1e-12, 1, "normalisation epsilon"),
    I("model.moe_every", model.moe_every, 0, 1024, "layer l is MoE when (l+1) % moe_every == 0; 0: dense"),
    I("model.ff_before_moe", model.ff_before_moe, 0, 1, "dense FFN sub-block before each MoE one (ST-MoE Table 16)"),
    I("model.ff_after_moe", model.ff_after_moe, 0, 1, "dense FFN sub-block after each MoE one"),
    C("moe.family", model.moe.family, families, "routing family"),
    I("moe.n_expert", model.moe.n_expert, 1, 65536, "experts (hierarchical: outer)"),
    I("moe.n_expert_inner", model.moe.hierarchical.n_expert_inner, 0, 65536, "hierarchical inner experts"),
    I("moe.d_hidden", model.moe.d_hidden, 1, 1 << 22, "expert hidden width"),
    C("moe.activation", model.moe.act, acts, "expert (and dense FFN) activation"),
    B("moe.bias", model.moe.bias, "expert biases"),
    B("moe.mult_bias", model.moe.mult_bias, "geglu multiplicative bias"),
    I("moe.top_n", model.moe.top_n, 1, MOE_MAX_TOPN, "experts per token (top2: 2, switch: 1, noisy: k)"),
    C("moe.policy", model.moe.gshard.policy, policies, "second-expert policy (top2, hierarchical)"),
    F("moe.threshold", model.moe.gshard.threshold, 0, 1, "policy threshold (top2, hierarchical)"),
    F("moe.topn_threshold", topn_threshold, 0, 1, "threshold of ranks >= 2 (topn_stmoe)"),
    F("moe.capacity_factor", model.moe.capacity_factor_train, 0, 1e6, "training capacity factor"),
    F("moe.capacity_factor_eval", model.moe.capacity_factor_eval, 0, 1e6, "evaluation capacity factor"),
    C("moe.priority", model.moe.priority, priorities, "slot order (bpr: encoder only)"),
    F("moe.balance_coef", model.moe.balance_coef, 0, 1e6, "balance loss weight"),
    F("moe.z_coef", model.moe.z_coef, 0, 1e6, "router z-loss weight"),
    C("moe.router_noise", model.moe.router_noise, noises, "router exploration noise (training)"),
    F("moe.noise_eps", model.moe.router_noise_eps, 0, 1, "jitter half-width / dropout probability"),
    B("moe.straight_through", model.moe.straight_through, "dispatch carries the gates' gradient (token choice)"),
    B("moe.noisy", model.moe.noisy_topk.noisy, "noisy_topk learned noise"),
    F("moe.noise_epsilon", model.moe.noisy_topk.noise_epsilon, 0, 1e6, "noisy_topk std floor"),
    F("moe.w_importance", model.moe.noisy_topk.w_importance, 0, 1e6, "noisy_topk importance loss weight"),
    F("moe.w_load", model.moe.noisy_topk.w_load, 0, 1e6, "noisy_topk load loss weight"),
    I("moe.slots", model.moe.soft_moe.slots, 1, 65536, "soft_moe slots per expert"),
    B("moe.normalize", model.moe.soft_moe.normalize, "soft_moe l2 normalisation"),
    I("moe.d_gate", model.moe.dense_softmax.d_gate, 1, 1 << 20, "dense_softmax gate MLP width"),
    D("optim.lr", optim.lr, 1e-12, 10, "peak learning rate"),
    D("optim.beta1", optim.beta1, 0, 0.999999, "Adam beta1"),
    D("optim.beta2", optim.beta2, 0, 0.999999999, "Adam beta2"),
    D("optim.eps", optim.eps, 1e-30, 1, "Adam epsilon"),
    D("optim.weight_decay", optim.weight_decay, 0, 10, "decoupled weight decay (matrices only)"),
    L("optim.warmup_steps", optim.warmup_steps, 0, 1e12, "linear warm-up steps"),
    C("optim.schedule", optim.schedule, schedules, "learning-rate decay"),
    D("optim.min_lr_ratio", optim.min_lr_ratio, 0, 1, "floor of the decay, fraction of lr"),
    D("optim.clip_norm", optim.clip_norm, 0, 1e12, "global gradient-norm clip (0: off)"),
    D("optim.update_clip", optim.update_clip, 0, 1e12, "Adafactor-style update RMS clip (0: off)"),
    C("data.source", data_source, sources, "synthetic (built in) or brown (make data)"),
    C("data.task", task, tasks, "lm (decoder) or tag (encoder: POS / hidden state)"),
    S("data.dir", data_dir, "Brown corpus folder"),
    I("data.max_words", max_words, 1, 1 << 22, "Brown vocabulary words"),
    I("data.batch_size", batch_size, 1, 1 << 20, "sequences per step"),
    I("data.synth_sources", synth.n_sources, 1, 1 << 16, "synthetic: hidden Markov sources"),
    I("data.synth_states", synth.n_states, 1, 1 << 16, "synthetic: states per source"),
    I("data.synth_vocab", synth.vocab_size, 2, 1 << 22, "synthetic: vocabulary"),
    I("data.synth_emit", synth.n_emit, 1, 1 << 22, "synthetic: symbols per state"),
    I("data.synth_docs", synth.n_docs, 1, 1 << 24, "synthetic: documents"),
    I("data.synth_doc_len", synth.doc_len, 2, 1 << 24, "synthetic: tokens per document"),
    I("data.synth_segment_len", synth.segment_len, 0, 1 << 24, "synthetic: source switch period (0: per document)"),
    I("data.synth_tag_source", synth.tag_source, 0, 1, "synthetic tagging target: 0 state, 1 source"),
    D("data.synth_sharpness", synth.sharpness, 0, 100, "synthetic: peakiness of the tables"),
    U("data.synth_seed", synth.seed, "synthetic: generator seed"),
    L("run.steps", steps, 1, 1e12, "optimizer steps"),
    I("run.log_every", log_every, 1, 1 << 30, "progress line period (steps)"),
    I("run.eval_every", eval_every, 0, 1 << 30, "validation period (0: only at the end)"),
    I("run.eval_batches", eval_batches, 1, 1 << 20, "validation batches"),
    I("run.checkpoint_every", checkpoint_every, 0, 1 << 30, "checkpoint period (0: only at the end)"),
    S("run.checkpoint", checkpoint, "checkpoint file (HDF5), empty: none"),
    U("run.seed", seed, "seed of init, batches and routing draws"),
    F("run.init_scale", init_scale, 1e-6, 100, "init: truncated normal, sd sqrt(scale / fan_in)"),
    I("run.threads", threads, 0, 1024, "threads (0: all cores)"),
    S("run.metrics", metrics, "run file (HDF5, results/FORMAT.md), empty: none"),
    I("run.flush_every", flush_every, 1, 1 << 30, "metrics flush period (steps)"),
    I("run.trace_every", trace_every, 0, 1 << 30, "routing trace period (steps, 0: none)"),
    S("run.extra_eval_cf", extra_eval_cf, "eval capacity factors of extra final validations"),
};

const ini_key *moe_train_keys(size_t *n) {
    *n = sizeof keys / sizeof keys[0];
    return keys;
}
