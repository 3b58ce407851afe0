//! Buffers for plaintext secrets.
//!
//! A [`SecretBuf`] owns its own pages: they are `mlock`ed (never swapped),
//! marked `MADV_DONTDUMP` (left out of core dumps) and `MADV_WIPEONFORK` (a
//! forked child sees zeros). The value is not `Clone`, has no `Display`, and
//! its `Debug` shows only the length. Its bytes never move: the struct holds a
//! pointer to the pages, so moving the struct moves no secret. The bytes are
//! reached only through closures ([`SecretBuf::expose`], [`SecretBuf::fill`])
//! and are wiped with `zeroize` on [`SecretBuf::clear`] and on drop.

use std::fmt;
use std::io;

use zeroize::Zeroize;

use crate::sys::{self, Mapping};

/// Errors from allocating a [`SecretBuf`] or writing into it.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The anonymous mapping for the buffer could not be created.
    #[error("cannot map {len} bytes for a secret buffer")]
    Map {
        /// Bytes asked for (whole pages).
        len: usize,
        /// The `mmap` error.
        #[source]
        source: io::Error,
    },
    /// The pages could not be locked in memory (check `ulimit -l`).
    #[error("cannot lock a secret buffer in memory (mlock of {len} bytes; raise RLIMIT_MEMLOCK, see `ulimit -l`)")]
    Lock {
        /// Bytes to lock (whole pages).
        len: usize,
        /// The `mlock` error.
        #[source]
        source: io::Error,
    },
    /// `madvise` refused one of the protections.
    #[error("cannot apply {advice} to a secret buffer")]
    Advise {
        /// The advice (`MADV_DONTDUMP`, ...).
        advice: &'static str,
        /// The `madvise` error.
        #[source]
        source: io::Error,
    },
    /// A write would pass the buffer's capacity.
    #[error("secret longer than the limit of {limit} bytes")]
    TooLong {
        /// The buffer's capacity.
        limit: usize,
    },
    /// Secret memory could not be set up.
    #[error("cannot set up secret memory for a secret buffer")]
    SecretMem(#[source] crate::secretmem::SecretMemError),
    /// The requested capacity cannot be represented.
    #[error("secret buffer capacity {capacity} is too large")]
    Capacity {
        /// The capacity asked for.
        capacity: usize,
    },
}

/// What a [`SecretBuf`]'s pages are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// Private anonymous pages: mlocked, MADV_DONTDUMP, MADV_WIPEONFORK.
    Locked,
    /// `memfd_secret` pages: out of the kernel's direct map (root cannot read
    /// them through /proc/PID/mem), locked and left out of dumps by the
    /// kernel, not inherited by a forked child (MADV_DONTFORK).
    Secret,
}

/// A locked, never-dumped, wiped-on-drop buffer for plaintext.
pub struct SecretBuf {
    map: Mapping,
    len: usize,
    capacity: usize,
    memory: Memory,
    /// Every byte at or past this index is zero: only `..dirty` needs wiping.
    dirty: usize,
}

impl SecretBuf {
    /// Allocates a buffer that holds up to `capacity` bytes.
    pub fn new(capacity: usize) -> Result<Self, SecretError> {
        let map_len = sys::round_to_pages(capacity).ok_or(SecretError::Capacity { capacity })?;
        let map = Mapping::anonymous(map_len).map_err(|source| SecretError::Map {
            len: map_len,
            source,
        })?;
        map.lock().map_err(|source| SecretError::Lock {
            len: map_len,
            source,
        })?;
        map.advise(libc::MADV_DONTDUMP)
            .map_err(|source| SecretError::Advise {
                advice: "MADV_DONTDUMP",
                source,
            })?;
        map.advise(libc::MADV_WIPEONFORK)
            .map_err(|source| SecretError::Advise {
                advice: "MADV_WIPEONFORK",
                source,
            })?;
        Ok(Self {
            map,
            len: 0,
            capacity,
            memory: Memory::Locked,
            dirty: 0,
        })
    }

    /// Allocates a buffer of `capacity` bytes in `memory`.
    pub fn new_in(capacity: usize, memory: Memory) -> Result<Self, SecretError> {
        match memory {
            Memory::Locked => Self::new(capacity),
            Memory::Secret => Self::new_secret(capacity),
        }
    }

    /// Allocates a buffer in `memfd_secret` memory.
    pub fn new_secret(capacity: usize) -> Result<Self, SecretError> {
        let map_len = sys::round_to_pages(capacity).ok_or(SecretError::Capacity { capacity })?;
        let len = u64::try_from(map_len).map_err(|_| SecretError::Capacity { capacity })?;
        let fd = crate::secretmem::create(len).map_err(SecretError::SecretMem)?;
        let map = Mapping::shared(std::os::fd::AsFd::as_fd(&fd), map_len).map_err(|source| {
            SecretError::Map {
                len: map_len,
                source,
            }
        })?;
        // The mapping keeps the memory; the fd is not needed any more.
        drop(fd);
        map.advise(libc::MADV_DONTFORK)
            .map_err(|source| SecretError::Advise {
                advice: "MADV_DONTFORK",
                source,
            })?;
        Ok(Self {
            map,
            len: 0,
            capacity,
            memory: Memory::Secret,
            dirty: 0,
        })
    }

    /// What the buffer's pages are.
    pub fn memory(&self) -> Memory {
        self.memory
    }

    /// Number of secret bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no secret bytes are held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Largest number of bytes the buffer can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Lends the secret bytes to `f` for the duration of the call.
    pub fn expose<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self.bytes())
    }

    /// Lets `f` write into the free space after the current contents; `f`
    /// returns how many bytes it wrote (or an error, in which case nothing of
    /// what it wrote is kept: those bytes are wiped).
    pub fn fill<E>(&mut self, f: impl FnOnce(&mut [u8]) -> Result<usize, E>) -> Result<usize, E> {
        let start = self.len;
        // The closure may write anywhere in the spare space.
        self.dirty = self.capacity;
        let spare = self.spare_mut();
        let spare_len = spare.len();
        match f(spare) {
            Ok(n) => {
                let n = n.min(spare_len);
                self.len = start + n;
                Ok(n)
            }
            Err(e) => {
                self.spare_mut().zeroize();
                Err(e)
            }
        }
    }

    /// Appends one byte, refusing to grow past the capacity.
    pub fn push(&mut self, byte: u8) -> Result<(), SecretError> {
        if self.len >= self.capacity {
            return Err(SecretError::TooLong {
                limit: self.capacity,
            });
        }
        let idx = self.len;
        self.dirty = self.dirty.max(idx + 1);
        self.all_mut()[idx] = byte;
        self.len += 1;
        Ok(())
    }

    /// Removes the last byte (if any) and wipes it.
    pub fn pop(&mut self) {
        if self.len > 0 {
            self.len -= 1;
            let idx = self.len;
            self.all_mut()[idx..=idx].zeroize();
        }
    }

    /// Keeps the first `len` bytes and wipes the rest.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            let old = self.len;
            self.all_mut()[len..old].zeroize();
            self.len = len;
        }
    }

    /// Wipes every byte of the buffer and empties it.
    pub fn clear(&mut self) {
        let dirty = self.dirty;
        self.all_mut()[..dirty].zeroize();
        self.len = 0;
        self.dirty = 0;
    }

    /// Counts the non-zero bytes in the whole capacity, reading with volatile
    /// loads: evidence that [`SecretBuf::clear`] really wiped.
    pub fn nonzero_bytes(&self) -> usize {
        // SAFETY: the range is within our live mapping (capacity <= map len).
        unsafe { sys::count_nonzero_volatile(self.map.as_ptr(), self.capacity) }
    }

    /// Raw pointer to the start of the buffer, for copies from shared memory
    /// that must not go through a reference to the shared bytes. A writer
    /// through it must stay within the length it then passes to
    /// [`SecretBuf::set_len`] (the wipe covers what the length ever reached).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.map.as_ptr()
    }

    /// Sets the length after a raw write of `len` bytes through
    /// [`SecretBuf::as_mut_ptr`].
    pub fn set_len(&mut self, len: usize) -> Result<(), SecretError> {
        if len > self.capacity {
            return Err(SecretError::TooLong {
                limit: self.capacity,
            });
        }
        self.len = len;
        self.dirty = self.dirty.max(len);
        Ok(())
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is private to this process, at least `capacity`
        // bytes long, and `len <= capacity`; `&self` keeps it alive and no
        // `&mut` to it exists while this borrow does.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.len) }
    }

    fn all_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, over the whole capacity; `&mut self` makes
        // this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr(), self.capacity) }
    }

    fn spare_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.all_mut()[len..]
    }
}

impl Drop for SecretBuf {
    fn drop(&mut self) {
        self.clear();
    }
}

impl fmt::Debug for SecretBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretBuf")
            .field("len", &self.len)
            .field("bytes", &"<redacted>")
            .finish()
    }
}

/// Wipes a secret buffer when dropped, even during unwinding: the guard that
/// makes scoped access panic-safe.
#[derive(Debug)]
pub struct WipeOnDrop<'a>(pub &'a mut SecretBuf);

impl Drop for WipeOnDrop<'_> {
    fn drop(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_expose_and_clear_wipes_every_byte() {
        let mut s = SecretBuf::new(64).unwrap();
        s.fill(|b| {
            b[..5].copy_from_slice(b"hello");
            Ok::<_, ()>(5)
        })
        .unwrap();
        assert_eq!(s.expose(|b| b.to_vec()), b"hello");
        assert_eq!(s.nonzero_bytes(), 5);
        s.clear();
        assert!(s.is_empty());
        assert_eq!(s.nonzero_bytes(), 0);
    }

    #[test]
    fn failed_fill_keeps_nothing() {
        let mut s = SecretBuf::new(16).unwrap();
        s.push(b'a').unwrap();
        let r: Result<usize, &str> = s.fill(|b| {
            b[..3].copy_from_slice(b"xyz");
            Err("boom")
        });
        assert!(r.is_err());
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.nonzero_bytes(),
            1,
            "the partial write must have been wiped"
        );
    }

    #[test]
    fn push_refuses_past_capacity_and_pop_wipes() {
        let mut s = SecretBuf::new(2).unwrap();
        s.push(1).unwrap();
        s.push(2).unwrap();
        assert!(matches!(s.push(3), Err(SecretError::TooLong { limit: 2 })));
        s.pop();
        assert_eq!(s.nonzero_bytes(), 1);
        s.truncate(0);
        assert_eq!(s.nonzero_bytes(), 0);
    }

    #[test]
    fn a_secret_memory_buffer_works_and_wipes() {
        let mut s = SecretBuf::new_secret(100).unwrap();
        assert_eq!(s.memory(), Memory::Secret);
        for b in b"in secret memory" {
            s.push(*b).unwrap();
        }
        assert_eq!(s.expose(|b| b.to_vec()), b"in secret memory");
        s.clear();
        assert_eq!(s.nonzero_bytes(), 0);
    }

    #[test]
    fn clear_wipes_everything_ever_written_through_any_path() {
        let mut s = SecretBuf::new(8192).unwrap();
        // A raw write of 5000 bytes, then a shorter length: the tail counts.
        // SAFETY: 5000 bytes within the buffer's capacity.
        unsafe { std::ptr::write_bytes(s.as_mut_ptr(), 0xAA, 5000) };
        s.set_len(5000).unwrap();
        s.truncate(10);
        s.set_len(10).unwrap();
        s.clear();
        assert_eq!(s.nonzero_bytes(), 0);
        // A fill closure that writes past what it reports.
        s.fill(|b| {
            b[..3000].fill(0x55);
            Ok::<_, ()>(1)
        })
        .unwrap();
        s.clear();
        assert_eq!(s.nonzero_bytes(), 0);
    }

    #[test]
    fn debug_is_redacted() {
        let mut s = SecretBuf::new(8).unwrap();
        for b in b"topsecret"[..8].iter() {
            s.push(*b).unwrap();
        }
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("topsecr"), "{dbg}");
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn wipe_guard_wipes_on_panic() {
        let mut s = SecretBuf::new(8).unwrap();
        s.push(7).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let g = WipeOnDrop(&mut s);
            g.0.expose(|_| panic!("closure panicked"));
        }));
        assert!(r.is_err());
        assert_eq!(s.nonzero_bytes(), 0);
    }
}
