//! `agnes push`: uploads this workspace's Claude Code session transcripts (the `*.jsonl`
//! files Claude Code keeps for it under `$CLAUDE_CONFIG_DIR/projects` or
//! `~/.claude/projects`, in the folder named after the workspace path with every
//! non-alphanumeric character as `-`) and `.claude/CLAUDE.local.md`. Each transcript is
//! gzip-compressed; what was uploaded is recorded in `.agnes/pushed.json` by content hash,
//! so pushing again uploads only new or grown transcripts. Agnes tokens in the text are
//! replaced by `agnes_[REDACTED]` before anything leaves the machine. Runs from the
//! SessionEnd hook `agnes init` installs.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::client::ServerArgs;
use crate::output::{Output, bytes};
use crate::workspace::Workspace;

#[derive(Debug, Args)]
pub struct PushArgs {
    /// List what would be uploaded; upload nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long)]
    workspace: Option<PathBuf>,
}

/// The folder Claude Code keeps this workspace's sessions in.
pub fn session_dir(root: &Path) -> Option<PathBuf> {
    let projects = match std::env::var_os("CLAUDE_CONFIG_DIR") {
        Some(dir) => PathBuf::from(dir).join("projects"),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".claude/projects"),
    };
    let path = root.to_string_lossy();
    let path = path.trim_end_matches('/');
    let encoded: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    Some(projects.join(encoded))
}

/// Replaces Agnes tokens (`agnes_<8 hex>_<40 hex>`) with `agnes_[REDACTED]`.
fn redact(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    let hex = |b: &[u8]| b.iter().all(u8::is_ascii_hexdigit);
    while i < text.len() {
        if text[i..].starts_with(b"agnes_")
            && text.len() >= i + 55
            && hex(&text[i + 6..i + 14])
            && text[i + 14] == b'_'
            && hex(&text[i + 15..i + 55])
        {
            out.extend_from_slice(b"agnes_[REDACTED]");
            i += 55;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn run(args: PushArgs, out: &Output) -> Result<()> {
    let ws = Workspace::find(args.workspace.as_deref())?;
    let ledger_path = ws.root.join(".agnes/pushed.json");
    let mut ledger: BTreeMap<String, String> = std::fs::read_to_string(&ledger_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let mut todo: Vec<(String, Vec<u8>)> = Vec::new();
    let mut unchanged = 0usize;
    if let Some(dir) = session_dir(&ws.root)
        && let Ok(entries) = std::fs::read_dir(&dir)
    {
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        files.sort();
        for path in files {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let content = redact(
                &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
            );
            if ledger.get(&name) == Some(&sha256(&content)) {
                unchanged += 1;
            } else {
                todo.push((name, content));
            }
        }
    }
    let local_md = ws.root.join(".claude/CLAUDE.local.md");
    let local = std::fs::read(&local_md).ok().map(|c| redact(&c));
    let local_changed = local
        .as_ref()
        .is_some_and(|c| ledger.get("CLAUDE.local.md") != Some(&sha256(c)));
    let planned: Vec<Value> = todo
        .iter()
        .map(|(n, c)| json!({"file": n, "size": c.len()}))
        .collect();
    if args.dry_run {
        out.print(
            || {
                let mut lines: Vec<String> = todo.iter().map(|(n, c)| format!("would upload {n} ({})", bytes(c.len() as u64))).collect();
                if local_changed {
                    lines.push("would upload .claude/CLAUDE.local.md".into());
                }
                lines.push(format!("{unchanged} unchanged"));
                lines.join("\n")
            },
            || json!({"dry_run": true, "sessions": planned, "local_md": local_changed, "unchanged": unchanged}),
        );
        return Ok(());
    }
    if todo.is_empty() && !local_changed {
        out.print(
            || format!("nothing to push ({unchanged} unchanged)"),
            || json!({"uploaded": [], "unchanged": unchanged, "local_md": false}),
        );
        return Ok(());
    }
    let client = args.server.client()?;
    let mut uploaded = Vec::new();
    for (name, content) in &todo {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(content)?;
        let gz = gz.finish()?;
        client.upload("/api/upload/sessions", &format!("{name}.gz"), &gz)?;
        ledger.insert(name.clone(), sha256(content));
        uploaded.push(name.clone());
        // record each success at once: an interrupted push never re-uploads it
        save(&ledger_path, &ledger)?;
    }
    if let (true, Some(content)) = (local_changed, &local) {
        let text = String::from_utf8_lossy(content).into_owned();
        client.post::<Value>("/api/upload/local-md", &json!({ "content": text }))?;
        ledger.insert("CLAUDE.local.md".into(), sha256(content));
        save(&ledger_path, &ledger)?;
    }
    out.print(
        || {
            format!(
                "pushed {} session(s){}; {unchanged} unchanged",
                uploaded.len(),
                if local_changed {
                    " and CLAUDE.local.md"
                } else {
                    ""
                }
            )
        },
        || json!({"uploaded": uploaded, "unchanged": unchanged, "local_md": local_changed}),
    );
    Ok(())
}

fn save(path: &Path, ledger: &BTreeMap<String, String>) -> Result<()> {
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(ledger)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_redacted_and_paths_encoded() {
        let token = format!(
            "agnes_{}_{}",
            "ab12cd34", "0123456789abcdef0123456789abcdef01234567"
        );
        let text = format!("{{\"cmd\": \"agnes init --token {token}\"}} agnes_short");
        let out = String::from_utf8(super::redact(text.as_bytes())).unwrap();
        assert_eq!(
            out,
            "{\"cmd\": \"agnes init --token agnes_[REDACTED]\"} agnes_short"
        );
        let dir = super::session_dir(std::path::Path::new("/home/ana/my.work/")).unwrap();
        assert!(
            dir.ends_with("projects/-home-ana-my-work"),
            "{}",
            dir.display()
        );
    }
}
