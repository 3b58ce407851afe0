//! Creating the ring's memfd and checking the seals of one received from the peer.
//!
//! The broker creates the memfd with `MFD_ALLOW_SEALING | MFD_CLOEXEC`, sizes
//! it once and seals it with `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL` (and
//! `F_SEAL_EXEC` where the kernel knows it). With those seals neither side can
//! change the size, so neither can make the other's mapping fault (`SIGBUS`)
//! by truncating the file under it. The vault checks the seals with
//! `F_GET_SEALS` before it maps the fd and refuses a ring without them.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;

use crate::sys::cvt;

/// The seals a ring must carry before it is mapped.
pub const REQUIRED_SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
/// `F_SEAL_EXEC` (Linux 6.3): the file's mode can no longer gain exec bits.
pub const F_SEAL_EXEC: libc::c_int = 0x0020;

/// Errors creating or checking a sealed memfd.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("cannot create the ring memfd")]
    Create(#[source] io::Error),
    #[error("cannot size the ring memfd to {len} bytes")]
    Size {
        len: u64,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove the exec bits of the ring memfd")]
    Chmod(#[source] io::Error),
    #[error("cannot add seals {seals:#x} to the ring memfd")]
    AddSeals {
        seals: libc::c_int,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the seals of the ring fd (is it a memfd?)")]
    GetSeals(#[source] io::Error),
    #[error("the ring fd is not sealed: it carries seals {found:#x}, missing {missing}")]
    Unsealed { found: libc::c_int, missing: String },
    #[error("cannot stat the ring fd")]
    Stat(#[source] io::Error),
    #[error("the ring memfd is {actual} bytes, expected exactly {expected}")]
    WrongSize { expected: u64, actual: u64 },
}

/// Names the seal bits in `seals`, for messages and reviews.
pub fn seal_names(seals: libc::c_int) -> String {
    let names = [
        (libc::F_SEAL_SEAL, "F_SEAL_SEAL"),
        (libc::F_SEAL_SHRINK, "F_SEAL_SHRINK"),
        (libc::F_SEAL_GROW, "F_SEAL_GROW"),
        (libc::F_SEAL_WRITE, "F_SEAL_WRITE"),
        (libc::F_SEAL_FUTURE_WRITE, "F_SEAL_FUTURE_WRITE"),
        (F_SEAL_EXEC, "F_SEAL_EXEC"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| seals & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(" | ")
    }
}

/// Creates a memfd of exactly `len` bytes, lets `init` write into it (through
/// the fd, before any peer has it), then seals it.
pub fn create_sealed(name: &str, len: u64) -> Result<OwnedFd, SealError> {
    let mfd = memfd::MemfdOptions::default()
        .allow_sealing(true)
        .close_on_exec(true)
        .create(name)
        .map_err(|e| SealError::Create(memfd_io(e)))?;
    mfd.as_file()
        .set_len(len)
        .map_err(|source| SealError::Size { len, source })?;
    // A memfd is created with mode 0777. On a file with exec bits the kernel
    // makes F_SEAL_EXEC imply F_SEAL_WRITE (W^X from the start), which would
    // forbid the writable shared mapping the ring is. Drop the exec bits
    // first, then seal them away.
    mfd.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(SealError::Chmod)?;
    let fd: OwnedFd = mfd.into_file().into();
    add_seals(fd.as_fd(), libc::F_SEAL_SHRINK | libc::F_SEAL_GROW)?;
    // F_SEAL_EXEC is newer than the other seals (Linux 6.3); a kernel that
    // does not know it answers EINVAL, which is not a reason to refuse to run.
    match add_seals(fd.as_fd(), F_SEAL_EXEC) {
        Ok(()) => {}
        Err(SealError::AddSeals { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => return Err(e),
    }
    add_seals(fd.as_fd(), libc::F_SEAL_SEAL)?;
    Ok(fd)
}

fn memfd_io(e: memfd::Error) -> io::Error {
    match e {
        memfd::Error::Create(e) | memfd::Error::AddSeals(e) | memfd::Error::GetSeals(e) => e,
    }
}

fn add_seals(fd: BorrowedFd<'_>, seals: libc::c_int) -> Result<(), SealError> {
    // SAFETY: F_ADD_SEALS takes an int argument and touches no memory of ours.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) })
        .map(drop)
        .map_err(|source| SealError::AddSeals { seals, source })
}

/// Reads the seals of `fd` (`F_GET_SEALS`).
pub fn seals(fd: BorrowedFd<'_>) -> Result<libc::c_int, SealError> {
    // SAFETY: F_GET_SEALS takes no argument and touches no memory of ours.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) }).map_err(SealError::GetSeals)
}

/// Checks, before mapping, that `fd` is a memfd of exactly `expected_len`
/// bytes carrying at least [`REQUIRED_SEALS`]. Returns the seals found.
pub fn check_sealed(fd: BorrowedFd<'_>, expected_len: u64) -> Result<libc::c_int, SealError> {
    let found = seals(fd)?;
    let missing = REQUIRED_SEALS & !found;
    if missing != 0 {
        return Err(SealError::Unsealed {
            found,
            missing: seal_names(missing),
        });
    }
    // Size is checked after the seals: once sealed it cannot change any more.
    // SAFETY: an all-zero `stat` is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live, writable stat buffer for the duration of the call.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }).map_err(SealError::Stat)?;
    let actual = u64::try_from(st.st_size).unwrap_or(0);
    if actual != expected_len {
        return Err(SealError::WrongSize {
            expected: expected_len,
            actual,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_memfd_carries_the_seals_and_cannot_be_resized() {
        let fd = create_sealed("test-ring", 8192).unwrap();
        let found = check_sealed(fd.as_fd(), 8192).unwrap();
        assert_eq!(found & REQUIRED_SEALS, REQUIRED_SEALS);
        assert_eq!(
            found & (libc::F_SEAL_WRITE | libc::F_SEAL_FUTURE_WRITE),
            0,
            "the ring must stay writable"
        );
        assert!(crate::sys::Mapping::shared(fd.as_fd(), 8192).is_ok());
        let file = std::fs::File::from(fd);
        assert!(
            file.set_len(4096).is_err(),
            "F_SEAL_SHRINK must refuse truncation"
        );
        assert!(
            file.set_len(16384).is_err(),
            "F_SEAL_GROW must refuse growth"
        );
    }

    #[test]
    fn unsealed_memfd_is_refused_before_mapping() {
        let mfd = memfd::MemfdOptions::default()
            .allow_sealing(true)
            .create("unsealed")
            .unwrap();
        mfd.as_file().set_len(8192).unwrap();
        let fd: OwnedFd = mfd.into_file().into();
        match check_sealed(fd.as_fd(), 8192) {
            Err(SealError::Unsealed { missing, .. }) => {
                assert!(
                    missing.contains("F_SEAL_SHRINK") && missing.contains("F_SEAL_SEAL"),
                    "{missing}"
                )
            }
            other => panic!("expected Unsealed, got {other:?}"),
        }
    }

    #[test]
    fn wrong_size_is_refused() {
        let fd = create_sealed("small", 4096).unwrap();
        assert!(matches!(
            check_sealed(fd.as_fd(), 8192),
            Err(SealError::WrongSize { .. })
        ));
    }

    #[test]
    fn a_regular_file_is_not_a_ring() {
        let f = std::fs::File::open("/proc/self/status").unwrap();
        assert!(matches!(
            check_sealed(f.as_fd(), 4096),
            Err(SealError::GetSeals(_))
        ));
    }
}
