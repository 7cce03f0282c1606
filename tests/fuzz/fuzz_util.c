/* The harnesses' shared helpers (fuzz_util.h). */
#include "fuzz_util.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static void remove_dir(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (dir[0] && system(cmd) != 0) fprintf(stderr, "fuzz: cannot remove %s\n", dir);
}

const char *fuzz_dir(void) {
    if (dir[0]) return dir;
    const char *t = getenv("TMPDIR");
    if (!t || !*t) t = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/moe-fuzz-XXXXXX", t);
    if (!mkdtemp(dir)) {
        perror(dir);
        abort();
    }
    atexit(remove_dir);
    return dir;
}

const char *fuzz_file(const char *name, const uint8_t *data, size_t size) {
    static char path[8][512];
    static const char *names[8];
    int slot = 0;
    while (slot < 7 && names[slot] && strcmp(names[slot], name)) slot++;
    names[slot] = name;
    snprintf(path[slot], sizeof path[slot], "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path[slot], "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path[slot]);
        abort();
    }
    return path[slot];
}

static const uint8_t *image;
static size_t image_size;

void fuzz_h5_image(const uint8_t *data, size_t size) {
    image = data;
    image_size = size;
}

hid_t __real_H5Fopen(const char *name, unsigned flags, hid_t fapl);

hid_t __wrap_H5Fopen(const char *name, unsigned flags, hid_t fapl) {
    if (!image) return __real_H5Fopen(name, flags, fapl);
    /* the caller's properties (e.g. no file locking), the core driver
     * without a backing store, and a copy of the image as the file */
    hid_t p = fapl == H5P_DEFAULT ? H5Pcreate(H5P_FILE_ACCESS) : H5Pcopy(fapl);
    if (p < 0) return -1;
    hid_t f = -1;
    /* a name that is no file: the core driver refuses to open an image
     * under the name of an existing file ("file already exists") */
    char mem[600];
    snprintf(mem, sizeof mem, "%s.image", name);
    if (H5Pset_fapl_core(p, 1 << 16, 0) >= 0 &&
        H5Pset_file_image(p, (void *)image, image_size) >= 0)
        f = __real_H5Fopen(mem, flags, p);
    if (f < 0 && getenv("FUZZ_VERBOSE")) H5Eprint2(H5E_DEFAULT, stderr);
    H5Pclose(p);
    return f;
}

void fuzz_h5_check_closed(const char *harness) {
    ssize_t n = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (n != 0) {
        fprintf(stderr, "%s: %zd HDF5 objects left open (a leaked handle)\n", harness, n);
        abort();
    }
}
