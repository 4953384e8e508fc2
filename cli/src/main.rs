//! `agnes`: one binary for operators, connector authors and analysts.
//!
//! This file only parses arguments and dispatches; each command lives in `cmd/`.

mod client;
mod cmd;
mod metrics;
mod output;
mod telemetry;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Agnes: data distribution for AI analysts, with sandboxed WebAssembly connectors.
#[derive(Debug, Parser)]
#[command(name = "agnes", version, about, propagate_version = true)]
struct Cli {
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Print nothing on success.
    #[arg(long, short, global = true, conflicts_with = "json")]
    quiet: bool,
    /// More logs on stderr (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run, inspect and develop connectors.
    #[command(subcommand)]
    Connector(cmd::connector::ConnectorCmd),
    /// Look at extracts on disk.
    #[command(subcommand)]
    Extract(cmd::extract::ExtractCmd),
    /// Run the server (REST API, sync scheduler).
    Serve(cmd::serve::ServeCmd),
    /// Server administration: sources, tables, users, groups, grants, tokens, connectors,
    /// syncs, the audit log.
    Admin(cmd::admin::AdminArgs),
    /// Verify a token, save it, and create an analyst workspace here (or --dir).
    Init(cmd::analyst::InitArgs),
    /// Download the tables you may read whose content changed; drop those no longer granted.
    Pull(cmd::pull::PullArgs),
    /// Upload this workspace's Claude Code session transcripts and CLAUDE.local.md (new or
    /// changed ones only; tokens redacted). Run by the SessionEnd hook.
    Push(cmd::push::PushArgs),
    /// Run SQL on the local workspace (or, with --remote, on the server).
    Query(cmd::analyst::QueryArgs),
    /// The tables you may read, with size, freshness and local status.
    Catalog(cmd::analyst::CatalogArgs),
    /// The columns of a table.
    Schema(cmd::analyst::SchemaArgs),
    /// Columns, size and sample rows of a table.
    Describe(cmd::analyst::DescribeArgs),
    /// Filtered slices of tables, cut on the server, saved locally.
    #[command(subcommand)]
    Snapshot(cmd::snapshot::SnapshotCmd),
    /// Space used by the workspace and free on its disk.
    DiskInfo(cmd::analyst::DiskArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.verbose);
    let out = output::Output {
        json: cli.json,
        quiet: cli.quiet,
    };
    let result = match cli.command {
        Command::Connector(c) => cmd::connector::run(c, &out),
        Command::Extract(c) => cmd::extract::run(c, &out),
        Command::Serve(args) => cmd::serve::serve(args),
        Command::Admin(c) => cmd::admin::run(c, &out),
        Command::Init(a) => cmd::analyst::init(a, &out),
        Command::Pull(a) => cmd::pull::run(a, &out),
        Command::Push(a) => cmd::push::run(a, &out),
        Command::Query(a) => cmd::analyst::query(a, &out),
        Command::Catalog(a) => cmd::analyst::catalog(a, &out),
        Command::Schema(a) => cmd::analyst::schema(a, &out),
        Command::Describe(a) => cmd::analyst::describe(a, &out),
        Command::DiskInfo(a) => cmd::analyst::disk_info(a, &out),
        Command::Snapshot(c) => cmd::snapshot::run(c, &out),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "agnes", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // a reader that closed stdout early (`agnes query ... | head`) is not an error
            for cause in e.chain() {
                if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                    output::exit_on_closed_stdout(io);
                }
                if let Some(arrow_schema::ArrowError::IoError(_, io)) =
                    cause.downcast_ref::<arrow_schema::ArrowError>()
                {
                    output::exit_on_closed_stdout(io);
                }
            }
            // what a connector or a server said may reach this line: never let it steer
            // the terminal (escape codes that erase the line and print a fake success)
            eprintln!(
                "error: {}",
                agnes_runtime::names::sanitized(&format!("{e:#}"), 64 << 10)
            );
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Exit codes: 1 = the run or command failed, 2 = bad usage or input (clap uses 2 too),
/// 3 = busy (another run holds the lock).
fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<cmd::admin::UsageError>().is_some() {
        return 2;
    }
    match e.downcast_ref::<agnes_runtime::Error>() {
        Some(agnes_runtime::Error::Busy { .. }) => 3,
        Some(agnes_runtime::Error::Config { .. } | agnes_runtime::Error::ReadComponent { .. }) => 2,
        _ => 1,
    }
}
