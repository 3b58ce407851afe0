//! `residue-driver` as an application that uses the `openssl` crate for
//! itself, set up the way the README recommends when it uses no TLS:
//! `broker::libcrypto_only_init!()` in its binary, so libssl is never
//! loaded, and `broker::openssl_without_error_strings()` before its first
//! use of OpenSSL, so OpenSSL's error strings are never built. Then it
//! initialises the `openssl` crate, as any use of that crate does. The same
//! commands, options and code (the driver's own file, as a module); only the
//! OpenSSL set-up differs. `make bench` measures the memory of each.

broker::libcrypto_only_init!();

#[path = "residue-driver.rs"]
mod app;

fn main() {
    broker::openssl_without_error_strings();
    openssl::init();
    app::main();
}
