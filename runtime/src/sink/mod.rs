//! Where validated batches go: one parquet file per table, then `extract.duckdb`.

pub mod duckdb;
pub mod parquet;
