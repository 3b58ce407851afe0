//! The broker library's errors: one enum for the calls an application makes
//! ([`Error`]), and the lower-level cause of a broken protocol
//! ([`ProtocolOrRing`]). Starting the vault has its own in
//! [`crate::launch`].

use std::fmt;
use std::time::Duration;

use common::protocol::{ErrorCode, ProtocolError};
use common::ring::RingError;
use common::secret::SecretError;

use crate::launch::{LaunchError, VaultExit};

/// The last line the vault wrote on its standard error before it ended,
/// control characters stripped and length capped (see
/// [`crate::launch::output`]); shown with the error it explains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastWords(pub Option<String>);

impl fmt::Display for LastWords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            // Debug quoting: a quote or backslash in the vault's text cannot
            // close the quotation early.
            Some(line) => write!(f, "; its last message: {line:?}"),
            None => Ok(()),
        }
    }
}

fn program_note(program: &Option<std::path::PathBuf>) -> String {
    program
        .as_ref()
        .map(|p| format!("; the vault program was {}", p.display()))
        .unwrap_or_default()
}

/// Errors of the broker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key size {bits} is not offered; use 2048, 3072 or 4096")]
    KeyBits { bits: u32 },
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    MemLock(#[from] common::budget::TooLittle),
    #[error("cannot create the ring")]
    Ring(#[source] RingError),
    #[error("vault {exit} (during {during}){said}{}", program_note(.program))]
    VaultDied {
        exit: VaultExit,
        during: &'static str,
        said: LastWords,
        /// The vault program, when it died during start-up (the wrong
        /// program may have been found).
        program: Option<std::path::PathBuf>,
    },
    #[error("the vault did not answer {during} within {after:?}, and was stopped: {exit}")]
    Timeout {
        during: &'static str,
        after: Duration,
        exit: VaultExit,
    },
    #[error("the vault broke the protocol during {during}, and was stopped: {exit}")]
    Protocol {
        during: &'static str,
        exit: VaultExit,
        #[source]
        source: ProtocolOrRing,
    },
    #[error("the vault refused {during}: {}", .code.describe())]
    Refused {
        during: &'static str,
        code: ErrorCode,
    },
    #[error("the vault is being traced by pid {tracer} (its TracerPid); it was stopped before it held any secret")]
    VaultTraced { tracer: u32 },
    #[error("the vault's public key is unusable: {0}")]
    PublicKey(String),
    #[error("encryption with the vault's public key failed: {0}")]
    Encrypt(String),
    #[error("no secret named {name:?}")]
    UnknownName { name: String },
    #[error("a secret named {name:?} already exists; delete it first to replace it")]
    NameExists { name: String },
    #[error("invalid secret name: {reason}")]
    BadName { reason: &'static str },
    #[error("too many secrets: the limit is {limit}")]
    TooManySecrets { limit: usize },
    #[error("the secret is empty")]
    EmptySecret,
    #[error("the secret is {len} bytes; the limit is {limit} bytes (64 KiB)")]
    SecretTooLong { len: usize, limit: usize },
    #[error(transparent)]
    Buffer(#[from] SecretError),
    #[error("the broker was shut down")]
    ShutDown,
    #[error("the secret {name:?} was stored under a vault key that no longer exists (the vault was restarted): store it again")]
    Lost { name: String },
}

/// The lower-level failure behind [`Error::Protocol`].
#[derive(Debug, thiserror::Error)]
pub enum ProtocolOrRing {
    #[error(transparent)]
    Ring(#[from] RingError),
    #[error(transparent)]
    Frame(#[from] ProtocolError),
    #[error("answer {got} to request {expected}")]
    WrongId { expected: u32, got: u32 },
    #[error("unexpected answer {got} to a {request} request")]
    WrongKind {
        request: &'static str,
        got: &'static str,
    },
    #[error("a plaintext of {len} bytes is larger than any secret ({max})")]
    AnswerTooLarge { len: usize, max: usize },
}
