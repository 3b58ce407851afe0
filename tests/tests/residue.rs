//! Nothing is left behind (`make residue-test`): the memory of a live broker
//! application and its vault is read through /proc/PID/mem at every step of
//! a secret's life, and the secret must be found zero times. A second canary
//! planted in ordinary heap memory (and, in the vault, its public key) must
//! be found every time, so a scanner that silently reads nothing would fail.

use suites::driver::{canary, hex, Driver};
use suites::scan;

const RING: &str = "privsep-vault-ring";

/// Which ring the run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ring {
    Sealed,
    Secret,
}

const SECRETMEM: &str = "/secretmem";

/// Reads all of `pid`'s memory and checks: no secret needle anywhere, every
/// control needle somewhere, the ring's mapping read (sealed ring) or its
/// data refused to root with EIO (secret ring; nothing else may fail).
fn assert_clean(
    pid: u32,
    who: &str,
    step: &str,
    ring: Ring,
    secrets: &[&[u8]],
    controls: &[&[u8]],
) {
    let mem =
        scan::read(pid).unwrap_or_else(|e| panic!("{who} at {step}: cannot read memory: {e}"));
    let ring_read = mem
        .regions
        .iter()
        .zip(&mem.bytes)
        .any(|(r, b)| r.path.contains(RING) && !b.is_empty());
    assert!(
        ring_read,
        "{who} at {step}: the ring's (control) mapping was not read"
    );
    match ring {
        Ring::Sealed => {
            assert!(
                mem.failed.is_empty(),
                "{who} at {step}: unreadable regions {:?}",
                mem.failed
            );
            let data =
                mem.regions.iter().zip(&mem.bytes).any(|(r, b)| {
                    r.path.contains(RING) && b.len() >= common::ring::DATA_REGION_LEN
                });
            assert!(data, "{who} at {step}: the ring's data was not read");
        }
        Ring::Secret => {
            for (r, e) in &mem.failed {
                assert!(
                    r.path.starts_with(SECRETMEM) && e.contains("os error 5"),
                    "{who} at {step}: {r:?} failed: {e}"
                );
            }
            let refused = mem
                .failed
                .iter()
                .filter(|(r, _)| r.len() == common::ring::DATA_REGION_LEN as u64)
                .count();
            assert!(
                refused >= 1,
                "{who} at {step}: the secret ring's data was readable by root: {:?}",
                mem.failed
            );
        }
    }
    for s in secrets {
        let hits = mem.find(s);
        assert!(
            hits.is_empty(),
            "{who} at {step}: the secret ({} bytes) found {} times: {:?}",
            s.len(),
            hits.len(),
            hits.iter()
                .map(|(a, r)| format!("{a:#x} in {} {} [{}]", r.perms, r.path, r.flags.join(" ")))
                .collect::<Vec<_>>()
        );
    }
    for c in controls {
        assert!(
            !mem.find(c).is_empty(),
            "{who} at {step}: the positive control was not found: the scan reads nothing useful"
        );
    }
}

fn stop(pid: u32, sig: i32) {
    // SAFETY: signalling a process this test started.
    assert_eq!(unsafe { libc::kill(i32::try_from(pid).unwrap(), sig) }, 0);
}

fn lifecycle(ring: Ring) {
    let args: &[&str] = match ring {
        Ring::Sealed => &[],
        Ring::Secret => &["--secret-memory", "require"],
    };
    let mut d = Driver::start(None, args, None);
    let secret = canary("CANARY-SECRET-");
    let control = canary("CANARY-CONTROL-");
    let public_key = d.public_key();
    // The control sits in the driver's ordinary heap; the vault's control is
    // its public key, which it keeps in its heap by design.
    assert_eq!(d.ask(&format!("plant {}", hex(&control))), "planted");
    // Needles: the whole secret and its tail (a partial copy counts too).
    let tail = secret[secret.len() - 16..].to_vec();
    let needles: [&[u8]; 2] = [&secret, &tail];
    let check = |d: &Driver, step: &str| {
        assert_clean(
            d.pid(),
            "broker application",
            step,
            ring,
            &needles,
            &[&control],
        );
        assert_clean(d.vault, "vault", step, ring, &needles, &[&public_key]);
    };
    check(&d, "start");
    d.store(&secret);
    check(&d, "after store");
    for i in 1..=25 {
        assert_eq!(d.ask("read"), format!("read {}", secret.len()));
        check(&d, &format!("after read {i}"));
    }
    let status = d.ask("status");
    assert!(
        status.starts_with("status 25 25 "),
        "25 decryptions, 25 verified wipes: {status}"
    );
    assert_eq!(d.ask("delete"), "deleted");
    check(&d, "after delete");
    // A graceful shutdown in progress: the vault is held (SIGSTOP) before it
    // reads the shutdown request; the broker waits for its answer.
    stop(d.vault, libc::SIGSTOP);
    suites::wait_for_state(d.vault, 'T');
    // Idle, no thread of the application waits on a ring; once one does,
    // the shutdown request is in the ring and the answer awaited.
    assert_eq!(
        suites::ring_waiters(d.pid()),
        Vec::<u32>::new(),
        "a ring wait before any request"
    );
    d.send("shutdown");
    suites::wait_for_ring_waiter(d.pid(), None);
    check(&d, "during shutdown");
    stop(d.vault, libc::SIGCONT);
    assert_eq!(d.answer(), "shutdown exited cleanly");
}

#[test]
fn no_copy_of_the_password_survives_any_step_in_either_process() {
    lifecycle(Ring::Sealed);
}

#[test]
fn no_copy_survives_with_the_secret_memory_ring_either() {
    lifecycle(Ring::Secret);
}

#[test]
fn root_cannot_read_the_secret_ring_but_can_read_the_sealed_one() {
    // Secret ring: root's read of the ring's data pages, and of the broker's
    // plaintext buffers, fails with EIO in both processes.
    let d = Driver::start(None, &["--secret-memory", "require"], None);
    for pid in [d.vault, d.pid()] {
        let mem = scan::read(pid).unwrap();
        let secret: Vec<_> = mem
            .regions
            .iter()
            // Readable: the arena's guard pages inside it are not.
            .filter(|r| r.path.starts_with(SECRETMEM) && r.perms.starts_with('r'))
            .collect();
        assert!(!secret.is_empty(), "no secret memory mapped in {pid}");
        for r in secret {
            let failed = mem.failed.iter().find(|(f, _)| f.start == r.start);
            assert!(
                failed.is_some_and(|(_, e)| e.contains("os error 5")),
                "root read secret memory {r:?} of {pid}"
            );
        }
    }
    drop(d);
    // Sealed ring, by contrast: the same read succeeds, so the check above
    // would notice a silent fallback to an ordinary ring.
    let d = Driver::start(None, &[], None);
    for pid in [d.vault, d.pid()] {
        let mem = scan::read(pid).unwrap();
        assert!(mem.regions.iter().all(|r| !r.path.starts_with(SECRETMEM)));
        let ring = mem
            .regions
            .iter()
            .zip(&mem.bytes)
            .find(|(r, _)| r.path.contains(RING));
        assert!(
            ring.is_some_and(|(r, b)| b.len() as u64 == r.len()
                && r.len() >= common::ring::DATA_REGION_LEN as u64),
            "sealed ring not read in {pid}"
        );
    }
}

#[test]
fn the_scan_would_notice_a_copy_left_in_either_process() {
    // Positive control for the test above, end to end: a secret kept in the
    // driver's heap is found by the same assert_clean, which then fails.
    let mut d = Driver::start(None, &[], None);
    let secret = canary("CANARY-LEFT-");
    assert_eq!(d.ask(&format!("plant {}", hex(&secret))), "planted");
    let r = std::panic::catch_unwind(|| {
        assert_clean(d.pid(), "driver", "planted", Ring::Sealed, &[&secret], &[])
    });
    assert!(r.is_err(), "a planted copy went unnoticed");
}

#[test]
fn no_copy_of_a_64_kib_envelope_secret_survives() {
    let mut d = Driver::start(None, &[], None);
    // 64 KiB of random hex: travels in an envelope (AES-256-GCM, wrapped key).
    let mut secret = Vec::new();
    while secret.len() < 64 * 1024 {
        secret.extend_from_slice(&canary("")[..32]);
    }
    secret.truncate(64 * 1024);
    let control = canary("CANARY-CONTROL-");
    let public_key = d.public_key();
    assert_eq!(d.ask(&format!("plant {}", hex(&control))), "planted");
    // Any 48-byte window of the secret counts as a copy.
    let windows: Vec<&[u8]> = [0, 1000, 32_768, 65_000, secret.len() - 48]
        .iter()
        .map(|&o| &secret[o..o + 48])
        .collect();
    let check = |d: &Driver, step: &str| {
        assert_clean(
            d.pid(),
            "broker application",
            step,
            Ring::Sealed,
            &windows,
            &[&control],
        );
        assert_clean(
            d.vault,
            "vault",
            step,
            Ring::Sealed,
            &windows,
            &[&public_key],
        );
    };
    d.store(&secret);
    check(&d, "after store");
    for i in 1..=5 {
        assert_eq!(d.ask("read"), format!("read {}", secret.len()));
        check(&d, &format!("after read {i}"));
    }
    assert_eq!(d.ask("delete"), "deleted");
    check(&d, "after delete");
}
