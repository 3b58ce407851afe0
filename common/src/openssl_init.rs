//! Initialising OpenSSL without its error strings.
//!
//! OpenSSL loads the text of every error message it knows at its first
//! initialisation (the `openssl` crate asks for it): a hash table of some
//! thousands of entries, and the pages of its string tables, in each
//! process (measured: about 630 KiB of the two processes' distinct pages).
//! The vault and the `broker` program report OpenSSL's errors by their
//! codes instead (`error:0A000086:...`, which `openssl errstr` turns into
//! text). The first initialisation decides, so this must run before any
//! other use of OpenSSL; it is not done for an application that embeds
//! the library, whose own use of OpenSSL may want the strings.

use std::ffi::{c_int, c_void};

extern "C" {
    fn OPENSSL_init_ssl(opts: u64, settings: *const c_void) -> c_int;
}

/// `OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS`.
const NO_LOAD_CRYPTO_STRINGS: u64 = 0x0000_0001;
/// `OPENSSL_INIT_NO_LOAD_SSL_STRINGS`.
const NO_LOAD_SSL_STRINGS: u64 = 0x0010_0000;

/// Initialises OpenSSL (crypto and ssl) so that it never loads its error
/// strings. Returns whether OpenSSL accepted the call.
pub fn without_error_strings() -> bool {
    // SAFETY: a plain initialisation call with flags and no settings.
    unsafe {
        OPENSSL_init_ssl(
            NO_LOAD_CRYPTO_STRINGS | NO_LOAD_SSL_STRINGS,
            std::ptr::null(),
        ) == 1
    }
}
