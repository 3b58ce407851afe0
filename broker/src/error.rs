//! The broker library's errors: one enum for the calls an application makes
//! ([`Error`]), and the lower-level cause of a broken protocol
//! ([`ProtocolOrRing`]). Starting the vault has its own in
//! [`crate::launch`].

use std::fmt;
use std::time::Duration;

use common::budget::TooLittle;
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

/// Errors of the broker: what every call of [`Broker`](crate::Broker)
/// returns.
///
/// The message (`Display`) is written for a person: what happened and what
/// to do; the cause, when there is one, is [`std::error::Error::source`]
/// (the message does not repeat it). Every variant names the step that
/// failed, so an application can tell the kinds apart:
///
/// - the vault could not be started: [`Error::KeyBits`], [`Error::Launch`],
///   [`Error::MemLock`], [`Error::Ring`], [`Error::PublicKey`],
///   [`Error::VaultTraced`];
/// - the vault ended or misbehaved: [`Error::VaultDied`],
///   [`Error::Timeout`], [`Error::Protocol`]. The vault is then stopped and
///   every ring wiped; later requests to this broker fail the same way
///   until [`Broker::restart`](crate::Broker::restart) starts a new one;
/// - the vault answered, but refused: [`Error::Refused`] (it goes on
///   serving);
/// - the call was wrong: [`Error::UnknownName`], [`Error::NameExists`],
///   [`Error::BadName`], [`Error::TooManySecrets`], [`Error::EmptySecret`],
///   [`Error::SecretTooLong`], [`Error::Lost`], [`Error::ShutDown`];
/// - a local step failed: [`Error::Encrypt`], [`Error::Buffer`].
///
/// ```
/// # fn read(vault: &broker::Broker) -> Result<(), broker::Error> {
/// use broker::{Error, ErrorCode};
///
/// match vault.with_secret("db-password", |bytes| bytes.len()) {
///     Ok(len) => println!("{len} bytes"),
///     Err(Error::UnknownName { name }) => eprintln!("store {name:?} first"),
///     Err(Error::Refused { code: ErrorCode::ArenaFull, .. }) => {
///         eprintln!("the vault's secure heap was full: try again later")
///     }
///     Err(e @ (Error::VaultDied { .. } | Error::Timeout { .. })) => {
///         eprintln!("{e}");
///         let lost = vault.restart()?; // a new vault, a new key
///         eprintln!("store these again: {lost:?}");
///     }
///     Err(e) => return Err(e),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// [`Config::key_bits`](crate::Config::key_bits) is not 2048, 3072 or
    /// 4096; nothing was started.
    #[error("key size {bits} is not offered; use 2048, 3072 or 4096")]
    KeyBits {
        /// The size asked for.
        bits: u32,
    },
    /// The vault binary was not found, failed the trust check, could not be
    /// prepared or started; or [`protect_process`](crate::protect_process)
    /// failed. The message names the path and the reason.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// `RLIMIT_MEMLOCK` is too low for what the broker and the vault must
    /// lock, even with the fewest lanes; the message gives the figure to
    /// raise it to. Nothing was started.
    #[error(transparent)]
    MemLock(#[from] TooLittle),
    /// [`SecretMemory::Require`](crate::SecretMemory::Require) was asked
    /// for, and this process cannot have `memfd_secret` memory (the kernel
    /// lacks it, `secretmem.enable=0`, a seccomp filter refuses it, or the
    /// memory-lock limit is reached). Nothing was started.
    #[error("secret memory was required, and the kernel gives none: {why} (use --secret-memory auto to fall back to ordinary locked memory, which root can read)")]
    SecretMemoryUnavailable {
        /// What the kernel said.
        why: String,
    },
    /// A ring (the shared memory of a lane) could not be created or sealed.
    #[error("cannot create the ring")]
    Ring(#[source] RingError),
    /// The vault ended (crashed, was killed, killed by its sandbox, exited)
    /// before or during a request; the broker notices at once, it does not
    /// wait for the timeout.
    #[error("vault {exit} (during {during}){said}{}", program_note(.program))]
    VaultDied {
        /// How it ended.
        exit: VaultExit,
        /// What the broker was doing: `"start-up"`, `"a decryption"`, ...
        during: &'static str,
        /// The last line the vault wrote on its standard error, if any.
        said: LastWords,
        /// The vault program, when it died during start-up (the wrong
        /// program may have been found).
        program: Option<std::path::PathBuf>,
    },
    /// The vault did not answer within
    /// [`Config::request_timeout`](crate::Config::request_timeout) (or
    /// [`Config::start_timeout`](crate::Config::start_timeout) at start):
    /// it was killed.
    #[error("the vault did not answer {during} within {after:?}, and was stopped: {exit}")]
    Timeout {
        /// The request that timed out.
        during: &'static str,
        /// The timeout that ran out.
        after: Duration,
        /// How the vault ended once stopped.
        exit: VaultExit,
    },
    /// The vault broke the protocol (a corrupt ring, a malformed or
    /// unexpected answer): it was killed.
    #[error("the vault broke the protocol during {during}, and was stopped: {exit}")]
    Protocol {
        /// The request during which it happened.
        during: &'static str,
        /// How the vault ended once stopped.
        exit: VaultExit,
        /// What was wrong.
        #[source]
        source: ProtocolOrRing,
    },
    /// The vault answered with an error instead of a result; it goes on
    /// serving. [`ErrorCode::describe`] says what it means.
    #[error("the vault refused {during}: {}", .code.describe())]
    Refused {
        /// The request it refused.
        during: &'static str,
        /// Why.
        code: ErrorCode,
    },
    /// A tracer is attached to the vault at start (it cannot attach later):
    /// the vault was stopped before any secret reached it.
    #[error("the vault is being traced by pid {tracer} (its TracerPid); it was stopped before it held any secret")]
    VaultTraced {
        /// The `TracerPid` read from `/proc` (0 if it could not be read).
        tracer: u32,
    },
    /// The public key the vault sent cannot be used (or not exported as
    /// PEM); the text is OpenSSL's.
    #[error("the vault's public key is unusable: {0}")]
    PublicKey(String),
    /// Encrypting a secret with the vault's public key failed; the text is
    /// OpenSSL's. Nothing was stored.
    #[error("encryption with the vault's public key failed: {0}")]
    Encrypt(String),
    /// No secret is stored under this name.
    #[error("no secret named {name:?}")]
    UnknownName {
        /// The name asked for.
        name: String,
    },
    /// A secret is already stored under this name; a store never replaces
    /// one: [`Broker::delete`](crate::Broker::delete) it first.
    #[error("a secret named {name:?} already exists; delete it first to replace it")]
    NameExists {
        /// The name.
        name: String,
    },
    /// The name is empty, longer than
    /// [`MAX_NAME_LEN`](crate::client::MAX_NAME_LEN) (128) bytes, or holds
    /// control characters.
    #[error("invalid secret name: {reason}")]
    BadName {
        /// Which of those.
        reason: &'static str,
    },
    /// [`Config::max_secrets`](crate::Config::max_secrets) secrets are
    /// stored already.
    #[error("too many secrets: the limit is {limit}")]
    TooManySecrets {
        /// The limit.
        limit: usize,
    },
    /// The secret to store is empty.
    #[error("the secret is empty")]
    EmptySecret,
    /// The secret to store is longer than
    /// [`MAX_SECRET_LEN`](crate::client::MAX_SECRET_LEN) (64 KiB).
    #[error("the secret is {len} bytes; the limit is {limit} bytes (64 KiB)")]
    SecretTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A locked buffer for plaintext could not be set up (usually
    /// `RLIMIT_MEMLOCK`).
    #[error(transparent)]
    Buffer(#[from] SecretError),
    /// The vault was shut down ([`Broker::shutdown`](crate::Broker::shutdown)):
    /// no more requests.
    #[error("the broker was shut down")]
    ShutDown,
    /// The secret was stored under an earlier vault's key, gone with
    /// [`Broker::restart`](crate::Broker::restart): store it again.
    #[error("the secret {name:?} was stored under a vault key that no longer exists (the vault was restarted): store it again")]
    Lost {
        /// The name.
        name: String,
    },
}

/// The lower-level failure behind [`Error::Protocol`].
#[derive(Debug, thiserror::Error)]
pub enum ProtocolOrRing {
    /// The ring itself: a corrupt index or length written by the vault.
    #[error(transparent)]
    Ring(#[from] RingError),
    /// A frame that does not decode.
    #[error(transparent)]
    Frame(#[from] ProtocolError),
    /// An answer to another request than the one sent.
    #[error("answer {got} to request {expected}")]
    WrongId {
        /// The id of the request sent.
        expected: u32,
        /// The id the answer carried.
        got: u32,
    },
    /// An answer of the wrong kind (a public key to a decryption, say).
    #[error("unexpected answer {got} to a {request} request")]
    WrongKind {
        /// The kind of request sent.
        request: &'static str,
        /// The kind of answer received.
        got: &'static str,
    },
    /// A plaintext longer than any secret could be.
    #[error("a plaintext of {len} bytes is larger than any secret ({max})")]
    AnswerTooLarge {
        /// Its length.
        len: usize,
        /// The longest secret.
        max: usize,
    },
}
