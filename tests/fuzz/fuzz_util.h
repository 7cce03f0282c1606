/* Shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c, README
 * "Fuzzing"): the input as a file and as an HDF5 file image. */
#ifndef MOE_FUZZ_UTIL_H
#define MOE_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Writes the input (size bytes) to the file `name` of this process's
 * scratch folder (under $TMPDIR, else /dev/shm or /tmp; removed at exit)
 * and returns its path (static storage, valid until the next call with
 * the same name). Aborts if it cannot be written: the harness is broken. */
const char *fuzz_file(const char *name, const uint8_t *data, size_t size);

/* The scratch folder (created on first use). */
const char *fuzz_dir(void);

/* Every H5Fopen of the library (linked with -Wl,--wrap=H5Fopen) opens this
 * image instead of the file: the core driver (no backing store: a
 * read-write open changes the copy in memory only) over H5Pset_file_image.
 * NULL: H5Fopen opens files again. */
void fuzz_h5_image(const uint8_t *data, size_t size);

/* Aborts naming the count if any HDF5 object (file, group, dataset,
 * attribute, type, space) is still open: a handle our code leaked. */
void fuzz_h5_check_closed(const char *harness);

#endif
