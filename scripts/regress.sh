#!/bin/sh
# The numerics regression check (`make regress`, `make regress-update`).
#
#   scripts/regress.sh check  [MOE] [RTOL] [ATOL]   one line per run; exit 1 if any moved
#   scripts/regress.sh update [MOE]                 rewrites results/regress/ from this tree
#
# Runs every ablation of experiments/<paper>/*.ini in its quick form
# (`bin/moe ablate --quick`, synthetic data, as `make demo` does) into a
# temporary folder, then compares each run file with its committed
# reference results/regress/<paper>/<ablation>/<arm>-s<seed>.h5 through
# `bin/moe diff --brief` (bit-exact unless RTOL / ATOL are given). Lines:
#   same    <paper>/<ablation>/<arm>-s<seed>.h5
#   MOVED   <paper>/<ablation>/<arm>-s<seed>.h5  <what moved, from moe diff>
#   NEW     ... a run with no reference   GONE  ... a reference with no run
#   FAILED  <paper>/<ablation>            the ablation itself failed (its log)
# `update` stores the runs instead (repacked contiguous with h5repack,
# about 40 kB each; every series and attribute kept) and removes
# references of runs that no longer exist.
set -eu
cd "$(dirname "$0")/.."
mode=${1:-check}
moe=${2:-bin/moe}
rtol=${3:-0}
atol=${4:-0}
ref=results/regress
case $mode in check|update) ;; *)
    echo "regress.sh: mode '$mode' (allowed: check, update)" >&2; exit 2 ;;
esac
[ -x "$moe" ] || { echo "regress.sh: $moe not found (make bin/moe)" >&2; exit 2; }
if [ "$mode" = update ] && ! command -v h5repack >/dev/null 2>&1; then
    echo "regress.sh: h5repack not found (apt-get install hdf5-tools)" >&2; exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-regress.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

bad=0 runs=0 moved=0
for f in experiments/*/*.ini; do
    case $f in experiments/train/*|experiments/base/*) continue ;; esac
    paper=$(sed -n 's/^ *paper *= *//p' "$f" | head -n 1)
    name=$(basename "$f" .ini)
    out=$tmp/runs/$paper/$name
    if ! "$moe" ablate "$f" --quick --force --out "$out" --runs "$tmp/store" --quiet >"$tmp/log" 2>&1; then
        echo "FAILED  $paper/$name: bin/moe ablate $f --quick failed:"
        tail -n 5 "$tmp/log" | sed 's/^/        /'
        bad=1
        continue
    fi
    for run in "$out"/*.h5; do
        [ -e "$run" ] || continue
        id=$paper/$name/$(basename "$run")
        runs=$((runs + 1))
        if [ "$mode" = update ]; then
            mkdir -p "$tmp/new/$paper/$name"
            h5repack -l CONTI "$run" "$tmp/new/$id"
        elif [ ! -e "$ref/$id" ]; then
            echo "NEW     $id (no reference: make regress-update)"
            bad=1
        elif "$moe" diff --brief --rtol "$rtol" --atol "$atol" "$ref/$id" "$run" >"$tmp/diff" 2>&1; then
            echo "same    $id"
        else # the summary line (or the error) of moe diff, paths shortened
            echo "MOVED   $id  $(tail -n 1 "$tmp/diff" | sed -e "s|$ref/$id|REF|g" -e "s|$run|RUN|g" -e "s/^DIFFER REF vs RUN: //")"
            moved=$((moved + 1))
            bad=1
        fi
    done
    if [ "$mode" = check ] && [ -d "$ref/$paper/$name" ]; then
        for r in "$ref/$paper/$name"/*.h5; do
            [ -e "$r" ] || continue
            [ -e "$out/$(basename "$r")" ] || { echo "GONE    $paper/$name/$(basename "$r") (no such run any more)"; bad=1; }
        done
    fi
done

if [ "$mode" = update ]; then
    [ "$bad" = 0 ] || { echo "regress.sh: an ablation failed, $ref left as it was" >&2; exit 1; }
    rm -rf "$ref.tmp" && mkdir -p "$ref.tmp"
    [ -e "$ref/README.md" ] && cp "$ref/README.md" "$ref.tmp/"
    cp -r "$tmp/new/." "$ref.tmp/"
    rm -rf "$ref" && mv "$ref.tmp" "$ref"
    echo "regress: $runs runs written to $ref/ ($(du -sh "$ref" | cut -f1))"
    exit 0
fi
if [ "$bad" = 0 ]; then
    echo "regress: all $runs runs identical to $ref/ (rtol $rtol, atol $atol)"
else
    echo "regress: FAILED: $moved of $runs runs moved (rtol $rtol, atol $atol); see the lines above"
    exit 1
fi
