//! The kernel setting `fs.suid_dumpable` and the execute-only protection.
//!
//! At `execve` of a file its user cannot read, the kernel gives the new
//! process the dumpability `fs.suid_dumpable` says (fs/exec.c: `would_dump`
//! marks the exec, `begin_new_exec` applies the setting): 0 (the default)
//! non-dumpable; 2 `SUID_DUMP_ROOT`, which the ptrace access check (and so
//! `/proc/PID/mem`, `maps`, `fd/N`) refuses to every process without
//! `CAP_SYS_PTRACE`; 1 an ordinary dumpable process, open to its uid: the
//! protection is gone. Both programs must then refuse to run and name the
//! setting as the cause, not something misleading (a "forged" handoff, a
//! readable file, a file they cannot copy); under 2 they must run.
//!
//! The setting is machine-wide (not per namespace), so this suite changes
//! it for the machine: run it under the suites' lock, like every suite. It
//! is put back by a guard on every path out of the test, and by a watchdog
//! process of its own process group (Ctrl-C does not reach it) that
//! restores it when the test process ends for any reason, a SIGKILL
//! included: it waits for the end of a pipe that only the test holds.
//! Everything here is in one test: no other test of this process may run
//! while the setting is changed.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use suites::NOBODY;

const SETTING: &str = "/proc/sys/fs/suid_dumpable";

/// `fs.suid_dumpable` changed for the life of the guard.
struct Setting {
    original: String,
    watchdog: Option<(Child, ChildStdin)>,
}

impl Setting {
    fn new() -> Self {
        let original = std::fs::read_to_string(SETTING)
            .expect("read fs.suid_dumpable")
            .trim()
            .to_owned();
        // Restores the setting when its stdin ends (the test process gone,
        // however it went); ignores the signals a terminal sends a job.
        let mut watchdog = Command::new("/bin/sh")
            .arg("-c")
            .arg(r#"trap '' INT TERM HUP QUIT; read _ignored; printf '%s\n' "$0" > /proc/sys/fs/suid_dumpable"#)
            .arg(&original)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the watchdog");
        let pipe = watchdog.stdin.take().expect("stdin");
        Setting {
            original,
            watchdog: Some((watchdog, pipe)),
        }
    }

    fn set(&self, value: &str) {
        std::fs::write(SETTING, format!("{value}\n")).expect("write fs.suid_dumpable");
        assert_eq!(
            std::fs::read_to_string(SETTING).unwrap().trim(),
            value,
            "fs.suid_dumpable did not take {value}"
        );
    }
}

impl Drop for Setting {
    fn drop(&mut self) {
        let _ = std::fs::write(SETTING, format!("{}\n", self.original));
        if let Some((mut child, pipe)) = self.watchdog.take() {
            drop(pipe);
            let _ = child.wait();
        }
    }
}

/// A fresh root-owned 0755 directory in the temp dir.
fn fixture_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("privsep-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    d
}

/// `make install-bins` of the build into `prefix`, and a root-owned
/// execute-only `sleep` beside it: a program that never hardens itself.
fn install(prefix: &Path) -> PathBuf {
    suites::install_bins(prefix);
    let sleep = prefix.join("bin/xo-sleep");
    let st = Command::new("install")
        .args(["-o", "root", "-g", "root", "-m", "0711", "/bin/sleep"])
        .arg(&sleep)
        .status()
        .unwrap();
    assert!(st.success(), "install sleep");
    sleep
}

/// Starts the execute-only `sleep` as `nobody`, and tells whether another
/// process of `nobody` could open its `/proc/PID/mem`, and who owns its
/// `/proc/PID/stat` (root when it is not dumpable by its uid).
fn probe(sleep: &Path) -> (String, u32) {
    let mut target = Command::new("/bin/sh")
        .arg("-c")
        .arg("exec \"$0\" 600")
        .arg(sleep)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = target.id();
    // Its exec is done when its name is the program's.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() != "xo-sleep")
    {
        assert!(Instant::now() < deadline, "xo-sleep never started");
        std::thread::yield_now();
    }
    let owner = std::fs::metadata(format!("/proc/{pid}/stat"))
        .unwrap()
        .uid();
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"if (exec 3< "/proc/$0/mem") 2>/dev/null; then echo opened; else echo refused; fi"#)
        .arg(pid.to_string())
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    let _ = target.kill();
    let _ = target.wait();
    (
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        owner,
    )
}

const CAUSE: &str = "the kernel setting fs.suid_dumpable=1 disables the execute-only protection";
const FIX: &str = "sudo sysctl fs.suid_dumpable=0";

#[test]
fn suid_dumpable_1_is_named_as_the_cause_and_2_still_protects() {
    let prefix = fixture_dir("suid-dumpable");
    let sleep = install(&prefix);
    let installed = prefix.join("bin/broker");
    let installed_vault = prefix.join("libexec/privsep-vault/vault");
    let build = suites::binaries_for_nobody();
    let setting = Setting::new();

    // 1: the window is open (the positive control: an execute-only
    // program really is open to its uid, so the refusals below are needed).
    setting.set("1");
    let (opened, owner) = probe(&sleep);
    assert_eq!(
        (opened.as_str(), owner),
        ("opened", NOBODY),
        "under 1, an execute-only program must be open to its uid"
    );
    for (what, program) in [
        ("installed", &installed),
        ("from the build", &build.join("broker")),
    ] {
        let (code, out, err) = suites::demo_once_as_nobody(program);
        assert_eq!(code, Some(1), "{what}: {out}\n{err}");
        assert!(err.contains(CAUSE) && err.contains(FIX), "{what}: {err}");
        for misleading in [
            "forged",
            "cannot find this program's own file",
            "can be read by",
        ] {
            assert!(!err.contains(misleading), "{what}: {err}");
        }
        assert!(!out.contains("[1/"), "{what}: it ran: {out}");
    }
    let (code, _, err) = suites::run_as_nobody(&installed_vault, &[], b"");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(CAUSE) && err.contains(FIX), "{err}");
    assert!(
        !err.contains("started from a file its user can read"),
        "{err}"
    );

    // 2: dumpable by root only; a process of the same uid is refused, and
    // both programs run.
    setting.set("2");
    let (opened, owner) = probe(&sleep);
    assert_eq!(
        (opened.as_str(), owner),
        ("refused", 0),
        "under 2, an execute-only program must be closed to its uid"
    );
    let (code, out, err) = suites::demo_once_as_nobody(&installed);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("broker: installed execute-only: non-dumpable from its first instruction"),
        "{out}"
    );
    let (code, out, err) = suites::demo_once_as_nobody(&build.join("broker"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("re-executed from an execute-only sealed copy"),
        "{out}"
    );
    let (code, _, err) = suites::run_as_nobody(&installed_vault, &[], b"");
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("--parent-pid is required"), "{err}");

    // 0, the default: closed as well.
    setting.set("0");
    let (opened, owner) = probe(&sleep);
    assert_eq!((opened.as_str(), owner), ("refused", 0));
    drop(setting);
    let _ = std::fs::remove_dir_all(prefix);
    let _ = std::fs::remove_dir_all(build);
}
