//! Helpers shared by the suites that run the real `broker` and `vault`
//! binaries. The binaries are found next to the test executable's directory
//! (`target/<profile>/`); `make test` builds them first.

pub mod driver;
pub mod keys;
pub mod pty;
pub mod rulecheck;
pub mod scan;

use std::path::PathBuf;
use std::time::Duration;

use common::secret::SecretBuf;

/// `target/<profile>/`, where cargo puts the workspace's binaries.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a directory");
    let dir = if deps.ends_with("deps") {
        deps.parent().expect("deps has a parent")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// Path of a workspace binary, with a clear failure if it was not built.
///
/// The broker trusts a vault binary only if no one but root or its own user
/// could have changed it or any directory above it (`broker::launch::trust`).
/// A checkout may live where that does not hold (under a directory of
/// another user, say); then the suites run the binaries from a trusted copy
/// of the build directory, made once per test process.
pub fn binary(name: &str) -> PathBuf {
    let built = bin_dir().join(name);
    assert!(
        built.is_file(),
        "{} not found: run `cargo build --workspace --bins` (or `make test`) first",
        built.display()
    );
    trusted_bin_dir().join(name)
}

/// The build directory if the broker would trust a vault there, else a
/// trusted copy of its programs (hard links where possible).
fn trusted_bin_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = bin_dir();
        if broker::launch::trust::open_trusted(&dir.join("vault")).is_ok() {
            return dir;
        }
        use std::os::unix::fs::PermissionsExt;
        let copy = std::env::temp_dir().join(format!("privsep-vault-build-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&copy);
        std::fs::create_dir_all(&copy).expect("temp dir");
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for entry in std::fs::read_dir(&dir).expect("build directory").flatten() {
            let path = entry.path();
            let is_program = entry
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            if is_program {
                let to = copy.join(entry.file_name());
                if std::fs::hard_link(&path, &to).is_err() {
                    install_file(&path, &to, 0o755);
                }
            }
        }
        eprintln!(
            "note: {} is not where the broker trusts a vault; the suites run a copy in {}",
            dir.display(),
            copy.display()
        );
        copy
    })
    .clone()
}

/// A broker configuration that uses the freshly built vault.
pub fn config() -> broker::Config {
    broker::Config {
        vault_path: Some(binary("vault")),
        request_timeout: Duration::from_secs(10),
        // The suites read the processes' memory to prove what is not
        // there; secret memory would hide it from them (tests of secret
        // memory ask for it).
        secret_memory: broker::SecretMemory::Off,
        ..broker::Config::default()
    }
}

/// A secret buffer holding `bytes`.
pub fn secret(bytes: &[u8]) -> SecretBuf {
    let mut s = SecretBuf::new(bytes.len().max(1)).expect("secret buffer");
    s.fill(|b| {
        b[..bytes.len()].copy_from_slice(bytes);
        Ok::<_, ()>(bytes.len())
    })
    .expect("fill");
    s
}

/// One field of `/proc/PID/status` (the value after the colon, trimmed).
pub fn proc_status_field(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    })
}

/// The pids of every thread of `pid`.
pub fn threads(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `make install-bins PREFIX=prefix` of the build these suites run
/// (`BIN_DIR`: wherever `CARGO_TARGET_DIR` put it): `broker` and the vault
/// root-owned and execute-only, as `make install` puts them.
pub fn install_bins(prefix: &std::path::Path) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root");
    let out = std::process::Command::new("make")
        .args(["-s", "-C"])
        .arg(root)
        .arg("install-bins")
        .arg(format!("PREFIX={}", prefix.display()))
        .arg(format!("BIN_DIR={}", bin_dir().display()))
        .output()
        .expect("make");
    assert!(
        out.status.success(),
        "make install-bins failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The unprivileged uid and gid the suites drop to (`nobody`).
pub const NOBODY: u32 = 65534;

/// Copies the `broker` and `vault` binaries into a fresh directory that an
/// unprivileged user can enter and execute from (the checkout itself may
/// live under a directory closed to others), and returns the directory.
pub fn binaries_for_nobody() -> PathBuf {
    copy_for_nobody(&["broker", "vault"])
}

/// As [`binaries_for_nobody`], for the named binaries.
pub fn copy_for_nobody(names: &[&str]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("privsep-vault-bins-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    for name in names {
        install_file(&binary(name), &dir.join(name), 0o755);
    }
    dir
}

/// Copies `from` to `to` with `mode`, through the `install` program: the
/// test process itself never holds the new file open for writing. (If it
/// did, a child forked meanwhile by another test thread would inherit that
/// descriptor until its own exec, and executing the new file would fail
/// with ETXTBSY.)
pub fn install_file(from: &std::path::Path, to: &std::path::Path, mode: u32) {
    let out = std::process::Command::new("install")
        .arg("-m")
        .arg(format!("{mode:o}"))
        .arg(from)
        .arg(to)
        .output()
        .expect("install (coreutils)");
    assert!(
        out.status.success(),
        "install {} {}: {}",
        from.display(),
        to.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The state letter of `pid` in `/proc/PID/stat` (`R`, `S`, `T`, `Z`...).
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

/// Waits (up to 5 s) until `pid` is in state `state`: signals are
/// asynchronous, and a lane thread of the vault may still answer in the
/// instant before a SIGSTOP or a fatal signal takes effect.
pub fn wait_for_state(pid: u32, state: char) {
    let start = std::time::Instant::now();
    while proc_state(pid) != Some(state) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "process {pid} never reached state {state}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The id of the calling thread, as `/proc/self/task/` names it.
pub fn gettid() -> u32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    u32::try_from(tid).expect("a thread id is positive")
}

/// The threads of `pid` asleep on a ring's futex: in `FUTEX_WAIT` (the
/// shared variant, `op` 0, which only `common::sys::futex_wait_shared`
/// makes; std's locks use the private ones) on a word inside a memfd
/// mapping, where every ring keeps its indices. A broker thread there has
/// sent its request and waits for the vault's answer (`common::ring`).
/// Reads `/proc/PID/task/TID/syscall` (root, or the process itself).
pub fn ring_waiters(pid: u32) -> Vec<u32> {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    let in_memfd = |addr: u64| {
        maps.lines().any(|line| {
            let mut f = line.split_whitespace();
            let range = f.next().unwrap_or("");
            let path = f.nth(4).unwrap_or("");
            let Some((lo, hi)) = range.split_once('-') else {
                return false;
            };
            let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16))
            else {
                return false;
            };
            (lo..hi).contains(&addr) && path.starts_with("/memfd:")
        })
    };
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    threads(pid)
        .into_iter()
        .filter(|tid| {
            let Ok(call) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))
            else {
                return false;
            };
            let f: Vec<&str> = call.split_whitespace().collect();
            // "NR ARG0 ARG1 ...", or "running" / "-1 ..." outside a call.
            f.len() >= 3
                && f[0].parse::<i64>() == Ok(libc::SYS_futex)
                && hex(f[2]) == Some(0)
                && hex(f[1]).is_some_and(in_memfd)
        })
        .collect()
}

/// Waits (up to 5 s) until thread `tid` of `pid` is asleep on a ring's
/// futex ([`ring_waiters`]): its request is in the ring, and it waits for
/// the answer.
pub fn wait_for_ring_waiter(pid: u32, tid: Option<u32>) {
    let start = std::time::Instant::now();
    loop {
        let waiters = ring_waiters(pid);
        if tid.map_or(!waiters.is_empty(), |t| waiters.contains(&t)) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no thread of {pid} ({tid:?}) ever waited on a ring's futex"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Asserts the vault's sandbox state from `/proc`: every thread under a
/// seccomp filter (`Seccomp: 2`), no_new_privs, and every capability set
/// empty (the suites run as root, so the bounding set is emptied too).
pub fn assert_sandboxed(pid: u32) {
    let threads = threads(pid);
    assert!(!threads.is_empty(), "no threads for {pid}");
    for tid in threads {
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap_or_default();
        assert!(
            status.lines().any(|l| l == "Seccomp:\t2"),
            "thread {tid} is not filtered:\n{status}"
        );
    }
    assert_eq!(proc_status_field(pid, "NoNewPrivs").as_deref(), Some("1"));
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            proc_status_field(pid, set).as_deref(),
            Some("0000000000000000"),
            "{set}"
        );
    }
}

/// Runs `cmd` with `stdin` written to its standard input, and returns its
/// exit status, standard output and standard error (lossy UTF-8). A program
/// that ends without reading its input (a refused command line) is fine.
pub fn run_with_input(
    cmd: &mut std::process::Command,
    stdin: &[u8],
) -> (Option<i32>, String, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the program");
    match child.stdin.take().expect("stdin").write_all(stdin) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written.expect("write its input"),
    }
    let out = child.wait_with_output().expect("wait for it");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `broker` arguments for a demo of one read, at once, the password on
/// stdin.
pub const DEMO_ONE_READ: [&str; 6] = [
    "demo",
    "--password-stdin",
    "--iterations",
    "1",
    "--interval-ms",
    "0",
];

/// The demo of one read ([`DEMO_ONE_READ`]) by `broker` (a path) as
/// `nobody`: exit status, standard output and standard error.
pub fn demo_once_as_nobody(broker: &std::path::Path) -> (Option<i32>, String, String) {
    run_as_nobody(broker, &DEMO_ONE_READ, b"pw\n")
}

/// Runs `program ARGS` as `nobody` through a shell of that uid (so no
/// capability is left at the program's `execve`), from `/`, with `stdin`
/// written to its standard input: as [`run_with_input`].
pub fn run_as_nobody(
    program: &std::path::Path,
    args: &[&str],
    stdin: &[u8],
) -> (Option<i32>, String, String) {
    use std::os::unix::process::CommandExt;
    run_with_input(
        std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg("exec \"$0\" \"$@\"")
            .arg(program)
            .args(args)
            .current_dir("/")
            .uid(NOBODY)
            .gid(NOBODY),
        stdin,
    )
}

/// One line of fd 0 without its newline, read byte by byte, so that no
/// buffer holds what follows it (a secret's line after a command); `None`
/// at the end of the input.
pub fn stdin_line() -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        // SAFETY: reading one byte into a live local buffer.
        let n = unsafe { libc::read(0, b.as_mut_ptr().cast(), 1) };
        if n <= 0 {
            return None;
        }
        if b[0] == b'\n' {
            return Some(line);
        }
        line.push(b[0]);
    }
}
