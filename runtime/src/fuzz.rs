//! Entry points for fuzzing what the host parses from untrusted hands: the Arrow IPC a
//! guest emits, `connector.toml`, run configs and signature files. Each takes arbitrary
//! bytes and must never panic, hang or allocate without bound; an `Err` is a correct
//! answer. Driven by the `cargo fuzz` targets in `fuzz/` and, over the committed corpora
//! plus random inputs, by the test suite.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::Limits;
use crate::bindings::agnes::connector::host::Host;
use crate::host::RunState;

/// The declared schemas an emit is checked against; the first input byte picks one.
fn schemas() -> &'static [SchemaRef] {
    static S: OnceLock<Vec<SchemaRef>> = OnceLock::new();
    S.get_or_init(|| {
        let item = Arc::new(Field::new("item", DataType::Int64, false));
        vec![
            Arc::new(Schema::new(vec![
                Field::new("n", DataType::Int64, false),
                Field::new("label", DataType::Utf8, true),
            ])),
            Arc::new(Schema::new(vec![Field::new(
                "d",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                false,
            )])),
            Arc::new(Schema::new(vec![
                Field::new("l", DataType::List(item), true),
                Field::new(
                    "s",
                    DataType::Struct(vec![Field::new("x", DataType::Float64, false)].into()),
                    true,
                ),
            ])),
            Arc::new(Schema::new(vec![Field::new(
                "t",
                DataType::Timestamp(arrow_schema::TimeUnit::Second, None),
                true,
            )])),
        ]
    })
}

/// Emits `data` (after its first byte, which picks a schema; split into up to three
/// emits at bytes 1-2) through the host's whole emit path: IPC decoding with validation,
/// schema, nullability and limit checks, parquet encoding.
pub fn emit(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let schema = schemas()[pick as usize % schemas().len()].clone();
    let (cut1, cut2) = match rest {
        [a, b, ..] => (*a as usize, *b as usize),
        _ => (usize::MAX, usize::MAX),
    };
    let body = rest.get(2..).unwrap_or(&[]);
    let (first, tail) = body.split_at(cut1.min(body.len()));
    let (second, third) = tail.split_at(cut2.min(tail.len()));

    let Ok(dir) = tempfile::tempdir() else { return };
    let limits = Limits {
        max_rows: 1_000_000,
        max_batch_mb: 16,
        host_memory_mb: 256,
        ..Limits::default()
    };
    let Ok(mut state) = RunState::reading(dir.path(), limits, 256 << 20, "t", schema) else {
        return;
    };
    for chunk in [first, second, third] {
        match state.emit("t".into(), chunk.to_vec()) {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
    if let Some(sink) = state.sink.take() {
        let _ = sink.finish();
    }
}

/// Parses `connector.toml` text.
pub fn connector_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(m) = crate::manifest::ConnectorManifest::parse(text)
    {
        let _ = m.effective(&crate::Grant::default(), &Limits::default());
    }
}

/// Parses a run config, as TOML and as JSON.
pub fn run_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let base = std::path::Path::new("/nonexistent-base");
        let _ = crate::RunConfig::parse(text, false, base);
        let _ = crate::RunConfig::parse(text, true, base);
    }
}

/// Parses a signature file and verifies it against one trusted key.
pub fn signature(data: &[u8]) {
    static KEYS: OnceLock<Option<(tempfile::TempDir, crate::signature::TrustedKeys)>> =
        OnceLock::new();
    let Some((_, keys)) = KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().ok()?;
        let public = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        std::fs::write(dir.path().join("ops.pub"), public).ok()?;
        let keys = crate::signature::TrustedKeys::from_dir(dir.path()).ok()?;
        Some((dir, keys))
    }) else {
        return;
    };
    if let Ok(sig) = serde_json::from_slice::<crate::signature::SignatureFile>(data) {
        let _ = crate::signature::verify(b"\0asm", b"name = \"x\"", &sig, keys);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_entry_points_take_anything() {
        for input in [&b""[..], b"\x00", b"\x01\x05\x05garbage", &[0xff; 64]] {
            super::emit(input);
            super::connector_toml(input);
            super::run_config(input);
            super::signature(input);
        }
    }
}
