//! A tracer that follows every fork and clone of an application using the
//! broker library is not handed the vault (it is started with
//! `CLONE_UNTRACED`). Alone in its own test binary: its tracer waits for any
//! child (`waitpid(-1)`), which would steal other tests' children.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

#[test]
// The tracer reaps the driver with waitpid(-1), which std cannot know of.
#[allow(clippy::zombie_processes)]
fn a_tracer_that_follows_every_fork_of_the_broker_is_not_handed_the_vault() {
    // The application (which does not check for tracers itself) is traced
    // with PTRACE_O_TRACEFORK | TRACEVFORK | TRACECLONE: every process and
    // thread it creates would be attached at birth, but for CLONE_UNTRACED.
    use std::sync::mpsc;
    let (tx, rx) = mpsc::channel::<(u32, Vec<String>)>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let tracer = std::thread::spawn(move || {
        let mut cmd = Command::new(suites::binary("residue-driver"));
        // SAFETY: PTRACE_TRACEME between fork and exec; no pointers.
        unsafe {
            cmd.pre_exec(|| {
                if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let mut events = Vec::new();
        let mut status = 0;
        let opts = libc::PTRACE_O_TRACEFORK
            | libc::PTRACE_O_TRACEVFORK
            | libc::PTRACE_O_TRACECLONE
            | libc::PTRACE_O_EXITKILL;
        // SAFETY: ptrace requests on our own tracee, from this thread (its
        // tracer); waitpid into a live local.
        unsafe {
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, opts);
            libc::ptrace(libc::PTRACE_CONT, pid, 0, 0);
        }
        let mut stdin = child.stdin.take().unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut out, &mut line).unwrap();
            line
        });
        // Service every stop until the driver is up (it says "ready").
        while !reader.is_finished() {
            // SAFETY: as above.
            let w = unsafe { libc::waitpid(-1, &mut status, libc::__WALL | libc::WNOHANG) };
            if w <= 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
            let event = (status >> 16) & 0xff;
            let sig = if libc::WIFSTOPPED(status) {
                libc::WSTOPSIG(status)
            } else {
                0
            };
            if event == libc::PTRACE_EVENT_CLONE {
                events.push("clone".to_owned());
            } else if event == libc::PTRACE_EVENT_FORK || event == libc::PTRACE_EVENT_VFORK {
                events.push("fork".to_owned());
            }
            if libc::WIFSTOPPED(status) {
                // Pass real signals on; swallow the stops ptrace makes.
                let pass = if event != 0 || sig == libc::SIGSTOP || sig == libc::SIGTRAP {
                    0
                } else {
                    sig
                };
                // SAFETY: as above.
                unsafe { libc::ptrace(libc::PTRACE_CONT, w, 0, pass) };
            }
        }
        let ready = reader.join().unwrap();
        events.push(ready.trim().to_owned());
        tx.send((child.id(), events)).unwrap();
        let _ = stop_rx.recv();
        let _ = writeln!(stdin, "exit");
        drop(stdin);
        // Keep servicing stops until the driver has exited.
        loop {
            // SAFETY: as above.
            let w = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
            if w == -1 {
                break;
            }
            if libc::WIFSTOPPED(status) {
                // SAFETY: as above.
                unsafe { libc::ptrace(libc::PTRACE_CONT, w, 0, 0) };
            }
        }
    });
    let (driver, events) = rx.recv().unwrap();
    let ready = events.last().cloned().unwrap_or_default();
    let vault: u32 = ready
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the traced driver did not start its vault: {events:?}"));
    // Positive control: the tracer was handed the driver's threads.
    assert!(
        events.iter().any(|e| e == "clone"),
        "no clone event at all: {events:?}"
    );
    assert!(
        !events.iter().any(|e| e == "fork"),
        "the vault was handed to the tracer: {events:?}"
    );
    assert_eq!(
        suites::proc_status_field(vault, "TracerPid").as_deref(),
        Some("0")
    );
    assert_eq!(
        suites::proc_status_field(vault, "PPid").as_deref(),
        Some(driver.to_string().as_str())
    );
    stop_tx.send(()).unwrap();
    tracer.join().unwrap();
}
