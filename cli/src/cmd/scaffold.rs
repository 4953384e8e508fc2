//! `agnes connector new`: a buildable connector crate outside the project tree, pinned to
//! this release — the SDK, the query crate and the `agnes:connector@0.2.0` WIT are written
//! into it (`vendor/`, `wit/`), and its Cargo.lock starts from the one the shipped connectors
//! are built and tested with, so the same source gives the same component.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

/// What the new connector reads.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
pub enum Kind {
    /// Files in a read-only directory the operator grants (`[requests] dirs`).
    File,
    /// An HTTP API (`[[requests.http]]`, a token as a secret the host injects).
    Http,
    /// A PostgreSQL database the host connects to and authenticates (`[[requests.databases]]`).
    Database,
}

/// The SDK, the query crate and the WIT of this release, as the scaffold writes them.
const VENDORED: &[(&str, &str)] = &[
    (
        "vendor/agnes-connector-sdk/src/database.rs",
        include_str!("../../../connectors-wasm/sdk/src/database.rs"),
    ),
    (
        "vendor/agnes-connector-sdk/src/http.rs",
        include_str!("../../../connectors-wasm/sdk/src/http.rs"),
    ),
    (
        "vendor/agnes-connector-sdk/src/json/mod.rs",
        include_str!("../../../connectors-wasm/sdk/src/json/mod.rs"),
    ),
    (
        "vendor/agnes-connector-sdk/src/json/decode.rs",
        include_str!("../../../connectors-wasm/sdk/src/json/decode.rs"),
    ),
    (
        "vendor/agnes-connector-sdk/src/postgres.rs",
        include_str!("../../../connectors-wasm/sdk/src/postgres.rs"),
    ),
    (
        "vendor/agnes-connector-sdk/src/postgres/arrow.rs",
        include_str!("../../../connectors-wasm/sdk/src/postgres/arrow.rs"),
    ),
    (
        "vendor/agnes-query/src/lib.rs",
        include_str!("../../../query/src/lib.rs"),
    ),
    (
        "vendor/agnes-query/src/postgres.rs",
        include_str!("../../../query/src/postgres.rs"),
    ),
    (
        "vendor/wit/connector-0.2/connector.wit",
        include_str!("../../../wit/connector-0.2/connector.wit"),
    ),
    (
        "Cargo.lock",
        include_str!("../../../connectors-wasm/Cargo.lock"),
    ),
];

const SDK_TOML: &str = include_str!("../../../connectors-wasm/sdk/Cargo.toml");
const SDK_LIB: &str = include_str!("../../../connectors-wasm/sdk/src/lib.rs");
/// Where the SDK finds the WIT in this repository, and in a scaffold (`vendor/wit`: not the
/// crate's own `wit/`, which `cargo component` reads as the component's target world).
const SDK_WIT_PATH: (&str, &str) = (
    "path: \"../../wit/connector-0.2\"",
    "path: \"../wit/connector-0.2\"",
);
const QUERY_TOML: &str = include_str!("../../../query/Cargo.toml");
const WORKSPACE_TOML: &str = include_str!("../../../connectors-wasm/Cargo.toml");

/// The version of this release's SDK (and of its WIT package's world, 0.2.0).
pub fn sdk_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// `version = "x"` of `[workspace.dependencies] name = ...` in the guest workspace's
/// Cargo.toml, as a dependency line of a standalone crate.
fn workspace_dep(name: &str) -> Result<String> {
    WORKSPACE_TOML
        .lines()
        .find(|l| l.starts_with(&format!("{name} = ")))
        .map(|l| l.to_string())
        .with_context(|| format!("{name} is not in the guest workspace's dependencies"))
}

/// The SDK's Cargo.toml made standalone: workspace fields resolved, the query crate vendored.
fn sdk_toml() -> Result<String> {
    let mut out = String::new();
    for line in SDK_TOML.lines() {
        let resolved = match line {
            l if l.starts_with("version.workspace") => format!("version = \"{}\"", sdk_version()),
            l if l.starts_with("edition.workspace") => "edition = \"2024\"".into(),
            l if l.starts_with("license.workspace") => "license = \"Apache-2.0\"".into(),
            l if l.starts_with("agnes-query") => {
                "agnes-query = { path = \"../agnes-query\" }".into()
            }
            l if l.ends_with(".workspace = true") => {
                workspace_dep(l.trim_end_matches(".workspace = true"))?
            }
            l => l.to_string(),
        };
        out.push_str(&resolved);
        out.push('\n');
    }
    Ok(out)
}

/// The SDK's lib.rs with the WIT path of a scaffold.
fn sdk_lib() -> Result<String> {
    if !SDK_LIB.contains(SDK_WIT_PATH.0) {
        bail!("the SDK no longer names its WIT as {}", SDK_WIT_PATH.0);
    }
    Ok(SDK_LIB.replace(SDK_WIT_PATH.0, SDK_WIT_PATH.1))
}

/// Writes the crate for connector `name` into `dir` (which must not exist or be empty).
/// Returns the files written, relative to `dir`.
pub fn write(name: &str, kind: Kind, dir: &Path) -> Result<Vec<PathBuf>> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        bail!(
            "connector name `{name}` must be 1-64 characters of [a-z0-9-], starting with a letter"
        );
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} exists and is not empty: pick a new directory",
            dir.display()
        );
    }
    let crate_name = format!("agnes-connector-{name}");
    let table = name.replace('-', "_");
    let (deps, lib, manifest, readme_run, fixtures) = template(kind, name, &table)?;
    let cargo = format!(
        r#"# A standalone Agnes connector crate (`agnes connector new`, agnes {sdk}).
[package]
name = "{crate_name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
agnes-connector-sdk = {{ path = "vendor/agnes-connector-sdk" }}
{deps}
# The SDK, the query crate and the WIT are vendored from agnes {sdk}: a connector built
# with them runs on agnes servers that serve agnes:connector@0.2.0.
[workspace]
members = ["."]

[profile.release]
opt-level = 3
debug = false
strip = "debuginfo"
codegen-units = 1
"#,
        sdk = sdk_version()
    );
    let readme = format!(
        r#"# {name}

An Agnes connector ({kind:?}), scaffolded by `agnes connector new` (agnes {sdk}).

```sh
# build (either way; both give a component that verifies and runs)
cargo build --release --target wasm32-wasip2
cargo component build --release
# run it locally against the fixture, then inspect what it asks for
{readme_run}
agnes connector inspect target/wasm32-wasip2/release/{artifact}.wasm --manifest connector.toml
# sign and upload (the key comes from your CI's secret store)
agnes connector sign target/wasm32-wasip2/release/{artifact}.wasm --manifest connector.toml --key ops.key
agnes admin connector upload target/wasm32-wasip2/release/{artifact}.wasm --manifest connector.toml
```

`connector.toml` is what the connector requests; it is signed with the component, and the
operator's grant narrows it. See the connector authoring guide of your Agnes release.
"#,
        kind = kind,
        sdk = sdk_version(),
        artifact = crate_name.replace('-', "_"),
    );
    let mut files: Vec<(String, String)> = vec![
        ("Cargo.toml".into(), cargo),
        ("src/lib.rs".into(), lib),
        ("connector.toml".into(), manifest),
        ("README.md".into(), readme),
        (".gitignore".into(), "/target\n*.sig\n".into()),
        (
            ".cargo/config.toml".into(),
            "[build]\ntarget = \"wasm32-wasip2\"\n".into(),
        ),
        ("vendor/agnes-connector-sdk/Cargo.toml".into(), sdk_toml()?),
        ("vendor/agnes-connector-sdk/src/lib.rs".into(), sdk_lib()?),
        (
            "vendor/agnes-query/Cargo.toml".into(),
            QUERY_TOML.to_string(),
        ),
    ];
    files.extend(VENDORED.iter().map(|(p, c)| (p.to_string(), c.to_string())));
    files.extend(fixtures);
    let mut written = Vec::new();
    for (rel, contents) in files {
        let path = dir.join(&rel);
        std::fs::create_dir_all(path.parent().expect("a file"))
            .with_context(|| format!("creating {}", path.display()))?;
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        written.push(PathBuf::from(rel));
    }
    Ok(written)
}

type Template = (String, String, String, String, Vec<(String, String)>);

/// Dependencies, src/lib.rs, connector.toml, the README's run line and fixtures of a kind.
fn template(kind: Kind, name: &str, table: &str) -> Result<Template> {
    let serde = workspace_dep("serde")?;
    Ok(match kind {
        Kind::File => (
            format!("{serde}\n"),
            FILE_LIB.replace("{name}", name).replace("{table}", table),
            format!(
                "# What the {name} connector requests; signed together with the component.\nname = \"{name}\"\nversion = \"0.1.0\"\ndescription = \"lines of the text files in a directory\"\n\n[requests]\ndirs = [\"/data\"]\n"
            ),
            format!(
                "agnes connector run target/wasm32-wasip2/release/agnes_connector_{}.wasm --config fixtures/run.toml --out /tmp/extracts/{table} --allow-unsigned --manifest connector.toml",
                name.replace('-', "_")
            ),
            vec![
                ("fixtures/data/hello.txt".into(), "hello\nworld\n".into()),
                ("fixtures/data/notes.txt".into(), "one line\n".into()),
                (
                    "fixtures/run.toml".into(),
                    "# A local run over fixtures/data (paths relative to this file).\n[config]\ndir = \"/data\"\n\n[[grant.dirs]]\nhost = \"data\"\nguest = \"/data\"\n".into(),
                ),
            ],
        ),
        Kind::Http => (
            format!("{serde}\n"),
            HTTP_LIB.replace("{name}", name).replace("{table}", table),
            format!(
                "# What the {name} connector requests; signed together with the component.\nname = \"{name}\"\nversion = \"0.1.0\"\ndescription = \"records of a JSON API\"\n\n[[requests.http]]\nhost = \"*\"\n\n[[requests.secrets]]\nname = \"api_token\"\nhosts = [\"*\"]\ndescription = \"sent as a Bearer token\"\n"
            ),
            format!(
                "agnes connector test target/wasm32-wasip2/release/agnes_connector_{}.wasm --fixtures fixtures --allow-unsigned --manifest connector.toml",
                name.replace('-', "_")
            ),
            vec![
                (
                    "fixtures/run.toml".into(),
                    "# `agnes connector test --fixtures fixtures` answers the requests from http.json;\n# `--record` sends them to the live API once (set base_url and a real token file).\n[config]\nbase_url = \"https://api.example.com/v1\"\n\n[[grant.http]]\nhost = \"api.example.com\"\n\n[grant.secrets.api_token]\nfile = \"token.txt\"\nhosts = [\"api.example.com\"]\n".into(),
                ),
                ("fixtures/token.txt".into(), "not-a-real-token\n".into()),
                (
                    "fixtures/http.json".into(),
                    "[\n  {\n    \"method\": \"GET\",\n    \"url\": \"https://api.example.com/v1/items\",\n    \"status\": 200,\n    \"headers\": [[\"content-type\", \"application/json\"]],\n    \"body\": \"{\\\"items\\\": [{\\\"id\\\": 1, \\\"name\\\": \\\"first\\\"}, {\\\"id\\\": 2, \\\"name\\\": \\\"second\\\"}]}\"\n  }\n]\n".into(),
                ),
            ],
        ),
        Kind::Database => (
            format!("{serde}\n"),
            DATABASE_LIB.replace("{name}", name).replace("{table}", table),
            format!(
                "# What the {name} connector requests; signed together with the component.\nname = \"{name}\"\nversion = \"0.1.0\"\ndescription = \"the tables of a PostgreSQL schema\"\n\n[[requests.databases]]\nname = \"main\"\nkind = \"postgres\"\n"
            ),
            "agnes connector run ... --config fixtures/run.toml  # with [grant.databases.main] pointing at a database".into(),
            vec![(
                "fixtures/run.toml".into(),
                "[config]\nschema = \"public\"\n\n[grant.databases.main]\nhost = \"127.0.0.1\"\nport = 5432\ndatabase = \"app\"\nuser = \"reader\"\npassword = { env = \"PGPASSWORD\" }\ntls = \"disable\"\nallow_private = true\n".into(),
            )],
        ),
    })
}

const FILE_LIB: &str = r#"//! # {name}
//!
//! Every line of every `*.txt` file in the granted directory, as table `{table}`
//! (`file`, `line_no`, `text`). Replace `read` with your format.

use std::sync::Arc;

use agnes_connector_sdk::arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use agnes_connector_sdk::arrow_schema::{DataType, Field, Schema, SchemaRef};
use agnes_connector_sdk::{Connector, Error, ReadContext, Spec, Table};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The directory the operator grants (`/data` in connector.toml).
    pub dir: String,
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("file", DataType::Utf8, false),
        Field::new("line_no", DataType::Int64, false),
        Field::new("text", DataType::Utf8, false),
    ]))
}

fn text_files(dir: &str) -> Result<Vec<String>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Config(format!("dir `{dir}`: {e}")))?;
    let mut names = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".txt") {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

pub struct Source;

impl Connector for Source {
    type Config = Config;

    fn spec() -> Spec {
        Spec::new("{name}", env!("CARGO_PKG_VERSION"))
    }

    fn discover(config: &Config) -> Result<Vec<Table>, Error> {
        text_files(&config.dir)?;
        Ok(vec![Table::new("{table}", schema()).description("lines of the *.txt files")])
    }

    fn read(config: &Config, ctx: &mut ReadContext) -> Result<(), Error> {
        let schema = schema();
        for file in text_files(&config.dir)? {
            let text = std::fs::read_to_string(format!("{}/{file}", config.dir))?;
            let lines: Vec<&str> = text.lines().collect();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(vec![file.as_str(); lines.len()])),
                Arc::new(Int64Array::from_iter_values(1..=lines.len() as i64)),
                Arc::new(StringArray::from(lines)),
            ];
            ctx.emit("{table}", &RecordBatch::try_new(schema.clone(), columns)?)?;
        }
        Ok(())
    }
}

agnes_connector_sdk::export_connector!(Source);
"#;

const HTTP_LIB: &str = r#"//! # {name}
//!
//! `GET {base_url}/items` with the `api_token` secret as a Bearer token (the host injects
//! it; the connector never sees it), as table `{table}` (`id`, `name`).

use std::sync::Arc;

use agnes_connector_sdk::arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use agnes_connector_sdk::arrow_schema::{DataType, Field, Schema, SchemaRef};
use agnes_connector_sdk::http::{Request, secret};
use agnes_connector_sdk::{Connector, Error, ReadContext, Spec, Table};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// e.g. `https://api.example.com/v1`
    pub base_url: String,
}

#[derive(Deserialize)]
struct Page {
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    id: i64,
    name: String,
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
    ]))
}

pub struct Source;

impl Connector for Source {
    type Config = Config;

    fn spec() -> Spec {
        Spec::new("{name}", env!("CARGO_PKG_VERSION"))
    }

    fn discover(_config: &Config) -> Result<Vec<Table>, Error> {
        Ok(vec![Table::new("{table}", schema()).description("the API's items")])
    }

    fn read(config: &Config, ctx: &mut ReadContext) -> Result<(), Error> {
        let page: Page = Request::get(format!("{}/items", config.base_url.trim_end_matches('/')))
            .header("Authorization", format!("Bearer {}", secret("api_token")))
            .send()?
            .json()?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(page.items.iter().map(|i| i.id))),
            Arc::new(StringArray::from_iter_values(page.items.iter().map(|i| i.name.as_str()))),
        ];
        ctx.emit("{table}", &RecordBatch::try_new(schema(), columns)?)?;
        Ok(())
    }
}

agnes_connector_sdk::export_connector!(Source);
"#;

const DATABASE_LIB: &str = r#"//! # {name}
//!
//! The names and row estimates of the tables of one PostgreSQL schema, as table `{table}`
//! (`table_name`, `estimated_rows`). The host connects and logs in (database `main` in
//! connector.toml, `[grant.databases.main]` on the server): the password never reaches this
//! code, and the session is read-only.

use std::sync::Arc;

use agnes_connector_sdk::arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use agnes_connector_sdk::arrow_schema::{DataType, Field, Schema, SchemaRef};
use agnes_connector_sdk::postgres::Client;
use agnes_connector_sdk::{Connector, Error, ReadContext, Spec, Table};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub schema: String,
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new("estimated_rows", DataType::Int64, true),
    ]))
}

pub struct Source;

impl Connector for Source {
    type Config = Config;

    fn spec() -> Spec {
        Spec::new("{name}", env!("CARGO_PKG_VERSION"))
    }

    fn discover(_config: &Config) -> Result<Vec<Table>, Error> {
        Ok(vec![Table::new("{table}", schema()).description("tables of the schema")])
    }

    fn read(config: &Config, ctx: &mut ReadContext) -> Result<(), Error> {
        if !config.schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::Config("schema must be [A-Za-z0-9_]".into()));
        }
        let mut pg = Client::connect("main")?;
        let rows = pg.simple_query(&format!(
            "SELECT c.relname, c.reltuples::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = '{}' AND c.relkind = 'r' ORDER BY 1",
            config.schema
        ))?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r[0].clone().unwrap_or_default()))),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r[1].as_deref().and_then(|v| v.parse().ok())).collect::<Vec<Option<i64>>>(),
            )),
        ];
        ctx.emit("{table}", &RecordBatch::try_new(schema(), columns)?)?;
        Ok(())
    }
}

agnes_connector_sdk::export_connector!(Source);
"#;
