//! The same protection for the program that embeds the broker (the `broker`
//! program itself, or an application): [`protect_process`], one call, first
//! thing in `main`, before any thread exists.
//!
//! - **Installed execute-only** (root-owned, mode 0711, as `make install`
//!   puts it): the user runs a program they cannot read, so the kernel made
//!   it non-dumpable before its first instruction. Nothing to do but check
//!   that no tracer attached before the `execve` (such an attachment
//!   survives it).
//! - **Started from a file its user can read** (a build directory, `make
//!   demo`): it was dumpable from its `execve` until its first
//!   `PR_SET_DUMPABLE 0`. It re-executes itself from an execute-only sealed
//!   copy (see [`super::image`]) before it creates a ring or reads a
//!   secret: that ends every `/proc/PID/mem` an attacker opened in those
//!   first moments (it points at the old, dead memory), and the tracer check
//!   after it ends every early tracer. It cannot undo what such an attacker
//!   *wrote* into it in those moments, which is why [`Protection::warning`]
//!   says so, with the command that fixes it.
//! - **Root** (or a process with `CAP_DAC_OVERRIDE` / `CAP_DAC_READ_SEARCH`):
//!   every file is readable to it, so the kernel's protection cannot apply;
//!   and a process of the same uid is root, which can read anything anyway.
//!
//! The vault binary is resolved and trust-checked **before** the re-exec,
//! while the program's own path still means something (afterwards
//! `/proc/self/exe` is the memfd), and its prepared image is handed across
//! the exec as a descriptor; [`crate::Broker::spawn`] then uses it.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use common::harden::{self, HardenError};
use common::sys::cvt;

use super::image::{self, Image, ImageError};
use super::{find_vault, LaunchError};

/// Names of the environment variables that carry the handoff across the
/// re-exec (removed from the environment as soon as they are read).
const ENV_VAULT_FD: &str = "PRIVSEP_VAULT_REEXEC_VAULT_FD";
const ENV_VAULT_PATH: &str = "PRIVSEP_VAULT_REEXEC_VAULT_PATH";
const ENV_FROM: &str = "PRIVSEP_VAULT_REEXEC_FROM";
const ENV_OWN: &str = "PRIVSEP_VAULT_REEXEC_VAULT_OWN";

/// The vault image prepared by [`protect_process`], for [`crate::Broker`].
static VAULT: OnceLock<Arc<Image>> = OnceLock::new();

/// The vault image [`protect_process`] prepared, if it ran.
pub fn protected_vault() -> Option<Arc<Image>> {
    VAULT.get().cloned()
}

/// What protects this process from other processes of its uid, from its
/// first instruction on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    /// Started from a file its user cannot read (installed execute-only):
    /// non-dumpable from its first instruction.
    ExecuteOnly,
    /// Started from a file its user can read (`from`), then re-executed
    /// from an execute-only sealed copy: non-dumpable since. Its first
    /// moments were open to processes of its uid.
    Reexecuted {
        /// The file it was first started from.
        from: PathBuf,
    },
    /// Running as root, or with a capability that reads every file: the
    /// kernel's execute-only protection cannot apply, and the processes of
    /// the same uid are root's.
    Privileged,
}

impl Protection {
    /// One line for a person: what is in force.
    pub fn describe(&self) -> String {
        match self {
            Self::ExecuteOnly => {
                "installed execute-only: non-dumpable from its first instruction".into()
            }
            Self::Reexecuted { .. } => "started from a readable file, re-executed from an \
                 execute-only sealed copy: non-dumpable since, not in its first moments"
                .into(),
            Self::Privileged => "running as root: every file is readable to it, so \
                 execute-only protects nothing, and other processes of its uid are root"
                .into(),
        }
    }

    /// What the user should know and do, when the protection is partial.
    pub fn warning(&self) -> Option<String> {
        match self {
            Self::Reexecuted { from } => Some(format!(
                "warning: {} can be read by the user running it, so in its first moments, \
                 before it re-executed itself from an execute-only copy, another process of \
                 your user could have attached to it or written into its memory, and nothing \
                 it does later can undo that. Install it root-owned and execute-only (mode \
                 0711) to close that window: for this project's broker, `sudo make install` \
                 (then run /usr/local/bin/broker); a program you cannot read is protected by \
                 the kernel from its first instruction.",
                from.display()
            )),
            _ => None,
        }
    }
}

/// Errors of [`protect_process`].
#[derive(Debug, thiserror::Error)]
pub enum ProtectError {
    /// Hardening failed (non-dumpable, no core files), or a tracer is
    /// attached to this process.
    #[error(transparent)]
    Harden(#[from] HardenError),
    /// `/proc/self/exe` could not be opened to copy the program.
    #[error("cannot find this program's own file")]
    OwnFile(#[source] io::Error),
    /// The execute-only copy of this program could not be made (the
    /// kernel refuses executable memfds, say: the message says what to do).
    #[error("cannot re-execute from an execute-only copy")]
    Image(#[source] ImageError),
    /// A step of the re-exec failed.
    #[error("cannot re-execute from an execute-only copy: {what}")]
    Reexec {
        /// Which step.
        what: &'static str,
        /// The system call's error.
        #[source]
        source: io::Error,
    },
    /// The re-exec's handoff variables are set, but this process is not a
    /// re-executed copy: someone set them to slip a vault past the check.
    #[error("{ENV_VAULT_FD} is set, but this process was not started from its own execute-only copy: the variable is forged or stale; unset it")]
    ForgedHandoff,
    /// The handoff variable does not hold a usable descriptor.
    #[error("{ENV_VAULT_FD}={value:?} is not a descriptor number")]
    BadHandoff {
        /// Its value.
        value: String,
    },
    /// [`protect_process`] was called a second time.
    #[error("protect_process must be called once, before any vault is started")]
    Twice,
}

/// Protects this process from other processes of its uid, from as early as
/// it can, and prepares the vault (`vault`, or the default location) for
/// [`crate::Broker::spawn`]. Call it first thing in `main`, before any
/// thread is started; it may re-execute the program (with the same
/// arguments and environment), so nothing before it should have effects.
///
/// On success, no tracer is attached and the process is non-dumpable; the
/// returned [`Protection`] says since when.
pub fn protect_process(vault: Option<&Path>) -> Result<Protection, LaunchError> {
    let dumpable_at_start = harden::is_dumpable().map_err(ProtectError::from)?;
    harden::harden_process().map_err(ProtectError::from)?;
    if VAULT.get().is_some() {
        return Err(ProtectError::Twice.into());
    }
    let privileged = harden::can_read_every_file();
    if dumpable_at_start && !privileged {
        // Under fs.suid_dumpable=1 no execute-only file or copy protects:
        // say so, rather than fail later on a copy that did not help (a
        // "forged" handoff) or a file it cannot read to copy.
        if let Some(e) = harden::execute_only_disabled(harden::suid_dumpable()) {
            return Err(ProtectError::from(e).into());
        }
    }
    if let Some((image, from)) = take_handoff()? {
        // The second image, started from our execute-only copy.
        if dumpable_at_start && !privileged {
            return Err(ProtectError::ForgedHandoff.into());
        }
        harden::refuse_if_traced().map_err(ProtectError::from)?;
        let _ = VAULT.set(Arc::new(image));
        return Ok(if privileged {
            Protection::Privileged
        } else {
            Protection::Reexecuted { from }
        });
    }
    let path = match vault {
        Some(p) => p.to_owned(),
        None => find_vault()?,
    };
    let image = Image::prepare(&path, c"vault").map_err(LaunchError::Image)?;
    if !dumpable_at_start || privileged {
        harden::refuse_if_traced().map_err(ProtectError::from)?;
        let _ = VAULT.set(Arc::new(image));
        return Ok(if privileged {
            Protection::Privileged
        } else {
            Protection::ExecuteOnly
        });
    }
    Err(reexec(image).into())
}

/// Closes every descriptor this process inherited above 2, but the vault
/// image its previous image handed across the protective re-exec (named by
/// the handoff variable, which [`protect_process`] then checks: kept here
/// only until a forged one is refused).
///
/// For a program that owns its whole process, as the `broker` program
/// does: call it first thing in `main`. Its filter lets it signal through
/// any pidfd it holds (`pidfd_send_signal` cannot be pinned to a
/// descriptor), so it must hold none but its vaults'; an inherited pidfd
/// or `/proc/PID` directory would let it signal that process. An
/// application that embeds the library does not call it: its descriptors
/// are its own.
pub fn close_inherited_fds() -> io::Result<()> {
    let keep: Option<libc::c_uint> = std::env::var(ENV_VAULT_FD)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|fd| *fd > 2);
    let close = |from: libc::c_uint, to: libc::c_uint| {
        // SAFETY: close_range takes integers; nothing in this process holds
        // one of these descriptors (main has only begun, no thread exists).
        cvt(unsafe { libc::syscall(libc::SYS_close_range, from, to, 0) }).map(drop)
    };
    match keep {
        Some(fd) => {
            if fd > 3 {
                close(3, fd - 1)?;
            }
            close(fd + 1, libc::c_uint::MAX)
        }
        None => close(3, libc::c_uint::MAX),
    }
}

/// Reads (and removes) the handoff variables of a re-executed image.
fn take_handoff() -> Result<Option<(Image, PathBuf)>, LaunchError> {
    let Some(value) = std::env::var_os(ENV_VAULT_FD) else {
        return Ok(None);
    };
    let path = std::env::var_os(ENV_VAULT_PATH).unwrap_or_default();
    let from = std::env::var_os(ENV_FROM).unwrap_or_default();
    let users_own = std::env::var_os(ENV_OWN).is_some_and(|v| v == "1");
    // Single-threaded (the documented precondition): nothing reads the
    // environment concurrently.
    for var in [ENV_VAULT_FD, ENV_VAULT_PATH, ENV_FROM, ENV_OWN] {
        std::env::remove_var(var);
    }
    // Only our own first image hands over, and only to its execute-only
    // copy: anyone else setting these variables (for an installed program,
    // say) is forging a vault past the trust check.
    if !Image::running_from_sealed_copy() {
        return Err(ProtectError::ForgedHandoff.into());
    }
    let text = value.to_string_lossy().into_owned();
    let fd: RawFd = text
        .parse()
        .ok()
        .filter(|fd| *fd > 2)
        .ok_or(ProtectError::BadHandoff {
            value: text.clone(),
        })?;
    // SAFETY: F_GETFD only queries the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(ProtectError::BadHandoff { value: text }.into());
    }
    // SAFETY: the descriptor is open (checked above) and was handed to this
    // image by its previous one, which kept no other owner; from here it is
    // ours. Close-on-exec again, so it reaches no vault or other program.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: F_SETFD on our own descriptor.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) }).map_err(
        |source| ProtectError::Reexec {
            what: "taking the vault descriptor",
            source,
        },
    )?;
    let image =
        Image::from_handoff(fd, PathBuf::from(path), users_own).map_err(LaunchError::Image)?;
    Ok(Some((image, PathBuf::from(from))))
}

/// Re-executes this program from an execute-only sealed copy of itself,
/// handing `vault` across. Returns only on failure.
fn reexec(vault: Image) -> ProtectError {
    let step = |what| move |source| ProtectError::Reexec { what, source };
    // The running program's own file, whatever its path now holds.
    let own = match std::fs::File::open("/proc/self/exe") {
        Ok(f) => f,
        Err(e) => return ProtectError::OwnFile(e),
    };
    let from = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let name = from
        .file_name()
        .and_then(|n| CString::new(n.as_bytes()).ok())
        .unwrap_or_else(|| c"broker".to_owned());
    let copy = match image::sealed_copy(own, &from, &name) {
        Ok(c) => c,
        Err(e) => return ProtectError::Image(e),
    };
    let vault_path = vault.path().as_os_str().to_owned();
    let users_own = if vault.users_own() { "1" } else { "0" };
    let vault_fd = vault.into_fd();
    // The vault's image crosses the exec: not close-on-exec.
    // SAFETY: F_SETFD on our own descriptor.
    if let Err(e) = cvt(unsafe { libc::fcntl(vault_fd.as_raw_fd(), libc::F_SETFD, 0) }) {
        return step("keeping the vault descriptor open")(e);
    }
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| {
            ![ENV_VAULT_FD, ENV_VAULT_PATH, ENV_FROM, ENV_OWN].contains(&k.to_str().unwrap_or(""))
        })
        .collect();
    env.push((ENV_OWN.into(), users_own.into()));
    env.push((ENV_VAULT_FD.into(), vault_fd.as_raw_fd().to_string().into()));
    env.push((ENV_VAULT_PATH.into(), vault_path));
    env.push((ENV_FROM.into(), from.into_os_string()));
    let cstr = |v: Vec<u8>| CString::new(v).unwrap_or_default();
    let argv: Vec<CString> = std::env::args_os().map(|a| cstr(a.into_vec())).collect();
    let envp: Vec<CString> = env
        .into_iter()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            cstr(kv)
        })
        .collect();
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: every pointer array is NUL-terminated and points at live
    // CStrings; on success this process image is replaced.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            copy.as_raw_fd(),
            c"".as_ptr(),
            argv_p.as_ptr(),
            envp_p.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    step("execveat")(io::Error::last_os_error())
}
