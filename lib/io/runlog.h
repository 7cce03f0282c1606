/* The writer of moe-run/1 HDF5 run files (results/FORMAT.md): attributes
 * and extendable series (chunks of 256 rows, shuffle + deflate 4) whose
 * rows are buffered in memory and appended at each moe_runlog_flush. The
 * HDF5 file itself lives in memory (core driver); each flush writes its
 * whole image to PATH.tmp-XXXXXX, fsyncs it and renames it over PATH, so
 * that a writer killed (SIGKILL, power loss) or out of disk at any moment
 * leaves the complete file of its last successful flush. Never SWMR. */
#ifndef MOE_RUNLOG_H
#define MOE_RUNLOG_H

#include "moe.h"

#define MOE_RUN_FORMAT "moe-run/1"

typedef struct moe_runlog moe_runlog;

typedef enum { MOE_RL_I64 = 0, MOE_RL_I32, MOE_RL_F64, MOE_RL_F32, MOE_RL_U8 } moe_rl_type;

/* MOE_EINVAL (naming the file) if path is a directory, or exists and
 * !force; else MOE_OK.
 * For checks before any work is done. */
moe_status moe_runlog_check_new(const char *path, int force);

/* The code revision of this build (Makefile CODE_REV: the git trees of
 * the layers that make a run's numbers, "-dirty" if edited, "unknown"
 * outside git), the root attribute code_rev of every run file. */
const char *moe_runlog_code_rev(void);

/* Creates path (an existing file is refused unless force) with the root
 * attributes format, finished = 0, git_rev, code_rev, hdf5_version,
 * openblas_config and created (UTC now). *out NULL on failure. */
moe_status moe_runlog_create(const char *path, int force, moe_runlog **out);

/* Opens an existing run file to continue after `step`: sets finished =
 * 0; every series registered later keeps only the rows of steps <= step
 * (by the `step` dataset of its top group; /routing follows /train).
 * A `step` series that cannot be read (corrupt chunk), or a group
 * without one, is MOE_EFORMAT naming it: the file is never rewritten
 * then (no row it cannot read is dropped). */
moe_status moe_runlog_resume(const char *path, int64_t step, moe_runlog **out);

/* Wall seconds already spent: the last kept /train/time_s (0 if new). */
double moe_runlog_time_offset(const moe_runlog *R);

/* Attributes of object obj ("/" root, or a group path, created if
 * needed), replacing any of that name: a string, a string array, an
 * int64 scalar, an int64 array of n, a float64 scalar. */
moe_status moe_runlog_attr_str(moe_runlog *R, const char *obj, const char *name,
                               const char *v);
moe_status moe_runlog_attr_strs(moe_runlog *R, const char *obj, const char *name,
                                const char *const *v, int32_t n);
moe_status moe_runlog_attr_i64(moe_runlog *R, const char *obj, const char *name,
                               int64_t v);
moe_status moe_runlog_attr_i64s(moe_runlog *R, const char *obj, const char *name,
                                const int64_t *v, int32_t n);
moe_status moe_runlog_attr_f64(moe_runlog *R, const char *obj, const char *name,
                               double v);

/* Registers the series at path (e.g. "train/loss", groups created): rows
 * of d1 x d2 elements of type t (d1 = 0: scalar rows; d2 = 0: vectors).
 * Opens the dataset if it exists (resume: truncated as above), creates
 * it empty otherwise. *id names it for append. */
moe_status moe_runlog_series(moe_runlog *R, const char *path, moe_rl_type t,
                             int32_t d1, int32_t d2, int *id);
/* Copies one row (native type of t) into the series' memory buffer. */
moe_status moe_runlog_append(moe_runlog *R, int id, const void *row);
/* Rows of series id: in the file plus buffered. */
int64_t moe_runlog_rows(const moe_runlog *R, int id);
/* Appends every buffered row to its dataset, then writes the file
 * atomically (above; nothing is written if nothing changed). MOE_EIO
 * with the OS reason if the write fails (the previous file is kept and
 * the rows stay in memory for the next flush). After an HDF5 failure
 * the log is broken: flushes fail and close writes nothing. */
moe_status moe_runlog_flush(moe_runlog *R);

/* Flushes and closes; frees R (NULL is a no-op). The first failure is
 * returned, R is freed in every case. */
moe_status moe_runlog_close(moe_runlog *R);

#endif
