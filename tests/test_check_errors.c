/* Suite check_errors: `moe check` and moe_check_file on bad input. Each
 * bad file is built with the HDF5 API from a golden case; the library
 * must return a status with a message naming the file, the case and the
 * problem, and the CLI (MOE_BIN, default bin/moe) must print one line and
 * exit 1 without crashing (the SANITIZE=1 build runs it under ASan). */
#include "moe_golden.h"
#include "test_util.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int setup(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return tmpdir_make();
}

static int teardown(void) { return tmpdir_remove(); }

static const char *path_of(const char *name) { return tmpdir_path(name); }

/* A new file holding case top2_all of the golden file (and the format
 * attribute unless fmt is NULL). Returns the open file. */
static hid_t copy_case(const char *name, const char *fmt) {
    hid_t src = H5Fopen("tests/golden/top2_gshard.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t dst = H5Fcreate(path_of(name), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(src >= 0 && dst >= 0);
    CU_ASSERT_FATAL(H5Ocopy(src, "top2_all", dst, "top2_all", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    if (fmt) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, strlen(fmt));
        hid_t sp = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(dst, "format", t, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, t, fmt);
        H5Aclose(a), H5Sclose(sp), H5Tclose(t);
    }
    H5Fclose(src);
    return dst;
}

/* `moe check FILE`: the exit status, the output in out. */
static int run_cli(const char *file, char *out, size_t cap) {
    char args[256];
    snprintf(args, sizeof args, "check '%s'", file);
    return run_moe(args, out, cap);
}

/* The library and the CLI both reject the file with a message holding
 * every one of the words. */
static void expect_error(const char *file, moe_status want, const char *w1,
                         const char *w2) {
    int n = -1;
    moe_status st = moe_check_file(file, NULL, NULL, NULL, &n);
    CU_ASSERT_EQUAL(st, want);
    const char *msg = moe_errmsg();
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, file));
    if (w1) CU_ASSERT_PTR_NOT_NULL(strstr(msg, w1));
    if (w2) CU_ASSERT_PTR_NOT_NULL(strstr(msg, w2));
    char out[4096];
    int code = run_cli(file, out, sizeof out);
    CU_ASSERT_EQUAL(code, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "ERROR"));
    if (w1) CU_ASSERT_PTR_NOT_NULL(strstr(out, w1));
    if (w2) CU_ASSERT_PTR_NOT_NULL(strstr(out, w2));
    if (code != 1 || (w1 && !strstr(out, w1))) printf("\n  cli said: %s", out);
}

static void test_missing_file_is_reported_by_name(void) {
    expect_error(path_of("does-not-exist.h5"), MOE_EIO, "No such file", NULL);
}

static void test_non_hdf5_file_is_reported(void) {
    FILE *f = fopen(path_of("text.h5"), "w");
    fputs("this is not HDF5\n", f);
    fclose(f);
    expect_error(path_of("text.h5"), MOE_EFORMAT, "not an HDF5 file", NULL);
}

static void test_file_without_format_attribute_is_reported(void) {
    H5Fclose(copy_case("noformat.h5", NULL));
    expect_error(path_of("noformat.h5"), MOE_EFORMAT, "format", NULL);
    H5Fclose(copy_case("otherformat.h5", "moe-golden/9"));
    expect_error(path_of("otherformat.h5"), MOE_EFORMAT, "moe-golden/9", NULL);
}

static void test_case_missing_a_dataset_names_case_and_dataset(void) {
    hid_t f = copy_case("missing.h5", "moe-golden/1");
    H5Ldelete(f, "top2_all/param/w1", H5P_DEFAULT);
    H5Fclose(f);
    expect_error(path_of("missing.h5"), MOE_EFORMAT, "case top2_all", "param/w1");
    f = copy_case("nogroup.h5", "moe-golden/1");
    H5Ldelete(f, "top2_all/grad", H5P_DEFAULT);
    H5Fclose(f);
    expect_error(path_of("nogroup.h5"), MOE_EFORMAT, "case top2_all", "grad/");
}

static void test_dataset_of_wrong_shape_names_expected_shape(void) {
    hid_t f = copy_case("shape.h5", "moe-golden/1");
    H5Ldelete(f, "top2_all/input/x", H5P_DEFAULT);
    hsize_t dims[3] = {2, 16, 7};
    hid_t sp = H5Screate_simple(3, dims, NULL);
    hid_t ds = H5Dcreate2(f, "top2_all/input/x", H5T_IEEE_F64LE, sp, H5P_DEFAULT,
                          H5P_DEFAULT, H5P_DEFAULT);
    double zero[2 * 16 * 7] = {0};
    H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, zero);
    H5Dclose(ds), H5Sclose(sp), H5Fclose(f);
    expect_error(path_of("shape.h5"), MOE_EFORMAT, "input/x", "[2, 16, 8]");
}

static void set_string_attr(hid_t f, const char *obj, const char *name, const char *v) {
    hid_t g = H5Oopen(f, obj, H5P_DEFAULT);
    H5Adelete(g, name);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v));
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(g, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, v);
    H5Aclose(a), H5Sclose(sp), H5Tclose(t), H5Oclose(g);
}

static void test_unknown_family_and_bad_policy_are_reported_by_name(void) {
    hid_t f = copy_case("family.h5", "moe-golden/1");
    set_string_attr(f, "top2_all", "family", "mystery_moe");
    H5Fclose(f);
    expect_error(path_of("family.h5"), MOE_EUNSUPPORTED, "mystery_moe", "not implemented");
    f = copy_case("policy.h5", "moe-golden/1");
    set_string_attr(f, "top2_all", "policy", "sometimes");
    H5Fclose(f);
    expect_error(path_of("policy.h5"), MOE_EFORMAT, "sometimes", "all|none|threshold|random");
}

static void test_invalid_config_in_a_case_is_reported(void) {
    hid_t f = copy_case("cf.h5", "moe-golden/1");
    hid_t g = H5Gopen2(f, "top2_all", H5P_DEFAULT);
    double bad = -1.0;
    hid_t a = H5Aopen(g, "capacity_factor", H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_DOUBLE, &bad);
    H5Aclose(a), H5Gclose(g), H5Fclose(f);
    expect_error(path_of("cf.h5"), MOE_EFORMAT, "capacity_factor", "invalid configuration");
}

static void test_absurd_sizes_in_attributes_are_refused_before_allocating(void) {
    hid_t f = copy_case("huge.h5", "moe-golden/1");
    hid_t g = H5Gopen2(f, "top2_all", H5P_DEFAULT);
    int64_t big = 1 << 16;
    hid_t a = H5Aopen(g, "b", H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &big);
    H5Aclose(a), H5Gclose(g), H5Fclose(f);
    /* 2^16 x 16 x 8 floats claimed: refused by the shape of input/x */
    expect_error(path_of("huge.h5"), MOE_EFORMAT, "case top2_all", "input/x");
    f = copy_case("huger.h5", "moe-golden/1");
    g = H5Gopen2(f, "top2_all", H5P_DEFAULT);
    int64_t huge_d = 1 << 20;
    a = H5Aopen(g, "d", H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &huge_d);
    H5Aclose(a), H5Gclose(g), H5Fclose(f);
    expect_error(path_of("huger.h5"), MOE_EFORMAT, "case top2_all", "too large");
}

static void test_a_wrong_reference_value_fails_the_case(void) {
    hid_t f = copy_case("wrong.h5", "moe-golden/1");
    hid_t ds = H5Dopen2(f, "top2_all/grad/w_gate", H5P_DEFAULT);
    double v[8 * 4];
    H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    v[3] *= 1.01; /* a 1% error in one entry of one gradient */
    H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Dclose(ds), H5Fclose(f);
    int n;
    CU_ASSERT_EQUAL(moe_check_file(path_of("wrong.h5"), NULL, NULL, NULL, &n), MOE_EMISMATCH);
    CU_ASSERT_PTR_NOT_NULL(strstr(moe_errmsg(), "grad/w_gate"));
    char out[4096];
    CU_ASSERT_EQUAL(run_cli(path_of("wrong.h5"), out, sizeof out), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "FAIL"));
}

static void test_cli_usage_errors_exit_two_and_help_exits_zero(void) {
    const char *bin = getenv("MOE_BIN") ? getenv("MOE_BIN") : "bin/moe";
    char cmd[256];
    snprintf(cmd, sizeof cmd, "%s check >/dev/null 2>&1", bin);
    CU_ASSERT_EQUAL(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s check --bogus x.h5 >/dev/null 2>&1", bin);
    CU_ASSERT_EQUAL(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s frobnicate >/dev/null 2>&1", bin);
    CU_ASSERT_EQUAL(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s check --help >/dev/null 2>&1", bin);
    CU_ASSERT_EQUAL(WEXITSTATUS(system(cmd)), 0);
    snprintf(cmd, sizeof cmd, "%s check tests/golden/switch_top1.h5 >/dev/null 2>&1", bin);
    CU_ASSERT_EQUAL(WEXITSTATUS(system(cmd)), 0);
}

/* Numeric options refuse empty text, trailing garbage and out-of-range
 * values with one line naming the option and its range, exit 2. */
static void test_numeric_options_are_checked_whole(void) {
    static const struct { const char *args, *want; } cases[] = {
        {"check --threads '' tests/golden/switch_top1.h5", "moe check: --threads '': allowed 0..1024"},
        {"check --threads 2x tests/golden/switch_top1.h5", "moe check: --threads '2x': allowed 0..1024"},
        {"check --threads 0x2 tests/golden/switch_top1.h5", "moe check: --threads '0x2': allowed 0..1024"},
        {"train nowhere.ini --stop-at 99999999999999999999", "moe train: --stop-at '99999999999999999999': allowed 1..1000000000000"},
        {"train nowhere.ini --stop-at ''", "moe train: --stop-at '': allowed 1..1000000000000"},
        {"train nowhere.ini --stop-at 0", "moe train: --stop-at '0': allowed 1..1000000000000"},
        {"ablate x.ini --threads ''", "moe ablate: --threads '': allowed 1..1024"},
        {"ablate x.ini --threads 99999999999999999999", "moe ablate: --threads '99999999999999999999': allowed 1..1024"},
        {"bench --threads ''", "moe bench: --threads '': allowed 0..1024"},
        {"bench --reps 3.5", "moe bench: --reps '3.5': allowed 1..64"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[1024];
        int rc = run_moe(cases[i].args, out, sizeof out);
        if (rc != 2 || !strstr(out, cases[i].want))
            fprintf(stderr, "\n  moe %s: exit %d, '%s'\n", cases[i].args, rc, out);
        CU_ASSERT_EQUAL(rc, 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, cases[i].want));
        CU_ASSERT_PTR_NOT_NULL(strchr(out, '\n'));
        CU_ASSERT(strchr(out, '\n') && strchr(out, '\n')[1] == '\0'); /* one line */
    }
}

/* Under mpirun with several ranks, bin/moe (no MPI) hands over to the
 * moe-mpi beside it with the same arguments, or stops naming it; a single
 * rank runs as usual. */
static void test_under_mpirun_bin_moe_hands_over_to_moe_mpi_or_stops(void) {
    const char *bin = getenv("MOE_BIN") ? getenv("MOE_BIN") : "bin/moe";
    char dir[] = "/tmp/moe_handover_XXXXXX", cmd[1024], out[4096];
    CU_ASSERT_FATAL(mkdtemp(dir) != NULL);
    snprintf(cmd, sizeof cmd, "cp %s %s/moe", bin, dir);
    CU_ASSERT_FATAL(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "OMPI_COMM_WORLD_SIZE=2 %s/moe train x.ini 2>&1", dir);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    CU_ASSERT_EQUAL(WEXITSTATUS(pclose(p)), 1);
    CU_ASSERT(strstr(out, "2 ranks") && strstr(out, "moe-mpi is missing") && strstr(out, "make MPI=1"));
    /* a stand-in moe-mpi that shows what it was given */
    snprintf(cmd, sizeof cmd, "printf '#!/bin/sh\\necho handed over: \"$@\"\\n' > %s/moe-mpi && "
             "chmod +x %s/moe-mpi && OMPI_COMM_WORLD_SIZE=2 %s/moe train x.ini 2>&1", dir, dir, dir);
    p = popen(cmd, "r");
    n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    CU_ASSERT_EQUAL(WEXITSTATUS(pclose(p)), 0);
    CU_ASSERT(strstr(out, "handed over: train x.ini") != NULL);
    snprintf(cmd, sizeof cmd, "OMPI_COMM_WORLD_SIZE=1 %s/moe --help >/dev/null 2>&1", dir);
    CU_ASSERT_EQUAL(WEXITSTATUS(system(cmd)), 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CU_ASSERT(system(cmd) == 0);
}

/* ---------------------------------------- issue 15 item 8: leniencies */

/* Replaces attribute name of object obj in f by a variable-length UTF-8
 * string (h5py's default for str). */
static void vlen_attr(hid_t f, const char *obj, const char *name, const char *v) {
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    CU_ASSERT_FATAL(o >= 0);
    if (H5Aexists(o, name) > 0) H5Adelete(o, name);
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t a = H5Acreate2(o, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT(a >= 0 && H5Awrite(a, t, &v) >= 0);
    H5Aclose(a), H5Sclose(sp), H5Tclose(t), H5Oclose(o);
}

static void test_h5py_variable_length_strings_are_read(void) {
    hid_t f = copy_case("vlen.h5", NULL);
    vlen_attr(f, "/", "format", "moe-golden/1");
    vlen_attr(f, "top2_all", "family", "top2_gshard");
    vlen_attr(f, "top2_all", "activation", "relu");
    H5Fclose(f);
    int n = 0;
    moe_status st = moe_check_file(path_of("vlen.h5"), NULL, NULL, NULL, &n);
    CU_ASSERT_EQUAL(st, MOE_OK);
    CU_ASSERT_EQUAL(n, 1);
    if (st != MOE_OK) printf("\n    %s", moe_errmsg());
}

static void test_a_dataset_in_place_of_a_case_is_an_error(void) {
    hid_t f = copy_case("dscase.h5", "moe-golden/1");
    hsize_t one = 1;
    hid_t sp = H5Screate_simple(1, &one, NULL);
    hid_t ds = H5Dcreate2(f, "top2_zz", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(ds), H5Sclose(sp), H5Fclose(f);
    expect_error(path_of("dscase.h5"), MOE_EFORMAT, "case top2_zz", "not a group");
}

/* A tolerance attribute of top2_all replaced: by the string "1e-3", or a
 * float of a non-IEEE layout (exponent bias 1000). */
static void bad_tolerance(const char *name, int string) {
    hid_t f = copy_case(name, "moe-golden/1");
    hid_t t = H5Gopen2(f, "top2_all/tolerance", H5P_DEFAULT);
    CU_ASSERT_FATAL(t >= 0);
    CU_ASSERT_FATAL(H5Adelete(t, "output/y") >= 0);
    hid_t sp = H5Screate(H5S_SCALAR), ty;
    const char *text = "1e-3";
    const double v = 1e-3;
    if (string) {
        ty = H5Tcopy(H5T_C_S1);
        H5Tset_size(ty, strlen(text) + 1);
    } else {
        ty = H5Tcopy(H5T_IEEE_F64LE);
        H5Tset_ebias(ty, 1000);
    }
    hid_t a = H5Acreate2(t, "output/y", ty, sp, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT(a >= 0 && H5Awrite(a, string ? ty : H5T_IEEE_F64LE, string ? (const void *)text
                                                                         : (const void *)&v) >= 0);
    H5Aclose(a), H5Tclose(ty), H5Sclose(sp), H5Gclose(t), H5Fclose(f);
}

static void test_a_tolerance_that_is_not_a_number_is_an_error(void) {
    bad_tolerance("tolstr.h5", 1);
    expect_error(path_of("tolstr.h5"), MOE_EFORMAT, "tolerance: attribute 'output/y'",
                 "is a string");
    bad_tolerance("tolodd.h5", 0);
    expect_error(path_of("tolodd.h5"), MOE_EFORMAT, "tolerance: attribute 'output/y'",
                 "not numeric");
    /* the same result after another file was checked (no state kept) */
    char odd[512], msg[1024];
    snprintf(odd, sizeof odd, "%s", path_of("tolodd.h5"));
    snprintf(msg, sizeof msg, "%s", moe_errmsg());
    int n;
    CU_ASSERT_EQUAL(moe_check_file("tests/golden/top2_gshard.h5", NULL, NULL, NULL, &n), MOE_OK);
    CU_ASSERT_EQUAL(moe_check_file(odd, NULL, NULL, NULL, &n), MOE_EFORMAT);
    CU_ASSERT_STRING_EQUAL(moe_errmsg(), msg);
}

static void test_a_missing_loss_the_family_defines_fails(void) {
    hid_t f = copy_case("nobal.h5", "moe-golden/1");
    CU_ASSERT(H5Ldelete(f, "top2_all/output/balance_loss", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    expect_error(path_of("nobal.h5"), MOE_EFORMAT, "case top2_all", "output/balance_loss");
    hid_t src = H5Fopen("tests/golden/switch_top1.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    f = H5Fcreate(path_of("noz.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT_FATAL(src >= 0 && f >= 0);
    CU_ASSERT_FATAL(H5Ocopy(src, "switch_cf1", f, "switch_cf1", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    vlen_attr(f, "/", "format", "moe-golden/1");
    CU_ASSERT(H5Ldelete(f, "switch_cf1/output/z_loss", H5P_DEFAULT) >= 0);
    H5Fclose(src), H5Fclose(f);
    expect_error(path_of("noz.h5"), MOE_EFORMAT, "case switch_cf1", "output/z_loss");
}

void suite_check_errors(void) {
    CU_pSuite s = CU_add_suite("check_errors", setup, teardown);
    CU_add_test(s, "missing_file_is_reported_by_name", test_missing_file_is_reported_by_name);
    CU_add_test(s, "non_hdf5_file_is_reported", test_non_hdf5_file_is_reported);
    CU_add_test(s, "file_without_format_attribute_is_reported", test_file_without_format_attribute_is_reported);
    CU_add_test(s, "case_missing_a_dataset_names_case_and_dataset", test_case_missing_a_dataset_names_case_and_dataset);
    CU_add_test(s, "dataset_of_wrong_shape_names_expected_shape", test_dataset_of_wrong_shape_names_expected_shape);
    CU_add_test(s, "unknown_family_and_bad_policy_are_reported_by_name", test_unknown_family_and_bad_policy_are_reported_by_name);
    CU_add_test(s, "invalid_config_in_a_case_is_reported", test_invalid_config_in_a_case_is_reported);
    CU_add_test(s, "absurd_sizes_in_attributes_are_refused_before_allocating", test_absurd_sizes_in_attributes_are_refused_before_allocating);
    CU_add_test(s, "a_wrong_reference_value_fails_the_case", test_a_wrong_reference_value_fails_the_case);
    CU_add_test(s, "h5py_variable_length_strings_are_read", test_h5py_variable_length_strings_are_read);
    CU_add_test(s, "a_dataset_in_place_of_a_case_is_an_error", test_a_dataset_in_place_of_a_case_is_an_error);
    CU_add_test(s, "a_tolerance_that_is_not_a_number_is_an_error", test_a_tolerance_that_is_not_a_number_is_an_error);
    CU_add_test(s, "a_missing_loss_the_family_defines_fails", test_a_missing_loss_the_family_defines_fails);
    CU_add_test(s, "cli_usage_errors_exit_two_and_help_exits_zero", test_cli_usage_errors_exit_two_and_help_exits_zero);
    CU_add_test(s, "numeric_options_are_checked_whole", test_numeric_options_are_checked_whole);
    CU_add_test(s, "under_mpirun_bin_moe_hands_over_to_moe_mpi_or_stops", test_under_mpirun_bin_moe_hands_over_to_moe_mpi_or_stops);
}
