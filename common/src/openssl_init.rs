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

//!
//! Neither program uses TLS, yet the `openssl` crate initialises through
//! libssl's `OPENSSL_init_ssl`, which alone makes the dynamic linker map
//! libssl into each process (about 280 KiB of distinct pages). Each
//! program invokes [`libcrypto_only_init!`](crate::libcrypto_only_init) once: it defines
//! `OPENSSL_init_ssl` in the program itself, doing what libssl's does for
//! libcrypto (the same options, passed on to `OPENSSL_init_crypto`) and
//! nothing for the TLS library no one uses, so the linker no longer needs
//! libssl. A macro, not a function of this crate: an application that
//! embeds the broker library may use TLS and keeps the real one.

use std::ffi::{c_int, c_void};

extern "C" {
    /// libcrypto's initialisation.
    pub fn OPENSSL_init_crypto(opts: u64, settings: *const c_void) -> c_int;
    /// The text of an error code's reason, or null when the strings are not
    /// loaded.
    fn ERR_reason_error_string(e: std::ffi::c_ulong) -> *const std::ffi::c_char;
}

/// `OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS`.
const NO_LOAD_CRYPTO_STRINGS: u64 = 0x0000_0001;
/// `OPENSSL_INIT_ADD_ALL_CIPHERS`.
pub const ADD_ALL_CIPHERS: u64 = 0x0000_0004;
/// `OPENSSL_INIT_ADD_ALL_DIGESTS`.
pub const ADD_ALL_DIGESTS: u64 = 0x0000_0008;
/// `OPENSSL_INIT_LOAD_CONFIG`.
pub const LOAD_CONFIG: u64 = 0x0000_0040;
/// `OPENSSL_INIT_NO_LOAD_CONFIG`.
pub const NO_LOAD_CONFIG: u64 = 0x0000_0080;
/// `OPENSSL_INIT_NO_LOAD_SSL_STRINGS` and `OPENSSL_INIT_LOAD_SSL_STRINGS`:
/// libssl's own options, meaningless to libcrypto.
pub const SSL_ONLY: u64 = 0x0010_0000 | 0x0020_0000;

/// The options libssl's `OPENSSL_init_ssl` passes to `OPENSSL_init_crypto`
/// for `opts` (OpenSSL 3's `ssl/ssl_init.c`): every cipher and digest, the
/// configuration file unless told not to, and `opts` without libssl's own.
pub fn crypto_options_of_ssl_init(opts: u64) -> u64 {
    let mut o = (opts & !SSL_ONLY) | ADD_ALL_CIPHERS | ADD_ALL_DIGESTS;
    if opts & NO_LOAD_CONFIG == 0 {
        o |= LOAD_CONFIG;
    }
    o
}

/// Initialises OpenSSL so that it never loads its error strings, as
/// libssl's initialisation would (see [`crypto_options_of_ssl_init`]).
/// Returns whether OpenSSL accepted the call.
pub fn without_error_strings() -> bool {
    // SAFETY: a plain initialisation call with flags and no settings.
    unsafe {
        OPENSSL_init_crypto(
            crypto_options_of_ssl_init(NO_LOAD_CRYPTO_STRINGS),
            std::ptr::null(),
        ) == 1
    }
}

/// Tells OpenSSL not to load its error strings in this process, and
/// nothing else: OpenSSL initialises the rest at its first use, as it would
/// have. Without this, OpenSSL loads them when a thread first needs an
/// error state (reading its configuration file does), whoever uses it.
/// Has no effect if they are loaded already (an initialisation earlier in
/// the process decided). Returns whether OpenSSL accepted the call.
pub fn keep_error_strings_unloaded() -> bool {
    // SAFETY: a plain initialisation call with one flag and no settings.
    unsafe { OPENSSL_init_crypto(NO_LOAD_CRYPTO_STRINGS, std::ptr::null()) == 1 }
}

/// `ERR_PACK(ERR_LIB_RSA, 0, RSA_R_DATA_TOO_LARGE_FOR_KEY_SIZE)`: an error
/// code whose text OpenSSL has whenever its strings are loaded.
const RSA_DATA_TOO_LARGE: std::ffi::c_ulong = 0x0200_006E;

/// Whether OpenSSL's error strings are loaded in this process (the text of
/// a known error code is found).
pub fn error_strings_loaded() -> bool {
    // SAFETY: a lookup by code; returns a static string or null.
    unsafe { !ERR_reason_error_string(RSA_DATA_TOO_LARGE).is_null() }
}

/// Defines `OPENSSL_init_ssl` in the program that invokes it (once, in the
/// binary's root): libcrypto's initialisation with the options libssl's
/// would pass, so that libssl is never loaded. For a program that uses no
/// TLS (the vault, the `broker` program, an application that embeds the
/// broker library and uses no TLS, through `broker::libcrypto_only_init!`);
/// never in a library.
#[macro_export]
macro_rules! libcrypto_only_init {
    () => {
        /// libssl's initialisation, for a program that uses no TLS: see
        /// `common::openssl_init`.
        ///
        /// # Safety
        ///
        /// As `OPENSSL_init_crypto`: `settings` is null or points to
        /// settings OpenSSL made.
        #[no_mangle]
        pub unsafe extern "C" fn OPENSSL_init_ssl(
            opts: u64,
            settings: *const ::std::ffi::c_void,
        ) -> ::std::ffi::c_int {
            // SAFETY: libcrypto's initialisation, with the caller's settings
            // pointer passed on unchanged (the caller's promise).
            unsafe {
                $crate::openssl_init::OPENSSL_init_crypto(
                    $crate::openssl_init::crypto_options_of_ssl_init(opts),
                    settings,
                )
            }
        }
    };
}
