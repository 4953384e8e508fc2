//! Builds the guest components the tests run — the shipped connectors in
//! `connectors-wasm/`, the plugin reviewer in `hooks-wasm/` and the fixtures in
//! `tests/connectors/` — for wasm32-wasip2, and
//! exports their paths as `CSV_COMPONENT`, `HOSTILE_COMPONENT`, ...
//!
//! The guest toolchain is the one `scripts/setup.sh` records in
//! `/etc/agnes/wasm-toolchain.env` (`WASM_CARGO`, `WASM_RUSTC`); environment variables of
//! the same names override it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("..");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // <target>/<profile>/build/<pkg>/out -> <target>/wasm: shared by every build profile and
    // by `just connectors`
    let wasm_target = out_dir.ancestors().nth(4).unwrap().join("wasm");
    let (cargo, rustc) = toolchain();

    let mut lines = Vec::new();
    for (workspace, crates) in [
        (
            "connectors-wasm",
            &[
                ("CSV_COMPONENT", "agnes_connector_csv"),
                ("HTTP_JSON_COMPONENT", "agnes_connector_http_json"),
                ("JIRA_COMPONENT", "agnes_connector_jira"),
                ("KEBOOLA_COMPONENT", "agnes_connector_keboola"),
                ("SYNTH_COMPONENT", "agnes_connector_synth"),
                ("POSTGRES_COMPONENT", "agnes_connector_postgres"),
            ][..],
        ),
        (
            "tests/connectors",
            &[
                ("HOSTILE_COMPONENT", "agnes_fixture_hostile"),
                (
                    "HOSTILE_REVIEWER_COMPONENT",
                    "agnes_fixture_hostile_reviewer",
                ),
                ("HTTP_REVIEWER_COMPONENT", "agnes_fixture_http_reviewer"),
            ][..],
        ),
        (
            "hooks-wasm",
            &[("PLUGIN_REVIEWER_COMPONENT", "agnes_plugin_reviewer")][..],
        ),
    ] {
        let dir = root.join(workspace);
        println!("cargo:rerun-if-changed={}", dir.display());
        build(&cargo, &rustc, &dir, &wasm_target);
        for (constant, artifact) in crates {
            let path = wasm_target
                .join("wasm32-wasip2/release")
                .join(format!("{artifact}.wasm"));
            assert!(path.exists(), "{} was not produced", path.display());
            lines.push(format!(
                "/// Path of the `{artifact}` component.\npub const {constant}: &str = {:?};\n",
                path.display().to_string()
            ));
        }
    }
    // the sql component (Apache DataFusion): its own workspace and profile; zstd-sys
    // compiles C for wasm32-wasip2 with Debian's clang and wasi-libc (scripts/setup.sh)
    let sql = root.join("sql-wasm");
    println!("cargo:rerun-if-changed={}", sql.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        sql.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        sql.join("Cargo.lock").display()
    );
    let sql_target = out_dir.ancestors().nth(4).unwrap().join("wasm-sql");
    build(&cargo, &rustc, &sql, &sql_target);
    let path = sql_target.join("wasm32-wasip2/release/agnes_sql.wasm");
    assert!(path.exists(), "{} was not produced", path.display());
    lines.push(format!(
        "/// Path of the `agnes-sql` component (SQL over Agnes tables, DataFusion).\npub const SQL_COMPONENT: &str = {:?};\n",
        path.display().to_string()
    ));
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-env-changed=WASM_CARGO");
    println!("cargo:rerun-if-env-changed=WASM_RUSTC");
    std::fs::write(out_dir.join("components.rs"), lines.concat()).unwrap();
}

fn toolchain() -> (String, String) {
    let mut cargo = std::env::var("WASM_CARGO").ok();
    let mut rustc = std::env::var("WASM_RUSTC").ok();
    if let Ok(env) = std::fs::read_to_string("/etc/agnes/wasm-toolchain.env") {
        for line in env.lines() {
            match line.split_once('=') {
                Some(("WASM_CARGO", v)) if cargo.is_none() => cargo = Some(v.to_string()),
                Some(("WASM_RUSTC", v)) if rustc.is_none() => rustc = Some(v.to_string()),
                _ => {}
            }
        }
    }
    match (cargo, rustc) {
        (Some(c), Some(r)) => (c, r),
        _ => panic!(
            "no wasm32-wasip2 toolchain: run `sudo scripts/setup.sh` first (it writes /etc/agnes/wasm-toolchain.env)"
        ),
    }
}

fn build(cargo: &str, rustc: &str, workspace: &Path, target_dir: &Path) {
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--locked",
    ])
    .current_dir(workspace)
    .env("CARGO_TARGET_DIR", target_dir)
    .env("RUSTC", rustc)
    .env("CC_wasm32_wasip2", "clang")
    .env(
        "CFLAGS_wasm32_wasip2",
        "--target=wasm32-wasi -isystem /usr/include/wasm32-wasi",
    )
    .env("AR_wasm32_wasip2", "llvm-ar-14");
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_RUSTC_WRAPPER",
        "CARGO",
        "CARGO_MANIFEST_DIR",
        "CARGO_PKG_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "RUSTDOC",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running {cargo}: {e}"));
    assert!(
        status.success(),
        "building the guest workspace {} failed ({status})",
        workspace.display()
    );
}
