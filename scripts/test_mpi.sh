#!/usr/bin/env bash
# The MPI tests (make test runs them when mpicc is installed):
#  1. suites ep_layer and ep_train under mpirun -np 2 and -np 4: the
#     expert-parallel layer against one process on the same batch, every
#     family; the sharded optimizer, the R-rank checkpoint against one
#     process's and resume on R ranks;
#  2. 20 training steps with -np 2 against one process (bin/moe): the same
#     losses to 1e-5 relative, for top-2 and Switch;
#  3. failures on one rank (bad value, missing config, missing corpus,
#     another config, unwritable metrics) and impossible splits: every rank
#     exits nonzero with a message naming a rank, within a timeout.
# usage: scripts/test_mpi.sh RUN_MPI_TESTS MOE_MPI [MOE_ONE_PROCESS]
set -u
tests=$1 mpi_bin=$2 one=${3:-build/rel/moe}
[ -x "$one" ] || one=bin/moe
run="mpirun --oversubscribe --allow-run-as-root"
cfg=experiments/train/synthetic_tiny.ini
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok:   $*"; }

# 1. the layer and training suites
for np in 2 4; do
    if timeout 300 $run -np $np "$tests" >"$tmp/layer$np.txt" 2>&1; then
        ok "suites ep_layer, ep_train, -np $np"
    else
        cat "$tmp/layer$np.txt"; fail "suites ep_layer, ep_train, -np $np (exit $?)"
    fi
done
grep "R=2" "$tmp/layer2.txt" | sed 's/passed$//'

# 2. training: -np 2 against one process
losses() { # FILE DATASET: one value a line
    h5dump -d "$2" -m %.17g "$1" | sed -n '/DATA {/,/}/p' | grep -o '[-0-9.e+]*,\?$' | tr -d ,
}
compare() { # NAME A.h5 B.h5 DATASET
    paste <(losses "$2" "$4") <(losses "$3" "$4") | awk -v name="$1 $4" '
        { n++; d = $1 - $2; if (d < 0) d = -d; r = d / ($2 < 0 ? -$2 : $2); if (r > m) m = r }
        END { printf "%s: %d values, max relative difference %.2e\n", name, n, m;
              exit !(n > 0 && m <= 1e-5) }'
}
for fam in top2_gshard switch_top1 topk_dropless; do
    set_args=(--set run.steps=20 --set run.eval_every=10 --set run.threads=1 --set moe.family=$fam $( [ $fam = switch_top1 ] && echo --set moe.top_n=1 ))
    if ! timeout 300 "$one" train $cfg "${set_args[@]}" --set run.metrics="$tmp/one-$fam.h5" \
            --quiet >"$tmp/one.txt" 2>&1; then
        cat "$tmp/one.txt"; fail "train $fam, one process"; continue
    fi
    if ! timeout 300 $run -np 2 "$mpi_bin" train $cfg "${set_args[@]}" \
            --set run.metrics="$tmp/np2-$fam.h5" --quiet >"$tmp/np2.txt" 2>&1; then
        cat "$tmp/np2.txt"; fail "train $fam, -np 2"; continue
    fi
    for ds in /train/loss /train/ce /train/aux /valid/ce; do
        if out=$(compare "$fam" "$tmp/one-$fam.h5" "$tmp/np2-$fam.h5" $ds); then ok "$out"
        else fail "$out"; fi
    done
    if h5dump -d /comm/a2a_bytes "$tmp/np2-$fam.h5" >/dev/null 2>&1; then ok "$fam: /comm in the run file"
    else fail "$fam: no /comm/a2a_bytes in the -np 2 run file"; fi
done

# 3. failures: nonzero exit on every rank, messages naming ranks, no hang
expect_fail() { # NAME PATTERN MPIRUN-ARGS...
    local name=$1 pattern=$2
    shift 2
    timeout 60 $run "$@" >"$tmp/f.txt" 2>&1
    local rc=$?
    if [ $rc -eq 124 ]; then cat "$tmp/f.txt"; fail "$name: hung (killed after 60 s)"
    elif [ $rc -eq 0 ]; then cat "$tmp/f.txt"; fail "$name: exit status 0"
    elif ! grep -q -- "$pattern" "$tmp/f.txt"; then cat "$tmp/f.txt"; fail "$name: no '$pattern'"
    else ok "$name (exit $rc): $(grep -m1 -- "$pattern" "$tmp/f.txt")"; fi
}
q="--quiet --set run.steps=20"
expect_fail "bad value on rank 1" "rank 0 stops: rank 1 failed" \
    -np 1 "$mpi_bin" train $cfg $q : -np 1 "$mpi_bin" train $cfg $q --set model.d_model=abc
expect_fail "missing config on rank 1" "rank 1: .*nonexistent.ini" \
    -np 1 "$mpi_bin" train $cfg $q : -np 1 "$mpi_bin" train "$tmp/nonexistent.ini" $q
expect_fail "missing corpus on rank 0" "rank 1 stops: rank 0 failed" \
    -np 1 "$mpi_bin" train $cfg $q --set data.source=brown --set data.dir="$tmp/none" \
    : -np 1 "$mpi_bin" train $cfg $q
expect_fail "another config on rank 1" "configuration of rank 1 differs" \
    -np 1 "$mpi_bin" train $cfg $q : -np 1 "$mpi_bin" train $cfg $q --set optim.lr=1e-3
expect_fail "unwritable metrics on rank 0" "rank 1 stops: rank 0 failed" \
    -np 2 "$mpi_bin" train $cfg $q --set run.metrics="$tmp/no/such/dir/run.h5"
expect_fail "batch not divisible by 3 ranks" "not divisible by the 3 ranks" \
    -np 3 "$mpi_bin" train $cfg $q
expect_fail "experts not divisible by 3 ranks" "n_expert = 4 is not divisible" \
    -np 3 "$mpi_bin" train $cfg $q --set data.batch_size=9

if [ $fails -ne 0 ]; then echo "test_mpi: $fails failed"; exit 1; fi
echo "test_mpi: all passed"
