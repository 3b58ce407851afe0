//! The RSA key: generated inside the sandbox, kept in the secure heap, used
//! only through the legacy `RSA` object.
//!
//! `shared/notes/openssl-secure-heap.md` lists the paths that copy private
//! numbers out of the secure heap; this module avoids each of them:
//! - the key is generated with `RSA_generate_key_ex`, which allocates d, p,
//!   q, dp, dq and qinv with `BN_secure_new`;
//! - it is never wrapped in an `EVP_PKEY` (which would export a second,
//!   non-secure copy of every private number to the provider);
//! - `RSA_FLAG_CACHE_PRIVATE` stays on, as OpenSSL sets it: the cached
//!   Montgomery contexts of p and q (copies of p and q, R² mod p, R² mod q)
//!   are what its fastest 2048-bit path needs, and like every other
//!   allocation OpenSSL makes in the vault they come from the arena
//!   (`crate::alloc`);
//! - the stack that key generation used is overwritten afterwards;
//! - the public key is exported from a public-only key built from (n, e).
//!
//! The caches, the blinding values and each thread's DRBG appear with a
//! thread's first private operation, so every lane makes one
//! ([`Key::warm_up`]) before the vault serves; the usage measured then is
//! the baseline ([`Key::settle`]): at rest it stays exactly there.
//!
//! Decryption is RSA-OAEP with SHA-256 (as in the original): a raw private
//! operation (`RSA_NO_PADDING`) into a secure-heap buffer, then the OAEP check
//! with SHA-256 for both the label hash and MGF1 into another one. The legacy
//! `RSA_PKCS1_OAEP_PADDING` mode would use SHA-1.

use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::atomic::Ordering;

use common::protocol::{HeapStatus, ALL_PRIVATE_NUMBERS};
use openssl_sys as ffi;
use zeroize::Zeroize;

use crate::heap::{self, HeapError, SecureBuf};

extern "C" {
    fn RSA_padding_check_PKCS1_OAEP_mgf1(
        to: *mut u8,
        tlen: c_int,
        from: *const u8,
        flen: c_int,
        num: c_int,
        param: *const u8,
        plen: c_int,
        md: *const ffi::EVP_MD,
        mgf1md: *const ffi::EVP_MD,
    ) -> c_int;
}

const BN_FLG_SECURE: c_int = 0x08;

/// Key sizes offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyBits {
    B2048,
    B3072,
    B4096,
}

impl KeyBits {
    /// The valid values, for messages.
    pub const VALID: &'static str = "2048, 3072 or 4096";

    /// Parses a bit count.
    pub fn from_bits(bits: u32) -> Option<Self> {
        match bits {
            2048 => Some(Self::B2048),
            3072 => Some(Self::B3072),
            4096 => Some(Self::B4096),
            _ => None,
        }
    }

    /// The modulus size in bits.
    pub fn bits(self) -> u32 {
        match self {
            Self::B2048 => 2048,
            Self::B3072 => 3072,
            Self::B4096 => 4096,
        }
    }
}

/// Errors of key generation, verification and decryption.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("RSA key generation failed: {0}")]
    Generate(String),
    #[error("the secure heap's arena ({size} bytes) is full: OpenSSL's allocations were refused (none fell back to ordinary memory); give the vault a larger arena")]
    ArenaFull { size: usize },
    #[error("the private number {name} is outside the secure heap ({why}); refusing to serve")]
    NotSecure {
        name: &'static str,
        why: &'static str,
    },
    #[error("secure heap usage did not grow during key generation ({before} -> {after} bytes); refusing to serve")]
    HeapDidNotGrow { before: usize, after: usize },
    #[error("cannot export the public key: {0}")]
    Export(String),
    #[error(transparent)]
    Heap(#[from] HeapError),
    #[error("ciphertext of {got} bytes; a {bits}-bit key takes exactly {want}")]
    CiphertextLength { got: usize, want: usize, bits: u32 },
    #[error("decryption failed")]
    Decrypt,
    #[error(
        "secure heap usage {used} fell below the baseline {baseline} measured once every lane had warmed up"
    )]
    BelowBaseline { used: usize, baseline: usize },
    #[error("an envelope of {len} bytes is over the limit of {max}")]
    EnvelopeTooLarge { len: usize, max: usize },
}

/// Largest sealed secret (envelope plaintext).
pub const MAX_SEALED: usize = 64 * 1024;
/// Length of an envelope's data key (AES-256).
pub const DATA_KEY_LEN: usize = 32;

fn openssl_errors() -> String {
    openssl::error::ErrorStack::get().to_string()
}

/// The vault's key and the measurements taken when it was made.
#[derive(Debug)]
pub struct Key {
    rsa: ptr::NonNull<ffi::RSA>,
    bits: KeyBits,
    size: usize,
    used_before: usize,
    /// Usage right after key generation.
    after_keygen: usize,
    /// Usage once every lane has made its first private operation (see
    /// [`Key::settle`]); until then, `after_keygen`.
    baseline: std::sync::atomic::AtomicUsize,
    arena_size: usize,
    min_size: usize,
}

// SAFETY: the RSA object is owned by this Key and freed once, in Drop.
// Moving it to another thread moves nothing but the pointer.
unsafe impl Send for Key {}
// SAFETY: shared use is private-key operations and reads: OpenSSL's RSA
// private operations are safe to run concurrently on one RSA object (each
// call has its own BN_CTX; the blinding state is taken under the RSA's lock
// or made per thread), and the checks only read flags and addresses.
unsafe impl Sync for Key {}

impl Key {
    /// Generates a key in the secure heap, clears the private cache flag,
    /// scrubs the stack and verifies where every private number lives.
    pub fn generate(bits: KeyBits, arena_size: usize, min_size: usize) -> Result<Self, KeyError> {
        let used_before = heap::used();
        let refused_before = crate::alloc::refused_here();
        // SAFETY: RSA_new/BN_new return owned objects or NULL (checked).
        let rsa = ptr::NonNull::new(unsafe { ffi::RSA_new() })
            .ok_or_else(|| KeyError::Generate(openssl_errors()))?;
        // Own the RSA object at once so every error path frees it.
        let mut key = Key {
            rsa,
            bits,
            size: 0,
            used_before,
            after_keygen: 0,
            baseline: std::sync::atomic::AtomicUsize::new(0),
            arena_size,
            min_size,
        };
        // SAFETY: as above.
        let e = unsafe { ffi::BN_new() };
        if e.is_null() {
            return Err(KeyError::Generate(openssl_errors()));
        }
        let bits_c =
            c_int::try_from(bits.bits()).map_err(|_| KeyError::Generate("bit count".into()))?;
        // SAFETY: `e` and `key.rsa` are live objects we own; a NULL callback
        // is allowed. RSA_generate_key_ex does not take ownership of `e`.
        let ok = unsafe {
            let ok = ffi::BN_set_word(e, 65537) == 1
                && ffi::RSA_generate_key_ex(key.rsa.as_ptr(), bits_c, e, ptr::null_mut()) == 1;
            ffi::BN_free(e);
            ok
        };
        scrub_stack();
        if !ok {
            if crate::alloc::refused_here() > refused_before {
                return Err(KeyError::ArenaFull { size: arena_size });
            }
            return Err(KeyError::Generate(openssl_errors()));
        }
        // SAFETY: the key is live.
        let size = unsafe { ffi::RSA_size(key.rsa.as_ptr()) };
        key.size = usize::try_from(size).map_err(|_| KeyError::Generate("RSA_size".into()))?;
        key.after_keygen = heap::used();
        key.baseline.store(key.after_keygen, Ordering::SeqCst);
        key.verify_placement()?;
        if key.after_keygen <= key.used_before {
            return Err(KeyError::HeapDidNotGrow {
                before: key.used_before,
                after: key.after_keygen,
            });
        }
        Ok(key)
    }

    /// One of each operation the vault serves, on this thread, with a
    /// throwaway secret: an envelope (a fresh AES-256 key wrapped with
    /// RSA-OAEP-SHA256, a short message sealed with AES-256-GCM) opened with
    /// [`Key::unseal`], which is a private RSA decryption with the OAEP check
    /// and an AES-GCM decryption. It builds what OpenSSL keeps for later
    /// ones (the Montgomery caches of p and q, blinding, the digest and
    /// cipher implementations it fetches, this thread's DRBG and error
    /// state), all of it in the arena, so that usage at rest no longer moves.
    pub fn warm_up(&self) -> Result<(), KeyError> {
        let fail = |e: openssl::error::ErrorStack| KeyError::Generate(e.to_string());
        let public = self.public_rsa()?;
        let pkey = openssl::pkey::PKey::from_rsa(public).map_err(fail)?;
        let mut data_key = [0u8; DATA_KEY_LEN];
        let mut nonce = [0u8; common::protocol::NONCE_LEN];
        openssl::rand::rand_bytes(&mut data_key).map_err(fail)?;
        openssl::rand::rand_bytes(&mut nonce).map_err(fail)?;
        let mut enc = openssl::encrypt::Encrypter::new(&pkey).map_err(fail)?;
        enc.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
            .map_err(fail)?;
        enc.set_rsa_oaep_md(openssl::hash::MessageDigest::sha256())
            .map_err(fail)?;
        enc.set_rsa_mgf1_md(openssl::hash::MessageDigest::sha256())
            .map_err(fail)?;
        let mut wrapped = vec![0u8; enc.encrypt_len(&data_key).map_err(fail)?];
        let n = enc.encrypt(&data_key, &mut wrapped).map_err(fail)?;
        wrapped.truncate(n);
        let mut tag = [0u8; common::protocol::TAG_LEN];
        let sealed = openssl::symm::encrypt_aead(
            openssl::symm::Cipher::aes_256_gcm(),
            &data_key,
            Some(&nonce),
            common::protocol::ENVELOPE_AAD,
            b"vault warm-up",
            &mut tag,
        )
        .map_err(fail)?;
        data_key.zeroize();
        let (mut out, _) = self.unseal(&wrapped, &nonce, &tag, &sealed)?;
        out.wipe_and_verify();
        Ok(())
    }

    /// Takes the baseline every later check compares with: the usage now,
    /// once every lane has warmed up and the vault is at rest.
    pub fn settle(&self) {
        self.baseline.store(heap::used(), Ordering::SeqCst);
    }

    fn private_numbers(&self) -> [*const ffi::BIGNUM; 6] {
        let mut n = [ptr::null(); 6];
        let mut unused = ptr::null();
        let mut e = ptr::null();
        // SAFETY: the key is live; the get0 functions store borrowed pointers
        // owned by the key into our locals.
        unsafe {
            ffi::RSA_get0_key(self.rsa.as_ptr(), &mut unused, &mut e, &mut n[0]);
            ffi::RSA_get0_factors(self.rsa.as_ptr(), &mut n[1], &mut n[2]);
            ffi::RSA_get0_crt_params(self.rsa.as_ptr(), &mut n[3], &mut n[4], &mut n[5]);
        }
        n
    }

    /// Bit masks (d, p, q, dp, dq, qinv): which numbers carry `BN_FLG_SECURE`
    /// and which have their limbs inside the arena.
    pub fn placement(&self) -> (u8, u8) {
        let mut flags = 0u8;
        let mut in_arena = 0u8;
        for (i, bn) in self.private_numbers().into_iter().enumerate() {
            if bn.is_null() {
                continue;
            }
            // SAFETY: `bn` is a live BIGNUM owned by the key.
            if unsafe { ffi::BN_get_flags(bn, BN_FLG_SECURE) } != 0 {
                flags |= 1 << i;
            }
            // OpenSSL 3's `struct bignum_st` begins with `BN_ULONG *d`, the
            // limbs. Reading that first word lets us ask the arena whether the
            // limbs live in it; a different layout yields a pointer the range
            // check rejects, so the vault refuses to serve (fail-safe).
            // SAFETY: `bn` points at a live BIGNUM allocation larger than one
            // pointer; the read is aligned (malloc alignment) and only the
            // address is used, never dereferenced.
            let limbs = unsafe { bn.cast::<*const c_void>().read() };
            if !limbs.is_null() && heap::contains(limbs) {
                in_arena |= 1 << i;
            }
        }
        (flags, in_arena)
    }

    fn verify_placement(&self) -> Result<(), KeyError> {
        let (flags, in_arena) = self.placement();
        for (i, name) in common::protocol::PRIVATE_NUMBERS.iter().enumerate() {
            if flags & (1 << i) == 0 {
                return Err(KeyError::NotSecure {
                    name,
                    why: "BN_FLG_SECURE not set",
                });
            }
            if in_arena & (1 << i) == 0 {
                return Err(KeyError::NotSecure {
                    name,
                    why: "its limbs are not inside the arena",
                });
            }
        }
        Ok(())
    }

    /// The check made before every decryption (the original's
    /// `verifyExpectedAllocation`): usage at or above the baseline, and every
    /// private number still in the arena.
    pub fn verify_allocation(&self) -> Result<(), KeyError> {
        let used = heap::used();
        let baseline = self.baseline.load(Ordering::SeqCst);
        if used < baseline {
            return Err(KeyError::BelowBaseline { used, baseline });
        }
        self.verify_placement()
    }

    /// The state reported to the broker.
    pub fn status(&self, decrypts: u64, wipes_verified: u64) -> HeapStatus {
        let (secure_flags, in_arena) = self.placement();
        let w = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        HeapStatus {
            initialized: heap::initialized(),
            key_bits: self.bits.bits(),
            arena_size: w(self.arena_size),
            min_size: w(self.min_size),
            used: w(heap::used()),
            used_before_keygen: w(self.used_before),
            after_keygen: w(self.after_keygen),
            baseline: w(self.baseline.load(Ordering::SeqCst)),
            high_water: w(crate::alloc::high_water()),
            refused: w(crate::alloc::refused()),
            secure_flags: secure_flags & ALL_PRIVATE_NUMBERS,
            in_arena: in_arena & ALL_PRIVATE_NUMBERS,
            arena_secret: crate::secret_arena::on_secret_memory(),
            decrypts,
            wipes_verified,
        }
    }

    /// A public-only copy of (n, e).
    fn public_rsa(&self) -> Result<openssl::rsa::Rsa<openssl::pkey::Public>, KeyError> {
        let mut n = ptr::null();
        let mut e = ptr::null();
        let mut d = ptr::null();
        // SAFETY: the key is live; borrowed pointers into it.
        unsafe { ffi::RSA_get0_key(self.rsa.as_ptr(), &mut n, &mut e, &mut d) };
        let to_vec = |bn: *const ffi::BIGNUM| {
            // SAFETY: `bn` is n or e of the live key; BN_bn2bin writes exactly
            // BN_num_bytes bytes, the length of the buffer we give it.
            unsafe {
                let len = usize::try_from((ffi::BN_num_bits(bn) + 7) / 8).unwrap_or(0);
                let mut v = vec![0u8; len];
                ffi::BN_bn2bin(bn, v.as_mut_ptr());
                v
            }
        };
        let (n, e) = (to_vec(n), to_vec(e));
        openssl::rsa::Rsa::from_public_components(
            openssl::bn::BigNum::from_slice(&n).map_err(|e| KeyError::Export(e.to_string()))?,
            openssl::bn::BigNum::from_slice(&e).map_err(|e| KeyError::Export(e.to_string()))?,
        )
        .map_err(|e| KeyError::Export(e.to_string()))
    }

    /// The public key as DER SubjectPublicKeyInfo, exported from a public-only
    /// copy of (n, e) so that no export path ever sees a private number.
    pub fn public_der(&self) -> Result<Vec<u8>, KeyError> {
        self.public_rsa()?
            .public_key_to_der()
            .map_err(|e| KeyError::Export(e.to_string()))
    }

    /// Decrypts an RSA-OAEP-SHA256 ciphertext into a secure-heap buffer and
    /// returns it with the plaintext length.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<(SecureBuf, usize), KeyError> {
        if ciphertext.len() != self.size {
            return Err(KeyError::CiphertextLength {
                got: ciphertext.len(),
                want: self.size,
                bits: self.bits.bits(),
            });
        }
        self.verify_allocation()?;
        let k = c_int::try_from(self.size).map_err(|_| KeyError::Decrypt)?;
        let mut em = SecureBuf::new(self.size)?;
        let mut out = SecureBuf::new(self.size)?;
        // SAFETY: `ciphertext` is k readable bytes; `em` is k writable bytes
        // in the arena; the key is live. RSA_NO_PADDING writes exactly k.
        let r = unsafe {
            ffi::RSA_private_decrypt(
                k,
                ciphertext.as_ptr(),
                em.as_mut_ptr(),
                self.rsa.as_ptr(),
                ffi::RSA_NO_PADDING,
            )
        };
        let result = if r != k {
            Err(KeyError::Decrypt)
        } else {
            // SAFETY: `em` holds k bytes (the encoded message with its leading
            // zero), `out` has room for k; the label is empty; EVP_sha256
            // returns a static method table.
            let m = unsafe {
                RSA_padding_check_PKCS1_OAEP_mgf1(
                    out.as_mut_ptr(),
                    k,
                    em.as_mut_ptr(),
                    k,
                    k,
                    ptr::null(),
                    0,
                    ffi::EVP_sha256(),
                    ffi::EVP_sha256(),
                )
            };
            usize::try_from(m).map_err(|_| KeyError::Decrypt)
        };
        em.wipe_and_verify();
        // Intermediate values of the modular exponentiation may sit on the
        // stack below us; overwrite them.
        scrub_stack_after_decrypt();
        // The OAEP check raises an error on every call and marks it cleared
        // when the padding was good (constant time); the entry, with the
        // file and function names it copies, stays in this thread's error
        // queue until cleared. Cleared after every decryption, so the arena
        // at rest holds exactly its baseline.
        // SAFETY: clears this thread's OpenSSL error queue.
        unsafe { ffi::ERR_clear_error() };
        result.map(|len| (out, len))
    }
}

impl Key {
    /// Opens an envelope: unwraps the AES-256 data key (RSA-OAEP-SHA256, as
    /// [`Key::decrypt`], into the secure heap), then AES-256-GCM-decrypts
    /// `ciphertext` into another secure-heap buffer, checking `tag` over it
    /// and [`common::protocol::ENVELOPE_AAD`]. The data key is wiped before
    /// returning; on a bad tag the plaintext buffer is wiped and nothing is
    /// released.
    pub fn unseal(
        &self,
        wrapped: &[u8],
        nonce: &[u8; common::protocol::NONCE_LEN],
        tag: &[u8; common::protocol::TAG_LEN],
        ciphertext: &[u8],
    ) -> Result<(SecureBuf, usize), KeyError> {
        if ciphertext.len() > MAX_SEALED {
            return Err(KeyError::EnvelopeTooLarge {
                len: ciphertext.len(),
                max: MAX_SEALED,
            });
        }
        let (mut data_key, key_len) = self.decrypt(wrapped)?;
        if key_len != DATA_KEY_LEN {
            data_key.wipe_and_verify();
            return Err(KeyError::Decrypt);
        }
        let mut out = SecureBuf::new(ciphertext.len())?;
        let opened = aes_256_gcm_open(&mut data_key, nonce, tag, ciphertext, &mut out);
        data_key.wipe_and_verify();
        drop(data_key);
        match opened {
            Ok(()) => Ok((out, ciphertext.len())),
            Err(e) => {
                out.wipe_and_verify();
                // SAFETY: clears this thread's OpenSSL error queue.
                unsafe { ffi::ERR_clear_error() };
                Err(e)
            }
        }
    }
}

/// AES-256-GCM decryption of `ciphertext` into `out` (exactly as long), with
/// the envelope's AAD; fails unless the tag verifies.
fn aes_256_gcm_open(
    key: &mut SecureBuf,
    nonce: &[u8; common::protocol::NONCE_LEN],
    tag: &[u8; common::protocol::TAG_LEN],
    ciphertext: &[u8],
    out: &mut SecureBuf,
) -> Result<(), KeyError> {
    let aad = common::protocol::ENVELOPE_AAD;
    let ct_len = c_int::try_from(ciphertext.len()).map_err(|_| KeyError::Decrypt)?;
    let aad_len = c_int::try_from(aad.len()).map_err(|_| KeyError::Decrypt)?;
    let nonce_len = c_int::try_from(nonce.len()).map_err(|_| KeyError::Decrypt)?;
    let tag_len = c_int::try_from(tag.len()).map_err(|_| KeyError::Decrypt)?;
    // SAFETY: a fresh context, freed below on every path.
    let ctx = unsafe { ffi::EVP_CIPHER_CTX_new() };
    if ctx.is_null() {
        return Err(KeyError::Decrypt);
    }
    let mut written: c_int = 0;
    let mut last: c_int = 0;
    // The key is 32 bytes of a live secure buffer, the nonce 12 (set as the IV
    // length first), AAD and ciphertext live slices of the lengths given, `out`
    // ct_len writable bytes (GCM writes the input length in update, nothing in
    // final); the 16-byte tag is only read (copied in by EVP_CTRL_GCM_SET_TAG).
    // SAFETY: per the above, on a live context freed right after.
    let ok = unsafe {
        ffi::EVP_DecryptInit_ex(
            ctx,
            ffi::EVP_aes_256_gcm(),
            ptr::null_mut(),
            ptr::null(),
            ptr::null(),
        ) == 1
            && ffi::EVP_CIPHER_CTX_ctrl(
                ctx,
                ffi::EVP_CTRL_GCM_SET_IVLEN,
                nonce_len,
                ptr::null_mut(),
            ) == 1
            && ffi::EVP_DecryptInit_ex(
                ctx,
                ptr::null(),
                ptr::null_mut(),
                key.as_mut_ptr(),
                nonce.as_ptr(),
            ) == 1
            && ffi::EVP_DecryptUpdate(ctx, ptr::null_mut(), &mut written, aad.as_ptr(), aad_len)
                == 1
            && ffi::EVP_DecryptUpdate(
                ctx,
                out.as_mut_ptr(),
                &mut written,
                ciphertext.as_ptr(),
                ct_len,
            ) == 1
            && written == ct_len
            && ffi::EVP_CIPHER_CTX_ctrl(
                ctx,
                ffi::EVP_CTRL_GCM_SET_TAG,
                tag_len,
                tag.as_ptr().cast_mut().cast(),
            ) == 1
            && ffi::EVP_DecryptFinal_ex(ctx, out.as_mut_ptr(), &mut last) == 1
            && last == 0
    };
    // SAFETY: frees the context; OpenSSL wipes its key schedule (cipher_data
    // is released with OPENSSL_clear_free).
    unsafe { ffi::EVP_CIPHER_CTX_free(ctx) };
    if ok {
        Ok(())
    } else {
        Err(KeyError::Decrypt)
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        // SAFETY: we own the RSA object; RSA_free frees the secure BIGNUMs with
        // BN_clear_free, which wipes them before returning them to the arena.
        unsafe { ffi::RSA_free(self.rsa.as_ptr()) };
    }
}

/// Overwrites 64 KiB of stack below the caller, where key generation leaves
/// intermediate values (d among them, measured).
#[inline(never)]
pub fn scrub_stack() {
    let mut area = [0u8; 64 * 1024];
    area.zeroize();
    std::hint::black_box(&area);
}

/// Overwrites 16 KiB of stack below the caller after a private-key
/// operation: OpenSSL keeps its big numbers on the heap (BN_CTX, cleared on
/// free), so only small frames are left below; the key-locality suite checks
/// that nothing of the key remains after thousands of decryptions.
#[inline(never)]
pub fn scrub_stack_after_decrypt() {
    let mut area = [0u8; 16 * 1024];
    area.zeroize();
    std::hint::black_box(&area);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test, in order, because the arena is process-wide: first the
    /// positive control of the placement check (no arena: OpenSSL silently
    /// falls back to malloc, the BN_FLG_SECURE flag is still set, and only
    /// the arena check notices), then a key in the arena; then what that key
    /// decrypts: OAEP-SHA256 only (SHA-1 OAEP refused), a flipped bit and a
    /// short ciphertext refused, and envelopes whose GCM tag, nonce or
    /// ciphertext was tampered with refused.
    #[test]
    fn the_key_is_placed_in_the_arena_decrypts_oaep_sha256_only_and_refuses_tampering() {
        assert!(!heap::initialized());
        match Key::generate(KeyBits::B2048, 1048576, 16) {
            Err(KeyError::NotSecure { name: "d", why }) => assert!(why.contains("arena"), "{why}"),
            other => panic!("a key outside the arena was accepted: {other:?}"),
        }
        heap::validate(1048576, 16, 2048, common::budget::min_arena(1)).unwrap();
        heap::init(1048576, 16).unwrap();
        let key = Key::generate(KeyBits::B2048, 1048576, 16).expect("key in the arena");
        let s = key.status(0, 0);
        assert_eq!(
            (s.secure_flags, s.in_arena),
            (ALL_PRIVATE_NUMBERS, ALL_PRIVATE_NUMBERS)
        );
        assert!(s.baseline > s.used_before_keygen, "{s:?}");
        assert!(s.verified());
        key.verify_allocation().unwrap();
        // A second init is refused (OpenSSL returns 0), and reported as such.
        assert!(matches!(
            heap::init(65536, 16),
            Err(HeapError::Init { ret: 0, .. })
        ));
        // Decryption round trip with an independent OAEP-SHA256 encryption.
        let pubkey = openssl::rsa::Rsa::public_key_from_der(&key.public_der().unwrap()).unwrap();
        let pkey = openssl::pkey::PKey::from_rsa(pubkey).unwrap();
        let mut enc = openssl::encrypt::Encrypter::new(&pkey).unwrap();
        enc.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
            .unwrap();
        enc.set_rsa_oaep_md(openssl::hash::MessageDigest::sha256())
            .unwrap();
        enc.set_rsa_mgf1_md(openssl::hash::MessageDigest::sha256())
            .unwrap();
        let mut ct = vec![0u8; enc.encrypt_len(b"x").unwrap()];
        let n = enc.encrypt(b"attack at dawn", &mut ct).unwrap();
        ct.truncate(n);
        let (mut out, len) = key.decrypt(&ct).unwrap();
        assert_eq!(out.prefix(len), b"attack at dawn");
        assert_eq!(out.wipe_and_verify(), 0);
        // SHA-1 OAEP (the legacy default) must not decrypt: the hash is pinned.
        enc.set_rsa_oaep_md(openssl::hash::MessageDigest::sha1())
            .unwrap();
        enc.set_rsa_mgf1_md(openssl::hash::MessageDigest::sha1())
            .unwrap();
        let n = enc.encrypt(b"attack at dawn", &mut ct).unwrap();
        assert!(matches!(key.decrypt(&ct[..n]), Err(KeyError::Decrypt)));
        // A tampered ciphertext is refused, a short one is a length error.
        let n = {
            enc.set_rsa_oaep_md(openssl::hash::MessageDigest::sha256())
                .unwrap();
            enc.set_rsa_mgf1_md(openssl::hash::MessageDigest::sha256())
                .unwrap();
            enc.encrypt(b"attack at dawn", &mut ct).unwrap()
        };
        ct[n / 2] ^= 1;
        assert!(matches!(key.decrypt(&ct[..n]), Err(KeyError::Decrypt)));
        assert!(matches!(
            key.decrypt(&ct[..10]),
            Err(KeyError::CiphertextLength { got: 10, .. })
        ));
        // Envelopes: a 64 KiB secret under a fresh AES-256-GCM key wrapped
        // with RSA-OAEP-SHA256, opened in the secure heap.
        let secret: Vec<u8> = (0..MAX_SEALED)
            .map(|i| u8::try_from(i % 253).unwrap())
            .collect();
        let data_key = [0x42u8; DATA_KEY_LEN];
        let nonce = [7u8; 12];
        let mut tag = [0u8; 16];
        let sealed = openssl::symm::encrypt_aead(
            openssl::symm::Cipher::aes_256_gcm(),
            &data_key,
            Some(&nonce),
            common::protocol::ENVELOPE_AAD,
            &secret,
            &mut tag,
        )
        .unwrap();
        let mut wrapped = vec![0u8; enc.encrypt_len(&data_key).unwrap()];
        let n = enc.encrypt(&data_key, &mut wrapped).unwrap();
        wrapped.truncate(n);
        let (mut out, len) = key.unseal(&wrapped, &nonce, &tag, &sealed).unwrap();
        assert_eq!(len, secret.len());
        assert!(out.prefix(len) == secret.as_slice());
        assert_eq!(out.wipe_and_verify(), 0);
        drop(out);
        // Tampering anywhere is detected by the tag; nothing is released.
        let mut bad = sealed.clone();
        bad[1000] ^= 1;
        assert!(matches!(
            key.unseal(&wrapped, &nonce, &tag, &bad),
            Err(KeyError::Decrypt)
        ));
        let mut bad_tag = tag;
        bad_tag[0] ^= 1;
        assert!(matches!(
            key.unseal(&wrapped, &nonce, &bad_tag, &sealed),
            Err(KeyError::Decrypt)
        ));
        assert!(matches!(
            key.unseal(&wrapped, &[8u8; 12], &tag, &sealed),
            Err(KeyError::Decrypt)
        ));
        let too_big = vec![0u8; MAX_SEALED + 1];
        assert!(matches!(
            key.unseal(&wrapped, &nonce, &tag, &too_big),
            Err(KeyError::EnvelopeTooLarge { .. })
        ));
        // The secure heap is back where it was: every buffer was returned.
        key.verify_allocation().unwrap();
    }
}
