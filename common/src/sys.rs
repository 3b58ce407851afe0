//! Thin wrappers around the system calls the rest of the crate needs.
//!
//! Each wrapper turns a `-1` return into [`io::Error::last_os_error`] at the
//! call site through [`cvt`], so callers never see raw return codes.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Turns a C-style `-1` return into the current `errno` as an [`io::Error`].
pub fn cvt<T: PartialEq + From<i8>>(ret: T) -> io::Result<T> {
    if ret == T::from(-1) {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The system page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|s| *s > 0)
        .unwrap_or(4096)
}

/// Rounds `len` up to a whole number of pages (at least one page).
pub fn round_to_pages(len: usize) -> Option<usize> {
    let page = page_size();
    let len = len.max(1);
    len.checked_add(page - 1).map(|l| l / page * page)
}

/// An owned memory mapping, unmapped on drop.
///
/// The mapping is only ever reached through raw pointers: when it is shared
/// with another process, no Rust reference to its bytes may exist.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a Mapping is an address range owned by this value; moving the owner
// between threads does not touch the bytes, and every access to the bytes goes
// through raw pointers whose users synchronise as documented at their use.
unsafe impl Send for Mapping {}
// SAFETY: shared access hands out only raw pointers (see `Send` above).
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of private anonymous memory, read-write, never executable.
    pub fn anonymous(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping aliases no existing memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        Self::from_mmap(ptr, len)
    }

    /// Maps `len` bytes of `fd` shared, read-write, never executable.
    pub fn shared(fd: BorrowedFd<'_>, len: usize) -> io::Result<Self> {
        Self::shared_at(fd, len, 0)
    }

    /// Maps `len` bytes of `fd` from `offset` (page-aligned) shared,
    /// read-write, never executable.
    pub fn shared_at(fd: BorrowedFd<'_>, len: usize, offset: usize) -> io::Result<Self> {
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: mapping a file creates a new address range; the memory it
        // aliases in the peer is only reached through raw pointers.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset,
            )
        };
        Self::from_mmap(ptr, len)
    }

    fn from_mmap(ptr: *mut libc::c_void, len: usize) -> io::Result<Self> {
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Self { ptr, len })
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never true for a successful mmap).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Locks the pages in RAM so they are never written to swap.
    ///
    /// Pages are locked as they are first touched (`MLOCK_ONFAULT`): a page
    /// never used takes no memory, and a page once used can never be
    /// swapped. Where the kernel lacks `mlock2`, every page is locked now.
    pub fn lock(&self) -> io::Result<()> {
        const MLOCK_ONFAULT: libc::c_uint = 1;
        // SAFETY: the range is exactly this live mapping.
        let r =
            unsafe { libc::syscall(libc::SYS_mlock2, self.ptr.as_ptr(), self.len, MLOCK_ONFAULT) };
        if r == 0 {
            return Ok(());
        }
        // SAFETY: as above.
        cvt(unsafe { libc::mlock(self.ptr.as_ptr().cast(), self.len) }).map(drop)
    }

    /// Applies `advice` to the whole mapping.
    pub fn advise(&self, advice: libc::c_int) -> io::Result<()> {
        // SAFETY: the range is exactly this live mapping; the advice values we
        // use (DONTDUMP, WIPEONFORK, DONTFORK) do not change its contents.
        cvt(unsafe { libc::madvise(self.ptr.as_ptr().cast(), self.len, advice) }).map(drop)
    }

    /// Which pages of `offset..offset + len` (page-aligned, inside the
    /// mapping) exist in the memory behind it, one `bool` per page
    /// (`mincore(2)`). For a shared mapping of a file (a memfd,
    /// `memfd_secret` memory) that is whether the file has the page, whoever
    /// wrote it: a page it does not have reads as zeros. Unlike a read, the
    /// question allocates nothing.
    pub fn resident(&self, offset: usize, len: usize) -> io::Result<Vec<bool>> {
        let page = page_size();
        let inside = offset
            .checked_add(len)
            .is_some_and(|end| end <= self.len && offset % page == 0);
        if !inside {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut v = vec![0u8; len.div_ceil(page)];
        // SAFETY: the range is page-aligned and inside this live mapping;
        // `v` has one byte for each of its pages, which is what mincore
        // writes.
        cvt(unsafe { libc::mincore(self.ptr.as_ptr().add(offset).cast(), len, v.as_mut_ptr()) })?;
        Ok(v.iter().map(|b| b & 1 == 1).collect())
    }

    /// Overwrites the whole mapping with zeros using volatile writes.
    pub fn wipe(&self) {
        // SAFETY: the range is this live mapping, writable; volatile writes are
        // sound even if a peer process writes the same bytes concurrently.
        unsafe { wipe_volatile(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no reference into it can outlive
        // `self` because all access is through raw pointers tied to `&self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Writes zeros over `len` bytes at `ptr` with volatile stores the compiler
/// cannot elide, then a compiler fence so later code is ordered after them.
///
/// # Safety
/// `ptr..ptr+len` must be valid for writes for the whole call.
pub unsafe fn wipe_volatile(ptr: *mut u8, len: usize) {
    let mut i = 0;
    let head = ptr.align_offset(8).min(len);
    while i < head {
        // SAFETY: i < len, within the range the caller vouched for.
        unsafe { ptr.add(i).write_volatile(0) };
        i += 1;
    }
    while i + 8 <= len {
        // SAFETY: i + 8 <= len and ptr + i is 8-aligned (i >= head, the
        // first aligned offset), so the u64 store is in range and aligned.
        #[allow(clippy::cast_ptr_alignment)]
        unsafe {
            ptr.add(i).cast::<u64>().write_volatile(0)
        };
        i += 8;
    }
    while i < len {
        // SAFETY: i < len.
        unsafe { ptr.add(i).write_volatile(0) };
        i += 1;
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// Counts the non-zero bytes at `ptr` with volatile reads (used to verify wipes).
///
/// # Safety
/// `ptr..ptr+len` must be valid for reads for the whole call.
pub unsafe fn count_nonzero_volatile(ptr: *const u8, len: usize) -> usize {
    let byte = |i: usize| -> usize {
        // SAFETY: every index passed is < len, within the caller's range.
        usize::from(unsafe { ptr.add(i).read_volatile() } != 0)
    };
    let head = ptr.align_offset(8).min(len);
    let mut n: usize = (0..head).map(byte).sum();
    let mut i = head;
    // Whole aligned words first: a zero word is eight zero bytes, and most
    // of a wiped ring is zero (eight times fewer volatile reads).
    while i + 8 <= len {
        // SAFETY: i + 8 <= len and ptr + i is 8-aligned (i >= head).
        #[allow(clippy::cast_ptr_alignment)]
        let w = unsafe { ptr.add(i).cast::<u64>().read_volatile() };
        if w != 0 {
            n += w.to_ne_bytes().iter().filter(|b| **b != 0).count();
        }
        i += 8;
    }
    n + (i..len).map(byte).sum::<usize>()
}

/// `FUTEX_WAIT` on a word of a **shared** mapping (not the private variant:
/// the waker is another process). Returns `Ok(())` when woken, when the value
/// differed, on a signal or on timeout: callers re-check their condition.
pub fn futex_wait_shared(
    word: &AtomicU32,
    expected: u32,
    timeout: Option<Duration>,
) -> io::Result<()> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(t.subsec_nanos()),
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned 32-bit word; the kernel only reads it
    // and the timespec, which outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            0usize,
            0u32,
        )
    };
    if ret == -1 {
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) | Some(libc::ETIMEDOUT) => Ok(()),
            _ => Err(err),
        }
    } else {
        Ok(())
    }
}

/// `FUTEX_WAKE` (shared variant) for up to `count` waiters on `word`.
pub fn futex_wake_shared(word: &AtomicU32, count: u32) -> io::Result<()> {
    // SAFETY: FUTEX_WAKE does not access memory beyond hashing the address.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            count,
            0usize,
            0usize,
            0u32,
        )
    };
    cvt(ret).map(drop)
}

/// One page mapped, read-only and shared, from an empty memfd named `name`:
/// any access to it is past the end of the file and raises SIGBUS
/// (BUS_ADRERR). For the `sigbus` selftests of both programs, which map it
/// before their filter (no file can be created or mapped after). The page
/// stays mapped for the life of the process; its address.
pub fn past_the_end_page(name: &std::ffi::CStr) -> io::Result<usize> {
    // SAFETY: memfd_create with a C string, then a fresh shared mapping of
    // the new descriptor, which is closed at once; nothing else refers to
    // either.
    unsafe {
        let fd = cvt(libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC))?;
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        );
        let mapped = io::Error::last_os_error();
        libc::close(fd);
        if p == libc::MAP_FAILED {
            return Err(mapped);
        }
        Ok(p as usize)
    }
}
