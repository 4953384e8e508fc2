//! A local git repository standing in for an upstream plugin marketplace: tests and the
//! marketplace benchmark write plugins into it, commit, and register its `file://` URL.

use std::path::Path;
use std::process::Command;

use agnes_runtime::hook::ReviewLimits;
use serde_json::{Value, json};

use crate::TestServer;

/// A git repository the tests write plugins into and commit.
pub struct Upstream {
    pub dir: tempfile::TempDir,
}

impl Default for Upstream {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstream {
    pub fn new() -> Upstream {
        let dir = tempfile::tempdir().unwrap();
        let u = Upstream { dir };
        u.git(&["init", "-q", "--initial-branch=main"]);
        u
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=Upstream",
                "-c",
                "user.email=up@example.com",
            ])
            .args(args)
            .current_dir(self.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn write(&self, path: &str, contents: &str) -> &Self {
        let p = self.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
        self
    }

    /// A plugin directory `plugins/<name>` with a plugin.json and `files`.
    pub fn plugin(&self, name: &str, version: &str, files: &[(&str, &str)]) -> &Self {
        self.write(
            &format!("plugins/{name}/.claude-plugin/plugin.json"),
            &json!({"name": name, "version": version, "description": format!("the {name} plugin")})
                .to_string(),
        );
        for (path, contents) in files {
            self.write(&format!("plugins/{name}/{path}"), contents);
        }
        self
    }

    /// `.claude-plugin/marketplace.json` listing `plugins` (each `./plugins/<name>`) and
    /// `extra` entries as given.
    pub fn manifest(&self, plugins: &[&str], extra: &[Value]) -> &Self {
        let mut list: Vec<Value> = plugins
            .iter()
            .map(|p| json!({"name": p, "source": format!("./plugins/{p}"), "description": format!("{p} entry")}))
            .collect();
        list.extend(extra.iter().cloned());
        self.write(
            ".claude-plugin/marketplace.json",
            &json!({"name": "team", "owner": {"name": "Team"}, "plugins": list}).to_string(),
        )
    }

    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

/// A server that trusts one signing key, accepts file:// marketplaces and reviews with
/// `limits`; returns it and the secret key.
pub fn marketplace_server(limits: ReviewLimits) -> (TestServer, String, tempfile::TempDir) {
    let keys = tempfile::tempdir().unwrap();
    let (secret, public, _) = agnes_runtime::signature::keygen().unwrap();
    std::fs::write(keys.path().join("ops.pub"), &public).unwrap();
    let trusted = keys.path().to_path_buf();
    let s = TestServer::start_with(move |c| {
        c.trusted_keys = Some(trusted);
        c.marketplace.allow_file_urls = true;
        c.marketplace.review_limits = limits;
    });
    (s, secret, keys)
}

/// Signs and uploads a reviewer component: the status and answer.
pub fn upload_reviewer(
    s: &TestServer,
    secret: &str,
    component: &str,
    name: &str,
    version: &str,
) -> (u16, Value) {
    use base64::Engine as _;
    let bytes = std::fs::read(component).unwrap();
    let manifest = format!("name = \"{name}\"\nversion = \"{version}\"\n");
    let sig = agnes_runtime::signature::sign(&bytes, manifest.as_bytes(), secret).unwrap();
    s.call(
        "POST",
        Some(&s.admin),
        "/api/admin/reviewers",
        Some(json!({
            "component_base64": base64::engine::general_purpose::STANDARD.encode(&bytes),
            "manifest": manifest,
            "signature": sig,
        })),
    )
}
