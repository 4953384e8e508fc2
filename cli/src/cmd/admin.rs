//! `agnes admin ...`: the admin CLI, over the same REST API and credentials as the analyst
//! commands (`--server`/`AGNES_SERVER`, `--token`/`AGNES_TOKEN`, or the config dir).
//! Every command prints a short human summary, or the server's JSON answer with `--json`.
//! Exit codes: 0 ok, 1 the request or a synced table failed, 2 bad usage or input.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::analyst::{Format, encode, render};
use crate::client::{Client, ServerArgs};
use crate::output::Output;

#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Create the first admin user and print its token (once; fails if users exist).
    Bootstrap {
        /// Name of the admin user.
        #[arg(long, default_value = "admin")]
        name: String,
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
    /// Sync runs: trigger, status, history.
    #[command(subcommand)]
    Sync(SyncCmd),
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
        #[command(flatten)]
        server: ServerArgs,
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
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Every source with its tables and last run.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// One source with its tables and latest runs.
    Show {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
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
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a source, its tables and its extract (lists grants left dangling).
    Remove {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Run the connector's discover: the tables it offers, with their columns.
    Discover {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Sync one source.
    Sync {
        name: String,
        /// Read everything again (incremental tables are rebuilt).
        #[arg(long)]
        full_refresh: bool,
        /// Wait for the run, with a progress bar; exit 1 when a table failed.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        server: ServerArgs,
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
        /// `local` (parquet distributed to analysts).
        #[arg(long, default_value = "local")]
        query_mode: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Tables of every source, or of one.
    List {
        #[arg(long)]
        source: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Change a table's description, query mode or options.
    Update {
        source: String,
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        query_mode: Option<String>,
        /// Per-table options, a JSON object (or @file).
        #[arg(long)]
        options: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove a table: it stops being served at once.
    Remove {
        source: String,
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
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
        #[command(flatten)]
        server: ServerArgs,
    },
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Disable a user: their tokens stop working at once.
    Disable {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    Add {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a group with its memberships and grants.
    Remove {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    AddMember {
        group: String,
        user: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    RemoveMember {
        group: String,
        user: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// What a grant names: `--table NAME` or `--source NAME` (`--table '*'`: every table).
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Resource {
    #[arg(long)]
    table: Option<String>,
    #[arg(long)]
    source: Option<String>,
}

impl Resource {
    fn body(&self, group: &str) -> Value {
        let (t, id) = match (&self.table, &self.source) {
            (Some(t), _) => ("table", t),
            (_, Some(s)) => ("source", s),
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
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Every grant; dangling ones name nothing registered.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    Remove {
        group: String,
        #[command(flatten)]
        resource: Resource,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Every user's tokens (never their secrets).
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    Revoke {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConnectorCmd {
    /// Upload a signed component with its connector.toml and signature.
    Upload {
        component: PathBuf,
        #[arg(long)]
        manifest: PathBuf,
        /// Default: `<component>.sig`.
        #[arg(long)]
        signature: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Every uploaded version of one connector, with its requests and connector.toml.
    Show {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
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
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Runs in progress and the last run. `--wait`: until the runs in progress (of
    /// `--source`) finish; exit 1 when one of them had a failed table.
    Status {
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Runs, newest first, with per-table outcomes.
    History {
        #[arg(long)]
        source: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Reads a JSON argument: inline, or `@file`.
fn json_arg(what: &str, text: &str) -> Result<Value> {
    let text = match text.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {what} from {path}"))?
        }
        None => text.to_string(),
    };
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

pub fn run(cmd: AdminCmd, out: &Output) -> Result<()> {
    match cmd {
        AdminCmd::Bootstrap { name, serve } => super::serve::bootstrap(name, serve, out),
        AdminCmd::Source(c) => source(c, out),
        AdminCmd::Table(c) => table(c, out),
        AdminCmd::User(c) => user(c, out),
        AdminCmd::Group(c) => group(c, out),
        AdminCmd::Grant(c) => grant(c, out),
        AdminCmd::Token(c) => token(c, out),
        AdminCmd::Connector(c) => connector(c, out),
        AdminCmd::Sync(c) => sync(c, out),
        AdminCmd::Audit {
            since,
            action,
            limit,
            server,
        } => {
            let mut q = format!("/api/admin/audit?limit={limit}");
            if let Some(s) = since {
                q.push_str(&format!("&since={}", encode(&s)));
            }
            if let Some(a) = action {
                q.push_str(&format!("&action={}", encode(&a)));
            }
            let r = server.client()?.call("GET", &q, None)?;
            let rows = list(&r, "entries")
                .iter()
                .map(|e| {
                    vec![
                        e["at"].clone(),
                        e["user"].clone(),
                        e["action"].clone(),
                        e["resource"].clone(),
                        e["detail"].clone(),
                    ]
                })
                .collect();
            print_table(
                out,
                &["at", "user", "action", "resource", "detail"],
                rows,
                r,
            );
            Ok(())
        }
    }
}

fn source(cmd: SourceCmd, out: &Output) -> Result<()> {
    match cmd {
        SourceCmd::Add {
            name,
            fields,
            disabled,
            tables,
            all_tables,
            server,
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
            let added = match (all_tables, tables.is_empty()) {
                (true, _) => Some(json!({"all": true})),
                (false, false) => Some(
                    json!({"tables": tables.iter().map(|t| json!({"name": t})).collect::<Vec<_>>()}),
                ),
                (false, true) => None,
            };
            if let Some(add) = added {
                let path = format!("/api/admin/sources/{}/tables", encode(&name));
                let t = client.call("POST", &path, Some(&add)).with_context(|| {
                    format!("source `{name}` was created, but adding its tables failed")
                })?;
                r["added"] = t["added"].clone();
            }
            let n = list(&r, "added").len();
            out.print(
                || {
                    format!(
                        "created source `{name}`{}",
                        if n > 0 {
                            format!(" with {n} table(s)")
                        } else {
                            String::new()
                        }
                    )
                },
                || r.clone(),
            );
            Ok(())
        }
        SourceCmd::List { server } => {
            let r = server.client()?.call("GET", "/api/admin/sources", None)?;
            let rows = list(&r, "sources")
                .iter()
                .map(|s| {
                    let tables: Vec<String> = list(s, "tables").iter().map(self::s).collect();
                    let last = &s["last_run"];
                    vec![
                        s["name"].clone(),
                        s["connector"].clone(),
                        json!(if s["enabled"] == true { "yes" } else { "no" }),
                        s["schedule"].clone(),
                        json!(tables.join(", ")),
                        json!(if s["running"].is_null() {
                            self::s(&last["status"])
                        } else {
                            "running".into()
                        }),
                        last["finished_at"].clone(),
                    ]
                })
                .collect();
            print_table(
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
                rows,
                r,
            );
            Ok(())
        }
        SourceCmd::Show { name, server } => {
            let r = server.client()?.call(
                "GET",
                &format!("/api/admin/sources/{}", encode(&name)),
                None,
            )?;
            out.print(
                || {
                    let src = &r["source"];
                    let mut text = format!(
                        "source {}\n  connector   {}\n  enabled     {}\n  schedule    {}\n  config      {}\n  grant       {}\n  limits      {}\n  tables:",
                        s(&src["name"]), s(&src["connector"]), s(&src["enabled"]), s(&src["schedule"]),
                        src["config"], src["grant"], src["limits"]
                    );
                    for t in list(&r, "tables") {
                        text.push_str(&format!("\n    {} ({}) {}", s(&t["name"]), s(&t["query_mode"]), s(&t["description"])));
                    }
                    text.push_str("\n  runs:");
                    for run in list(&r, "runs") {
                        text.push_str(&format!("\n    {} {} {} {}", s(&run["id"]), s(&run["status"]), s(&run["started_at"]), s(&run["error"])));
                    }
                    text
                },
                || r.clone(),
            );
            Ok(())
        }
        SourceCmd::Update {
            name,
            fields,
            no_schedule,
            enable,
            disable,
            server,
        } => {
            let mut body = fields.to_json()?;
            if no_schedule {
                body.insert("schedule".into(), Value::Null);
            }
            if enable || disable {
                body.insert("enabled".into(), json!(enable));
            }
            if body.is_empty() {
                bail!(UsageError("nothing to change: give at least one of --connector, --config, --grant, --limits, --schedule, --no-schedule, --enable, --disable, --description".into()));
            }
            let r = server.client()?.call(
                "PATCH",
                &format!("/api/admin/sources/{}", encode(&name)),
                Some(&Value::Object(body)),
            )?;
            out.print(|| format!("updated source `{name}`"), || r.clone());
            Ok(())
        }
        SourceCmd::Remove { name, server } => {
            let r = server.client()?.call(
                "DELETE",
                &format!("/api/admin/sources/{}", encode(&name)),
                None,
            )?;
            out.print(
                || {
                    let mut text = format!(
                        "removed source `{name}` and its tables ({})",
                        list(&r, "tables").iter().map(s).collect::<Vec<_>>().join(", ")
                    );
                    for g in list(&r, "dangling_grants") {
                        text.push_str(&format!(
                            "\nwarning: grant of {} `{}` to `{}` now names nothing (remove it with `agnes admin grant remove`)",
                            s(&g["resource_type"]), s(&g["resource_id"]), s(&g["group"])
                        ));
                    }
                    text
                },
                || r.clone(),
            );
            Ok(())
        }
        SourceCmd::Discover { name, server } => {
            let r = server.client()?.call(
                "POST",
                &format!("/api/admin/sources/{}/discover", encode(&name)),
                None,
            )?;
            let rows = list(&r, "tables")
                .iter()
                .map(|t| {
                    let cols: Vec<String> = list(t, "columns")
                        .iter()
                        .map(|c| format!("{} {}", s(&c["name"]), s(&c["type"])))
                        .collect();
                    vec![
                        t["name"].clone(),
                        json!(if t["registered"] == true { "yes" } else { "no" }),
                        json!(if t["incremental"] == true {
                            "incremental"
                        } else {
                            "full"
                        }),
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
            server,
        } => {
            let client = server.client()?;
            let r = client.call(
                "POST",
                &format!("/api/admin/sources/{}/sync", encode(&name)),
                Some(&json!({"full_refresh": full_refresh})),
            )?;
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

fn table(cmd: TableCmd, out: &Output) -> Result<()> {
    match cmd {
        TableCmd::Add {
            source,
            names,
            all,
            description,
            query_mode,
            server,
        } => {
            let body = if all {
                json!({"all": true})
            } else if names.is_empty() {
                bail!(UsageError(
                    "name the tables to add, or --all for every table the connector discovers"
                        .into()
                ));
            } else {
                json!({"tables": names.iter().map(|n| json!({"name": n, "description": description, "query_mode": query_mode})).collect::<Vec<_>>()})
            };
            let r = server.client()?.call(
                "POST",
                &format!("/api/admin/sources/{}/tables", encode(&source)),
                Some(&body),
            )?;
            let added: Vec<String> = list(&r, "added").iter().map(|t| s(&t["name"])).collect();
            out.print(
                || {
                    format!(
                        "added to `{source}`: {}",
                        if added.is_empty() {
                            "nothing new".into()
                        } else {
                            added.join(", ")
                        }
                    )
                },
                || r.clone(),
            );
            Ok(())
        }
        TableCmd::List { source, server } => {
            let path = match &source {
                Some(s) => format!("/api/admin/tables?source={}", encode(s)),
                None => "/api/admin/tables".into(),
            };
            let r = server.client()?.call("GET", &path, None)?;
            let rows = list(&r, "tables")
                .iter()
                .map(|t| {
                    vec![
                        t["name"].clone(),
                        t["source"].clone(),
                        t["query_mode"].clone(),
                        t["description"].clone(),
                    ]
                })
                .collect();
            print_table(out, &["table", "source", "mode", "description"], rows, r);
            Ok(())
        }
        TableCmd::Update {
            source,
            name,
            description,
            query_mode,
            options,
            server,
        } => {
            let mut body = serde_json::Map::new();
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
                    "nothing to change: give --description, --query-mode or --options".into()
                ));
            }
            let path = format!(
                "/api/admin/sources/{}/tables/{}",
                encode(&source),
                encode(&name)
            );
            let r = server
                .client()?
                .call("PATCH", &path, Some(&Value::Object(body)))?;
            out.print(|| format!("updated table `{name}`"), || r.clone());
            Ok(())
        }
        TableCmd::Remove {
            source,
            name,
            server,
        } => {
            let path = format!(
                "/api/admin/sources/{}/tables/{}",
                encode(&source),
                encode(&name)
            );
            let r = server.client()?.call("DELETE", &path, None)?;
            out.print(
                || format!("removed table `{name}` of `{source}`"),
                || r.clone(),
            );
            Ok(())
        }
    }
}

fn user(cmd: UserCmd, out: &Output) -> Result<()> {
    match cmd {
        UserCmd::Add {
            name,
            groups,
            expires_in_days,
            server,
        } => {
            let body = json!({"name": name, "groups": groups, "expires_in_days": expires_in_days});
            let r = server
                .client()?
                .call("POST", "/api/admin/users", Some(&body))?;
            out.print(
                || {
                    format!(
                        "created user `{name}`; their token (shown once):\n{}",
                        s(&r["token"])
                    )
                },
                || r.clone(),
            );
            Ok(())
        }
        UserCmd::List { server } => {
            let r = server.client()?.call("GET", "/api/admin/users", None)?;
            let rows = list(&r, "users")
                .iter()
                .map(|u| {
                    let groups: Vec<String> = list(u, "groups").iter().map(s).collect();
                    vec![
                        u["name"].clone(),
                        json!(groups.join(", ")),
                        u["created_at"].clone(),
                        u["disabled_at"].clone(),
                    ]
                })
                .collect();
            print_table(out, &["user", "groups", "created", "disabled"], rows, r);
            Ok(())
        }
        UserCmd::Disable { name, server } => {
            let r = server.client()?.call(
                "POST",
                &format!("/api/admin/users/{}/disable", encode(&name)),
                None,
            )?;
            out.print(|| format!("disabled user `{name}`"), || r.clone());
            Ok(())
        }
    }
}

fn group(cmd: GroupCmd, out: &Output) -> Result<()> {
    let (client, method, path, body, done) = match cmd {
        GroupCmd::List { server } => {
            let r = server.client()?.call("GET", "/api/admin/groups", None)?;
            let rows = list(&r, "groups")
                .iter()
                .map(|g| {
                    let members: Vec<String> = list(g, "members").iter().map(s).collect();
                    let grants: Vec<String> = list(g, "grants")
                        .iter()
                        .map(|p| format!("{}:{}", s(&p[0]), s(&p[1])))
                        .collect();
                    vec![
                        g["name"].clone(),
                        json!(members.join(", ")),
                        json!(grants.join(", ")),
                    ]
                })
                .collect();
            print_table(out, &["group", "members", "grants"], rows, r);
            return Ok(());
        }
        GroupCmd::Add { name, server } => (
            server.client()?,
            "POST",
            "/api/admin/groups".to_string(),
            Some(json!({"name": name})),
            format!("created group `{name}`"),
        ),
        GroupCmd::Remove { name, server } => (
            server.client()?,
            "DELETE",
            format!("/api/admin/groups/{}", encode(&name)),
            None,
            format!("removed group `{name}` with its memberships and grants"),
        ),
        GroupCmd::AddMember {
            group,
            user,
            server,
        } => (
            server.client()?,
            "POST",
            format!("/api/admin/groups/{}/members", encode(&group)),
            Some(json!({"user": user})),
            format!("added `{user}` to `{group}`"),
        ),
        GroupCmd::RemoveMember {
            group,
            user,
            server,
        } => (
            server.client()?,
            "DELETE",
            format!(
                "/api/admin/groups/{}/members/{}",
                encode(&group),
                encode(&user)
            ),
            None,
            format!("removed `{user}` from `{group}`"),
        ),
    };
    let r = client.call(method, &path, body.as_ref())?;
    out.print(|| done, || r);
    Ok(())
}

fn grant(cmd: GrantCmd, out: &Output) -> Result<()> {
    match cmd {
        GrantCmd::Add {
            group,
            resource,
            server,
        } => {
            let body = resource.body(&group);
            let r = server
                .client()?
                .call("POST", "/api/admin/grants", Some(&body))?;
            out.print(
                || {
                    format!(
                        "granted {} `{}` to `{group}`",
                        s(&body["resource_type"]),
                        s(&body["resource_id"])
                    )
                },
                || r.clone(),
            );
            Ok(())
        }
        GrantCmd::Remove {
            group,
            resource,
            server,
        } => {
            let body = resource.body(&group);
            let r = server
                .client()?
                .call("DELETE", "/api/admin/grants", Some(&body))?;
            out.print(
                || {
                    format!(
                        "revoked {} `{}` from `{group}`",
                        s(&body["resource_type"]),
                        s(&body["resource_id"])
                    )
                },
                || r.clone(),
            );
            Ok(())
        }
        GrantCmd::List { server } => {
            let r = server.client()?.call("GET", "/api/admin/grants", None)?;
            let rows = list(&r, "grants")
                .iter()
                .map(|g| {
                    vec![
                        g["group"].clone(),
                        g["resource_type"].clone(),
                        g["resource_id"].clone(),
                        json!(if g["dangling"] == true {
                            "dangling"
                        } else {
                            ""
                        }),
                    ]
                })
                .collect();
            print_table(out, &["group", "type", "resource", "note"], rows, r);
            Ok(())
        }
    }
}

fn token(cmd: TokenCmd, out: &Output) -> Result<()> {
    match cmd {
        TokenCmd::List { server } => {
            let r = server.client()?.call("GET", "/api/admin/tokens", None)?;
            let rows = list(&r, "tokens")
                .iter()
                .map(|t| {
                    vec![
                        t["id"].clone(),
                        t["user"].clone(),
                        t["name"].clone(),
                        json!(format!("agnes_{}_…", s(&t["prefix"]))),
                        t["created_at"].clone(),
                        t["expires_at"].clone(),
                        t["revoked_at"].clone(),
                        t["last_used_at"].clone(),
                    ]
                })
                .collect();
            print_table(
                out,
                &[
                    "id",
                    "user",
                    "name",
                    "token",
                    "created",
                    "expires",
                    "revoked",
                    "last used",
                ],
                rows,
                r,
            );
            Ok(())
        }
        TokenCmd::Revoke { id, server } => {
            let r =
                server
                    .client()?
                    .call("DELETE", &format!("/api/tokens/{}", encode(&id)), None)?;
            out.print(|| format!("revoked token `{id}`"), || r.clone());
            Ok(())
        }
    }
}

fn connector(cmd: ConnectorCmd, out: &Output) -> Result<()> {
    match cmd {
        ConnectorCmd::Upload {
            component,
            manifest,
            signature,
            server,
        } => {
            use base64::Engine as _;
            let bytes = std::fs::read(&component)
                .with_context(|| format!("reading {}", component.display()))?;
            let toml = std::fs::read_to_string(&manifest)
                .with_context(|| format!("reading {}", manifest.display()))?;
            let sig_path =
                signature.unwrap_or_else(|| agnes_runtime::signature::default_path(&component));
            let sig: Value = serde_json::from_str(
                &std::fs::read_to_string(&sig_path)
                    .with_context(|| format!("reading {}", sig_path.display()))?,
            )
            .with_context(|| format!("{} is not a signature file", sig_path.display()))?;
            let body = json!({
                "component_base64": base64::engine::general_purpose::STANDARD.encode(&bytes),
                "manifest": toml,
                "signature": sig,
            });
            let r = server
                .client()?
                .call("POST", "/api/admin/connectors", Some(&body))?;
            out.print(
                || {
                    format!(
                        "uploaded {}@{} (digest {}, signed by {}); use it as `--connector {}@{}`",
                        s(&r["name"]),
                        s(&r["version"]),
                        s(&r["digest"]),
                        s(&r["key_id"]),
                        s(&r["name"]),
                        s(&r["version"])
                    )
                },
                || r.clone(),
            );
            Ok(())
        }
        ConnectorCmd::List { server } => {
            let r = server
                .client()?
                .call("GET", "/api/admin/connectors", None)?;
            let rows = list(&r, "connectors")
                .iter()
                .map(|c| {
                    vec![
                        c["name"].clone(),
                        c["version"].clone(),
                        c["digest"].clone(),
                        c["key_id"].clone(),
                        c["uploaded_at"].clone(),
                        c["uploaded_by"].clone(),
                    ]
                })
                .collect();
            print_table(
                out,
                &["connector", "version", "digest", "signer", "uploaded", "by"],
                rows,
                r,
            );
            Ok(())
        }
        ConnectorCmd::Show { name, server } => {
            let r = server.client()?.call(
                "GET",
                &format!("/api/admin/connectors/{}", encode(&name)),
                None,
            )?;
            out.print(
                || {
                    let mut text = String::new();
                    for v in list(&r, "versions") {
                        text.push_str(&format!(
                            "{}@{}\n  digest   {}\n  signer   {}\n  imports  {}\n  requests {}\n  uploaded {} by {}\n",
                            s(&v["name"]), s(&v["version"]), s(&v["digest"]), s(&v["key_id"]), v["imports"], v["requests"],
                            s(&v["uploaded_at"]), s(&v["uploaded_by"])
                        ));
                    }
                    text.trim_end().to_string()
                },
                || r.clone(),
            );
            Ok(())
        }
    }
}

fn sync(cmd: SyncCmd, out: &Output) -> Result<()> {
    match cmd {
        SyncCmd::Trigger {
            sources,
            full_refresh,
            wait,
            server,
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
        SyncCmd::Status {
            source,
            wait,
            server,
        } => {
            let client = server.client()?;
            let r = client.call("GET", "/api/sync/status", None)?;
            let ids: Vec<i64> = list(&r, "running")
                .iter()
                .filter(|x| source.as_deref().is_none_or(|s| x["source"] == s))
                .filter_map(|x| x["run_id"].as_i64())
                .filter(|id| *id > 0)
                .collect();
            if wait {
                if ids.is_empty() {
                    // nothing running: report the newest finished run (of the source)
                    let path = match &source {
                        Some(s) => format!("/api/sync/history?limit=1&source={}", encode(s)),
                        None => "/api/sync/history?limit=1".into(),
                    };
                    let h = client.call("GET", &path, None)?;
                    let ids: Vec<i64> = list(&h, "runs")
                        .iter()
                        .filter_map(|x| x["id"].as_i64())
                        .collect();
                    return wait_for(&client, &ids, out);
                }
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
        SyncCmd::History {
            source,
            limit,
            server,
        } => {
            let mut path = format!("/api/sync/history?limit={limit}");
            if let Some(s) = &source {
                path.push_str(&format!("&source={}", encode(s)));
            }
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
