#!/usr/bin/env bash
# wasm-toolchain.sh — make `cargo build --target wasm32-wasip2` work on this machine.
#
# Order of attempts:
#   1. the wasm32-wasip2 target is already installed for rustup's toolchain, or for
#      /usr/bin/rustc (a previous run of this script)           -> nothing to do;
#   2. `rustup target add wasm32-wasip2` (bounded by a timeout: it hangs where rustup's
#      download host is unreachable)                             -> use rustup's toolchain;
#   3. Debian route: rustc-web 1.96 from apt, a newer wasi-libc .deb (wasm32-wasip2 sockets +
#      pthread stubs) from a newer Debian suite, and the wasm std built once from rust-web-src
#      with -Zbuild-std, installed into rustc-web's sysroot (the layout rustup would create).
#
# Prints nothing but progress on stderr. Writes /etc/agnes/wasm-toolchain.env with the
# RUSTC/CARGO the project's build uses for guests. Idempotent: a re-run takes ~1 s.
# Run as root. Knobs: FORCE=1 (rebuild), WASI_LIBC_SUITES="forky sid trixie",
# AGNES_WASM_TOOLCHAIN=debian (skip rustup; what a machine without rustup's downloads gets).
set -euo pipefail

TARGET=wasm32-wasip2
WASI_LIBC_SUITES="${WASI_LIBC_SUITES:-forky sid trixie}"
FORCE="${FORCE:-0}"
SHARE=/usr/local/share/agnes-wasm
ENV_FILE=/etc/agnes/wasm-toolchain.env
RUSTLIB=/usr/lib/rustlib
SYS_RUSTC=/usr/bin/rustc
SYS_CARGO=/usr/bin/cargo
RECIPE=1

log() { printf '\033[1;34m[wasm-toolchain]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[wasm-toolchain] error:\033[0m %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (apt-get and writes to $RUSTLIB)"

write_env() {   # $1 = cargo, $2 = rustc
  mkdir -p "$(dirname "$ENV_FILE")"
  printf 'WASM_CARGO=%s\nWASM_RUSTC=%s\n' "$1" "$2" > "$ENV_FILE"
  log "guests build with $("$2" -V) ($ENV_FILE)"
}

VIA="${AGNES_WASM_TOOLCHAIN:-auto}"
# 1 + 2: rustup
if [ "$VIA" != debian ] && command -v rustup >/dev/null 2>&1; then
  if rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    write_env "$(rustup which cargo)" "$(rustup which rustc)"; exit 0
  fi
fi
STAMP="recipe=$RECIPE
$("$SYS_RUSTC" -vV 2>/dev/null || true)"
if [ "$FORCE" != 1 ] && [ -f "$RUSTLIB/$TARGET/agnes.stamp" ] \
   && [ "$(cat "$RUSTLIB/$TARGET/agnes.stamp")" = "$STAMP" ]; then
  write_env "$SYS_CARGO" "$SYS_RUSTC"; exit 0
fi
if [ "$VIA" != debian ] && command -v rustup >/dev/null 2>&1; then
  log "trying: rustup target add $TARGET (60 s limit)"
  if timeout 60 rustup target add "$TARGET" >/dev/null 2>&1; then
    write_env "$(rustup which cargo)" "$(rustup which rustc)"; exit 0
  fi
  log "rustup cannot download the target here; using Debian's rustc-web instead"
fi

# 3: Debian route
WORK="$(mktemp -d /tmp/agnes-wasm.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
apt_install() {
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
log "apt-get update"; apt-get update -qq
missing=""
for p in rustc-web cargo-web rust-web-src rust-web-llvm; do pkg_installed "$p" || missing="$missing $p"; done
# shellcheck disable=SC2086
[ -z "$missing" ] || apt_install $missing
# rust-web-llvm ships rust-lld -> lld-NN without depending on lld-NN
LLD="$(readlink /usr/bin/rust-lld || true)"
[ -n "$LLD" ] || die "/usr/bin/rust-lld missing (package rust-web-llvm)"
[ -e "/usr/bin/$LLD" ] || apt_install "$LLD"
RV="$(dpkg-query -W -f='${Version}' rustc-web)"; SV="$(dpkg-query -W -f='${Version}' rust-web-src)"
[ "$RV" = "$SV" ] || apt_install "rust-web-src=$RV"
[ -x "$RUSTLIB/x86_64-unknown-linux-gnu/bin/wasm-component-ld" ] || die "wasm-component-ld missing (rust-web-llvm)"
STAMP="recipe=$RECIPE
$("$SYS_RUSTC" -vV)"

# wasi-libc with wasm32-wasip2 (bookworm's is preview1-only and lacks pthread stubs)
fetch_wasi_libc() {
  local base suite d ver deb
  base="$(apt-get indextargets --format '$(URI)' 'Created-By: Packages' 2>/dev/null \
          | grep -v -- '-security/' | sed -n 's|/dists/.*||p' | head -1)"
  [ -n "$base" ] || return 1
  for suite in $WASI_LIBC_SUITES; do
    d="$WORK/apt-$suite"; mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/dl"
    printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' "$base" "$suite" > "$d/sources.list"
    local o=(-o "Dir::Etc::SourceList=$d/sources.list" -o Dir::Etc::SourceParts=/dev/null
             -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" -o Debug::NoLocking=1
             -o APT::Sandbox::User=root -o Acquire::Check-Valid-Until=false)
    log "looking for wasi-libc in Debian $suite (private apt state; signatures verified)"
    apt-get -qq "${o[@]}" update >/dev/null 2>&1 || continue
    ver="$(apt-cache "${o[@]}" show wasi-libc 2>/dev/null | sed -n 's/^Version: //p' | sort -V | tail -1)"
    [ -n "$ver" ] || continue
    ( cd "$d/dl" && apt-get -qq "${o[@]}" download "wasi-libc=$ver" >/dev/null 2>&1 ) || continue
    deb="$(ls "$d"/dl/wasi-libc_*_all.deb 2>/dev/null | head -1)"; [ -n "$deb" ] || continue
    dpkg-deb -x "$deb" "$d/x"
    [ -f "$d/x/usr/lib/wasm32-wasip2/libc.a" ] || continue
    rm -rf "$SHARE/wasi-libc"; mkdir -p "$SHARE"; mv "$d/x/usr/lib" "$SHARE/wasi-libc"
    echo "$ver ($suite)" > "$SHARE/wasi-libc/VERSION"
    log "using wasi-libc $ver from Debian $suite"; return 0
  done
  return 1
}
if [ "$FORCE" = 1 ] || [ ! -f "$SHARE/wasi-libc/VERSION" ]; then
  fetch_wasi_libc || die "no wasi-libc with wasm32-wasip2 found in: $WASI_LIBC_SUITES"
fi

log "building the $TARGET std from rust-web-src (~70 s on 2 cores)"
mkdir -p "$WORK/sysroot/src"; : > "$WORK/sysroot/src/lib.rs"
cat > "$WORK/sysroot/Cargo.toml" <<'TOML'
[package]
name = "agnes-wasm-sysroot"
version = "0.0.0"
edition = "2021"
[lib]
path = "src/lib.rs"
[profile.release]
debug = 0
[workspace]
TOML
( cd "$WORK/sysroot" && env -u RUSTUP_TOOLCHAIN -u RUSTFLAGS -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET \
    RUSTC="$SYS_RUSTC" RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Cembed-bitcode=yes -Zforce-unstable-if-unmarked" \
    "$SYS_CARGO" build --release --quiet --target "$TARGET" --target-dir "$WORK/sysroot/target" \
    -Zbuild-std=std,panic_abort ) || die "std build failed"
deps="$WORK/sysroot/target/$TARGET/release/deps"
rm -rf "${RUSTLIB:?}/$TARGET/lib"; mkdir -p "$RUSTLIB/$TARGET/lib/self-contained"
find "$deps" -maxdepth 1 -name 'lib*.rlib' ! -name 'libagnes_wasm_sysroot-*' -exec cp {} "$RUSTLIB/$TARGET/lib/" \;
src="$SHARE/wasi-libc/wasm32-wasip2"
cp "$src/crt1-command.o" "$src/crt1-reactor.o" "$src/libc.a" "$RUSTLIB/$TARGET/lib/self-contained/"
printf '%s\n' "$STAMP" > "$RUSTLIB/$TARGET/agnes.stamp"
write_env "$SYS_CARGO" "$SYS_RUSTC"
