/* The training configuration: defaults and the key table (train.h); the
 * "moe.*" keys of moe_config's fields come from the range table
 * (core/config_fields.c). */
#include "core/config_fields.h"
#include "train/train.h"

#include <pthread.h>
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
/* Every registered family, by value (filled by build_keys from the
 * registry, so that a new family is a trainer and ablation key at once). */
enum { MAX_FAMILIES = 64 };
static const char *families[MAX_FAMILIES + 1];
static const char *const schedules[] = {"constant", "cosine", "rsqrt", NULL};
static const char *const sources[] = {"synthetic", "brown", NULL};
static const char *const tasks[] = {"lm", "tag", NULL};
static const char *const synth_kinds[] = {"hmm", "facts", NULL};

#define OFF(f) offsetof(moe_train_config, f)
#define I(k, f, lo, hi, h) {k, INI_INT, OFF(f), lo, hi, NULL, 0, h}
#define B(k, f, h) {k, INI_BOOL, OFF(f), 0, 1, NULL, 0, h}
#define L(k, f, lo, hi, h) {k, INI_I64, OFF(f), lo, hi, NULL, 0, h}
#define U(k, f, h) {k, INI_U64, OFF(f), 0, 1.8e19, NULL, 0, h}
#define F(k, f, lo, hi, h) {k, INI_FLOAT, OFF(f), lo, hi, NULL, 0, h}
#define D(k, f, lo, hi, h) {k, INI_DOUBLE, OFF(f), lo, hi, NULL, 0, h}
#define C(k, f, ch, h) {k, INI_CHOICE, OFF(f), 0, 0, ch, 0, h}
#define S(k, f, h) {k, INI_STRING, OFF(f), 0, 0, NULL, sizeof(((moe_train_config *)0)->f), h}

/* Where the keys of the moe_config fields go (moe_train_keys). */
#define MOE_FIELDS_HERE {NULL, INI_INT, 0, 0, 0, NULL, 0, NULL}

/* A training key listed among the moe_config fields, after moe.threshold:
 * it sets the threshold of every rank >= 2 (moe_train_config_finish). */
static const ini_key topn_threshold_key =
    F("moe.topn_threshold", topn_threshold, 0, 1, "threshold of ranks >= 2 (topn_stmoe)");

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
    C("model.precision", model.precision, moe_precision_names,
      "every product (experts included): fp32 or bf16 operands, float32 sums"),
    C("moe.family", model.moe.family, families, "routing family"),
    MOE_FIELDS_HERE, /* the moe_config fields (core/config_fields.c) */
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
    C("data.synth_kind", synth.kind, synth_kinds, "synthetic task: hmm (Markov sources) or facts (pair -> value table, tag)"),
    I("data.synth_values", synth.n_values, 2, 1 << 16, "synthetic facts: value classes"),
    I("data.synth_hint", synth.n_hint, 1, 1 << 16, "synthetic facts: classes of the previous-token hint (1: none)"),
    L("run.steps", steps, 1, 1e12, "optimizer steps"),
    I("run.log_every", log_every, 1, 1 << 30, "progress line period (steps)"),
    I("run.eval_every", eval_every, 0, 1 << 30, "validation period (0: only at the end)"),
    I("run.eval_batches", eval_batches, 0, 1 << 20, "validation batches (0: the whole split once)"),
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

enum { N_TEMPLATE = sizeof keys / sizeof keys[0], MAX_FIELDS = 40 };
static ini_key all_keys[N_TEMPLATE + MAX_FIELDS];
static char field_keys[MAX_FIELDS][48]; /* "moe.<key>" */
static size_t n_all;
static pthread_once_t built = PTHREAD_ONCE_INIT;

/* The INI key of field f, named "moe.<f->key>" in name. */
static ini_key field_key(const moe_config_field *f, char *name, size_t cap) {
    snprintf(name, cap, "moe.%s", f->key);
    ini_key k = {name, INI_INT, OFF(model.moe) + f->offset, f->lo, f->hi, NULL, 0, f->help};
    switch (f->type) {
    case MOE_FIELD_INT32:
        if (f->zero_unused && k.lo > 0) k.lo = 0;
        break;
    case MOE_FIELD_FLOAT: /* open bounds are refused by validation */
        k.type = INI_FLOAT;
        break;
    case MOE_FIELD_BOOL:
        k.type = INI_BOOL, k.lo = 0, k.hi = 1;
        break;
    case MOE_FIELD_CHOICE:
        k.type = INI_CHOICE, k.lo = k.hi = 0, k.choices = f->choices;
        break;
    }
    return k;
}

/* keys[] with the fields of the range table at MOE_FIELDS_HERE (those
 * with a help line; topn_threshold after threshold). */
static void build_keys(void) {
    MOE_ASSERT(moe_family_count() <= MAX_FAMILIES);
    for (int i = 0; i < moe_family_count(); i++) families[i] = moe_family_name((moe_family)i);
    size_t nf;
    const moe_config_field *f = moe_config_fields(&nf);
    MOE_ASSERT(nf <= MAX_FIELDS);
    for (size_t i = 0; i < N_TEMPLATE; i++) {
        if (keys[i].key) {
            all_keys[n_all++] = keys[i];
            continue;
        }
        for (size_t j = 0; j < nf; j++) {
            if (!f[j].help) continue;
            all_keys[n_all++] = field_key(&f[j], field_keys[j], sizeof field_keys[j]);
            if (!strcmp(f[j].key, "threshold")) all_keys[n_all++] = topn_threshold_key;
        }
    }
}

const ini_key *moe_train_keys(size_t *n) {
    pthread_once(&built, build_keys);
    *n = n_all;
    return all_keys;
}
