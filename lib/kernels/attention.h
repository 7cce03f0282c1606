/* Multi-head scaled dot-product self-attention on packed projections. */
#ifndef MOE_ATTENTION_H
#define MOE_ATTENTION_H

#include "base/internal.h"

/* qkv (B*N, 3d): row t = [q | k | v], head h at columns h*hd .. (h+1)*hd
 * of each part (hd = d / H). Writes att (B, H, N, N), the attention
 * probabilities (row i over keys j; j > i is 0 when causal), and
 * out (B*N, d) with head h at columns h*hd. */
void moe_attention_forward(const float *qkv, float *att, float *out,
                           int32_t B, int32_t N, int32_t d, int32_t H,
                           int causal);
/* Backward: WRITES dqkv (B*N, 3d) from dout (B*N, d); datt is scratch of
 * the size of att. */
void moe_attention_backward(const float *qkv, const float *att,
                            const float *dout, float *dqkv, float *datt,
                            int32_t B, int32_t N, int32_t d, int32_t H,
                            int causal);

#endif
