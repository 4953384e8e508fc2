#!/usr/bin/env bash
# The connector author's pipeline, runnable locally (`just connector-ci DIR`) and the same
# steps as docs/examples/connector-ci.yml: build, test against the recorded fixtures, sign
# with a key from the CI secret store, package, and — when AGNES_SERVER and AGNES_TOKEN are
# set — upload.
#   scripts/connector-ci.sh <connector crate dir>
# Environment: AGNES (the agnes binary, default `agnes`), AGNES_SIGNING_KEY (path of the
# secret key file), CARGO (default `cargo`), CARGO_TARGET_DIR (optional).
set -euo pipefail
crate="$(cd "$1" && pwd)"
AGNES="${AGNES:-agnes}"
CARGO="${CARGO:-cargo}"
: "${AGNES_SIGNING_KEY:?set AGNES_SIGNING_KEY to the signing key file (from the CI secret store)}"
cd "$crate"
target="${CARGO_TARGET_DIR:-$crate/target}"
name="$(sed -n 's/^name = "\(.*\)"/\1/p' Cargo.toml | head -1)"
wasm="$target/wasm32-wasip2/release/${name//-/_}.wasm"

# 1. build
"$CARGO" build --release --target wasm32-wasip2
# 2. test against the recorded fixtures (no network; exit 1 on any failure)
"$AGNES" connector test "$wasm" --fixtures fixtures --allow-unsigned --manifest connector.toml
# 3. sign with the key from the secret store, 4. package: one artifact
"$AGNES" connector sign "$wasm" --manifest connector.toml --key "$AGNES_SIGNING_KEY"
"$AGNES" connector package "$wasm" --manifest connector.toml -o "$crate/$name.agnes.wasm"
echo "package: $crate/$name.agnes.wasm"
# 5. upload (pending review on the server until a security reviewer approves it)
if [ -n "${AGNES_SERVER:-}" ] && [ -n "${AGNES_TOKEN:-}" ]; then
  "$AGNES" admin connector upload "$crate/$name.agnes.wasm"
fi
