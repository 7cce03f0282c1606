/* Token embeddings and the softmax cross-entropy loss. */
#ifndef MOE_LOSS_H
#define MOE_LOSS_H

#include "base/internal.h"

/* x (B*N, d) = wte[tok] + wpe[position in the sequence]; wte (V, d),
 * wpe (>= N, d); tok (B*N) in [0, V) (checked by the caller). */
void moe_embed_forward(const int32_t *tok, const float *wte, const float *wpe,
                       float *x, int32_t B, int32_t N, int32_t d);
/* dwte, dwpe += the gradient, in a fixed order (deterministic). */
void moe_embed_backward(const int32_t *tok, const float *dx, float *dwte,
                        float *dwpe, int32_t B, int32_t N, int32_t d);

/* Mean cross-entropy of logits (T, C) against targets (T); a target < 0
 * is ignored. Writes probs (T, C) and nll (T), each token's loss (0 if
 * ignored), tokens in parallel; returns the loss (their mean in token
 * order; 0 if every target is ignored) and *counted the targets used. */
double moe_xent_forward(const float *logits, const int32_t *targets,
                        float *probs, double *nll, int32_t T, int32_t C,
                        int64_t *counted);
/* dlogits (T, C) = scale * (probs - onehot) / counted (WRITES; 0 rows for
 * ignored targets). */
void moe_xent_backward(const float *probs, const int32_t *targets,
                       float *dlogits, int32_t T, int32_t C, int64_t counted,
                       float scale);

#endif
