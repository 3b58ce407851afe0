//! `residue-driver` built the way the README recommends for an application
//! that uses no TLS: `broker::libcrypto_only_init!()` in its binary, so
//! libssl is never loaded, and `broker::openssl_without_error_strings()`
//! first, so OpenSSL's error strings are never built. The same
//! commands, options and code (the driver's own file, as a module); only the
//! OpenSSL set-up differs. `make bench` measures the memory of both.

broker::libcrypto_only_init!();

#[path = "residue-driver.rs"]
mod app;

fn main() {
    broker::openssl_without_error_strings();
    app::main();
}
