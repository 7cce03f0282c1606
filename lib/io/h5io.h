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
