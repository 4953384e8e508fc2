#!/usr/bin/env bash
# Vendors the WASI 0.2 WIT packages that the host links (from the pinned wasmtime-wasi crate
# in cargo's registry) into wit/deps/, so reviewers read exactly the interfaces a connector
# can import. Re-run after bumping wasmtime-wasi; `git diff --exit-code wit/deps` must be
# clean in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
version="$(sed -n 's/^wasmtime-wasi = { version = "=\([0-9.]*\)".*/\1/p' Cargo.toml)"
[ -n "$version" ] || { echo "wasmtime-wasi version not found in Cargo.toml" >&2; exit 1; }
cargo fetch --quiet
src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"wasmtime-wasi-$version"/src/p2/wit/deps | head -1)"
[ -d "$src" ] || { echo "wasmtime-wasi $version sources not found" >&2; exit 1; }
rm -rf wit/deps
mkdir -p wit/deps
cp "$src"/*.wit wit/deps/
printf 'Vendored from wasmtime-wasi %s (src/p2/wit/deps) by scripts/wit-vendor.sh. Do not edit.\n' "$version" > wit/deps/README.md
echo "wit/deps <- wasmtime-wasi $version"
