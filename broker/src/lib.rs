//! The broker: the library applications use to keep secrets away from their
//! own memory, and the `broker` command line.
//!
//! [`Broker::spawn`] starts the sandboxed vault, a separate program that
//! generates an RSA key in OpenSSL's secure heap. [`Broker::store`]
//! encrypts a secret with the vault's public key and keeps only the
//! ciphertext. [`Broker::with_secret`] has the vault decrypt it and lends
//! the plaintext to a closure; every copy is wiped: the vault's as soon as
//! it is written into the ring, the ring's as soon as the broker reads it,
//! the broker's when the closure returns or panics.
//!
//! ```no_run
//! // no_run: it starts a real vault, which must be installed (or built)
//! // where the program finds it; doc tests run from a directory with none.
//! use broker::terminal::{read_password, PasswordSource};
//! use broker::{Broker, Config};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // First thing in main, before any thread: may re-execute the program.
//!     let protection = broker::protect_process(None)?;
//!     if let Some(warning) = protection.warning() {
//!         eprintln!("{warning}");
//!     }
//!     let vault = Broker::spawn(Config::default())?;
//!     // Into a locked, never-dumped buffer, without echo.
//!     let max = broker::client::MAX_SECRET_LEN; // over 190 bytes: sealed in an envelope
//!     let password = read_password(PasswordSource::Terminal, "password: ", max, None)?;
//!     vault.store("db-password", password)?; // the plaintext is wiped here
//!     let len = vault.with_secret("db-password", |bytes| bytes.len())?;
//!     println!("{len} bytes lent, and wiped");
//!     vault.shutdown()?; // also done on drop
//!     Ok(())
//! }
//! ```
//!
//! `examples/embed.rs` is the same as a program (`cargo build --example
//! embed`), and the suites run it the ways below (`tests/tests/embed.rs`).
//!
//! # Where the vault comes from
//!
//! The vault is its own program, `vault`, built beside `broker` and
//! installed by `make install` in `PREFIX/libexec/privsep-vault/vault`.
//! The broker runs, in this order of preference:
//!
//! 1. [`Config::vault_path`], when it is set;
//! 2. the vault [`protect_process`] found and prepared, when it was called
//!    (with `Some(path)`, that path);
//! 3. otherwise, the first that exists of, from the running program's own
//!    path `DIR/program`: `DIR/../libexec/privsep-vault/vault` (the `make
//!    install` layout), then `DIR/vault` (a build directory,
//!    `target/release/`), then the fixed place
//!    [`launch::installed_vault`]: `PREFIX/libexec/privsep-vault/vault`,
//!    `PREFIX` baked in when this crate is built (`PRIVSEP_VAULT_PREFIX` in
//!    the build's environment, `/usr/local` by default, as the Makefile's
//!    `PREFIX`). So after `sudo make install` in the privsep-vault
//!    checkout, an application run by `cargo run` from its own `target/`
//!    finds the vault with no configuration.
//!
//! Whichever it is, the file must pass a trust check before it runs (owned
//! by root or the user running the broker, not writable by others, nor any
//! directory above it: [`launch::trust`]). When none is found, the error
//! ([`LaunchError::NotFound`]) lists every path tried, and the fixes:
//!
//! ```text
//! no vault binary found; looked for /home/me/app/target/libexec/privsep-vault/vault,
//! /home/me/app/target/debug/vault and /usr/local/libexec/privsep-vault/vault:
//! install it with `sudo make install` in the privsep-vault checkout (it puts the
//! vault in /usr/local/libexec/privsep-vault/vault), or give its path
//! (`Config::vault_path` or `protect_process(Some(path))` in an application,
//! `--vault PATH` for `broker`)
//! ```
//!
//! # Lanes
//!
//! A [`Broker`] is `Send + Sync`. It talks to its vault over several
//! *lanes*: each a pair of rings (requests, answers) in one sealed memfd,
//! served by its own thread in the vault. By default there is one lane per
//! CPU, at most [`client::DEFAULT_MAX_LANES`], fewer when `RLIMIT_MEMLOCK`
//! would not allow them ([`Config::lanes`] sets the number). A request
//! takes a free lane, or waits for one: requests from as many threads as
//! there are lanes run in parallel.
//!
//! # Errors
//!
//! Every call returns [`Error`], one variant per failing step (see there for
//! which ones end the vault); the types its variants carry are re-exported
//! here ([`ErrorCode`], [`VaultExit`], [`LaunchError`], [`TooLittle`],
//! [`SecretError`], ...). Nothing panics on bad input, and nothing waits
//! past [`Config::request_timeout`].
//!
//! # Memory: what OpenSSL costs the application
//!
//! The library calls libcrypto alone (through `openssl-sys`, not the
//! `openssl` crate), so an application that does not use OpenSSL itself
//! never maps libssl. And unless [`Config::openssl_error_strings`] says
//! otherwise, [`Broker::spawn`] tells OpenSSL, before its first use, never
//! to load the text of its error messages (a process-wide choice, which the
//! first initialisation of OpenSSL makes: if the application used OpenSSL
//! before, its choice stands). OpenSSL's errors then read as codes
//! (`error:0200006E`; `openssl errstr` gives their text).
//!
//! An application that uses the `openssl` crate for itself gets libssl and
//! the error strings at that crate's first use. If it uses no TLS it can
//! leave both out, as the `broker` program does: two lines, in the
//! application's binary (never in a library: the macro defines the symbol
//! `OPENSSL_init_ssl`, and a program that does use TLS needs libssl's own):
//!
//! ```no_run
//! broker::libcrypto_only_init!(); // at the root of the binary crate
//!
//! fn main() {
//!     broker::openssl_without_error_strings(); // before any use of OpenSSL
//!     // ...
//! }
//! ```
//!
//! `make bench` measures an application and its vault all three ways
//! (`distinct_kib_together`, `distinct_kib_together_openssl_crate` and
//! `distinct_kib_together_lean`, with the README's table): about 750 KiB of
//! resident pages lie between the second and the others.
//!
//! # What this library does not do
//!
//! An application that embeds it is not seccomp-filtered by it (the
//! `broker` program installs its own filter, [`sandbox`]); it is made
//! non-dumpable, without core files, by [`protect_process`].
//!
//! # Modules
//!
//! - [`client`] holds [`Broker`] and its [`Config`];
//! - [`error`] holds [`Error`];
//! - [`launch`] finds, checks and starts the vault, and holds
//!   [`protect_process`];
//! - [`terminal`] reads a password without echo into a [`SecretBuf`];
//! - [`sandbox`] is the `broker` program's own seccomp filter.

#![warn(missing_docs)]

pub mod client;
mod crypto;
pub mod error;
pub mod launch;
pub mod sandbox;
mod session;
pub mod terminal;

pub use client::{Broker, Config, SecretMemory, SecretMemoryInForce, WipeEvidence};
pub use common::budget::TooLittle;
pub use common::libcrypto_only_init;
pub use common::openssl_init::without_error_strings as openssl_without_error_strings;
pub use common::protocol::{ErrorCode, HeapStatus, ProtocolError};
pub use common::ring::{Backing as RingBacking, RingError};
pub use common::sandbox::Mode as SandboxMode;
pub use common::secret::{SecretBuf, SecretError};
pub use error::{Error, LastWords, ProtocolOrRing};
pub use launch::{
    protect_process, Image, ImageError, ImageKind, LaunchError, ProtectError, Protection,
    SpawnError, TrustError, VaultExit,
};
