#!/usr/bin/env bash
# setup.sh — everything a fresh machine needs to build, test and demo Agnes. Idempotent.
#
#   1. the wasm32-wasip2 guest toolchain          (scripts/wasm-toolchain.sh)
#   2. the official prebuilt libduckdb.so 1.5.6   (npm: @duckdb/node-bindings-linux-x64, sha256 pinned)
#      into /opt/agnes-deps/duckdb-1.5.6, which .cargo/config.toml links against (with an rpath)
#   3. just (PyPI: rust-just) and cargo-nextest, if missing
#   4. PostgreSQL server and client (Debian `postgresql`), if missing: the tests and the
#      benchmark start private clusters as the `postgres` user (never as root)
#   5. clang, llvm and wasi-libc (Debian), if missing: the sql component (DataFusion) links
#      zstd, C compiled for wasm32-wasip2
#   7. cargo-component (crates.io) and the wasm32-wasip1 target, for connector authors'
#      second build path (recorded in /etc/agnes/cargo-component.env)
#   6. Chromium and ChromeDriver (Debian `chromium`, `chromium-driver`), if missing: the
#      admin web UI is tested in a real headless browser
#   8. Garage 2.5.0 (crates.io), the S3-compatible server the scale-out tests run against,
#      into /opt/agnes-deps/garage-2.5.0 (a separate test process; AGPL, never linked)
#
# Run as root (sudo) on Debian bookworm x86_64. A re-run takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

DUCKDB_NPM="@duckdb/node-bindings-linux-x64@1.5.6-r.1"
DUCKDB_SHA256="1b9f82478539bb9a1d1df44bd103121a12ae52142c07158dc52b97d2ec1d69ff"
DUCKDB_DIR=/opt/agnes-deps/duckdb-1.5.6
JUST_VERSION=1.59.0

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || die "run as root (no sudo on this machine)"
  exec sudo -E bash "$0" "$@"
fi

bash scripts/wasm-toolchain.sh

if [ ! -f "$DUCKDB_DIR/libduckdb.so" ]; then
  command -v npm >/dev/null || { apt-get update -qq; apt-get install -y -qq npm >/dev/null; }
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  log "fetching $DUCKDB_NPM (official prebuilt libduckdb.so)"
  ( cd "$tmp" && npm pack --silent "$DUCKDB_NPM" >/dev/null )
  tgz="$(ls "$tmp"/*.tgz)"
  echo "$DUCKDB_SHA256  $tgz" | sha256sum -c --quiet - || die "checksum mismatch for $DUCKDB_NPM"
  tar -xzf "$tgz" -C "$tmp" package/libduckdb.so package/LICENSE
  mkdir -p "$DUCKDB_DIR"
  mv "$tmp/package/libduckdb.so" "$tmp/package/LICENSE" "$DUCKDB_DIR/"
  log "libduckdb.so installed in $DUCKDB_DIR"
fi

if [ ! -x /usr/local/bin/just ]; then
  if ! just --version 2>/dev/null | grep -q "^just "; then
    log "installing just $JUST_VERSION (PyPI: rust-just)"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "rust-just==$JUST_VERSION" \
      || die "pip install rust-just failed"
  fi
  # pip puts it in Python's scripts dir, which is not on every PATH: link it
  ln -sf "$(python3 -c 'import sysconfig;print(sysconfig.get_path("scripts"))')/just" /usr/local/bin/just
fi
if ! command -v openssl >/dev/null 2>&1; then
  # the TLS test makes a self-signed certificate with it
  log "installing openssl"
  apt-get update -qq && apt-get install -y -qq openssl >/dev/null || die "apt-get install openssl failed"
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1 || ! id postgres >/dev/null 2>&1; then
  log "installing PostgreSQL (Debian postgresql)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
    || die "apt-get install postgresql failed"
  # the tests start their own clusters; the packaged one is not needed
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    for c in /etc/postgresql/*/main; do
      [ -d "$c" ] && pg_ctlcluster "$(basename "$(dirname "$c")")" main stop 2>/dev/null || true
    done
  fi
fi
if ! command -v cargo-nextest >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --quiet --locked cargo-nextest || die "cargo install cargo-nextest failed"
fi
if ! command -v clang >/dev/null 2>&1 || ! command -v llvm-ar-14 >/dev/null 2>&1 || [ ! -d /usr/include/wasm32-wasi ]; then
  log "installing clang and wasi-libc (Debian clang, llvm, wasi-libc): the sql component's zstd decoder is C built for wasm32-wasip2"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang llvm wasi-libc >/dev/null \
    || die "apt-get install clang llvm wasi-libc failed"
fi

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  log "installing Chromium and ChromeDriver (Debian chromium, chromium-driver) for the admin UI's browser tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
    || die "apt-get install chromium chromium-driver failed"
fi

# cargo-component, for connector authors who build with it (the kit's test builds a scaffold
# both ways): installed once outside the clone (~7 min cold on 2 cores), and the wasm32-wasip1
# target it builds for (then adapts to a component). Where either cannot be installed, the file
# below says so and the test reports that it only built with plain cargo.
CC_VERSION=0.21.1
CC_ROOT="/opt/agnes-deps/cargo-component-$CC_VERSION"
CC_ENV=/etc/agnes/cargo-component.env
. /etc/agnes/wasm-toolchain.env
if [ ! -x "$CC_ROOT/bin/cargo-component" ]; then
  log "installing cargo-component $CC_VERSION (crates.io) into $CC_ROOT"
  env -u RUSTUP_TOOLCHAIN RUSTC="$WASM_RUSTC" "$WASM_CARGO" install --quiet --locked cargo-component --version "$CC_VERSION" --root "$CC_ROOT" \
    || log "cargo-component did not install"
fi
wasip1=no
if command -v rustup >/dev/null 2>&1; then
  if rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || timeout 90 rustup target add wasm32-wasip1 >/dev/null 2>&1; then
    wasip1=yes
  fi
fi
if [ -x "$CC_ROOT/bin/cargo-component" ] && [ "$wasip1" = yes ]; then
  printf 'CARGO_COMPONENT=%s\n' "$CC_ROOT/bin/cargo-component" > "$CC_ENV"
else
  printf 'CARGO_COMPONENT=\n# unavailable: cargo-component installed=%s, wasm32-wasip1 target=%s\n' \
    "$([ -x "$CC_ROOT/bin/cargo-component" ] && echo yes || echo no)" "$wasip1" > "$CC_ENV"
  log "cargo component builds are unavailable here (see $CC_ENV)"
fi

# Garage, the S3-compatible object store the scale-out tests run against (crates.io `garage`,
# AGPL-3.0: run as a separate test process only, never linked into or shipped with Agnes).
# Built once outside the clone, with only what the tests use (the S3 API on SQLite): 6 min 52 s
# cold on 2 cores (10 min with its default features).
GARAGE_VERSION=2.5.0
GARAGE_ROOT="/opt/agnes-deps/garage-$GARAGE_VERSION"
if [ ! -x "$GARAGE_ROOT/bin/garage" ]; then
  log "installing garage $GARAGE_VERSION (crates.io) into $GARAGE_ROOT (test S3 server)"
  CARGO_TARGET_DIR=/var/tmp/agnes-target/garage cargo install --quiet --locked garage --version "$GARAGE_VERSION" \
    --no-default-features --features bundled-libs,sqlite --root "$GARAGE_ROOT" \
    || die "cargo install garage failed"
  rm -rf /var/tmp/agnes-target/garage
fi

log "ready: just $(just --version | cut -d' ' -f2), libduckdb $DUCKDB_DIR, $(grep WASM_RUSTC /etc/agnes/wasm-toolchain.env), $(ls -d /usr/lib/postgresql/*/bin | tail -1)"
