//! OpenSSL's secure heap: initialisation, accounting, and buffers inside it.
//!
//! `openssl-sys` binds none of the `CRYPTO_secure_*` functions; libcrypto 3
//! exports them, so they are declared here. See `shared/notes/
//! openssl-secure-heap.md` for the measured behaviour these wrappers rely on.

use std::ffi::{c_char, c_int, c_void};
use std::ptr::NonNull;

extern "C" {
    fn CRYPTO_secure_malloc_init(size: usize, minsize: usize) -> c_int;
    fn CRYPTO_secure_malloc_initialized() -> c_int;
    fn CRYPTO_secure_used() -> usize;
    fn CRYPTO_secure_allocated(ptr: *const c_void) -> c_int;
    fn CRYPTO_secure_zalloc(num: usize, file: *const c_char, line: c_int) -> *mut c_void;
    fn CRYPTO_secure_clear_free(ptr: *mut c_void, num: usize, file: *const c_char, line: c_int);
}

/// Smallest arena accepted, whatever the key.
pub const MIN_ARENA: usize = 16 * 1024;
/// Largest arena accepted (it is mlocked: RLIMIT_MEMLOCK applies).
pub const MAX_ARENA: usize = 4 * 1024 * 1024;

/// Errors of the secure heap.
#[derive(Debug, thiserror::Error)]
pub enum HeapError {
    #[error("secure heap size {size} is not a power of two between {MIN_ARENA} and {MAX_ARENA} (e.g. 131072, 262144)")]
    BadSize { size: usize },
    #[error("secure heap minimum allocation {min} is not a power of two below the arena size {size} (e.g. 16)")]
    BadMinSize { size: usize, min: usize },
    #[error("secure heap of {size} bytes is too small for a {bits}-bit key: use at least {need}")]
    TooSmall { size: usize, bits: u32, need: usize },
    #[error("CRYPTO_secure_malloc_init({size}, {min}) returned {ret}: {reason}")]
    Init {
        size: usize,
        min: usize,
        ret: c_int,
        reason: &'static str,
    },
    #[error("cannot allocate {len} bytes in the secure heap (arena full)")]
    Alloc { len: usize },
}

/// Checks the arena sizes before OpenSSL sees them: bad values abort the
/// process inside `CRYPTO_secure_malloc_init` instead of returning an error.
pub fn validate(size: usize, min: usize, bits: u32, need: usize) -> Result<(), HeapError> {
    if !size.is_power_of_two() || !(MIN_ARENA..=MAX_ARENA).contains(&size) {
        return Err(HeapError::BadSize { size });
    }
    if !min.is_power_of_two() || min >= size {
        return Err(HeapError::BadMinSize { size, min });
    }
    if size < need {
        return Err(HeapError::TooSmall { size, bits, need });
    }
    Ok(())
}

/// Creates the arena. Only a return of exactly 1 is success: 2 means the
/// arena exists but its guard pages, mlock or dont-dump advice failed.
pub fn init(size: usize, min: usize) -> Result<(), HeapError> {
    // SAFETY: sizes were validated by `validate` (powers of two, min < size),
    // which is what OpenSSL asserts; the call has no other preconditions.
    let ret = unsafe { CRYPTO_secure_malloc_init(size, min) };
    match ret {
        1 => Ok(()),
        0 => Err(HeapError::Init { size, min, ret, reason: "the arena could not be created (already initialised, or mmap failed)" }),
        _ => Err(HeapError::Init {
            size,
            min,
            ret,
            reason: "the arena exists but a guard page, mlock or MADV_DONTDUMP failed (raise RLIMIT_MEMLOCK, see `ulimit -l`)",
        }),
    }
}

/// `CRYPTO_secure_malloc_initialized()`.
pub fn initialized() -> bool {
    // SAFETY: no preconditions.
    unsafe { CRYPTO_secure_malloc_initialized() == 1 }
}

/// `CRYPTO_secure_used()`: bytes in use in the arena (buddy-rounded); 0
/// when there is no arena.
pub fn used() -> usize {
    if !initialized() {
        // OpenSSL 3.0 takes the arena's lock unconditionally here, and the
        // lock does not exist before CRYPTO_secure_malloc_init: the call
        // would dereference NULL (measured: SIGSEGV).
        return 0;
    }
    // SAFETY: the arena, and with it the lock this takes, exists.
    unsafe { CRYPTO_secure_used() }
}

/// Whether `ptr` lies inside the arena (an address-range check, no access).
// OpenSSL only compares the address with the arena's bounds; it never reads
// through it, so any pointer value is fine here.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn contains(ptr: *const c_void) -> bool {
    // SAFETY: CRYPTO_secure_allocated compares addresses only.
    unsafe { CRYPTO_secure_allocated(ptr) == 1 }
}

/// A zeroed buffer inside the secure heap, wiped and freed on drop.
#[derive(Debug)]
pub struct SecureBuf {
    ptr: NonNull<u8>,
    len: usize,
}

impl SecureBuf {
    /// Allocates `len` zeroed bytes in the arena. Fails rather than falling
    /// back to the normal heap.
    pub fn new(len: usize) -> Result<Self, HeapError> {
        // SAFETY: plain allocation; file/line are a static C string and line.
        let p = unsafe { CRYPTO_secure_zalloc(len.max(1), c"vault/heap.rs".as_ptr(), 0) };
        if initialized() {
            crate::alloc::note(!p.is_null());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or(HeapError::Alloc { len })?;
        if !contains(ptr.as_ptr().cast()) {
            // Without an arena OpenSSL would have used malloc: never accept that.
            // SAFETY: `ptr` came from CRYPTO_secure_zalloc with this length.
            unsafe {
                CRYPTO_secure_clear_free(
                    ptr.as_ptr().cast(),
                    len.max(1),
                    c"vault/heap.rs".as_ptr(),
                    0,
                )
            };
            return Err(HeapError::Alloc { len });
        }
        Ok(Self { ptr, len })
    }

    /// Start of the buffer, for OpenSSL calls that write into it.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The first `n` bytes (clamped to the length).
    pub fn prefix(&self, n: usize) -> &[u8] {
        // SAFETY: the allocation is `len` bytes, owned by self, initialised
        // (zalloc) and only written through `&mut self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), n.min(self.len)) }
    }

    /// Wipes the buffer and reports how many bytes are still non-zero (read
    /// back with volatile loads): the vault's evidence that it wiped.
    pub fn wipe_and_verify(&mut self) -> usize {
        // SAFETY: our own allocation of `len` bytes.
        unsafe {
            common::sys::wipe_volatile(self.ptr.as_ptr(), self.len);
            common::sys::count_nonzero_volatile(self.ptr.as_ptr(), self.len)
        }
    }
}

impl Drop for SecureBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from CRYPTO_secure_zalloc with `len.max(1)`
        // bytes; clear_free wipes then returns it to the arena.
        unsafe {
            CRYPTO_secure_clear_free(
                self.ptr.as_ptr().cast(),
                self.len.max(1),
                c"vault/heap.rs".as_ptr(),
                0,
            )
        }
    }
}

/// Takes every block the arena can still give, largest first, down to 16
/// bytes, and keeps them until the returned value is dropped (for the
/// regression suite's `fill-arena` selftest: the arena is then full).
pub fn fill() -> Vec<SecureBuf> {
    let mut held = Vec::new();
    let mut size = 1 << 20;
    while size >= 16 {
        match SecureBuf::new(size) {
            Ok(b) => held.push(b),
            Err(_) => size /= 2,
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_validated_before_openssl_sees_them() {
        assert!(validate(65536, 16, 2048, 32768).is_ok());
        assert!(matches!(
            validate(65535, 16, 2048, 32768),
            Err(HeapError::BadSize { .. })
        ));
        assert!(matches!(
            validate(1 << 30, 16, 2048, 32768),
            Err(HeapError::BadSize { .. })
        ));
        assert!(matches!(
            validate(65536, 24, 2048, 32768),
            Err(HeapError::BadMinSize { .. })
        ));
        assert!(matches!(
            validate(65536, 65536, 2048, 32768),
            Err(HeapError::BadMinSize { .. })
        ));
        assert!(matches!(
            validate(16384, 16, 2048, 32768),
            Err(HeapError::TooSmall { .. })
        ));
    }
}
