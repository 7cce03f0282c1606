/* Small HDF5 helpers with one-line errors that name the file, the object
 * and the problem. HDF5's own error printing is switched off. */
#ifndef MOE_H5IO_H
#define MOE_H5IO_H

#include "base/internal.h"

#include <hdf5.h>

/* Silences HDF5's automatic error stack printing (idempotent). */
void moe_h5_quiet(void);

/* The innermost message of the current HDF5 error stack as one line in
 * buf (160 bytes), for messages after a failed HDF5 call. */
const char *moe_h5_reason(char buf[160]);

/* Opens an existing file read-only, without HDF5 file locking (a file that
 * is being written reads as of its last flush); MOE_EIO if missing or unreadable,
 * MOE_EFORMAT if not HDF5 or corrupt (with HDF5's reason). */
moe_status moe_h5_open_ro(const char *path, hid_t *out);

/* moe_h5_open_ro, then checks the root attribute `format` equals format
 * (e.g. "moe-run/1"): MOE_EUNSUPPORTED naming the file and both formats
 * if it is HDF5 of another kind (the file is closed). */
moe_status moe_h5_open_format(const char *path, const char *format, hid_t *out);

/* Writes size bytes of img as path atomically: to PATH.tmp-XXXXXX in the
 * same directory, fsync'ed when sync, renamed over path, then the
 * directory fsync'ed (when sync). A crash or a failed write (disk full,
 * file size limit) leaves the previous path intact; errors are MOE_EIO
 * naming path, the step and the OS reason (strerror(errno)), the
 * temporary file removed. */
moe_status moe_h5_replace_file(const char *path, const void *img, size_t size, int sync);

/* Writes the image of the open HDF5 file f (e.g. one held in memory by
 * the core driver) to path with moe_h5_replace_file: every on-disk state
 * of path is a complete image. MOE_ENOMEM if the image cannot be made. */
moe_status moe_h5_commit_image(hid_t f, const char *path, int sync);

/* Whether loc has an attribute / a link (dataset or group) of that name. */
int moe_h5_has_attr(hid_t loc, const char *name);
int moe_h5_has(hid_t loc, const char *path);

/* Scalar numeric attribute converted to double. */
moe_status moe_h5_attr_double(hid_t loc, const char *name, double *out,
                              const char *where);
/* Numeric attribute with up to cap elements converted to double. */
moe_status moe_h5_attr_doubles(hid_t loc, const char *name, double *out,
                               int cap, int *count, const char *where);
/* Fixed- or variable-length string attribute into out (cap bytes). */
moe_status moe_h5_attr_string(hid_t loc, const char *name, char *out,
                              size_t cap, const char *where);

/* Reads dataset `path` under loc as doubles into a new malloc'd array,
 * after checking its rank and dims against want (rank 0 = scalar; a
 * negative want[i] accepts any size, written back). */
moe_status moe_h5_read_doubles(hid_t loc, const char *path, int rank,
                               int64_t *want, double **out,
                               const char *where);
/* The same into int32. */
moe_status moe_h5_read_ints(hid_t loc, const char *path, int rank,
                            int64_t *want, int32_t **out, const char *where);

#endif
