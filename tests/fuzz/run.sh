#!/bin/sh
# Runs one libFuzzer harness (Makefile targets fuzz, fuzz-test; README
# "Fuzzing"): tests/fuzz/run.sh BUILD NAME SECONDS CORPUS
#   BUILD/fuzz_NAME on CORPUS (new inputs written there) and the seeds
#   tests/fuzz/NAME/, for SECONDS, niced. The harnesses that open HDF5
#   files run in libFuzzer's fork mode with -ignore_crashes=1, so that a
#   crash inside HDF5 does not end the run (fork mode costs speed: the INI
#   and ablation harnesses run in one process). Then every
#   crash input is run again and classified by the first frame of its
#   report that is not a sanitizer interceptor:
#     inside libhdf5 (HDF5 1.10 is not instrumented, and malformed files
#       crash it in its object-header code): recorded in
#       BUILD/hdf5-crashes/NAME/ and listed, not a failure of ours;
#       (crashes, and out-of-memory from inputs that make HDF5 allocate
#       gigabytes: the first frame after malloc in libhdf5);
#     anywhere else (our code, a leak, a UBSan report, a timeout, an
#       out-of-memory): printed, and the exit status is 1;
#     no report when run alone (seen once: a fork-mode job ended by a
#       signal without a report): copied to BUILD/unreproduced/NAME/ and
#       listed, not a failure.
# SECONDS 0: no fuzzing, only the crash inputs of the last run classified.
# Prints "NAME: EXECS runs, EXEC/S per second, ..." from the run's log.
set -u
build=$1 name=$2 secs=$3 corpus=$4
bin=$build/fuzz_$name
log=$build/$name.log
art=$build/artifacts/$name
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$corpus" "$art" "$build/hdf5-crashes/$name"
[ "$secs" = 0 ] || rm -f "$art"/*
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export LSAN_OPTIONS=suppressions=$here/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
# one malloc above 512 MB is reported where it happens (HDF5 converting a
# corrupt variable-length string asks for 1.8 GB): its stack classifies it
limits="-malloc_limit_mb=512 -rss_limit_mb=2560 -timeout=30"
case $name in ini|ablation) fork= ;; *) fork="-fork=1 -ignore_crashes=1" ;; esac
start=$(date +%s)
[ "$secs" = 0 ] && fork="-runs=0"
# shellcheck disable=SC2086
nice -n 19 "$bin" $fork $limits -print_final_stats=1 \
    -max_total_time="$secs" -artifact_prefix="$art/" "$corpus" "$here/$name" > "$log" 2>&1
rc=$?
t=$(( $(date +%s) - start ))
if [ -n "$fork" ]; then # the last status line: "#EXECS: cov: C ... time: Ts job: J"
    last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -1)
    execs=$(echo "$last" | sed -n 's/^#\([0-9]*\):.*/\1/p')
    cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
else
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
fi
eps=$( [ -n "$execs" ] && [ "$t" -gt 0 ] && echo $((execs / t)) )
ours=0 hdf5=0
unrep=0
mkdir -p "$build/unreproduced/$name"
for f in "$art"/*; do
    [ -e "$f" ] || continue
    rep=$("$bin" $limits -runs=1 "$f" 2>&1)
    # the first frame that is not the sanitizers', libFuzzer's or libc's
    # (malloc, memcpy, strdup: their caller decides); frames of the harness
    # binary without a source line are interceptors (ours have one: -g)
    frame=$(echo "$rep" | grep -E '^ *#[0-9]+ ' |
        grep -vE '__interceptor_|__asan|__sanitizer|__ubsan|__lsan|libclang_rt|compiler-rt|fuzzer::|libstdc\+\+|/fuzz_[a-z]+\+0x|sysdeps/|libc\.so' |
        head -1)
    if ! echo "$rep" | grep -qE 'ERROR: |runtime error|out-of-memory|timeout|deadly signal'; then
        # e.g. a job of fork mode killed without a report: kept, listed
        unrep=$((unrep + 1))
        cp "$f" "$build/unreproduced/$name/"
        echo "$name: $(basename "$f") does not reproduce when run alone (kept in $build/unreproduced/$name/)"
        continue
    fi
    if echo "$frame" | grep -q 'libhdf5' && ! echo "$rep" | grep -q 'runtime error'; then
        hdf5=$((hdf5 + 1))
        cp "$f" "$build/hdf5-crashes/$name/"
        echo "$name: inside HDF5 (recorded in $build/hdf5-crashes/$name/$(basename "$f")):" \
             "$(echo "$rep" | grep -m1 -oE 'ERROR: [A-Za-z]+: [A-Za-z-]+')"
        continue
    fi
    ours=$((ours + 1))
    echo "$name: FAILED on $f:"
    echo "$rep" | grep -vE '^(INFO|\*\*\*|Running|Executed)' | head -40
done
echo "$name: ${execs:-?} runs in ${t:-?} s, ${eps:-?} per second, coverage ${cov:-?}; crashes inside HDF5: $hdf5; not reproduced: $unrep; ours: $ours (exit $rc)"
[ "$ours" = 0 ] && [ -n "$execs" ]
