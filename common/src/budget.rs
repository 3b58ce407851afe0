//! One memory-lock budget for everything the two processes lock.
//!
//! Every byte that may hold a secret is locked in RAM, and locked memory
//! counts against `RLIMIT_MEMLOCK` (8 MiB on many systems). The vault
//! drops every capability, `CAP_IPC_LOCK` included, before it locks
//! anything, so the limit applies to it even when root starts it. What it
//! locks:
//!
//! - the secure heap's arena, which since OpenSSL's allocator was routed
//!   into it holds all of OpenSSL's state in the vault (about 250 KiB before
//!   the key, 20-30 KiB more per lane, 64 KiB more per envelope in flight),
//!   and the stacks of the threads that use the key (256 KiB each, one per
//!   lane);
//! - per lane, its ring pair (mapped and locked by both processes) and its
//!   private request buffer.
//!
//! The broker locks the rings too, and its plaintext buffers (a pool of
//! them, plus one per request in flight). [`plan`] sizes the default arena
//! by lanes, and says before anything starts whether it all fits, shrinking
//! the default number of lanes if that is what it takes, or naming the
//! exact figure to raise the limit to.

use crate::ring::{MAX_FRAME, REGION_LEN};
use crate::sys::round_to_pages;

/// Buffers the broker keeps in its pool between requests.
pub const BROKER_POOL: usize = 8;
/// The arena holds OpenSSL's state before the key (measured: ~250 KiB).
const ARENA_BASE: usize = 512 * 1024;
/// Per lane: its thread's stack (256 KiB, `vault::arena_thread`), DRBG
/// and error state, and room for a 64 KiB envelope and its working buffers
/// in flight.
const ARENA_PER_LANE: usize = (256 + 96) * 1024;
/// Smallest default arena.
const MIN_DEFAULT_ARENA: usize = 1024 * 1024;

/// The default arena for `lanes`: a power of two (OpenSSL requires it),
/// at least 1 MiB.
pub fn default_arena(lanes: usize) -> usize {
    (ARENA_BASE + lanes * ARENA_PER_LANE)
        .max(MIN_DEFAULT_ARENA)
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX)
}

/// The smallest arena the vault accepts for `lanes`: OpenSSL's state, the
/// key, a stack per lane (measured: 1 MiB holds two lanes with a 64 KiB
/// envelope in flight, 512 KiB not even one).
pub fn min_arena(lanes: usize) -> usize {
    (400 * 1024 + lanes * 256 * 1024)
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX)
}

/// A request buffer (one frame), page-rounded as it is mapped.
fn buffer() -> usize {
    round_to_pages(MAX_FRAME as usize).unwrap_or(usize::MAX)
}

/// Bytes the vault locks with `arena` and `lanes`.
pub fn vault_needs(arena: usize, lanes: usize) -> usize {
    arena.saturating_add(lanes.saturating_mul(REGION_LEN + buffer()))
}

/// Bytes the broker locks with `lanes`, `in_flight` requests at once.
pub fn broker_needs(lanes: usize, in_flight: usize) -> usize {
    lanes
        .saturating_mul(REGION_LEN)
        .saturating_add((BROKER_POOL + in_flight).saturating_mul(buffer()))
}

/// This process's `RLIMIT_MEMLOCK` (soft), `None` when unlimited.
pub fn memlock_limit() -> Option<usize> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut l) } != 0
        || l.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(usize::try_from(l.rlim_cur).unwrap_or(usize::MAX))
}

/// Whether this process may lock memory beyond `RLIMIT_MEMLOCK`
/// (`CAP_IPC_LOCK` in effect, as root has it; the vault drops it).
pub fn exempt_from_limit() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << 14) != 0)
}

/// What a start will lock, as [`plan`] chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub lanes: usize,
    pub arena: usize,
    /// Bytes the vault will lock.
    pub vault: usize,
    /// Bytes the broker will lock (its rings, and a buffer per lane in
    /// flight beside its pool); 0 when it is exempt from the limit.
    pub broker: usize,
}

/// The limit does not allow even the smallest start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} must lock {need} bytes in memory ({lanes} lane(s), a secure heap of {arena} bytes), but RLIMIT_MEMLOCK allows {limit}: raise it to at least {} KiB (`ulimit -l {}`, or LimitMEMLOCK= for a systemd service){}", if *.broker { "the broker" } else { "the vault" }, need.div_ceil(1024), need.div_ceil(1024), if *.lanes_fixed { "" } else { ", or ask for a smaller arena" })]
pub struct TooLittle {
    /// Bytes the process must lock for the smallest start.
    pub need: usize,
    /// `RLIMIT_MEMLOCK`, in bytes.
    pub limit: usize,
    /// The lanes of that start.
    pub lanes: usize,
    /// The secure heap arena of that start, in bytes.
    pub arena: usize,
    /// Whether the lanes were asked for (else the fewest were tried).
    pub lanes_fixed: bool,
    /// Whether it is the broker's own locking that does not fit.
    pub broker: bool,
}

/// Chooses the lanes and the arena under `limit` (this process's limit by
/// default: the vault inherits it). `lanes`: `None` lets the plan choose
/// (`wanted`, fewer if the limit requires); `arena`: `None` for the default.
pub fn plan(
    lanes: Option<usize>,
    wanted: usize,
    arena: Option<usize>,
    limit: Option<usize>,
) -> Result<Plan, TooLittle> {
    plan_for(lanes, wanted, arena, limit, !exempt_from_limit())
}

/// [`plan`], saying whether the broker's own locking counts against the
/// limit (`broker_limited`).
pub fn plan_for(
    lanes: Option<usize>,
    wanted: usize,
    arena: Option<usize>,
    limit: Option<usize>,
    broker_limited: bool,
) -> Result<Plan, TooLittle> {
    let try_lanes = |n: usize| {
        let a = arena.unwrap_or_else(|| default_arena(n));
        Plan {
            lanes: n,
            arena: a,
            vault: vault_needs(a, n),
            broker: if broker_limited {
                broker_needs(n, n)
            } else {
                0
            },
        }
    };
    let fits = |p: &Plan| limit.is_none_or(|l| p.vault <= l && p.broker <= l);
    let too_little = |p: &Plan, fixed: bool| {
        let broker = p.broker > p.vault;
        TooLittle {
            need: p.vault.max(p.broker),
            limit: limit.unwrap_or(0),
            lanes: p.lanes,
            arena: p.arena,
            lanes_fixed: fixed,
            broker,
        }
    };
    match lanes {
        Some(n) => {
            let p = try_lanes(n);
            if fits(&p) {
                Ok(p)
            } else {
                Err(too_little(&p, true))
            }
        }
        None => {
            let wanted = wanted.max(1);
            if let Some(p) = (1..=wanted).rev().map(try_lanes).find(|p| fits(p)) {
                return Ok(p);
            }
            Err(too_little(&try_lanes(1), false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_arena_is_a_power_of_two_that_grows_with_lanes() {
        assert_eq!(default_arena(1), 1 << 20);
        assert_eq!(default_arena(2), 2 << 20);
        assert_eq!(default_arena(4), 2 << 20);
        assert_eq!(default_arena(8), 4 << 20);
        assert!(default_arena(16).is_power_of_two());
    }

    #[test]
    fn the_plan_shrinks_default_lanes_or_names_the_figure() {
        let four = vault_needs(default_arena(4), 4);
        let one = vault_needs(default_arena(1), 1);
        assert_eq!(plan(None, 4, None, None).unwrap().lanes, 4);
        assert_eq!(plan(None, 4, None, Some(four)).unwrap().lanes, 4);
        let shrunk = plan(None, 4, None, Some(four - 1)).unwrap();
        assert!(shrunk.lanes < 4 && shrunk.vault < four);
        let e = plan(None, 4, None, Some(one - 1)).unwrap_err();
        assert_eq!(e.need, one);
        assert!(e
            .to_string()
            .contains(&format!("ulimit -l {}", one.div_ceil(1024))));
        // Asked-for lanes are not shrunk.
        assert!(plan(Some(4), 4, None, Some(four - 1)).is_err());
    }
}
