//! A connector that misbehaves on purpose, chosen by `{"mode": ...}`:
//!
//! - `good`: one table `numbers (n BIGINT NOT NULL, label VARCHAR)` with `rows` rows, in
//!   batches of `batch` rows.
//! - `garbage`: emits bytes that are not Arrow IPC.
//! - `schema_change`: emits one good batch, then a batch with another schema.
//! - `partial`: emits a message cut in half.
//! - `trap`: panics in the middle of `read`, after emitting a batch.
//! - `unsafe_name`: offers a table named `bad;name`.
//! - `unknown_stream`: emits to a table it did not offer.
//! - `emit_in_discover`: calls `emit` from `discover`.
//! - `probe`: tries to read paths outside its preopen and reports each outcome as a row of
//!   table `probe (path VARCHAR, outcome VARCHAR)`.
//! - `spin`: loops forever in `read`.
//! - `sleep`: blocks in a host call (a WASI clock wait) for an hour.
//! - `memory_bomb`: allocates until it cannot.
//! - `error`: returns a source error from `read`.
//! - `http`: GETs `url` with `headers` (values may hold `{{secret.NAME}}` placeholders) and
//!   emits `http (status BIGINT, body VARCHAR)`; with `swallow`, a failed request is
//!   recorded as status -1 and the read still returns Ok.
//! - `loud_error`: fails `read` with a source error of `rows` bytes that starts with
//!   terminal escape codes pretending the run succeeded.
//! - `bad_checkpoint`: sends a state checkpoint that is not JSON, ignores the refusal, emits
//!   the `good` rows and returns without a state.
//! - `log_flood`: logs `rows` lines, then emits one row.
//! - `big_batch`: emits one row whose label is `rows` bytes long, in one emit.
//! - `stdout_flood`: prints `rows` lines of 10 KB to stdout, then emits one row.
//! - `widest`: offers `wide` with 999 BIGINT columns and one list nested 8 deep, and emits
//!   `rows` rows (what the default limits allow at most).
//! - `db`: opens `connections` connections to database `database` (default `main`),
//!   runs each of `sql` on the first with the simple query protocol, and with `copy_data`
//!   sends a raw COPY FROM STDIN data message; every outcome is a row of `probe (path
//!   VARCHAR, outcome VARCHAR)`. A refused connect fails the read unless `swallow`.
//! - `two_tables`: offers `numbers` and `numbers_b` and emits `rows` rows to each, with
//!   1 KiB labels that do not compress, in batches of `batch` rows.

use std::sync::Arc;

use arrow_array::Array;

use agnes_connector_sdk::arrow_array::{Int64Array, RecordBatch, StringArray};
use agnes_connector_sdk::arrow_schema::{DataType, Field, Schema, SchemaRef};
use agnes_connector_sdk::bindings::agnes::connector::host;
use agnes_connector_sdk::{Connector, Error, ReadContext, Spec, Table, export_connector, http};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Config {
    mode: String,
    #[serde(default = "default_rows")]
    rows: i64,
    /// Rows per emitted batch in `good` mode.
    #[serde(default = "default_batch")]
    batch: i64,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    url: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    swallow: bool,
    #[serde(default = "default_database")]
    database: String,
    #[serde(default = "default_connections")]
    connections: u32,
    #[serde(default)]
    sql: Vec<String>,
    #[serde(default)]
    copy_data: bool,
}

fn default_database() -> String {
    "main".into()
}

fn default_connections() -> u32 {
    1
}

fn http_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("status", DataType::Int64, false),
        Field::new("body", DataType::Utf8, false),
    ]))
}

fn default_rows() -> i64 {
    10
}

fn default_batch() -> i64 {
    1000
}

fn numbers_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, false),
        Field::new("label", DataType::Utf8, true),
    ]))
}

fn widest_schema() -> SchemaRef {
    let mut deep = DataType::Int64;
    for _ in 0..8 {
        deep = DataType::List(Arc::new(Field::new("item", deep, true)));
    }
    let mut fields: Vec<Field> = (0..999)
        .map(|c| Field::new(format!("c{c}"), DataType::Int64, true))
        .collect();
    fields.push(Field::new("deep", deep, true));
    Arc::new(Schema::new(fields))
}

fn probe_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("outcome", DataType::Utf8, false),
    ]))
}

fn numbers(from: i64, to: i64) -> RecordBatch {
    let n = Int64Array::from_iter_values(from..to);
    let label = StringArray::from_iter_values((from..to).map(|i| format!("row {i}")));
    RecordBatch::try_new(numbers_schema(), vec![Arc::new(n), Arc::new(label)]).unwrap()
}

fn ipc_stream(batch: &RecordBatch) -> Vec<u8> {
    let mut w = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), batch.schema_ref()).unwrap();
    w.write(batch).unwrap();
    w.into_inner().unwrap()
}

pub struct Hostile;

impl Connector for Hostile {
    type Config = Config;

    fn spec() -> Spec {
        Spec::new("hostile", "0.0.0")
    }

    fn discover(config: &Config) -> Result<Vec<Table>, Error> {
        match config.mode.as_str() {
            "unsafe_name" => Ok(vec![Table::new("bad;name", numbers_schema())]),
            "probe" | "db" => Ok(vec![Table::new("probe", probe_schema())]),
            "http" => Ok(vec![Table::new("http", http_schema())]),
            "widest" => Ok(vec![Table::new("wide", widest_schema())]),
            "two_tables" => Ok(vec![
                Table::new("numbers", numbers_schema()),
                Table::new("numbers_b", numbers_schema()),
            ]),
            "emit_in_discover" => {
                let r = host::emit("numbers", &ipc_stream(&numbers(0, 1)));
                Err(Error::AccessDenied(format!(
                    "emit in discover returned {r:?}"
                )))
            }
            _ => Ok(vec![
                Table::new("numbers", numbers_schema()).description("numbers 0..rows"),
            ]),
        }
    }

    fn read(config: &Config, ctx: &mut ReadContext) -> Result<(), Error> {
        match config.mode.as_str() {
            "good" | "unsafe_name" => {
                let mut from = 0;
                while from < config.rows {
                    let to = (from + config.batch.max(1)).min(config.rows);
                    ctx.emit("numbers", &numbers(from, to))?;
                    from = to;
                }
                Ok(())
            }
            "garbage" => {
                host::emit(
                    "numbers",
                    b"\xff\xff\xff\xff\x10\x00\x00\x00this is not arrow ipc at all",
                )?;
                Ok(())
            }
            "schema_change" => {
                ctx.emit("numbers", &numbers(0, 5))?;
                let other = Arc::new(Schema::new(vec![Field::new("n", DataType::Utf8, false)]));
                let batch =
                    RecordBatch::try_new(other, vec![Arc::new(StringArray::from(vec!["x"]))])
                        .unwrap();
                host::emit("numbers", &ipc_stream(&batch))?;
                Ok(())
            }
            "partial" => {
                let bytes = ipc_stream(&numbers(0, 100));
                host::emit("numbers", &bytes[..bytes.len() / 2])?;
                Ok(())
            }
            "trap" => {
                ctx.emit("numbers", &numbers(0, 5))?;
                panic!("connector bug: index out of range");
            }
            "unknown_stream" => {
                host::emit("secret_table", &ipc_stream(&numbers(0, 1)))?;
                Ok(())
            }
            "probe" => {
                let mut paths = Vec::new();
                let mut outcomes = Vec::new();
                for p in &config.paths {
                    let outcome = match std::fs::read(p) {
                        Ok(bytes) => format!("read {} bytes", bytes.len()),
                        Err(e) => format!("denied: {e}"),
                    };
                    paths.push(p.clone());
                    outcomes.push(outcome);
                }
                let batch = RecordBatch::try_new(
                    probe_schema(),
                    vec![
                        Arc::new(StringArray::from(paths)),
                        Arc::new(StringArray::from(outcomes)),
                    ],
                )
                .unwrap();
                ctx.emit("probe", &batch)
            }
            "spin" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(())
            }
            "memory_bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "error" => Err(Error::Source("the source said 503".into())),
            "loud_error" => Err(Error::Source(format!(
                "\u{1b}[2K\r\u{1b}[1Gsync ok: all tables published{}",
                "x".repeat(config.rows.max(0) as usize)
            ))),
            "bad_checkpoint" => {
                let _ignored = host::state_checkpoint("{not json");
                ctx.emit("numbers", &numbers(0, config.rows))
            }
            "log_flood" => {
                for i in 0..config.rows {
                    agnes_connector_sdk::log(
                        agnes_connector_sdk::Level::Info,
                        &format!("line {i}"),
                    );
                }
                ctx.emit("numbers", &numbers(0, 1))
            }
            "stdout_flood" => {
                let line = "z".repeat(10_000);
                for _ in 0..config.rows {
                    println!("{line}");
                }
                ctx.emit("numbers", &numbers(0, 1))
            }
            "widest" => {
                let schema = widest_schema();
                let rows = config.rows.max(0) as usize;
                let mut columns: Vec<arrow_array::ArrayRef> = (0..999)
                    .map(|c| {
                        Arc::new(Int64Array::from_iter_values(
                            (0..rows as i64).map(|r| r * c),
                        )) as arrow_array::ArrayRef
                    })
                    .collect();
                let mut deep: arrow_array::ArrayRef =
                    Arc::new(Int64Array::from_iter_values(0..rows as i64));
                for _ in 0..8 {
                    let item = Arc::new(Field::new("item", deep.data_type().clone(), true));
                    let offsets = arrow_buffer::OffsetBuffer::from_lengths(vec![1; rows]);
                    deep = Arc::new(arrow_array::ListArray::new(item, offsets, deep, None));
                }
                columns.push(deep);
                ctx.emit("wide", &RecordBatch::try_new(schema, columns).unwrap())
            }
            "two_tables" => {
                let mut seed = 0x2545_f491_4f6c_dd1du64;
                let mut from = 0;
                while from < config.rows {
                    let to = (from + config.batch.max(1)).min(config.rows);
                    for table in ["numbers", "numbers_b"] {
                        let labels: Vec<String> = (from..to)
                            .map(|_| {
                                (0..64)
                                    .map(|_| {
                                        seed ^= seed << 13;
                                        seed ^= seed >> 7;
                                        seed ^= seed << 17;
                                        format!("{:016x}", seed)
                                    })
                                    .collect()
                            })
                            .collect();
                        let batch = RecordBatch::try_new(
                            numbers_schema(),
                            vec![
                                Arc::new(Int64Array::from_iter_values(from..to)),
                                Arc::new(StringArray::from(labels)),
                            ],
                        )
                        .unwrap();
                        ctx.emit(table, &batch)?;
                    }
                    from = to;
                }
                Ok(())
            }
            "big_batch" => {
                let label = StringArray::from(vec!["y".repeat(config.rows.max(0) as usize)]);
                let batch = RecordBatch::try_new(
                    numbers_schema(),
                    vec![Arc::new(Int64Array::from(vec![0])), Arc::new(label)],
                )
                .unwrap();
                ctx.emit("numbers", &batch)
            }
            "db" => {
                use std::io::Write;
                let mut steps: Vec<(String, String)> = Vec::new();
                let mut conns = Vec::new();
                for i in 0..config.connections {
                    match agnes_connector_sdk::database::connect(&config.database) {
                        Ok(c) => {
                            steps.push((format!("connect {i}"), "ok".into()));
                            conns.push(c);
                        }
                        Err(e) if config.swallow => {
                            steps.push((format!("connect {i}"), e.to_string()))
                        }
                        Err(e) => return Err(e),
                    }
                }
                if !conns.is_empty() {
                    let mut first = conns.remove(0);
                    if config.copy_data {
                        let outcome = match first.write(b"d\0\0\0\x081\t2\n") {
                            Ok(_) => "sent".to_string(),
                            Err(e) => e.to_string(),
                        };
                        steps.push(("copy_data".into(), outcome));
                    }
                    let mut pg = agnes_connector_sdk::postgres::Client::new(first);
                    for sql in &config.sql {
                        let outcome = match pg.simple_query(sql) {
                            Ok(rows) => format!("ok: {rows:?}"),
                            Err(e) => e.to_string(),
                        };
                        steps.push((sql.clone(), outcome));
                    }
                }
                let (paths, outcomes): (Vec<String>, Vec<String>) = steps.into_iter().unzip();
                let batch = RecordBatch::try_new(
                    probe_schema(),
                    vec![
                        Arc::new(StringArray::from(paths)),
                        Arc::new(StringArray::from(outcomes)),
                    ],
                )
                .unwrap();
                ctx.emit("probe", &batch)
            }
            "http" => {
                let mut req = http::Request::get(config.url.clone());
                for (k, v) in &config.headers {
                    req = req.header(k.clone(), v.clone());
                }
                let (status, body) = match req.send() {
                    Ok(r) => (
                        i64::from(r.status),
                        String::from_utf8_lossy(&r.body).into_owned(),
                    ),
                    Err(e) if config.swallow => (-1, e.to_string()),
                    Err(e) => return Err(e.into()),
                };
                let batch = RecordBatch::try_new(
                    http_schema(),
                    vec![
                        Arc::new(Int64Array::from(vec![status])),
                        Arc::new(StringArray::from(vec![body])),
                    ],
                )
                .unwrap();
                ctx.emit("http", &batch)
            }
            other => Err(Error::Config(format!("unknown mode {other}"))),
        }
    }
}

export_connector!(Hostile);
