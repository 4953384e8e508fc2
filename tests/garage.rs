//! A private Garage (S3-compatible object store) for a test: one node in a temp dir on free
//! loopback ports, one bucket and one key with known credentials; killed when dropped.
//! Garage is AGPL: it runs only as this separate process, installed by `scripts/setup.sh`
//! outside the clone, never linked into Agnes.

use crate::free_port;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub const GARAGE: &str = "/opt/agnes-deps/garage-2.5.0/bin/garage";
pub const BUCKET: &str = "agnes";
pub const KEY_ID: &str = "GK0a1b2c3d4e5f60718293a4b5";
pub const REGION: &str = "garage";

pub struct Garage {
    dir: tempfile::TempDir,
    server: Child,
    /// `http://127.0.0.1:<port>`: the S3 API.
    pub endpoint: String,
    pub secret: String,
}

fn binary() -> PathBuf {
    let path = std::env::var("AGNES_GARAGE").unwrap_or_else(|_| GARAGE.to_string());
    let path = PathBuf::from(path);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh (it installs Garage for the scale-out tests)",
        path.display()
    );
    path
}

impl Garage {
    pub fn start() -> Garage {
        let dir = tempfile::Builder::new()
            .prefix("agnes-garage-")
            .tempdir()
            .unwrap();
        let (s3, rpc) = (free_port(), free_port());
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).unwrap();
        let rpc_secret = hex::encode(random);
        getrandom::fill(&mut random).unwrap();
        let secret = hex::encode(random);
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\n\
                 replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{rpc_secret}\"\n\
                 [s3_api]\ns3_region = \"{REGION}\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                 root_domain = \".s3.localhost\"\n",
                d = dir.path().display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let server = Command::new(binary())
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let g = Garage {
            dir,
            server,
            endpoint: format!("http://127.0.0.1:{s3}"),
            secret,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let node = loop {
            if let Some(id) = g.try_cli(&["node", "id", "-q"]) {
                break id.trim().split('@').next().unwrap().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "garage did not start: {}",
                g.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        g.cli(&["layout", "apply", "--version", "1"]);
        g.cli(&["bucket", "create", BUCKET]);
        g.cli(&["key", "import", "--yes", "-n", "agnes", KEY_ID, &g.secret]);
        g.cli(&[
            "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "agnes",
        ]);
        g
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(binary())
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .args(args)
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|| panic!("garage {args:?} failed: {}", self.log()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A file holding the secret key (what `[storage] secret_access_key_file` names).
    pub fn secret_file(&self) -> PathBuf {
        let path = self.dir.path().join("s3-secret");
        std::fs::write(&path, &self.secret).unwrap();
        path
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
