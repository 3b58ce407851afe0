//! The broker: the library applications use to keep secrets away from their
//! own memory, and the `broker` command line.
//!
//! [`Broker::spawn`] starts the sandboxed vault, which generates an RSA key in
//! OpenSSL's secure heap. [`Broker::store`] encrypts a secret with the vault's
//! public key and keeps only the ciphertext. [`Broker::with_secret`] has the
//! vault decrypt it and lends the plaintext to a closure; every copy is wiped:
//! the vault's as soon as it is written into the ring, the ring's as soon as
//! the broker reads it, the broker's when the closure returns or panics.
//!
//! An application that embeds this library is not itself seccomp-filtered by
//! it; the `broker` program is hardened (non-dumpable, no core files).

pub mod client;
pub mod error;
pub mod launch;
pub mod sandbox;
mod session;
pub mod terminal;

pub use client::{Broker, Config, WipeEvidence};
pub use common::protocol::HeapStatus;
pub use common::ring::Backing as RingBacking;
pub use common::sandbox::Mode as SandboxMode;
pub use common::secret::SecretBuf;
pub use error::{Error, LastWords, ProtocolOrRing};
pub use launch::VaultExit;
pub use launch::{protect_process, LaunchError, Protection};
