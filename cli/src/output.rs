//! How commands print: human text, `--json`, or nothing with `--quiet`.

use std::io::IsTerminal;

pub struct Output {
    pub json: bool,
    pub quiet: bool,
}

impl Output {
    /// Whether to draw progress bars (a terminal, and neither --json nor --quiet).
    pub fn progress(&self) -> bool {
        !self.json && !self.quiet && std::io::stderr().is_terminal()
    }

    /// Prints `human` or `json` according to the flags.
    pub fn print(&self, human: impl FnOnce() -> String, json: impl FnOnce() -> serde_json::Value) {
        if self.quiet {
            return;
        }
        let text = if self.json {
            json().to_string()
        } else {
            human()
        };
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = writeln!(stdout, "{text}").and_then(|_| stdout.flush()) {
            exit_on_closed_stdout(&e);
            eprintln!("error: writing to stdout: {e}");
            std::process::exit(1);
        }
    }
}

/// Stdout closed by its reader (`agnes ... | head`): stop quietly and successfully, as
/// Unix tools do, instead of panicking on the next print.
pub fn exit_on_closed_stdout(e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
}

/// `1234567` → `1.2 MiB` (binary units, as the original Agnes client prints them).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `1234567` → `1,234,567`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats() {
        assert_eq!(super::bytes(999), "999 B");
        assert_eq!(super::bytes(1_234_567), "1.2 MiB");
        assert_eq!(super::bytes(1 << 30), "1.0 GiB");
        assert_eq!(super::count(1_234_567), "1,234,567");
        assert_eq!(super::count(12), "12");
    }
}
