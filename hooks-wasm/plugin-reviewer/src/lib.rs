//! The first-party reviewer of Claude Code marketplace plugins (`agnes:hook@0.1.0`).
//!
//! It reads the bundle the host exposes and reports, with the rule ids below:
//!
//! | rule | what | severity |
//! |---|---|---|
//! | `hook.pipe-to-shell` | a command downloads and pipes into a shell (`curl … \| sh`) | critical |
//! | `hook.credential-path` | a command touches credentials (`~/.ssh`, `~/.aws`, `.netrc`, …) | critical |
//! | `hook.profile-write` | a command writes shell profiles or Claude settings | high |
//! | `hook.obfuscation` | `base64 -d`, `eval`, `python -c exec(…)` | high |
//! | `hook.network-tool` | a command runs curl, wget, nc, ssh, scp, … | medium |
//! | `hook.http-unknown-host` | an `http` hook posts to a host other than localhost | high |
//! | `mcp.runtime-fetch` | an MCP/LSP server fetches code when it starts (`npx -y`, `uvx`, …) | high |
//! | `mcp.remote-url` | an MCP server is a remote URL | medium |
//! | `secret.private-key` / `secret.token` | a private key or an API token in a file | critical / high |
//! | `text.prompt-injection` | instructions aimed at the agent in SKILL.md, agents, commands | high |
//! | `text.hidden-unicode` | tag characters, bidi controls, zero-width characters in text | high |
//! | `file.native-executable` | an ELF, Mach-O or PE binary | high |
//! | `escalation.*` | a hook, MCP/LSP server or executable the previous version did not have | medium |
//!
//! Verdict: any critical finding denies; any high or medium finding flags; otherwise allow.
//! Scripts a hook runs from the plugin (`${CLAUDE_PLUGIN_ROOT}/…`) get the command rules too.

use std::collections::BTreeSet;

wit_bindgen::generate!({
    world: "reviewer",
    path: "../../wit/hook",
});

use agnes::hook::bundle;
use agnes::hook::types::{FileEntry, FileKind, Finding, Report, Severity, Span, Verdict, Version};

struct Reviewer;
export!(Reviewer);

/// Bytes of one file scanned for content rules.
const SCAN_LIMIT: u64 = 4 << 20;

impl exports::agnes::hook::review::Guest for Reviewer {
    fn review() -> Report {
        let info = bundle::info();
        let current = Bundle::load(Version::Current);
        let mut findings = Vec::new();
        current.review(&mut findings);
        if info.has_previous {
            let previous = Bundle::load(Version::Previous);
            escalation(&previous, &current, &mut findings);
        }
        let verdict = if findings.iter().any(|f| f.severity == Severity::Critical) {
            Verdict::Deny
        } else if findings
            .iter()
            .any(|f| matches!(f.severity, Severity::High | Severity::Medium))
        {
            Verdict::Flag
        } else {
            Verdict::Allow
        };
        Report { verdict, findings }
    }
}

/// One bundle, its files read (up to [`SCAN_LIMIT`] each).
struct Bundle {
    which: Version,
    files: Vec<FileEntry>,
}

/// A command an MCP/LSP server or hook runs, with where it was declared.
struct Command {
    text: String,
    file: String,
    line: u32,
}

impl Bundle {
    fn load(which: Version) -> Bundle {
        Bundle {
            which,
            files: bundle::files(which),
        }
    }

    fn read(&self, path: &str) -> Option<Vec<u8>> {
        let entry = self.files.iter().find(|f| f.path == path)?;
        let want = entry.size.min(SCAN_LIMIT);
        let mut out = Vec::with_capacity(want as usize);
        while (out.len() as u64) < want {
            let chunk = bundle::read(self.which, path, out.len() as u64, 1 << 20).ok()?;
            if chunk.is_empty() {
                break;
            }
            out.extend_from_slice(&chunk);
        }
        Some(out)
    }

    fn text(&self, path: &str) -> Option<String> {
        self.read(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    fn json(&self, path: &str) -> Option<(serde_json::Value, String)> {
        let text = self.text(path)?;
        serde_json::from_str(&text).ok().map(|v| (v, text))
    }

    /// `.claude-plugin/plugin.json`, when present and valid.
    fn manifest(&self) -> Option<(serde_json::Value, String)> {
        self.json(".claude-plugin/plugin.json")
    }

    /// Every hook: `(kind, command-or-url, file, line)` from `hooks/hooks.json` and from
    /// `hooks` in plugin.json (inline or a path).
    fn hooks(&self) -> Vec<(String, Command)> {
        let mut sources: Vec<(serde_json::Value, String, String)> = Vec::new();
        let mut paths = vec!["hooks/hooks.json".to_string()];
        if let Some((m, text)) = self.manifest() {
            match m.get("hooks") {
                Some(serde_json::Value::String(p)) => paths.push(clean(p)),
                Some(v @ serde_json::Value::Object(_)) => {
                    sources.push((v.clone(), ".claude-plugin/plugin.json".into(), text))
                }
                _ => {}
            }
        }
        for p in paths {
            if let Some((v, text)) = self.json(&p) {
                sources.push((v, p, text));
            }
        }
        let mut out = Vec::new();
        for (v, file, text) in sources {
            let events = v.get("hooks").unwrap_or(&v);
            let Some(events) = events.as_object() else {
                continue;
            };
            for groups in events.values() {
                for group in groups.as_array().into_iter().flatten() {
                    for hook in group
                        .get("hooks")
                        .and_then(|h| h.as_array())
                        .into_iter()
                        .flatten()
                    {
                        let kind = hook
                            .get("type")
                            .and_then(|t| t.as_str())
                            .unwrap_or("command");
                        let body = hook
                            .get("command")
                            .or_else(|| hook.get("url"))
                            .and_then(|c| c.as_str())
                            .unwrap_or_default();
                        if body.is_empty() {
                            continue;
                        }
                        out.push((
                            kind.to_string(),
                            Command {
                                text: body.to_string(),
                                line: line_of(&text, body),
                                file: file.clone(),
                            },
                        ));
                    }
                }
            }
        }
        out
    }

    /// Every MCP and LSP server: `(name, definition, file, text)`.
    fn servers(&self) -> Vec<(String, serde_json::Value, String, String)> {
        let mut out = Vec::new();
        let manifest = self.manifest();
        for (key, default_file) in [("mcpServers", ".mcp.json"), ("lspServers", ".lsp.json")] {
            let mut sources = Vec::new();
            if let Some((v, text)) = self.json(default_file) {
                sources.push((v, default_file.to_string(), text));
            }
            if let Some((m, text)) = &manifest {
                match m.get(key) {
                    Some(serde_json::Value::String(p)) => {
                        let p = clean(p);
                        if let Some((v, t)) = self.json(&p) {
                            sources.push((v, p, t));
                        }
                    }
                    Some(v @ serde_json::Value::Object(_)) => sources.push((
                        serde_json::json!({ key: v }),
                        ".claude-plugin/plugin.json".into(),
                        text.clone(),
                    )),
                    _ => {}
                }
            }
            for (v, file, text) in sources {
                let map = v.get(key).unwrap_or(&v);
                for (name, def) in map.as_object().into_iter().flatten() {
                    out.push((name.clone(), def.clone(), file.clone(), text.clone()));
                }
            }
        }
        out
    }

    fn review(&self, findings: &mut Vec<Finding>) {
        // hooks
        for (kind, hook) in self.hooks() {
            if kind == "http" {
                let host = url_host(&hook.text);
                if !matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]") {
                    findings.push(finding(
                        "hook.http-unknown-host",
                        Severity::High,
                        "An http hook sends data to a remote host",
                        &format!("the hook posts Claude Code events to `{}`", hook.text),
                        &hook.file,
                        hook.line,
                    ));
                }
                continue;
            }
            command_rules(&hook, findings);
            for script in plugin_paths(&hook.text) {
                if let Some(text) = self.text(&script) {
                    for (i, line) in text.lines().enumerate() {
                        command_rules(
                            &Command {
                                text: line.to_string(),
                                file: script.clone(),
                                line: i as u32 + 1,
                            },
                            findings,
                        );
                    }
                }
            }
        }
        // MCP and LSP servers
        for (name, def, file, text) in self.servers() {
            let line = line_of(&text, &format!("\"{name}\""));
            if let Some(url) = def.get("url").and_then(|u| u.as_str()) {
                findings.push(finding(
                    "mcp.remote-url",
                    Severity::Medium,
                    "An MCP server is a remote URL",
                    &format!(
                        "server `{name}` connects to `{url}`: what it does can change at any time"
                    ),
                    &file,
                    line,
                ));
            }
            let command = def
                .get("command")
                .and_then(|c| c.as_str())
                .unwrap_or_default();
            let args: Vec<&str> = def
                .get("args")
                .and_then(|a| a.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            let full = std::iter::once(command)
                .chain(args.iter().copied())
                .collect::<Vec<_>>()
                .join(" ");
            if runtime_fetch(command, &args) {
                findings.push(finding(
                    "mcp.runtime-fetch",
                    Severity::High,
                    "A server downloads its code when it starts",
                    &format!("server `{name}` runs `{full}`: the code it runs is fetched at run time, unpinned and unreviewed"),
                    &file,
                    line,
                ));
            }
            if !command.is_empty() {
                command_rules(
                    &Command {
                        text: full,
                        file: file.clone(),
                        line,
                    },
                    findings,
                );
            }
        }
        // every file: secrets, text rules, native executables
        for f in &self.files {
            let Some(bytes) = self.read(&f.path) else {
                continue;
            };
            if let Some(kind) = native_kind(&bytes) {
                findings.push(finding(
                    "file.native-executable",
                    Severity::High,
                    "A native executable",
                    &format!("`{}` is a {kind} binary: it cannot be reviewed", f.path),
                    &f.path,
                    1,
                ));
                continue;
            }
            let text = String::from_utf8_lossy(&bytes);
            secrets(&f.path, &text, findings);
            let lower_path = f.path.to_ascii_lowercase();
            let instructions = lower_path.ends_with(".md")
                && (lower_path.ends_with("skill.md")
                    || lower_path.starts_with("agents/")
                    || lower_path.starts_with("commands/")
                    || lower_path.contains("/agents/")
                    || lower_path.contains("/commands/")
                    || lower_path.starts_with("skills/"));
            if instructions {
                injection(&f.path, &text, findings);
            }
            hidden_unicode(&f.path, &text, findings);
        }
    }
}

fn escalation(previous: &Bundle, current: &Bundle, findings: &mut Vec<Finding>) {
    let hooks = |b: &Bundle| -> BTreeSet<String> {
        b.hooks()
            .into_iter()
            .map(|(k, c)| format!("{k}: {}", c.text))
            .collect()
    };
    let before = hooks(previous);
    for (kind, hook) in current.hooks() {
        let key = format!("{kind}: {}", hook.text);
        if !before.contains(&key) {
            findings.push(finding(
                "escalation.new-hook",
                Severity::Medium,
                "A hook the approved version did not have",
                &format!("new {kind} hook `{}`", hook.text),
                &hook.file,
                hook.line,
            ));
        }
    }
    let servers = |b: &Bundle| -> BTreeSet<String> {
        b.servers()
            .into_iter()
            .map(|(n, d, _, _)| format!("{n}={d}"))
            .collect()
    };
    let before = servers(previous);
    for (name, def, file, text) in current.servers() {
        if !before.contains(&format!("{name}={def}")) {
            findings.push(finding(
                "escalation.new-server",
                Severity::Medium,
                "An MCP/LSP server the approved version did not have (or changed)",
                &format!("server `{name}`: {def}"),
                &file,
                line_of(&text, &format!("\"{name}\"")),
            ));
        }
    }
    let executables = |b: &Bundle| -> BTreeSet<String> {
        b.files
            .iter()
            .filter(|f| f.kind == FileKind::Executable)
            .map(|f| f.path.clone())
            .collect()
    };
    let before = executables(previous);
    for path in executables(current).difference(&before) {
        findings.push(finding(
            "escalation.new-executable",
            Severity::Medium,
            "An executable file the approved version did not have",
            &format!("`{path}` is new and executable"),
            path,
            1,
        ));
    }
}

fn finding(
    rule: &str,
    severity: Severity,
    title: &str,
    detail: &str,
    path: &str,
    line: u32,
) -> Finding {
    Finding {
        rule: rule.into(),
        severity,
        title: title.into(),
        detail: detail.chars().take(2000).collect(),
        spans: vec![Span {
            path: path.into(),
            start: line,
            end: line,
        }],
    }
}

/// The 1-based line of the first occurrence of `needle` (1 when absent).
fn line_of(text: &str, needle: &str) -> u32 {
    let escaped = serde_json::to_string(needle).unwrap_or_default();
    let escaped = escaped.trim_matches('"');
    let at = text.find(needle).or_else(|| text.find(escaped));
    at.map(|i| text[..i].matches('\n').count() as u32 + 1)
        .unwrap_or(1)
}

/// `./x/y` → `x/y`.
fn clean(p: &str) -> String {
    p.trim_start_matches("./").to_string()
}

/// Files of the plugin a command refers to as `${CLAUDE_PLUGIN_ROOT}/…`.
fn plugin_paths(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    for marker in ["${CLAUDE_PLUGIN_ROOT}/", "$CLAUDE_PLUGIN_ROOT/"] {
        let mut rest = command;
        while let Some(i) = rest.find(marker) {
            rest = &rest[i + marker.len()..];
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ';')
                .unwrap_or(rest.len());
            out.push(rest[..end].to_string());
        }
    }
    out
}

fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default();
    }
    host.split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Words of a shell command, split on whitespace and shell operators.
fn words(command: &str) -> Vec<String> {
    command
        .split(|c: char| c.is_whitespace() || "|;&()`<>\"'".contains(c))
        .filter(|w| !w.is_empty())
        .map(|w| w.rsplit('/').next().unwrap_or(w).to_ascii_lowercase())
        .collect()
}

fn command_rules(cmd: &Command, findings: &mut Vec<Finding>) {
    let lower = cmd.text.to_ascii_lowercase();
    let compact: String = lower.chars().filter(|c| !c.is_whitespace()).collect();
    let words = words(&lower);
    let has = |w: &str| words.iter().any(|x| x == w);
    let shells = [
        "sh", "bash", "zsh", "dash", "ksh", "fish", "python", "python3", "perl", "ruby", "node",
    ];
    let piped_shell = shells.iter().any(|s| {
        compact.contains(&format!("|{s}")) && {
            // `| sh`, `| sh -s`, `| sudo bash`, but not `| shasum`
            let needle = format!("|{s}");
            compact.match_indices(&needle).any(|(i, _)| {
                compact[i + needle.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| !c.is_ascii_alphanumeric())
            })
        }
    }) || compact.contains("|sudosh")
        || compact.contains("|sudobash")
        || lower.contains("sh -c \"$(curl")
        || lower.contains("bash -c \"$(curl")
        || lower.contains("<(curl")
        || lower.contains("<(wget");
    if piped_shell {
        findings.push(finding(
            "hook.pipe-to-shell",
            Severity::Critical,
            "Downloads code and runs it",
            &format!("`{}` pipes into an interpreter", cmd.text),
            &cmd.file,
            cmd.line,
        ));
    }
    const CREDENTIALS: &[&str] = &[
        "~/.ssh",
        "$home/.ssh",
        ".ssh/id_",
        "id_rsa",
        "id_ed25519",
        "~/.aws",
        "$home/.aws",
        ".aws/credentials",
        ".netrc",
        ".git-credentials",
        ".gnupg",
        ".config/gcloud",
        ".kube/config",
        ".docker/config.json",
        ".npmrc",
        ".pypirc",
        "keychain",
        "/etc/shadow",
        ".claude/.credentials",
        "security find-generic-password",
    ];
    if let Some(hit) = CREDENTIALS.iter().find(|c| lower.contains(*c)) {
        findings.push(finding(
            "hook.credential-path",
            Severity::Critical,
            "Touches credentials",
            &format!("`{}` refers to `{hit}`", cmd.text),
            &cmd.file,
            cmd.line,
        ));
    }
    const PROFILES: &[&str] = &[
        ".bashrc",
        ".bash_profile",
        ".zshrc",
        ".zprofile",
        ".profile",
        ".config/fish",
        ".claude/settings",
        "claude_desktop_config",
        "crontab",
        ".config/autostart",
        "launchagents",
    ];
    let writes = lower.contains('>')
        || has("tee")
        || has("sed")
        || has("cp")
        || has("mv")
        || has("crontab")
        || lower.contains("writefile");
    if writes && let Some(hit) = PROFILES.iter().find(|p| lower.contains(*p)) {
        findings.push(finding(
            "hook.profile-write",
            Severity::High,
            "Writes a shell profile or Claude settings",
            &format!(
                "`{}` writes `{hit}`: it would persist beyond the plugin",
                cmd.text
            ),
            &cmd.file,
            cmd.line,
        ));
    }
    let obfuscated = (has("base64") && (lower.contains(" -d") || lower.contains("--decode")))
        || has("eval")
        || lower.contains("exec(")
        || lower.contains("frombase64string")
        || lower.contains("xxd -r")
        || lower.contains("\\x")
        || (lower.contains("python") && lower.contains(" -c") && lower.contains("import"));
    if obfuscated {
        findings.push(finding(
            "hook.obfuscation",
            Severity::High,
            "Decodes or evaluates hidden code",
            &format!("`{}` evaluates or decodes code", cmd.text),
            &cmd.file,
            cmd.line,
        ));
    }
    const NETWORK: &[&str] = &[
        "curl",
        "wget",
        "nc",
        "ncat",
        "netcat",
        "socat",
        "ssh",
        "scp",
        "sftp",
        "rsync",
        "telnet",
        "ftp",
        "tftp",
        "invoke-webrequest",
        "iwr",
    ];
    if let Some(tool) = NETWORK.iter().find(|t| has(t)) {
        findings.push(finding(
            "hook.network-tool",
            Severity::Medium,
            "Uses the network",
            &format!("`{}` runs `{tool}`", cmd.text),
            &cmd.file,
            cmd.line,
        ));
    }
}

fn runtime_fetch(command: &str, args: &[&str]) -> bool {
    let base = command
        .rsplit('/')
        .next()
        .unwrap_or(command)
        .to_ascii_lowercase();
    let has_arg = |a: &str| args.iter().any(|x| x.eq_ignore_ascii_case(a));
    match base.as_str() {
        "npx" | "pnpx" => true,
        "bunx" | "uvx" | "pipx" => true,
        "npm" | "pnpm" | "yarn" => has_arg("exec") || has_arg("dlx") || has_arg("x"),
        "uv" => {
            has_arg("run")
                && args
                    .iter()
                    .any(|a| a.starts_with("--with") || a.contains("://"))
        }
        "docker" | "podman" => has_arg("run"),
        "deno" => args.iter().any(|a| a.contains("://")),
        "sh" | "bash" | "zsh" => {
            let all = args.join(" ").to_ascii_lowercase();
            all.contains("curl") || all.contains("wget")
        }
        "go" => has_arg("run") && args.iter().any(|a| a.contains('@')),
        _ => false,
    }
}

fn native_kind(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x7fELF") {
        Some("ELF")
    } else if bytes.starts_with(&[0xfe, 0xed, 0xfa, 0xce])
        || bytes.starts_with(&[0xfe, 0xed, 0xfa, 0xcf])
        || bytes.starts_with(&[0xce, 0xfa, 0xed, 0xfe])
        || bytes.starts_with(&[0xcf, 0xfa, 0xed, 0xfe])
        || bytes.starts_with(&[0xca, 0xfe, 0xba, 0xbe])
    {
        Some("Mach-O")
    } else if bytes.starts_with(b"MZ") && bytes.len() > 0x40 {
        Some("PE (Windows)")
    } else if bytes.starts_with(b"\0asm") {
        Some("WebAssembly")
    } else {
        None
    }
}

fn secrets(path: &str, text: &str, findings: &mut Vec<Finding>) {
    for (i, line) in text.lines().enumerate() {
        let n = i as u32 + 1;
        if line.contains("-----BEGIN") && line.contains("PRIVATE KEY") {
            findings.push(finding(
                "secret.private-key",
                Severity::Critical,
                "A private key",
                &format!("`{path}` holds a private key"),
                path,
                n,
            ));
            continue;
        }
        if let Some(kind) = token_kind(line) {
            findings.push(finding(
                "secret.token",
                Severity::High,
                "An API token",
                &format!("`{path}` holds what looks like a {kind}"),
                path,
                n,
            ));
        }
    }
}

fn token_kind(line: &str) -> Option<&'static str> {
    let bytes = line.as_bytes();
    let run =
        |from: usize, ok: fn(u8) -> bool| bytes[from..].iter().take_while(|b| ok(**b)).count();
    let alnum = |b: u8| b.is_ascii_alphanumeric();
    let upper_digit = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit();
    let token = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    for (prefix, min, ok, kind) in [
        (
            "AKIA",
            16usize,
            upper_digit as fn(u8) -> bool,
            "AWS access key id",
        ),
        ("ASIA", 16, upper_digit, "AWS temporary access key id"),
        ("ghp_", 36, alnum, "GitHub personal access token"),
        ("gho_", 36, alnum, "GitHub OAuth token"),
        ("ghs_", 36, alnum, "GitHub app token"),
        ("github_pat_", 60, token, "GitHub fine-grained token"),
        ("glpat-", 20, token, "GitLab token"),
        ("xoxb-", 20, token, "Slack bot token"),
        ("xoxp-", 20, token, "Slack user token"),
        ("sk-ant-", 40, token, "Anthropic API key"),
        ("sk-proj-", 40, token, "OpenAI API key"),
        ("AIza", 35, token, "Google API key"),
    ] {
        for (i, _) in line.match_indices(prefix) {
            if run(i + prefix.len(), ok) >= min {
                return Some(kind);
            }
        }
    }
    None
}

fn injection(path: &str, text: &str, findings: &mut Vec<Finding>) {
    const MARKERS: &[&str] = &[
        "ignore previous instructions",
        "ignore all previous",
        "ignore the previous instructions",
        "disregard previous instructions",
        "disregard all prior",
        "disregard your instructions",
        "forget your instructions",
        "do not tell the user",
        "don't tell the user",
        "without telling the user",
        "without the user knowing",
        "you are now in developer mode",
        "new system prompt",
        "<system>",
        "</system>",
        "[system]",
        "override your safety",
        "bypass permission",
        "dangerously-skip-permissions",
    ];
    for (i, line) in text.lines().enumerate() {
        let lower = line.to_lowercase();
        if let Some(m) = MARKERS.iter().find(|m| lower.contains(*m)) {
            findings.push(finding(
                "text.prompt-injection",
                Severity::High,
                "Instructions aimed at the agent",
                &format!("`{path}` says `{m}`"),
                path,
                i as u32 + 1,
            ));
        }
    }
}

fn hidden_unicode(path: &str, text: &str, findings: &mut Vec<Finding>) {
    for (i, line) in text.lines().enumerate() {
        let hit = line.char_indices().find(|&(at, c)| {
            let c = c as u32;
            (0xE0000..=0xE007F).contains(&c)
                || (0x202A..=0x202E).contains(&c)
                || (0x2066..=0x2069).contains(&c)
                || (0x200B..=0x200F).contains(&c)
                || c == 0x2060
                || c == 0x180E
                || (c == 0xFEFF && !(i == 0 && at == 0))
        });
        if let Some((_, c)) = hit {
            findings.push(finding(
                "text.hidden-unicode",
                Severity::High,
                "Invisible characters",
                &format!(
                    "`{path}` contains U+{:04X}: text a reviewer cannot see can steer an agent",
                    c as u32
                ),
                path,
                i as u32 + 1,
            ));
        }
    }
}
