/* Training checkpoints in HDF5: a small generic container of named flat
 * buffers (llm.c style: all parameters in one entry, each optimizer moment
 * in one entry), written atomically.
 *
 * Format "moe-checkpoint/1" (one HDF5 file):
 *   root attributes
 *     format  string  "moe-checkpoint/1"
 *     step    int64   completed optimizer updates
 *     config  string  the trainer's configuration text, verbatim (may be "")
 *     checksum uint64 FNV-1a 64 of the step (8 bytes little-endian) then
 *                     the config text with its terminating NUL
 *   one 1-D dataset per entry, named by the caller (e.g. "params",
 *   "adam_m", "adam_v", "rng", "data_pos"; a '/' in a name makes groups):
 *     float32 (IEEE little-endian), int64 or uint64, any length (scalars
 *     are length 1). Values are stored bit-exactly. Each has the attribute
 *     fnv1a64 (uint64): FNV-1a 64 of its values' little-endian bytes.
 *   Datasets the reader does not ask for are ignored.
 *
 * Writing: the file is built in memory (peak memory: the entries plus one
 * copy of the file), written to PATH.tmp-XXXXXX in the same directory,
 * fsync'ed, then renamed over PATH (and the directory fsync'ed): a crash
 * or a failed write leaves the previous PATH intact and no temporary file
 * behind (except after a crash). An existing PATH that is not a
 * moe-checkpoint/1 file is never overwritten.
 *
 * Reading checks the format attribute, the header checksum and, for each
 * requested entry, that it exists with the requested dtype and length
 * and (when read whole) matches its checksum; every error is one line
 * naming the file, the entry and the problem.
 */
#ifndef MOE_CHECKPOINT_H
#define MOE_CHECKPOINT_H

#include "moe.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MOE_CKPT_FORMAT "moe-checkpoint/1"

typedef enum {
    MOE_CKPT_F32 = 0, /* float    */
    MOE_CKPT_I64,     /* int64_t  */
    MOE_CKPT_U64,     /* uint64_t */
    MOE_CKPT_DTYPE_COUNT
} moe_ckpt_dtype;

/* One named flat buffer. Saving reads data (not modified); loading fills
 * it. data may be NULL only when len is 0. Names: 1..200 characters of
 * [A-Za-z0-9_.-] separated by single '/', not starting or ending in '/'. */
typedef struct {
    const char *name;
    moe_ckpt_dtype dtype;
    size_t len;  /* elements */
    void *data;  /* len elements of dtype */
} moe_ckpt_entry;

/* The part of an entry to load: n_ranges element ranges [ranges[2k],
 * ranges[2k+1]) (ascending, disjoint, inside len); n_ranges 0: all. */
typedef struct {
    int32_t n_ranges;
    const size_t *ranges;
} moe_ckpt_part;

const char *moe_ckpt_dtype_name(moe_ckpt_dtype t);

/* Writes a checkpoint of `step` with the configuration text `config`
 * (NULL: "") and n entries to path, atomically (see above). Errors
 * (nothing on disk changed, the temporary file removed):
 *   MOE_EINVAL  a bad or duplicate entry name, or one that is the group
 *               of another ("a" and "a/b"); path exists and is not a
 *               moe-checkpoint/1 file (refusing to overwrite it);
 *   MOE_ENOMEM  the file cannot be built in memory;
 *   MOE_EIO     the directory is not writable, a write, fsync or rename
 *               failed (disk full, file size limit). */
moe_status moe_ckpt_save(const char *path, int64_t step, const char *config,
                         const moe_ckpt_entry *entries, int32_t n);

/* Reads the step and the configuration text of a checkpoint (e.g. to
 * build the model before moe_ckpt_load). *config (may be NULL: not
 * returned) is malloc'd, freed by the caller; NULL on failure. */
moe_status moe_ckpt_info(const char *path, int64_t *step, char **config);

/* Reads a checkpoint into the caller's buffers: every entry must exist
 * with exactly the given dtype and length. step and config as for
 * moe_ckpt_info (either may be NULL). All entries are checked before any
 * buffer is written; if reading then fails (a corrupt file), the buffers'
 * contents are unspecified. Errors: MOE_EIO (missing or unreadable file),
 * MOE_EFORMAT (not HDF5, truncated, not a moe-checkpoint/1 file, an entry
 * missing or of another dtype or length: a checkpoint of another model;
 * a header or entry not matching its checksum). */
moe_status moe_ckpt_load(const char *path, int64_t *step, char **config,
                         const moe_ckpt_entry *entries, int32_t n);
/* The same reading only parts[i] of entry i into the same places of its
 * data, the rest of data untouched (expert parallelism: each rank reads
 * its own experts' slices); the checks are moe_ckpt_load's. parts NULL:
 * moe_ckpt_load. */
moe_status moe_ckpt_load_parts(const char *path, int64_t *step, char **config,
                               const moe_ckpt_entry *entries, const moe_ckpt_part *parts,
                               int32_t n);

#ifdef __cplusplus
}
#endif
#endif /* MOE_CHECKPOINT_H */
