//! Process hardening shared by the broker and the vault.
//!
//! `PR_SET_DUMPABLE 0` closes `/proc/PID/mem`, `/proc/PID/fd/*` and ptrace to
//! processes of the same uid without `CAP_SYS_PTRACE`, and stops the kernel
//! from writing core dumps; `RLIMIT_CORE 0` stops core files even where a
//! core pattern pipes dumps to a helper that ignores dumpability. `execve`
//! resets dumpability, so each process must call [`harden_process`] itself,
//! first thing.

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

/// Whether the process is currently dumpable.
pub fn is_dumpable() -> Result<bool, HardenError> {
    // SAFETY: PR_GET_DUMPABLE takes no pointer arguments.
    cvt(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) })
        .map(|v| v != 0)
        .map_err(|source| HardenError::Prctl {
            op: "PR_GET_DUMPABLE",
            source,
        })
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
}
