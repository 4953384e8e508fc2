//! Entry points for fuzzing what the server parses from untrusted hands: its config file,
//! Jira webhook payloads (after the signature check, and the check itself), and HTTP
//! `Range` headers. Each takes arbitrary bytes and must never panic; an `Err` is a correct
//! answer. Driven by the `cargo fuzz` targets in `fuzz/` and by the test suite.

/// Parses a server config file.
pub fn server_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::ServerConfig::from_toml(text);
    }
}

/// Checks a signature header against the body, then parses the body as an issue event.
pub fn jira_webhook(data: &[u8]) {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (header, body) = data.split_at(split);
    let header = std::str::from_utf8(header).ok();
    let _ = crate::routes::webhooks::signature_ok(b"fuzz-secret", body, header);
    let _ = crate::routes::webhooks::parse_event(body);
}

/// Parses a `Range` header against files of a few sizes.
pub fn range(data: &[u8]) {
    if let Ok(header) = std::str::from_utf8(data) {
        for size in [0, 1, 1000, u64::MAX] {
            if let Ok(Some((start, end))) = crate::routes::data::parse_range(Some(header), size) {
                assert!(
                    start <= end && end < size,
                    "{header:?} gave {start}..={end} of {size}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_entry_points_take_anything() {
        for input in [
            &b""[..],
            b"bytes=0-",
            b"bytes=5-1",
            b"sha256=00\n{}",
            &[0xff; 64],
        ] {
            super::server_config(input);
            super::jira_webhook(input);
            super::range(input);
        }
    }
}
