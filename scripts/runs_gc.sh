#!/bin/sh
# The run stores' unused files (`make runs-gc [DELETE=1]`).
#
#   scripts/runs_gc.sh [--delete] [RESULTS]     RESULTS: default results
#
# `bin/moe ablate` trains each run once into a run store (RESULTS/runs/,
# RESULTS/runs-quick/, lib/ablate/README.md) and links the results
# folders' <arm>-s<seed>.h5 to it. This lists, one line each
#   unused  RESULTS/runs/<key>.h5
# the store files that no symlink under RESULTS points to (a config no
# ablation file has any more, a run of an older code revision; KEY.h5.part:
# a run killed before it finished), and
# deletes them only with --delete (never one whose <key>.lock is there:
# being trained, not linked yet). Links from outside RESULTS (--out
# elsewhere) are not seen: such a folder's runs are listed as unused.
set -eu
del=0 root=
for a in "$@"; do
    case $a in
    --delete) del=1 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "runs_gc.sh: unknown option '$a' (allowed: --delete, --help)" >&2; exit 2 ;;
    *) [ -z "$root" ] || { echo "runs_gc.sh: one RESULTS folder only" >&2; exit 2; }
       root=$a ;;
    esac
done
root=${root:-results}
[ -d "$root" ] || { echo "runs_gc.sh: $root: no such folder" >&2; exit 2; }

used=$(mktemp "${TMPDIR:-/tmp}/moe-runs-gc.XXXXXX")
trap 'rm -f "$used"' EXIT INT TERM
find "$root" -type l -name '*.h5' | while IFS= read -r l; do
    readlink -f "$l" || true
done | sort -u >"$used"

n=0 total=0
for f in "$root"/runs*/*.h5; do
    [ -f "$f" ] || continue
    total=$((total + 1))
    grep -qxF "$(readlink -f "$f")" "$used" && continue
    [ ! -e "${f%.h5}.lock" ] || { echo "locked  $f (being trained: kept)"; continue; }
    n=$((n + 1))
    echo "unused  $f"
    [ "$del" = 0 ] || rm -f "$f"
done
for f in "$root"/runs*/*.h5.part; do # a run killed before it finished
    [ -f "$f" ] || continue
    [ ! -e "${f%.h5.part}.lock" ] || continue
    total=$((total + 1)) n=$((n + 1))
    echo "unused  $f"
    [ "$del" = 0 ] || rm -f "$f"
done
if [ "$del" = 1 ]; then
    echo "runs-gc: $n of $total store files deleted"
else
    echo "runs-gc: $n of $total store files unused (--delete / DELETE=1 deletes them)"
fi
