#!/usr/bin/env bash
# SecureVault demo. Builds the workspace and takes a tour of the crypto core:
# what the client derives, encrypts and verifies before anything reaches the
# server. (It grows into "start a server, register, log in, mount" as the
# server and the mount land.)
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd -- "$ROOT"
if ! command -v cargo >/dev/null; then
    echo "error: cargo not found: install the Rust toolchain (https://rustup.rs)" >&2
    exit 1
fi
echo "==> building (release)"
cargo build --release --workspace --locked
echo "==> binaries: target/release/vault, target/release/vault-server"
echo "==> a tour of the crypto core"
cargo run --release --locked -q -p common --example tour
