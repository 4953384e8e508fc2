//! End-to-end tests across crates: real components built by `build.rs`, real wasmtime,
//! real parquet, real DuckDB. One module per topic:
//!
//! - `csv_extract`: the csv connector produces a contract-exact extract.
//! - `bad_input`: bad data and misbehaving guests fail cleanly and publish nothing.
//! - `sandbox`: a guest cannot escape its grant or its limits.
//! - `egress`: outbound HTTP only where granted; secrets injected by the host.
//! - `http_json`: the http-json connector against a local API (paging, retries, incremental).
//! - `jira`: the jira connector against a local Jira stand-in, and the server's Jira webhook.
//! - `keboola`: the keboola connector against a local Storage API stand-in.
//! - `marketplace`: plugin marketplaces with real git, reviewer components, zip and git serving.
//! - `native`: `Runtime::run_native` makes the same extract as the component.
//! - `postgres`: connector world 0.2.0 and the postgres connector on a real PostgreSQL.
//! - `server`: the REST server over real HTTP on loopback.
//! - `store_contract`: what every state-store backend must do.
//! - `split`: split reads (`parallel_reads`) give the same table as one instance.
//! - `sql`: SQL over Agnes tables in the OS-confined `agnes-sqlbox` process.
//! - `web`: the admin web UI over HTTP, and in a real headless Chromium.

mod bad_input;
mod compat;
mod csv_extract;
mod egress;
mod fuzz;
mod hardening;
mod http_json;
mod jira;
mod keboola;
mod marketplace;
mod metrics;
mod native;
mod postgres;
mod sandbox;
mod scale_out;
mod server;
mod sources;
mod split;
mod sql;
mod store_contract;
mod web;
