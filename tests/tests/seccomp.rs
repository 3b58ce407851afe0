//! The seccomp regression suite (`make seccomp-test`).
//!
//! - Forbidden calls kill: the probe installs exactly the vault's (or the
//!   broker's) filter through the same code path, makes one dangerous call,
//!   and must die by SIGSYS; under an allow-all filter installed the same way
//!   it survives the same call (positive control).
//! - Per-rule differential: for every rule with argument conditions, the
//!   allowed values pass and each changed value is killed (a condition on
//!   the process's own pid: the probe's own pid passes; its child's, 1, 0
//!   and -1 are killed).
//! - Signals: each process may send SIGABRT to itself (abort) and nothing
//!   else by pid; the broker may send SIGTERM or SIGKILL through a pidfd,
//!   and the signal really arrives.
//! - The real vault and broker live under their policies: thousands of
//!   decryptions, a deliberate panic (SIGABRT, not SIGSYS), a forbidden call
//!   (SIGSYS, reported in words), learning mode, graceful shutdown.
//!
//! Filters are installed only in child processes, never in the test runner.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use broker::{Broker, Error, SandboxMode, VaultExit};
use policy::model::{Condition, Filter, Rule, RuntimeValue};
use suites::{config, secret};

/// What a probe run ended with.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Survived,
    Signal(i32),
    Exit(i32),
    /// It stopped itself (SIGSTOP to itself, allowed): the test killed it.
    Stopped(i32),
}

fn probe(filter: &str, call: &str, args: &[&str]) -> (End, String) {
    probe_with(&[], filter, call, args)
}

/// Runs the probe with its options `opts` (`--wait-child`) and waits for it
/// to end or to stop.
// The probe is reaped with waitpid(WUNTRACED), not `Child::wait`, which
// cannot report a stop (a probe that sent itself SIGSTOP would hang it).
#[allow(clippy::zombie_processes)]
fn probe_with(opts: &[&str], filter: &str, call: &str, args: &[&str]) -> (End, String) {
    let mut child = Command::new(suites::binary("seccomp-probe"))
        .args(opts)
        .arg(filter)
        .arg(call)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the probe");
    let mut err = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let pid = libc::pid_t::try_from(child.id()).expect("a pid is a pid_t");
    let status = loop {
        let mut status = 0;
        // SAFETY: `pid` is our own child, which nothing else waits for
        // (`child.wait()` is never called); `status` is a live int.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) };
        if r == pid {
            break status;
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "waitpid: {e}");
    };
    let end = if libc::WIFSTOPPED(status) {
        let mut after = 0;
        // SAFETY: our own child, stopped and not reaped: SIGKILL ends it
        // and waitpid reaps it; `after` is a live int.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, &mut after, 0);
        }
        End::Stopped(libc::WSTOPSIG(status))
    } else {
        let st = std::process::ExitStatus::from_raw(status);
        match (st.code(), st.signal()) {
            (Some(0), _) => End::Survived,
            (Some(c), _) => End::Exit(c),
            (None, Some(s)) => End::Signal(s),
            (None, None) => End::Exit(-1),
        }
    };
    (end, reader.join().expect("the stderr reader"))
}

/// Dangerous calls, with arguments that are harmless if the call is allowed
/// (the positive control really makes them). `both`: forbidden by both
/// policies; otherwise only by the vault's.
const FORBIDDEN: &[(&str, &[&str], bool)] = &[
    ("open", &["path", "0"], true),
    ("openat", &["-100", "path", "0"], true),
    ("creat", &["path", "0"], true),
    ("execve", &["path", "0", "0"], true),
    ("execveat", &["-100", "path", "0", "0", "0"], true),
    ("socket", &["1", "1", "0"], true),
    ("socketpair", &["1", "1", "0", "buf"], true),
    ("connect", &["-1", "0", "0"], true),
    ("bind", &["-1", "0", "0"], true),
    ("listen", &["-1", "0"], true),
    ("accept", &["-1", "0", "0"], true),
    ("sendto", &["-1", "0", "0", "0", "0", "0"], true),
    ("ptrace", &["2", "1", "0", "0"], true),
    ("process_vm_readv", &["self", "0", "0", "0", "0", "0"], true),
    (
        "process_vm_writev",
        &["self", "0", "0", "0", "0", "0"],
        true,
    ),
    ("fork", &[], true),
    ("vfork", &[], true),
    ("clone", &["17", "0", "0", "0", "0"], true),
    ("kill", &["1", "0"], true),
    ("tkill", &["tid", "0"], true),
    ("rt_sigqueueinfo", &["self", "0", "buf"], true),
    ("rt_tgsigqueueinfo", &["self", "tid", "0", "buf"], true),
    ("pidfd_send_signal", &["pidfd", "0", "0", "0"], true),
    ("memfd_create", &["path", "0"], true),
    ("memfd_secret", &["0"], true),
    ("ftruncate", &["-1", "0"], true),
    ("fcntl", &["0", "0", "100"], true),
    ("prctl", &["3", "0", "0", "0", "0"], true),
    ("seccomp", &["2", "0", "buf"], true),
    ("bpf", &["0", "0", "0"], true),
    ("perf_event_open", &["0", "0", "-1", "-1", "0"], true),
    ("keyctl", &["9999", "0", "0", "0", "0"], true),
    ("add_key", &["0", "0", "0", "0", "0"], true),
    ("request_key", &["0", "0", "0", "0"], true),
    ("userfaultfd", &["0"], true),
    ("io_uring_setup", &["0", "0"], true),
    ("unshare", &["0"], true),
    ("setns", &["-1", "0"], true),
    ("mount", &["0", "0", "0", "0", "0"], true),
    ("umount2", &["path", "0"], true),
    ("chroot", &["path"], true),
    ("pivot_root", &["path", "path"], true),
    ("setuid", &["0"], true),
    ("setgid", &["0"], true),
    ("personality", &["0xffffffff"], true),
    ("mknod", &["path", "0", "0"], true),
    ("symlink", &["path", "path"], true),
    ("unlink", &["path"], true),
    ("rename", &["path", "path"], true),
    ("chmod", &["path", "0"], true),
    ("chown", &["path", "0", "0"], true),
    ("init_module", &["0", "0", "0"], true),
    ("finit_module", &["-1", "0", "0"], true),
    ("delete_module", &["path", "0"], true),
    ("reboot", &["0", "0", "0", "0"], true),
    ("swapon", &["path", "0"], true),
    ("kexec_load", &["0", "0", "0", "0xffffffff"], true),
    ("open_by_handle_at", &["-1", "0", "0"], true),
    ("pidfd_open", &["1", "0"], true),
    ("getppid", &[], true),
    ("ioctl", &["-1", "0x541B", "buf"], true),
    ("read", &["-1", "0", "0"], false),
    ("write", &["1", "buf", "0"], false),
    ("poll", &["0", "0", "0"], false),
    ("wait4", &["-1", "0", "1", "0"], false),
];

#[test]
fn forbidden_calls_kill_and_survive_an_allow_all_filter() {
    assert!(FORBIDDEN.iter().filter(|(_, _, both)| *both).count() >= 40);
    let mut failures = Vec::new();
    for (call, args, both) in FORBIDDEN {
        let (control, msg) = probe("allow-all", call, args);
        if control != End::Survived {
            failures.push(format!(
                "positive control: {call} did not survive allow-all: {control:?} {msg}"
            ));
        }
        let filters: &[&str] = if *both {
            &["vault", "broker"]
        } else {
            &["vault"]
        };
        for filter in filters {
            let (end, msg) = probe(filter, call, args);
            if end != End::Signal(libc::SIGSYS) {
                failures.push(format!(
                    "{filter}: {call}{args:?} was not killed by SIGSYS: {end:?} {msg}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn clone3_is_answered_enosys_so_glibc_falls_back_to_the_refused_clone() {
    for filter in ["vault", "broker"] {
        let (end, msg) = probe(filter, "clone3", &["0", "0"]);
        assert_eq!(end, End::Survived, "{filter}: {msg}");
        assert!(
            msg.contains("os error 38"),
            "{filter}: clone3 must fail with ENOSYS: {msg}"
        );
        // ... and the fallback glibc then takes is killed.
        let (end, msg) = probe(filter, "clone", &["17", "0", "0", "0", "0"]);
        assert_eq!(end, End::Signal(libc::SIGSYS), "{filter}: {msg}");
    }
    // Positive control: without the overlay, clone3 with bad arguments
    // fails with EFAULT or EINVAL, not ENOSYS.
    let (end, msg) = probe("allow-all", "clone3", &["0", "0"]);
    assert_eq!(end, End::Survived, "{msg}");
    assert!(!msg.contains("os error 38"), "{msg}");
}

fn policy(file: &str) -> Filter {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sandbox-policies");
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    policy::model::parse(&text).unwrap().remove(0)
}

/// Harmless arguments for each system call that has conditional rules; the
/// test fills in each rule's own values where the template does not satisfy
/// them. A conditional rule for a call missing here fails the test.
fn template(syscall: &str) -> Option<Vec<String>> {
    let t: &[&str] = match syscall {
        "futex" => &["buf", "0", "1", "0", "0", "0xffffffff"],
        "getrandom" => &["buf", "16", "0"],
        "write" => &["2", "buf", "0"],
        "writev" => &["2", "buf", "0"],
        "mmap" => &["0", "4096", "3", "0x22", "-1", "0"],
        "mprotect" => &["page", "4096", "3"],
        "mremap" => &["page", "4096", "4096", "1"],
        "madvise" => &["page", "4096", "4"],
        "tgkill" => &["self", "tid", "6"],
        "rt_sigaction" => &["6", "0", "buf", "8"],
        "ioctl" => &["0", "0x5401", "buf"],
        "mlock2" => &["page", "4096", "1"],
        "fcntl" => &["0", "1"],
        "wait4" => &["-1", "0", "1", "0"],
        "pidfd_send_signal" => &["pidfd", "15", "0", "0"],
        _ => return None,
    };
    Some(t.iter().map(|s| s.to_string()).collect())
}

fn numeric(token: &str) -> Option<u64> {
    match token.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        // Negative numbers are the two's complement the kernel sees.
        None => token
            .parse::<i64>()
            .ok()
            .map(|v| u64::from_ne_bytes(v.to_ne_bytes())),
    }
}

/// Stand-ins for the probe's own pid and its child's when the test reasons
/// about a rule (the real ones exist only inside each probe).
const SELF_PID: u32 = 0x3fff_0001;
const CHILD_PID: u32 = 0x3fff_0002;

/// What a condition on the own pid is tried with, besides `self`: another
/// process, init, the caller's process group, every process.
const NOT_SELF: [&str; 4] = ["child", "1", "0", "-1"];

fn value(token: &str) -> Option<u64> {
    match token {
        "self" => Some(u64::from(SELF_PID)),
        "child" => Some(u64::from(CHILD_PID)),
        t => numeric(t),
    }
}

fn holds(c: &Condition, token: &str) -> bool {
    value(token).is_some_and(|v| c.holds_for(v, SELF_PID))
}

fn allows(rule: &Rule, args: &[String]) -> bool {
    rule.args
        .iter()
        .all(|c| holds(c, &args[usize::from(c.index)]))
}

#[test]
fn every_conditional_rule_passes_its_values_and_kills_changed_ones() {
    let mut failures = Vec::new();
    let mut cases = 0;
    for (file, name) in [("vault.json", "vault"), ("broker.json", "broker")] {
        let f = policy(file);
        for (i, rule) in f
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.args.is_empty())
        {
            let Some(mut args) = template(&rule.syscall) else {
                failures.push(format!(
                    "{file} rule {}: no differential template for {}",
                    i + 1,
                    rule.syscall
                ));
                continue;
            };
            for c in &rule.args {
                let idx = usize::from(c.index);
                if !holds(c, &args[idx]) {
                    args[idx] = match c.runtime {
                        Some(RuntimeValue::OwnPid) => "self".to_owned(),
                        None => c.val.to_string(),
                    };
                }
            }
            assert!(
                allows(rule, &args),
                "{file} rule {}: cannot build allowed args",
                i + 1
            );
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let (end, msg) = probe(name, &rule.syscall, &refs);
            cases += 1;
            // Allowed means the filter let it through: the call may still end
            // the process its own way (tgkill SIGABRT aborts the probe).
            if end == End::Signal(libc::SIGSYS) {
                failures.push(format!(
                    "{file} rule {}: allowed {}{args:?} was killed {msg}",
                    i + 1,
                    rule.syscall
                ));
            }
            for c in &rule.args {
                let idx = usize::from(c.index);
                let allowed_by_some_rule = |token: &str| {
                    let mut a = args.clone();
                    a[idx] = token.to_owned();
                    f.rules
                        .iter()
                        .filter(|r| r.syscall == rule.syscall)
                        .any(|r| allows(r, &a))
                };
                let violations: Vec<String> = if c.runtime == Some(RuntimeValue::OwnPid) {
                    // Every one of them, not the first that fits.
                    for token in NOT_SELF {
                        if holds(c, token) || allowed_by_some_rule(token) {
                            failures.push(format!(
                                "{file} rule {}: the policy allows {token} where it pins the own pid",
                                i + 1
                            ));
                        }
                    }
                    NOT_SELF.iter().map(|t| t.to_string()).collect()
                } else {
                    let base = numeric(&args[idx]).unwrap_or(0);
                    let mask = match c.op {
                        policy::model::Op::MaskedEq(m) => m,
                        _ => 0,
                    };
                    let candidates = [
                        base ^ mask,
                        base ^ 1,
                        base ^ 2,
                        base ^ 4,
                        base + 16,
                        base ^ 0x80,
                        0xdead,
                    ];
                    let changed = candidates.into_iter().find(|v| {
                        !c.holds_for(*v, SELF_PID) && !allowed_by_some_rule(&v.to_string())
                    });
                    let Some(v) = changed else {
                        failures.push(format!(
                            "{file} rule {}: no value found to violate {c:?}",
                            i + 1
                        ));
                        continue;
                    };
                    vec![v.to_string()]
                };
                for v in violations {
                    let mut a = args.clone();
                    a[idx] = v.clone();
                    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
                    let (end, msg) = probe(name, &rule.syscall, &refs);
                    cases += 1;
                    if end != End::Signal(libc::SIGSYS) {
                        failures.push(format!(
                            "{file} rule {}: {} with arg{idx} changed to {v} was not killed: {end:?} {msg}",
                            i + 1,
                            rule.syscall
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases > 40, "only {cases} differential cases ran");
}

#[test]
fn the_real_vault_lives_under_its_policy() {
    let b = Broker::spawn(config()).expect("spawn");
    // The largest secret (a 64 KiB envelope) and a direct one.
    let limit = b.max_secret_len();
    let big: Vec<u8> = (0..limit).map(|i| u8::try_from(i % 251).unwrap()).collect();
    b.store("max", secret(&big)).unwrap();
    b.store("small", secret(b"x")).unwrap();
    for i in 0..3000 {
        let name = if i % 2 == 0 { "max" } else { "small" };
        let ok = b
            .with_secret(name, |p| {
                if name == "max" {
                    p == big.as_slice()
                } else {
                    p == b"x"
                }
            })
            .unwrap();
        assert!(ok, "read {i} came back different");
    }
    let pid = b.vault_pid();
    for tid in suites::threads(pid) {
        let st = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
        assert!(
            st.lines().any(|l| l == "Seccomp:\t2"),
            "thread {tid}:\n{st}"
        );
    }
    let s = b.heap_status().unwrap();
    assert_eq!((s.decrypts, s.wipes_verified), (3000, 3000));
    assert_eq!(
        b.shutdown().unwrap(),
        VaultExit::Exited(0),
        "graceful shutdown under the filter"
    );
}

#[test]
fn a_panic_in_the_vault_ends_by_sigabrt_not_sigsys() {
    let cfg = broker::Config {
        vault_args: vec!["--selftest".into(), "panic".into()],
        ..config()
    };
    let err = Broker::spawn(cfg).unwrap_err();
    assert!(
        matches!(
            err,
            Error::VaultDied {
                exit: VaultExit::Signaled(libc::SIGABRT),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("crashed (SIGABRT)"), "{err}");
}

#[test]
fn a_forbidden_call_in_the_vault_is_reported_as_a_sandbox_kill() {
    let cfg = broker::Config {
        vault_args: vec!["--selftest".into(), "forbidden-syscall".into()],
        ..config()
    };
    let err = Broker::spawn(cfg).unwrap_err();
    assert!(
        matches!(
            err,
            Error::VaultDied {
                exit: VaultExit::Signaled(libc::SIGSYS),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("killed by the sandbox (SIGSYS): it made a forbidden system call"),
        "{err}"
    );
}

fn demo(args: &[&str]) -> (Option<i32>, String, String) {
    suites::run_with_input(
        Command::new(suites::binary("broker"))
            .arg("demo")
            .args(["--password-stdin", "--interval-ms", "10"])
            .args(args),
        b"pw\n",
    )
}

#[test]
fn the_broker_program_says_in_words_when_the_sandbox_killed_the_vault() {
    let (code, out, err) = demo(&[
        "--iterations",
        "2",
        "--vault-arg",
        "--selftest",
        "--vault-arg",
        "forbidden-syscall",
    ]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        err.contains("vault killed by the sandbox (SIGSYS): it made a forbidden system call"),
        "{err}"
    );
}

#[test]
fn learning_mode_names_the_refused_call_and_says_so_loudly() {
    let (code, out, err) = demo(&[
        "--iterations",
        "2",
        "--sandbox-learning",
        "trap",
        "--vault-arg",
        "--selftest",
        "--vault-arg",
        "forbidden-syscall",
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("SANDBOX LEARNING MODE (trap)"), "{out}");
    assert!(out.contains("LEARNING MODE, not enforcing"), "{out}");
    assert!(
        err.contains("the policy would refuse getppid (#110) args "),
        "{err}"
    );
    assert!(err.contains("the forbidden getppid returned -1"), "{err}");
    assert!(out.contains("#2 "), "{out}");
    // Log mode: the call goes through (and the kernel logs it).
    let (code, out, err) = demo(&[
        "--iterations",
        "1",
        "--sandbox-learning",
        "log",
        "--vault-arg",
        "--selftest",
        "--vault-arg",
        "forbidden-syscall",
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("SANDBOX LEARNING MODE (log)"), "{out}");
    assert!(
        !err.contains("getppid returned -1"),
        "log mode lets the call through: {err}"
    );
    // Never the default: without the option there is no banner.
    let (code, out, _) = demo(&["--iterations", "1"]);
    assert_eq!(code, Some(0));
    assert!(!out.contains("LEARNING MODE"), "{out}");
    assert!(Broker::spawn(config()).unwrap().config().sandbox_mode == SandboxMode::Enforce);
}

#[test]
fn the_broker_program_runs_under_its_own_policy() {
    let mut child = Command::new(suites::binary("broker"))
        .args([
            "demo",
            "--password-stdin",
            "--interval-ms",
            "50",
            "--iterations",
            "40",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"pw\n").unwrap();
    let pid = child.id();
    // Wait until the filter is installed (after the vault started).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seccomp = suites::proc_status_field(pid, "Seccomp");
        if seccomp.as_deref() == Some("2") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the broker never installed its filter"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for tid in suites::threads(pid) {
        let st =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap_or_default();
        assert!(
            st.is_empty() || st.lines().any(|l| l == "Seccomp:\t2"),
            "broker thread {tid} unfiltered"
        );
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("broker sandbox: sandbox-policies/broker.json installed (enforcing)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("#40 ") && stdout.contains("vault exited cleanly"),
        "{stdout}"
    );
    assert_ne!(out.status.signal(), Some(libc::SIGSYS));
}

/// What the policies are for, stated independently of their JSON: each of
/// these must be killed by both filters, whatever the rules say. (The
/// differential test above derives its cases from the rules; this one would
/// notice a rule that allows the wrong thing.)
const MUST_KILL: &[(&str, &[&str])] = &[
    ("mmap", &["0", "4096", "5", "0x22", "-1", "0"]), // PROT_READ|PROT_EXEC
    ("mmap", &["0", "4096", "7", "0x22", "-1", "0"]), // RWX
    ("mmap", &["0", "4096", "1", "0x2", "0", "0"]),   // a file mapping (fd 0)
    ("mprotect", &["page", "4096", "5"]),             // make a page executable
    ("mprotect", &["page", "4096", "4"]),             // PROT_EXEC alone
    ("mremap", &["page", "4096", "4096", "3", "page"]), // MREMAP_FIXED
    ("mremap", &["page", "4096", "4096", "5"]),       // MREMAP_DONTUNMAP
    ("madvise", &["page", "4096", "17"]),             // MADV_DODUMP undoes DONTDUMP
    ("madvise", &["page", "4096", "11"]),             // MADV_DOFORK undoes DONTFORK
    ("madvise", &["page", "4096", "19"]),             // MADV_KEEPONFORK undoes WIPEONFORK
    ("futex", &["buf", "2", "0", "0", "0", "0"]),     // FUTEX_FD
    ("futex", &["buf", "3", "0", "0", "0", "0"]),     // FUTEX_REQUEUE
    ("futex", &["buf", "6", "0", "0", "0", "0"]),     // FUTEX_LOCK_PI
    ("futex", &["buf", "5", "0", "0", "0", "0"]),     // FUTEX_WAKE_OP
    ("tgkill", &["self", "tid", "9"]),                // a signal other than SIGABRT
    ("rt_sigaction", &["31", "0", "buf", "8"]),       // SIGSYS handler (would defang trap mode)
    ("rt_sigaction", &["15", "0", "buf", "8"]),       // SIGTERM handler
    ("getrandom", &["buf", "16", "2"]),               // GRND_RANDOM
    ("write", &["5", "buf", "0"]),                    // any other fd
    ("ioctl", &["0", "0x5412", "buf"]),               // TIOCSTI: type into the terminal
    ("ioctl", &["1", "0x5401", "buf"]),               // terminal ioctls on another fd
    ("kill", &["1", "19"]),                           // SIGSTOP
    ("kill", &["1", "0"]),                            // probing other processes
    ("wait4", &["-1", "0", "0", "0"]),                // blocking wait
    ("fcntl", &["0", "4", "0x800"]),                  // F_SETFL
    ("prctl", &["4", "1", "0", "0", "0"]),            // PR_SET_DUMPABLE 1
    // Signals by pid: kill in any form, to itself, its child, its process
    // group (0) and every process it may signal (-1); tkill and the queued
    // signals in any form; tgkill with anything but (itself, SIGABRT).
    ("kill", &["self", "0"]),
    ("kill", &["self", "6"]),
    ("kill", &["child", "15"]),
    ("kill", &["child", "9"]),
    ("kill", &["0", "0"]),
    ("kill", &["-1", "0"]),
    ("tkill", &["tid", "6"]),
    ("tkill", &["child", "15"]),
    ("rt_sigqueueinfo", &["self", "6", "buf"]),
    ("rt_sigqueueinfo", &["child", "15", "buf"]),
    ("rt_tgsigqueueinfo", &["self", "tid", "6", "buf"]),
    ("tgkill", &["self", "tid", "15"]),
    ("tgkill", &["self", "tid", "19"]),
    ("tgkill", &["self", "tid", "0"]),
    ("tgkill", &["child", "child", "6"]),
    ("tgkill", &["1", "1", "6"]),
    ("tgkill", &["0", "tid", "6"]),
    ("tgkill", &["-1", "tid", "6"]),
    // Signals through a pidfd (the broker may send SIGTERM and SIGKILL
    // only, with no siginfo and no flags; the vault nothing): SIGSTOP,
    // SIGINT, 0, a siginfo pointer (also one in the high half only), a flag.
    ("pidfd_send_signal", &["pidfd", "19", "0", "0"]),
    ("pidfd_send_signal", &["pidfd", "2", "0", "0"]),
    ("pidfd_send_signal", &["pidfd", "0", "0", "0"]),
    ("pidfd_send_signal", &["pidfd", "15", "buf", "0"]),
    ("pidfd_send_signal", &["pidfd", "9", "0x100000000", "0"]),
    ("pidfd_send_signal", &["pidfd", "15", "0", "1"]),
];

#[test]
fn security_invariants_hold_for_both_policies() {
    let mut failures = Vec::new();
    for (call, args) in MUST_KILL {
        for filter in ["vault", "broker"] {
            let (end, msg) = probe(filter, call, args);
            if end != End::Signal(libc::SIGSYS) {
                failures.push(format!(
                    "{filter}: {call}{args:?} was not killed: {end:?} {msg}"
                ));
            }
        }
        // Positive control: the same call under allow-all is not a SIGSYS.
        let (control, msg) = probe("allow-all", call, args);
        if control == End::Signal(libc::SIGSYS) {
            failures.push(format!("allow-all: {call}{args:?} died by SIGSYS: {msg}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// tgkill: each program may send SIGABRT to itself (what abort() does) and
/// no other signal to itself, nor any signal to another process. The
/// refusals are in `MUST_KILL`; here the allowed call and what the refused
/// ones would have done.
#[test]
fn each_program_may_abort_itself_with_tgkill_and_signal_nothing_else() {
    for filter in ["vault", "broker", "allow-all"] {
        let (end, msg) = probe(filter, "tgkill", &["self", "tid", "6"]);
        assert_eq!(end, End::Signal(libc::SIGABRT), "{filter}: {msg}");
    }
    // What each refused form does where nothing refuses it: the pins are
    // what stands between it and its target.
    let cases: [(&[&str], End); 6] = [
        (&["self", "tid", "15"], End::Signal(libc::SIGTERM)),
        (&["self", "tid", "9"], End::Signal(libc::SIGKILL)),
        (&["self", "tid", "19"], End::Stopped(libc::SIGSTOP)),
        (&["child", "child", "6"], End::Survived),
        (&["0", "tid", "6"], End::Survived),
        (&["-1", "tid", "6"], End::Survived),
    ];
    for (args, control) in cases {
        assert_eq!(probe("allow-all", "tgkill", args).0, control, "{args:?}");
        for filter in ["vault", "broker"] {
            let (end, msg) = probe(filter, "tgkill", args);
            assert_eq!(end, End::Signal(libc::SIGSYS), "{filter}: {args:?} {msg}");
        }
    }
    // The `child` the refusals aim at is a live process the call reaches.
    let (end, msg) = probe_with(
        &["--wait-child"],
        "allow-all",
        "tgkill",
        &["child", "child", "6"],
    );
    assert_eq!(end, End::Survived, "{msg}");
    assert!(msg.contains("child ended by signal 6"), "{msg}");
}

/// pidfd_send_signal: the broker may send SIGTERM and SIGKILL, without
/// siginfo or flags, and the signal reaches the process; the vault may not
/// use it at all. (The other forms are in `MUST_KILL`.)
#[test]
fn the_broker_signals_through_a_pidfd_only_sigterm_or_sigkill_and_the_vault_not_at_all() {
    for (sig, filter) in [
        ("15", "broker"),
        ("9", "broker"),
        ("15", "allow-all"),
        ("9", "allow-all"),
    ] {
        let (end, msg) = probe_with(
            &["--wait-child"],
            filter,
            "pidfd_send_signal",
            &["pidfd", sig, "0", "0"],
        );
        assert_eq!(end, End::Survived, "{filter} {sig}: {msg}");
        assert!(
            msg.contains(&format!("child ended by signal {sig}")),
            "{filter} {sig}: the child was not signalled: {msg}"
        );
    }
    // The report would notice a signal that did not arrive.
    let (end, msg) = probe_with(
        &["--wait-child"],
        "allow-all",
        "pidfd_send_signal",
        &["pidfd", "0", "0", "0"],
    );
    assert_eq!(end, End::Survived, "{msg}");
    assert!(msg.contains("child still running"), "{msg}");
    for sig in ["15", "9", "0", "19"] {
        let args = ["pidfd", sig, "0", "0"];
        let (end, msg) = probe("vault", "pidfd_send_signal", &args);
        assert_eq!(end, End::Signal(libc::SIGSYS), "vault: {args:?} {msg}");
        assert_eq!(
            probe("allow-all", "pidfd_send_signal", &args).0,
            End::Survived
        );
    }
}

// ---- `policy verify`: the live filters are the reviewed ones ----------

/// Runs `policy verify ARGS`; (exit code, stdout, stderr).
fn policy_verify(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(suites::binary("policy"))
        .arg("verify")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run policy verify");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `sha256 NAME: HEX` lines of the committed `REVIEW.md`.
fn review_hashes() -> Vec<String> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sandbox-policies/REVIEW.md");
    std::fs::read_to_string(path)
        .expect("REVIEW.md")
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("sha256 "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn policy_verify_finds_the_reviewed_filters_in_the_real_vault_and_broker() {
    let broker = suites::binary("broker");
    let (code, out, err) = policy_verify(&["--start", broker.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    // The kernel's index order was probed, not assumed: index 0 is the
    // oldest filter on this kernel (the man page says the newest). A
    // change would be reported, and the order below would still be the
    // install order.
    assert!(
        out.contains("index 0 is the oldest filter (probed"),
        "{out}"
    );
    for (process, overlay, primary) in [
        ("vault", "vault-errno", "vault"),
        ("broker", "broker-errno", "broker"),
    ] {
        let section = out
            .split("\nprocess ")
            .find(|s| s.contains(&format!("checked against sandbox-policies/{process}.json")))
            .unwrap_or_else(|| panic!("no {process} section:\n{out}"));
        // The overlay is installed first (common::sandbox::install).
        assert!(
            section.contains(&format!("filter 1 of 2 (installed first): {overlay}\n"))
                && section.contains(&format!("filter 2 of 2: {primary}\n")),
            "{section}"
        );
        assert_eq!(
            section
                .matches("byte-identical to the enforcing program")
                .count(),
            2,
            "{section}"
        );
        assert!(section.contains("the process's own ✓"), "{section}");
        assert!(!section.contains('✗'), "{section}");
        assert!(
            section.contains("verdict: the kernel holds exactly the reviewed"),
            "{section}"
        );
        // Every hash the tool shows is the one REVIEW.md publishes.
        let shown: Vec<&str> = section
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("sha256 "))
            .collect();
        assert_eq!(shown.len(), 2, "{section}");
        let published = review_hashes();
        for line in shown {
            assert!(
                published.iter().any(|p| p == line),
                "{line:?} is not on REVIEW.md's page: {published:?}"
            );
        }
    }
}

#[test]
fn reading_the_vault_s_filters_does_not_disturb_its_broker() {
    let b = std::sync::Arc::new(Broker::spawn(config()).expect("spawn"));
    b.store("pw", secret(b"under review")).unwrap();
    let pid = b.vault_pid();
    // Reads go on, on every lane, while the vault's threads are stopped one
    // by one under ptrace and let go.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (b, stop) = (b.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let same = b.with_secret("pw", |p| p == b"under review");
                    assert_eq!(same.map_err(|e| e.to_string()), Ok(true));
                    n += 1;
                }
                n
            })
        })
        .collect();
    for _ in 0..5 {
        // No --policy: the vault is recognised by its name.
        let (code, out, err) = policy_verify(&[&pid.to_string()]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(
            out.contains("checked against sandbox-policies/vault.json"),
            "{out}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader") > 0);
    }
    assert_eq!(b.with_secret("pw", <[u8]>::len).unwrap(), 12);
    let b = std::sync::Arc::into_inner(b).expect("the readers are done");
    assert_eq!(b.shutdown().unwrap(), VaultExit::Exited(0));
}

/// Starts `planted-filter MODE`, waits for its `ready`, and returns it.
fn planted(mode: &str) -> std::process::Child {
    let mut child = Command::new(suites::binary("planted-filter"))
        .arg(mode)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("planted-filter");
    let mut err = child.stderr.take().expect("stderr");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while err.read(&mut byte).expect("read") == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    assert_eq!(line, b"ready", "planted-filter {mode}");
    child
}

/// `policy verify PID --policy vault` on `planted-filter MODE`, which is
/// then ended; the check must fail (exit 1): its standard output.
fn verify_planted(mode: &str) -> String {
    let mut child = planted(mode);
    let pid = child.id().to_string();
    let (code, out, err) = policy_verify(&[&pid, "--policy", "vault"]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(code, 1, "{out}\n{err}");
    out
}

#[test]
fn policy_verify_reports_a_planted_extra_call() {
    let out = verify_planted("extra-call");
    // By its bytes...
    assert!(
        out.contains("NOT the program compiled from vault.json"),
        "{out}"
    );
    // ...by its meaning, naming the call...
    assert!(
        out.contains("getuid (102): the kernel's program says allow, the JSON says kill_process"),
        "{out}"
    );
    // ...and in the verdict; the overlay, which is the reviewed one, passes.
    assert!(out.contains("NOT the reviewed policy ✗"), "{out}");
    assert_eq!(
        out.matches("byte-identical to the enforcing program")
            .count(),
        1,
        "{out}"
    );
}

#[test]
fn policy_verify_reports_a_thread_without_the_filters() {
    let out = verify_planted("thread-left-out");
    // The main thread holds the reviewed programs; the other holds none.
    assert!(
        out.contains("1 thread holds other filters than thread"),
        "{out}"
    );
    assert!(
        out.contains("the kernel holds 0 filters, the policy installs 2 filters ✗"),
        "{out}"
    );
}

#[test]
fn policy_verify_says_what_it_needs_when_it_is_not_root() {
    use std::os::unix::process::CommandExt;
    let dir = suites::copy_for_nobody(&["policy"]);
    let out = Command::new(dir.join("policy"))
        .args(["verify", "1"])
        .uid(suites::NOBODY)
        .gid(suites::NOBODY)
        .stdin(Stdio::null())
        .output()
        .expect("run policy verify as nobody");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("it needs CAP_SYS_ADMIN (run as root)"),
        "{err}"
    );
}
