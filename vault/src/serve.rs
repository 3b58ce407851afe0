//! The request loop: the vault as a decryption oracle that holds only the key.
//!
//! One [`Server`] per lane (ring pair); the lanes share the key, the public
//! key and the counters through [`Shared`]. A shutdown request on any lane,
//! or a stop signal, ends every lane.
//!
//! Each request is copied out of the ring (and wiped there) by the ring
//! itself; its private copy is wiped after handling. Decrypted plaintext is
//! produced in the secure heap, written into the response ring, then wiped
//! and verified zero before the buffer returns to the arena.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::protocol::{self, ErrorCode, Request, Response};
use common::ring::{Channel, RingError, RingHandle};
use common::secret::SecretBuf;

use crate::key::{Key, KeyError};
use crate::startup::STOP_SIGNAL;

/// How long the vault waits for the broker to make room for an answer.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a lane waits for the next request (yielding its core to
/// anything runnable) before it sleeps: a client that sends requests back to
/// back is caught without a futex wake on either side.
const NEXT_REQUEST_SPIN: Duration = Duration::from_micros(200);
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

/// What every lane shares: the key, its public half, the counters, and the
/// stop flag with a way to wake every lane's reader.
#[derive(Debug)]
pub struct Shared {
    key: Key,
    public_der: Vec<u8>,
    decrypts: AtomicU64,
    wipes_verified: AtomicU64,
    stop: AtomicBool,
    lanes: Vec<RingHandle>,
}

impl Shared {
    /// Shares `key` between the lanes whose rings are `lanes`.
    pub fn new(key: Key, lanes: Vec<RingHandle>) -> Result<Self, ServeError> {
        let public_der = key.public_der().map_err(ServeError::PublicKey)?;
        Ok(Self {
            key,
            public_der,
            decrypts: AtomicU64::new(0),
            wipes_verified: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            lanes,
        })
    }

    /// Asks every lane to stop, and wakes those that sleep.
    pub fn stop_all(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for lane in &self.lanes {
            lane.wake_reader();
        }
    }
}

/// The serving state of one lane.
#[derive(Debug)]
pub struct Server {
    chan: Channel,
    shared: Arc<Shared>,
    request: SecretBuf,
}

impl Server {
    /// Prepares to serve one lane; `request` is the private buffer frames
    /// are copied into.
    pub fn new(mut chan: Channel, shared: Arc<Shared>, request: SecretBuf) -> Self {
        chan.rx.set_slice(IDLE_SLICE);
        chan.rx.set_spin(NEXT_REQUEST_SPIN);
        Self {
            chan,
            shared,
            request,
        }
    }

    /// Serves until a shutdown request, a stop signal, or a ring failure; a
    /// failure on this lane stops every lane (a broker that corrupts one ring
    /// is not trusted on the others).
    pub fn run(&mut self) -> Result<Exit, ServeError> {
        let outcome = self.serve();
        if outcome.is_err() {
            self.shared.stop_all();
        }
        outcome
    }

    fn serve(&mut self) -> Result<Exit, ServeError> {
        loop {
            let shared = &self.shared;
            let mut stop = || {
                if STOP_SIGNAL.load(Ordering::SeqCst) != 0 || shared.stop.load(Ordering::SeqCst) {
                    Err(RingError::Interrupted)
                } else {
                    Ok(())
                }
            };
            // A signal that arrived before this point is seen by `stop`
            // after the first sleep slice at the latest.
            match self.chan.rx.recv_into(&mut self.request, None, &mut stop) {
                Ok(_) => {}
                Err(RingError::Interrupted) => {
                    return Ok(match STOP_SIGNAL.load(Ordering::SeqCst) {
                        0 => Exit::Shutdown,
                        sig => Exit::Signal(sig),
                    })
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
        let refused_before = crate::alloc::refused_here();
        let mut header_id = 0u32;
        let parsed = self.request.expose(|frame| {
            if frame.len() >= 8 {
                header_id = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
            }
            match protocol::decode_request(frame) {
                Ok((id, Request::Decrypt { ciphertext })) => {
                    Ok((id, Action::Decrypt(self.shared.key.decrypt(ciphertext))))
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
                    Action::Decrypt(self.shared.key.unseal(wrapped, nonce, tag, ciphertext)),
                )),
                Err(e) => Err(e),
            }
        });
        let (id, action) = match parsed {
            Ok(v) => v,
            Err(e) => {
                crate::say(&format!(
                    "vault: refused a malformed request of {frame_len} bytes: {e}"
                ));
                self.send(header_id, &Response::Error(ErrorCode::Malformed))?;
                return Ok(None);
            }
        };
        match action {
            Action::PublicKey => {
                let shared = self.shared.clone();
                self.send(
                    id,
                    &Response::PublicKey {
                        der: &shared.public_der,
                    },
                )?;
            }
            Action::Status => {
                let s = &self.shared;
                let status = s.key.status(
                    s.decrypts.load(Ordering::SeqCst),
                    s.wipes_verified.load(Ordering::SeqCst),
                );
                self.send(id, &Response::HeapStatus(status))?;
            }
            Action::Shutdown => {
                self.send(id, &Response::ShutdownAck)?;
                self.shared.stop_all();
                return Ok(Some(Exit::Shutdown));
            }
            Action::Decrypt(Ok((mut plain, len))) => {
                // The plaintext is written into the ring but not published
                // until the vault's own copy is wiped: there is no instant at
                // which the broker has the answer and the vault still holds
                // it. Wiped whether or not the write worked.
                let enc = protocol::encode_response(
                    id,
                    &Response::Plaintext {
                        bytes: plain.prefix(len),
                    },
                );
                let deadline = Some(Instant::now() + SEND_TIMEOUT);
                let staged = self.chan.tx.stage(&enc.parts(), deadline, &mut || Ok(()));
                if plain.wipe_and_verify() == 0 {
                    self.shared.wipes_verified.fetch_add(1, Ordering::SeqCst);
                }
                drop(plain);
                let staged = staged.map_err(|source| ServeError::Send { id, source })?;
                // Counted before the broker can see the answer, so that a
                // status it asks for next (on any lane) includes this one.
                self.shared.decrypts.fetch_add(1, Ordering::SeqCst);
                staged
                    .publish()
                    .map_err(|source| ServeError::Send { id, source })?;
            }
            Action::Decrypt(Err(e)) => {
                // The arena refused this thread memory during the request:
                // that, not the ciphertext, is why it failed.
                let arena_full = crate::alloc::refused_here() > refused_before;
                let code = match e {
                    KeyError::Heap(_) => ErrorCode::ArenaFull,
                    _ if arena_full => ErrorCode::ArenaFull,
                    KeyError::CiphertextLength { .. } => ErrorCode::Malformed,
                    KeyError::EnvelopeTooLarge { .. } => ErrorCode::TooLarge,
                    KeyError::Decrypt => ErrorCode::DecryptFailed,
                    KeyError::BelowBaseline { .. } | KeyError::NotSecure { .. } => {
                        crate::say(&format!(
                            "vault: secure heap check failed, refusing to decrypt: {e}"
                        ));
                        ErrorCode::HeapCheckFailed
                    }
                    _ => ErrorCode::Internal,
                };
                self.send(id, &Response::Error(code))?;
            }
        }
        Ok(None)
    }

    /// Wipes this lane's private buffer; the key goes with the last
    /// reference to the shared state (RSA_free clears the secure BIGNUMs
    /// before they return to the arena).
    pub fn finish(self) {
        let Server {
            chan,
            shared,
            mut request,
        } = self;
        request.clear();
        drop(chan);
        drop(shared);
    }
}

enum Action {
    PublicKey,
    Status,
    Shutdown,
    Decrypt(Result<(crate::heap::SecureBuf, usize), KeyError>),
}

/// Every lane's first private operation, before the vault serves, and the
/// baseline taken after them (see [`crate::key::Key::warm_up`]). Each lane
/// thread calls [`Warmup::lane`], the main thread [`Warmup::main`]; all of
/// them return together, and all say whether every lane warmed up.
#[derive(Debug)]
pub struct Warmup {
    warmed: std::sync::Barrier,
    settled: std::sync::Barrier,
    failed: std::sync::atomic::AtomicBool,
}

impl Warmup {
    /// For `lanes` threads (the main one included).
    pub fn new(lanes: usize) -> Self {
        Self {
            warmed: std::sync::Barrier::new(lanes),
            settled: std::sync::Barrier::new(lanes),
            failed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn warm(&self, shared: &Shared) -> Result<(), KeyError> {
        let r = shared.key.warm_up();
        if r.is_err() {
            self.failed.store(true, Ordering::SeqCst);
        }
        r
    }

    /// A lane thread's part: warm up, wait for the baseline.
    pub fn lane(&self, shared: &Shared) -> bool {
        let _ = self.warm(shared);
        self.warmed.wait();
        self.settled.wait();
        !self.failed.load(Ordering::SeqCst)
    }

    /// The main thread's part: warm up its own lane, wait for the others,
    /// take the baseline, let every lane serve.
    pub fn main(&self, shared: &Shared) -> Result<(), KeyError> {
        let own = self.warm(shared);
        self.warmed.wait();
        if !self.failed.load(Ordering::SeqCst) {
            shared.key.settle();
        }
        self.settled.wait();
        own?;
        if self.failed.load(Ordering::SeqCst) {
            return Err(KeyError::Decrypt);
        }
        Ok(())
    }
}
