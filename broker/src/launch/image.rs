//! Step 2: what will run, as a descriptor that is never looked up again.
//!
//! At `execve` the kernel makes a process non-dumpable from its first
//! instruction when its program file is not readable by the user running it
//! (fs/exec.c, `would_dump`). So:
//!
//! - a vault this user **cannot** read (installed root-owned, mode 0711) is
//!   run from the `O_PATH` descriptor the trust check opened: it cannot be
//!   copied, and needs no copy;
//! - a vault this user **can** read is copied into a memfd that is then made
//!   execute-only (mode 0111) and sealed (`F_SEAL_WRITE | F_SEAL_SHRINK |
//!   F_SEAL_GROW | F_SEAL_SEAL`, and `F_SEAL_EXEC` where the kernel has it):
//!   the copy can never change, and running it is like running an installed
//!   execute-only file. This is runc's pattern for its own binary.
//!
//! Where the kernel refuses executable memfds (`vm.memfd_noexec = 2`) the
//! error says so and what to do: never a fallback to running the readable
//! file, except for a broker that reads every file anyway (root), for which
//! none of this protects anything and which says what it runs.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use common::seal::F_SEAL_EXEC;
use common::sys::cvt;

use super::trust::{self, TrustError};

/// `MFD_EXEC` (Linux 6.3): ask for an executable memfd explicitly, where
/// the `vm.memfd_noexec` sysctl would otherwise make it non-executable.
const MFD_EXEC: libc::c_uint = 0x0010;
/// The seals of an execute-only copy; `F_SEAL_EXEC` is added where known.
pub const COPY_SEALS: libc::c_int =
    libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
/// Largest program copied (the vault is a few MiB; debug builds tens).
const MAX_PROGRAM: u64 = 1 << 30;

/// Errors of preparing a program to run.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file failed the trust check, or was not found: the message
    /// names the path and the reason.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The file is readable by this user, so it must run from an
    /// execute-only copy, but the kernel refuses executable memfds.
    #[error("the kernel refuses executable memfds (the vm.memfd_noexec sysctl is 2), so {path} cannot be run from an execute-only copy; install it execute-only instead (`sudo make install`), or set vm.memfd_noexec to 0 or 1")]
    NoExecMemfd {
        /// The program.
        path: PathBuf,
        /// The `memfd_create` error.
        #[source]
        source: io::Error,
    },
    /// A step of making the execute-only sealed copy failed.
    #[error("cannot make an execute-only copy of {path}: {step}")]
    Copy {
        /// The program.
        path: PathBuf,
        /// Which step (creating, writing, sealing, ...).
        step: &'static str,
        /// The system call's error.
        #[source]
        source: io::Error,
    },
    /// The file's size changed while it was copied (someone is writing it).
    #[error(
        "{path} changed while it was being copied (expected {expected} bytes, copied {copied})"
    )]
    Changed {
        /// The program.
        path: PathBuf,
        /// Its size when the copy began.
        expected: u64,
        /// The bytes copied.
        copied: u64,
    },
    /// The file is larger than any program this project builds (1 GiB).
    #[error("{path} is larger than {MAX_PROGRAM} bytes; refusing to copy it")]
    TooLarge {
        /// The program.
        path: PathBuf,
    },
    /// The vault descriptor handed across [`crate::protect_process`]'s
    /// re-exec is not what the first image prepared.
    #[error("the program descriptor handed across the re-exec ({what}) is not an execute-only image: {reason}")]
    BadHandoff {
        /// What was handed over (its path).
        what: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// How the program is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// From an execute-only, sealed memfd copy of a file this user can read.
    SealedCopy,
    /// From the installed file itself, which this user cannot read.
    ExecuteOnly,
    /// From the checked file itself, readable: only for a broker that reads
    /// every file (root), where the kernel refuses executable memfds.
    Direct,
}

/// A program ready to be run with `execveat(fd, "", ..., AT_EMPTY_PATH)`.
#[derive(Debug)]
pub struct Image {
    fd: OwnedFd,
    path: PathBuf,
    kind: ImageKind,
    /// The file belongs to the (non-root) user running the broker: any of
    /// that user's processes could have changed it before it was copied.
    users_own: bool,
}

fn euid() -> libc::uid_t {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

impl Image {
    /// Trust-checks the program at `path` and prepares it: the file itself
    /// if this user cannot read it, else an execute-only sealed copy named
    /// `name` (the process's name after the exec, `memfd:NAME`).
    pub fn prepare(path: &Path, name: &CStr) -> Result<Self, ImageError> {
        let t = trust::open_trusted(path)?;
        let users_own = t.stat.st_uid == euid() && euid() != 0;
        match trust::openat(
            t.dir.as_fd(),
            osstr(&t.name),
            libc::O_RDONLY | libc::O_NOFOLLOW,
        ) {
            // The user's own file, unreadable to them: its owner (any of
            // their processes) can chmod it and change it at any time, and
            // it would run from the live file. Refused rather than trusted.
            Err(e) if e.raw_os_error() == Some(libc::EACCES) && users_own => {
                Err(TrustError::Refused {
                    path: t.path.clone(),
                    reason: format!(
                        "{} is your own file but not readable to you: any process of yours \
                         could change it after it is checked, and it cannot be copied; make \
                         it readable (it then runs from a sealed copy) or install it \
                         root-owned (`sudo make install`)",
                        t.path.display()
                    ),
                }
                .into())
            }
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => Ok(Self {
                fd: t.file,
                path: t.path,
                kind: ImageKind::ExecuteOnly,
                users_own: false,
            }),
            Err(source) => Err(ImageError::Copy {
                path: t.path,
                step: "opening it for reading",
                source,
            }),
            Ok(readable) => {
                let st = trust::fstat(readable.as_fd()).map_err(|source| ImageError::Copy {
                    path: t.path.clone(),
                    step: "examining it",
                    source,
                })?;
                if (st.st_dev, st.st_ino) != (t.stat.st_dev, t.stat.st_ino) {
                    return Err(TrustError::Refused {
                        path: t.path.clone(),
                        reason: format!("{} changed while it was being checked", t.path.display()),
                    }
                    .into());
                }
                match sealed_copy(File::from(readable), &t.path, name) {
                    Ok(fd) => Ok(Self {
                        fd,
                        path: t.path,
                        kind: ImageKind::SealedCopy,
                        users_own,
                    }),
                    // Root reads every file: for it the copy protects
                    // nothing the checked file itself does not, so where the
                    // kernel refuses executable memfds it runs that file
                    // (and the demo says so). Anyone else gets the error.
                    Err(ImageError::NoExecMemfd { .. })
                        if common::harden::can_read_every_file() =>
                    {
                        Ok(Self {
                            fd: t.file,
                            path: t.path,
                            kind: ImageKind::Direct,
                            users_own,
                        })
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Takes a descriptor handed across the broker's own re-exec and checks
    /// that it is still what [`Image::prepare`] made: a sealed, execute-only
    /// memfd, or a root-owned file this user cannot read. `users_own` is
    /// what `prepare` found (a sealed copy no longer shows its file's owner).
    pub fn from_handoff(fd: OwnedFd, path: PathBuf, users_own: bool) -> Result<Self, ImageError> {
        let bad = |reason: String| ImageError::BadHandoff {
            what: path.display().to_string(),
            reason,
        };
        // SAFETY: F_GET_SEALS only reads the descriptor's seals.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        let st = trust::fstat(fd.as_fd()).map_err(|e| bad(e.to_string()))?;
        if seals >= 0 {
            if seals & COPY_SEALS != COPY_SEALS {
                return Err(bad(format!(
                    "a memfd with seals {}",
                    common::seal::seal_names(seals)
                )));
            }
            if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_mode & 0o7777 != 0o111 {
                return Err(bad(format!("a memfd of mode {:04o}", st.st_mode & 0o7777)));
            }
            return Ok(Self {
                fd,
                path,
                kind: ImageKind::SealedCopy,
                users_own,
            });
        }
        trust::check_open_file(fd.as_fd(), &path).map_err(|e| bad(e.to_string()))?;
        if st.st_uid != 0 || euid() == 0 {
            return Err(bad("a file that is not root's, run from itself".into()));
        }
        // Execute-only for us, or it would have been copied.
        let own = format!("/proc/self/fd/{}", fd.as_raw_fd());
        match std::fs::File::open(&own) {
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => {}
            _ => return Err(bad("a file this user can read, run from itself".into())),
        }
        Ok(Self {
            fd,
            path,
            kind: ImageKind::ExecuteOnly,
            users_own: false,
        })
    }

    /// Whether the file belongs to the (non-root) user running the broker.
    pub fn users_own(&self) -> bool {
        self.users_own
    }

    /// The descriptor to exec.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The program's path, as resolved by the trust check.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How it runs.
    pub fn kind(&self) -> ImageKind {
        self.kind
    }

    /// The descriptor itself (to hand it across an exec).
    pub(crate) fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Whether this process runs from an execute-only sealed copy made by
    /// `sealed_copy` (the broker's own re-exec): its program is a memfd
    /// (the device of every memfd) of mode 0111. No one can make such a
    /// copy of a program they cannot read, so an installed execute-only
    /// program never passes this.
    pub fn running_from_sealed_copy() -> bool {
        let exe = trust::openat(
            // SAFETY: AT_FDCWD with an absolute path.
            unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) },
            std::ffi::OsStr::new("/proc/self/exe"),
            libc::O_PATH,
        );
        // SAFETY: a static name; memfd_create makes a new descriptor.
        let probe = unsafe { libc::memfd_create(c"probe".as_ptr(), libc::MFD_CLOEXEC) };
        if probe == -1 {
            return false;
        }
        // SAFETY: just created, owned by no one else.
        let probe = unsafe { OwnedFd::from_raw_fd(probe) };
        match (exe, trust::fstat(probe.as_fd())) {
            (Ok(exe), Ok(memfd)) => trust::fstat(exe.as_fd()).is_ok_and(|st| {
                st.st_dev == memfd.st_dev
                    && st.st_mode & libc::S_IFMT == libc::S_IFREG
                    && st.st_mode & 0o7777 == 0o111
            }),
            _ => false,
        }
    }

    /// What a person reading the demo should know.
    pub fn describe(&self) -> String {
        let own = if self.users_own {
            " (a file of your own user: any process of your user could have replaced it \
             before it was copied; install it root-owned, `sudo make install`, for the \
             same-user promise)"
        } else {
            ""
        };
        match self.kind {
            ImageKind::SealedCopy => format!(
                "an execute-only sealed copy (memfd, mode 0111) of {}{own}",
                self.path.display()
            ),
            ImageKind::ExecuteOnly => {
                format!("{}, installed execute-only", self.path.display())
            }
            ImageKind::Direct => format!(
                "{} itself (the kernel refuses executable memfds; as root, a copy would protect nothing more){own}",
                self.path.display()
            ),
        }
    }
}

fn osstr(c: &CStr) -> &std::ffi::OsStr {
    std::os::unix::ffi::OsStrExt::from_bytes(c.to_bytes())
}

/// Copies the program in `src` (opened from `path`) into a new memfd named
/// `name`, makes the copy execute-only and seals it.
pub(crate) fn sealed_copy(mut src: File, path: &Path, name: &CStr) -> Result<OwnedFd, ImageError> {
    let step = |step: &'static str| {
        let path = path.to_owned();
        move |source| ImageError::Copy { path, step, source }
    };
    let size = src.metadata().map_err(step("examining it"))?.len();
    if size > MAX_PROGRAM {
        return Err(ImageError::TooLarge {
            path: path.to_owned(),
        });
    }
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: `name` is a live NUL-terminated string; memfd_create makes a new fd.
    let mut raw = unsafe { libc::memfd_create(name.as_ptr(), flags | MFD_EXEC) };
    if raw == -1 {
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // A kernel older than 6.3 does not know MFD_EXEC; there every
            // memfd may be executed.
            Some(libc::EINVAL) => {
                // SAFETY: as above.
                raw = cvt(unsafe { libc::memfd_create(name.as_ptr(), flags) })
                    .map_err(step("creating the memfd"))?;
            }
            Some(libc::EACCES) | Some(libc::EPERM) => {
                return Err(ImageError::NoExecMemfd {
                    path: path.to_owned(),
                    source: e,
                })
            }
            _ => return Err(step("creating the memfd")(e)),
        }
    }
    // SAFETY: `raw` was just returned by memfd_create and is owned by no one else.
    let memfd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut dst = File::from(memfd);
    let copied = io::copy(&mut src, &mut dst).map_err(step("copying it"))?;
    if copied != size {
        return Err(ImageError::Changed {
            path: path.to_owned(),
            expected: size,
            copied,
        });
    }
    let memfd = OwnedFd::from(dst);
    // SAFETY: fchmod on our own descriptor.
    cvt(unsafe { libc::fchmod(memfd.as_raw_fd(), 0o111) })
        .map_err(step("making it execute-only"))?;
    // SAFETY: F_ADD_SEALS takes an integer.
    let sealed = unsafe {
        libc::fcntl(
            memfd.as_raw_fd(),
            libc::F_ADD_SEALS,
            COPY_SEALS | F_SEAL_EXEC,
        )
    };
    if sealed == -1 {
        // Kernels older than 6.3 do not know F_SEAL_EXEC.
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, COPY_SEALS) })
            .map_err(step("sealing it"))?;
    }
    // SAFETY: F_GET_SEALS only reads.
    let seals = cvt(unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_GET_SEALS) })
        .map_err(step("reading its seals"))?;
    if seals & COPY_SEALS != COPY_SEALS {
        return Err(step("sealing it")(io::Error::other(format!(
            "seals {} after sealing",
            common::seal::seal_names(seals)
        ))));
    }
    Ok(memfd)
}
