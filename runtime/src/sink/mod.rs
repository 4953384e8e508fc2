//! Where validated batches go: one parquet file per table, then `extract.duckdb`.

pub mod duckdb;
pub(crate) mod merge;
pub mod parquet;
pub(crate) mod pipeline;
