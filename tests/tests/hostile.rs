//! Hostile peers. A malicious vault (`evil-vault`) against the real broker
//! library: every attack ends in a clean, typed error on the broker's side,
//! within the request timeout, without a panic, and with the ring wiped by
//! the broker afterwards. (The malicious broker against the real vault
//! binary is in `vault_binary.rs`.)

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use broker::{Broker, Error};
use common::ring::{layout, REGION_LEN, RING_CAPACITY};
use common::sys::Mapping;
use suites::secret;

const TIMEOUT: Duration = Duration::from_millis(1500);

fn evil(mode: &str) -> broker::Config {
    broker::Config {
        vault_path: Some(suites::binary("evil-vault")),
        vault_args: vec!["--evil".into(), mode.into()],
        request_timeout: TIMEOUT,
        start_timeout: Duration::from_secs(20),
        shutdown_grace: Duration::from_millis(300),
        // The evil vault serves one ring, a sealed memfd it maps whole.
        lanes: 1,
        secret_memory: broker::SecretMemory::Off,
        ..broker::Config::default()
    }
}

/// The ring as the evil vault holds it (its fd 3), to check what the broker
/// left in it.
struct RingWatch {
    map: Mapping,
}

impl RingWatch {
    fn open(pid: u32) -> Self {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/fd/3"))
            .expect("the evil vault's ring");
        RingWatch {
            map: Mapping::shared(f.as_fd(), REGION_LEN).expect("map"),
        }
    }

    fn data_nonzero(&self) -> usize {
        let cap = RING_CAPACITY as usize;
        // SAFETY: both data areas lie inside the REGION_LEN mapping.
        unsafe {
            common::sys::count_nonzero_volatile(self.map.as_ptr().add(layout::REQUEST_DATA), cap)
                + common::sys::count_nonzero_volatile(
                    self.map.as_ptr().add(layout::RESPONSE_DATA),
                    cap,
                )
        }
    }
}

/// Starts a broker on the evil vault, stores a secret, and returns what the
/// first (and, if it succeeded, second) read ended with, and how long.
fn attack(mode: &str) -> (Vec<Result<(), Error>>, Duration, RingWatch) {
    let b = Broker::spawn(evil(mode)).unwrap_or_else(|e| panic!("{mode}: start-up failed: {e}"));
    let watch = RingWatch::open(b.vault_pid());
    b.store("pw", secret(b"hunter2")).unwrap();
    let start = Instant::now();
    let mut results = Vec::new();
    for _ in 0..2 {
        let r = b.with_secret("pw", |_| ()).map(drop);
        let stop = r.is_err() && !matches!(r, Err(Error::Refused { .. }));
        results.push(r);
        if stop {
            break;
        }
    }
    (results, start.elapsed(), watch)
}

fn is_protocol(r: &Result<(), Error>, words: &str) -> bool {
    match r {
        Err(e @ Error::Protocol { .. }) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            msg.contains(words)
        }
        _ => false,
    }
}

#[test]
fn every_attack_ends_in_a_clean_error_and_a_wiped_ring() {
    let cases: &[(&str, &str)] = &[
        ("garbage", "peer speaks protocol version"),
        ("length-past-end", "frame length past the published end"),
        ("head-beyond", "head beyond the ring's capacity"),
        ("misaligned-head", "head not on a frame boundary"),
        ("wrong-version", "peer speaks protocol version 9"),
        ("wrong-id", "answer 3 to request 2"),
        ("oversized-answer", "larger than any secret"),
        ("flood", "answer 1002 to request 2"),
        ("futex-nonsense", "the ring was corrupted by the peer"),
        ("head-backwards", "head moved backwards"),
        ("tail-beyond", "tail moved backwards or past head"),
        ("rewrite", ""),
    ];
    let mut failures = Vec::new();
    for (mode, words) in cases {
        let (results, took, watch) = attack(mode);
        let last = results.last().expect("at least one read");
        if took > TIMEOUT * 2 + Duration::from_secs(1) {
            failures.push(format!("{mode}: took {took:?}"));
        }
        let ok = match *mode {
            // A frame rewritten while it is read: whatever copy the broker
            // took, the answer is a typed error (a refusal or a protocol
            // error), never a panic or a hang.
            "rewrite" => results
                .iter()
                .all(|r| matches!(r, Err(Error::Refused { .. }) | Err(Error::Protocol { .. }))),
            _ => is_protocol(last, words),
        };
        if !ok {
            failures.push(format!(
                "{mode}: expected a protocol error with {words:?}, got {results:?}"
            ));
        }
        // The broker killed the vault and wiped what it had not read.
        if matches!(last, Err(Error::Protocol { .. })) && watch.data_nonzero() != 0 {
            failures.push(format!(
                "{mode}: {} bytes left in the ring after the failure",
                watch.data_nonzero()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_silent_vault_times_out_and_a_dying_one_is_reported() {
    let (results, took, _) = attack("silent");
    assert!(
        matches!(results[0], Err(Error::Timeout { .. })),
        "{results:?}"
    );
    assert!(
        took >= TIMEOUT && took < TIMEOUT + Duration::from_secs(2),
        "{took:?}"
    );
    let (results, took, _) = attack("exit");
    assert!(
        matches!(
            results[0],
            Err(Error::VaultDied {
                exit: broker::VaultExit::Exited(3),
                ..
            })
        ),
        "{results:?}"
    );
    assert!(took < TIMEOUT, "the exit was noticed after {took:?}");
}

#[test]
fn a_bad_public_key_at_start_up_is_refused() {
    let err = Broker::spawn(evil("bad-public-key")).unwrap_err();
    assert!(matches!(err, Error::PublicKey(_)), "{err:?}");
}

#[test]
fn an_honest_peer_in_the_same_harness_works() {
    // Positive control: the evil vault's default mode refuses decryption
    // honestly; the broker reports a refusal, not a protocol error.
    let (results, _, watch) = attack("none");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(Error::Refused { .. }))),
        "{results:?}"
    );
    assert_eq!(watch.data_nonzero(), 0, "both sides wiped what they read");
}
