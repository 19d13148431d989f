#!/usr/bin/env bash
# Fails if the workspace's dependency tree contains a forbidden crate.
#
# The single TLS/crypto provider is aws-lc-rs: a tree that also has ring makes
# rustls panic at run time (no unambiguous default provider), and OpenSSL is
# not used at all. Dev-dependencies are checked too: `cargo test` builds them
# into the same binaries, with unified features.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd -- "$ROOT"

FORBIDDEN=(ring openssl-sys native-tls)
EDGES=normal,build,dev

bad=0

# tree_for SPEC: the inverted tree of SPEC; sets TREE_OUT and TREE_RC.
tree_for() {
    TREE_RC=0
    TREE_OUT=$(cargo tree --workspace --locked -e "$EDGES" -i "$1" 2>&1) || TREE_RC=$?
}

report() {
    local spec=$1 out=$2 first
    first=$(printf '%s\n' "$out" | head -n 1)
    echo "error: forbidden crate $spec in the dependency tree: $first"
    # The rest of the inverted tree shows the path from the workspace.
    printf '%s\n' "$out" | tail -n +2 | sed 's/^/    /'
}

for crate in "${FORBIDDEN[@]}"; do
    tree_for "$crate"
    if grep -q 'did not match any packages' <<<"$TREE_OUT"; then
        : # absent: good
    elif ((TREE_RC == 0)) && grep -q 'nothing to print' <<<"$TREE_OUT"; then
        : # only in Cargo.lock as an optional dependency no feature turns on
    elif ((TREE_RC == 0)); then
        report "$crate" "$TREE_OUT"
        bad=1
    elif grep -q 'is ambiguous' <<<"$TREE_OUT"; then
        # Several versions are present: report each one.
        mapfile -t specs < <(grep -E "^[[:space:]]*${crate}@" <<<"$TREE_OUT" | sed -E 's/^[[:space:]]+//; s/[[:space:]]+$//')
        if ((${#specs[@]} == 0)); then
            echo "error: forbidden crate $crate is in the dependency tree (several versions):"
            printf '%s\n' "$TREE_OUT" | sed 's/^/    /'
        fi
        for spec in "${specs[@]}"; do
            tree_for "$spec"
            report "$spec" "$TREE_OUT"
        done
        bad=1
    else
        echo "error: 'cargo tree -i $crate' failed (exit $TREE_RC):" >&2
        printf '%s\n' "$TREE_OUT" | sed 's/^/    /' >&2
        exit 2
    fi
done

if ((bad)); then
    echo "error: the dependency tree must not contain: ${FORBIDDEN[*]} (aws-lc-rs is the only crypto/TLS provider)"
    exit 1
fi
echo "ok: none of ${FORBIDDEN[*]} in the dependency tree"
