#!/bin/sh
# Fills the generated parts of paper_notes/*.md from the ablation results.
#
#   scripts/notes.sh [NOTE.md ...]       (make reproduce runs it; default: every note)
#
# A note marks each generated block with two comment lines:
#   <!-- ablation: results/<paper>/<ablation> -->
#   ... replaced on every run ...
#   <!-- end ablation -->
# The block gets the folder's table.md (written by `bin/moe ablate` /
# `bin/moe table`: the table and the reproduced / not reproduced verdicts)
# with its summary plots as images and the per-arm plots as links, or a
# line saying the ablation has not been run. Nothing outside the blocks
# changes. A note is rewritten through a
# temporary file and renamed, so an interrupted run leaves it whole.
set -eu
cd "$(dirname "$0")/.."
me=notes.sh
[ $# -gt 0 ] || set -- paper_notes/*.md

block() { # $1 results dir, relative to the repository root
    dir=$1
    if [ -f "$dir/table.md" ]; then
        # table.md's headings, two levels down to sit inside a note's section
        sed -e 's/^### /##### /' -e 's/^## /#### /' "$dir/table.md"
        if [ -d "$dir/plots" ]; then
            pngs=$(find "$dir/plots" -maxdepth 1 -name '*.png' | sort)
            if [ -n "$pngs" ]; then
                echo
                echo "Plots (\`$dir/plots/\`, SVG beside each PNG):"
                echo
                per_arm=""
                for p in $pngs; do
                    b=$(basename "$p" .png)
                    case $b in
                    load_*|expert_tag_*) per_arm="$per_arm [$b](../$p)" ;;
                    *) echo "![$b](../$p)" ;;
                    esac
                done
                if [ -n "$per_arm" ]; then
                    echo
                    echo "Per arm (load per expert over time, expert x part-of-speech heat map):$per_arm"
                fi
            fi
        fi
    else
        abl=$(echo "$dir" | sed 's|^results/||')
        echo "Not run yet: \`bin/moe ablate experiments/$abl.ini\` (or \`make reproduce\`)."
    fi
}

for note in "$@"; do
    [ -f "$note" ] || { echo "$me: $note: no such note" >&2; exit 1; }
    grep -q '^<!-- ablation: ' "$note" || continue
    tmp="$note.tmp.$$"
    : >"$tmp"
    skipping=0
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
        '<!-- ablation: '*' -->')
            [ $skipping -eq 0 ] || { echo "$me: $note: nested ablation block" >&2; rm -f "$tmp"; exit 1; }
            printf '%s\n' "$line" >>"$tmp"
            dir=$(printf '%s' "$line" | sed -e 's/^<!-- ablation: //' -e 's/ -->$//')
            block "$dir" >>"$tmp"
            skipping=1
            ;;
        '<!-- end ablation -->')
            [ $skipping -eq 1 ] || { echo "$me: $note: 'end ablation' without a start" >&2; rm -f "$tmp"; exit 1; }
            printf '%s\n' "$line" >>"$tmp"
            skipping=0
            ;;
        *)
            [ $skipping -eq 1 ] || printf '%s\n' "$line" >>"$tmp"
            ;;
        esac
    done <"$note"
    if [ $skipping -eq 1 ]; then
        echo "$me: $note: an ablation block has no '<!-- end ablation -->'" >&2
        rm -f "$tmp"
        exit 1
    fi
    mv -f "$tmp" "$note"
    echo "$me: updated $note" >&2
done
