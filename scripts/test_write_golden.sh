#!/bin/sh
# make test: scripts/write_golden.py and examples/user_top2.py against
# bin/moe check (README "Checking your own MoE layer").
#
#   scripts/test_write_golden.sh [MOE]     (MOE: the bin/moe to use, default bin/moe)
#
# 1. With numpy + h5py for /usr/bin/python3: every case of tests/golden/*.h5
#    read back and written again through write_golden.py (the settings
#    that shapes give left out, to be inferred) must PASS; the same case
#    with one gate 1% off must FAIL naming route/gate; a case missing a
#    gradient must be refused naming it.
# 2. With torch too: examples/user_top2.py's layer must PASS and its
#    variant without renormalisation must FAIL.
# Each part is skipped with a message when its packages are missing.
set -eu
cd "$(dirname "$0")/.."
moe=${1:-bin/moe}
py=${PYTHON:-/usr/bin/python3}  # PYTHON: another interpreter (the tests skip without its packages)
me=test_write_golden
tmp=$(mktemp -d "${TMPDIR:-/tmp}/moe-wg.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "$me: FAILED: $*" >&2; exit 1; }

if ! $py -c 'import numpy, h5py' 2>/dev/null; then
    echo "$me: skipped: $py has no numpy/h5py (apt-get install python3-h5py)"
    exit 0
fi
for f in tests/golden/*.h5; do
    $py scripts/write_golden.py --copy "$f" "$tmp/$(basename "$f")" >/dev/null ||
        fail "write_golden.py --copy $f"
done
"$moe" check "$tmp"/*.h5 >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "a round-tripped case does not pass"; }
n=$(grep -c '^PASS' "$tmp/out")
echo "$me: $n cases of tests/golden/ written again by write_golden.py: all PASS"

$py - "$tmp" <<'PY' || fail "the writer's own checks"
import sys
sys.path.insert(0, "scripts")
from write_golden import read_golden, write_golden
tmp = sys.argv[1]
c = read_golden("tests/golden/top2_gshard.h5", "top2_all")
c["top2_all"]["route"]["gate"][0, 0, 3] *= 1.01
write_golden(tmp + "/off.h5", c)
c = read_golden("tests/golden/top2_gshard.h5", "top2_all")
del c["top2_all"]["grad"]["w1"]
try:
    write_golden(tmp + "/bad.h5", c)
    sys.exit("a case without grad/w1 was written")
except ValueError as e:
    assert "grad/w1 missing" in str(e), e
PY
if "$moe" check "$tmp/off.h5" >"$tmp/out" 2>&1; then fail "a gate 1% off passes"; fi
grep -q '^FAIL .*route/gate' "$tmp/out" || { cat "$tmp/out"; fail "the FAIL line does not name route/gate"; }
echo "$me: a gate 1% off: FAIL naming route/gate; a missing gradient refused"

if ! $py -c 'import torch' 2>/dev/null; then
    echo "$me: examples/user_top2.py skipped: $py has no torch (apt-get install python3-torch)"
    exit 0
fi
$py examples/user_top2.py "$tmp/mine.h5" >/dev/null || fail "examples/user_top2.py"
"$moe" check "$tmp/mine.h5" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "examples/user_top2.py's layer does not pass"; }
$py examples/user_top2.py "$tmp/wrong.h5" --no-renorm >/dev/null || fail "examples/user_top2.py --no-renorm"
if "$moe" check "$tmp/wrong.h5" >"$tmp/out2" 2>&1; then fail "the layer without renormalisation passes"; fi
grep -q '^FAIL ' "$tmp/out2" || fail "no FAIL line for the layer without renormalisation"
echo "$me: examples/user_top2.py: PASS; without renormalisation: $(grep '^FAIL' "$tmp/out2" | sed 's/  */ /g' | cut -c1-90)"
