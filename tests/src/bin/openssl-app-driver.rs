//! `residue-driver` as an application that uses the `openssl` crate for
//! itself and keeps the crate's own set-up: its first use initialises
//! OpenSSL through libssl's `OPENSSL_init_ssl`, which maps libssl, and
//! loads OpenSSL's error strings before the broker library is used (so the
//! library's [`broker::Config::openssl_error_strings`] default cannot keep
//! them out). The same commands, options and code (the driver's own file,
//! as a module); only the OpenSSL set-up differs. It is the positive
//! control of `openssl_setup.rs`, and `make bench` measures its memory.

#[path = "residue-driver.rs"]
mod app;

fn main() {
    openssl::init();
    app::main();
}
