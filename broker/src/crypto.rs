//! The broker's side of OpenSSL: the vault's public key, RSA-OAEP-SHA256
//! encryption, AES-256-GCM for envelopes, SHA-256 and random bytes, called
//! in libcrypto directly (through `openssl-sys`'s declarations).
//!
//! Not through the `openssl` crate: that crate initialises OpenSSL through
//! libssl's `OPENSSL_init_ssl` at its first use, with error strings, which
//! maps libssl into the application and builds the text of every OpenSSL
//! error in its heap (about 760 KiB of resident pages together, measured by
//! `make bench`). The broker needs neither. Here libcrypto initialises
//! itself at its first call, as it does for any C program, with its default
//! options; an application that wants TLS or the error texts still has them
//! by its own use of OpenSSL. The functions below are the only ones the
//! broker library calls; each owns what it allocates and frees it on every
//! path.

use std::ffi::{c_int, CStr};
use std::ptr;

use openssl_sys as ffi;

/// What OpenSSL reported when a call failed: the step, and the codes in
/// OpenSSL's error queue (with their text when the application has loaded
/// OpenSSL's error strings; otherwise `openssl errstr CODE` gives it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpensslError {
    step: &'static str,
    codes: Vec<std::ffi::c_ulong>,
    text: Vec<String>,
}

impl OpensslError {
    /// Takes (and so empties) the calling thread's error queue.
    fn take(step: &'static str) -> Self {
        let mut codes = Vec::new();
        let mut text = Vec::new();
        loop {
            // SAFETY: reads and removes the oldest entry of this thread's
            // error queue; no pointer is involved.
            let code = unsafe { ffi::ERR_get_error() };
            if code == 0 {
                break;
            }
            // Keep a bounded account: a queue is a few entries deep.
            if codes.len() < 8 {
                codes.push(code);
                // SAFETY: returns a pointer to a static string of OpenSSL's
                // tables, or null when the strings are not loaded.
                let reason = unsafe { ffi::ERR_reason_error_string(code) };
                if !reason.is_null() {
                    // SAFETY: non-null: a NUL-terminated static string.
                    let r = unsafe { CStr::from_ptr(reason) };
                    text.push(r.to_string_lossy().into_owned());
                }
            }
        }
        OpensslError { step, codes, text }
    }

    /// A failure found before OpenSSL was called, or after it returned.
    fn ours(step: &'static str, why: String) -> Self {
        OpensslError {
            step,
            codes: Vec::new(),
            text: vec![why],
        }
    }
}

impl std::fmt::Display for OpensslError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed", self.step)?;
        for (i, code) in self.codes.iter().enumerate() {
            write!(f, "{} error:{code:08X}", if i == 0 { ":" } else { "," })?;
        }
        if !self.text.is_empty() {
            write!(f, " ({})", self.text.join("; "))?;
        } else if let Some(code) = self.codes.first() {
            // OpenSSL's strings are not loaded (the library's default).
            write!(f, " (`openssl errstr {code:08X}` gives the text)")?;
        }
        Ok(())
    }
}

impl std::error::Error for OpensslError {}

/// Fails with the error queue's content unless `ok`.
fn check(ok: bool, step: &'static str) -> Result<(), OpensslError> {
    if ok {
        Ok(())
    } else {
        Err(OpensslError::take(step))
    }
}

/// A length as OpenSSL's `int`, or an error naming the step.
fn c_len(len: usize, step: &'static str) -> Result<c_int, OpensslError> {
    c_int::try_from(len).map_err(|_| OpensslError::ours(step, format!("{len} bytes is too long")))
}

/// An RSA public key (an `EVP_PKEY` that this value owns).
#[derive(Debug)]
pub struct RsaPublicKey {
    pkey: ptr::NonNull<ffi::EVP_PKEY>,
}

// SAFETY: the EVP_PKEY is owned by this value alone (no other pointer to it
// exists outside OpenSSL), so it may be freed on any thread: OpenSSL's objects
// have no thread affinity.
unsafe impl Send for RsaPublicKey {}
// SAFETY: through `&self` the key is only read: its size is read, and each
// encryption makes its own EVP_PKEY_CTX, which takes a reference to the key
// (an atomic count) and, the first time, exports it to the provider under
// the key's own lock (OpenSSL 3's evp_pkey_export_to_provider). OpenSSL
// objects are safe to use from several threads while none of the calls
// modifies them (openssl-threads(7)); the `openssl` crate's `PKey` is Sync
// on the same ground. The test `one_key_encrypts_from_many_threads_at_once`
// uses one key from eight threads.
unsafe impl Sync for RsaPublicKey {}

impl Drop for RsaPublicKey {
    fn drop(&mut self) {
        // SAFETY: the key was allocated by d2i_PUBKEY and is owned by this
        // value alone; it is freed once.
        unsafe { ffi::EVP_PKEY_free(self.pkey.as_ptr()) };
    }
}

impl RsaPublicKey {
    /// Decodes a DER SubjectPublicKeyInfo, which must be an RSA key and be
    /// the whole of `der`.
    pub fn from_der(der: &[u8]) -> Result<Self, OpensslError> {
        const STEP: &str = "decoding the public key (DER SubjectPublicKeyInfo)";
        let len = c_len(der.len(), STEP)?;
        let mut p = der.as_ptr();
        // SAFETY: `p` points to `len` readable bytes; d2i_PUBKEY reads at
        // most that many and advances `p` past what it decoded. A null first
        // argument asks for a new key, which we own from here.
        let raw = unsafe { ffi::d2i_PUBKEY(ptr::null_mut(), &mut p, libc::c_long::from(len)) };
        let Some(pkey) = ptr::NonNull::new(raw) else {
            return Err(OpensslError::take(STEP));
        };
        let key = RsaPublicKey { pkey };
        // d2i_PUBKEY advanced `p` within `der` (it reads no further).
        let used = (p as usize).wrapping_sub(der.as_ptr() as usize);
        if used != der.len() {
            let trailing = der.len().wrapping_sub(used);
            return Err(OpensslError::ours(
                STEP,
                format!("{trailing} bytes after the key"),
            ));
        }
        // SAFETY: a valid key owned by `key`; the call only reads it.
        let id = unsafe { ffi::EVP_PKEY_get_id(key.pkey.as_ptr()) };
        if id != ffi::EVP_PKEY_RSA {
            return Err(OpensslError::ours(
                STEP,
                format!("not an RSA key (OpenSSL key type {id})"),
            ));
        }
        Ok(key)
    }

    /// The modulus' length in bits.
    pub fn bits(&self) -> u32 {
        // SAFETY: a valid key owned by `self`; the call only reads it.
        let bits = unsafe { ffi::EVP_PKEY_get_bits(self.pkey.as_ptr()) };
        u32::try_from(bits).unwrap_or(0)
    }

    /// The modulus' length in bytes: the length of every ciphertext.
    pub fn size(&self) -> usize {
        usize::try_from(self.bits().div_ceil(8)).unwrap_or(0)
    }

    /// RSA-OAEP with SHA-256 (and MGF1 with SHA-256) of `plain`.
    pub fn encrypt_oaep_sha256(&self, plain: &[u8]) -> Result<Vec<u8>, OpensslError> {
        let ctx = PkeyCtx::new(self)?;
        let c = ctx.0.as_ptr();
        // SAFETY: `c` is a valid context owned by `ctx` (freed on every
        // return below); EVP_sha256 returns a static method that the setters
        // only refer to.
        unsafe {
            check(ffi::EVP_PKEY_encrypt_init(c) == 1, "EVP_PKEY_encrypt_init")?;
            check(
                ffi::EVP_PKEY_CTX_set_rsa_padding(c, ffi::RSA_PKCS1_OAEP_PADDING) > 0,
                "setting OAEP padding",
            )?;
            check(
                ffi::EVP_PKEY_CTX_set_rsa_oaep_md(c, ffi::EVP_sha256().cast_mut()) > 0,
                "setting OAEP's digest",
            )?;
            check(
                ffi::EVP_PKEY_CTX_set_rsa_mgf1_md(c, ffi::EVP_sha256()) > 0,
                "setting MGF1's digest",
            )?;
        }
        let mut out = vec![0u8; self.size()];
        let mut out_len = out.len();
        // SAFETY: `out` has `out_len` writable bytes, the modulus' length,
        // which is every RSA ciphertext's; `plain` is readable for its
        // length; OpenSSL writes the length it produced to `out_len`.
        let ok = unsafe {
            ffi::EVP_PKEY_encrypt(
                c,
                out.as_mut_ptr(),
                &mut out_len,
                plain.as_ptr(),
                plain.len(),
            )
        };
        check(ok == 1, "RSA-OAEP-SHA256 encryption")?;
        out.truncate(out_len);
        Ok(out)
    }

    /// PEM (`BEGIN PUBLIC KEY`) of `der`, which is this key's encoding.
    pub fn pem(der: &[u8]) -> Result<Vec<u8>, OpensslError> {
        let mut out = b"-----BEGIN PUBLIC KEY-----\n".to_vec();
        for chunk in der.chunks(48) {
            // 48 bytes make 64 characters of base64, PEM's line length.
            let mut line = [0u8; 65];
            let len = c_len(chunk.len(), "PEM encoding")?;
            // SAFETY: `chunk` is readable for `len` (at most 48) bytes;
            // EVP_EncodeBlock writes 4 characters per 3 bytes and a NUL: at
            // most 65 bytes, the size of `line`.
            let n = unsafe { ffi::EVP_EncodeBlock(line.as_mut_ptr(), chunk.as_ptr(), len) };
            let n = usize::try_from(n).unwrap_or(0).min(64);
            out.extend_from_slice(&line[..n]);
            out.push(b'\n');
        }
        out.extend_from_slice(b"-----END PUBLIC KEY-----\n");
        Ok(out)
    }
}

/// An `EVP_PKEY_CTX` for one operation, freed on drop.
struct PkeyCtx(ptr::NonNull<ffi::EVP_PKEY_CTX>);

impl PkeyCtx {
    fn new(key: &RsaPublicKey) -> Result<Self, OpensslError> {
        // SAFETY: a valid key, live for the call; the context takes its own
        // reference to it (released when the context is freed).
        let raw = unsafe { ffi::EVP_PKEY_CTX_new(key.pkey.as_ptr(), ptr::null_mut()) };
        ptr::NonNull::new(raw)
            .map(PkeyCtx)
            .ok_or_else(|| OpensslError::take("EVP_PKEY_CTX_new"))
    }
}

impl Drop for PkeyCtx {
    fn drop(&mut self) {
        // SAFETY: allocated by EVP_PKEY_CTX_new, owned by this value alone.
        unsafe { ffi::EVP_PKEY_CTX_free(self.0.as_ptr()) };
    }
}

/// An `EVP_CIPHER_CTX`, freed (and so cleansed: OpenSSL clears the key
/// schedule it holds) on drop.
struct CipherCtx(ptr::NonNull<ffi::EVP_CIPHER_CTX>);

impl CipherCtx {
    fn new() -> Result<Self, OpensslError> {
        // SAFETY: allocates a context, or returns null.
        let raw = unsafe { ffi::EVP_CIPHER_CTX_new() };
        ptr::NonNull::new(raw)
            .map(CipherCtx)
            .ok_or_else(|| OpensslError::take("EVP_CIPHER_CTX_new"))
    }
}

impl Drop for CipherCtx {
    fn drop(&mut self) {
        // SAFETY: allocated by EVP_CIPHER_CTX_new, owned by this value alone.
        unsafe { ffi::EVP_CIPHER_CTX_free(self.0.as_ptr()) };
    }
}

/// AES-256-GCM length of a key, a nonce and a tag.
pub const AES_256_GCM_KEY: usize = 32;
/// See [`AES_256_GCM_KEY`].
pub const GCM_NONCE: usize = 12;
/// See [`AES_256_GCM_KEY`].
pub const GCM_TAG: usize = 16;

/// AES-256-GCM encryption of `plain` with `aad` under `key` (32 bytes):
/// the ciphertext (as long as `plain`) and the tag.
pub fn aes_256_gcm_seal(
    key: &[u8],
    nonce: &[u8; GCM_NONCE],
    aad: &[u8],
    plain: &[u8],
) -> Result<(Vec<u8>, [u8; GCM_TAG]), OpensslError> {
    if key.len() != AES_256_GCM_KEY {
        return Err(OpensslError::ours(
            "AES-256-GCM",
            format!("a key of {} bytes, not {AES_256_GCM_KEY}", key.len()),
        ));
    }
    let ctx = CipherCtx::new()?;
    let c = ctx.0.as_ptr();
    let aad_len = c_len(aad.len(), "AES-256-GCM")?;
    let plain_len = c_len(plain.len(), "AES-256-GCM")?;
    let nonce_len = c_len(GCM_NONCE, "AES-256-GCM")?;
    let tag_len = c_len(GCM_TAG, "AES-256-GCM")?;
    // GCM writes exactly as many bytes as it reads, and nothing at the end.
    let mut out = vec![0u8; plain.len()];
    let mut tag = [0u8; GCM_TAG];
    let mut n: c_int = 0;
    // What each call reads and writes: the key is 32 bytes and the nonce
    // 12, the lengths set for AES-256-GCM just before they are read. Each
    // update reads its input for the length given; the second writes at
    // most `plain_len` bytes into `out`, which has that many; the first
    // (additional data) writes nothing (null output). The final step of
    // GCM writes no bytes; the tag is 16 bytes, `tag`'s size.
    // SAFETY: `c` is a valid context owned by `ctx`, and every buffer is
    // as large as the paragraph above says its call needs.
    unsafe {
        check(
            ffi::EVP_EncryptInit_ex(
                c,
                ffi::EVP_aes_256_gcm(),
                ptr::null_mut(),
                ptr::null(),
                ptr::null(),
            ) == 1,
            "AES-256-GCM set-up",
        )?;
        check(
            ffi::EVP_CIPHER_CTX_ctrl(c, ffi::EVP_CTRL_GCM_SET_IVLEN, nonce_len, ptr::null_mut())
                == 1,
            "AES-256-GCM nonce length",
        )?;
        check(
            ffi::EVP_EncryptInit_ex(
                c,
                ptr::null(),
                ptr::null_mut(),
                key.as_ptr(),
                nonce.as_ptr(),
            ) == 1,
            "AES-256-GCM key and nonce",
        )?;
        check(
            ffi::EVP_EncryptUpdate(c, ptr::null_mut(), &mut n, aad.as_ptr(), aad_len) == 1,
            "AES-256-GCM additional data",
        )?;
        check(
            ffi::EVP_EncryptUpdate(c, out.as_mut_ptr(), &mut n, plain.as_ptr(), plain_len) == 1,
            "AES-256-GCM encryption",
        )?;
        if n != plain_len {
            return Err(OpensslError::ours(
                "AES-256-GCM encryption",
                format!("{n} bytes out for {plain_len} in"),
            ));
        }
        let mut end: c_int = 0;
        check(
            ffi::EVP_EncryptFinal_ex(c, out.as_mut_ptr().add(plain.len()), &mut end) == 1,
            "AES-256-GCM final step",
        )?;
        if end != 0 {
            return Err(OpensslError::ours(
                "AES-256-GCM final step",
                format!("{end} bytes more"),
            ));
        }
        check(
            ffi::EVP_CIPHER_CTX_ctrl(
                c,
                ffi::EVP_CTRL_GCM_GET_TAG,
                tag_len,
                tag.as_mut_ptr().cast(),
            ) == 1,
            "AES-256-GCM tag",
        )?;
    }
    Ok((out, tag))
}

/// Fills `buf` with bytes from OpenSSL's DRBG.
pub fn rand_bytes(buf: &mut [u8]) -> Result<(), OpensslError> {
    let len = c_len(buf.len(), "RAND_bytes")?;
    // SAFETY: `buf` is writable for `len` bytes.
    let ok = unsafe { ffi::RAND_bytes(buf.as_mut_ptr(), len) };
    check(ok == 1, "RAND_bytes")
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Result<[u8; 32], OpensslError> {
    let mut md = [0u8; 32];
    // SAFETY: `data` is readable for its length and `md` has the 32 bytes
    // SHA-256 writes. In OpenSSL 3 the one-shot call fetches the digest from
    // a provider, which can fail: it then returns null.
    let out = unsafe { ffi::SHA256(data.as_ptr(), data.len(), md.as_mut_ptr()) };
    check(!out.is_null(), "SHA-256")?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    use openssl::encrypt::Decrypter;
    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::{Padding, Rsa};

    /// A fresh 2048-bit key, made by the `openssl` crate (a dev-dependency:
    /// the tests check this module against it).
    fn private() -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(2048).expect("generate")).expect("pkey")
    }

    fn der() -> Vec<u8> {
        private().public_key_to_der().expect("der")
    }

    #[test]
    fn decodes_an_rsa_key_and_tells_its_size() {
        let key = RsaPublicKey::from_der(&der()).expect("decode");
        assert_eq!(key.bits(), 2048);
        assert_eq!(key.size(), 256);
    }

    #[test]
    fn refuses_garbage_a_truncated_key_and_trailing_bytes() {
        let der = der();
        assert!(RsaPublicKey::from_der(b"not a key").is_err());
        assert!(RsaPublicKey::from_der(&der[..der.len() - 1]).is_err());
        let mut longer = der.clone();
        longer.push(0);
        let e = RsaPublicKey::from_der(&longer).expect_err("trailing byte");
        assert!(e.to_string().contains("1 bytes after the key"), "{e}");
    }

    #[test]
    fn oaep_ciphertexts_are_a_block_long_and_differ_each_time() {
        let key = RsaPublicKey::from_der(&der()).expect("decode");
        let a = key.encrypt_oaep_sha256(b"password").expect("encrypt");
        let b = key.encrypt_oaep_sha256(b"password").expect("encrypt");
        assert_eq!(a.len(), 256);
        assert_ne!(a, b, "OAEP is randomised");
        // 256 - 2*32 - 2 = 190 bytes is the most OAEP-SHA256 takes.
        assert!(key.encrypt_oaep_sha256(&[1u8; 190]).is_ok());
        let e = key.encrypt_oaep_sha256(&[1u8; 191]).expect_err("too long");
        assert!(
            e.to_string()
                .starts_with("RSA-OAEP-SHA256 encryption failed: error:"),
            "{e}"
        );
    }

    #[test]
    fn the_private_key_decrypts_with_oaep_sha256_and_mgf1_sha256() {
        let private = private();
        let key = RsaPublicKey::from_der(&private.public_key_to_der().unwrap()).expect("decode");
        let ct = key.encrypt_oaep_sha256(b"correct horse").expect("encrypt");
        let mut d = Decrypter::new(&private).unwrap();
        d.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
        d.set_rsa_oaep_md(MessageDigest::sha256()).unwrap();
        d.set_rsa_mgf1_md(MessageDigest::sha256()).unwrap();
        let mut out = vec![0u8; d.decrypt_len(&ct).unwrap()];
        let n = d.decrypt(&ct, &mut out).expect("decrypt");
        assert_eq!(&out[..n], b"correct horse");
        // Controls: with SHA-1 as OAEP's digest, or as MGF1's alone, the
        // same ciphertext fails.
        let mut sha1 = Decrypter::new(&private).unwrap();
        sha1.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
        assert!(sha1.decrypt(&ct, &mut out).is_err());
        let mut mgf1_sha1 = Decrypter::new(&private).unwrap();
        mgf1_sha1.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
        mgf1_sha1.set_rsa_oaep_md(MessageDigest::sha256()).unwrap();
        mgf1_sha1.set_rsa_mgf1_md(MessageDigest::sha1()).unwrap();
        assert!(mgf1_sha1.decrypt(&ct, &mut out).is_err());
    }

    /// Nothing is left on the thread's error queue, after a success or a
    /// failure (a later OpenSSL call of the application would see it).
    #[test]
    fn the_error_queue_is_left_empty() {
        extern "C" {
            fn ERR_peek_error() -> std::ffi::c_ulong;
        }
        let empty = || {
            // SAFETY: reads this thread's error queue without changing it.
            unsafe { ERR_peek_error() == 0 }
        };
        let key = RsaPublicKey::from_der(&der()).expect("decode");
        key.encrypt_oaep_sha256(b"pw").expect("encrypt");
        assert!(empty(), "after an encryption");
        assert!(key.encrypt_oaep_sha256(&[0u8; 300]).is_err());
        assert!(empty(), "after a refused encryption");
        assert!(RsaPublicKey::from_der(b"garbage").is_err());
        assert!(empty(), "after a refused key");
        sha256(b"x").expect("sha256");
        aes_256_gcm_seal(&[1u8; 32], &[2u8; 12], b"aad", b"plain").expect("gcm");
        assert!(empty(), "after SHA-256 and GCM");
    }

    #[test]
    fn an_ec_key_is_refused_as_not_rsa() {
        let group =
            openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
        let ec = PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap();
        let e = RsaPublicKey::from_der(&ec.public_key_to_der().unwrap()).expect_err("EC");
        assert!(e.to_string().contains("not an RSA key"), "{e}");
    }

    #[test]
    fn one_key_encrypts_from_many_threads_at_once() {
        let private = private();
        let key = RsaPublicKey::from_der(&private.public_key_to_der().unwrap()).expect("decode");
        let barrier = std::sync::Barrier::new(8);
        let cts: Vec<(u8, Vec<u8>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u8)
                .map(|i| {
                    let (key, barrier) = (&key, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let mut cts = Vec::new();
                        for _ in 0..20 {
                            cts.push((i, key.encrypt_oaep_sha256(&[i; 16]).expect("encrypt")));
                        }
                        cts
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(cts.len(), 160);
        let mut d = Decrypter::new(&private).unwrap();
        d.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
        d.set_rsa_oaep_md(MessageDigest::sha256()).unwrap();
        d.set_rsa_mgf1_md(MessageDigest::sha256()).unwrap();
        for (i, ct) in &cts {
            let mut out = vec![0u8; 256];
            let n = d.decrypt(ct, &mut out).expect("decrypt");
            assert_eq!(out[..n], [*i; 16]);
        }
    }

    #[test]
    fn gcm_matches_a_known_answer() {
        // NIST's GCM test case 16 (AES-256, 96-bit nonce, with AAD),
        // from "The Galois/Counter Mode of Operation", McGrew and Viega.
        let key = unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
        let nonce: [u8; 12] = unhex("cafebabefacedbaddecaf888").try_into().unwrap();
        let plain = unhex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
             1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let (ct, tag) = aes_256_gcm_seal(&key, &nonce, &aad, &plain).expect("seal");
        assert_eq!(
            ct,
            unhex(
                "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                 8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
            )
        );
        assert_eq!(tag.to_vec(), unhex("76fc6ece0f4e1768cddf8853bb2d551b"));
        assert!(aes_256_gcm_seal(&key[1..], &nonce, &aad, &plain).is_err());
    }

    #[test]
    fn sha256_matches_a_known_answer() {
        assert_eq!(
            sha256(b"abc").expect("sha256").to_vec(),
            unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }

    #[test]
    fn pem_is_what_openssl_writes() {
        let private = private();
        let pem = RsaPublicKey::pem(&private.public_key_to_der().unwrap()).expect("pem");
        assert_eq!(
            String::from_utf8(pem).unwrap(),
            String::from_utf8(private.public_key_to_pem().unwrap()).unwrap()
        );
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
