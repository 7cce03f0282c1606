#!/usr/bin/env bash
# The installed library as a user sees it (run by `make test`, optimised run).
#
# usage: scripts/test_install.sh        (from anywhere; MAKE: the make to use)
#
# `make install` into a fresh prefix under build/, then
#   - examples/custom_expert.c + examples/mlp3_expert.c built with
#     `pkg-config --cflags --libs libmoe` against the shared library (rpath
#     to the prefix) and run: it must exit 0 and need libmoe.so.0;
#   - the same against the static library (`pkg-config --static`,
#     -l:libmoe.a): it must exit 0 and need no libmoe.so;
#   - the library needs no HDF5 and exports no tool (train, bench, plot,
#     golden checker, CLI);
#   - `make uninstall` removes every installed file.
# Exit 0 when all hold; 1, with the failing step, otherwise.
set -eu
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
CC=${CC:-cc}
fail() { echo "test_install: $*"; exit 1; }

tmp=build/test-install
rm -rf "$tmp"
mkdir -p "$tmp"
tmp=$(cd "$tmp" && pwd)
prefix=$tmp/prefix
$MAKE --no-print-directory -s install PREFIX="$prefix" >/dev/null || fail "make install failed"
for f in include/moe.h lib/libmoe.a lib/libmoe.so lib/libmoe.so.0 lib/pkgconfig/libmoe.pc; do
    [ -e "$prefix/$f" ] || fail "make install did not install $f"
done
soname=$(readelf -d "$prefix/lib/libmoe.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libmoe.so.0 ] || fail "libmoe.so: soname '$soname', not libmoe.so.0"

# what a user would type; mlp3_expert.c calls cblas_sgemm itself, so the
# example asks for openblas too
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
pkg-config --exists libmoe || fail "pkg-config does not find libmoe"
flags=$(pkg-config --cflags libmoe openblas)
libs=$(pkg-config --libs libmoe openblas)
src="examples/custom_expert.c examples/mlp3_expert.c"
std="-std=c11 -O2 -Wall -Wextra -Werror"

# shared
# shellcheck disable=SC2086
$CC $std $flags -o "$tmp/custom_expert_shared" $src $libs -Wl,-rpath,"$prefix/lib" ||
    fail "building the example against libmoe.so failed"
readelf -d "$tmp/custom_expert_shared" | grep -q 'NEEDED.*\[libmoe\.so\.0\]' ||
    fail "the shared example does not need libmoe.so.0"
"$tmp/custom_expert_shared" >"$tmp/shared.out" || fail "the shared example failed: $(cat "$tmp/shared.out")"

# static: the same flags with the private ones, libmoe.a instead of the .so
slibs=$(pkg-config --static --libs libmoe openblas)
slibs=${slibs/-lmoe/-l:libmoe.a}
# shellcheck disable=SC2086
$CC $std $flags -o "$tmp/custom_expert_static" $src $slibs ||
    fail "building the example against libmoe.a failed"
! readelf -d "$tmp/custom_expert_static" | grep -q 'NEEDED.*libmoe' ||
    fail "the static example needs libmoe.so"
"$tmp/custom_expert_static" >"$tmp/static.out" || fail "the static example failed: $(cat "$tmp/static.out")"
cmp -s "$tmp/shared.out" "$tmp/static.out" || fail "the shared and static examples print different lines"

# the library is the layers under the tools: no HDF5, no tool's function
ldd "$prefix/lib/libmoe.so" | grep -q hdf5 && fail "libmoe.so needs HDF5"
tools=$(nm -g --defined-only "$prefix/lib/libmoe.a" | awk 'NF == 3 {print $3}' |
    grep -E '^moe_(train|bench|plot|check|golden|ablat|cli|h5|ini|runlog|checkpoint|data)' | head -3 || true)
[ -z "$tools" ] || fail "libmoe.a holds tools' functions: $tools"

$MAKE --no-print-directory -s uninstall PREFIX="$prefix" >/dev/null || fail "make uninstall failed"
left=$(find "$prefix" -type f -o -type l)
[ -z "$left" ] || fail "make uninstall left: $left"
rm -rf "$tmp"
echo "test_install: make install, pkg-config build of examples/custom_expert.c (shared and static), make uninstall: ok"
