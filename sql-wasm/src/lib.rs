//! `agnes-sql`: the admin's SQL over Agnes tables, run by Apache DataFusion inside a
//! WebAssembly component — the host's runtime executes it like any connector, under the
//! same limits (linear memory, CPU budget, wall time, output), with exactly one capability:
//! the directory `/tables`, preopened read-only, holding the parquet files of the tables
//! the SQL names (`/tables/<name>.parquet`). No network, no other file, no environment.
//!
//! It answers `query` with admin SQL (`request.sql`): each file becomes a table of that
//! name, read when the SQL scans it and only for the columns it uses; the SQL runs on one
//! thread, and the result goes to the host through `emit` as Arrow IPC, where it is
//! validated and written like any connector's output.

use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

use agnes_connector_sdk::{Connector, Error, QueryRequest, ReadContext, Spec, Table};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, project_schema};
use datafusion::datasource::MemTable;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::reader::{ChunkReader, Length};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

/// Where the host preopens the input files.
const TABLES: &str = "/tables";

struct Sql;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

impl Connector for Sql {
    type Config = Config;

    fn spec() -> Spec {
        Spec::new("sql", env!("CARGO_PKG_VERSION")).supports_query()
    }

    fn check(_config: &Config) -> Result<(), Error> {
        Ok(())
    }

    fn discover(_config: &Config) -> Result<Vec<Table>, Error> {
        Ok(Vec::new()) // its tables are whatever the admin's SQL makes
    }

    fn read(_config: &Config, _ctx: &mut ReadContext) -> Result<(), Error> {
        Ok(())
    }

    fn query(
        _config: &Config,
        request: &QueryRequest,
        ctx: &mut ReadContext,
    ) -> Result<u64, Error> {
        let Some(sql) = &request.sql else {
            return Err(Error::Unsupported(
                "the sql component runs admin SQL only, not structured requests".into(),
            ));
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| Error::Internal(format!("starting the executor: {e}")))?;
        let (schema, batches) = runtime.block_on(run(sql))?;
        emit(&request.table, schema, &batches, ctx)
    }
}

agnes_connector_sdk::export_connector!(Sql);

fn failed(e: impl std::fmt::Display) -> Error {
    Error::Source(e.to_string())
}

/// Registers every `/tables/<name>.parquet` and runs `sql` on one partition.
async fn run(sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), Error> {
    // big batches: fewer, larger emits to the host (each is decoded and validated there)
    let config = SessionConfig::new()
        .with_target_partitions(1)
        .with_batch_size(64 * 1024)
        .with_information_schema(false);
    let ctx = SessionContext::new_with_config(config);
    let entries =
        std::fs::read_dir(TABLES).map_err(|e| failed(format!("listing {TABLES}: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(failed)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(table) = name.strip_suffix(".parquet") else {
            continue;
        };
        let file =
            ParquetFile::open(entry.path()).map_err(|e| failed(format!("reading {name}: {e}")))?;
        ctx.register_table(table, Arc::new(file)).map_err(failed)?;
    }
    // a query, nothing else: no CREATE EXTERNAL TABLE, COPY, INSERT, SET
    let only_queries = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx
        .sql_with_options(sql, only_queries)
        .await
        .map_err(failed)?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    Ok((schema, frame.collect().await.map_err(failed)?))
}

/// The result as IPC stream messages, in emits of about 8 MiB the host takes whole; an
/// empty result is its schema and an empty batch.
fn emit(
    table: &str,
    schema: SchemaRef,
    batches: &[RecordBatch],
    ctx: &mut ReadContext,
) -> Result<u64, Error> {
    let mut writer = StreamWriter::try_new(Vec::new(), &schema).map_err(failed)?;
    let (mut rows, mut pending) = (0u64, 0u64);
    let mut wrote = false;
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        writer.write(batch).map_err(failed)?;
        wrote = true;
        pending += batch.num_rows() as u64;
        if writer.get_ref().len() >= 8 << 20 {
            let bytes = std::mem::take(writer.get_mut());
            ctx.emit_ipc(table, &bytes, pending)?;
            rows += pending;
            pending = 0;
        }
    }
    if !wrote {
        writer
            .write(&RecordBatch::new_empty(schema))
            .map_err(failed)?;
    }
    if !writer.get_ref().is_empty() {
        let bytes = std::mem::take(writer.get_mut());
        ctx.emit_ipc(table, &bytes, pending)?;
        rows += pending;
    }
    Ok(rows)
}

/// A table of `/tables`: its schema from the file's footer at registration; its rows read
/// when a query scans it, only the columns the query uses.
#[derive(Debug)]
struct ParquetFile {
    path: std::path::PathBuf,
    schema: SchemaRef,
}

impl ParquetFile {
    fn open(path: std::path::PathBuf) -> Result<ParquetFile, String> {
        let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(
            Positioned::new(file).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        Ok(ParquetFile {
            schema: builder.schema().clone(),
            path,
        })
    }

    /// Every row of the columns `projection` names (all without one).
    fn read(&self, projection: Option<&Vec<usize>>) -> Result<Vec<RecordBatch>, String> {
        let file = std::fs::File::open(&self.path).map_err(|e| e.to_string())?;
        let mut builder = ParquetRecordBatchReaderBuilder::try_new(
            Positioned::new(file).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?
        .with_batch_size(64 * 1024);
        if let Some(columns) = projection {
            let mask = ProjectionMask::roots(builder.parquet_schema(), columns.iter().copied());
            builder = builder.with_projection(mask);
        }
        let reader = builder.build().map_err(|e| e.to_string())?;
        reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    }
}

#[async_trait::async_trait]
impl TableProvider for ParquetFile {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let batches = self.read(projection).map_err(DataFusionError::Execution)?;
        let schema = project_schema(&self.schema, projection)?;
        MemTable::try_new(schema, vec![batches])?
            .scan(state, None, filters, limit)
            .await
    }
}

/// A parquet file read by seeks and reads: `std::fs::File`'s own reader needs
/// `try_clone`, which WASI does not have.
struct Positioned {
    file: Arc<Mutex<std::fs::File>>,
    len: u64,
}

impl Positioned {
    fn new(file: std::fs::File) -> std::io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Positioned {
            file: Arc::new(Mutex::new(file)),
            len,
        })
    }
}

impl Length for Positioned {
    fn len(&self) -> u64 {
        self.len
    }
}

/// A reader from an offset of a [`Positioned`] file.
struct At {
    file: Arc<Mutex<std::fs::File>>,
    offset: u64,
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.seek(SeekFrom::Start(self.offset))?;
        let n = file.read(buf)?;
        self.offset += n as u64;
        Ok(n)
    }
}

impl ChunkReader for Positioned {
    type T = At;

    fn get_read(&self, start: u64) -> Result<At, ParquetError> {
        Ok(At {
            file: self.file.clone(),
            offset: start,
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<bytes::Bytes, ParquetError> {
        let mut buf = vec![0u8; length];
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(buf.into())
    }
}
