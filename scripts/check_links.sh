#!/usr/bin/env bash
# The link check of the Markdown files (run by `make test`).
#
# usage: scripts/check_links.sh [FILE.md ...]   (default: every tracked *.md)
#   - every relative link [text](path), ![alt](path), [text](path#anchor)
#     and [text](#anchor) outside code blocks and inline code must name an
#     existing file or folder (relative to the Markdown file; a leading /
#     means the top of the repository);
#   - an #anchor into a Markdown file must be one of its headings, slugged
#     as GitHub does (lower case, punctuation dropped, spaces to '-', a
#     repeated heading gets -1, -2, ...) or an <a name="..."> / id="...";
#   - links with a scheme (https:, mailto:, ...) are not checked.
# Prints one line per broken link (FILE:LINE: LINK); exit 0 when every
# link resolves, 1 otherwise.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -gt 0 ]; then files=("$@"); else cd "$top" && mapfile -t files < <(git ls-files '*.md'); fi

# The anchors of a Markdown file, one a line.
PUNCT='!"#$%&'"'"'()*+,./:;<=>?@[\\\]^`{|}~'
anchors() {
    awk '/^[ \t]*(```|~~~)/ { f = !f; next }
         !f && /^#+[ \t]/ { sub(/^#+[ \t]+/, ""); sub(/[ \t]+#+[ \t]*$/, ""); print }' "$1" |
        tr 'A-Z' 'a-z' | tr -d "$PUNCT" | tr ' \t' '--' |
        awk '{ n = seen[$0]++; print (n ? $0 "-" n : $0) }'
    awk '{ s = $0
           while (match(s, /(name|id)="[^"]*"/)) {
               a = substr(s, RSTART, RLENGTH); sub(/^[a-z]*="/, "", a); sub(/"$/, "", a); print a
               s = substr(s, RSTART + RLENGTH) } }' "$1"
}

declare -A cache
has_anchor() {  # FILE ANCHOR
    [ -n "${cache[$1]+x}" ] || cache[$1]=$'\n'"$(anchors "$1")"$'\n'
    case "${cache[$1]}" in *$'\n'"$2"$'\n'*) return 0 ;; esac
    return 1
}

bad=0
for f in "${files[@]}"; do
    [ -f "$f" ] || { echo "$f: no such file"; bad=1; continue; }
    dir=.; case "$f" in */*) dir=${f%/*} ;; esac
    # LINE<TAB>TARGET for every inline link and reference definition,
    # outside fenced code and inline code spans
    while IFS=$'\t' read -r ln link; do
        case "$link" in
        '' | [a-zA-Z]*:*) continue ;;   # a scheme: https:, mailto:, ...
        esac
        path=${link%%#*}; anchor=
        [ "$path" != "$link" ] && anchor=${link#*#}
        if [ -z "$path" ]; then tgt=$f
        elif [ "${path#/}" != "$path" ]; then tgt=$top$path
        else tgt=$dir/$path
        fi
        if [ ! -e "$tgt" ]; then
            echo "$f:$ln: $link"; bad=1
        elif [ -n "$anchor" ] && [ -f "$tgt" ] && [ "${tgt%.md}" != "$tgt" ] && ! has_anchor "$tgt" "$anchor"; then
            echo "$f:$ln: $link (no such heading)"; bad=1
        fi
    done < <(awk '/^[ \t]*(```|~~~)/ { f = !f; next }
                  f { next }
                  { s = $0; gsub(/`[^`]*`/, "", s)
                    if (match(s, /^ *\[[^]]*\]:[ \t]+[^ \t]+/)) {
                        t = s; sub(/^ *\[[^]]*\]:[ \t]+/, "", t); sub(/[ \t].*$/, "", t); print NR "\t" t; next }
                    while (match(s, /\]\([^)]*\)/)) {
                        t = substr(s, RSTART + 2, RLENGTH - 3)
                        sub(/^[ \t]*</, "", t); sub(/>.*$/, "", t); sub(/^[ \t]+/, "", t); sub(/[ \t].*$/, "", t)
                        print NR "\t" t
                        s = substr(s, RSTART + RLENGTH) } }' "$f")
done
exit $bad
