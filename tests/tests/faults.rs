//! Faults: a vault killed or stuck mid-request, restarts, and many threads
//! at once. The caller always gets a typed error within the request timeout,
//! never a hang or a silently wrong answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::{Broker, Error, VaultExit};
use suites::{config, secret};

fn kill(pid: u32, sig: i32) {
    // SAFETY: signalling the vault this test spawned.
    assert_eq!(unsafe { libc::kill(i32::try_from(pid).unwrap(), sig) }, 0);
}

#[test]
fn a_vault_killed_mid_request_is_an_error_at_once_and_a_restart_reports_the_lost_secrets() {
    let b = Arc::new(
        Broker::spawn(broker::Config {
            request_timeout: Duration::from_secs(5),
            ..config()
        })
        .unwrap(),
    );
    b.store("kept-then-lost", secret(b"old secret")).unwrap();
    b.store("big", secret(&vec![7u8; 30_000])).unwrap();
    let old_fingerprint = b.fingerprint();
    // Hold the vault so the request is in flight, then kill it.
    let pid = b.vault_pid();
    kill(pid, libc::SIGSTOP);
    suites::wait_for_state(pid, 'T');
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let reader = {
        let b = b.clone();
        std::thread::spawn(move || {
            tid_tx.send(suites::gettid()).unwrap();
            let start = Instant::now();
            (
                b.with_secret("kept-then-lost", |p| p.to_vec()),
                start.elapsed(),
            )
        })
    };
    // In flight: the reader sent its request and sleeps on the ring's
    // futex for the answer the stopped vault cannot give.
    let tid = tid_rx.recv().unwrap();
    suites::wait_for_ring_waiter(std::process::id(), Some(tid));
    kill(pid, libc::SIGKILL);
    let (result, took) = reader.join().unwrap();
    assert!(
        matches!(
            result,
            Err(Error::VaultDied {
                exit: VaultExit::Signaled(libc::SIGKILL),
                ..
            })
        ),
        "{result:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "the death was noticed after {took:?}, the timeout is 5 s"
    );
    // A fresh vault, a fresh key: the old secrets are reported lost by name.
    let mut lost = b.restart().expect("restart");
    lost.sort();
    assert_eq!(lost, ["big", "kept-then-lost"]);
    assert_ne!(b.fingerprint(), old_fingerprint);
    assert_ne!(b.vault_pid(), pid);
    let err = b.with_secret("kept-then-lost", |p| p.to_vec()).unwrap_err();
    assert!(
        matches!(&err, Error::Lost { name } if name == "kept-then-lost"),
        "{err:?}"
    );
    assert!(err.to_string().contains("store it again"), "{err}");
    assert_eq!(b.lost_names().len(), 2);
    // Stored again, it works; the other stays lost.
    b.store("kept-then-lost", secret(b"new secret")).unwrap();
    assert_eq!(
        b.with_secret("kept-then-lost", |p| p.to_vec()).unwrap(),
        b"new secret"
    );
    assert_eq!(b.lost_names(), ["big"]);
    assert!(matches!(
        b.with_secret("big", |_| ()),
        Err(Error::Lost { .. })
    ));
}

#[test]
fn a_stuck_vault_times_out_is_killed_and_can_be_replaced() {
    let b = Broker::spawn(broker::Config {
        request_timeout: Duration::from_millis(400),
        ..config()
    })
    .unwrap();
    b.store("pw", secret(b"x")).unwrap();
    kill(b.vault_pid(), libc::SIGSTOP);
    suites::wait_for_state(b.vault_pid(), 'T');
    let start = Instant::now();
    let err = b.with_secret("pw", |_| ()).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(
            err,
            Error::Timeout {
                exit: VaultExit::Signaled(libc::SIGKILL),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(b.restart().unwrap(), ["pw"]);
    b.store("pw", secret(b"y")).unwrap();
    assert_eq!(b.with_secret("pw", |p| p.to_vec()).unwrap(), b"y");
}

#[test]
fn restarting_a_healthy_vault_shuts_it_down_first() {
    let b = Broker::spawn(config()).unwrap();
    let pid = b.vault_pid();
    assert!(b.restart().unwrap().is_empty());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the old vault still runs"
    );
    b.store("a", secret(b"a")).unwrap();
    assert_eq!(b.with_secret("a", |p| p.to_vec()).unwrap(), b"a");
}

#[test]
fn eight_threads_reading_at_once_get_correct_answers() {
    let b = Arc::new(Broker::spawn(config()).unwrap());
    let values: Vec<Vec<u8>> = (0..8)
        .map(|t| format!("secret of thread {t}: {}", "z".repeat(t * 20)).into_bytes())
        .collect();
    for (t, v) in values.iter().enumerate() {
        b.store(&format!("t{t}"), secret(v)).unwrap();
    }
    b.store("shared-big", secret(&vec![3u8; 5000])).unwrap();
    let reads = 1500;
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let b = b.clone();
            let mine = values[t].clone();
            std::thread::spawn(move || {
                for i in 0..reads {
                    let ok = if i % 10 == 0 {
                        b.with_secret("shared-big", |p| {
                            p.len() == 5000 && p.iter().all(|&x| x == 3)
                        })
                        .unwrap()
                    } else {
                        b.with_secret(&format!("t{t}"), |p| p == mine.as_slice())
                            .unwrap()
                    };
                    assert!(ok, "thread {t} read {i} came back wrong");
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    for h in handles {
        assert!(Instant::now() < deadline, "deadlock?");
        h.join().expect("a reader thread failed");
    }
    let s = b.heap_status().unwrap();
    assert_eq!(s.decrypts, 8 * reads);
    assert_eq!(s.wipes_verified, 8 * reads);
}

#[test]
fn a_broker_spawned_on_a_short_lived_thread_keeps_its_vault() {
    // The parent-death signal follows the thread that forked the vault; the
    // broker forks from a thread of its own, so the caller's thread may end.
    let b = std::thread::spawn(|| Broker::spawn(config()).unwrap())
        .join()
        .unwrap();
    b.store("pw", secret(b"x")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        b.vault_exit(),
        None,
        "the vault ended with its spawning thread"
    );
    assert_eq!(b.with_secret("pw", |p| p.to_vec()).unwrap(), b"x");
    // And dropping the broker still ends the vault.
    let pid = b.vault_pid();
    drop(b);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}
