//! Step 1: the vault binary is trusted before it runs.
//!
//! The path is resolved once (symbolic links followed, as OpenSSH does for
//! its keys), then walked from `/` one component at a time with
//! `openat(O_PATH | O_NOFOLLOW)`, each step relative to the descriptor of
//! the directory checked before it. Every check is made on the descriptor
//! that was opened (`fstat`), so what is checked is what is used: a
//! component replaced after the resolution fails the walk instead of being
//! trusted. The rules:
//!
//! - every directory and the file are owned by root or by the broker's
//!   effective uid;
//! - no directory is writable by its group or by others, except a
//!   root-owned directory with the sticky bit (such as `/tmp`) holding an
//!   entry owned by root or the broker's user: the sticky bit stops others
//!   from renaming or removing it;
//! - the file is a regular file, not writable by its group or others, not
//!   set-user-ID or set-group-ID, and executable.
//!
//! Each refusal names the path it is about and the reason.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use common::sys::cvt;

/// Errors of the trust check.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file, or a directory on its path, does not exist.
    #[error("vault binary {path} not found")]
    NotFound {
        /// The path given.
        path: PathBuf,
        /// The error of the step that did not find it.
        #[source]
        source: io::Error,
    },
    /// The file or a directory above it fails the check: the reason names
    /// which and why (its owner, a mode writable by others, not a regular
    /// file, set-user-ID).
    #[error("refusing the vault binary {path}: {reason}")]
    Refused {
        /// The path given.
        path: PathBuf,
        /// What is wrong, and with which file or directory.
        reason: String,
    },
    /// A system call of the check failed.
    #[error("cannot check the vault binary {path}: {op} {at}")]
    Io {
        /// The path given.
        path: PathBuf,
        /// The call (`open`, `fstat`, ...).
        op: &'static str,
        /// The file or directory it was made on.
        at: PathBuf,
        /// Its error.
        #[source]
        source: io::Error,
    },
}

/// A file that passed the trust check: its `O_PATH` descriptor, the
/// descriptor of its directory, and its metadata as checked.
#[derive(Debug)]
pub struct Trusted {
    /// `O_PATH | O_NOFOLLOW` descriptor of the file itself.
    pub file: OwnedFd,
    /// `O_PATH` descriptor of the directory that holds it.
    pub dir: OwnedFd,
    /// The file's name in that directory.
    pub name: CString,
    /// The resolved path (for messages and `ps`).
    pub path: PathBuf,
    /// `fstat` of `file`.
    pub stat: libc::stat,
}

/// `fstat` of a descriptor.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value for the kernel to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into the live local `st` only.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// `openat(dir, name, flags | O_CLOEXEC)` as an owned descriptor.
pub(crate) fn openat(dir: BorrowedFd<'_>, name: &OsStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
    // SAFETY: `c` is a live NUL-terminated string; openat creates a new fd.
    let fd = cvt(unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by openat and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn euid() -> libc::uid_t {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

const S_IWGRP: libc::mode_t = 0o020;
const S_IWOTH: libc::mode_t = 0o002;

/// Whether `uid` may own a trusted file or directory.
fn trusted_owner(uid: libc::uid_t) -> bool {
    uid == 0 || uid == euid()
}

fn mode_of(st: &libc::stat) -> libc::mode_t {
    st.st_mode & 0o7777
}

/// The owner rule for `at`.
fn check_owner(st: &libc::stat, at: &Path) -> Result<(), String> {
    if trusted_owner(st.st_uid) {
        return Ok(());
    }
    Err(format!(
        "{} is owned by uid {}, neither root nor the broker's user (uid {})",
        at.display(),
        st.st_uid,
        euid()
    ))
}

/// The rule for a directory `dir` (at `at`) that holds `child`: not
/// writable by its group or others, unless it is root-owned and sticky and
/// the child is owned by root or the broker's user.
fn check_dir_holding(dir: &libc::stat, at: &Path, child: &libc::stat) -> Result<(), String> {
    let mode = mode_of(dir);
    if mode & (S_IWGRP | S_IWOTH) == 0 {
        return Ok(());
    }
    let sticky = mode & libc::S_ISVTX != 0;
    if sticky && dir.st_uid == 0 && trusted_owner(child.st_uid) {
        return Ok(());
    }
    let who = if mode & S_IWOTH != 0 {
        "others"
    } else {
        "its group"
    };
    let why = if sticky && dir.st_uid != 0 {
        ", and though sticky it is not owned by root"
    } else if sticky {
        ", and though sticky it holds an entry owned by another user"
    } else {
        " without the sticky bit"
    };
    Err(format!(
        "{} is writable by {who} (mode {mode:04o}){why}: anyone who can write there can replace what it holds",
        at.display()
    ))
}

/// The rules for the binary itself.
fn check_file(st: &libc::stat, at: &Path) -> Result<(), String> {
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFREG {
        let what = match kind {
            libc::S_IFDIR => "a directory",
            libc::S_IFLNK => "a symbolic link",
            libc::S_IFIFO => "a pipe",
            libc::S_IFSOCK => "a socket",
            libc::S_IFCHR | libc::S_IFBLK => "a device",
            _ => "not a regular file",
        };
        return Err(format!("{} is {what}, not a regular file", at.display()));
    }
    let mode = mode_of(st);
    if mode & (S_IWGRP | S_IWOTH) != 0 {
        let who = if mode & S_IWOTH != 0 {
            "others"
        } else {
            "its group"
        };
        return Err(format!(
            "{} is writable by {who} (mode {mode:04o})",
            at.display()
        ));
    }
    if mode & (libc::S_ISUID | libc::S_ISGID) != 0 {
        return Err(format!(
            "{} is set-user-ID or set-group-ID (mode {mode:04o}); the vault needs no privilege",
            at.display()
        ));
    }
    if mode & 0o111 == 0 {
        return Err(format!(
            "{} is not executable (mode {mode:04o})",
            at.display()
        ));
    }
    Ok(())
}

/// Opens `path` and checks it and every directory above it.
pub fn open_trusted(path: &Path) -> Result<Trusted, TrustError> {
    let refused = |reason: String| TrustError::Refused {
        path: path.to_owned(),
        reason,
    };
    let io_err = |op: &'static str, at: &Path| {
        let path = path.to_owned();
        let at = at.to_owned();
        move |source| TrustError::Io {
            path,
            op,
            at,
            source,
        }
    };
    let resolved = std::fs::canonicalize(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            TrustError::NotFound {
                path: path.to_owned(),
                source,
            }
        } else {
            TrustError::Io {
                path: path.to_owned(),
                op: "resolving",
                at: path.to_owned(),
                source,
            }
        }
    })?;
    let root = Path::new("/");
    let mut dir = openat(
        // SAFETY: AT_FDCWD is a valid "descriptor" for openat; the path is
        // absolute, so it is not even used.
        unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) },
        OsStr::new("/"),
        libc::O_PATH | libc::O_DIRECTORY,
    )
    .map_err(io_err("opening", root))?;
    let mut dir_stat = fstat(dir_fd(&dir)).map_err(io_err("examining", root))?;
    check_owner(&dir_stat, root).map_err(refused)?;
    let names: Vec<&OsStr> = resolved
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let Some((last, parents)) = names.split_last() else {
        return Err(refused("/ is a directory, not a regular file".into()));
    };
    let mut at = root.to_path_buf();
    for name in parents {
        let child_at = at.join(name);
        let child = openat(
            dir_fd(&dir),
            name,
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_DIRECTORY,
        )
        .map_err(|e| changed_or(e, &child_at, path))?;
        let child_stat = fstat(dir_fd(&child)).map_err(io_err("examining", &child_at))?;
        check_owner(&child_stat, &child_at).map_err(refused)?;
        check_dir_holding(&dir_stat, &at, &child_stat).map_err(refused)?;
        dir = child;
        dir_stat = child_stat;
        at = child_at;
    }
    let file_at = at.join(last);
    let file = openat(dir_fd(&dir), last, libc::O_PATH | libc::O_NOFOLLOW)
        .map_err(|e| changed_or(e, &file_at, path))?;
    let stat = fstat(dir_fd(&file)).map_err(io_err("examining", &file_at))?;
    check_owner(&stat, &file_at).map_err(refused)?;
    check_dir_holding(&dir_stat, &at, &stat).map_err(refused)?;
    check_file(&stat, &file_at).map_err(refused)?;
    let name = CString::new(last.as_bytes()).map_err(|_| refused("NUL in the path".into()))?;
    Ok(Trusted {
        file,
        dir,
        name,
        path: resolved,
        stat,
    })
}

fn dir_fd(fd: &OwnedFd) -> BorrowedFd<'_> {
    std::os::fd::AsFd::as_fd(fd)
}

/// A component that is now a symbolic link, or no longer a directory, was
/// replaced between the resolution and the walk.
fn changed_or(e: io::Error, at: &Path, path: &Path) -> TrustError {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) | Some(libc::ENOENT) => TrustError::Refused {
            path: path.to_owned(),
            reason: format!("{} changed while it was being checked", at.display()),
        },
        _ => TrustError::Io {
            path: path.to_owned(),
            op: "opening",
            at: at.to_owned(),
            source: e,
        },
    }
}

/// Checks an already open binary (a descriptor handed across the broker's
/// own re-exec, whose directories were walked before it): owner, mode and
/// kind only.
pub fn check_open_file(fd: BorrowedFd<'_>, path: &Path) -> Result<libc::stat, TrustError> {
    let stat = fstat(fd).map_err(|source| TrustError::Io {
        path: path.to_owned(),
        op: "examining",
        at: path.to_owned(),
        source,
    })?;
    let refused = |reason| TrustError::Refused {
        path: path.to_owned(),
        reason,
    };
    check_owner(&stat, path).map_err(refused)?;
    check_file(&stat, path).map_err(refused)?;
    Ok(stat)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(uid: libc::uid_t, mode: libc::mode_t) -> libc::stat {
        // SAFETY: all-zero is a valid stat.
        let mut s: libc::stat = unsafe { std::mem::zeroed() };
        s.st_uid = uid;
        s.st_mode = mode;
        s
    }

    #[test]
    fn directory_rules() {
        let me = euid();
        let other = me.wrapping_add(4242).max(1);
        let at = Path::new("/d");
        let file = st(me, libc::S_IFREG | 0o755);
        let foreign = st(other, libc::S_IFREG | 0o755);
        assert!(check_dir_holding(&st(0, libc::S_IFDIR | 0o755), at, &file).is_ok());
        assert!(check_dir_holding(&st(0, libc::S_IFDIR | 0o775), at, &file).is_err());
        assert!(check_dir_holding(&st(0, libc::S_IFDIR | 0o777), at, &file).is_err());
        // /tmp: root-owned and sticky, holding an entry of ours: accepted.
        assert!(check_dir_holding(&st(0, libc::S_IFDIR | 0o1777), at, &file).is_ok());
        assert!(check_dir_holding(&st(0, libc::S_IFDIR | 0o1777), at, &foreign).is_err());
        if me != 0 {
            assert!(check_dir_holding(&st(me, libc::S_IFDIR | 0o1777), at, &file).is_err());
        }
        assert!(check_owner(&st(other, 0o755), at).is_err());
        assert!(check_owner(&st(0, 0o755), at).is_ok());
    }

    #[test]
    fn file_rules() {
        let at = Path::new("/v");
        assert!(check_file(&st(0, libc::S_IFREG | 0o755), at).is_ok());
        assert!(check_file(&st(0, libc::S_IFREG | 0o711), at).is_ok());
        for bad in [0o775, 0o757, 0o4755, 0o2755, 0o644] {
            assert!(
                check_file(&st(0, libc::S_IFREG | bad), at).is_err(),
                "{bad:o}"
            );
        }
        assert!(check_file(&st(0, libc::S_IFDIR | 0o755), at).is_err());
    }
}
