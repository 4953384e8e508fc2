//! A reviewer that misbehaves on purpose, chosen by the reviewed plugin's name:
//!
//! - `spin`: loops forever.
//! - `bomb`: allocates until it cannot.
//! - `trap`: panics.
//! - `garbage`: answers with more findings than the host accepts.
//! - `long`: answers with a finding whose detail is 1 MB.
//! - `deny`: denies; `flag`: flags; anything else: allows, with one info finding that
//!   names every file it saw (so tests can see what the host exposed).

wit_bindgen::generate!({
    world: "reviewer",
    path: "../../../wit/hook",
});

use agnes::hook::bundle;
use agnes::hook::types::{Finding, Report, Severity, Span, Verdict, Version};

struct Reviewer;
export!(Reviewer);

fn finding(detail: String) -> Finding {
    Finding {
        rule: "fixture.note".into(),
        severity: Severity::Info,
        title: "note".into(),
        detail,
        spans: vec![Span {
            path: "x".into(),
            start: 1,
            end: 1,
        }],
    }
}

impl exports::agnes::hook::review::Guest for Reviewer {
    fn review() -> Report {
        let info = bundle::info();
        match info.name.as_str() {
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("the reviewer gave up"),
            "garbage" => Report {
                verdict: Verdict::Allow,
                findings: (0..100_000).map(|i| finding(i.to_string())).collect(),
            },
            "long" => Report {
                verdict: Verdict::Allow,
                findings: vec![finding("x".repeat(1 << 20))],
            },
            other => {
                let files: Vec<String> = bundle::files(Version::Current)
                    .into_iter()
                    .map(|f| f.path)
                    .collect();
                let previous = bundle::files(Version::Previous).len();
                let escape = bundle::read(Version::Current, "../../etc/passwd", 0, 100).is_err();
                Report {
                    verdict: match other {
                        "deny" => Verdict::Deny,
                        "flag" => Verdict::Flag,
                        _ => Verdict::Allow,
                    },
                    findings: vec![finding(format!(
                        "files={} previous={previous} escape_refused={escape}",
                        files.join(",")
                    ))],
                }
            }
        }
    }
}
