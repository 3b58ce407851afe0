//! The request loop: the vault as a decryption oracle that holds only the key.
//!
//! Each request is copied out of the ring (and wiped there) by the ring
//! itself; its private copy is wiped after handling. Decrypted plaintext is
//! produced in the secure heap, written into the response ring, then wiped
//! and verified zero before the buffer returns to the arena.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::protocol::{self, ErrorCode, Request, Response};
use common::ring::{Channel, RingError};
use common::secret::SecretBuf;

use crate::key::{Key, KeyError};
use crate::startup::STOP_SIGNAL;

/// How long the vault waits for the broker to make room for an answer.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an idle vault wakes to look at its stop flag (the signal also
/// interrupts the futex sleep directly; this bounds the race between the
/// flag check and the sleep).
const IDLE_SLICE: Duration = Duration::from_millis(250);

/// Errors that end the loop.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("ring failure while receiving a request")]
    Receive(#[source] RingError),
    #[error("ring failure while answering request {id}")]
    Send {
        id: u32,
        #[source]
        source: RingError,
    },
    #[error("cannot export the public key")]
    PublicKey(#[source] KeyError),
}

/// Why the loop ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The broker asked for it.
    Shutdown,
    /// A signal asked for it.
    Signal(i32),
}

/// The serving state.
#[derive(Debug)]
pub struct Server {
    chan: Channel,
    key: Key,
    request: SecretBuf,
    public_der: Vec<u8>,
    decrypts: u64,
    wipes_verified: u64,
}

impl Server {
    /// Prepares to serve; `request` is the private buffer frames are copied into.
    pub fn new(mut chan: Channel, key: Key, request: SecretBuf) -> Result<Self, ServeError> {
        chan.rx.set_slice(IDLE_SLICE);
        let public_der = key.public_der().map_err(ServeError::PublicKey)?;
        Ok(Self {
            chan,
            key,
            request,
            public_der,
            decrypts: 0,
            wipes_verified: 0,
        })
    }

    /// Serves until a shutdown request, a stop signal, or a ring failure.
    pub fn run(&mut self) -> Result<Exit, ServeError> {
        loop {
            let mut stop = || match STOP_SIGNAL.load(Ordering::SeqCst) {
                0 => Ok(()),
                _ => Err(RingError::Interrupted),
            };
            // A signal that arrived before this point is seen by `stop`
            // after the first sleep slice at the latest.
            match self.chan.rx.recv_into(&mut self.request, None, &mut stop) {
                Ok(_) => {}
                Err(RingError::Interrupted) => {
                    return Ok(Exit::Signal(STOP_SIGNAL.load(Ordering::SeqCst)))
                }
                Err(e) => return Err(ServeError::Receive(e)),
            }
            let outcome = self.handle();
            self.request.clear();
            match outcome? {
                Some(exit) => return Ok(exit),
                None => continue,
            }
        }
    }

    fn send(&mut self, id: u32, resp: &Response<'_>) -> Result<(), ServeError> {
        let enc = protocol::encode_response(id, resp);
        let deadline = Some(Instant::now() + SEND_TIMEOUT);
        self.chan
            .tx
            .send(&enc.parts(), deadline, &mut || Ok(()))
            .map_err(|source| ServeError::Send { id, source })
    }

    fn handle(&mut self) -> Result<Option<Exit>, ServeError> {
        // Parse the private copy; the ring bytes are already wiped.
        let frame_len = self.request.len();
        let mut header_id = 0u32;
        let parsed = self.request.expose(|frame| {
            if frame.len() >= 8 {
                header_id = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
            }
            match protocol::decode_request(frame) {
                Ok((id, Request::Decrypt { ciphertext })) => {
                    Ok((id, Action::Decrypt(self.key.decrypt(ciphertext))))
                }
                Ok((id, Request::PublicKey)) => Ok((id, Action::PublicKey)),
                Ok((id, Request::HeapStatus)) => Ok((id, Action::Status)),
                Ok((id, Request::Shutdown)) => Ok((id, Action::Shutdown)),
                Ok((
                    id,
                    Request::Unseal {
                        wrapped,
                        nonce,
                        tag,
                        ciphertext,
                    },
                )) => Ok((
                    id,
                    Action::Decrypt(self.key.unseal(wrapped, nonce, tag, ciphertext)),
                )),
                Err(e) => Err(e),
            }
        });
        let (id, action) = match parsed {
            Ok(v) => v,
            Err(e) => {
                eprintln!("vault: refused a malformed request of {frame_len} bytes: {e}");
                self.send(header_id, &Response::Error(ErrorCode::Malformed))?;
                return Ok(None);
            }
        };
        match action {
            Action::PublicKey => {
                let der = std::mem::take(&mut self.public_der);
                let r = self.send(id, &Response::PublicKey { der: &der });
                self.public_der = der;
                r?;
            }
            Action::Status => {
                let status = self.key.status(self.decrypts, self.wipes_verified);
                self.send(id, &Response::HeapStatus(status))?;
            }
            Action::Shutdown => {
                self.send(id, &Response::ShutdownAck)?;
                return Ok(Some(Exit::Shutdown));
            }
            Action::Decrypt(Ok((mut plain, len))) => {
                let sent = self.send(
                    id,
                    &Response::Plaintext {
                        bytes: plain.prefix(len),
                    },
                );
                // Wipe at once, whether or not the send worked.
                if plain.wipe_and_verify() == 0 {
                    self.wipes_verified += 1;
                }
                drop(plain);
                sent?;
                self.decrypts += 1;
            }
            Action::Decrypt(Err(e)) => {
                let code = match e {
                    KeyError::CiphertextLength { .. } => ErrorCode::Malformed,
                    KeyError::EnvelopeTooLarge { .. } => ErrorCode::TooLarge,
                    KeyError::Decrypt => ErrorCode::DecryptFailed,
                    KeyError::BelowBaseline { .. }
                    | KeyError::NotSecure { .. }
                    | KeyError::CacheFlag => {
                        eprintln!("vault: secure heap check failed, refusing to decrypt: {e}");
                        ErrorCode::HeapCheckFailed
                    }
                    _ => ErrorCode::Internal,
                };
                self.send(id, &Response::Error(code))?;
            }
        }
        Ok(None)
    }

    /// Wipes what the vault holds and frees the key (RSA_free clears the
    /// secure BIGNUMs before they return to the arena).
    pub fn finish(self) {
        let Server {
            chan,
            key,
            mut request,
            ..
        } = self;
        request.clear();
        drop(key);
        drop(chan);
    }
}

enum Action {
    PublicKey,
    Status,
    Shutdown,
    Decrypt(Result<(crate::heap::SecureBuf, usize), KeyError>),
}
