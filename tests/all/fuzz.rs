//! Issue 20: the fuzz entry points (`agnes_runtime::fuzz`, `agnes_server::fuzz`, driven by
//! `cargo fuzz` from `fuzz/`) run here over their committed corpora plus mutated inputs,
//! for a fixed time each (`AGNES_FUZZ_SECS`, default 2): no input may panic. This is not
//! coverage-guided (that is `cargo fuzz run <target>`, see docs/development.md), but it
//! keeps every past finding and the parsers' edges in the suite.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 7] = [
    ("ipc_emit", agnes_runtime::fuzz::emit),
    ("connector_toml", agnes_runtime::fuzz::connector_toml),
    ("run_config", agnes_runtime::fuzz::run_config),
    ("signature", agnes_runtime::fuzz::signature),
    ("server_config", agnes_server::fuzz::server_config),
    ("jira_webhook", agnes_server::fuzz::jira_webhook),
    ("range", agnes_server::fuzz::range),
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of a corpus entry: flips, inserts, deletes, truncation, splices, or noise.
fn mutate(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = corpus[rng.below(corpus.len())].clone();
    for _ in 0..=rng.below(4) {
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.remove(i);
            }
            3 => v.truncate(rng.below(v.len() + 1)),
            4 => {
                let other = &corpus[rng.below(corpus.len())];
                let at = rng.below(other.len() + 1);
                let cut = rng.below(v.len() + 1);
                v.truncate(cut);
                v.extend_from_slice(&other[at..]);
            }
            5 if !v.is_empty() => {
                // interesting integers, little-endian, where lengths live
                let i = rng.below(v.len());
                let x: u32 = [0, 1, 0x7fff_ffff, 0xffff_ffff, 0x8000_0000][rng.below(5)];
                for (k, b) in x.to_le_bytes().iter().enumerate() {
                    if let Some(slot) = v.get_mut(i + k) {
                        *slot = *b;
                    }
                }
            }
            _ => {
                let n = rng.below(64);
                v.extend((0..n).map(|_| rng.next() as u8));
            }
        }
    }
    v
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = agnes_tests::repo_root().join("fuzz/corpus").join(target);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    entries.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn issue20_fuzz_entry_points_survive_their_corpora_and_mutations() {
    let secs: u64 = std::env::var("AGNES_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    for (seed, (name, target)) in TARGETS.iter().enumerate() {
        let corpus = corpus(name);
        assert!(!corpus.is_empty(), "{name} has a corpus");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (seed as u64 + 1));
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut runs = 0u64;
        let mut inputs = corpus.clone().into_iter();
        loop {
            let input = match inputs.next() {
                Some(i) => i,
                None if Instant::now() < deadline => mutate(&mut rng, &corpus),
                None => break,
            };
            if std::panic::catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
                let path = std::env::temp_dir().join(format!("agnes-fuzz-crash-{name}"));
                std::fs::write(&path, &input).unwrap();
                panic!("{name} panicked on an input saved at {}", path.display());
            }
            runs += 1;
        }
        println!("fuzz {name}: {runs} inputs");
    }
}
