//! `memfd_secret(2)`: memory removed from the kernel's direct map.
//!
//! Pages of a secret memory file are mapped only into the processes that map
//! the file: the kernel itself has no mapping of them, so reading them
//! through `/proc/PID/mem` fails with EIO even for root, and so do ptrace
//! PEEKDATA and `process_vm_readv`. Such a file cannot be sealed, but its
//! size can be set only once: every later size change fails with EINVAL.
//! The pages are locked (they count against RLIMIT_MEMLOCK).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::sys::cvt;

/// `f_type` of a secret memory file (`SECRETMEM_MAGIC`).
pub const SECRETMEM_MAGIC: i64 = 0x5345_434d;

/// Errors of secret memory.
#[derive(Debug, thiserror::Error)]
pub enum SecretMemError {
    #[error(
        "memfd_secret is not available (the kernel needs CONFIG_SECRETMEM and secretmem.enable=1)"
    )]
    Unavailable(#[source] io::Error),
    #[error("cannot size the secret memory file to {len} bytes")]
    Size {
        len: u64,
        #[source]
        source: io::Error,
    },
    #[error("cannot inspect the ring fd")]
    Stat(#[source] io::Error),
    #[error("the ring fd is not secret memory (file system magic {magic:#x})")]
    NotSecret { magic: i64 },
    #[error("the secret memory ring is {actual} bytes, expected exactly {expected}")]
    WrongSize { expected: u64, actual: u64 },
    #[error("the secret memory ring's size can still be changed")]
    Resizable,
}

/// Creates a secret memory file of exactly `len` bytes (close-on-exec).
pub fn create(len: u64) -> Result<OwnedFd, SecretMemError> {
    // SAFETY: memfd_secret takes a flags integer and returns a new fd or -1.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_memfd_secret, libc::O_CLOEXEC) })
        .map_err(SecretMemError::Unavailable)?;
    let fd = i32::try_from(fd)
        .map_err(|_| SecretMemError::Unavailable(io::Error::other("fd out of range")))?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let size = libc::off_t::try_from(len).map_err(|_| SecretMemError::Size {
        len,
        source: io::Error::other("too large"),
    })?;
    // SAFETY: ftruncate on our own fd.
    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size) })
        .map_err(|source| SecretMemError::Size { len, source })?;
    Ok(fd)
}

/// `f_type` as i64 (it is `long` on x86_64, narrower on some targets).
#[allow(clippy::useless_conversion)]
fn fs_type(st: &libc::statfs) -> i64 {
    i64::from(st.f_type)
}

/// Whether `fd` is a secret memory file.
pub fn is_secret(fd: BorrowedFd<'_>) -> Result<bool, SecretMemError> {
    // SAFETY: a zeroed statfs is a valid out-buffer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs writes into the live `st`.
    cvt(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) }).map_err(SecretMemError::Stat)?;
    Ok(fs_type(&st) == SECRETMEM_MAGIC)
}

/// The receiver's check of a secret memory ring, in place of the seals: it
/// is secret memory, exactly `expected` bytes, and its size cannot change
/// (an attempt to set it, even to the same value, fails with EINVAL).
pub fn check(fd: BorrowedFd<'_>, expected: u64) -> Result<(), SecretMemError> {
    if !is_secret(fd)? {
        // SAFETY: as in `is_secret`.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: fstatfs writes into the live `st`.
        unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) };
        return Err(SecretMemError::NotSecret {
            magic: fs_type(&st),
        });
    }
    // SAFETY: a zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into the live `st`.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }).map_err(SecretMemError::Stat)?;
    let actual = u64::try_from(st.st_size).unwrap_or(0);
    if actual != expected {
        return Err(SecretMemError::WrongSize { expected, actual });
    }
    // Same size: harmless if the kernel accepted it, and it must not.
    // SAFETY: ftruncate on a borrowed, live fd.
    let r = unsafe { libc::ftruncate(fd.as_raw_fd(), st.st_size) };
    if r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
        return Err(SecretMemError::Resizable);
    }
    Ok(())
}

/// Where secrets' pages come from: the `--secret-memory` setting of the
/// demo and the vault, `Config::secret_memory` of the library. It covers
/// the vault's secure-heap arena, the rings and the broker's plaintext
/// buffers together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Setting {
    /// Secret memory where the kernel offers it; otherwise ordinary locked
    /// memory, and the program says so. The default.
    #[default]
    Auto,
    /// Secret memory, or no start.
    Require,
    /// Ordinary locked memory: for comparison, and for the suites that
    /// read the processes' memory to prove something (they cannot see
    /// secret memory, so they would pass blind).
    Off,
}

impl Setting {
    /// Parses `auto`, `require` or `off`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "require" => Some(Self::Require),
            "off" => Some(Self::Off),
            _ => None,
        }
    }

    /// The word [`Self::parse`] takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Require => "require",
            Self::Off => "off",
        }
    }
}

/// Whether this process can have secret memory now: `Ok` when a one-page
/// file could be made and mapped (then unmapped and closed), else why not.
pub fn probe() -> Result<(), SecretMemError> {
    let fd = create(4096)?;
    // Mapped and unmapped at once (the mapping is dropped here).
    crate::sys::Mapping::shared(std::os::fd::AsFd::as_fd(&fd), 4096)
        .map_err(SecretMemError::Unavailable)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn settings_parse_and_print() {
        for s in [Setting::Auto, Setting::Require, Setting::Off] {
            assert_eq!(Setting::parse(s.as_str()), Some(s));
        }
        assert_eq!(Setting::parse("secret"), None);
        assert_eq!(Setting::default(), Setting::Auto);
    }

    #[test]
    fn a_secret_file_is_recognised_and_its_size_is_locked() {
        let fd = create(8192).expect("memfd_secret works on these machines");
        assert!(is_secret(fd.as_fd()).unwrap());
        check(fd.as_fd(), 8192).unwrap();
        assert!(matches!(
            check(fd.as_fd(), 4096),
            Err(SecretMemError::WrongSize { .. })
        ));
        // SAFETY: ftruncate on our own fd.
        let r = unsafe { libc::ftruncate(fd.as_raw_fd(), 4096) };
        assert_eq!(r, -1, "the size is set once");
    }

    #[test]
    fn a_memfd_is_not_secret_memory() {
        let fd = crate::seal::create_sealed("not-secret", 8192).unwrap();
        assert!(!is_secret(fd.as_fd()).unwrap());
        assert!(matches!(
            check(fd.as_fd(), 8192),
            Err(SecretMemError::NotSecret { .. })
        ));
    }
}
