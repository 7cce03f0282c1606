/* Shared by the corpus modules lib/data*.c (not installed). */
#ifndef MOE_DATA_INTERNAL_H
#define MOE_DATA_INTERNAL_H

#include "data/data.h"
#include "base/internal.h"

/* Purposes of the data module's Philox streams (top byte of the stream). */
enum {
    DATA_STREAM_SHUFFLE = 0x10, /* batcher permutation, | epoch          */
    DATA_STREAM_TABLES,         /* synthetic transition/emission tables  */
    DATA_STREAM_DOCS            /* synthetic documents, | document       */
};
#define DATA_STREAM(purpose, i) (((uint64_t)(purpose) << 56) | (uint64_t)(i))

/* Fills split_tokens, split_files and n_sentences from the files. */
void data_corpus_totals(moe_corpus *c);
/* Allocates tok, tag, src (n) and files (n_files), zeroed; MOE_ENOMEM. */
moe_status data_corpus_alloc(moe_corpus *c, int64_t n, int32_t n_files);

#endif
