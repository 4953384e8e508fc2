//! # synth connector
//!
//! The benchmark's connector: one table `synth` of `rows` generated rows in batches of
//! `batch_rows`, no files, no network. The rows come from [`rows`], which the benchmark
//! also compiles natively (see `tests/examples/bench.rs`).

pub mod rows;

use agnes_connector_sdk::{Connector, Error, ReadContext, Spec, Table};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub rows: u64,
    #[serde(default = "default_batch")]
    pub batch_rows: usize,
}

fn default_batch() -> usize {
    65_536
}

pub struct Synth;

impl Connector for Synth {
    type Config = Config;

    fn spec() -> Spec {
        Spec::new("synth", env!("CARGO_PKG_VERSION"))
    }

    fn discover(config: &Config) -> Result<Vec<Table>, Error> {
        if config.batch_rows == 0 {
            return Err(Error::Config("batch_rows must be at least 1".into()));
        }
        Ok(vec![
            Table::new("synth", rows::schema()).description("synthetic rows"),
        ])
    }

    fn read(config: &Config, ctx: &mut ReadContext) -> Result<(), Error> {
        let schema = rows::schema();
        let mut start = 0u64;
        while start < config.rows {
            let len = (config.rows - start).min(config.batch_rows as u64) as usize;
            ctx.emit("synth", &rows::batch(&schema, start as i64, len))?;
            start += len as u64;
        }
        Ok(())
    }
}

agnes_connector_sdk::export_connector!(Synth);

#[cfg(test)]
mod tests {
    use super::*;
    use agnes_connector_sdk::arrow_array::{Array, StringArray};

    #[test]
    fn rows_are_what_the_schema_says() {
        let b = rows::batch(&rows::schema(), 41, 3);
        assert_eq!(b.num_rows(), 3);
        let labels = b.column(2).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(labels.value(1), "label-00000000000042");
        assert_eq!(labels.value(1).len(), 20);
        assert_eq!(b.column(0).null_count(), 0);
    }
}
