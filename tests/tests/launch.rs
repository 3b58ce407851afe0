//! How the vault is started, tested with the real binaries: the trust check
//! on the vault binary (every refusal and the accepted cases), the
//! execute-only start (a vault started from a readable file by an ordinary
//! user refuses; from an execute-only one it goes on), the tracer check of
//! both programs, the vault's standard error (drained, cleaned, never
//! blocking), and what the demo says of the protection in force.
//!
//! The start-up race itself (an attacker of the same uid stopping each
//! process in its first moments) is `startup_race.rs`.

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use broker::{Broker, Error, LaunchError};

/// A fresh root-owned 0755 directory under the temp dir (which the trust
/// check accepts: /tmp is root-owned and sticky).
fn fixture_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("privsep-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    chmod(&d, 0o755);
    d
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(p: &Path, uid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
}

/// A copy of the vault at `dir/name` with `mode`.
fn vault_at(dir: &Path, name: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    suites::install_file(&suites::binary("vault"), &p, mode);
    p
}

/// The error of a broker started (in this process, as root) with `vault`.
fn refusal(vault: &Path) -> String {
    match Broker::spawn(broker::Config {
        vault_path: Some(vault.to_owned()),
        ..suites::config()
    }) {
        Ok(_) => panic!("{} was accepted", vault.display()),
        Err(e @ Error::Launch(LaunchError::Image(_))) => e.to_string(),
        Err(e) => panic!("{} was refused for another reason: {e:?}", vault.display()),
    }
}

fn accepted(vault: &Path) {
    let b = Broker::spawn(broker::Config {
        vault_path: Some(vault.to_owned()),
        ..suites::config()
    })
    .unwrap_or_else(|e| panic!("{} was refused: {e}", vault.display()));
    assert!(b.heap_status().unwrap().verified());
    b.shutdown().unwrap();
}

#[test]
fn untrusted_vault_binaries_are_refused_each_with_its_path_and_reason() {
    let base = fixture_dir("trust");
    // The positive control: a root-owned 0755 file in a root-owned 0755
    // directory (under the sticky, root-owned /tmp) runs.
    let good = vault_at(&base, "vault", 0o755);
    accepted(&good);
    // So does a symbolic link to it (resolved once, then walked).
    let link = base.join("link-to-vault");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    accepted(&link);
    // So does an execute-only one (run from its own descriptor).
    let xo = vault_at(&base, "vault-0711", 0o711);
    accepted(&xo);

    let mut cases: Vec<(PathBuf, String)> = Vec::new();
    let w = vault_at(&base, "vault-0777", 0o777);
    cases.push((
        w.clone(),
        format!("{} is writable by others (mode 0777)", w.display()),
    ));
    let g = vault_at(&base, "vault-0775", 0o775);
    cases.push((
        g.clone(),
        format!("{} is writable by its group (mode 0775)", g.display()),
    ));
    let suid = vault_at(&base, "vault-suid", 0o4755);
    cases.push((suid.clone(), "is set-user-ID or set-group-ID".into()));
    let noexec = vault_at(&base, "vault-0644", 0o644);
    cases.push((noexec.clone(), "is not executable".into()));
    let foreign = vault_at(&base, "vault-nobody", 0o755);
    chown(&foreign, suites::NOBODY);
    cases.push((
        foreign.clone(),
        format!(
            "{} is owned by uid {}, neither root nor the broker's user (uid 0)",
            foreign.display(),
            suites::NOBODY
        ),
    ));
    let dir = base.join("a-dir");
    std::fs::create_dir(&dir).unwrap();
    cases.push((dir.clone(), "is a directory, not a regular file".into()));
    // A directory writable by others, without the sticky bit, anywhere above.
    let open = base.join("open");
    std::fs::create_dir(&open).unwrap();
    let inner = open.join("inner");
    std::fs::create_dir(&inner).unwrap();
    chmod(&inner, 0o755);
    let deep = vault_at(&inner, "vault", 0o755);
    chmod(&open, 0o777);
    cases.push((
        deep.clone(),
        format!(
            "{} is writable by others (mode 0777) without the sticky bit",
            open.display()
        ),
    ));
    let grp = base.join("grp");
    std::fs::create_dir(&grp).unwrap();
    let in_grp = vault_at(&grp, "vault", 0o755);
    chmod(&grp, 0o775);
    cases.push((
        in_grp,
        format!("{} is writable by its group", grp.display()),
    ));
    // Sticky but not root-owned: its owner can replace what it holds.
    let sticky = base.join("sticky-nobody");
    std::fs::create_dir(&sticky).unwrap();
    let in_sticky = vault_at(&sticky, "vault", 0o755);
    chmod(&sticky, 0o1777);
    chown(&sticky, suites::NOBODY);
    cases.push((
        in_sticky,
        format!("{} is owned by uid {}", sticky.display(), suites::NOBODY),
    ));
    let fifo = base.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a live path string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o755) }, 0);
    cases.push((fifo.clone(), "is a pipe, not a regular file".into()));

    let mut failures = Vec::new();
    for (path, reason) in &cases {
        let msg = refusal(path);
        let named = msg.contains(&format!("refusing the vault binary {}", path.display()));
        if !named || !msg.contains(reason.as_str()) {
            failures.push(format!(
                "{}: expected {reason:?}, got {msg:?}",
                path.display()
            ));
        }
    }
    let missing = refusal(&base.join("missing"));
    assert!(missing.contains("not found"), "{missing}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let _ = std::fs::remove_dir_all(&base);
}

/// Runs `residue-driver` as `nobody` with `--vault vault` (and the driver
/// from `dir`); returns its first stdout line (`ready PID`) or its stderr.
fn driver_as_nobody(dir: &Path, vault: &Path) -> Result<(), String> {
    let mut child = Command::new(dir.join("residue-driver"))
        .arg("--vault")
        .arg(vault)
        .uid(suites::NOBODY)
        .gid(suites::NOBODY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    drop(child.stdin.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    child.wait().unwrap();
    if line.starts_with("ready ") {
        Ok(())
    } else {
        Err(err)
    }
}

#[test]
fn an_ordinary_user_trusts_root_and_itself_and_a_sticky_tmp_but_no_one_else() {
    let dir = suites::copy_for_nobody(&["residue-driver"]);
    // A directory of nobody's own, holding nobody's own vault: accepted.
    let own = dir.join("own");
    std::fs::create_dir(&own).unwrap();
    let own_vault = vault_at(&own, "vault", 0o755);
    chown(&own_vault, suites::NOBODY);
    chown(&own, suites::NOBODY);
    driver_as_nobody(&dir, &own_vault).expect("nobody's own vault");
    // A root-owned vault directly in the sticky, root-owned temp dir:
    // accepted (no one else can rename or remove it there).
    let in_tmp = std::env::temp_dir().join(format!("privsep-vault-tmp-{}", std::process::id()));
    suites::install_file(&suites::binary("vault"), &in_tmp, 0o755);
    let tmp_mode = std::fs::metadata(std::env::temp_dir()).unwrap().mode();
    if tmp_mode & 0o1000 != 0 {
        driver_as_nobody(&dir, &in_tmp).expect("a root-owned vault in sticky /tmp");
    }
    // Owned by another ordinary user: refused, by name.
    let other = own.join("other");
    suites::install_file(&suites::binary("vault"), &other, 0o755);
    chown(&other, 4242);
    let err = driver_as_nobody(&dir, &other).unwrap_err();
    assert!(
        err.contains(&format!(
            "refusing the vault binary {}: {} is owned by uid 4242, neither root nor the broker's user (uid {})",
            other.display(),
            other.display(),
            suites::NOBODY
        )),
        "{err}"
    );
    let _ = std::fs::remove_file(in_tmp);
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `path ARGS` as `nobody` through a shell of that uid (the way a user
/// starts a program: no capabilities left at the `execve`).
fn as_nobody_via_shell(path: &Path, args: &[&str]) -> Output {
    Command::new("/bin/sh")
        .arg("-c")
        .arg("exec \"$0\" \"$@\"")
        .arg(path)
        .args(args)
        .uid(suites::NOBODY)
        .gid(suites::NOBODY)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_vault_started_from_a_readable_file_by_an_ordinary_user_refuses_to_start() {
    let dir = fixture_dir("readable-vault");
    let readable = vault_at(&dir, "vault", 0o755);
    let out = as_nobody_via_shell(&readable, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refusing to start: this vault was started from a file its user can read"),
        "{err}"
    );
    // Positive control: the same program installed execute-only is
    // non-dumpable from its first instruction and goes past that check (to
    // the next one, which wants the broker's arguments).
    let xo = vault_at(&dir, "vault-xo", 0o711);
    let out = as_nobody_via_shell(&xo, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("--parent-pid is required"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `cmd` with `PTRACE_TRACEME`: this thread becomes its tracer, lets
/// it past the stop at its `execve`, and collects its output.
fn run_traced(mut cmd: Command) -> Output {
    // SAFETY: ptrace(PTRACE_TRACEME) is async-signal-safe and takes no
    // pointers; it runs in the child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: waiting for our own child's stop at its exec (SIGTRAP), then
    // letting it go on; no pointers but a live local.
    unsafe {
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert!(libc::WIFSTOPPED(status), "status {status:#x}");
        assert_eq!(libc::ptrace(libc::PTRACE_CONT, pid, 0, 0), 0);
    }
    child.wait_with_output().unwrap()
}

#[test]
fn both_programs_refuse_to_start_under_a_tracer() {
    let me = std::process::id().to_string();
    let mut vault = Command::new(suites::binary("vault"));
    vault.args(["--parent-pid", &me]);
    let out = run_traced(vault);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is being traced by pid"), "{err}");
    // Positive control: untraced, the same vault goes past the check (and
    // stops at the next one: no ring at fd 3, whatever the test runner
    // inherited there, such as the lock file of `flock FILE cargo test`).
    let mut untraced = Command::new(suites::binary("vault"));
    // SAFETY: close_range is async-signal-safe and takes integers; it runs
    // in the child between fork and exec.
    unsafe {
        untraced.pre_exec(|| {
            if libc::close_range(3, u32::MAX, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = untraced
        .args(["--parent-pid", &me])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("traced"), "{err}");
    assert!(err.contains("fd 3 is not open"), "{err}");

    let mut demo = Command::new(suites::binary("broker"));
    demo.args(["demo", "--password-stdin", "--iterations", "1"]);
    let out = run_traced(demo);
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is being traced by pid"), "{err}");
    assert!(!stdout.contains("[1/4]"), "it went on: {stdout}");
}

/// Bytes a terminal must never receive from the vault: C0 controls but the
/// newline, DEL, C1 controls (UTF-8 `c2 80..9f`), bidirectional overrides.
fn raw_controls(bytes: &[u8]) -> usize {
    let text = String::from_utf8_lossy(bytes);
    text.chars()
        .filter(|c| {
            (c.is_control() && *c != '\n')
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .count()
}

#[test]
fn a_vault_flooding_its_stderr_with_escapes_neither_blocks_nor_reaches_the_terminal_raw() {
    // The vault's flood (1.3 MiB, 20 times what a pipe holds, escape
    // sequences, a forged broker line) comes before it answers the first
    // request: "ready" shows the broker drained it.
    let mut child = Command::new(suites::binary("residue-driver"))
        .args(["--vault-arg", "--selftest", "--vault-arg", "flood-stderr"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        stderr.read_to_end(&mut v).unwrap();
        v
    });
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let vault: u32 = line
        .trim()
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("driver said {line:?}"));
    writeln!(stdin, "plant 00").unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "planted");
    writeln!(stdin, "exit").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let err = reader.join().unwrap();
    assert_eq!(raw_controls(&err), 0, "control characters reached stderr");
    let text = String::from_utf8_lossy(&err);
    let prefix = format!("vault[{vault}]: ");
    let from_vault: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
    assert!(from_vault.len() >= 100, "too few lines forwarded:\n{text}");
    assert!(
        from_vault.len() <= broker::launch::output::MAX_LINES + 1,
        "{} lines forwarded",
        from_vault.len()
    );
    for l in &from_vault {
        assert!(
            l.is_ascii() && l.len() <= prefix.len() + broker::launch::output::MAX_LINE_CHARS + 3,
            "a line that is not plain ASCII or is longer than the cap: {l:?}"
        );
    }
    // The forged line is shown, but as the vault's, its check mark and its
    // right-to-left override as visible escapes.
    let forged = format!("{prefix}broker: all secrets verified \\u{{2713}}\\u{{202e}}");
    assert!(
        text.lines().any(|l| l == forged),
        "no {forged:?} in:\n{}",
        &text[..text.len().min(2000)]
    );
    assert!(
        !text.lines().any(|l| l.starts_with("broker: all secrets")),
        "a forged line passed as the broker's"
    );
    assert!(
        text.contains("more line(s) of output not shown"),
        "the cap was not reported"
    );
}

#[test]
fn a_vault_flooding_its_stderr_does_not_block_when_the_brokers_stderr_is_stuck() {
    // The driver's own stderr is a pipe nobody reads: once it is full, the
    // broker's forwarding of the vault's lines stops, and its drain must
    // go on anyway (or the flooding vault would block and never answer).
    let mut fds = [-1; 2];
    // SAFETY: pipe2 writes two new descriptors into the live array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are new and owned by no one else.
    let (r, w) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    // Fill the pipe first, so that every write to it blocks from the start.
    let mut filled = 0usize;
    // SAFETY: fcntl on our own descriptor; writes from a live buffer.
    unsafe {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&w);
        libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
        let chunk = [b'.'; 4096];
        loop {
            let n = libc::write(fd, chunk.as_ptr().cast(), chunk.len());
            if n <= 0 {
                break;
            }
            filled += n.unsigned_abs();
        }
        libc::fcntl(fd, libc::F_SETFL, 0);
    }
    assert!(filled >= 4096, "the pipe took {filled} bytes");
    let mut child = Command::new(suites::binary("residue-driver"))
        .args(["--vault-arg", "--selftest", "--vault-arg", "flood-stderr"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(w)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert!(line.starts_with("ready "), "driver said {line:?}");
    writeln!(stdin, "store").unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "send-secret");
    writeln!(stdin, "flood-test-secret").unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "stored");
    writeln!(stdin, "reads 20").unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert!(line.starts_with("reads 20 "), "{line:?}");
    writeln!(stdin, "exit").unwrap();
    drop(stdin);
    // Unblock the driver's exit path (its own writes to stderr) by reading.
    let drain = std::thread::spawn(move || {
        let mut r = r;
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v.len()
    });
    assert!(child.wait().unwrap().success());
    assert!(
        drain.join().unwrap() > filled,
        "nothing was forwarded at all"
    );
}

#[test]
fn the_demo_says_which_protection_is_in_force_installed_or_from_the_build() {
    // From the build (readable copies): re-executed, with the warning.
    let dir = suites::binaries_for_nobody();
    let (code, out, err) = suites::demo_once_as_nobody(&dir.join("broker"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains(
            "broker: started from a readable file, re-executed from an execute-only sealed copy"
        ),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "vault: run from an execute-only sealed copy (memfd, mode 0111) of {}: non-dumpable from its first instruction",
            dir.join("vault").display()
        )),
        "{out}"
    );
    assert!(
        err.contains("can be read by the user running it")
            && err.contains("execute-only")
            && err.contains("sudo make install"),
        "{err}"
    );
    // Installed by `make install-bins`: execute-only, no warning.
    let prefix = fixture_dir("prefix");
    suites::install_bins(&prefix);
    let broker = prefix.join("bin/broker");
    assert_eq!(std::fs::metadata(&broker).unwrap().mode() & 0o7777, 0o711);
    let (code, out, err) = suites::demo_once_as_nobody(&broker);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("broker: installed execute-only: non-dumpable from its first instruction"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "vault: run from {}, installed execute-only: non-dumpable from its first instruction",
            prefix.join("libexec/privsep-vault/vault").display()
        )),
        "{out}"
    );
    assert!(!err.contains("warning"), "{err}");
    let _ = std::fs::remove_dir_all(prefix);
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `script` (with `$0` = `program`) as root in a new pid namespace
/// whose `vm.memfd_noexec` is `setting` (the sysctl is per pid namespace:
/// the rest of the machine is untouched), the password on its stdin.
fn in_pid_namespace(setting: u8, script: &str, program: &Path) -> (Option<i32>, String, String) {
    let full = format!("echo {setting} > /proc/sys/vm/memfd_noexec && {script}");
    suites::run_with_input(
        Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "/bin/sh", "-c", &full])
            .arg(program)
            .current_dir("/"),
        b"pw\n",
    )
}

#[test]
fn where_the_kernel_refuses_executable_memfds_the_error_says_why_and_what_to_do() {
    let dir = suites::binaries_for_nobody();
    let broker = dir.join("broker");
    let demo = "demo --password-stdin --iterations 1 --interval-ms 0";
    let as_nobody =
        format!("exec setpriv --reuid=65534 --regid=65534 --clear-groups \"$0\" {demo}");
    let as_root = format!("exec \"$0\" {demo}");
    // An ordinary user's broker, from readable files: it cannot make its
    // execute-only copy, and says so instead of running unprotected.
    let (code, out, err) = in_pid_namespace(2, &as_nobody, &broker);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        err.contains("the kernel refuses executable memfds (the vm.memfd_noexec sysctl is 2)")
            && err.contains("sudo make install"),
        "{err}"
    );
    assert!(!out.contains("[1/4]"), "{out}");
    // Root reads every file, so a copy would protect nothing more: it runs
    // the checked file itself, and says so.
    let (code, out, err) = in_pid_namespace(2, &as_root, &broker);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("itself (the kernel refuses executable memfds"),
        "{out}"
    );
    // Positive control: the same namespaces with the default setting.
    let (code, out, err) = in_pid_namespace(0, &as_nobody, &broker);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("re-executed from an execute-only sealed copy"),
        "{out}"
    );
    let (code, out, err) = in_pid_namespace(0, &as_root, &broker);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("an execute-only sealed copy (memfd"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_forged_vault_handoff_is_refused_by_an_installed_broker() {
    // The re-exec hands the checked vault to the program's second image in
    // environment variables. Set by anyone else, for an installed broker
    // (which never re-executes), they would slip a vault past the trust
    // check: here, a sealed execute-only memfd like the ones the broker makes.
    let prefix = fixture_dir("forged");
    suites::install_bins(&prefix);
    let fake = broker::launch::image::Image::prepare(&suites::binary("vault"), c"vault").unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&fake.fd());
    let mut cmd = Command::new(prefix.join("bin/broker"));
    cmd.args(["demo", "--password-stdin", "--iterations", "1"])
        .env("PRIVSEP_VAULT_REEXEC_VAULT_FD", "3")
        .env(
            "PRIVSEP_VAULT_REEXEC_VAULT_PATH",
            "/usr/libexec/looks-legit/vault",
        )
        .uid(suites::NOBODY)
        .gid(suites::NOBODY)
        .stdin(Stdio::null());
    // SAFETY: dup2 between fork and exec (async-signal-safe), onto fd 3.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{err}");
    assert!(
        err.contains("this process was not started from its own execute-only copy"),
        "{err}"
    );
    assert!(!stdout.contains("[1/4]"), "{stdout}");
    drop(fake);
    let _ = std::fs::remove_dir_all(prefix);
}

#[test]
fn an_own_file_that_its_owner_cannot_read_is_refused() {
    // Any process of the user can chmod and rewrite a file of the user's:
    // execute-only protects nothing there, and it cannot be copied.
    let dir = suites::copy_for_nobody(&["residue-driver"]);
    let own = dir.join("own");
    std::fs::create_dir(&own).unwrap();
    let v = vault_at(&own, "vault", 0o111);
    chown(&v, suites::NOBODY);
    chown(&own, suites::NOBODY);
    let err = driver_as_nobody(&dir, &v).unwrap_err();
    assert!(
        err.contains("is your own file but not readable to you"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_application_that_ignores_sigchld_still_shuts_its_vault_down() {
    // The kernel reaps the vault and discards its status: the broker must
    // see the end through the pidfd and say so, not spin on ECHILD.
    let mut child = Command::new(suites::binary("residue-driver"))
        .args(["--sigchld", "ignore"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert!(line.starts_with("ready "), "{line:?}");
    writeln!(stdin, "shutdown").unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert!(
        line.contains("ended, but how is unknown") || line.contains("exited cleanly"),
        "{line:?}"
    );
    writeln!(stdin, "exit").unwrap();
    assert!(child.wait().unwrap().success());
}

/// Every descriptor of `pid` above 2: its number, what it links to, and
/// the pid it names if it is a pidfd (`Pid:` in its fdinfo).
fn descriptors(pid: u32) -> Vec<(u32, String, Option<i64>)> {
    let mut v: Vec<(u32, String, Option<i64>)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| {
            let n: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let link = std::fs::read_link(format!("/proc/{pid}/fd/{n}")).ok()?;
            let names = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{n}"))
                .ok()?
                .lines()
                .find_map(|l| l.strip_prefix("Pid:").and_then(|p| p.trim().parse().ok()));
            Some((n, link.display().to_string(), names))
        })
        .filter(|(n, _, _)| *n > 2)
        .collect();
    v.sort();
    v
}

/// `cmd` started with a pidfd of `target` at fd 7 and its `/proc/PID`
/// directory at fd 8, both open across the exec.
fn with_descriptors_of(cmd: &mut Command, target: u32) -> Vec<std::os::fd::OwnedFd> {
    let pid = libc::pid_t::try_from(target).unwrap();
    // SAFETY: pidfd_open takes integers; the result is checked.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(
        pidfd >= 0,
        "pidfd_open: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor that nothing else owns.
    let pidfd = unsafe { std::os::fd::OwnedFd::from_raw_fd(i32::try_from(pidfd).unwrap()) };
    let dir = std::fs::File::open(format!("/proc/{target}")).unwrap();
    let (a, b) = (
        std::os::fd::AsRawFd::as_raw_fd(&pidfd),
        std::os::fd::AsRawFd::as_raw_fd(&dir),
    );
    // SAFETY: dup2 is async-signal-safe and takes integers; it runs in the
    // child between fork and exec (dup2 leaves the copies open across it).
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(a, 7) == -1 || libc::dup2(b, 8) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    vec![pidfd, dir.into()]
}

#[test]
fn the_broker_program_closes_every_descriptor_it_inherited() {
    // A process the broker has no business signalling, and two
    // descriptors that name it: a pidfd and its /proc directory.
    let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
    let target = sleeper.id();
    let names_target = |d: &(u32, String, Option<i64>)| {
        d.2 == Some(i64::from(target)) || d.1 == format!("/proc/{target}")
    };
    // Positive control: a program started the same way holds both.
    let mut probe = Command::new("sleep");
    probe.arg("600");
    let fds = with_descriptors_of(&mut probe, target);
    let mut probe = probe.spawn().unwrap();
    drop(fds);
    // `spawn` may return before the child's exec: wait for its new name.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_to_string(format!("/proc/{}/comm", probe.id()))
        .is_ok_and(|c| c.trim() != "sleep")
    {
        assert!(std::time::Instant::now() < deadline, "sleep never ran");
        std::thread::yield_now();
    }
    let held = descriptors(probe.id());
    let _ = probe.kill();
    let _ = probe.wait();
    assert_eq!(
        held.iter().filter(|d| names_target(d)).count(),
        2,
        "the inherited descriptors did not reach the program: {held:?}"
    );

    // The broker, as root from the build (no re-exec), and as an ordinary
    // user from readable copies (re-executed: the vault image it hands
    // itself across the exec is kept, nothing else).
    let build = suites::binaries_for_nobody();
    for as_nobody in [false, true] {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg("exec \"$0\" demo --password-stdin --iterations 2 --interval-ms 600000")
            .arg(if as_nobody {
                build.join("broker")
            } else {
                suites::binary("broker")
            })
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if as_nobody {
            cmd.uid(suites::NOBODY).gid(suites::NOBODY);
        }
        let fds = with_descriptors_of(&mut cmd, target);
        let mut broker = cmd.spawn().unwrap();
        drop(fds);
        broker.stdin.take().unwrap().write_all(b"pw\n").unwrap();
        // Up once it read the password back the first time.
        let mut out = std::io::BufReader::new(broker.stdout.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            let n = std::io::BufRead::read_line(&mut out, &mut line).unwrap();
            seen.push_str(&line);
            assert!(n > 0, "the broker ended early: {seen}");
            if line.contains("#1 ") {
                break;
            }
        }
        let held = descriptors(broker.id());
        // SAFETY: signalling our own child, not yet reaped.
        unsafe { libc::kill(i32::try_from(broker.id()).unwrap(), libc::SIGTERM) };
        let status = broker.wait().unwrap();
        assert!(
            !held.iter().any(names_target),
            "as nobody {as_nobody}: the broker kept an inherited descriptor: {held:?}"
        );
        // The listing sees a pidfd when there is one: the broker's own, of
        // its vault.
        assert!(
            held.iter()
                .any(|d| d.2.is_some_and(|p| p != i64::from(target))),
            "as nobody {as_nobody}: no pidfd of its vault seen: {held:?}"
        );
        assert!(
            status.success(),
            "as nobody {as_nobody}: {status:?}\n{seen}"
        );
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let _ = std::fs::remove_dir_all(build);
}
