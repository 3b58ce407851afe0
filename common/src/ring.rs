//! Two single-producer single-consumer byte rings in one sealed memfd.
//!
//! # Layout of the shared region
//!
//! ```text
//! control part (CONTROL_REGION_LEN bytes)
//!   0                    header: magic, layout version, capacity, max frame
//!   4096                 request ring control  (broker -> vault)
//!   8192                 response ring control (vault -> broker)
//! data part (DATA_REGION_LEN bytes)
//!   0                    request ring data     (RING_CAPACITY bytes)
//!   RING_CAPACITY        response ring data    (RING_CAPACITY bytes)
//! ```
//!
//! By default both parts are one sealed memfd (control part first). With
//! [`Backing::Secret`] the data part is `memfd_secret` memory, which root
//! cannot read, and the control part a small sealed memfd of its own: the
//! kernel's futex needs to reach the words it sleeps on, and it cannot reach
//! secret memory (futex on it fails with EFAULT). The control part holds no
//! secret: indices and flags only.
//!
//! A ring's control block holds four 32-bit atomics, each on its own cache
//! line: `head` (written by the producer), `tail` (written by the consumer)
//! and two "sleeping" flags. Indices run freely and wrap at 2^32; the byte
//! position is `index % RING_CAPACITY`.
//!
//! A frame is a little-endian `u32` payload length followed by the payload,
//! padded to 8 bytes; frames may wrap around the end of the data area.
//!
//! # Back to the start
//!
//! A producer that finds the ring empty, with its next position at least
//! as far from the start of the data area as the frame is long, writes a
//! skip marker there (the prefix `SKIP` instead of a length) and the frame
//! at the start of the data area, published together: the consumer reads
//! the marker, wipes it, and moves on to the start. So traffic that never
//! fills the ring (one request, one answer) keeps to the first bytes of the
//! data area, instead of walking through all of it: fewer pages touched,
//! locked and holding bytes in transit, in every lane.
//!
//! # The peer is untrusted
//!
//! Each side keeps its own copy of the index it owns and never reads it back
//! from shared memory. The index it reads from the peer is loaded once and
//! checked: it may only move forward, never past the other index by more
//! than the capacity. A frame length is read once and checked against
//! [`MAX_FRAME`] and against the bytes the producer published; a skip
//! marker must not sit at the start of the data area, and must leave a
//! frame published after it. Any violation
//! is [`RingError::Corrupt`]; the endpoint is then poisoned and refuses all
//! further use. No byte of shared memory is ever behind a Rust reference: the
//! data area is reached only through raw-pointer copies and volatile accesses.
//!
//! # Wipe after read
//!
//! The consumer copies a frame into its own private buffer, then overwrites
//! the frame's bytes in the ring with zeros (volatile writes), and only then
//! publishes the new tail and returns; parsing happens afterwards on the
//! private copy. After an exchange, the ring holds neither secret nor
//! ciphertext.
//!
//! # Waiting
//!
//! A waiting side spins briefly ([`Backoff`]) and then sleeps on a futex on
//! the index it waits for (the shared, not the private, futex operations,
//! since the waker is another process). The producer wakes the consumer only
//! when the consumer announced it sleeps. Sleeps are cut into slices so a
//! caller-supplied check (peer alive? shutdown requested?) runs regularly.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::{Backoff, CachePadded};

use crate::seal::{self, SealError};
use crate::secret::SecretBuf;
use crate::sys::{self, Mapping};

/// Bytes of frame data each ring holds.
pub const RING_CAPACITY: u32 = 128 * 1024;
/// Largest frame payload; a larger one is refused on both sides.
/// (A 64 KiB envelope with its wrapped key and headers is about 66 KiB.)
pub const MAX_FRAME: u32 = 72 * 1024;
const HEADER_LEN: usize = 4096;
const CONTROL_LEN: usize = 4096;
const LEN_PREFIX: u32 = 4;
/// The length prefix of a skip marker (see "Back to the start" above):
/// over [`MAX_FRAME`], so never a frame's.
const SKIP: u32 = 0xFFFF_FFFE;
const FRAME_ALIGN: u32 = 8;
const MAGIC: [u8; 8] = *b"PVRING\0\x01";
const LAYOUT_VERSION: u32 = 2;
const REQUEST_RING: usize = HEADER_LEN;
const RESPONSE_RING: usize = HEADER_LEN + CONTROL_LEN;
/// Size of the control part: header and the two control blocks.
pub const CONTROL_REGION_LEN: usize = HEADER_LEN + 2 * CONTROL_LEN;
/// Size of the data part: the two rings' bytes.
pub const DATA_REGION_LEN: usize = 2 * RING_CAPACITY as usize;
/// Byte offsets inside the single sealed memfd of the default backing, for tools and test harnesses that
/// play a (possibly hostile) peer at the byte level.
pub mod layout {
    /// Offset of the request ring's control block (broker to vault).
    pub const REQUEST_CONTROL: usize = super::REQUEST_RING;
    /// Offset of the request ring's data area.
    pub const REQUEST_DATA: usize = super::CONTROL_REGION_LEN;
    /// Offset of the response ring's control block (vault to broker).
    pub const RESPONSE_CONTROL: usize = super::RESPONSE_RING;
    /// Offset of the response ring's data area.
    pub const RESPONSE_DATA: usize = super::CONTROL_REGION_LEN + super::RING_CAPACITY as usize;
    /// Offset of `head` inside a control block.
    pub const HEAD: usize = 0;
    /// Offset of `tail` inside a control block.
    pub const TAIL: usize =
        std::mem::size_of::<crossbeam_utils::CachePadded<std::sync::atomic::AtomicU32>>();
}

/// Total size of the shared region (the sealed memfd's size by default).
pub const REGION_LEN: usize = CONTROL_REGION_LEN + DATA_REGION_LEN;

const _: () = assert!(RING_CAPACITY.is_power_of_two());
const _: () = assert!(MAX_FRAME + LEN_PREFIX + FRAME_ALIGN <= RING_CAPACITY);
const _: () = assert!(std::mem::size_of::<Control>() <= CONTROL_LEN);

/// Errors of the ring. After [`RingError::Corrupt`] the endpoint is poisoned.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// Creating, sealing or checking the seals of the memfd failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// Creating or checking the `memfd_secret` data part failed.
    #[error(transparent)]
    SecretMem(#[from] crate::secretmem::SecretMemError),
    /// `mmap` of the ring failed.
    #[error("cannot map the ring")]
    Map(#[source] io::Error),
    /// `mlock` of the ring failed (usually `RLIMIT_MEMLOCK`).
    #[error("cannot lock the ring in memory (raise RLIMIT_MEMLOCK, see `ulimit -l`)")]
    Lock(#[source] io::Error),
    /// `madvise` refused one of the protections.
    #[error("cannot apply {advice} to the ring")]
    Advise {
        /// The advice (`MADV_DONTDUMP`, ...).
        advice: &'static str,
        /// Its error.
        #[source]
        source: io::Error,
    },
    /// The shared header does not describe this version's layout.
    #[error("the ring's header is not this version's layout ({field} differs)")]
    Header {
        /// The field that differs.
        field: &'static str,
    },
    /// The ring was written before this side opened it.
    #[error("the ring was already used before this side opened it ({what} is {value})")]
    NotFresh {
        /// The index or flag found set.
        what: &'static str,
        /// Its value.
        value: u32,
    },
    /// The peer wrote an index or a length that cannot be (the endpoint
    /// is poisoned from then on).
    #[error("the ring was corrupted by the peer: {what} ({value})")]
    Corrupt {
        /// What was wrong.
        what: &'static str,
        /// The value read.
        value: u64,
    },
    /// A frame to send is longer than the largest frame.
    #[error("a frame of {len} bytes is larger than the limit of {max}")]
    FrameTooLarge {
        /// Its length.
        len: usize,
        /// The largest frame.
        max: u32,
    },
    /// A frame received does not fit the buffer given for it.
    #[error("a frame of {len} bytes does not fit the receive buffer of {capacity}")]
    DestinationTooSmall {
        /// The frame's length.
        len: usize,
        /// The buffer's capacity.
        capacity: usize,
    },
    /// The deadline passed with no frame (or no room) from the peer; the
    /// time waited.
    #[error("no answer from the peer within {0:?}")]
    Timeout(Duration),
    /// A futex wait or wake failed.
    #[error("futex call failed")]
    Futex(#[source] io::Error),
    /// The peer process ended (the liveness check said so while waiting).
    #[error("the peer is gone")]
    PeerGone,
    /// The wait was interrupted.
    #[error("interrupted")]
    Interrupted,
    /// This endpoint refused a corrupt frame before and is no longer used.
    #[error("this ring endpoint refused an earlier corrupt frame and is no longer usable")]
    Poisoned,
}

#[repr(C)]
struct Control {
    head: CachePadded<AtomicU32>,
    tail: CachePadded<AtomicU32>,
    reader_sleeping: CachePadded<AtomicU32>,
    writer_sleeping: CachePadded<AtomicU32>,
}

/// What the shared region is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// A memfd sealed against resizing (the default).
    SealedMemfd,
    /// `memfd_secret(2)` memory: out of the kernel's direct map, unreadable
    /// even by root through /proc/PID/mem. It cannot be sealed; its size is
    /// set once, which the receiver checks instead.
    Secret,
}

impl Backing {
    /// `sealed` or `secret`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SealedMemfd => "sealed",
            Self::Secret => "secret",
        }
    }

    /// Parses `sealed` or `secret`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sealed" => Some(Self::SealedMemfd),
            "secret" => Some(Self::Secret),
            _ => None,
        }
    }
}

/// Which end of the channel this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends requests, receives responses.
    Broker,
    /// Receives requests, sends responses.
    Vault,
}

#[derive(Debug)]
struct Region {
    ctl: Mapping,
    data: Mapping,
    backing: Backing,
}

impl Region {
    #[allow(clippy::cast_ptr_alignment)] // page-aligned offset of a page-aligned mapping
    fn control(&self, ring: usize) -> &Control {
        // `ring` is a page-aligned offset inside the control mapping with
        // CONTROL_LEN >= size_of::<Control>() bytes; Control holds only atomics.
        // SAFETY: atomics may be shared with another process and mutated
        // through `&`; the mapping outlives `&self`.
        unsafe { &*self.ctl.as_ptr().add(ring).cast::<Control>() }
    }

    /// Where `ring`'s data starts in the data mapping.
    fn data_offset(ring: usize) -> usize {
        if ring == REQUEST_RING {
            0
        } else {
            usize_of(RING_CAPACITY)
        }
    }

    fn data(&self, ring: usize) -> *mut u8 {
        // SAFETY: offset + RING_CAPACITY <= DATA_REGION_LEN, the data mapping's length.
        unsafe { self.data.as_ptr().add(Self::data_offset(ring)) }
    }

    /// The non-zero bytes of `ring`'s data (volatile reads). In secret
    /// memory, only the pages that exist are read: reading one that does
    /// not would make the kernel allocate it, and a check after each read
    /// would make every page of the ring resident (256 KiB a lane), where a
    /// page that does not exist is zeros by definition. In a sealed memfd
    /// every page is read: there a page could also hold data while swapped
    /// out, which `mincore` reports as absent.
    fn nonzero_bytes(&self, ring: usize) -> usize {
        let base = self.data(ring);
        let len = usize_of(RING_CAPACITY);
        if self.backing == Backing::Secret {
            if let Ok(pages) = self.data.resident(Self::data_offset(ring), len) {
                let page = sys::page_size();
                return pages
                    .iter()
                    .enumerate()
                    .filter(|(_, present)| **present)
                    // SAFETY: page `i` of the ring's data lies within its
                    // RING_CAPACITY bytes (mincore answered for exactly
                    // those), readable for the mapping's life.
                    .map(|(i, _)| unsafe {
                        sys::count_nonzero_volatile(base.add(i * page), page.min(len - i * page))
                    })
                    .sum();
            }
        }
        // SAFETY: RING_CAPACITY readable bytes of the live mapping.
        unsafe { sys::count_nonzero_volatile(base, len) }
    }
}

/// The fds of a region, as created for a new vault.
#[derive(Debug)]
pub struct RingFds {
    /// The sealed memfd: the whole region, or its control part when `data`
    /// is set.
    pub control: OwnedFd,
    /// The data part in secret memory ([`Backing::Secret`]).
    pub data: Option<OwnedFd>,
}

/// One side's two ends: a producer on one ring and a consumer on the other.
#[derive(Debug)]
pub struct Channel {
    /// The sending end.
    pub tx: Producer,
    /// The receiving end.
    pub rx: Consumer,
    /// What the region is made of.
    pub backing: Backing,
}

fn usize_of(x: u32) -> usize {
    // Lossless: this crate only builds for 64-bit Linux targets (see lib.rs).
    x as usize
}

fn frame_size(payload: u32) -> u32 {
    (LEN_PREFIX + payload).next_multiple_of(FRAME_ALIGN)
}

impl Channel {
    /// Creates a fresh sealed region for a new vault and opens the broker's
    /// side of it. Returns the fds to hand to the vault.
    pub fn create() -> Result<(RingFds, Channel), RingError> {
        Self::create_with(Backing::SealedMemfd)
    }

    /// As [`Channel::create`], with the region made of `backing`.
    pub fn create_with(backing: Backing) -> Result<(RingFds, Channel), RingError> {
        let bytes = |n: usize| u64::try_from(n).map_err(|_| RingError::Header { field: "length" });
        let fds = match backing {
            Backing::SealedMemfd => RingFds {
                control: seal::create_sealed("privsep-vault-ring", bytes(REGION_LEN)?)?,
                data: None,
            },
            Backing::Secret => RingFds {
                control: seal::create_sealed("privsep-vault-ring", bytes(CONTROL_REGION_LEN)?)?,
                data: Some(crate::secretmem::create(bytes(DATA_REGION_LEN)?)?),
            },
        };
        let map = Mapping::shared(fds.control.as_fd(), HEADER_LEN).map_err(RingError::Map)?;
        let mut header = [0u8; 20];
        header[..8].copy_from_slice(&MAGIC);
        header[8..12].copy_from_slice(&LAYOUT_VERSION.to_le_bytes());
        header[12..16].copy_from_slice(&RING_CAPACITY.to_le_bytes());
        header[16..20].copy_from_slice(&MAX_FRAME.to_le_bytes());
        // SAFETY: the mapping is HEADER_LEN >= 20 bytes; no peer has the fd yet.
        unsafe { std::ptr::copy_nonoverlapping(header.as_ptr(), map.as_ptr(), header.len()) };
        drop(map);
        let chan = Self::open(
            fds.control.as_fd(),
            fds.data.as_ref().map(AsFd::as_fd),
            Role::Broker,
        )?;
        Ok((fds, chan))
    }

    /// Opens one side of a region received from (or made for) the peer.
    ///
    /// Before mapping: `control` must be a memfd carrying the seals, of
    /// exactly [`REGION_LEN`] bytes (one-memfd backing, `data` is `None`) or
    /// [`CONTROL_REGION_LEN`] bytes (then `data` must be secret memory of
    /// exactly [`DATA_REGION_LEN`] bytes, a size that cannot change). Then
    /// the header, then that both rings are unused.
    pub fn open(
        control: BorrowedFd<'_>,
        data: Option<BorrowedFd<'_>>,
        role: Role,
    ) -> Result<Channel, RingError> {
        let bytes = |n: usize| u64::try_from(n).map_err(|_| RingError::Header { field: "length" });
        let (backing, ctl, data) = match data {
            None => {
                seal::check_sealed(control, bytes(REGION_LEN)?)?;
                let ctl = Mapping::shared(control, CONTROL_REGION_LEN).map_err(RingError::Map)?;
                let data = Mapping::shared_at(control, DATA_REGION_LEN, CONTROL_REGION_LEN)
                    .map_err(RingError::Map)?;
                (Backing::SealedMemfd, ctl, data)
            }
            Some(secret) => {
                seal::check_sealed(control, bytes(CONTROL_REGION_LEN)?)?;
                crate::secretmem::check(secret, bytes(DATA_REGION_LEN)?)?;
                let ctl = Mapping::shared(control, CONTROL_REGION_LEN).map_err(RingError::Map)?;
                let data = Mapping::shared(secret, DATA_REGION_LEN).map_err(RingError::Map)?;
                (Backing::Secret, ctl, data)
            }
        };
        let advise = |m: &Mapping, advice: libc::c_int, name: &'static str| {
            m.advise(advice).map_err(|source| RingError::Advise {
                advice: name,
                source,
            })
        };
        // Secret memory is locked and left out of dumps by the kernel itself
        // (its mapping is VM_LOCKED | VM_DONTDUMP; mlock even fails on it).
        let mut protect = vec![&ctl];
        if backing == Backing::SealedMemfd {
            protect.push(&data);
        }
        for m in protect {
            m.lock().map_err(RingError::Lock)?;
            advise(m, libc::MADV_DONTDUMP, "MADV_DONTDUMP")?;
        }
        advise(&ctl, libc::MADV_DONTFORK, "MADV_DONTFORK")?;
        advise(&data, libc::MADV_DONTFORK, "MADV_DONTFORK")?;
        let mut header = [0u8; 20];
        // SAFETY: reading 20 bytes from the start of the control mapping into
        // a private array; the copy does not create a reference to shared bytes.
        unsafe { std::ptr::copy_nonoverlapping(ctl.as_ptr(), header.as_mut_ptr(), header.len()) };
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        if header[..8] != MAGIC {
            return Err(RingError::Header { field: "magic" });
        }
        if word(8) != LAYOUT_VERSION {
            return Err(RingError::Header {
                field: "layout version",
            });
        }
        if word(12) != RING_CAPACITY {
            return Err(RingError::Header { field: "capacity" });
        }
        if word(16) != MAX_FRAME {
            return Err(RingError::Header { field: "max frame" });
        }
        let region = Arc::new(Region { ctl, data, backing });
        let (tx_ring, rx_ring) = match role {
            Role::Broker => (REQUEST_RING, RESPONSE_RING),
            Role::Vault => (RESPONSE_RING, REQUEST_RING),
        };
        // Nothing may have been consumed yet, and nothing produced on the
        // ring this side writes. The ring it reads may already hold frames
        // (the broker sends its first request without waiting for the vault);
        // its head is validated when read, like every later one.
        let fresh = [
            (
                "tail of the ring this side writes",
                &region.control(tx_ring).tail,
            ),
            (
                "head of the ring this side writes",
                &region.control(tx_ring).head,
            ),
            (
                "tail of the ring this side reads",
                &region.control(rx_ring).tail,
            ),
        ];
        for (what, v) in fresh {
            let value = v.load(Ordering::SeqCst);
            if value != 0 {
                return Err(RingError::NotFresh { what, value });
            }
        }
        Ok(Channel {
            tx: Producer {
                region: region.clone(),
                ring: tx_ring,
                head: 0,
                tail_seen: 0,
                last: None,
                poisoned: false,
            },
            rx: Consumer {
                region,
                ring: rx_ring,
                tail: 0,
                head_seen: 0,
                poisoned: false,
                slice: DEFAULT_SLICE,
                spin: DEFAULT_SPIN,
                presleep: Duration::ZERO,
            },
            backing,
        })
    }

    /// A handle on this channel's region that other threads may use to wake
    /// this side's reader or to wipe the rings, without the channel itself.
    pub fn handle(&self) -> RingHandle {
        RingHandle {
            region: self.rx.region.clone(),
            rx_ring: self.rx.ring,
        }
    }

    /// Overwrites both rings' data with zeros: used by the broker when the
    /// vault died and can no longer wipe what it had not read.
    pub fn wipe_all(&self) {
        self.handle().wipe_all();
    }

    /// Counts non-zero bytes in both rings' data areas (for tests and the
    /// demo's evidence).
    pub fn nonzero_bytes(&self) -> usize {
        self.handle().nonzero_bytes()
    }
}

/// A shareable handle on a channel's region (see [`Channel::handle`]).
#[derive(Debug, Clone)]
pub struct RingHandle {
    region: Arc<Region>,
    rx_ring: usize,
}

impl RingHandle {
    /// Wakes the channel's reader if it sleeps, so that it looks at its
    /// caller-supplied check (a stop flag) at once.
    pub fn wake_reader(&self) {
        let _ = sys::futex_wake_shared(&self.region.control(self.rx_ring).head, u32::MAX >> 1);
    }

    /// Counts the non-zero bytes of both rings' data (volatile reads; in
    /// secret memory, without making a page exist that did not).
    pub fn nonzero_bytes(&self) -> usize {
        [REQUEST_RING, RESPONSE_RING]
            .iter()
            .map(|&r| self.region.nonzero_bytes(r))
            .sum()
    }

    /// Overwrites both rings' data with zeros (volatile writes).
    pub fn wipe_all(&self) {
        for ring in [REQUEST_RING, RESPONSE_RING] {
            // SAFETY: the data area of `ring` is RING_CAPACITY writable bytes
            // of the live mapping; volatile writes tolerate a concurrent peer.
            unsafe { sys::wipe_volatile(self.region.data(ring), usize_of(RING_CAPACITY)) };
        }
    }
}

/// How long one futex sleep lasts before the caller's check runs again.
pub const DEFAULT_SLICE: Duration = Duration::from_millis(50);

/// What a wait does between sleeps: check that it should keep waiting.
pub type Check<'a> = &'a mut dyn FnMut() -> Result<(), RingError>;

/// How long a waiting side spins before it sleeps on the futex, by default.
/// A peer that answers within this time is seen without a wake-up (a
/// futex wake and a context switch cost about as much as a pipe round
/// trip); an idle side sleeps after it and uses no CPU.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(30);

/// Sleeps on `word` for at most `dur` unless `ready` already holds;
/// announces the sleep in `sleeping` so the peer wakes us.
fn sleep_on(
    word: &AtomicU32,
    sleeping: &AtomicU32,
    dur: Duration,
    ready: &mut impl FnMut(u32) -> Result<bool, RingError>,
) -> Result<Option<u32>, RingError> {
    sleeping.store(1, Ordering::SeqCst);
    let observed = word.load(Ordering::SeqCst);
    if ready(observed)? {
        sleeping.store(0, Ordering::SeqCst);
        return Ok(Some(observed));
    }
    let slept = sys::futex_wait_shared(word, observed, Some(dur)).map_err(RingError::Futex);
    sleeping.store(0, Ordering::SeqCst);
    slept?;
    let observed = word.load(Ordering::Acquire);
    Ok(ready(observed)?.then_some(observed))
}

/// Sleeps until `ready` says so, the deadline passes, or `check` fails.
///
/// In three phases: first a sleep of up to `presleep` (for an answer known
/// to take a while: the core is left to the peer, and the peer's wake ends
/// it early), then a spin of `spin`, then sleeps of `slice` with `check`
/// between them.
#[allow(clippy::too_many_arguments)]
fn wait(
    word: &AtomicU32,
    sleeping: &AtomicU32,
    slice: Duration,
    presleep: Duration,
    spin: Duration,
    deadline: Option<Instant>,
    check: Check<'_>,
    mut ready: impl FnMut(u32) -> Result<bool, RingError>,
) -> Result<u32, RingError> {
    let start = Instant::now();
    let capped = |d: Duration| match deadline {
        Some(end) => d.min(end.saturating_duration_since(Instant::now())),
        None => d,
    };
    while !presleep.is_zero() && start.elapsed() < presleep {
        let left = capped(presleep.saturating_sub(start.elapsed()));
        if left.is_zero() {
            break;
        }
        if let Some(observed) = sleep_on(word, sleeping, left, &mut ready)? {
            return Ok(observed);
        }
    }
    // Spin, for `spin` (crossbeam's Backoff: a few rounds of pure spinning,
    // then sched_yield, so that a peer waiting for this core, such as the
    // very thread about to send what we wait for, gets to run).
    let spun = Instant::now();
    let backoff = Backoff::new();
    let mut polls = 0u32;
    loop {
        let observed = word.load(Ordering::Acquire);
        if ready(observed)? {
            return Ok(observed);
        }
        backoff.snooze();
        polls = polls.wrapping_add(1);
        if polls % 16 == 0 && spun.elapsed() >= spin {
            break;
        }
    }
    loop {
        if let Some(d) = deadline {
            let now = Instant::now();
            if now >= d {
                return Err(RingError::Timeout(now - start));
            }
        }
        if let Some(observed) = sleep_on(word, sleeping, capped(slice), &mut ready)? {
            return Ok(observed);
        }
        check()?;
    }
}

/// The sending end of one ring.
#[derive(Debug)]
pub struct Producer {
    region: Arc<Region>,
    ring: usize,
    head: u32,
    tail_seen: u32,
    last: Option<(u32, u32)>,
    poisoned: bool,
}

impl Producer {
    fn control(&self) -> &Control {
        self.region.control(self.ring)
    }

    fn corrupt(&mut self, what: &'static str, value: u32) -> RingError {
        self.poisoned = true;
        RingError::Corrupt {
            what,
            value: u64::from(value),
        }
    }

    /// Validates a tail value read once from shared memory: it may only move
    /// forward from the last one seen, and never past our head.
    fn validate_tail(&mut self, tail: u32) -> Result<u32, RingError> {
        let published = self.head.wrapping_sub(self.tail_seen);
        let advanced = tail.wrapping_sub(self.tail_seen);
        if advanced > published {
            return Err(self.corrupt("tail moved backwards or past head", tail));
        }
        if advanced % FRAME_ALIGN != 0 {
            return Err(self.corrupt("tail not on a frame boundary", tail));
        }
        self.tail_seen = tail;
        Ok(RING_CAPACITY - self.head.wrapping_sub(tail))
    }

    /// Writes one frame made of `parts` (concatenated) and wakes the consumer
    /// if it sleeps. Waits for space until `deadline`.
    pub fn send(
        &mut self,
        parts: &[&[u8]],
        deadline: Option<Instant>,
        check: Check<'_>,
    ) -> Result<(), RingError> {
        self.stage(parts, deadline, check)?.publish()
    }

    /// Writes one frame made of `parts` into the ring without publishing it:
    /// the consumer cannot see it until [`Staged::publish`]. In between, the
    /// sender can wipe its own copy, so that there is no instant at which the
    /// peer holds the frame while the sender still does too. A staged frame
    /// dropped unpublished is wiped from the ring. Waits for space until
    /// `deadline`.
    pub fn stage(
        &mut self,
        parts: &[&[u8]],
        deadline: Option<Instant>,
        check: Check<'_>,
    ) -> Result<Staged<'_>, RingError> {
        if self.poisoned {
            return Err(RingError::Poisoned);
        }
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let len = u32::try_from(total)
            .ok()
            .filter(|l| *l <= MAX_FRAME)
            .ok_or(RingError::FrameTooLarge {
                len: total,
                max: MAX_FRAME,
            })?;
        let need = frame_size(len);
        let region = self.region.clone();
        let c = region.control(self.ring);
        let mut free = 0;
        wait(
            &c.tail,
            &c.writer_sleeping,
            DEFAULT_SLICE,
            Duration::ZERO,
            DEFAULT_SPIN,
            deadline,
            check,
            |tail| {
                free = self.validate_tail(tail)?;
                Ok(free >= need)
            },
        )?;
        debug_assert!(free >= need);
        let data = region.data(self.ring);
        let mask = RING_CAPACITY - 1;
        let mut start = self.head;
        let mut skip_at = None;
        let at = start & mask;
        if free == RING_CAPACITY && at != 0 && at >= need {
            // Empty, and the frame fits before where it would go: back to
            // the start. The marker's 4 bytes never wrap (`at` is a multiple
            // of 8), and `RING_CAPACITY - at + need <= RING_CAPACITY`.
            // SAFETY: at + 4 <= RING_CAPACITY, inside the data area, which
            // is all free (the ring is empty); volatile as for the prefix.
            unsafe {
                data.add(usize_of(at))
                    .cast::<[u8; 4]>()
                    .write_volatile(SKIP.to_le_bytes())
            };
            skip_at = Some(at);
            start = start.wrapping_add(RING_CAPACITY - at);
        }
        let mut pos = start & mask;
        // The length prefix never wraps: positions are multiples of 8 and the
        // capacity is a multiple of 8.
        // SAFETY: pos + 4 <= RING_CAPACITY, inside the data area; volatile
        // because the peer may read concurrently.
        unsafe {
            data.add(usize_of(pos))
                .cast::<[u8; 4]>()
                .write_volatile(len.to_le_bytes())
        };
        pos = (pos + LEN_PREFIX) & mask;
        for part in parts {
            // SAFETY: the bytes from pos on are free (validated above: the
            // consumer published a tail leaving `need` bytes), inside the data
            // area with wrap handled by `copy_in`.
            unsafe { copy_in(data, pos, part) };
            pos = pos.wrapping_add(u32::try_from(part.len()).unwrap_or(0)) & mask;
        }
        Ok(Staged {
            producer: self,
            start,
            need,
            skip_at,
            published: false,
        })
    }

    /// Evidence that the consumer wiped the last frame sent: `Some(nonzero)`
    /// with the count of bytes the consumer left non-zero in it, once it has
    /// consumed the frame and no later frame overwrote the space; `None` when
    /// that cannot be told yet.
    pub fn last_frame_residue(&self) -> Option<usize> {
        let (start, need) = self.last?;
        let tail = self.control().tail.load(Ordering::Acquire);
        if tail.wrapping_sub(start) < need
            || tail.wrapping_sub(start) > self.head.wrapping_sub(start)
        {
            return None;
        }
        let data = self.region.data(self.ring);
        let mask = RING_CAPACITY - 1;
        let first = usize_of(start & mask);
        let n = usize_of(need);
        let cap = usize_of(RING_CAPACITY);
        let a = n.min(cap - first);
        // SAFETY: both ranges lie inside the RING_CAPACITY data area.
        Some(unsafe {
            sys::count_nonzero_volatile(data.add(first), a)
                + sys::count_nonzero_volatile(data, n - a)
        })
    }
}

/// A frame written into the ring but not yet visible to the consumer
/// (see [`Producer::stage`]).
#[derive(Debug)]
pub struct Staged<'a> {
    producer: &'a mut Producer,
    /// Where the frame starts (after the skip, if any).
    start: u32,
    need: u32,
    /// Where a skip marker was written before it, if one was.
    skip_at: Option<u32>,
    published: bool,
}

impl Staged<'_> {
    /// Makes the frame visible to the consumer, and wakes it if it sleeps.
    pub fn publish(mut self) -> Result<(), RingError> {
        self.published = true;
        let p = &mut *self.producer;
        p.head = self.start.wrapping_add(self.need);
        p.last = Some((self.start, self.need));
        let c = p.region.control(p.ring);
        c.head.store(p.head, Ordering::SeqCst);
        if c.reader_sleeping.load(Ordering::SeqCst) != 0 {
            sys::futex_wake_shared(&c.head, 1).map_err(RingError::Futex)?;
        }
        Ok(())
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if self.published {
            return;
        }
        // Never published: the consumer never saw it; wipe it from the ring.
        let p = &*self.producer;
        let data = p.region.data(p.ring);
        let mask = RING_CAPACITY - 1;
        let first = usize_of(self.start & mask);
        let n = usize_of(self.need);
        let a = n.min(usize_of(RING_CAPACITY) - first);
        // SAFETY: both ranges lie inside the RING_CAPACITY data area, in the
        // space this producer owns until it publishes a head past it.
        unsafe {
            sys::wipe_volatile(data.add(first), a);
            sys::wipe_volatile(data, n - a);
        }
        if let Some(at) = self.skip_at {
            // SAFETY: the marker's 4 bytes, inside the data area, in space
            // this producer still owns.
            unsafe { sys::wipe_volatile(data.add(usize_of(at)), usize_of(LEN_PREFIX)) };
        }
    }
}

/// The receiving end of one ring.
#[derive(Debug)]
pub struct Consumer {
    region: Arc<Region>,
    ring: usize,
    tail: u32,
    head_seen: u32,
    poisoned: bool,
    slice: Duration,
    spin: Duration,
    presleep: Duration,
}

impl Consumer {
    fn corrupt(&mut self, what: &'static str, value: u32) -> RingError {
        self.poisoned = true;
        RingError::Corrupt {
            what,
            value: u64::from(value),
        }
    }

    /// Sets how long one futex sleep lasts before the check runs again.
    pub fn set_slice(&mut self, slice: Duration) {
        self.slice = slice;
    }

    /// Sets how long a wait spins before it sleeps ([`DEFAULT_SPIN`]).
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Sets how long a wait first sleeps before it spins (none by default):
    /// for answers known to take a while, the core is left to the peer and
    /// the spin only covers the end of the expected wait.
    pub fn set_presleep(&mut self, presleep: Duration) {
        self.presleep = presleep;
    }

    /// Validates a head value read once from shared memory; returns how many
    /// bytes are published.
    fn validate_head(&mut self, head: u32) -> Result<u32, RingError> {
        // Indices wrap at 2^32: a move of more than half the index space
        // forward is a move backwards.
        if head.wrapping_sub(self.head_seen) > u32::MAX / 2 {
            return Err(self.corrupt("head moved backwards", head));
        }
        let avail = head.wrapping_sub(self.tail);
        if avail > RING_CAPACITY {
            return Err(self.corrupt("head beyond the ring's capacity", head));
        }
        if avail % FRAME_ALIGN != 0 {
            return Err(self.corrupt("head not on a frame boundary", head));
        }
        self.head_seen = head;
        Ok(avail)
    }

    /// Waits for one frame, copies its payload into `dst`, wipes the frame in
    /// the ring, and only then frees its space. Returns the payload length.
    pub fn recv_into(
        &mut self,
        dst: &mut SecretBuf,
        deadline: Option<Instant>,
        check: Check<'_>,
    ) -> Result<usize, RingError> {
        if self.poisoned {
            return Err(RingError::Poisoned);
        }
        dst.clear();
        let region = self.region.clone();
        let c = region.control(self.ring);
        let mut avail = 0;
        let slice = self.slice;
        let (presleep, spin) = (self.presleep, self.spin);
        wait(
            &c.head,
            &c.reader_sleeping,
            slice,
            presleep,
            spin,
            deadline,
            check,
            |head| {
                avail = self.validate_head(head)?;
                Ok(avail > 0)
            },
        )?;
        let data = region.data(self.ring);
        let mask = RING_CAPACITY - 1;
        let mut pos = self.tail & mask;
        let prefix = |pos: u32| {
            // SAFETY: pos + 4 <= RING_CAPACITY (positions are 8-aligned);
            // read once, volatile, as the peer may write concurrently.
            u32::from_le_bytes(unsafe { data.add(usize_of(pos)).cast::<[u8; 4]>().read_volatile() })
        };
        let mut len = prefix(pos);
        if len == SKIP {
            // Back to the start: the marker must not be there already, and
            // a frame must be published after the space it skips.
            if pos == 0 {
                return Err(self.corrupt("a skip marker at the start of the ring", len));
            }
            let skip = RING_CAPACITY - pos;
            if skip >= avail {
                return Err(self.corrupt("a skip marker with no frame after it", len));
            }
            // SAFETY: the marker's 4 bytes, inside the data area, published
            // to this consumer.
            unsafe { sys::wipe_volatile(data.add(usize_of(pos)), usize_of(LEN_PREFIX)) };
            // Published with the frame's tail below.
            self.tail = self.tail.wrapping_add(skip);
            avail -= skip;
            pos = 0;
            len = prefix(pos);
        }
        if len > MAX_FRAME {
            return Err(self.corrupt("frame length over the limit", len));
        }
        let need = frame_size(len);
        if need > avail {
            return Err(self.corrupt("frame length past the published end", len));
        }
        let n = usize_of(len);
        let result = if n > dst.capacity() {
            Err(RingError::DestinationTooSmall {
                len: n,
                capacity: dst.capacity(),
            })
        } else {
            // SAFETY: the payload lies inside the published range (checked
            // above), `dst` has at least `n` writable bytes of private memory.
            unsafe { copy_out(data, (pos + LEN_PREFIX) & mask, dst.as_mut_ptr(), n) };
            dst.set_len(n).map_err(|_| RingError::DestinationTooSmall {
                len: n,
                capacity: dst.capacity(),
            })
        };
        // Wipe the whole frame (prefix, payload, padding) before publishing
        // the tail: once the tail moves, the producer may reuse the space.
        let first = usize_of(pos);
        let total = usize_of(need);
        let cap = usize_of(RING_CAPACITY);
        let a = total.min(cap - first);
        // SAFETY: both ranges lie inside the data area and belong to this
        // consumer until the tail is published.
        unsafe {
            sys::wipe_volatile(data.add(first), a);
            sys::wipe_volatile(data, total - a);
        }
        self.tail = self.tail.wrapping_add(need);
        c.tail.store(self.tail, Ordering::SeqCst);
        if c.writer_sleeping.load(Ordering::SeqCst) != 0 {
            sys::futex_wake_shared(&c.tail, 1).map_err(RingError::Futex)?;
        }
        result.map(|()| n)
    }
}

/// Copies `src` into the ring's data area at `pos`, wrapping at the end.
///
/// # Safety
/// `data` must point at a RING_CAPACITY-byte writable area, `pos <
/// RING_CAPACITY`, and `src.len() <= RING_CAPACITY`.
unsafe fn copy_in(data: *mut u8, pos: u32, src: &[u8]) {
    let cap = usize_of(RING_CAPACITY);
    let p = usize_of(pos);
    let a = src.len().min(cap - p);
    // SAFETY: per the contract, [p, p + a) and [0, len - a) are in the area;
    // `src` is private memory, so the ranges do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), data.add(p), a);
        std::ptr::copy_nonoverlapping(src.as_ptr().add(a), data, src.len() - a);
    }
}

/// Copies `n` bytes from the ring's data area at `pos` (wrapping) to `dst`.
///
/// # Safety
/// `data` must point at a RING_CAPACITY-byte readable area, `pos <
/// RING_CAPACITY`, `n <= RING_CAPACITY`, and `dst` valid for `n` writes and
/// not inside the ring.
unsafe fn copy_out(data: *const u8, pos: u32, dst: *mut u8, n: usize) {
    let cap = usize_of(RING_CAPACITY);
    let p = usize_of(pos);
    let a = n.min(cap - p);
    // SAFETY: per the contract.
    unsafe {
        std::ptr::copy_nonoverlapping(data.add(p), dst, a);
        std::ptr::copy_nonoverlapping(data, dst.add(a), n - a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn pair() -> (Channel, Channel, OwnedFd) {
        let (fds, broker) = Channel::create().unwrap();
        let vault = Channel::open(fds.control.as_fd(), None, Role::Vault).unwrap();
        (broker, vault, fds.control)
    }

    fn ok() -> impl FnMut() -> Result<(), RingError> {
        || Ok(())
    }

    fn soon() -> Option<Instant> {
        Some(Instant::now() + Duration::from_secs(5))
    }

    #[test]
    fn frames_cross_and_are_wiped_on_both_sides() {
        let (mut b, mut v, _fd) = pair();
        let mut buf = SecretBuf::new(MAX_FRAME as usize).unwrap();
        b.tx.send(&[b"hello ", b"vault"], soon(), &mut ok())
            .unwrap();
        assert!(b.nonzero_bytes() > 0);
        assert_eq!(b.tx.last_frame_residue(), None, "not consumed yet");
        let n = v.rx.recv_into(&mut buf, soon(), &mut ok()).unwrap();
        assert_eq!(buf.expose(|x| x.to_vec()), b"hello vault");
        assert_eq!(n, 11);
        assert_eq!(b.tx.last_frame_residue(), Some(0));
        assert_eq!(
            b.nonzero_bytes(),
            0,
            "the request ring must be wiped after the read"
        );
        v.tx.send(&[b"secret answer"], soon(), &mut ok()).unwrap();
        b.rx.recv_into(&mut buf, soon(), &mut ok()).unwrap();
        assert_eq!(
            v.nonzero_bytes(),
            0,
            "the response ring must be wiped after the read"
        );
    }

    #[test]
    fn a_staged_frame_is_invisible_until_published_and_wiped_if_dropped() {
        let (mut b, mut v, _fd) = pair();
        let mut buf = SecretBuf::new(MAX_FRAME as usize).unwrap();
        let now = || Some(Instant::now());
        let h = b.handle();
        // Dropped unpublished: the consumer never sees it, the ring is clean.
        let staged = b.tx.stage(&[b"never sent"], soon(), &mut ok()).unwrap();
        assert!(h.nonzero_bytes() > 0, "the bytes are written");
        drop(staged);
        assert_eq!(h.nonzero_bytes(), 0, "an unpublished frame is wiped");
        assert!(matches!(
            v.rx.recv_into(&mut buf, now(), &mut ok()),
            Err(RingError::Timeout(_))
        ));
        // Staged: written but not visible; published: received.
        let staged = b.tx.stage(&[b"late"], soon(), &mut ok()).unwrap();
        assert!(matches!(
            v.rx.recv_into(&mut buf, now(), &mut ok()),
            Err(RingError::Timeout(_))
        ));
        staged.publish().unwrap();
        v.rx.recv_into(&mut buf, soon(), &mut ok()).unwrap();
        assert_eq!(buf.expose(|x| x.to_vec()), b"late");
        assert_eq!(b.nonzero_bytes(), 0);
    }

    #[test]
    fn frames_wrap_around_the_end() {
        let (mut b, mut v, _fd) = pair();
        let mut buf = SecretBuf::new(MAX_FRAME as usize).unwrap();
        // Odd sizes so frames straddle the end of the data area many times;
        // always one frame in flight, so the ring is never empty when one is
        // sent and none goes back to the start.
        let mut previous: Vec<u8> = vec![7; 100];
        b.tx.send(&[&previous], soon(), &mut ok()).unwrap();
        let mut wrapped = 0;
        for i in 0..200u32 {
            let payload: Vec<u8> = (0..(1000 + i * 97) % 60_000)
                .map(|j| (j ^ i).to_le_bytes()[0] | 1)
                .collect();
            let before = b.tx.head & (RING_CAPACITY - 1);
            b.tx.send(&[&payload], soon(), &mut ok()).unwrap();
            if b.tx.head & (RING_CAPACITY - 1) < before {
                wrapped += 1;
            }
            v.rx.recv_into(&mut buf, soon(), &mut ok()).unwrap();
            assert!(buf.expose(|x| x == previous.as_slice()), "frame {i}");
            previous = payload;
        }
        v.rx.recv_into(&mut buf, soon(), &mut ok()).unwrap();
        assert!(buf.expose(|x| x == previous.as_slice()));
        assert_eq!(b.nonzero_bytes(), 0);
        assert!(wrapped >= 10, "frames wrapped {wrapped} times");
    }

    #[test]
    fn a_secret_memory_ring_works_the_same() {
        let (fds, mut b) = Channel::create_with(Backing::Secret).unwrap();
        let data = fds.data.as_ref().map(AsFd::as_fd);
        let mut v = Channel::open(fds.control.as_fd(), data, Role::Vault).unwrap();
        assert_eq!((b.backing, v.backing), (Backing::Secret, Backing::Secret));
        let mut buf = SecretBuf::new(64).unwrap();
        b.tx.send(&[b"through secret memory"], soon(), &mut ok())
            .unwrap();
        v.rx.recv_into(&mut buf, soon(), &mut ok()).unwrap();
        assert_eq!(buf.expose(|x| x.to_vec()), b"through secret memory");
        assert_eq!(b.nonzero_bytes(), 0);
    }

    /// Counting what is left in a secret-memory ring makes no page of it
    /// exist, yet sees a byte the peer wrote in a page only the peer had
    /// touched. The control: a plain read of an absent page makes it exist.
    #[test]
    fn counting_a_secret_rings_residue_allocates_nothing_and_misses_nothing() {
        let (fds, mut b) = Channel::create_with(Backing::Secret).unwrap();
        let data = fds.data.as_ref().map(AsFd::as_fd);
        let mut v = Channel::open(fds.control.as_fd(), data, Role::Vault).unwrap();
        let mut buf = SecretBuf::new(64).unwrap();
        b.tx.send(&[b"a request"], soon(), &mut ok()).unwrap();
        v.rx.recv_into(&mut buf, soon(), &mut ok()).unwrap();
        let region = &b.rx.region;
        let resident = || {
            region
                .data
                .resident(0, usize_of(RING_CAPACITY) * 2)
                .unwrap()
                .iter()
                .filter(|p| **p)
                .count()
        };
        let before = resident();
        assert!(before <= 2, "{before} pages exist after one small frame");
        assert_eq!(b.nonzero_bytes(), 0);
        assert_eq!(resident(), before, "the count made pages exist");
        // The vault writes a byte in the last page of its ring, through its
        // own mapping.
        let last = usize_of(RING_CAPACITY) - 1;
        // SAFETY: the last byte of the response ring's data in the vault's
        // live mapping; nothing else uses it in this test.
        unsafe {
            v.rx.region
                .data(RESPONSE_RING)
                .add(last)
                .write_volatile(0xAA)
        };
        assert_eq!(b.nonzero_bytes(), 1, "the peer's byte is seen");
        assert_eq!(resident(), before + 1);
        // Control: reading a page that does not exist makes it exist.
        // SAFETY: a byte in the middle of the request ring's data, readable.
        let x = unsafe {
            region
                .data(REQUEST_RING)
                .add(usize_of(RING_CAPACITY) / 2)
                .read_volatile()
        };
        assert_eq!(x, 0);
        assert_eq!(resident(), before + 2, "a read allocates the page");
    }

    #[test]
    fn an_oversized_frame_is_refused_by_the_sender() {
        let (mut b, _v, _fd) = pair();
        let big = vec![1u8; MAX_FRAME as usize + 1];
        assert!(matches!(
            b.tx.send(&[&big], soon(), &mut ok()),
            Err(RingError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn receive_times_out_when_nothing_comes() {
        let (_b, mut v, _fd) = pair();
        let mut buf = SecretBuf::new(64).unwrap();
        let r = v.rx.recv_into(
            &mut buf,
            Some(Instant::now() + Duration::from_millis(100)),
            &mut ok(),
        );
        assert!(matches!(r, Err(RingError::Timeout(_))), "{r:?}");
    }

    #[test]
    fn a_full_ring_blocks_the_sender_until_the_deadline() {
        let (mut b, _v, _fd) = pair();
        let chunk = vec![1u8; MAX_FRAME as usize];
        b.tx.send(&[&chunk], soon(), &mut ok()).unwrap();
        let r = b.tx.send(
            &[&chunk],
            Some(Instant::now() + Duration::from_millis(100)),
            &mut ok(),
        );
        assert!(matches!(r, Err(RingError::Timeout(_))), "{r:?}");
    }

    #[test]
    fn the_check_can_abort_a_wait() {
        let (_b, mut v, _fd) = pair();
        let mut buf = SecretBuf::new(64).unwrap();
        v.rx.set_slice(Duration::from_millis(5));
        let r =
            v.rx.recv_into(&mut buf, None, &mut || Err(RingError::PeerGone));
        assert!(matches!(r, Err(RingError::PeerGone)));
    }

    #[test]
    fn a_sleeping_reader_is_woken_by_the_writer() {
        let (mut b, mut v, _fd) = pair();
        let t = std::thread::spawn(move || {
            let mut buf = SecretBuf::new(64).unwrap();
            v.rx.set_slice(Duration::from_secs(30));
            let start = Instant::now();
            v.rx.recv_into(&mut buf, soon(), &mut || Ok(())).unwrap();
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(200));
        b.tx.send(&[b"wake"], soon(), &mut ok()).unwrap();
        let waited = t.join().unwrap();
        assert!(
            waited < Duration::from_secs(5),
            "woken by the futex, not by the slice: {waited:?}"
        );
    }

    /// Writes raw values into the peer-owned words, as a hostile peer would.
    fn poke(chan: &Channel, ring: usize, f: impl FnOnce(&Control, *mut u8)) {
        let region = &chan.tx.region;
        f(region.control(ring), region.data(ring));
    }

    #[test]
    fn a_length_past_the_published_end_is_refused_and_poisons() {
        let (b, mut v, _fd) = pair();
        poke(&b, REQUEST_RING, |c, data| {
            // SAFETY: first 4 bytes of the data area.
            unsafe { data.cast::<[u8; 4]>().write_volatile(4000u32.to_le_bytes()) };
            c.head.store(16, Ordering::SeqCst);
        });
        let mut buf = SecretBuf::new(MAX_FRAME as usize).unwrap();
        let r = v.rx.recv_into(&mut buf, soon(), &mut ok());
        assert!(
            matches!(
                r,
                Err(RingError::Corrupt {
                    what: "frame length past the published end",
                    ..
                })
            ),
            "{r:?}"
        );
        assert!(matches!(
            v.rx.recv_into(&mut buf, soon(), &mut ok()),
            Err(RingError::Poisoned)
        ));
    }

    #[test]
    fn a_length_over_the_limit_is_refused() {
        let (b, mut v, _fd) = pair();
        poke(&b, REQUEST_RING, |c, data| {
            // SAFETY: first 4 bytes of the data area.
            unsafe {
                data.cast::<[u8; 4]>()
                    .write_volatile(u32::MAX.to_le_bytes())
            };
            c.head.store(RING_CAPACITY, Ordering::SeqCst);
        });
        let mut buf = SecretBuf::new(64).unwrap();
        let r = v.rx.recv_into(&mut buf, soon(), &mut ok());
        assert!(
            matches!(
                r,
                Err(RingError::Corrupt {
                    what: "frame length over the limit",
                    ..
                })
            ),
            "{r:?}"
        );
    }

    #[test]
    fn a_head_beyond_capacity_or_moving_backwards_is_refused() {
        let (b, mut v, _fd) = pair();
        poke(&b, REQUEST_RING, |c, _| {
            c.head.store(RING_CAPACITY + 8, Ordering::SeqCst)
        });
        let mut buf = SecretBuf::new(64).unwrap();
        let r = v.rx.recv_into(&mut buf, soon(), &mut ok());
        assert!(
            matches!(
                r,
                Err(RingError::Corrupt {
                    what: "head beyond the ring's capacity",
                    ..
                })
            ),
            "{r:?}"
        );

        let (mut b, mut v, _fd) = pair();
        b.tx.send(&[b"a"], soon(), &mut ok()).unwrap();
        b.tx.send(&[b"b"], soon(), &mut ok()).unwrap();
        v.rx.recv_into(&mut buf, soon(), &mut ok()).unwrap();
        poke(&b, REQUEST_RING, |c, _| c.head.store(8, Ordering::SeqCst));
        let r = v.rx.recv_into(&mut buf, soon(), &mut ok());
        assert!(
            matches!(
                r,
                Err(RingError::Corrupt {
                    what: "head moved backwards",
                    ..
                })
            ),
            "{r:?}"
        );
    }

    #[test]
    fn a_tail_moved_past_head_is_refused_by_the_sender() {
        let (mut b, _v, _fd) = pair();
        poke(&b, REQUEST_RING, |c, _| c.tail.store(64, Ordering::SeqCst));
        let r = b.tx.send(&[b"x"], soon(), &mut ok());
        assert!(
            matches!(
                r,
                Err(RingError::Corrupt {
                    what: "tail moved backwards or past head",
                    ..
                })
            ),
            "{r:?}"
        );
    }

    #[test]
    fn a_used_ring_is_refused_at_open() {
        let (fds, mut b) = Channel::create().unwrap();
        let fd = fds.control;
        b.tx.send(&[b"early"], soon(), &mut ok()).unwrap();
        // A request already waiting is fine: the broker does not wait for the vault.
        let mut v = Channel::open(fd.as_fd(), None, Role::Vault).unwrap();
        let mut buf = SecretBuf::new(64).unwrap();
        v.rx.recv_into(&mut buf, soon(), &mut ok()).unwrap();
        // But a ring whose requests were already consumed, or that already
        // holds answers, was used by someone else.
        assert!(matches!(
            Channel::open(fd.as_fd(), None, Role::Vault),
            Err(RingError::NotFresh { .. })
        ));
        let (fds, _b) = Channel::create().unwrap();
        let fd = fds.control;
        let mut v = Channel::open(fd.as_fd(), None, Role::Vault).unwrap();
        v.tx.send(&[b"answer"], soon(), &mut ok()).unwrap();
        assert!(matches!(
            Channel::open(fd.as_fd(), None, Role::Vault),
            Err(RingError::NotFresh { .. })
        ));
    }

    #[test]
    fn too_small_destination_is_an_error_and_the_frame_is_still_wiped() {
        let (mut b, mut v, _fd) = pair();
        b.tx.send(&[&[9u8; 5000]], soon(), &mut ok()).unwrap();
        let mut small = SecretBuf::new(100).unwrap();
        let r = v.rx.recv_into(&mut small, soon(), &mut ok());
        assert!(
            matches!(r, Err(RingError::DestinationTooSmall { .. })),
            "{r:?}"
        );
        assert_eq!(b.nonzero_bytes(), 0);
        assert_eq!(small.nonzero_bytes(), 0);
    }

    /// Property: any interleaving of sends and receives of random sizes
    /// (wrapping many times) delivers every frame intact, in order, and
    /// leaves the rings empty of data once drained.
    #[test]
    fn property_random_traffic_matches_a_model_queue() {
        let mut rng = crate::testrand::Rng::new(0x5EED_0003);
        let (mut b, mut v, _fd) = pair();
        let mut buf = SecretBuf::new(MAX_FRAME as usize).unwrap();
        let mut model = std::collections::VecDeque::new();
        let mut queued = 0usize;
        for step in 0..3000 {
            let send = rng.below(2) == 0 || model.is_empty();
            if send {
                let len = usize::try_from(rng.below(if step % 50 == 0 {
                    u64::from(MAX_FRAME)
                } else {
                    3000
                }))
                .unwrap();
                let need = usize::try_from(frame_size(u32::try_from(len).unwrap())).unwrap();
                if queued + need > RING_CAPACITY as usize {
                    continue;
                }
                let payload = rng.bytes(len);
                // A frame sent back at the start of the data area holds the
                // space it skipped until it is read: the ring may be full
                // before the model's count says so. Then it is a timeout,
                // at once, and nothing was written.
                match b.tx.send(&[&payload], Some(Instant::now()), &mut ok()) {
                    Ok(()) => {}
                    Err(RingError::Timeout(_)) => {
                        assert!(!model.is_empty(), "an empty ring refused a frame");
                        continue;
                    }
                    Err(e) => panic!("step {step}: {e}"),
                }
                queued += need;
                model.push_back(payload);
            } else {
                let want = model.pop_front().unwrap();
                let n = v.rx.recv_into(&mut buf, soon(), &mut ok()).unwrap();
                assert_eq!(n, want.len());
                assert!(buf.expose(|x| x == want.as_slice()), "step {step}");
                queued -= usize::try_from(frame_size(u32::try_from(n).unwrap())).unwrap();
            }
        }
        while let Some(want) = model.pop_front() {
            v.rx.recv_into(&mut buf, soon(), &mut ok()).unwrap();
            assert!(buf.expose(|x| x == want.as_slice()));
        }
        assert_eq!(b.nonzero_bytes(), 0);
    }

    /// Frames sent one at a time (a request, then its answer) go back to the
    /// start of the data area: none of them reaches past the longest one.
    #[test]
    fn one_frame_at_a_time_keeps_to_the_start_of_the_ring() {
        let (mut b, mut v, _fd) = pair();
        let mut buf = SecretBuf::new(MAX_FRAME as usize).unwrap();
        let beyond = |chan: &Channel| {
            let mut n = 0;
            poke(chan, REQUEST_RING, |_, data| {
                // SAFETY: the data area is RING_CAPACITY bytes; from 4096 on.
                n = unsafe {
                    sys::count_nonzero_volatile(data.add(4096), usize_of(RING_CAPACITY) - 4096)
                };
            });
            n
        };
        for i in 0..2000u32 {
            let payload: Vec<u8> = (0..200 + i % 300).map(|j| j.to_le_bytes()[0] | 1).collect();
            b.tx.send(&[&payload], soon(), &mut ok()).unwrap();
            assert_eq!(beyond(&b), 0, "frame {i} went past the first page");
            v.rx.recv_into(&mut buf, soon(), &mut ok()).unwrap();
            assert!(buf.expose(|x| x == payload.as_slice()), "frame {i}");
            assert_eq!(b.nonzero_bytes(), 0, "frame {i} and its marker wiped");
        }
    }

    /// Positive control of the test above: frames kept in flight two at a
    /// time do walk through the whole data area (the check sees them).
    #[test]
    fn two_frames_in_flight_walk_through_the_ring() {
        let (mut b, mut v, _fd) = pair();
        let mut buf = SecretBuf::new(MAX_FRAME as usize).unwrap();
        let mut furthest = 0;
        b.tx.send(&[&[1u8; 300]], soon(), &mut ok()).unwrap();
        for _ in 0..2000 {
            b.tx.send(&[&[1u8; 300]], soon(), &mut ok()).unwrap();
            poke(&b, REQUEST_RING, |_, data| {
                // SAFETY: the data area is RING_CAPACITY bytes.
                let d = unsafe { std::slice::from_raw_parts(data, usize_of(RING_CAPACITY)) };
                furthest = furthest.max(d.iter().rposition(|&x| x != 0).unwrap_or(0));
            });
            v.rx.recv_into(&mut buf, soon(), &mut ok()).unwrap();
        }
        assert!(furthest > usize_of(RING_CAPACITY) / 2, "{furthest}");
    }

    #[test]
    fn a_skip_marker_at_the_start_or_with_nothing_after_it_is_refused() {
        for (at, head, what) in [
            (0u32, 64u32, "a skip marker at the start of the ring"),
            (64, 64 + 8, "no frame"),
        ] {
            let (b, mut v, _fd) = pair();
            let mut buf = SecretBuf::new(MAX_FRAME as usize).unwrap();
            if at != 0 {
                // Move both indices to `at`, as after frames consumed.
                b.tx.region
                    .control(REQUEST_RING)
                    .tail
                    .store(0, Ordering::SeqCst);
                v.rx.tail = at;
                v.rx.head_seen = at;
            }
            poke(&b, REQUEST_RING, |c, data| {
                // SAFETY: 4 bytes at `at`, inside the data area.
                unsafe {
                    data.add(usize_of(at))
                        .cast::<[u8; 4]>()
                        .write_volatile(SKIP.to_le_bytes())
                };
                c.head.store(head, Ordering::SeqCst);
            });
            let r = v.rx.recv_into(&mut buf, soon(), &mut ok());
            let expected = if at == 0 {
                what
            } else {
                "a skip marker with no frame after it"
            };
            assert!(
                matches!(&r, Err(RingError::Corrupt { what, .. }) if *what == expected),
                "{r:?}"
            );
        }
    }

    /// Property: whatever a hostile peer writes into the control words and
    /// the data, the consumer returns a frame or a typed error: no panic, no
    /// read out of bounds, no hang past the deadline.
    #[test]
    fn property_hostile_writes_never_break_the_consumer() {
        let mut rng = crate::testrand::Rng::new(0x5EED_0004);
        for round in 0..400 {
            let (b, mut v, _fd) = pair();
            let mut buf = SecretBuf::new(if round % 2 == 0 {
                64
            } else {
                MAX_FRAME as usize
            })
            .unwrap();
            // Half the rounds, the consumer is further on (as after frames
            // read), and a third of the prefixes there are skip markers.
            let start = if round % 2 == 1 {
                u32::try_from(rng.below(u64::from(RING_CAPACITY / FRAME_ALIGN))).unwrap()
                    * FRAME_ALIGN
            } else {
                0
            };
            v.rx.tail = start;
            v.rx.head_seen = start;
            poke(&b, REQUEST_RING, |c, data| {
                for _ in 0..rng.below(20) {
                    let at = usize::try_from(rng.below(u64::from(RING_CAPACITY))).unwrap();
                    // SAFETY: `at` is inside the data area.
                    unsafe { data.add(at).write_volatile(rng.byte()) };
                }
                for at in [0, start] {
                    let len = if rng.below(3) == 0 {
                        SKIP
                    } else {
                        u32::try_from(rng.below(u64::from(u32::MAX))).unwrap() >> (rng.below(32))
                    };
                    // SAFETY: four bytes at an 8-aligned position of the
                    // data area.
                    unsafe {
                        data.add(usize_of(at))
                            .cast::<[u8; 4]>()
                            .write_volatile(len.to_le_bytes())
                    };
                }
                let head = start.wrapping_add(
                    u32::try_from(rng.below(u64::from(u32::MAX))).unwrap() >> rng.below(32),
                );
                c.head.store(head, Ordering::SeqCst);
                c.tail.store(
                    u32::try_from(rng.below(u64::from(u32::MAX))).unwrap(),
                    Ordering::SeqCst,
                );
                c.reader_sleeping.store(rng.byte().into(), Ordering::SeqCst);
            });
            let deadline = Some(Instant::now() + Duration::from_millis(20));
            for _ in 0..3 {
                match v.rx.recv_into(&mut buf, deadline, &mut ok()) {
                    Ok(n) => assert!(n <= buf.capacity()),
                    Err(
                        RingError::Corrupt { .. }
                        | RingError::Poisoned
                        | RingError::Timeout(_)
                        | RingError::DestinationTooSmall { .. },
                    ) => {}
                    Err(e) => panic!("round {round}: unexpected {e:?}"),
                }
            }
        }
    }
}
