//! SQL over Agnes tables (materialized tables that join across sources), run in a process
//! of its own that the operating system confines — never in the server process.
//!
//! The host starts `agnes-sqlbox` (a small executable shipped beside `agnes`) once per
//! table with an empty environment, no inherited descriptors but stdin/stdout/stderr, and
//! hard resource limits set before it executes (`RLIMIT_AS` from `memory_mb`,
//! `RLIMIT_CPU` from `cpu_secs`, `RLIMIT_FSIZE = 0`: it cannot write a file, no core
//! dumps, few descriptors). Before it reads a byte of SQL the process confines itself
//! ([`confine`]): Landlock lets it read exactly the parquet files of the tables the SQL
//! names and nothing else on the filesystem, and denies every TCP bind and connect; a
//! seccomp filter refuses sockets, `exec`, new processes (threads only), `ptrace` and the
//! kernel's other escape hatches. Only then does it open an in-memory DuckDB with the
//! settings of the query sandbox (`allowed_paths` = those files, `enable_external_access =
//! false`, `lock_configuration = true`, no extension loading, a memory limit), run the one
//! SELECT and stream the result as Arrow IPC frames on stdout.
//!
//! The host reads those frames through the same emit path as a connector's batches (IPC
//! validation, schema checks, row/byte/batch limits, the parquet encoder), kills the
//! process group at the wall-clock deadline, and publishes the result like any materialized
//! table: on any failure the table keeps its previous version and the run records why.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::engine::Runtime;
use crate::extract::Staging;
use crate::host::RunState;
use crate::names::validate_name;
use crate::query::{begin_result, check_sql, end_result};
use crate::run::{NativeEmitter, end_read, prepare_read, publish};
use crate::sink::parquet::WrittenFile;
use crate::{Error, Grant, RunReport, RunRequest};

/// A materialized table defined by SQL over Agnes tables.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlTable {
    pub table: String,
    /// One SELECT (a `WITH` query included) in DuckDB's dialect.
    pub sql: String,
    /// The tables the SQL may read, `(name, current parquet file)`: nothing else is
    /// readable inside the sandbox.
    pub inputs: Vec<(String, PathBuf)>,
}

/// How the host starts the sandbox process.
#[derive(Debug, Clone)]
pub struct SqlBox {
    /// The `agnes-sqlbox` executable.
    pub program: PathBuf,
    /// DuckDB threads inside it.
    pub threads: u64,
}

/// The name of the sandbox executable.
pub const PROGRAM: &str = "agnes-sqlbox";

impl SqlBox {
    /// `agnes-sqlbox` next to the running executable (an installed `agnes`), or one
    /// directory up (a test binary under `target/<profile>/deps`).
    pub fn beside_current_exe(threads: u64) -> Option<SqlBox> {
        beside_current_exe(PROGRAM).map(|program| SqlBox { program, threads })
    }
}

/// The file `name` next to the running executable (an installed `agnes`), or one directory
/// up (a test binary under `target/<profile>/deps`).
pub fn beside_current_exe(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [Some(dir.join(name)), dir.parent().map(|d| d.join(name))]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
}

/// What the host sends the sandbox on stdin.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Job {
    sql: String,
    /// The session directory: `<dir>/<input>.parquet` for each input.
    dir: PathBuf,
    inputs: Vec<String>,
    memory_mb: u64,
    threads: u64,
}

/// Address space the sandbox may map beyond DuckDB's `memory_limit`: the executable and
/// its libraries, thread stacks, allocator arenas.
const HEADROOM_MB: u64 = 768;
/// The largest job (the SQL and the input names) the sandbox reads.
const MAX_JOB: u64 = 4 << 20;
/// The longest error message kept from the sandbox's stderr.
const MAX_STDERR: u64 = 16 << 10;
/// The sandbox flushes a frame once its IPC bytes reach this size.
const FRAME_BYTES: usize = 4 << 20;

impl Runtime {
    /// Runs every table's SQL in the sandbox, one process each, and publishes the results
    /// as one extract version of `request.source` (all `materialized`). A table whose SQL
    /// fails keeps its previous version and its report carries the error; the run itself
    /// fails only when nothing can be published.
    pub fn run_sql(
        &self,
        request: RunRequest,
        tables: &[SqlTable],
        sqlbox: &SqlBox,
    ) -> Result<RunReport, Error> {
        let started = Instant::now();
        let deadline = started + request.limits.timeout();
        let extracted_at = chrono::Utc::now().naive_utc();
        let staging = Staging::begin(&request.extracts_dir, &request.source)?;
        let mut state = self.run_state(&Grant::default(), &request.limits)?;
        // nothing is read: every table of the source is materialized
        prepare_read(&mut state, staging.data_dir(), &[])?;
        let (_, sink, mut counts) = end_read(&mut state, None, started, extracted_at)?;
        let mut materialized = Vec::new();
        for t in tables {
            let outcome = materialize_sql(&mut state, &staging, t, sqlbox, deadline)
                .map_err(|e| e.to_string());
            if let Err(e) = &outcome {
                tracing::warn!("error.type" = "materialize_failed", table = %t.table, error = %e, "materialized table kept its previous version");
            }
            materialized.push((t.table.clone(), outcome));
        }
        counts.rows = state.rows;
        counts.bytes = state.bytes;
        drop(state);
        let request = RunRequest {
            state: None,
            ..request
        };
        publish(
            staging,
            request,
            Vec::new(),
            sink.finish()?,
            None,
            counts,
            PROGRAM.into(),
            materialized,
        )
    }
}

/// One table: its SQL run in the sandbox into a sink of its own, the file moved into the
/// staged data directory only when complete.
fn materialize_sql(
    state: &mut RunState,
    staging: &Staging,
    t: &SqlTable,
    sqlbox: &SqlBox,
    deadline: Instant,
) -> Result<WrittenFile, Error> {
    validate_name("table", &t.table)?;
    check_sql(&t.table, &t.sql)?;
    let dir = staging.dir().join(format!(".materialize-{}", t.table));
    std::fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
    let dest = staging.data_dir().join(format!("{}.parquet", t.table));
    begin_result(state, &dir, &t.table, None)?;
    let outcome = run_sandboxed(state, t, sqlbox, deadline);
    let written = end_result(state, &t.table, outcome, &dir, &dest);
    let _ = std::fs::remove_dir_all(&dir);
    written.map(|(_, file)| file)
}

/// Starts the sandbox for `t`, feeds its frames to the emit path, and turns how it ended
/// into an error that says which limit stopped it.
#[allow(unsafe_code)]
fn run_sandboxed(
    state: &mut RunState,
    t: &SqlTable,
    sqlbox: &SqlBox,
    deadline: Instant,
) -> Result<(), Error> {
    let fail = |reason: String| Error::Sql {
        table: crate::names::shown(&t.table),
        reason,
    };
    let limits = state.limits.clone();
    // the session directory: one symlink per input, so the SQL (and its error messages)
    // sees `<table>.parquet`, never a server path
    let links = tempfile::Builder::new()
        .prefix("agnes-sql-")
        .tempdir()
        .map_err(|e| fail(format!("creating its session directory: {e}")))?;
    let mut inputs = Vec::new();
    for (name, path) in &t.inputs {
        validate_name("table", name)?;
        let link = links.path().join(format!("{name}.parquet"));
        std::os::unix::fs::symlink(path, &link).map_err(Error::io("linking", &link))?;
        inputs.push(name.clone());
    }
    let job = Job {
        sql: t.sql.clone(),
        dir: links.path().to_path_buf(),
        inputs,
        memory_mb: limits.memory_mb,
        threads: sqlbox.threads.max(1),
    };
    let address_space = (limits.memory_mb + HEADROOM_MB) << 20;
    let cpu_secs = limits.cpu_secs.max(1);
    let mut command = Command::new(&sqlbox.program);
    command
        .env_clear()
        .current_dir(links.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    // SAFETY: the closure only makes async-signal-safe system calls (setrlimit, prctl,
    // close_range) between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            limit_process(address_space, cpu_secs)
        });
    }
    let mut child = command.spawn().map_err(|e| {
        fail(format!(
            "starting the sandbox {}: {e}",
            sqlbox.program.display()
        ))
    })?;
    let pid = child.id() as i32;
    let kill = move || {
        // SAFETY: signals the process group the sandbox leads; no memory is touched.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    };
    let mut stdin = child.stdin.take().expect("piped");
    let sent = serde_json::to_vec(&job)
        .map_err(std::io::Error::other)
        .and_then(|bytes| stdin.write_all(&bytes));
    drop(stdin);
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = (&mut stderr).take(MAX_STDERR).read_to_string(&mut text);
        // drain the rest so the sandbox never blocks on a full pipe
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        text
    });
    let (done, wait) = mpsc::channel::<()>();
    let remaining = deadline.saturating_duration_since(Instant::now());
    let watchdog = std::thread::spawn(move || {
        if wait.recv_timeout(remaining) == Err(mpsc::RecvTimeoutError::Timeout) {
            kill();
            return true;
        }
        false
    });
    let stdout = child.stdout.take().expect("piped");
    let read = match sent {
        Ok(()) => read_frames(state, &t.table, stdout),
        Err(e) => Err(fail(format!("sending the job: {e}"))),
    };
    if read.is_err() {
        kill();
    }
    let status = child.wait();
    let _ = done.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    let stderr = errors.join().unwrap_or_default();
    let said = crate::names::sanitized(stderr.trim(), 4096);
    if timed_out {
        return Err(fail(format!(
            "stopped at its time limit (timeout_secs = {}, for the whole run)",
            limits.timeout_secs
        )));
    }
    let complete = read?;
    let status = status.map_err(|e| fail(format!("waiting for the sandbox: {e}")))?;
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) if complete => Ok(()),
        (Some(0), _) => Err(fail("the sandbox ended its output mid-frame".into())),
        (Some(_), _) if !said.is_empty() => Err(fail(said)),
        (Some(code), _) => Err(fail(format!("the sandbox exited with status {code}"))),
        (None, Some(libc::SIGXCPU)) | (None, Some(libc::SIGKILL)) => Err(fail(format!(
            "stopped at its CPU limit (cpu_secs = {})",
            limits.cpu_secs
        ))),
        (_, signal) => Err(fail(format!(
            "the sandbox was stopped by signal {} ({}); with memory_mb = {} the likeliest \
             cause is its memory limit{}",
            signal.unwrap_or_default(),
            signal_name(signal.unwrap_or_default()),
            limits.memory_mb,
            if said.is_empty() {
                String::new()
            } else {
                format!("; it said: {said}")
            }
        ))),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGSYS => "SIGSYS",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => "signal",
    }
}

/// In the forked child, before `exec`: hard limits, death with the parent, no privilege
/// gain, every inherited descriptor but 0–2 closed at `exec`.
#[allow(unsafe_code)]
fn limit_process(address_space: u64, cpu_secs: u64) -> std::io::Result<()> {
    let set = |resource, soft: u64, hard: u64| {
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    set(libc::RLIMIT_AS, address_space, address_space)?;
    set(libc::RLIMIT_CPU, cpu_secs, cpu_secs + 1)?;
    set(libc::RLIMIT_FSIZE, 0, 0)?;
    set(libc::RLIMIT_CORE, 0, 0)?;
    set(libc::RLIMIT_NOFILE, 64, 64)?;
    // SAFETY: prctl with integer arguments; close_range marks descriptors close-on-exec.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0
            || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    Ok(())
}

/// Reads length-prefixed IPC frames from the sandbox into the emit path until EOF.
/// `Ok(false)`: the output ended inside a frame (the process died mid-write).
fn read_frames(state: &mut RunState, table: &str, stdout: impl Read) -> Result<bool, Error> {
    let mut reader = std::io::BufReader::with_capacity(1 << 20, stdout);
    let max = state.limits.max_batch_bytes();
    loop {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match reader.read(&mut len[got..]) {
                Ok(0) => return Ok(got == 0),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Ok(false),
            }
        }
        let n = u32::from_le_bytes(len) as usize;
        if n > max {
            return Err(Error::LimitExceeded {
                limit: "max_batch_mb",
                detail: format!(
                    "one frame of `{table}` is {n} bytes, the limit is {} MiB",
                    state.limits.max_batch_mb
                ),
            });
        }
        let mut frame = vec![0u8; n];
        if reader.read_exact(&mut frame).is_err() {
            return Ok(false);
        }
        NativeEmitter::new(state).emit(table, frame)?;
    }
}

/// The sandbox executable's `main`: reads the job, confines itself, runs the SQL, writes
/// frames. Returns the exit status (an error's message is on stderr).
pub fn sandbox_main() -> i32 {
    match sandbox() {
        Ok(()) => 0,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "{message}");
            2
        }
    }
}

fn sandbox() -> Result<(), String> {
    let mut text = String::new();
    std::io::stdin()
        .take(MAX_JOB)
        .read_to_string(&mut text)
        .map_err(|e| format!("reading the job: {e}"))?;
    let job: Job = serde_json::from_str(&text).map_err(|e| format!("reading the job: {e}"))?;
    let mut files = Vec::new();
    for name in &job.inputs {
        validate_name("table", name).map_err(|e| e.to_string())?;
        files.push(job.dir.join(format!("{name}.parquet")));
    }
    // DuckDB opens with one thread (no workers) before the sandbox closes: it reads its
    // cgroup limits at start-up and cannot run without them
    let config = duckdb::Config::default()
        .threads(1)
        .and_then(|c| c.max_memory(&format!("{}MB", job.memory_mb)))
        .and_then(|c| c.enable_autoload_extension(false))
        .and_then(|c| c.with("autoinstall_known_extensions", "false"))
        .map_err(|e| format!("configuring DuckDB: {e}"))?;
    let conn = duckdb::Connection::open_in_memory_with_flags(config)
        .map_err(|e| format!("opening DuckDB: {e}"))?;
    // Landlock and seccomp bind the calling thread and whatever it starts afterwards: there
    // must be no other thread yet
    if threads() != Some(1) {
        return Err("the SQL sandbox must be confined before any thread starts".into());
    }
    confine(&files)?;
    // the workers start now, confined
    conn.execute_batch(&format!("SET threads = {};", job.threads.max(1)))
        .map_err(|e| format!("configuring DuckDB: {}", first_line(&e)))?;
    let mut setup = String::new();
    let mut paths = Vec::new();
    for (name, file) in job.inputs.iter().zip(&files) {
        let p = crate::sink::duckdb::sql_string(&file.to_string_lossy());
        setup.push_str(&format!(
            "CREATE VIEW \"{name}\" AS SELECT * FROM read_parquet({p});\n"
        ));
        paths.push(p);
    }
    setup.push_str(&format!("SET allowed_paths = [{}];\n", paths.join(", ")));
    setup.push_str(
        "SET temp_directory = '';\nSET enable_external_access = false;\nSET lock_configuration = true;\n",
    );
    conn.execute_batch(&setup)
        .map_err(|e| format!("preparing the inputs: {}", first_line(&e)))?;
    // one query expression: a second statement, COPY, ATTACH, SET ... cannot parse
    let sql = format!("SELECT * FROM (\n{}\n) AS agnes_m", job.sql);
    let mut stmt = conn.prepare(&sql).map_err(|e| first_line(&e))?;
    let arrow = stmt.query_arrow([]).map_err(|e| first_line(&e))?;
    let schema = arrow.get_schema();
    let mut out = std::io::stdout().lock();
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &schema)
        .map_err(|e| format!("writing the result: {e}"))?;
    let mut batches = 0usize;
    let mut flush = |writer: &mut arrow_ipc::writer::StreamWriter<Vec<u8>>| {
        let bytes = std::mem::take(writer.get_mut());
        out.write_all(&(bytes.len() as u32).to_le_bytes())
            .and_then(|()| out.write_all(&bytes))
            .and_then(|()| out.flush())
            .map_err(|e| format!("writing the result: {e}"))
    };
    for batch in arrow {
        writer
            .write(&batch)
            .map_err(|e| format!("writing the result: {e}"))?;
        batches += 1;
        if writer.get_ref().len() >= FRAME_BYTES {
            flush(&mut writer)?;
        }
    }
    if batches == 0 {
        // the schema travels with a batch: an empty result is an empty batch
        writer
            .write(&arrow_array::RecordBatch::new_empty(schema))
            .map_err(|e| format!("writing the result: {e}"))?;
    }
    if !writer.get_ref().is_empty() {
        flush(&mut writer)?;
    }
    Ok(())
}

/// The threads of this process, from `/proc/self/status`.
fn threads() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

fn first_line(e: &duckdb::Error) -> String {
    let msg = e.to_string();
    msg.lines().next().unwrap_or(&msg).to_string()
}

/// Confines the calling thread and every thread and process it starts afterwards:
/// Landlock (read access to exactly `readable`, nothing else on the filesystem, no TCP
/// bind or connect) and a seccomp filter (no sockets, no `exec`, no new processes — threads
/// only —, no `ptrace`, mounts, namespaces, BPF, io_uring, kernel keyrings or modules).
/// Fails closed: a kernel without Landlock (ABI 4, Linux 6.7) or seccomp is an error.
pub fn confine(readable: &[PathBuf]) -> Result<(), String> {
    landlock_only(readable)?;
    seccomp()
}

fn landlock_only(readable: &[PathBuf]) -> Result<(), String> {
    use landlock::{
        ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
        RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    };
    let abi = ABI::V4;
    let fail = |e: &dyn std::fmt::Display| {
        format!(
            "the SQL sandbox needs Landlock (Linux 6.7 or newer, with landlock among the LSMs): {e}"
        )
    };
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.create())
        .map_err(|e| fail(&e))?;
    for path in readable {
        let fd = PathFd::new(path).map_err(|e| format!("opening input {}: {e}", shown(path)))?;
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, AccessFs::ReadFile))
            .map_err(|e| fail(&e))?;
    }
    let status = ruleset.restrict_self().map_err(|e| fail(&e))?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(fail(&"the ruleset is not fully enforced"));
    }
    Ok(())
}

fn shown(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn seccomp() -> Result<(), String> {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    use std::collections::BTreeMap;
    let fail = |e: &dyn std::fmt::Display| format!("the SQL sandbox's seccomp filter: {e}");
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| fail(&e))?;
    let mut denied: BTreeMap<i64, Vec<SeccompRule>> = [
        libc::SYS_socket,
        libc::SYS_socketpair,
        libc::SYS_connect,
        libc::SYS_bind,
        libc::SYS_listen,
        libc::SYS_accept,
        libc::SYS_accept4,
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_fork,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_vfork,
    ]
    .into_iter()
    .map(|call| (call, Vec::new()))
    .collect();
    // clone without CLONE_THREAD is a new process
    let not_a_thread = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
        0,
    )
    .and_then(|c| SeccompRule::new(vec![c]))
    .map_err(|e| fail(&e))?;
    denied.insert(libc::SYS_clone, vec![not_a_thread]);
    let deny: BpfProgram = SeccompFilter::new(
        denied,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .and_then(|f| f.try_into())
    .map_err(|e| fail(&e))?;
    // clone3 passes its flags in memory a filter cannot read: answer ENOSYS, and the C
    // library falls back to clone, whose flags the filter above checks
    let no_clone3: BpfProgram = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .and_then(|f| f.try_into())
    .map_err(|e| fail(&e))?;
    seccompiler::apply_filter(&deny).map_err(|e| fail(&e))?;
    seccompiler::apply_filter(&no_clone3).map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_with_an_unknown_field_is_refused() {
        let text = r#"{"sql":"SELECT 1","dir":"/tmp","inputs":[],"memory_mb":1,"threads":1,"unlock":true}"#;
        assert!(serde_json::from_str::<Job>(text).is_err());
    }
}
