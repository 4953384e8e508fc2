//! A private PostgreSQL cluster for a test: `initdb` into a temp dir, `pg_ctl start` on a
//! free loopback port, stopped (by its pid) when dropped. Runs the server binaries as the
//! `postgres` user when the tests run as root (PostgreSQL refuses to run as root).

use crate::free_port;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Roles every cluster has, with how they log in (see `pg_hba.conf` in [`PgCluster::start`]).
pub const READER_PASSWORD: &str = "reader-Secret-pw-7f3a";
pub const MD5_PASSWORD: &str = "md5-Secret-pw-91c2";
pub const PLAIN_PASSWORD: &str = "plain-Secret-pw-44d0";

pub struct PgCluster {
    dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    as_postgres: bool,
}

/// Where the PostgreSQL server binaries are.
fn bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run scripts/setup.sh")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("no PostgreSQL server binaries: run scripts/setup.sh")
}

impl PgCluster {
    /// Starts a cluster with database `app` and the roles `reader` (SCRAM), `md5user`
    /// (md5), `plainuser` (cleartext password) and `trusted` (trust), each allowed to
    /// SELECT what [`PgCluster::grant_select`] grants, nothing else.
    pub fn start() -> PgCluster {
        let bin = bin_dir();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("agnes-pg-")
            .tempdir()
            .unwrap();
        if as_postgres {
            let uid = id("-u");
            let gid = id("-g");
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let port = free_port();
        let c = PgCluster {
            dir,
            port,
            bin,
            as_postgres,
        };
        let data = c.data();
        c.server(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 40\n\
             password_encryption = 'scram-sha-256'\nlog_min_messages = warning\n",
            c.dir.path().display()
        );
        append(&data.join("postgresql.conf"), &conf);
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             host all postgres 127.0.0.1/32 trust\n\
             host all trusted 127.0.0.1/32 trust\n\
             host all md5user 127.0.0.1/32 md5\n\
             host all plainuser 127.0.0.1/32 password\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        let log = c.dir.path().join("server.log");
        c.server(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        c.psql("postgres", "CREATE DATABASE app");
        c.psql(
            "postgres",
            &format!(
                "CREATE ROLE reader LOGIN PASSWORD '{READER_PASSWORD}'; \
                 SET password_encryption = 'md5'; CREATE ROLE md5user LOGIN PASSWORD '{MD5_PASSWORD}'; \
                 SET password_encryption = 'scram-sha-256'; CREATE ROLE plainuser LOGIN PASSWORD '{PLAIN_PASSWORD}'; \
                 CREATE ROLE trusted LOGIN;"
            ),
        );
        c
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs a server binary (as `postgres` when root).
    fn server(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A fresh database on this cluster for the server's state (owned by the superuser,
    /// which logs in over loopback by trust): what `[state] backend = "postgres"` points at.
    pub fn state_target(&self) -> agnes_server::db::pg::PgTarget {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.psql("postgres", &format!("CREATE DATABASE agnes_state_{n}"));
        agnes_server::db::pg::PgTarget {
            url: format!(
                "postgres://postgres@127.0.0.1:{}/agnes_state_{n}",
                self.port
            ),
            password: None,
            max_connections: 8,
        }
    }

    /// [`PgCluster::state_target`] as the server's `[state]` section.
    pub fn state_config(&self) -> agnes_server::config::StateConfig {
        let target = self.state_target();
        agnes_server::config::StateConfig {
            backend: "postgres".into(),
            url: Some(target.url),
            password_file: None,
            max_connections: target.max_connections,
        }
    }

    /// Runs SQL as the superuser in database `db`; returns the unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
            ])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Lets the login roles SELECT every table of `app`'s public schema.
    pub fn grant_select(&self) {
        self.psql(
            "app",
            "GRANT USAGE ON SCHEMA public TO reader, md5user, plainuser, trusted; \
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader, md5user, plainuser, trusted;",
        );
    }

    /// A grant of database `app` as `user`, whose password the host reads from `file`.
    pub fn grant(&self, user: &str, password_file: Option<&Path>) -> agnes_runtime::DatabaseGrant {
        agnes_runtime::DatabaseGrant {
            kind: agnes_runtime::DatabaseKind::Postgres,
            host: "127.0.0.1".into(),
            port: self.port,
            database: "app".into(),
            user: user.into(),
            password: password_file.map(|f| agnes_runtime::SecretGrant {
                file: Some(f.to_path_buf()),
                ..Default::default()
            }),
            tls: agnes_runtime::TlsMode::Disable,
            ca_file: None,
            allow_private: true,
        }
    }

    /// Turns TLS on with `cert` and `key` (PEM), reloading the server.
    pub fn enable_tls(&self, cert: &Path, key: &Path) {
        let data = self.data();
        std::fs::copy(cert, data.join("server.crt")).unwrap();
        std::fs::copy(key, data.join("server.key")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        if self.as_postgres {
            for f in ["server.crt", "server.key"] {
                std::os::unix::fs::chown(data.join(f), Some(id("-u")), Some(id("-g"))).unwrap();
            }
        }
        append(
            &data.join("postgresql.conf"),
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        );
        self.psql("postgres", "SELECT pg_reload_conf()");
        // the reload is asynchronous: wait until new sessions see it
        for _ in 0..100 {
            if self.psql("postgres", "SHOW ssl") == "on" {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the server did not turn TLS on:\n{}", self.log());
    }

    /// The postmaster's pid.
    pub fn pid(&self) -> i32 {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).unwrap();
        text.lines().next().unwrap().trim().parse().unwrap()
    }

    /// Kills the server and every backend at once (SIGKILL), as a crash would.
    pub fn kill(&self) {
        let pid = self.pid();
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &pid.to_string()])
            .status();
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The cluster's temp dir (readable by the test).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            let pid = self.pid();
            let _ = Command::new("kill")
                .args(["-QUIT", &pid.to_string()])
                .status();
            for _ in 0..100 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn is_root() -> bool {
    id_self() == 0
}

fn id_self() -> u32 {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn id(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "no `postgres` user: run scripts/setup.sh"
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
