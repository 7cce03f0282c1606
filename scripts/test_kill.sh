#!/bin/sh
# The kill -9 test (issue 15, "flushed means durable"; run by `make test`):
# a tiny training run (metrics flushed every 5 steps, a checkpoint every
# 10) is SIGKILLed at KILLS seeded moments spread over the length of an
# uninterrupted run. After each kill:
#   - the run file, if there is one, opens (h5dump) and every row of every
#     series in it equals the uninterrupted run's row (a prefix of it);
#   - the checkpoint, if there is one, opens and --resume runs to the end;
#     the resumed run file (all rows) and the final checkpoint then equal
#     the uninterrupted run's bit for bit (values printed with %.17g);
#     without a checkpoint the run starts again (--force) and must equal it.
# Wall-clock series (train/time_s, train/tokens_per_s) are left out.
# usage: scripts/test_kill.sh MOE_BIN [SEED] [KILLS]
set -u
BIN=${1:?usage: scripts/test_kill.sh MOE_BIN [SEED] [KILLS]}
SEED=${2:-15}
KILLS=${3:-12}
command -v h5dump >/dev/null 2>&1 || { echo "test_kill: h5dump not found (hdf5-tools): skipped"; exit 0; }
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1
D=$(mktemp -d /tmp/moe-kill.XXXXXX) || exit 1
trap 'rm -rf "$D"' EXIT
cat > "$D/k.ini" <<INI
[model]
d_model = 32
n_layer = 2
n_head = 2
d_ff = 64
seq_len = 16
[moe]
n_expert = 4
d_hidden = 32
[optim]
warmup_steps = 10
[data]
batch_size = 8
synth_vocab = 32
synth_docs = 64
[run]
steps = 100
log_every = 1000
eval_every = 40
flush_every = 5
checkpoint_every = 10
threads = 1
INI
fail=0
bad() { echo "test_kill: FAIL: $*"; fail=1; }
train() { # NAME extra-args...: run k.ini writing NAME.h5 and NAME.ckpt
    n=$1; shift
    "$BIN" train "$D/k.ini" --set "run.metrics=$D/$n.h5" --set "run.checkpoint=$D/$n.ckpt" --quiet "$@"
}
# every series of FILE (but the wall-clock ones) as "path v1 v2 ...", one
# a line, from one h5dump (empty if the file cannot be read)
dump() {
    paths=$(h5ls -r "$1" 2>/dev/null | awk '$2 == "Dataset" && $1 !~ /time_s|tokens_per_s/ {printf " -d %s", $1}')
    [ -n "$paths" ] || return 0
    # shellcheck disable=SC2086
    h5dump -A 0 -m %.17g -y -w 0 $paths "$1" 2>/dev/null | awk '
        /^ *DATASET "/ { split($0, q, "\""); name = q[2]; line = name; next }
        /^ *DATA \{/ { in_data = 1; next }
        in_data && /^ *\}/ { in_data = 0; print line; next }
        in_data { gsub(/,/, " "); line = line " " $0 }' | tr -s ' '
}
# compare A B MODE: every series of A is in B, as a prefix (p) or equal (e)
compare() {
    dump "$1" > "$D/a.txt"; dump "$2" > "$D/b.txt"
    [ -s "$D/a.txt" ] || [ "$3" = p ] || { bad "$1: no series can be read"; return; }
    awk -v mode="$3" -v file="$1" '
        NR == FNR { ref[$1] = $0; next }
        { n = split($0, a, " "); m = split(ref[$1], b, " ")
          ok = m > 0 && (mode == "p" ? n <= m : n == m)
          for (i = 2; ok && i <= n; i++) ok = a[i] == b[i]
          if (!ok) { printf "test_kill: FAIL: %s: %s: its %d values are not %s the uninterrupted run'"'"'s %d\n",
                     file, $1, n - 1, mode == "p" ? "the first ones of" : "those of", m - 1; bad = 1 } }
        END { exit bad }' "$D/b.txt" "$D/a.txt" || fail=1
}
t0=$(date +%s.%N)
train ref --force || { echo "test_kill: the uninterrupted run failed"; exit 1; }
T=$(echo "$t0 $(date +%s.%N)" | awk '{print $2 - $1}')
moments=$(awk -v s="$SEED" -v k="$KILLS" -v t="$T" 'BEGIN { srand(s); for (i = 0; i < k; i++) printf "%.3f ", 0.02 + rand() * t * 1.05 }')
i=0; killed=0; resumed=0
for m in $moments; do
    i=$((i + 1)); n=k$i
    "$BIN" train "$D/k.ini" --set "run.metrics=$D/$n.h5" --set "run.checkpoint=$D/$n.ckpt" \
        --quiet --force & pid=$!
    sleep "$m"
    if kill -9 "$pid" 2>/dev/null; then killed=$((killed + 1)); fi
    wait "$pid" 2>/dev/null
    rows="no run file,"
    if [ -e "$D/$n.h5" ]; then
        h5dump -H "$D/$n.h5" >/dev/null 2>&1 || bad "$n.h5 (killed at $m s) does not open"
        compare "$D/$n.h5" "$D/ref.h5" p
        rows=$(h5ls "$D/$n.h5/train/step" 2>/dev/null | sed -n 's/.*{\([0-9]*\)\/.*/\1/p')
    fi
    ck=none
    if [ -e "$D/$n.ckpt" ]; then
        ck=$(h5dump -a /step -y "$D/$n.ckpt" 2>/dev/null | sed -n '/DATA {/,/}/p' | sed '1d;$d' | tr -d ' ')
        [ -n "$ck" ] || bad "$n.ckpt (killed at $m s) does not open"
        train "$n" --resume "$D/$n.ckpt" || bad "$n: resume from step $ck failed"
        resumed=$((resumed + 1))
    else
        train "$n" --force || bad "$n: the run again failed"
    fi
    compare "$D/$n.h5" "$D/ref.h5" e
    compare "$D/$n.ckpt" "$D/ref.ckpt" e
    echo "test_kill: kill $i at $m s: $rows flushed rows, checkpoint of step $ck"
done
echo "test_kill: $killed of $KILLS runs killed (seed $SEED, run length $T s), $resumed resumed from their checkpoint"
[ "$fail" = 0 ] && echo "test_kill: passed" || { echo "test_kill: FAILED"; exit 1; }
