//! OpenSSL's secure-heap arena moved onto `memfd_secret` memory.
//!
//! `CRYPTO_secure_malloc_init` maps its arena as ordinary anonymous memory:
//! locked and never dumped, but the kernel maps every page of it in its own
//! direct map, so root reads it through `/proc/PID/mem`, `process_vm_readv`
//! or ptrace. Pages of a `memfd_secret` file are mapped nowhere but in the
//! processes that map the file: those reads fail (EIO, EFAULT), for root
//! too. [`place`] replaces the arena's pages by secret memory pages at the
//! same address, once, right after the arena is made and before anything is
//! in it but OpenSSL's first free-list entry (its pointers are absolute, so
//! the address must not change; its tables live in the ordinary heap).
//!
//! The order needs no more locked memory than the arena itself and has one
//! point of no return:
//!
//! 1. checks: one thread; the mapping is exactly the arena OpenSSL reports
//!    (its size, `CRYPTO_secure_allocated` true at both ends and false one
//!    byte outside, a guard page on each side); OpenSSL's locks can be told
//!    apart, so none of them is in the arena ([`crate::alloc`]): the
//!    kernel's futex cannot reach secret memory;
//! 2. `munlock` the arena, then check `RLIMIT_MEMLOCK` against what stays
//!    locked plus the arena (secret memory counts against it);
//! 3. a secret memory file of the arena's size, mapped at a free address:
//!    the only step that allocates locked memory; the arena's non-zero pages
//!    are copied into it;
//! 4. `mremap` moves that mapping over the arena, replacing it in one step:
//!    the point of no return. A failure before it leaves the arena as it
//!    was (locked again); a failure of any step after it ends the vault.
//!    (A failed `MAP_FIXED` would have left the range unmapped instead.)
//! 5. `MADV_DONTDUMP` and `MADV_DONTFORK` on the new mapping, and a check of
//!    `/proc/self/maps`: the arena's range is one shared mapping of
//!    `/secretmem`, guards in place.
//!
//! Every call here is made before the seccomp filter; none of them stays
//! allowed for this (`mremap` is allowed for glibc's `realloc`).

use std::ffi::c_void;
use std::io;
use std::os::fd::AsRawFd;

pub use common::secretmem::Setting;

/// Where the arena ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// On secret memory.
    Secret,
    /// In ordinary locked memory: the setting was `off`.
    OrdinaryAsAsked,
    /// In ordinary locked memory because secret memory could not be used
    /// (`auto`): why.
    OrdinaryFallback(String),
}

/// Why the arena could not move (it is where it was, as it was), or why the
/// vault must end (after the point of no return).
#[derive(Debug, thiserror::Error)]
pub enum SecretArenaError {
    /// A check before any change failed.
    #[error("the arena cannot move onto secret memory: {0}")]
    Check(String),
    /// The memory-lock limit is too low for the arena on secret memory.
    #[error("the arena on secret memory needs RLIMIT_MEMLOCK of at least {need_kib} KiB (it is {limit_kib} KiB; the vault has dropped CAP_IPC_LOCK, so this applies to root too): raise it (`ulimit -l {need_kib}`, or LimitMEMLOCK= for a service)")]
    MemLock { need_kib: u64, limit_kib: u64 },
    /// The kernel gave no secret memory (or refused to map it); the arena
    /// is unchanged.
    #[error("the kernel gives no secret memory for the arena: {0}")]
    Unavailable(String),
    /// A step after the point of no return failed: the vault must end.
    #[error("moving the arena onto secret memory failed after the point of no return ({0}); the vault ends")]
    Fatal(String),
}

const PAGE: usize = 4096;

/// Set once the arena is on secret memory.
static ON_SECRET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the arena is on secret memory (the vault's status says it).
pub fn on_secret_memory() -> bool {
    ON_SECRET.load(std::sync::atomic::Ordering::Relaxed)
}

/// One line of `/proc/self/maps`: range, permissions, path.
fn mapping_of(maps: &str, addr: usize) -> Option<(usize, usize, String, String)> {
    maps.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let (a, b) = f.next()?.split_once('-')?;
        let (a, b) = (
            usize::from_str_radix(a, 16).ok()?,
            usize::from_str_radix(b, 16).ok()?,
        );
        let perms = f.next()?.to_owned();
        let path = f.nth(3).map(str::to_owned).unwrap_or_default();
        (a..b).contains(&addr).then_some((a, b, perms, path))
    })
}

fn maps() -> Result<String, String> {
    std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("/proc/self/maps: {e}"))
}

/// A field of `/proc/self/status`, in its first number (kB for sizes).
fn status_number(field: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("/proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {field} in /proc/self/status"))
}

/// The checks of step 1, on the arena `[start, end)`.
fn check(start: usize, end: usize) -> Result<(), String> {
    if status_number("Threads:")? != 1 {
        return Err("the vault has more than one thread".into());
    }
    if !crate::alloc::locks_identified() {
        return Err("this OpenSSL does not name the source file of its allocations (built with OPENSSL_NO_FILENAMES?), so its locks cannot be kept out of the arena, and the kernel's futex cannot reach secret memory".into());
    }
    if !crate::alloc::arena_agrees(start, end) {
        return Err(format!(
            "OpenSSL's range check disagrees with {start:#x}-{end:#x}"
        ));
    }
    let maps = maps()?;
    match mapping_of(&maps, start) {
        Some((a, b, perms, path)) if a == start && b == end && perms == "rw-p" && path.is_empty() => {}
        other => {
            return Err(format!(
                "the mapping at the arena is not exactly it (an anonymous rw-p mapping {start:#x}-{end:#x}): {other:?}"
            ))
        }
    }
    for guard in [start - 1, end] {
        match mapping_of(&maps, guard) {
            Some((_, _, perms, _)) if perms == "---p" => {}
            other => return Err(format!("no guard page at {guard:#x}: {other:?}")),
        }
    }
    Ok(())
}

/// Locks the arena again after a failure before the point of no return.
fn relock(start: usize, len: usize) {
    // SAFETY: the arena's own range, mapped; mlock only changes residency.
    unsafe { libc::mlock(start as *const c_void, len) };
}

/// Moves the arena `[start, end)` onto secret memory as `setting` asks.
/// `Ok` says where it is; `Err` with `Require` (or a fatal failure) means
/// the vault must not go on.
pub fn place(start: usize, end: usize, setting: Setting) -> Result<Placement, SecretArenaError> {
    if setting == Setting::Off {
        return Ok(Placement::OrdinaryAsAsked);
    }
    match try_move(start, end) {
        Ok(()) => {
            ON_SECRET.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(Placement::Secret)
        }
        Err(SecretArenaError::Fatal(e)) => Err(SecretArenaError::Fatal(e)),
        Err(e) if setting == Setting::Auto => Ok(Placement::OrdinaryFallback(e.to_string())),
        Err(e) => Err(e),
    }
}

fn try_move(start: usize, end: usize) -> Result<(), SecretArenaError> {
    check(start, end).map_err(SecretArenaError::Check)?;
    let len = end - start;
    // Step 2.
    // SAFETY: the arena's own range, mapped (checked above).
    if unsafe { libc::munlock(start as *const c_void, len) } != 0 {
        return Err(SecretArenaError::Check(format!(
            "munlock: {}",
            io::Error::last_os_error()
        )));
    }
    let locked = status_number("VmLck:").map_err(|e| {
        relock(start, len);
        SecretArenaError::Check(e)
    })? * 1024;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the live `lim`.
    unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    let need = locked + len as u64;
    if lim.rlim_cur != libc::RLIM_INFINITY && need > lim.rlim_cur {
        relock(start, len);
        return Err(SecretArenaError::MemLock {
            need_kib: need.div_ceil(1024),
            limit_kib: lim.rlim_cur / 1024,
        });
    }
    // Step 3.
    let fd = common::secretmem::create(len as u64).map_err(|e| {
        relock(start, len);
        SecretArenaError::Unavailable(e.to_string())
    })?;
    // SAFETY: a new shared mapping of our own secret memory file, at an
    // address the kernel chooses.
    let view = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if view == libc::MAP_FAILED {
        let e = io::Error::last_os_error();
        relock(start, len);
        return Err(SecretArenaError::Unavailable(format!(
            "mmap of the secret memory: {e}"
        )));
    }
    // Only the pages OpenSSL wrote: the others stay unallocated on both
    // sides (reading an untouched anonymous page maps the shared zero page).
    for off in (0..len).step_by(PAGE) {
        // SAFETY: both ranges are mapped, readable and `len` long; the
        // arena is not in use (one thread, nothing allocated in it since
        // its init but OpenSSL's free list).
        unsafe {
            let from = std::slice::from_raw_parts((start + off) as *const u8, PAGE);
            if from.iter().any(|&b| b != 0) {
                std::ptr::copy_nonoverlapping(from.as_ptr(), view.cast::<u8>().add(off), PAGE);
            }
        }
    }
    // Step 4: the point of no return, if it succeeds.
    // SAFETY: moves our own mapping `view` over the arena's range, which it
    // replaces atomically; nothing refers to `view` afterwards.
    let moved = unsafe {
        libc::mremap(
            view,
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            start as *mut c_void,
        )
    };
    if moved == libc::MAP_FAILED {
        let e = io::Error::last_os_error();
        // SAFETY: the view is still ours and still mapped.
        unsafe { libc::munmap(view, len) };
        relock(start, len);
        return Err(SecretArenaError::Unavailable(format!(
            "mremap onto the arena: {e}"
        )));
    }
    drop(fd);
    // Step 5.
    for (advice, name) in [
        (libc::MADV_DONTDUMP, "MADV_DONTDUMP"),
        (libc::MADV_DONTFORK, "MADV_DONTFORK"),
    ] {
        // SAFETY: advice on our own, now secret, arena mapping.
        if unsafe { libc::madvise(start as *mut c_void, len, advice) } != 0 {
            return Err(SecretArenaError::Fatal(format!(
                "madvise {name}: {}",
                io::Error::last_os_error()
            )));
        }
    }
    let maps = maps().map_err(SecretArenaError::Fatal)?;
    match mapping_of(&maps, start) {
        Some((a, b, perms, path))
            if a == start && b == end && perms == "rw-s" && path.starts_with("/secretmem") => {}
        other => {
            return Err(SecretArenaError::Fatal(format!(
                "the arena's range is not one secret memory mapping afterwards: {other:?}"
            )))
        }
    }
    for guard in [start - 1, end] {
        if !matches!(mapping_of(&maps, guard), Some((_, _, p, _)) if p == "---p") {
            return Err(SecretArenaError::Fatal(format!(
                "the guard page at {guard:#x} is gone"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_is_found_by_address() {
        let maps = "7f0000000000-7f0000001000 ---p 00000000 00:00 0 \n\
                    7f0000001000-7f0000201000 rw-p 00000000 00:00 0 \n\
                    7f0000201000-7f0000202000 rw-s 00000000 00:01 5 /secretmem (deleted)\n";
        assert_eq!(
            mapping_of(maps, 0x7f00_0000_1000),
            Some((
                0x7f00_0000_1000,
                0x7f00_0020_1000,
                "rw-p".into(),
                String::new()
            ))
        );
        assert_eq!(
            mapping_of(maps, 0x7f00_0020_1fff).map(|m| m.3),
            Some("/secretmem".into())
        );
        assert_eq!(mapping_of(maps, 0x7f00_0020_2000), None);
    }
}
