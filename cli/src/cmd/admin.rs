//! `agnes admin ...`: the admin CLI, over the same REST API and credentials as the analyst
//! commands (`--server`/`AGNES_SERVER`, `--token`/`AGNES_TOKEN`, or the config dir).
//! Every command prints a short human summary, or the server's JSON answer with `--json`.
//! Exit codes: 0 ok, 1 the request or a synced table failed, 2 bad usage or input.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::analyst::{Format, encode, render};
use crate::client::{Client, ServerArgs};
use crate::output::Output;

/// `agnes admin [--server URL] [--token T] <command>`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: AdminCmd,
}

#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Create the first admin user and print its token (once; fails if users exist).
    Bootstrap {
        /// Name of the admin user.
        #[arg(long, default_value = "admin")]
        name: String,
        /// Also give it a generated password for the web UI (printed once).
        #[arg(long)]
        generate_password: bool,
        #[command(flatten)]
        serve: super::serve::ServeArgs,
    },
    /// Copy this server's embedded state (users, tokens, groups, grants, sources, history,
    /// audit log, ...) into a fresh PostgreSQL database, for the scale-out mode. Run it with
    /// the server stopped; then set `[state] backend = "postgres"`.
    MigrateState {
        /// The target backend (only `postgres`).
        #[arg(long, value_parser = ["postgres"])]
        to: String,
        /// `postgres://user@host:port/database`; default: `[state] url` of the config, or
        /// AGNES_STATE_URL.
        #[arg(long)]
        url: Option<String>,
        /// File holding the database password.
        #[arg(long)]
        password_file: Option<PathBuf>,
        #[command(flatten)]
        serve: super::serve::ServeArgs,
    },
    /// Sources: one connector instance each (connector, config, grant, limits, schedule).
    #[command(subcommand)]
    Source(SourceCmd),
    /// The tables of sources.
    #[command(subcommand)]
    Table(TableCmd),
    /// Users.
    #[command(subcommand)]
    User(UserCmd),
    /// Groups and their members.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Grants of tables and sources to groups.
    #[command(subcommand)]
    Grant(GrantCmd),
    /// Every user's tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Signed connector uploads.
    #[command(subcommand)]
    Connector(ConnectorCmd),
    /// Claude Code plugin marketplaces: register, sync, review queue, decisions.
    #[command(subcommand)]
    Marketplace(MarketplaceCmd),
    /// Signed reviewer components (agnes:hook@0.1.0) that review marketplace plugins.
    #[command(subcommand)]
    Reviewer(ReviewerCmd),
    /// Sync runs: trigger, status, history.
    #[command(subcommand)]
    Sync(SyncCmd),
    /// Business metric definitions.
    #[command(subcommand)]
    Metrics(MetricsCmd),
    /// Claude Code session transcripts analysts pushed.
    #[command(subcommand)]
    Sessions(SessionsCmd),
    /// The audit log, newest first.
    Audit {
        /// Entries at or after this time (`YYYY-MM-DD[ HH:MM:SS]`, UTC).
        #[arg(long)]
        since: Option<String>,
        /// An action (`source.create`) or a prefix of actions (`source`).
        #[arg(long)]
        action: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// A source's fields, for `add` and `update`. JSON values may be given inline or as
/// `@path/to/file.json`.
#[derive(Debug, Args, Default)]
pub struct SourceFields {
    /// `<name>@<version>` of an upload, or (development) an absolute component path.
    #[arg(long)]
    connector: Option<String>,
    /// With a component path: its connector.toml on the server.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// With a component path: its signature on the server (default `<component>.sig`).
    #[arg(long)]
    signature: Option<PathBuf>,
    /// The connector's config, a JSON object (or @file).
    #[arg(long)]
    config: Option<String>,
    /// What a run is granted, JSON (or @file): {"dirs": [{"host", "guest"}], "http": [...], "secrets": [...]}.
    #[arg(long)]
    grant: Option<String>,
    /// Run limits, JSON (or @file): {"memory_mb", "timeout_secs", ...}.
    #[arg(long)]
    limits: Option<String>,
    /// `every <n>s|m|h|d`.
    #[arg(long)]
    schedule: Option<String>,
    #[arg(long)]
    description: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SourceCmd {
    /// Register a source; its connector is verified and its config checked against the
    /// connector's schema. `--table`/`--all-tables` add tables in the same command.
    Add {
        name: String,
        #[command(flatten)]
        fields: SourceFields,
        /// Register it disabled (never synced until enabled).
        #[arg(long)]
        disabled: bool,
        /// Add this table (repeatable).
        #[arg(long = "table")]
        tables: Vec<String>,
        /// Add every table the connector discovers.
        #[arg(long, conflicts_with = "tables")]
        all_tables: bool,
    },
    /// Every source with its tables and last run.
    List,
    /// One source with its tables and latest runs.
    Show { name: String },
    /// Change some fields of a source (checked like `add`).
    Update {
        name: String,
        #[command(flatten)]
        fields: SourceFields,
        /// Remove the schedule (manual syncs only).
        #[arg(long, conflicts_with = "schedule")]
        no_schedule: bool,
        #[arg(long)]
        enable: bool,
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
    },
    /// Delete a source, its tables and its extract (lists grants left dangling).
    Remove { name: String },
    /// Run the connector's discover: the tables it offers, with their columns.
    Discover { name: String },
    /// Sync one source.
    Sync {
        name: String,
        /// Read everything again (incremental tables are rebuilt).
        #[arg(long)]
        full_refresh: bool,
        /// Wait for the run, with a progress bar; exit 1 when a table failed.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TableCmd {
    /// Add tables to a source by name, or every table its connector discovers (`--all`).
    Add {
        source: String,
        names: Vec<String>,
        #[arg(long, conflicts_with = "names")]
        all: bool,
        #[arg(long)]
        description: Option<String>,
        /// `local` (parquet distributed to analysts; the default), `remote` (stays at the
        /// source, scanned and queried there) or `materialized` (`--sql`: the admin's SQL
        /// run on every sync — at the source, in its dialect, or, on an `agnes:sql`
        /// source, over Agnes tables in the SQL sandbox); remote and materialized tables
        /// of a connector's source need a connector that answers queries.
        #[arg(long)]
        query_mode: Option<String>,
        /// Per-table options, a JSON object (or @file): `sql` of a materialized table,
        /// `max_scan_bytes`, `max_bytes_per_materialize`.
        #[arg(long)]
        options: Option<String>,
        /// The SQL of a materialized table (or @file); implies `--query-mode materialized`.
        #[arg(long)]
        sql: Option<String>,
    },
    /// Tables of every source, or of one.
    List {
        #[arg(long)]
        source: Option<String>,
    },
    /// Change a table's description, query mode or options.
    Update {
        source: String,
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        query_mode: Option<String>,
        /// Per-table options, a JSON object (or @file); replaces the current ones.
        #[arg(long)]
        options: Option<String>,
        /// New SQL of a materialized table (or @file), the other options kept.
        #[arg(long, conflicts_with = "options")]
        sql: Option<String>,
    },
    /// Remove a table: it stops being served at once.
    Remove { source: String, name: String },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user and print their first token (shown once).
    Add {
        name: String,
        /// Make them a member of this group (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    List,
    /// Disable a user: their tokens stop working at once.
    Disable {
        name: String,
    },
    /// Set a user's password for the web UI: read from stdin, or `--generate` one and
    /// print it once. Their browser sessions end.
    Password {
        name: String,
        #[arg(long)]
        generate: bool,
    },
    /// Live browser sessions.
    Sessions,
    /// End a browser session (its id from `user sessions`).
    EndSession {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    Add {
        name: String,
    },
    List,
    /// Delete a group with its memberships and grants.
    Remove {
        name: String,
    },
    AddMember {
        group: String,
        user: String,
    },
    RemoveMember {
        group: String,
        user: String,
    },
}

/// What a grant names: `--table NAME`, `--source NAME` (`--table '*'`: every table) or
/// `--plugin MARKETPLACE/PLUGIN` (`team/*`, `*`: marketplace plugins).
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Resource {
    #[arg(long)]
    table: Option<String>,
    #[arg(long)]
    source: Option<String>,
    #[arg(long)]
    plugin: Option<String>,
}

impl Resource {
    fn body(&self, group: &str) -> Value {
        let (t, id) = match (&self.table, &self.source, &self.plugin) {
            (Some(t), _, _) => ("table", t),
            (_, Some(s), _) => ("source", s),
            (_, _, Some(p)) => ("marketplace_plugin", p),
            _ => unreachable!("clap requires one"),
        };
        json!({"group": group, "resource_type": t, "resource_id": id})
    }
}

#[derive(Debug, Subcommand)]
pub enum GrantCmd {
    /// Grant a table or a source to a group.
    Add {
        group: String,
        #[command(flatten)]
        resource: Resource,
    },
    /// Every grant; dangling ones name nothing registered.
    List,
    Remove {
        group: String,
        #[command(flatten)]
        resource: Resource,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Every user's tokens (never their secrets).
    List,
    Revoke {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConnectorCmd {
    /// Upload a signed component with its connector.toml and signature (or a package from
    /// `agnes connector package`, which carries both).
    Upload {
        component: PathBuf,
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Default: `<component>.sig`.
        #[arg(long)]
        signature: Option<PathBuf>,
    },
    List,
    /// Every uploaded version of one connector, with its requests and connector.toml.
    Show {
        name: String,
    },
    /// What NAME@VERSION changes against the previously approved version: requests
    /// (hosts, secrets, dirs, databases, limits) and imported interfaces.
    Diff {
        reference: String,
    },
    /// Approve NAME@VERSION: sources may use it (a security reviewer's decision, audited).
    Approve {
        reference: String,
    },
    /// Revoke NAME@VERSION: sources using it stop syncing until moved to another version.
    Revoke {
        reference: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MarketplaceCmd {
    /// Register a git marketplace (a repository with .claude-plugin/marketplace.json) and
    /// sync it.
    Add {
        /// `[a-z][a-z0-9_]*`: prefixes its plugins' served names and grants.
        name: String,
        /// `https://...` (file:// only with `[marketplace] allow_file_urls`).
        #[arg(long)]
        url: String,
        /// A branch, tag or full commit id (default: the remote's default branch).
        #[arg(long = "ref")]
        git_ref: Option<String>,
        /// An environment variable of the server holding a token for a private repository.
        #[arg(long, conflicts_with = "token_file")]
        token_env: Option<String>,
        /// A file on the server holding that token.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Allow a loopback or private address for the repository's host.
        #[arg(long)]
        allow_private: bool,
        /// Fetch it this often (`every 30m`, `every 6h`, `every 1d`); default: only on demand.
        #[arg(long)]
        schedule: Option<String>,
    },
    List,
    /// One marketplace and its plugins.
    Show {
        name: String,
    },
    /// Fetch it now: new bundles are reviewed; what was approved keeps being served.
    Sync {
        name: String,
    },
    /// Unregister it: its plugins stop being served.
    Remove {
        name: String,
    },
    /// The review queue: plugins held for a decision (or every plugin with `--all`).
    Plugins {
        #[arg(long)]
        all: bool,
    },
    /// One plugin: reviews, findings and the files changed since the approved version.
    Review {
        /// MARKETPLACE/PLUGIN
        plugin: String,
    },
    /// Serve the newest version of MARKETPLACE/PLUGIN (audited, whatever the reviewers said).
    Approve {
        plugin: String,
    },
    /// Refuse the newest version of MARKETPLACE/PLUGIN (the approved one stays served).
    Reject {
        plugin: String,
    },
    /// Stop serving MARKETPLACE/PLUGIN at all.
    Disable {
        plugin: String,
    },
    Enable {
        plugin: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReviewerCmd {
    /// Upload a signed reviewer component with its manifest (`name`, `version`) and
    /// signature (`agnes connector sign` makes it). It becomes the enabled version of its
    /// name and reviews every plugin. A package (`agnes connector package`) needs no --manifest.
    Upload {
        component: PathBuf,
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Default: `<component>.sig`.
        #[arg(long)]
        signature: Option<PathBuf>,
    },
    List,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCmd {
    /// Uploaded transcripts, newest first.
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Save one transcript.
    Download {
        user: String,
        file: String,
        /// Where to write it (default: the file name, here).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MetricsCmd {
    /// Import every metric YAML file under a directory (one metric per file, e.g.
    /// docs/metrics/): each is checked on the server (its SQL parses, reads served
    /// tables, runs on the current data) and imported or refused with the reason; exits 1
    /// when any file was refused.
    Import {
        dir: PathBuf,
        /// Check only; store nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Every metric (admins see all).
    List,
    /// Delete a metric (`<category>/<name>`).
    Remove { id: String },
}

#[derive(Debug, Subcommand)]
pub enum SyncCmd {
    /// Sync some sources (`--source`, repeatable) or every enabled one.
    Trigger {
        #[arg(long = "source")]
        sources: Vec<String>,
        #[arg(long)]
        full_refresh: bool,
        /// Wait for the runs, with a progress bar; exit 1 when a table failed.
        #[arg(long)]
        wait: bool,
    },
    /// Runs in progress and the last run. `--wait`: until the runs in progress (of
    /// `--source`) finish; exit 1 when one of them had a failed table.
    Status {
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        wait: bool,
    },
    /// Runs, newest first, with per-table outcomes.
    History {
        #[arg(long)]
        source: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

/// Reads a JSON argument: inline, or `@file`.
/// An argument's text, or the contents of the file it names as `@path`.
fn text_arg(what: &str, text: &str) -> Result<String> {
    match text.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {what} from {path}"))
        }
        None => Ok(text.to_string()),
    }
}

fn json_arg(what: &str, text: &str) -> Result<Value> {
    let text = text_arg(what, text)?;
    serde_json::from_str(&text)
        .map_err(|e| anyhow!(UsageError(format!("--{what} is not valid JSON: {e}"))))
}

/// A mistake in the command line (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl SourceFields {
    /// The fields that were given, as a JSON object.
    fn to_json(&self) -> Result<serde_json::Map<String, Value>> {
        let mut m = serde_json::Map::new();
        if let Some(c) = &self.connector {
            m.insert("connector".into(), json!(c));
        }
        if let Some(p) = &self.manifest {
            m.insert("manifest".into(), json!(p));
        }
        if let Some(p) = &self.signature {
            m.insert("signature".into(), json!(p));
        }
        for (key, v) in [
            ("config", &self.config),
            ("grant", &self.grant),
            ("limits", &self.limits),
        ] {
            if let Some(v) = v {
                m.insert(key.into(), json_arg(key, v)?);
            }
        }
        if let Some(s) = &self.schedule {
            m.insert("schedule".into(), json!(s));
        }
        if let Some(d) = &self.description {
            m.insert("description".into(), json!(d));
        }
        Ok(m)
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints rows as a table (human) or `json` (with --json).
fn print_table(out: &Output, columns: &[&str], rows: Vec<Vec<Value>>, json: Value) {
    out.print(
        || {
            let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
            render(&columns, &rows, Format::Table)
                .unwrap_or_default()
                .trim_end()
                .to_string()
        },
        || json,
    );
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The values of `keys` in `v`, a table row.
fn pick(v: &Value, keys: &[&str]) -> Vec<Value> {
    keys.iter().map(|k| v[*k].clone()).collect()
}

/// The items of `v[key]` as one comma-separated cell.
fn joined(v: &Value, key: &str) -> Value {
    json!(list(v, key).iter().map(s).collect::<Vec<_>>().join(", "))
}

/// One request; prints `human(answer)`, or the answer itself with `--json`.
fn act(
    server: &ServerArgs,
    method: &str,
    path: &str,
    body: Option<Value>,
    out: &Output,
    human: impl FnOnce(&Value) -> String,
) -> Result<()> {
    let r = server.client()?.call(method, path, body.as_ref())?;
    out.print(|| human(&r), || r.clone());
    Ok(())
}

/// A GET whose `key` list is printed as a table: `columns` headers, `row` per item.
fn listing(
    server: &ServerArgs,
    path: &str,
    key: &str,
    out: &Output,
    columns: &[&str],
    row: impl Fn(&Value) -> Vec<Value>,
) -> Result<()> {
    let r = server.client()?.call("GET", path, None)?;
    let rows = list(&r, key).iter().map(row).collect();
    print_table(out, columns, rows, r);
    Ok(())
}

/// `path` with `?k=v&...` for the parameters that are set.
fn with_query(path: &str, params: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", q.join("&"))
    }
}

pub fn run(args: AdminArgs, out: &Output) -> Result<()> {
    let server = &args.server;
    match args.command {
        AdminCmd::Bootstrap {
            name,
            generate_password,
            serve,
        } => super::serve::bootstrap(name, generate_password, serve, out),
        AdminCmd::MigrateState {
            to: _,
            url,
            password_file,
            serve,
        } => super::serve::migrate_state(url, password_file, serve, out),
        AdminCmd::Source(c) => source(c, server, out),
        AdminCmd::Table(c) => table(c, server, out),
        AdminCmd::User(c) => user(c, server, out),
        AdminCmd::Group(c) => group(c, server, out),
        AdminCmd::Grant(c) => grant(c, server, out),
        AdminCmd::Token(c) => token(c, server, out),
        AdminCmd::Connector(c) => connector(c, server, out),
        AdminCmd::Marketplace(c) => marketplace(c, server, out),
        AdminCmd::Reviewer(c) => reviewer(c, server, out),
        AdminCmd::Sync(c) => sync(c, server, out),
        AdminCmd::Metrics(c) => metrics(c, server, out),
        AdminCmd::Sessions(c) => sessions(c, server, out),
        AdminCmd::Audit {
            since,
            action,
            limit,
        } => {
            let path = with_query(
                "/api/admin/audit",
                &[
                    ("limit", Some(limit.to_string())),
                    ("since", since),
                    ("action", action),
                ],
            );
            let columns = ["at", "user", "action", "resource", "detail"];
            listing(server, &path, "entries", out, &columns, |e| {
                pick(e, &columns)
            })
        }
    }
}

fn source_path(name: &str, rest: &str) -> String {
    format!("/api/admin/sources/{}{rest}", encode(name))
}

fn source(cmd: SourceCmd, server: &ServerArgs, out: &Output) -> Result<()> {
    match cmd {
        SourceCmd::Add {
            name,
            fields,
            disabled,
            tables,
            all_tables,
        } => {
            let client = server.client()?;
            let mut body = fields.to_json()?;
            if !body.contains_key("connector") {
                bail!(UsageError(
                    "--connector is required: `<name>@<version>` of an upload".into()
                ));
            }
            body.insert("name".into(), json!(name));
            body.insert("enabled".into(), json!(!disabled));
            let mut r = client.call("POST", "/api/admin/sources", Some(&Value::Object(body)))?;
            let add = match (all_tables, tables.is_empty()) {
                (true, _) => Some(json!({"all": true})),
                (false, false) => Some(
                    json!({"tables": tables.iter().map(|t| json!({"name": t})).collect::<Vec<_>>()}),
                ),
                (false, true) => None,
            };
            if let Some(add) = add {
                let t = client
                    .call("POST", &source_path(&name, "/tables"), Some(&add))
                    .with_context(|| {
                        format!("source `{name}` was created, but adding its tables failed")
                    })?;
                r["added"] = t["added"].clone();
            }
            let n = list(&r, "added").len();
            out.print(
                || format!("created source `{name}` with {n} table(s)"),
                || r.clone(),
            );
            Ok(())
        }
        SourceCmd::List => listing(
            server,
            "/api/admin/sources",
            "sources",
            out,
            &[
                "source",
                "connector",
                "enabled",
                "schedule",
                "tables",
                "last run",
                "finished",
            ],
            |src| {
                let last = &src["last_run"];
                let state = if src["running"].is_null() {
                    s(&last["status"])
                } else {
                    "running".into()
                };
                [
                    pick(src, &["name", "connector", "enabled", "schedule"]),
                    vec![
                        joined(src, "tables"),
                        json!(state),
                        last["finished_at"].clone(),
                    ],
                ]
                .concat()
            },
        ),
        SourceCmd::Show { name } => act(server, "GET", &source_path(&name, ""), None, out, |r| {
            let src = &r["source"];
            let mut text = format!("source {}", s(&src["name"]));
            for key in [
                "connector",
                "enabled",
                "schedule",
                "description",
                "config",
                "grant",
                "limits",
            ] {
                text.push_str(&format!("\n  {key:<12}{}", s(&src[key])));
            }
            text.push_str("\n  tables:");
            for t in list(r, "tables") {
                text.push_str(&format!(
                    "\n    {} ({}) {}",
                    s(&t["name"]),
                    s(&t["query_mode"]),
                    s(&t["description"])
                ));
            }
            text.push_str("\n  runs:");
            for run in list(r, "runs") {
                text.push_str(&format!(
                    "\n    {} {} {} {}",
                    s(&run["id"]),
                    s(&run["status"]),
                    s(&run["started_at"]),
                    s(&run["error"])
                ));
            }
            text
        }),
        SourceCmd::Update {
            name,
            fields,
            no_schedule,
            enable,
            disable,
        } => {
            let mut body = fields.to_json()?;
            if no_schedule {
                body.insert("schedule".into(), Value::Null);
            }
            if enable || disable {
                body.insert("enabled".into(), json!(enable));
            }
            if body.is_empty() {
                bail!(UsageError(
                    "nothing to change: give at least one of --connector, --config, --grant, --limits, --schedule, \
                     --no-schedule, --enable, --disable, --description"
                        .into()
                ));
            }
            let body = Some(Value::Object(body));
            act(server, "PATCH", &source_path(&name, ""), body, out, |_| {
                format!("updated source `{name}`")
            })
        }
        SourceCmd::Remove { name } => {
            act(server, "DELETE", &source_path(&name, ""), None, out, |r| {
                let mut text = format!(
                    "removed source `{name}` and its tables ({})",
                    s(&joined(r, "tables"))
                );
                for g in list(r, "dangling_grants") {
                    text.push_str(&format!(
                    "\nwarning: the grant of {} `{}` to `{}` now names nothing (remove it with `agnes admin grant remove`)",
                    s(&g["resource_type"]), s(&g["resource_id"]), s(&g["group"])
                ));
                }
                text
            })
        }
        SourceCmd::Discover { name } => {
            let r = server
                .client()?
                .call("POST", &source_path(&name, "/discover"), None)?;
            let rows = list(&r, "tables")
                .iter()
                .map(|t| {
                    let cols: Vec<String> = list(t, "columns")
                        .iter()
                        .map(|c| format!("{} {}", s(&c["name"]), s(&c["type"])))
                        .collect();
                    let sync = if t["incremental"] == true {
                        "incremental"
                    } else {
                        "full"
                    };
                    vec![
                        t["name"].clone(),
                        t["registered"].clone(),
                        json!(sync),
                        json!(cols.join(", ")),
                    ]
                })
                .collect();
            print_table(out, &["table", "registered", "sync", "columns"], rows, r);
            Ok(())
        }
        SourceCmd::Sync {
            name,
            full_refresh,
            wait,
        } => {
            let client = server.client()?;
            let body = json!({"full_refresh": full_refresh});
            let r = client.call("POST", &source_path(&name, "/sync"), Some(&body))?;
            let id = r["run_id"]
                .as_i64()
                .context("the server returned no run_id")?;
            if wait {
                return wait_for(&client, &[id], out);
            }
            out.print(
                || format!("started run {id} of source `{name}`"),
                || r.clone(),
            );
            Ok(())
        }
    }
}

fn table(cmd: TableCmd, server: &ServerArgs, out: &Output) -> Result<()> {
    match cmd {
        TableCmd::Add {
            source,
            names,
            all,
            description,
            query_mode,
            options,
            sql,
        } => {
            let mut options = match options {
                Some(o) => json_arg("options", &o)?,
                None => json!({}),
            };
            let query_mode = match (query_mode, &sql) {
                (Some(m), _) => m,
                (None, Some(_)) => "materialized".to_string(),
                (None, None) => "local".to_string(),
            };
            if let Some(sql) = sql {
                let Some(o) = options.as_object_mut() else {
                    bail!(UsageError("--options must be a JSON object".into()));
                };
                o.insert("sql".into(), json!(text_arg("sql", &sql)?));
            }
            let body = if all {
                json!({"all": true})
            } else if names.is_empty() {
                bail!(UsageError(
                    "name the tables to add, or --all for every table the connector discovers"
                        .into()
                ));
            } else {
                let tables: Vec<Value> = names
                    .iter()
                    .map(|n| json!({"name": n, "description": description, "query_mode": query_mode, "options": options}))
                    .collect();
                json!({ "tables": tables })
            };
            act(
                server,
                "POST",
                &source_path(&source, "/tables"),
                Some(body),
                out,
                |r| {
                    let added: Vec<String> =
                        list(r, "added").iter().map(|t| s(&t["name"])).collect();
                    format!(
                        "added to `{source}`: {}",
                        if added.is_empty() {
                            "nothing new".into()
                        } else {
                            added.join(", ")
                        }
                    )
                },
            )
        }
        TableCmd::List { source } => {
            let path = with_query("/api/admin/tables", &[("source", source)]);
            let keys = ["name", "source", "query_mode", "description"];
            listing(
                server,
                &path,
                "tables",
                out,
                &["table", "source", "mode", "description"],
                |t| pick(t, &keys),
            )
        }
        TableCmd::Update {
            source,
            name,
            description,
            query_mode,
            options,
            sql,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(sql) = sql {
                // the other options kept: the server replaces the whole object
                let path = source_path(&source, "/tables");
                let current = server.client()?.call("GET", &path, None)?;
                let mut o = list(&current, "tables")
                    .iter()
                    .find(|t| t["name"] == name.as_str())
                    .map(|t| t["options"].clone())
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({}));
                o["sql"] = json!(text_arg("sql", &sql)?);
                body.insert("options".into(), o);
            }
            if let Some(d) = description {
                body.insert("description".into(), json!(d));
            }
            if let Some(m) = query_mode {
                body.insert("query_mode".into(), json!(m));
            }
            if let Some(o) = options {
                body.insert("options".into(), json_arg("options", &o)?);
            }
            if body.is_empty() {
                bail!(UsageError(
                    "nothing to change: give --description, --query-mode, --options or --sql"
                        .into()
                ));
            }
            let path = source_path(&source, &format!("/tables/{}", encode(&name)));
            act(
                server,
                "PATCH",
                &path,
                Some(Value::Object(body)),
                out,
                |_| format!("updated table `{name}`"),
            )
        }
        TableCmd::Remove { source, name } => {
            let path = source_path(&source, &format!("/tables/{}", encode(&name)));
            act(server, "DELETE", &path, None, out, |_| {
                format!("removed table `{name}` of `{source}`")
            })
        }
    }
}

fn user(cmd: UserCmd, server: &ServerArgs, out: &Output) -> Result<()> {
    match cmd {
        UserCmd::Add {
            name,
            groups,
            expires_in_days,
        } => {
            let body = json!({"name": name, "groups": groups, "expires_in_days": expires_in_days});
            act(server, "POST", "/api/admin/users", Some(body), out, |r| {
                format!(
                    "created user `{name}`; their token (shown once):\n{}",
                    s(&r["token"])
                )
            })
        }
        UserCmd::List => {
            let columns = ["user", "groups", "created", "disabled"];
            listing(server, "/api/admin/users", "users", out, &columns, |u| {
                vec![
                    u["name"].clone(),
                    joined(u, "groups"),
                    u["created_at"].clone(),
                    u["disabled_at"].clone(),
                ]
            })
        }
        UserCmd::Disable { name } => {
            let path = format!("/api/admin/users/{}/disable", encode(&name));
            act(server, "POST", &path, None, out, |_| {
                format!("disabled user `{name}`")
            })
        }
        UserCmd::Password { name, generate } => {
            let password = if generate {
                agnes_server::password::generate().map_err(|e| anyhow!("{e}"))?
            } else {
                let mut text = String::new();
                std::io::stdin()
                    .read_line(&mut text)
                    .context("reading the password from stdin")?;
                text.trim_end_matches(['\n', '\r']).to_string()
            };
            let path = format!("/api/admin/users/{}/password", encode(&name));
            let shown = generate.then(|| password.clone());
            act(
                server,
                "PUT",
                &path,
                Some(json!({"password": password})),
                out,
                |_| match &shown {
                    Some(p) => format!("password of `{name}` set (shown once):\n{p}"),
                    None => format!("password of `{name}` set"),
                },
            )
        }
        UserCmd::Sessions => listing(
            server,
            "/api/admin/web-sessions",
            "sessions",
            out,
            &["id", "user", "since", "until", "client"],
            |v| pick(v, &["id", "user", "created_at", "expires_at", "client"]),
        ),
        UserCmd::EndSession { id } => {
            let path = format!("/api/admin/web-sessions/{}", encode(&id));
            act(server, "DELETE", &path, None, out, |_| {
                format!("ended session {id}")
            })
        }
    }
}

fn group(cmd: GroupCmd, server: &ServerArgs, out: &Output) -> Result<()> {
    let members = |g: &str| format!("/api/admin/groups/{}/members", encode(g));
    match cmd {
        GroupCmd::List => listing(
            server,
            "/api/admin/groups",
            "groups",
            out,
            &["group", "members", "grants"],
            |g| {
                let grants: Vec<String> = list(g, "grants")
                    .iter()
                    .map(|p| format!("{}:{}", s(&p[0]), s(&p[1])))
                    .collect();
                vec![
                    g["name"].clone(),
                    joined(g, "members"),
                    json!(grants.join(", ")),
                ]
            },
        ),
        GroupCmd::Add { name } => act(
            server,
            "POST",
            "/api/admin/groups",
            Some(json!({"name": name})),
            out,
            |_| format!("created group `{name}`"),
        ),
        GroupCmd::Remove { name } => {
            let path = format!("/api/admin/groups/{}", encode(&name));
            act(server, "DELETE", &path, None, out, |_| {
                format!("removed group `{name}` with its memberships and grants")
            })
        }
        GroupCmd::AddMember { group, user } => {
            let body = Some(json!({ "user": user }));
            act(server, "POST", &members(&group), body, out, |_| {
                format!("added `{user}` to `{group}`")
            })
        }
        GroupCmd::RemoveMember { group, user } => {
            let path = format!("{}/{}", members(&group), encode(&user));
            act(server, "DELETE", &path, None, out, |_| {
                format!("removed `{user}` from `{group}`")
            })
        }
    }
}

fn grant(cmd: GrantCmd, server: &ServerArgs, out: &Output) -> Result<()> {
    let (method, done, group, resource) = match cmd {
        GrantCmd::List => {
            let columns = ["group", "type", "resource", "dangling"];
            let keys = ["group", "resource_type", "resource_id", "dangling"];
            return listing(server, "/api/admin/grants", "grants", out, &columns, |g| {
                pick(g, &keys)
            });
        }
        GrantCmd::Add { group, resource } => ("POST", "granted", group, resource),
        GrantCmd::Remove { group, resource } => ("DELETE", "revoked", group, resource),
    };
    let body = resource.body(&group);
    let what = format!(
        "{} `{}`",
        s(&body["resource_type"]),
        s(&body["resource_id"])
    );
    act(server, method, "/api/admin/grants", Some(body), out, |_| {
        format!("{done} {what} (group `{group}`)")
    })
}

fn token(cmd: TokenCmd, server: &ServerArgs, out: &Output) -> Result<()> {
    match cmd {
        TokenCmd::List => {
            let columns = [
                "id",
                "user",
                "name",
                "prefix",
                "created",
                "expires",
                "revoked",
                "last used",
            ];
            let keys = [
                "id",
                "user",
                "name",
                "prefix",
                "created_at",
                "expires_at",
                "revoked_at",
                "last_used_at",
            ];
            listing(server, "/api/admin/tokens", "tokens", out, &columns, |t| {
                pick(t, &keys)
            })
        }
        TokenCmd::Revoke { id } => {
            let path = format!("/api/tokens/{}", encode(&id));
            act(server, "DELETE", &path, None, out, |_| {
                format!("revoked token `{id}`")
            })
        }
    }
}

/// The JSON body of a signed upload (connector or reviewer).
fn signed_upload(
    component: &Path,
    manifest: Option<&Path>,
    signature: Option<PathBuf>,
) -> Result<Value> {
    use base64::Engine as _;
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let Some(manifest) = manifest else {
        // a package carries its connector.toml and signature
        let (bare, manifest, sig) = agnes_runtime::signature::unpack(&read(component)?)?
            .with_context(|| {
                format!(
                    "{} is not a package: pass --manifest (and --signature)",
                    component.display()
                )
            })?;
        return Ok(json!({
            "component_base64": base64::engine::general_purpose::STANDARD.encode(bare),
            "manifest": manifest,
            "signature": sig,
        }));
    };
    let sig_path = signature.unwrap_or_else(|| agnes_runtime::signature::default_path(component));
    let sig: Value = serde_json::from_slice(&read(&sig_path)?)
        .with_context(|| format!("{} is not a signature file", sig_path.display()))?;
    Ok(json!({
        "component_base64": base64::engine::general_purpose::STANDARD.encode(read(component)?),
        "manifest": String::from_utf8(read(manifest)?)
            .with_context(|| format!("{} is not UTF-8", manifest.display()))?,
        "signature": sig,
    }))
}

/// `MARKETPLACE/PLUGIN` as a path suffix.
fn plugin_path(plugin: &str) -> Result<String> {
    let (m, p) = plugin
        .split_once('/')
        .with_context(|| format!("`{plugin}`: name a plugin as MARKETPLACE/PLUGIN"))?;
    Ok(format!("{}/{}", encode(m), encode(p)))
}

fn marketplace(cmd: MarketplaceCmd, server: &ServerArgs, out: &Output) -> Result<()> {
    let plugin_line = |p: &Value| {
        format!(
            "{}/{}  {}  verdict {}  served {}{}",
            s(&p["marketplace"]),
            s(&p["name"]),
            s(&p["status"]),
            s(&p["verdict"]),
            if p["approved"].is_null() {
                "nothing".to_string()
            } else {
                s(&p["approved_version"]).to_string() + " (approved)"
            },
            p["reason"]
                .as_str()
                .map(|r| format!("\n    {r}"))
                .unwrap_or_default()
        )
    };
    match cmd {
        MarketplaceCmd::Add {
            name,
            url,
            git_ref,
            token_env,
            token_file,
            allow_private,
            schedule,
        } => {
            let mut body = json!({"name": name, "url": url, "allow_private": allow_private});
            if let Some(r) = git_ref {
                body["ref"] = json!(r);
            }
            if let Some(s) = schedule {
                body["schedule"] = json!(s);
            }
            match (token_env, token_file) {
                (Some(e), _) => body["token"] = json!({"env": e}),
                (_, Some(f)) => body["token"] = json!({"file": f}),
                _ => {}
            }
            act(
                server,
                "POST",
                "/api/admin/marketplaces",
                Some(body),
                out,
                |r| {
                    let sync = &r["sync"];
                    if sync["ok"] == true {
                        let plugins = list(&sync["report"], "plugins");
                        let mut text = format!(
                            "registered {name}; synced commit {}: {} plugins",
                            s(&sync["report"]["commit"]),
                            plugins.len()
                        );
                        for p in plugins {
                            text.push_str(&format!(
                                "\n  {}  {}  {}",
                                s(&p["name"]),
                                s(&p["status"]),
                                s(&p["verdict"])
                            ));
                        }
                        text
                    } else {
                        format!("registered {name}; the sync failed: {}", s(&sync["error"]))
                    }
                },
            )
        }
        MarketplaceCmd::List => listing(
            server,
            "/api/admin/marketplaces",
            "marketplaces",
            out,
            &[
                "name", "url", "ref", "commit", "synced", "plugins", "served", "held", "error",
            ],
            |m| {
                pick(
                    m,
                    &[
                        "name",
                        "url",
                        "ref",
                        "commit",
                        "synced_at",
                        "plugins",
                        "served",
                        "held",
                        "error",
                    ],
                )
            },
        ),
        MarketplaceCmd::Show { name } => act(
            server,
            "GET",
            &format!("/api/admin/marketplaces/{}", encode(&name)),
            None,
            out,
            |r| {
                let m = &r["marketplace"];
                let mut text = format!(
                    "{}  {}  ref {}  commit {}  synced {}",
                    s(&m["name"]),
                    s(&m["url"]),
                    s(&m["ref"]),
                    s(&m["commit"]),
                    s(&m["synced_at"])
                );
                if !m["error"].is_null() {
                    text.push_str(&format!("\n  last sync failed: {}", s(&m["error"])));
                }
                for p in list(r, "plugins") {
                    text.push_str(&format!("\n  {}", plugin_line(p)));
                }
                text
            },
        ),
        MarketplaceCmd::Sync { name } => act(
            server,
            "POST",
            &format!("/api/admin/marketplaces/{}/sync", encode(&name)),
            None,
            out,
            |r| {
                let report = &r["report"];
                let mut text = format!("synced {name} at {}", s(&report["commit"]));
                for p in list(report, "plugins") {
                    text.push_str(&format!(
                        "\n  {}  {}  {}{}",
                        s(&p["name"]),
                        s(&p["status"]),
                        s(&p["verdict"]),
                        if p["changed"] == true {
                            "  (new version)"
                        } else {
                            ""
                        }
                    ));
                }
                for removed in list(report, "removed") {
                    text.push_str(&format!("\n  {}  removed", s(removed)));
                }
                text
            },
        ),
        MarketplaceCmd::Remove { name } => act(
            server,
            "DELETE",
            &format!("/api/admin/marketplaces/{}", encode(&name)),
            None,
            out,
            |_| format!("removed {name}"),
        ),
        MarketplaceCmd::Plugins { all } => {
            let v = server
                .client()?
                .call("GET", "/api/admin/marketplace/plugins", None)?;
            let held = |p: &&Value| all || p["status"] == "pending" || p["status"] == "denied";
            let items: Vec<Value> = list(&v, "plugins").iter().filter(held).cloned().collect();
            let lines: Vec<String> = items.iter().map(plugin_line).collect();
            out.print(
                || {
                    if lines.is_empty() {
                        "nothing is waiting for review".to_string()
                    } else {
                        lines.join("\n")
                    }
                },
                || json!({"plugins": items}),
            );
            Ok(())
        }
        MarketplaceCmd::Review { plugin } => act(
            server,
            "GET",
            &format!("/api/admin/marketplace/plugins/{}", plugin_path(&plugin)?),
            None,
            out,
            |r| {
                let mut text = plugin_line(&r["plugin"]);
                for review in list(r, "reviews") {
                    text.push_str(&format!(
                        "\n  reviewer {}: {}",
                        s(&review["reviewer"]),
                        s(&review["verdict"])
                    ));
                    if !review["failure"].is_null() {
                        text.push_str(&format!(" (failed: {})", s(&review["failure"])));
                    }
                    for f in list(review, "findings") {
                        let at = list(f, "spans")
                            .first()
                            .map(|sp| format!(" at {}:{}", s(&sp["path"]), s(&sp["start"])))
                            .unwrap_or_default();
                        text.push_str(&format!(
                            "\n    [{}] {} {}{at}\n      {}",
                            s(&f["severity"]),
                            s(&f["rule"]),
                            s(&f["title"]),
                            s(&f["detail"])
                        ));
                    }
                }
                let changes = list(r, "changes_since_approved");
                if !changes.is_empty() {
                    text.push_str("\n  changes since the approved version:");
                    for c in changes {
                        text.push_str(&format!("\n    {}", s(c)));
                    }
                }
                text
            },
        ),
        decision => {
            let (action, plugin) = match decision {
                MarketplaceCmd::Approve { plugin } => ("approve", plugin),
                MarketplaceCmd::Reject { plugin } => ("reject", plugin),
                MarketplaceCmd::Disable { plugin } => ("disable", plugin),
                MarketplaceCmd::Enable { plugin } => ("enable", plugin),
                _ => unreachable!("every other command is matched above"),
            };
            act(
                server,
                "POST",
                &format!(
                    "/api/admin/marketplace/plugins/{}/{action}",
                    plugin_path(&plugin)?
                ),
                None,
                out,
                |r| format!("{action}d {plugin}: {}", plugin_line(&r["plugin"])),
            )
        }
    }
}

fn reviewer(cmd: ReviewerCmd, server: &ServerArgs, out: &Output) -> Result<()> {
    match cmd {
        ReviewerCmd::Upload {
            component,
            manifest,
            signature,
        } => {
            let body = signed_upload(&component, manifest.as_deref(), signature)?;
            act(
                server,
                "POST",
                "/api/admin/reviewers",
                Some(body),
                out,
                |r| {
                    let rv = &r["reviewer"];
                    format!(
                        "uploaded reviewer {}@{} (digest {}, signed by {}); it reviewed {} plugin(s)",
                        s(&rv["name"]),
                        s(&rv["version"]),
                        s(&rv["digest"]),
                        s(&rv["key_id"]),
                        s(&r["plugins_reviewed"])
                    )
                },
            )
        }
        ReviewerCmd::List => listing(
            server,
            "/api/admin/reviewers",
            "reviewers",
            out,
            &[
                "reviewer", "version", "enabled", "digest", "signer", "uploaded", "imports",
            ],
            |r| {
                let mut row = pick(
                    r,
                    &[
                        "name",
                        "version",
                        "enabled",
                        "digest",
                        "key_id",
                        "uploaded_at",
                    ],
                );
                row.push(joined(r, "imports"));
                row
            },
        ),
    }
}

fn connector(cmd: ConnectorCmd, server: &ServerArgs, out: &Output) -> Result<()> {
    match cmd {
        ConnectorCmd::Upload {
            component,
            manifest,
            signature,
        } => {
            let body = signed_upload(&component, manifest.as_deref(), signature)?;
            act(
                server,
                "POST",
                "/api/admin/connectors",
                Some(body),
                out,
                |r| {
                    let (n, v) = (s(&r["name"]), s(&r["version"]));
                    format!(
                        "uploaded {n}@{v} (digest {}, signed by {}), pending review: once \
                         `agnes admin connector approve {n}@{v}`, use it as `--connector {n}@{v}`",
                        s(&r["digest"]),
                        s(&r["key_id"])
                    )
                },
            )
        }
        ConnectorCmd::List => {
            let columns = [
                "connector",
                "version",
                "status",
                "digest",
                "signer",
                "uploaded",
                "by",
            ];
            let keys = [
                "name",
                "version",
                "status",
                "digest",
                "key_id",
                "uploaded_at",
                "uploaded_by",
            ];
            listing(
                server,
                "/api/admin/connectors",
                "connectors",
                out,
                &columns,
                |c| pick(c, &keys),
            )
        }
        ConnectorCmd::Show { name } => {
            let path = format!("/api/admin/connectors/{}", encode(&name));
            act(server, "GET", &path, None, out, |r| {
                let mut text = String::new();
                for v in list(r, "versions") {
                    text.push_str(&format!("{}@{}", s(&v["name"]), s(&v["version"])));
                    for key in [
                        "status",
                        "digest",
                        "key_id",
                        "imports",
                        "requests",
                        "uploaded_at",
                        "uploaded_by",
                    ] {
                        text.push_str(&format!("\n  {key:<12}{}", s(&v[key])));
                    }
                    text.push('\n');
                }
                text.trim_end().to_string()
            })
        }
        ConnectorCmd::Diff { reference } => {
            let (n, v) = split_reference(&reference)?;
            let path = format!("/api/admin/connectors/{}/{}/diff", encode(n), encode(v));
            act(server, "GET", &path, None, out, |r| {
                let mut text = format!(
                    "{reference} ({}) against {}",
                    s(&r["status"]),
                    r["from"]
                        .as_str()
                        .unwrap_or("nothing approved before: everything is new")
                );
                for key in ["requests", "imports"] {
                    text.push_str(&format!("\n{key}:"));
                    let lines = list(r, key);
                    if lines.is_empty() {
                        text.push_str(" no change");
                    }
                    for l in lines {
                        text.push_str(&format!("\n  {}", s(l)));
                    }
                }
                text
            })
        }
        ConnectorCmd::Approve { reference } => review(server, out, &reference, "approve"),
        ConnectorCmd::Revoke { reference } => review(server, out, &reference, "revoke"),
    }
}

/// A security reviewer's `approve` or `revoke` of `NAME@VERSION`.
fn review(server: &ServerArgs, out: &Output, reference: &str, decision: &str) -> Result<()> {
    let (n, v) = split_reference(reference)?;
    let path = format!(
        "/api/admin/connectors/{}/{}/{decision}",
        encode(n),
        encode(v)
    );
    act(server, "POST", &path, None, out, |r| {
        let used: Vec<String> = list(r, "used_by").iter().map(s).collect();
        format!(
            "{reference} is {}{}",
            s(&r["status"]),
            if used.is_empty() {
                String::new()
            } else {
                format!(" (used by: {})", used.join(", "))
            }
        )
    })
}

/// `NAME@VERSION` → `(NAME, VERSION)`.
fn split_reference(reference: &str) -> Result<(&str, &str)> {
    reference
        .split_once('@')
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        .ok_or_else(|| {
            anyhow!(UsageError(format!(
                "`{reference}`: name a version as NAME@VERSION"
            )))
        })
}

fn sync(cmd: SyncCmd, server: &ServerArgs, out: &Output) -> Result<()> {
    match cmd {
        SyncCmd::Trigger {
            sources,
            full_refresh,
            wait,
        } => {
            let client = server.client()?;
            let mut body = json!({"full_refresh": full_refresh});
            if !sources.is_empty() {
                body["sources"] = json!(sources);
            }
            let r = client.call("POST", "/api/sync/trigger", Some(&body))?;
            let ids: Vec<i64> = list(&r, "runs")
                .iter()
                .filter_map(|x| x["run_id"].as_i64())
                .collect();
            if wait {
                return wait_for(&client, &ids, out);
            }
            out.print(
                || {
                    list(&r, "runs")
                        .iter()
                        .map(|x| {
                            format!(
                                "started run {} of source `{}`",
                                s(&x["run_id"]),
                                s(&x["source"])
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                },
                || r.clone(),
            );
            Ok(())
        }
        SyncCmd::Status { source, wait } => {
            let client = server.client()?;
            let r = client.call("GET", "/api/sync/status", None)?;
            let ids: Vec<i64> = list(&r, "running")
                .iter()
                .filter(|x| source.as_deref().is_none_or(|s| x["source"] == s))
                .filter_map(|x| x["run_id"].as_i64())
                .filter(|id| *id > 0)
                .collect();
            if wait && ids.is_empty() {
                // nothing running: report the newest finished run (of the source)
                let path = with_query(
                    "/api/sync/history",
                    &[("limit", Some("1".into())), ("source", source)],
                );
                let h = client.call("GET", &path, None)?;
                let ids: Vec<i64> = list(&h, "runs")
                    .iter()
                    .filter_map(|x| x["id"].as_i64())
                    .collect();
                return wait_for(&client, &ids, out);
            }
            if wait {
                return wait_for(&client, &ids, out);
            }
            out.print(
                || {
                    let mut text = String::new();
                    for x in list(&r, "running") {
                        text.push_str(&format!(
                            "running: source `{}` (run {}, {}, since {})\n",
                            s(&x["source"]),
                            s(&x["run_id"]),
                            s(&x["trigger"]),
                            s(&x["started_at"])
                        ));
                    }
                    if text.is_empty() {
                        text.push_str("no sync running\n");
                    }
                    let last = &r["last"];
                    if !last.is_null() {
                        text.push_str(&format!(
                            "last run: {} of `{}`: {} (finished {})\n",
                            s(&last["id"]),
                            s(&last["source"]),
                            s(&last["status"]),
                            s(&last["finished_at"])
                        ));
                    }
                    text.push_str(&format!("tables served: {}", s(&r["tables"])));
                    text
                },
                || r.clone(),
            );
            Ok(())
        }
        SyncCmd::History { source, limit } => {
            let path = with_query(
                "/api/sync/history",
                &[("limit", Some(limit.to_string())), ("source", source)],
            );
            let r = server.client()?.call("GET", &path, None)?;
            let rows = list(&r, "runs")
                .iter()
                .flat_map(|run| {
                    let tables = list(run, "tables");
                    let head = vec![
                        run["id"].clone(),
                        run["source"].clone(),
                        run["status"].clone(),
                        run["trigger"].clone(),
                        run["started_at"].clone(),
                    ];
                    if tables.is_empty() {
                        return vec![
                            [
                                head,
                                vec![Value::Null, Value::Null, Value::Null, run["error"].clone()],
                            ]
                            .concat(),
                        ];
                    }
                    tables
                        .iter()
                        .map(|t| {
                            [
                                head.clone(),
                                vec![
                                    t["table"].clone(),
                                    t["status"].clone(),
                                    t["rows"].clone(),
                                    t["error"].clone(),
                                ],
                            ]
                            .concat()
                        })
                        .collect()
                })
                .collect();
            print_table(
                out,
                &[
                    "run", "source", "status", "trigger", "started", "table", "outcome", "rows",
                    "error",
                ],
                rows,
                r,
            );
            Ok(())
        }
    }
}

fn sessions(cmd: SessionsCmd, server: &ServerArgs, out: &Output) -> Result<()> {
    match cmd {
        SessionsCmd::List { user } => {
            let path = with_query("/api/admin/sessions", &[("user", user)]);
            let keys = ["user", "file", "size", "uploaded_at"];
            listing(
                server,
                &path,
                "sessions",
                out,
                &["user", "file", "bytes", "uploaded"],
                |v| pick(v, &keys),
            )
        }
        SessionsCmd::Download { user, file, output } => {
            let target = output.unwrap_or_else(|| PathBuf::from(&file));
            let mut f = std::fs::File::create(&target)
                .with_context(|| format!("creating {}", target.display()))?;
            let path = format!("/api/admin/sessions/{}/{}", encode(&user), encode(&file));
            let (n, _) = server
                .client()?
                .download(&path, 0, &mut f)
                .map_err(|e| e.into_inner())?;
            out.print(
                || format!("saved {user}/{file} ({n} bytes) to {}", target.display()),
                || json!({"user": user, "file": file, "bytes": n, "path": target}),
            );
            Ok(())
        }
    }
}

fn metrics(cmd: MetricsCmd, server: &ServerArgs, out: &Output) -> Result<()> {
    match cmd {
        MetricsCmd::List => {
            let columns = ["id", "display name", "unit", "tables"];
            listing(server, "/api/metrics", "metrics", out, &columns, |m| {
                vec![
                    m["id"].clone(),
                    m["display_name"].clone(),
                    m["unit"].clone(),
                    joined(m, "tables"),
                ]
            })
        }
        MetricsCmd::Remove { id } => {
            let path = format!("/api/admin/metrics/{id}");
            act(server, "DELETE", &path, None, out, |_| {
                format!("deleted metric `{id}`")
            })
        }
        MetricsCmd::Import { dir, dry_run } => {
            let mut valid = Vec::new();
            let mut report: Vec<Value> = Vec::new();
            for file in crate::metrics::files(&dir)? {
                let shown = file
                    .strip_prefix(&dir)
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                match crate::metrics::read(&file) {
                    Ok(Some(m)) => valid.push((shown, m)),
                    Ok(None) => {}
                    Err(e) => report.push(json!({"file": shown, "status": "refused", "error": e})),
                }
            }
            let body = json!({"dry_run": dry_run, "metrics": valid.iter().map(|(_, m)| m).collect::<Vec<_>>()});
            let r = server
                .client()?
                .call("POST", "/api/admin/metrics/import", Some(&body))?;
            for ((file, _), o) in valid.iter().zip(list(&r, "metrics")) {
                let mut o = o.clone();
                o["file"] = json!(file);
                report.push(o);
            }
            report.sort_by(|a, b| s(&a["file"]).cmp(&s(&b["file"])));
            let refused = report.iter().filter(|o| o["status"] == "refused").count();
            out.print(
                || {
                    report
                        .iter()
                        .map(|o| {
                            let error = o["error"]
                                .as_str()
                                .map(|e| format!(": {e}"))
                                .unwrap_or_default();
                            format!(
                                "{:<48} {:<9} {}{error}",
                                s(&o["file"]),
                                s(&o["status"]),
                                s(&o["id"])
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                },
                || json!({"metrics": report, "refused": refused, "dry_run": dry_run}),
            );
            if refused > 0 {
                bail!("{refused} metric file(s) refused");
            }
            Ok(())
        }
    }
}

/// Polls the runs until each has finished, with a spinner per run; prints the outcomes.
/// Fails (exit 1) when any table of them failed.
fn wait_for(client: &Client, ids: &[i64], out: &Output) -> Result<()> {
    if ids.is_empty() {
        bail!(UsageError("there is no sync run to wait for".into()));
    }
    let bars = indicatif::MultiProgress::new();
    if !out.progress() {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let style = indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
    let mut runs: Vec<(i64, indicatif::ProgressBar, Option<Value>)> = ids
        .iter()
        .map(|id| {
            let bar = bars.add(indicatif::ProgressBar::new_spinner().with_style(style.clone()));
            bar.set_message(format!("run {id}"));
            bar.enable_steady_tick(Duration::from_millis(120));
            (*id, bar, None)
        })
        .collect();
    while runs.iter().any(|(_, _, done)| done.is_none()) {
        for (id, bar, done) in runs.iter_mut().filter(|r| r.2.is_none()) {
            let r = client.call("GET", &format!("/api/sync/runs/{id}"), None)?;
            let run = &r["run"];
            if run["status"] == "running" {
                bar.set_message(format!("syncing `{}` (run {id})", s(&run["source"])));
            } else {
                bar.finish_with_message(format!(
                    "`{}` (run {id}): {}",
                    s(&run["source"]),
                    s(&run["status"])
                ));
                *done = Some(run.clone());
            }
        }
        if runs.iter().any(|(_, _, done)| done.is_none()) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let finished: Vec<Value> = runs.into_iter().filter_map(|(_, _, r)| r).collect();
    let failed: Vec<String> = finished
        .iter()
        .flat_map(|run| {
            list(run, "tables")
                .iter()
                .filter(|t| t["status"] != "ok")
                .map(|t| {
                    format!(
                        "{}.{}: {}",
                        s(&run["source"]),
                        s(&t["table"]),
                        s(&t["error"])
                    )
                })
                .collect::<Vec<_>>()
        })
        .chain(
            finished
                .iter()
                .filter(|run| run["status"] != "ok" && list(run, "tables").is_empty())
                .map(|run| format!("{}: {}", s(&run["source"]), s(&run["error"]))),
        )
        .collect();
    out.print(
        || {
            finished
                .iter()
                .map(|run| {
                    let tables: Vec<String> = list(run, "tables")
                        .iter()
                        .map(|t| {
                            format!(
                                "  {} {} ({} rows)",
                                s(&t["table"]),
                                s(&t["status"]),
                                s(&t["rows"])
                            )
                        })
                        .collect();
                    format!(
                        "run {} of `{}`: {}\n{}",
                        s(&run["id"]),
                        s(&run["source"]),
                        s(&run["status"]),
                        tables.join("\n")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        },
        || json!({"runs": finished}),
    );
    if !failed.is_empty() {
        bail!("{} table(s) failed:\n{}", failed.len(), failed.join("\n"));
    }
    Ok(())
}
