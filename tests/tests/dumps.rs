//! Dumps and other processes: no core file from a crash whatever the core
//! pattern says; a root `gcore` of either process holds neither the secret
//! nor any private key number; an unprivileged process of the same uid
//! cannot read either process by any of the usual ways. Each with a
//! positive control against an ordinary process.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use suites::driver::{canary, hex, Driver};
use suites::keys::{derive, factors, le};
use suites::scan;

/// Tests that change the system's core pattern run one at a time.
static CORE_PATTERN: Mutex<()> = Mutex::new(());

/// Sets /proc/sys/kernel/core_pattern and restores it on drop.
struct Pattern(String);

impl Pattern {
    fn set(p: &str) -> Self {
        let old =
            std::fs::read_to_string("/proc/sys/kernel/core_pattern").expect("read core_pattern");
        std::fs::write("/proc/sys/kernel/core_pattern", p)
            .expect("set core_pattern (the suite runs as root)");
        Pattern(old)
    }
}

impl Drop for Pattern {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/core_pattern", self.0.trim_end());
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("privsep-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
    d
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: signalling a process this test started.
    unsafe { libc::kill(i32::try_from(pid).unwrap(), sig) };
}

/// Sends `sig` to `pid` until it has ended (std's fault handler absorbs a
/// first SIGSEGV: it resets the action for the next one).
fn kill_until_gone(pid: u32, sig: i32) {
    let start = Instant::now();
    loop {
        signal(pid, sig);
        for _ in 0..100 {
            if gone(pid) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{pid} never died"
        );
    }
}

/// Gone, or a zombie.
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
    }
}

/// Whether a core helper (`sh -c cat>DIR/...`) still runs.
fn helpers_running(dir: &Path) -> bool {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .any(|e| {
                    std::fs::read(e.path().join("cmdline"))
                        .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                        .unwrap_or(false)
                })
        })
        .unwrap_or(false)
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A dumpable process with core files allowed: the positive control.
fn ordinary_process() -> std::process::Child {
    Command::new("/bin/sh")
        .args(["-c", "ulimit -c unlimited; exec sleep 60"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn crashes_leave_no_core_file_whatever_the_core_pattern() {
    let _serial = CORE_PATTERN.lock().unwrap_or_else(|p| p.into_inner());
    let dir = temp_dir("cores");
    let patterns = [
        format!("{}/core.%e.%p", dir.display()),
        format!("|/bin/sh -c cat>{}/piped.%e.%p", dir.display()),
    ];
    for pattern in patterns {
        let _restore = Pattern::set(&pattern);
        // The vault (SIGSEGV: the first one is absorbed by std's stack
        // overflow handler, which resets the action; the second kills), the
        // broker application (SIGABRT) and the broker program (SIGABRT).
        let mut d = Driver::start(None, &[], None);
        d.store(&canary("CORE-"));
        let (vault, app) = (d.vault, d.pid());
        kill_until_gone(vault, libc::SIGSEGV);
        signal(app, libc::SIGABRT);
        let _ = d.child.wait();
        let mut cli = Command::new(suites::binary("broker"))
            .args(["demo", "--password-stdin", "--interval-ms", "50"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut cli.stdin.take().unwrap(), b"pw\n").unwrap();
        // Crashed while it reads through its vault, secrets in play.
        let mut out = std::io::BufReader::new(cli.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("#1 ") {
            line.clear();
            assert!(
                std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
                "the demo ended before its first read"
            );
        }
        signal(cli.id(), libc::SIGABRT);
        let status = cli.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGABRT)
        );
        // Positive control under the same pattern, crashed once it runs
        // `sleep` with core files allowed.
        let mut control = ordinary_process();
        let comm = format!("/proc/{}/comm", control.id());
        let start = Instant::now();
        while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the control never ran"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        signal(control.id(), libc::SIGSEGV);
        let _ = control.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !files_in(&dir)
            .iter()
            .any(|f| f.ends_with(&format!(".{}", control.id())))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Every core helper of the pipe pattern has finished writing.
        let start = Instant::now();
        while helpers_running(&dir) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "a core helper never ended"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let files = files_in(&dir);
        assert!(
            files
                .iter()
                .any(|f| f.ends_with(&format!(".{}", control.id()))),
            "positive control: the ordinary process left no core under {pattern:?}: {files:?}"
        );
        for pid in [vault, app, cli.id()] {
            assert!(
                !files.iter().any(|f| f.ends_with(&format!(".{pid}"))),
                "a core file for pid {pid} under {pattern:?}: {files:?}"
            );
        }
        for f in files {
            let _ = std::fs::remove_file(dir.join(f));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn gcore(pid: u32, dir: &Path, name: &str) -> PathBuf {
    let prefix = dir.join(name);
    let out = match Command::new("gcore")
        .arg("-o")
        .arg(&prefix)
        .arg(pid.to_string())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "gcore not found: this test takes root's core dump of each process with gdb's \
             gcore; install gdb (apt-get install gdb; .ci/run does) and run it again"
        ),
        Err(e) => panic!("cannot run gcore: {e}"),
    };
    let file = PathBuf::from(format!("{}.{pid}", prefix.display()));
    assert!(
        file.is_file(),
        "gcore wrote no core: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    file
}

#[test]
fn a_root_core_dump_of_either_process_holds_no_secret() {
    let dir = temp_dir("gcore");
    let mut d = Driver::start(None, &[], None);
    let der = d.public_key();
    let rsa = openssl::rsa::Rsa::public_key_from_der(&der).unwrap();
    let secret = canary("GCORE-SECRET-");
    let control = canary("GCORE-CONTROL-");
    assert_eq!(d.ask(&format!("plant {}", hex(&control))), "planted");
    d.store(&secret);
    for _ in 0..10 {
        assert!(d.ask("read").starts_with("read "));
    }
    // The private numbers, found from the live process first.
    let mem = scan::read(d.vault).unwrap();
    let f = factors(&mem, rsa.n(), usize::try_from(rsa.size()).unwrap() / 2);
    assert!(f.len() >= 2, "the primes must be found in the live vault");
    let private = derive(rsa.n(), rsa.e(), &f[0], &f[1]);
    let vault_core = gcore(d.vault, &dir, "vault");
    let app_core = gcore(d.pid(), &dir, "app");
    for (core, who) in [(&vault_core, "vault"), (&app_core, "broker application")] {
        assert_eq!(
            scan::find_in_file(core, &secret).unwrap(),
            0,
            "{who}'s core holds the secret"
        );
        for (name, v) in &private.numbers {
            let be = v.to_vec();
            let n = scan::find_in_file(core, &be).unwrap()
                + scan::find_in_file(core, &le(&be)).unwrap();
            assert_eq!(n, 0, "{who}'s core holds {name}");
        }
    }
    // Positive controls: what is in ordinary memory is in the dumps.
    assert!(
        scan::find_in_file(&app_core, &control).unwrap() > 0,
        "the planted control is missing from the core"
    );
    assert!(
        scan::find_in_file(&vault_core, &der).unwrap() > 0,
        "the public key is missing from the vault's core"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs the attacker as `nobody` against `pids`; returns its report lines.
fn attack(dir: &Path, pids: &[u32]) -> Vec<String> {
    let out = Command::new(dir.join("attacker"))
        .args(pids.iter().map(u32::to_string))
        .uid(suites::NOBODY)
        .gid(suites::NOBODY)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn an_unprivileged_process_of_the_same_uid_cannot_read_either_process() {
    let dir = suites::copy_for_nobody(&["broker", "vault", "residue-driver", "attacker"]);
    let mut d = Driver::start(Some(&dir), &[], Some(suites::NOBODY));
    d.store(&canary("UNPRIV-"));
    assert!(d.ask("read").starts_with("read "));
    // The control: an ordinary, dumpable process of the same uid.
    let mut control = Command::new("sleep")
        .arg("60")
        .uid(suites::NOBODY)
        .gid(suites::NOBODY)
        .spawn()
        .unwrap();
    let (vault, app, ctl) = (d.vault, d.pid(), control.id());
    for pid in [vault, app, ctl] {
        assert_eq!(
            suites::proc_status_field(pid, "Uid")
                .unwrap()
                .split_whitespace()
                .next(),
            Some("65534")
        );
    }
    let lines = attack(&dir, &[vault, app, ctl]);
    let result = |pid: u32, what: &str| -> String {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{pid} {what} ")))
            .cloned()
            .unwrap_or_else(|| panic!("no report of {what} on {pid}: {lines:?}"))
    };
    for what in ["mem", "ptrace", "process_vm_readv", "fd", "maps"] {
        assert!(
            result(ctl, what).ends_with(" ok"),
            "positive control: {what} on an ordinary process failed: {lines:?}"
        );
        for (pid, who) in [(vault, "vault"), (app, "broker application")] {
            let r = result(pid, what);
            assert!(r.contains(" denied "), "{who}: {what} was allowed: {r}");
        }
    }
    assert!(
        result(vault, "ring-fd").contains(" denied "),
        "the ring fd of the vault was opened: {lines:?}"
    );
    let _ = control.kill();
    let _ = control.wait();
    drop(d);
    let _ = std::fs::remove_dir_all(dir);
}
