# Every routine command of the project. `just --list` shows them.
# Host crates build into a target dir outside the clone, so a later clone (CI on the same
# machine) reuses the build; override with CARGO_TARGET_DIR.

export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", "/var/tmp/agnes-target/host")
wasm_target := CARGO_TARGET_DIR / "wasm"
agnes := CARGO_TARGET_DIR / "debug/agnes"
csv_wasm := wasm_target / "wasm32-wasip2/release/agnes_connector_csv.wasm"
pg_wasm := wasm_target / "wasm32-wasip2/release/agnes_connector_postgres.wasm"
sql_target := CARGO_TARGET_DIR / "wasm-sql"
sql_wasm := sql_target / "wasm32-wasip2/release/agnes_sql.wasm"
reviewer_wasm := wasm_target / "wasm32-wasip2/release/agnes_plugin_reviewer.wasm"

default:
    @just --list

# Build the connector components (wasm32-wasip2) with the toolchain setup.sh installed.
connectors:
    . /etc/agnes/wasm-toolchain.env && cd connectors-wasm && \
      env -u RUSTUP_TOOLCHAIN RUSTC="$WASM_RUSTC" CARGO_TARGET_DIR={{wasm_target}} \
      "$WASM_CARGO" build --release --locked
    @ls -l {{wasm_target}}/wasm32-wasip2/release/*.wasm

# A connector author's pipeline on a crate made with `agnes connector new` (the steps of
# docs/examples/connector-ci.yml): build, test with fixtures, sign, package, upload if
# AGNES_SERVER/AGNES_TOKEN are set. Needs AGNES_SIGNING_KEY (a key file).
connector-ci dir: build
    . /etc/agnes/wasm-toolchain.env && env -u RUSTUP_TOOLCHAIN RUSTC="$WASM_RUSTC" CARGO="$WASM_CARGO" \
      AGNES={{agnes}} scripts/connector-ci.sh {{dir}}

# Build the first-party reviewer component (agnes:hook@0.1.0) for marketplace plugins.
reviewers:
    . /etc/agnes/wasm-toolchain.env && cd hooks-wasm && \
      env -u RUSTUP_TOOLCHAIN RUSTC="$WASM_RUSTC" CARGO_TARGET_DIR={{wasm_target}} \
      "$WASM_CARGO" build --release --locked
    @ls -l {{wasm_target}}/wasm32-wasip2/release/agnes_plugin_reviewer.wasm

# Build the sql component (Apache DataFusion for SQL over Agnes tables; ~20 min cold on
# 2 cores, cached in the target dir outside the clone; tests/build.rs builds the same).
sql-component:
    . /etc/agnes/wasm-toolchain.env && cd sql-wasm && \
      env -u RUSTUP_TOOLCHAIN RUSTC="$WASM_RUSTC" CARGO_TARGET_DIR={{sql_target}} \
      CC_wasm32_wasip2=clang CFLAGS_wasm32_wasip2="--target=wasm32-wasi -isystem /usr/include/wasm32-wasi" \
      AR_wasm32_wasip2=llvm-ar-14 "$WASM_CARGO" build --release --target wasm32-wasip2 --locked
    @ls -l {{sql_wasm}}

# Sign every built connector with its connector.toml: `just sign keys/ops.key`
# (writes <component>.wasm.sig next to each; `agnes connector keygen` makes a key).
sign key: connectors build
    for c in csv http-json jira keboola postgres; do \
      wasm={{wasm_target}}/wasm32-wasip2/release/agnes_connector_$(echo $c | tr - _).wasm; \
      {{agnes}} connector sign "$wasm" --manifest connectors-wasm/$c/connector.toml --key {{key}}; \
    done

# Build the agnes binary.
build:
    cargo build -p agnes

# The demo: the csv component syncs the bundled dataset, the server serves it, an analyst
# with a grant downloads and queries it over REST (scripts/demo.sh).
demo: connectors sql-component reviewers build
    AGNES_SQL_COMPONENT={{sql_wasm}} scripts/demo.sh {{agnes}} {{csv_wasm}} {{pg_wasm}} {{reviewer_wasm}}

# The whole test suite (host crates, end-to-end with real components, guest unit tests).
test:
    cargo test --workspace --no-fail-fast
    . /etc/agnes/wasm-toolchain.env && cd connectors-wasm && \
      env -u RUSTUP_TOOLCHAIN RUSTC="$WASM_RUSTC" RUSTDOC="$(dirname "$WASM_RUSTC")/rustdoc" \
      CARGO_TARGET_DIR={{wasm_target}}-native \
      "$WASM_CARGO" test --locked --lib --target x86_64-unknown-linux-gnu \
        -p agnes-connector-sdk -p agnes-connector-csv -p agnes-connector-http-json \
        -p agnes-connector-jira -p agnes-connector-keboola -p agnes-connector-synth \
        -p agnes-connector-postgres

# Every benchmark at full size (10M rows, ~1 GB files; ~15 min); writes docs/benchmarks.md.
bench: connectors
    scripts/bench.sh full

# The benchmarks at CI size (1M rows; ~3 min); writes docs/benchmarks.md.
bench-quick: connectors
    scripts/bench.sh quick

# Formatting and lints.
lint:
    cargo fmt --all -- --check
    cd connectors-wasm && cargo fmt --all -- --check
    cd tests/connectors && cargo fmt --all -- --check
    cd sql-wasm && cargo fmt --all -- --check
    cd hooks-wasm && cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Re-vendor the WASI WIT packages into wit/deps from the pinned wasmtime-wasi crate.
wit-vendor:
    scripts/wit-vendor.sh

# Everything CI checks, before pushing.
ready: lint test
