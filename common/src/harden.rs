//! Process hardening shared by the broker and the vault.
//!
//! `PR_SET_DUMPABLE 0` closes `/proc/PID/mem`, `/proc/PID/fd/*` and ptrace to
//! processes of the same uid without `CAP_SYS_PTRACE`, and stops the kernel
//! from writing core dumps; `RLIMIT_CORE 0` stops core files even where a
//! core pattern pipes dumps to a helper that ignores dumpability. `execve`
//! resets dumpability, so each process must call [`harden_process`] itself,
//! first thing.
//!
//! That call comes too late to protect a program's first moments: until it
//! runs, a process of the same uid may stop the program, open its
//! `/proc/PID/mem` or attach with ptrace, and keep what it got. The kernel
//! closes that window itself when the program file is not readable by the
//! user who runs it (an execute-only file): see `broker::launch`. What a
//! program can still check on its own, once it is non-dumpable, is that no
//! tracer attached in the window ([`refuse_if_traced`]); and
//! [`can_read_every_file`] tells when the execute-only protection cannot
//! apply at all (root, or the DAC override capabilities).

use std::io;

use crate::sys::cvt;

/// Errors of a hardening step.
#[derive(Debug, thiserror::Error)]
pub enum HardenError {
    #[error("prctl({op}) failed")]
    Prctl {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("setrlimit(RLIMIT_CORE, 0) failed")]
    CoreLimit(#[source] io::Error),
    #[error("refusing to start: this process is being traced by pid {tracer} (TracerPid in /proc/self/status); a process that attached while it was starting could control it")]
    Traced { tracer: u32 },
    #[error("refusing to start: cannot tell whether this process is being traced (/proc/self/status has no readable TracerPid); is /proc mounted?")]
    TracerUnknown(#[source] io::Error),
    #[error("refusing to start: the kernel setting fs.suid_dumpable=1 disables the execute-only protection (a program its user cannot read still starts dumpable, open to every process of that user, as this one did); set it to 0, the default, or 2 (dumpable by root only): `sudo sysctl fs.suid_dumpable=0`")]
    SuidDumpable,
}

/// Makes the process non-dumpable and forbids core files.
pub fn harden_process() -> Result<(), HardenError> {
    set_dumpable(false)?;
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the live `zero` struct only.
    cvt(unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) }).map_err(HardenError::CoreLimit)?;
    Ok(())
}

/// Sets or clears `PR_SET_DUMPABLE`.
pub fn set_dumpable(dumpable: bool) -> Result<(), HardenError> {
    // SAFETY: PR_SET_DUMPABLE takes integer arguments only.
    cvt(unsafe {
        libc::prctl(
            libc::PR_SET_DUMPABLE,
            libc::c_ulong::from(dumpable),
            0,
            0,
            0,
        )
    })
    .map(drop)
    .map_err(|source| HardenError::Prctl {
        op: "PR_SET_DUMPABLE",
        source,
    })
}

/// Whether the process is currently open to processes of its own uid:
/// `PR_GET_DUMPABLE` is 1 (`SUID_DUMP_USER`). A process started from a file
/// its user cannot read gets the `fs.suid_dumpable` setting instead: 0, or
/// 2 (`SUID_DUMP_ROOT`), with which the kernel's ptrace access check (also
/// that of `/proc/PID/mem` and `fd/N`) refuses every process without
/// `CAP_SYS_PTRACE`, and core dumps are written only as root. Both count
/// as not open here.
pub fn is_dumpable() -> Result<bool, HardenError> {
    // SAFETY: PR_GET_DUMPABLE takes no pointer arguments.
    cvt(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) })
        .map(|v| v == 1)
        .map_err(|source| HardenError::Prctl {
            op: "PR_GET_DUMPABLE",
            source,
        })
}

/// The kernel setting `fs.suid_dumpable`, if it can be read.
pub fn suid_dumpable() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/fs/suid_dumpable")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// For a process that was open to its uid at start where it should have
/// been protected (it is not privileged): [`HardenError::SuidDumpable`]
/// when the kernel setting (`setting`, from [`suid_dumpable`]) is 1, the
/// cause; `None` when the caller's own explanation (a readable file, a
/// forged handoff) stands.
pub fn execute_only_disabled(setting: Option<u32>) -> Option<HardenError> {
    (setting == Some(1)).then_some(HardenError::SuidDumpable)
}

/// Sets `PR_SET_NO_NEW_PRIVS`: no execve can ever grant privileges again.
pub fn no_new_privs() -> Result<(), HardenError> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
        .map(drop)
        .map_err(|source| HardenError::Prctl {
            op: "PR_SET_NO_NEW_PRIVS",
            source,
        })
}

/// A field of `/proc/self/status` (the text after the colon, trimmed).
fn own_status_field(field: &str) -> io::Result<String> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)
                .and_then(|r| r.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no {field} field")))
}

/// The pid of the process tracing this one, if any (`TracerPid`).
pub fn tracer() -> io::Result<Option<u32>> {
    let v = own_status_field("TracerPid")?;
    let pid: u32 = v
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("TracerPid {v:?}")))?;
    Ok((pid != 0).then_some(pid))
}

/// Refuses to go on if a tracer is attached, or if that cannot be told.
///
/// A same-uid tracer that attached while the process was still dumpable
/// (even before its `execve`: the attachment survives it) keeps reading and
/// writing its registers after it has become non-dumpable; that is control.
/// Call once the process is non-dumpable, before any secret exists: from
/// then on no process of the same uid can attach.
pub fn refuse_if_traced() -> Result<(), HardenError> {
    match tracer() {
        Ok(None) => Ok(()),
        Ok(Some(tracer)) => Err(HardenError::Traced { tracer }),
        Err(e) => Err(HardenError::TracerUnknown(e)),
    }
}

/// `CAP_DAC_OVERRIDE` and `CAP_DAC_READ_SEARCH`, as bits of `CapEff`.
const DAC_CAPS: u64 = (1 << 1) | (1 << 2);

/// Whether this process may read every file whatever its mode (effective
/// uid 0, or `CAP_DAC_OVERRIDE` / `CAP_DAC_READ_SEARCH` in effect). Then the
/// kernel's execute-only protection cannot apply to the programs it starts:
/// the read check at `execve` always passes, and callers exempt it from
/// the check that it was protected from its first instruction. So it fails
/// closed: if the capability set cannot be read, the answer is no, and
/// that check applies.
pub fn can_read_every_file() -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    reads_every_file(euid, own_status_field("CapEff").ok().as_deref())
}

/// [`can_read_every_file`] for an effective uid and a `CapEff` value (hex),
/// `None` when it could not be read.
fn reads_every_file(euid: libc::uid_t, cap_eff: Option<&str>) -> bool {
    euid == 0
        || cap_eff
            .and_then(|v| u64::from_str_radix(v, 16).ok())
            .is_some_and(|caps| caps & DAC_CAPS != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hardened_child_is_not_dumpable_and_has_no_core_limit() {
        // Run in a child so the test runner itself stays dumpable.
        // SAFETY: the child only calls async-signal-safe functions and _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = harden_process().is_ok() && is_dumpable().ok() == Some(false);
            let mut lim = libc::rlimit {
                rlim_cur: 1,
                rlim_max: 1,
            };
            // SAFETY: getrlimit writes the live `lim`.
            let got = unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) } == 0;
            let code = if ok && got && lim.rlim_cur == 0 && lim.rlim_max == 0 {
                0
            } else {
                1
            };
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "status {status}"
        );
    }

    #[test]
    fn reading_every_file_is_root_or_a_dac_capability_and_unknown_is_no() {
        assert!(reads_every_file(0, None));
        assert!(reads_every_file(1000, Some("0000000000000002")));
        assert!(reads_every_file(1000, Some("0000000000000004")));
        assert!(!reads_every_file(1000, Some("0000000000000000")));
        assert!(!reads_every_file(1000, Some("00000000000000f9")));
        // Fails closed: an unreadable or garbled set is no capability.
        assert!(!reads_every_file(1000, None));
        assert!(!reads_every_file(1000, Some("zz")));
    }

    #[test]
    fn an_unreadable_status_counts_as_traced() {
        // In a child: /proc/self/status made unreadable by hiding /proc
        // behind an empty mount in a private mount namespace.
        // SAFETY: the child makes system calls and _exit only, and the
        // parent waits for its own child.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                let ok = libc::unshare(libc::CLONE_NEWNS) == 0
                    && libc::mount(
                        c"none".as_ptr(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) == 0
                    && libc::mount(
                        c"none".as_ptr(),
                        c"/proc".as_ptr(),
                        c"tmpfs".as_ptr(),
                        0,
                        std::ptr::null(),
                    ) == 0;
                let code = match (ok, refuse_if_traced()) {
                    (false, _) => 2,
                    (true, Err(HardenError::TracerUnknown(_))) => 0,
                    (true, _) => 1,
                };
                libc::_exit(code);
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            assert!(libc::WIFEXITED(status), "status {status}");
            match libc::WEXITSTATUS(status) {
                0 => {}
                2 => panic!(
                    "cannot hide /proc in a private mount namespace: run as root, as CI does"
                ),
                c => panic!("an unreadable status was not refused as TracerUnknown ({c})"),
            }
        }
        // Positive control: with /proc, the same check reads the status.
        assert!(!matches!(
            refuse_if_traced(),
            Err(HardenError::TracerUnknown(_))
        ));
    }

    #[test]
    fn only_suid_dumpable_1_is_named_as_what_disabled_the_execute_only_protection() {
        let e = execute_only_disabled(Some(1)).expect("1 disables it");
        assert!(matches!(e, HardenError::SuidDumpable));
        let msg = e.to_string();
        for words in [
            "fs.suid_dumpable=1 disables the execute-only protection",
            "set it to 0",
            "or 2",
            "sudo sysctl fs.suid_dumpable=0",
        ] {
            assert!(msg.contains(words), "{msg}");
        }
        // 0 and 2 leave a program its user cannot read closed to its uid;
        // an unknown setting blames nothing it cannot see.
        for other in [Some(0), Some(2), Some(7), None] {
            assert!(execute_only_disabled(other).is_none(), "{other:?}");
        }
    }

    #[test]
    fn the_tracer_check_reads_this_process_and_a_traced_child() {
        // The test runner is not traced (unless someone runs it under a
        // debugger, which this check would rightly refuse).
        if tracer().unwrap().is_none() {
            assert!(refuse_if_traced().is_ok());
        }
        // A child that asks to be traced by its parent sees its tracer.
        // SAFETY: the child only calls async-signal-safe functions and
        // _exit; the parent waits for its own child.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
                libc::raise(libc::SIGSTOP);
                // Read after the stop: TracerPid is the parent's tracing
                // thread (a thread id, not the parent's pid).
                let code = match refuse_if_traced() {
                    Err(HardenError::Traced { tracer }) if tracer > 0 => 0,
                    _ => 1,
                };
                libc::_exit(code);
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            assert!(libc::WIFSTOPPED(status), "status {status}");
            libc::ptrace(libc::PTRACE_CONT, pid, 0, 0);
            libc::waitpid(pid, &mut status, 0);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "the traced child did not see its tracer: {status}"
            );
        }
    }
}
