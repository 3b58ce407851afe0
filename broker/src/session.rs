//! One vault's life as the broker sees it: the process, its lanes (ring
//! pairs, one worker thread each in the vault), and its key.
//!
//! A request takes a free lane (or waits for one); lanes run in parallel, so
//! the vault decrypts on as many cores as it has lanes. Any failure of the
//! vault (death, timeout, broken protocol on any lane) kills it, wipes every
//! lane's rings, and closes the session: every later request says how the
//! vault ended.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::protocol::{self, Request, Response};
use common::ring::{Channel, RingError, RingHandle, DEFAULT_SPIN};
use common::secret::SecretBuf;

use crate::crypto::RsaPublicKey;
use crate::error::{Error, LastWords, ProtocolOrRing};
use crate::launch::{VaultExit, VaultProcess};

/// The public half of a vault's key, and facts about its start.
#[derive(Debug)]
pub(crate) struct KeyInfo {
    pub public: RsaPublicKey,
    pub der: Vec<u8>,
    pub fingerprint: [u8; 32],
    pub vault_pid: u32,
    pub ring_seals: i32,
}

/// The vault process and whether the session is over.
#[derive(Debug)]
struct VaultState {
    process: VaultProcess,
    closed: Option<VaultExit>,
}

/// One ring pair and its request counter.
#[derive(Debug)]
pub(crate) struct Lane {
    chan: Channel,
    next_id: u32,
}

impl Lane {
    pub fn new(chan: Channel) -> Self {
        Lane { chan, next_id: 1 }
    }
}

/// What a request observed of the wipes: the residue of its request frame
/// on the lane it used (`None` if that could not be told), and the non-zero
/// bytes left in both rings of that lane (the other lanes are other
/// requests' business, and may be in use at this very moment).
pub(crate) type Observed = (Option<usize>, usize);

/// The longest a wait for an answer sleeps first, and the longest it spins.
const MAX_SPIN: Duration = Duration::from_millis(5);
/// How late a sleep may end: Linux lets a timed sleep overrun by the
/// thread's timer slack, 50 microseconds by default, and a wake-up on a
/// virtual machine adds some. A sleep planned to end before the answer is
/// due is shortened by this much.
const TIMER_SLACK: Duration = Duration::from_micros(80);
/// How long, after the vault died, the broker waits for the rest of its
/// output (its last message) to be read from the pipe.
const LAST_WORDS_WAIT: Duration = Duration::from_millis(500);

/// The link to one vault: its process and its lanes.
#[derive(Debug)]
pub(crate) struct Link {
    vault: Mutex<VaultState>,
    lanes: Vec<Mutex<Lane>>,
    handles: Vec<RingHandle>,
    next_lane: AtomicUsize,
    inflight: AtomicUsize,
    /// Recent answer latency (nanoseconds, moving average): how long a wait
    /// spins before it sleeps while cores are free.
    latency_ns: AtomicU64,
    cpus: usize,
}

/// A started vault: the link and the key it announced.
#[derive(Debug)]
pub(crate) struct Session {
    pub link: Link,
    pub key: std::sync::Arc<KeyInfo>,
}

/// What a request during start-up is called (see `Broker::start_session`).
pub(crate) const START_UP: &str = "start-up";

/// The vault's program, named in errors of its start-up.
fn program_if_starting(p: &VaultProcess, during: &str) -> Option<std::path::PathBuf> {
    (during == START_UP).then(|| p.program().to_owned())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics while holding these locks; if something did, the
    // state (indices, process handle) is still consistent.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The name of a response kind, for errors.
pub(crate) fn label(resp: &Response<'_>) -> &'static str {
    match resp {
        Response::PublicKey { .. } => "PublicKey",
        Response::Plaintext { .. } => "Plaintext",
        Response::HeapStatus(_) => "HeapStatus",
        Response::ShutdownAck => "ShutdownAck",
        Response::Error(_) => "Error",
    }
}

impl Link {
    /// A link over a started vault and its lanes.
    pub fn new(process: VaultProcess, lanes: Vec<Lane>) -> Self {
        let handles = lanes.iter().map(|l| l.chan.handle()).collect();
        Link {
            vault: Mutex::new(VaultState {
                process,
                closed: None,
            }),
            lanes: lanes.into_iter().map(Mutex::new).collect(),
            handles,
            next_lane: AtomicUsize::new(0),
            inflight: AtomicUsize::new(0),
            latency_ns: AtomicU64::new(0),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// How the session ended, if it has.
    pub fn closed(&self) -> Option<VaultExit> {
        lock(&self.vault).closed
    }

    /// How the vault ended, if it has (does not block).
    pub fn vault_exit(&self) -> Option<VaultExit> {
        let mut v = lock(&self.vault);
        v.closed.or_else(|| v.process.poll_exit())
    }

    /// The check run between sleeps while waiting on a lane: the vault must
    /// still run (reaping it if it ended) and the link be open.
    fn alive(&self) -> Result<(), RingError> {
        let mut v = lock(&self.vault);
        match v.closed.or_else(|| v.process.poll_exit()) {
            Some(_) => Err(RingError::PeerGone),
            None => Ok(()),
        }
    }

    fn error_if_closed(&self, during: &'static str) -> Result<(), Error> {
        let v = lock(&self.vault);
        match v.closed {
            Some(exit) if exit.is_clean() => Err(Error::ShutDown),
            Some(exit) => Err(Error::VaultDied {
                exit,
                during,
                said: LastWords(v.process.last_line(Duration::ZERO)),
                program: program_if_starting(&v.process, during),
            }),
            None => Ok(()),
        }
    }

    /// The first free lane, or the next one in turn if all are busy. Lanes
    /// are tried from the first: a lane used a moment ago has its vault
    /// thread still spinning, while an idle one sleeps and must be woken
    /// (a futex wake costs tens of microseconds on a virtual machine).
    fn lane(&self) -> (usize, MutexGuard<'_, Lane>) {
        for (i, l) in self.lanes.iter().enumerate() {
            if let Ok(l) = l.try_lock() {
                return (i, l);
            }
        }
        let n = self.lanes.len();
        let i = self.next_lane.fetch_add(1, Ordering::Relaxed) % n;
        (i, lock(&self.lanes[i]))
    }

    /// How the wait for this answer is spent: while a core is free for
    /// every request in flight (the vault's worker and this waiter), sleep
    /// through most of the recent latency (leaving the core to the vault,
    /// which may share it), then spin over the rest so the answer is seen
    /// without a wake-up; otherwise the short default spin.
    fn plan(&self, inflight: usize) -> (Duration, Duration) {
        if inflight * 2 > self.cpus {
            return (Duration::ZERO, DEFAULT_SPIN);
        }
        let recent = Duration::from_nanos(self.latency_ns.load(Ordering::Relaxed));
        let presleep = (recent * 3 / 4).saturating_sub(TIMER_SLACK).min(MAX_SPIN);
        let spin = (recent / 2).clamp(DEFAULT_SPIN, MAX_SPIN);
        (presleep, spin)
    }

    fn record_latency(&self, took: Duration) {
        let sample = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let old = self.latency_ns.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.latency_ns.store(new, Ordering::Relaxed);
    }

    /// Sends `req` on a lane and receives the answer into `dst`; returns the
    /// request id, and with `observe` the wipe evidence (the request frame's
    /// residue on the lane used, the non-zero bytes of every ring). On any
    /// failure of the vault, the vault is killed, every ring wiped, and the
    /// link closed.
    pub fn exchange(
        &self,
        req: &Request<'_>,
        during: &'static str,
        timeout: Duration,
        dst: &mut SecretBuf,
        observe: bool,
    ) -> Result<(u32, Option<Observed>), Error> {
        self.error_if_closed(during)?;
        let inflight = self.inflight.fetch_add(1, Ordering::SeqCst) + 1;
        // Only a private-key operation takes long enough to sleep through:
        // the plan (and the latency it learns from) is for those alone; a
        // status or key request is answered in microseconds.
        let decrypts = matches!(req, Request::Decrypt { .. } | Request::Unseal { .. });
        let (presleep, spin) = if decrypts {
            self.plan(inflight)
        } else {
            (Duration::ZERO, DEFAULT_SPIN)
        };
        let (index, mut lane) = self.lane();
        let id = lane.next_id;
        lane.next_id = lane.next_id.wrapping_add(1);
        let enc = protocol::encode_request(id, req);
        let start = Instant::now();
        let deadline = start + timeout;
        let mut alive = || self.alive();
        lane.chan.rx.set_presleep(presleep);
        lane.chan.rx.set_spin(spin);
        let result = lane
            .chan
            .tx
            .send(&enc.parts(), Some(deadline), &mut alive)
            .and_then(|()| lane.chan.rx.recv_into(dst, Some(deadline), &mut alive));
        let evidence = (observe && result.is_ok()).then(|| {
            let residue = lane.chan.tx.last_frame_residue();
            (residue, self.handles[index].nonzero_bytes())
        });
        drop(lane);
        self.inflight.fetch_sub(1, Ordering::SeqCst);
        match result {
            Ok(_) => {
                if decrypts {
                    self.record_latency(start.elapsed());
                }
                Ok((id, evidence))
            }
            Err(e) => Err(self.fail(e, during, timeout)),
        }
    }

    /// Ends the vault after a failure and turns the failure into an error.
    fn fail(&self, e: RingError, during: &'static str, timeout: Duration) -> Error {
        let mut v = lock(&self.vault);
        let err = match e {
            RingError::PeerGone => {
                let exit = v
                    .closed
                    .or_else(|| v.process.poll_exit())
                    .unwrap_or_else(|| v.process.kill());
                Error::VaultDied {
                    exit,
                    during,
                    said: LastWords(v.process.last_line(LAST_WORDS_WAIT)),
                    program: program_if_starting(&v.process, during),
                }
            }
            RingError::Timeout(_) => Error::Timeout {
                during,
                after: timeout,
                exit: v.process.kill(),
            },
            other => Error::Protocol {
                during,
                exit: v.process.kill(),
                source: other.into(),
            },
        };
        self.close(&mut v);
        err
    }

    /// Kills the vault after a protocol error found in an answer.
    pub fn protocol_error(&self, during: &'static str, source: ProtocolOrRing) -> Error {
        let mut v = lock(&self.vault);
        let exit = v.process.kill();
        self.close(&mut v);
        Error::Protocol {
            during,
            exit,
            source,
        }
    }

    /// Closes the session: the vault can no longer wipe what it had not
    /// read, so the broker wipes every ring.
    fn close(&self, v: &mut VaultState) {
        let exit = v
            .closed
            .or_else(|| v.process.poll_exit())
            .unwrap_or_else(|| v.process.kill());
        for h in &self.handles {
            h.wipe_all();
        }
        v.closed = Some(exit);
        v.process.flush_output(LAST_WORDS_WAIT);
    }

    /// Orderly shutdown: ask the vault to wipe and exit; if it does not
    /// answer or exit within `grace`, SIGTERM; if it still runs after another
    /// `grace`, SIGKILL. The rings are wiped whatever happened.
    pub fn stop(&self, grace: Duration) -> VaultExit {
        if let Some(exit) = self.closed() {
            return exit;
        }
        let asked = self.ask_shutdown(grace);
        let mut v = lock(&self.vault);
        if let Some(exit) = v.closed {
            return exit;
        }
        let exit = if asked {
            v.process.wait_exit(grace)
        } else {
            None
        };
        let exit = exit.unwrap_or_else(|| v.process.terminate(grace));
        for h in &self.handles {
            h.wipe_all();
        }
        v.closed = Some(exit);
        v.process.flush_output(LAST_WORDS_WAIT);
        exit
    }

    /// Sends the shutdown request on the first lane and waits for its
    /// acknowledgement, without the kill-on-failure of
    /// [`Session::exchange`]: the escalation is the caller's.
    fn ask_shutdown(&self, grace: Duration) -> bool {
        let Ok(mut buf) = SecretBuf::new(64) else {
            return false;
        };
        let mut lane = lock(&self.lanes[0]);
        let id = lane.next_id;
        lane.next_id = lane.next_id.wrapping_add(1);
        let enc = protocol::encode_request(id, &Request::Shutdown);
        let deadline = Some(Instant::now() + grace);
        let mut alive = || self.alive();
        let answered = lane
            .chan
            .tx
            .send(&enc.parts(), deadline, &mut alive)
            .and_then(|()| lane.chan.rx.recv_into(&mut buf, deadline, &mut alive));
        answered.is_ok()
            && buf.expose(|f| matches!(protocol::decode_response(f), Ok((got, Response::ShutdownAck)) if got == id))
    }

    /// Number of lanes.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }
}
