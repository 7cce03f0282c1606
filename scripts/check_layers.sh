#!/usr/bin/env bash
# The layering check of lib/ (run by `make test`; README "Architecture").
#
# lib/ is one folder per layer; a file may use its own layer and the layers
# below it, never one above. The order, lowest first, is written here once:
ORDER="base kernels io core families model data train golden ablate bench plot mpi cli"
# lib/moe.h and lib/moe_*.h, the public headers, may be included anywhere;
# examples/ may include nothing else of lib/.
#
# usage: scripts/check_layers.sh [BUILD_DIR]
#        scripts/check_layers.sh --self-test
#   - every #include "..." of lib/*/*.[ch] and examples/*.[ch] is checked
#     against the order;
#   - with BUILD_DIR (e.g. build/rel), the objects' symbols are checked too
#     (nm): no file uses a function or object defined in a higher layer, and
#     no two files of lib/ call each other, directly or through others, in a
#     circle.
# Exit 0 when clean; 1, with one line per violation, otherwise.
set -u
cd "$(dirname "$0")/.."
if [ "${1:-}" = --self-test ]; then
    # The check must fail on a planted upward include, upward call and
    # circle of calls: in a copy of the tree, never in this one.
    t=$(mktemp -d) && trap 'rm -rf "$t"' EXIT
    mkdir -p "$t/scripts" && cp -r lib examples "$t/" && cp "$0" "$t/scripts/"
    echo '#include "cli/cli.h"' >> "$t/lib/base/status.c"
    out=$(bash "$t/scripts/check_layers.sh" 2>&1) && { echo "check_layers: self-test: a planted upward include passed"; exit 1; }
    echo "$out" | grep -q 'lib/base/status.c includes "cli/cli.h": base may not include cli' ||
        { echo "check_layers: self-test: unexpected output: $out"; exit 1; }
    sed -i '$d' "$t/lib/base/status.c"
    mkdir -p "$t/b/lib/base" "$t/b/lib/cli" "$t/b/lib/kernels"
    printf 'void moe_cli_x(void);\nvoid moe_base_x(void) { moe_cli_x(); }\n' > "$t/a.c"
    printf 'void moe_cli_x(void) {}\n' > "$t/c.c"
    printf 'void moe_k2(void);\nvoid moe_k1(void) { moe_k2(); }\n' > "$t/k1.c"
    printf 'void moe_k1(void);\nvoid moe_k2(void) { moe_k1(); }\n' > "$t/k2.c"
    cc -c "$t/a.c" -o "$t/b/lib/base/a.o" && cc -c "$t/c.c" -o "$t/b/lib/cli/c.o" &&
        cc -c "$t/k1.c" -o "$t/b/lib/kernels/k1.o" && cc -c "$t/k2.c" -o "$t/b/lib/kernels/k2.o" || exit 1
    out=$(bash "$t/scripts/check_layers.sh" "$t/b" 2>&1) && { echo "check_layers: self-test: a planted upward call passed"; exit 1; }
    echo "$out" | grep -q 'lib/base/a.c uses moe_cli_x of lib/cli/c.c: base may not use cli' &&
        echo "$out" | grep -q 'a circle of calls: lib/kernels/k[12].c lib/kernels/k[12].c' ||
        { echo "check_layers: self-test: unexpected output: $out"; exit 1; }
    echo "check_layers: self-test: a planted upward include, upward call and circle are each reported"
    exit 0
fi
declare -A RANK
i=0; for l in $ORDER; do RANK[$l]=$i; i=$((i + 1)); done
bad=0
say() { echo "check_layers: $*"; bad=1; }

for f in lib/*/*.[ch] examples/*.[ch]; do
    [ -e "$f" ] || continue
    dir=$(dirname "$f"); own=${dir#lib/}
    while IFS= read -r inc; do
        case "$inc" in
        */*) tgt=${inc%%/*} ;;
        *) if [ -e "$dir/$inc" ]; then tgt=$own; elif [ -e "lib/$inc" ]; then tgt=public; else tgt=other; fi ;;
        esac
        [ "$tgt" = public ] || [ "$tgt" = other ] && [ "$dir" != examples ] && continue
        if [ "$dir" = examples ]; then
            [ "$tgt" = public ] || [ "$tgt" = examples ] || [ -e "examples/$inc" ] || [ "$tgt" = other ] ||
                say "$f includes \"$inc\": examples use the public headers (lib/moe*.h) only"
            continue
        fi
        [ "$tgt" = "$own" ] && continue
        r_own=${RANK[$own]:--1}; r_tgt=${RANK[$tgt]:--1}
        if [ "$r_own" -lt 0 ]; then say "$f: folder lib/$own is not in the layer order ($ORDER)"; break; fi
        if [ "$r_tgt" -lt 0 ]; then say "$f includes \"$inc\": lib/$tgt is not a layer ($ORDER)"; continue; fi
        [ "$r_tgt" -gt "$r_own" ] &&
            say "$f includes \"$inc\": $own may not include $tgt, a higher layer (order: $ORDER)"
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
done

if [ $# -ge 1 ]; then
    b=$1
    objs=$(ls "$b"/lib/*/*.o 2>/dev/null)
    [ -n "$objs" ] || { echo "check_layers: no objects in $b/lib (build first)"; exit 1; }
    # "file defined-symbol" and "file used-symbol" lines
    # one nm for all objects; -A prefixes each line with "FILE:"
    defs=$(nm -A -g --defined-only $objs | awk -v b="$b/" '{f = $1; sub(/:[^:]*$/, "", f); sub(b, "", f)} NF == 3 {print f, $3}')
    uses=$(nm -A -u $objs | awk -v b="$b/" '{f = $1; sub(/:[^:]*$/, "", f); sub(b, "", f); print f, $NF}')
    edges=$(awk 'NR == FNR {def[$2] = $1; next} ($2 in def) && def[$2] != $1 {print $1, def[$2], $2}' \
        <(echo "$defs") <(echo "$uses") | sort -u)
    # upward uses, then circles: each set of files that reach each other
    # through the call graph (a strongly connected component) once
    out=$(echo "$edges" | awk -v order="$ORDER" '
        BEGIN { n = split(order, o, " "); for (i = 1; i <= n; i++) rk[o[i]] = i }
        function layer(f,   p) { n = split(f, p, "/"); return p[n - 1] }
        NF == 3 {
            if (rk[layer($2)] > rk[layer($1)]) {
                a = $1; c = $2; sub(/\.o$/, ".c", a); sub(/\.o$/, ".c", c)
                print a " uses " $3 " of " c ": " layer($1) " may not use " layer($2) ", a higher layer"
            }
            if (!(($1, $2) in seen)) { seen[$1, $2]; adj[$1] = adj[$1] " " $2 }
            node[$1]; node[$2]
        }
        function reach(a,   q, h, n, x, nb, i, k) {
            delete R; h = 0; n = 0; q[n++] = a; R[a] = 1
            while (h < n) { x = q[h++]; k = split(adj[x], nb, " ")
                for (i = 1; i <= k; i++) if (!(nb[i] in R)) { R[nb[i]] = 1; q[n++] = nb[i] } }
        }
        END {
            for (a in node) { reach(a); for (b in R) to[a, b] = 1 }
            for (a in node) {
                if (a in done) continue
                comp = ""; m = 0
                for (b in node) if (b != a && to[a, b] && to[b, a]) { done[b]; c = b; sub(/\.o$/, ".c", c); comp = comp " " c; m++ }
                if (m) { c = a; sub(/\.o$/, ".c", c); print "a circle of calls:" " " c comp }
            }
        }')
    if [ -n "$out" ]; then while IFS= read -r l; do say "$l"; done <<< "$out"; fi
fi
[ $bad -eq 0 ] && echo "check_layers: lib/ follows the layer order ($ORDER)${1:+, no upward calls, no circles}"
exit $bad
