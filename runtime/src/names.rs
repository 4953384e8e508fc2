//! Names that become file names, view names and manifest keys.
//!
//! A table or source name must be a safe identifier: `[a-z][a-z0-9_]{0,62}`. Lower case
//! only, so that DuckDB's case-insensitive view names cannot collide; no leading `_`, so
//! that `_meta` and other reserved tables can never be shadowed.

use crate::Error;

const MAX_NAME: usize = 63;
const MAX_COLUMN: usize = 255;

/// The longest guest text kept in a name shown in an error.
const SHOWN: usize = 128;

/// A guest-supplied name as it may appear in an error or a log line: control and escape
/// characters shown escaped (`\u{1b}`), cut after 128 characters with its full length
/// noted, so a hostile name can neither flood a terminal nor rewrite it.
pub fn shown(name: &str) -> String {
    text(name, SHOWN, false)
}

/// Guest text (an error message, a log line) made safe to print: control characters other
/// than newline and tab escaped, cut after `max` bytes with the full length noted.
pub fn sanitized(message: &str, max: usize) -> String {
    text(message, max, true)
}

fn text(s: &str, max: usize, keep_lines: bool) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 16);
    for (i, c) in s.char_indices() {
        if out.len() >= max {
            out.push_str(&format!("… ({} bytes in all)", s.len()));
            let _ = i;
            break;
        }
        if c.is_control() && !(keep_lines && (c == '\n' || c == '\t')) {
            out.extend(c.escape_default());
        } else if matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            // zero-width and bidirectional overrides can disguise what a terminal shows
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Checks a table or source name. `kind` is "table" or "source" (used in the error).
pub fn validate_name(kind: &'static str, name: &str) -> Result<(), Error> {
    let fail = |reason: &str| Error::UnsafeName {
        kind,
        name: shown(name),
        reason: reason.to_string(),
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return Err(fail("it is empty")),
        Some(c) if !c.is_ascii_lowercase() => {
            return Err(fail(
                "it must start with a lower-case ASCII letter ([a-z][a-z0-9_]*)",
            ));
        }
        Some(_) => {}
    }
    if name.len() > MAX_NAME {
        return Err(fail(&format!("it is longer than {MAX_NAME} characters")));
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')) {
        return Err(fail(&format!(
            "it contains {c:?}; only [a-z0-9_] are allowed"
        )));
    }
    Ok(())
}

/// Checks a column name: non-empty, at most 255 bytes, no control characters.
pub fn validate_column(table: &str, name: &str) -> Result<(), Error> {
    let fail = |reason: &str| Error::UnsafeName {
        kind: "column",
        name: shown(&format!("{table}.{name}")),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(fail("it is empty; give the column a name"));
    }
    if name.len() > MAX_COLUMN {
        return Err(fail(&format!("it is longer than {MAX_COLUMN} bytes")));
    }
    if name.chars().any(char::is_control) {
        return Err(fail("it contains a control character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_text_is_bounded_and_escaped() {
        let long = "x".repeat(50 << 20);
        let s = shown(&long);
        assert!(
            s.len() < 200 && s.ends_with("(52428800 bytes in all)"),
            "{s}"
        );
        assert_eq!(shown("a\u{1b}[2Kb\r"), "a\\u{1b}[2Kb\\r");
        assert_eq!(
            sanitized("line 1\nline 2\u{7}", 100),
            "line 1\nline 2\\u{7}"
        );
        assert_eq!(shown("ok\u{202e}cod.exe"), "ok\\u{202e}cod.exe");
    }

    #[test]
    fn accepts_safe_identifiers() {
        for ok in ["a", "orders", "order_items_2024", &"a".repeat(63)] {
            validate_name("table", ok).unwrap();
        }
    }

    #[test]
    fn rejects_unsafe_identifiers_with_reason() {
        for (bad, why) in [
            ("", "empty"),
            ("_meta", "start with"),
            ("1st", "start with"),
            ("Orders", "start with"),
            ("bad;name", "';'"),
            ("a b", "' '"),
            ("../etc", "start with"),
            ("a/b", "'/'"),
            ("ünï", "start with"),
        ] {
            let err = validate_name("table", bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        let long = "a".repeat(64);
        assert!(
            validate_name("table", &long)
                .unwrap_err()
                .to_string()
                .contains("longer")
        );
    }

    #[test]
    fn column_names() {
        validate_column("t", "Order Date (UTC)").unwrap();
        assert!(validate_column("t", "").is_err());
        assert!(validate_column("t", "a\nb").is_err());
        assert!(validate_column("t", &"x".repeat(256)).is_err());
    }
}
