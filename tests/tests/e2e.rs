//! End to end through the real binaries: the broker library spawns the real
//! `vault` and every secret goes through the sandbox and the ring.

use std::time::{Duration, Instant};

use broker::{Broker, Error, VaultExit};
use suites::{config, secret};

#[test]
fn broker_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Broker>();
}

#[test]
fn several_named_secrets_round_trip_many_times_then_delete_and_shutdown() {
    let b = Broker::spawn(config()).expect("spawn");
    let secrets: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| {
            (
                format!("secret-{i}"),
                format!("pässwörd-{i}-{}", "x".repeat(i * 30)).into_bytes(),
            )
        })
        .collect();
    for (name, value) in &secrets {
        b.store(name, secret(value)).expect("store");
    }
    assert_eq!(
        b.names(),
        secrets.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
    );
    for round in 0..40 {
        for (name, value) in &secrets {
            let ok = b
                .with_secret(name, |p| p == value.as_slice())
                .expect("with_secret");
            assert!(ok, "round {round}: {name} came back different");
        }
    }
    b.delete("secret-2").expect("delete");
    assert!(matches!(
        b.with_secret("secret-2", |_| ()),
        Err(Error::UnknownName { .. })
    ));
    assert!(matches!(
        b.delete("secret-2"),
        Err(Error::UnknownName { .. })
    ));
    assert_eq!(b.names().len(), 4);
    let status = b.heap_status().expect("status");
    assert_eq!(status.decrypts, 200);
    assert_eq!(
        status.wipes_verified, 200,
        "the vault wiped and verified every plaintext it wrote"
    );
    let exit = b.shutdown().expect("shutdown");
    assert_eq!(exit, VaultExit::Exited(0));
    assert!(matches!(
        b.with_secret("secret-0", |_| ()),
        Err(Error::ShutDown)
    ));
    assert!(matches!(b.shutdown(), Err(Error::ShutDown)));
}

#[test]
fn every_exchange_leaves_both_rings_wiped_and_the_broker_copy_wiped() {
    let b = Broker::spawn(config()).expect("spawn");
    b.store("pw", secret(b"correct horse battery staple"))
        .unwrap();
    for _ in 0..20 {
        let (n, ev) = b.with_secret_evidence("pw", |p| p.len()).unwrap();
        assert_eq!(n, 28);
        assert_eq!(
            ev.request_frame_residue,
            Some(0),
            "the vault left request bytes in the ring"
        );
        assert_eq!(ev.ring_residue, 0, "bytes left in the shared rings");
        assert_eq!(ev.broker_copy_residue, 0, "the broker's copy was not wiped");
    }
}

#[test]
fn unknown_names_and_bad_input_are_typed_errors() {
    let b = Broker::spawn(config()).expect("spawn");
    assert!(matches!(
        b.with_secret("nope", |_| ()),
        Err(Error::UnknownName { .. })
    ));
    assert!(matches!(
        b.store("", secret(b"x")),
        Err(Error::BadName { .. })
    ));
    assert!(matches!(
        b.store(&"n".repeat(129), secret(b"x")),
        Err(Error::BadName { .. })
    ));
    assert!(matches!(
        b.store("tab\tname", secret(b"x")),
        Err(Error::BadName { .. })
    ));
    assert!(matches!(
        b.store("empty", secret(b"")),
        Err(Error::EmptySecret)
    ));
    let direct = b.direct_secret_len();
    assert_eq!(
        direct, 190,
        "RSA-2048 with OAEP-SHA256 carries 256 - 66 bytes"
    );
    b.store("max", secret(&vec![0xA5; direct]))
        .expect("a secret at the direct limit fits");
    let limit = b.max_secret_len();
    assert_eq!(limit, 64 * 1024);
    let err = b.store("over", secret(&vec![0x5A; limit + 1])).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SecretTooLong {
                len: 65537,
                limit: 65536
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("the limit is 65536 bytes"),
        "{err}"
    );
    b.store("dup", secret(b"one")).unwrap();
    assert!(matches!(
        b.store("dup", secret(b"two")),
        Err(Error::NameExists { .. })
    ));
    assert_eq!(
        b.with_secret("dup", |p| p.to_vec()).unwrap(),
        b"one",
        "a refused store changes nothing"
    );
    assert_eq!(b.with_secret("max", |p| p.len()).unwrap(), direct);
    // NUL bytes and non-UTF-8 are just bytes.
    b.store("binary", secret(&[0, 0xff, 0xfe, 0, 1])).unwrap();
    assert_eq!(
        b.with_secret("binary", |p| p.to_vec()).unwrap(),
        [0, 0xff, 0xfe, 0, 1]
    );
}

#[test]
fn a_panicking_closure_leaves_the_broker_usable() {
    let b = Broker::spawn(config()).expect("spawn");
    b.store("pw", secret(b"hunter2")).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        b.with_secret("pw", |_| panic!("the application's closure panicked"))
            .unwrap();
    }));
    assert!(r.is_err());
    assert_eq!(b.with_secret("pw", |p| p.to_vec()).unwrap(), b"hunter2");
}

#[test]
fn secure_heap_verification_holds_for_every_key_size() {
    for bits in [2048u32, 3072, 4096] {
        let b = Broker::spawn(broker::Config {
            key_bits: bits,
            ..config()
        })
        .expect("spawn");
        let s = b.heap_status().expect("status");
        assert!(s.initialized, "{bits}: secure heap not initialised");
        assert_eq!(s.key_bits, bits);
        assert_eq!(
            s.secure_flags, 0b11_1111,
            "{bits}: a private number lacks BN_FLG_SECURE"
        );
        assert_eq!(
            s.in_arena, 0b11_1111,
            "{bits}: a private number's limbs are outside the arena"
        );
        assert!(
            s.baseline > s.used_before_keygen,
            "{bits}: key generation did not grow the secure heap: {s:?}"
        );
        assert!(s.used >= s.baseline);
        assert!(s.verified());
        assert_eq!(
            b.direct_secret_len(),
            usize::try_from(bits / 8).unwrap() - 66
        );
        b.store("pw", secret(b"x")).unwrap();
        assert_eq!(b.with_secret("pw", |p| p.to_vec()).unwrap(), b"x");
    }
}

#[test]
fn bad_options_are_refused_before_the_vault_runs_openssl() {
    let err = Broker::spawn(broker::Config {
        key_bits: 1024,
        ..config()
    })
    .unwrap_err();
    assert!(matches!(err, Error::KeyBits { bits: 1024 }), "{err:?}");
    let err = Broker::spawn(broker::Config {
        heap_size: Some(65535),
        ..config()
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::VaultDied {
                exit: VaultExit::Exited(78),
                ..
            }
        ),
        "{err:?}"
    );
    let err = Broker::spawn(broker::Config {
        heap_size: Some(16384),
        ..config()
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::VaultDied {
                exit: VaultExit::Exited(78),
                ..
            }
        ),
        "arena too small for the key: {err:?}"
    );
    // The vault's own explanation reaches the caller, through the drained
    // standard error pipe, as its last message.
    assert!(
        err.to_string()
            .contains("its last message: \"checking the secure heap size: secure heap of 16384 bytes is too small for a 2048-bit key"),
        "{err}"
    );
    let err = Broker::spawn(broker::Config {
        vault_path: Some("/nonexistent/vault".into()),
        ..config()
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("vault binary /nonexistent/vault not found"),
        "{err}"
    );
}

fn kill(pid: u32, sig: i32) {
    // SAFETY: sending a signal to the vault we spawned.
    assert_eq!(unsafe { libc::kill(i32::try_from(pid).unwrap(), sig) }, 0);
}

#[test]
fn the_broker_tells_how_the_vault_died() {
    let cases = [
        (libc::SIGSYS, "killed by the sandbox (SIGSYS)"),
        // Not SIGSEGV: a SIGSEGV sent by kill(2) is absorbed by std's stack-overflow
        // handler, which only resets the action for a real fault to kill.
        (libc::SIGABRT, "crashed (SIGABRT)"),
        (libc::SIGKILL, "killed (SIGKILL)"),
    ];
    for (sig, words) in cases {
        let b = Broker::spawn(config()).expect("spawn");
        b.store("pw", secret(b"x")).unwrap();
        let pid = b.vault_pid();
        kill(pid, sig);
        // The signal is asynchronous: a lane thread may still answer a
        // request in the instant before the process dies. Wait for the
        // death itself (the zombie), then ask.
        suites::wait_for_state(pid, 'Z');
        let start = Instant::now();
        let err = b.with_secret("pw", |_| ()).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "noticed the death late: {:?}",
            start.elapsed()
        );
        assert!(
            matches!(err, Error::VaultDied { exit: VaultExit::Signaled(s), .. } if s == sig),
            "{err:?}"
        );
        assert!(err.to_string().contains(words), "{err} lacks {words:?}");
        // Once dead, every call says so, without hanging.
        assert!(matches!(b.heap_status(), Err(Error::VaultDied { .. })));
    }
}

#[test]
fn a_stopped_vault_times_out_and_is_killed() {
    let b = Broker::spawn(broker::Config {
        request_timeout: Duration::from_millis(500),
        ..config()
    })
    .expect("spawn");
    b.store("pw", secret(b"x")).unwrap();
    kill(b.vault_pid(), libc::SIGSTOP);
    suites::wait_for_state(b.vault_pid(), 'T');
    let start = Instant::now();
    let err = b.with_secret("pw", |_| ()).unwrap_err();
    let took = start.elapsed();
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
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(
        err.to_string()
            .contains("and was stopped: killed (SIGKILL)"),
        "{err}"
    );
}

#[test]
fn sigterm_to_the_vault_ends_it_cleanly() {
    let b = Broker::spawn(config()).expect("spawn");
    kill(b.vault_pid(), libc::SIGTERM);
    let start = Instant::now();
    while b.vault_exit().is_none() && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        b.vault_exit(),
        Some(VaultExit::Exited(0)),
        "the vault wipes and exits 0 on SIGTERM"
    );
}

#[test]
fn the_vault_runs_sandboxed_without_privileges() {
    let b = Broker::spawn(config()).expect("spawn");
    b.store("pw", secret(b"x")).unwrap();
    b.with_secret("pw", |_| ()).unwrap();
    let pid = b.vault_pid();
    suites::assert_sandboxed(pid);
    // Positive control: the test runner itself (root) does have capabilities,
    // so the checks above would notice a vault that kept them.
    let me = std::process::id();
    assert_ne!(
        suites::proc_status_field(me, "CapBnd").as_deref(),
        Some("0000000000000000")
    );
    assert_eq!(
        suites::proc_status_field(me, "Seccomp").as_deref(),
        Some("0")
    );
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = stat.rsplit(')').next().unwrap();
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // After the comm: state is field 3 of stat, utime 14 and stime 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn an_idle_vault_sleeps_instead_of_spinning() {
    let b = Broker::spawn(config()).expect("spawn");
    b.store("pw", secret(b"x")).unwrap();
    b.with_secret("pw", |_| ()).unwrap();
    let pid = b.vault_pid();
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - before;
    // A spinning vault would use close to 2 s (2 * hz ticks) here; a sleeping
    // one wakes four times a second and uses next to nothing.
    assert!(
        used * 10 < hz,
        "the idle vault used {used} ticks of CPU in 2 s (hz {hz})"
    );
    // Positive control: the same measure sees a busy process. It spins
    // until the measure shows the tenth of a second of CPU that the vault
    // stayed under (however long a loaded machine takes to grant it).
    let me = std::process::id();
    let start = cpu_ticks(me);
    let t0 = Instant::now();
    let mut x = 0u64;
    while (cpu_ticks(me) - start) * 10 < hz {
        for _ in 0..1_000_000 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the measure did not see a busy loop"
        );
    }
}

#[test]
fn dropping_the_broker_shuts_the_vault_down() {
    let b = Broker::spawn(config()).expect("spawn");
    let pid = b.vault_pid();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(b);
    // Drop reaped it: the pid is gone, not a zombie.
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the vault outlived its broker handle"
    );
}

#[test]
fn a_vault_that_does_not_answer_shutdown_gets_sigterm_then_sigkill() {
    let grace = Duration::from_millis(300);
    let b = Broker::spawn(broker::Config {
        shutdown_grace: grace,
        ..config()
    })
    .expect("spawn");
    // A stopped vault neither answers nor acts on SIGTERM.
    kill(b.vault_pid(), libc::SIGSTOP);
    suites::wait_for_state(b.vault_pid(), 'T');
    let start = Instant::now();
    let exit = b.shutdown().expect("shutdown reports how the vault ended");
    let took = start.elapsed();
    assert_eq!(exit, VaultExit::Signaled(libc::SIGKILL));
    assert!(
        took >= grace * 2 && took < Duration::from_secs(5),
        "ask, then SIGTERM, each given the grace: {took:?}"
    );
}

#[test]
fn both_processes_run_without_core_files() {
    let b = Broker::spawn(config()).expect("spawn");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", b.vault_pid())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");
    assert_eq!(core.split_whitespace().nth(5), Some("0"), "{core}");
}

#[test]
fn large_secrets_travel_in_envelopes_up_to_64_kib() {
    let b = Broker::spawn(config()).expect("spawn");
    let sizes = [191, 1000, 4096, 40_000, 64 * 1024];
    let values: Vec<Vec<u8>> = sizes
        .iter()
        .map(|&n| {
            (0..n)
                .map(|i| u8::try_from((i * 7 + n) % 256).unwrap())
                .collect()
        })
        .collect();
    for (n, v) in sizes.iter().zip(&values) {
        b.store(&format!("s{n}"), secret(v)).unwrap();
    }
    for _ in 0..5 {
        for (n, v) in sizes.iter().zip(&values) {
            assert!(
                b.with_secret(&format!("s{n}"), |p| p == v.as_slice())
                    .unwrap(),
                "{n} bytes came back different"
            );
        }
    }
    let (len, ev) = b.with_secret_evidence("s65536", |p| p.len()).unwrap();
    assert_eq!(len, 65536);
    assert!(ev.all_wiped(), "{ev:?}");
    let s = b.heap_status().unwrap();
    assert_eq!((s.decrypts, s.wipes_verified), (26, 26));
    assert!(
        s.verified(),
        "the arena is back to its baseline after 64 KiB plaintexts: {s:?}"
    );
}

#[test]
fn more_secrets_than_the_maximum_are_refused() {
    let b = Broker::spawn(broker::Config {
        max_secrets: 3,
        ..config()
    })
    .unwrap();
    for i in 0..3 {
        b.store(&format!("s{i}"), secret(b"x")).unwrap();
    }
    let err = b.store("s3", secret(b"x")).unwrap_err();
    assert!(matches!(err, Error::TooManySecrets { limit: 3 }), "{err:?}");
    b.delete("s0").unwrap();
    b.store("s3", secret(b"x"))
        .expect("room again after a delete");
}

#[test]
fn a_full_arena_fails_each_request_cleanly_and_the_vault_goes_on() {
    // Positive control first: the same secret reads back with room.
    let b = Broker::spawn(config()).expect("spawn");
    b.store("pw", secret(b"ARENA-CONTROL")).unwrap();
    assert_eq!(
        b.with_secret("pw", <[u8]>::to_vec).unwrap(),
        b"ARENA-CONTROL"
    );
    b.shutdown().unwrap();
    // The vault takes every free block of its arena once it has warmed up.
    let b = Broker::spawn(broker::Config {
        vault_args: vec!["--selftest".into(), "fill-arena".into()],
        ..config()
    })
    .expect("spawn");
    b.store("pw", secret(b"ARENA-FULL")).unwrap();
    for _ in 0..3 {
        let err = b.with_secret("pw", |_| ()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Refused {
                    code: common::protocol::ErrorCode::ArenaFull,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("no room for this request"),
            "{err}"
        );
    }
    // It goes on answering, says what it refused, and ends cleanly.
    let s = b.heap_status().unwrap();
    assert!(s.refused > 0 && s.used == s.arena_size, "{s:?}");
    assert!(s.verified(), "{s:?}");
    assert_eq!(s.decrypts, 0);
    assert_eq!(b.shutdown().unwrap(), VaultExit::Exited(0));
}

/// Starts `residue-driver ARGS` with RLIMIT_MEMLOCK at `limit` bytes;
/// returns its first line and its standard error.
fn driver_with_memlock(limit: usize, args: &[&str]) -> (String, String, Option<u32>) {
    use std::io::{BufRead, Read};
    use std::os::unix::process::CommandExt;
    let lim = libc::rlim_t::try_from(limit).unwrap();
    let mut cmd = std::process::Command::new(suites::binary("residue-driver"));
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit between fork and exec, on a live local.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: lim,
                rlim_max: lim,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let vault = line
        .trim()
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok());
    let threads = vault.map(|v| u32::try_from(suites::threads(v).len()).unwrap());
    drop(child.stdin.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    child.wait().unwrap();
    (line, err, threads)
}

#[test]
fn a_memory_lock_limit_too_small_shrinks_the_default_lanes_or_names_the_figure() {
    use common::budget::{default_arena, vault_needs};
    let one = vault_needs(default_arena(1), 1);
    let two = vault_needs(default_arena(2), 2);
    assert!(one < two);
    // Too small for even one lane: refused before anything starts, with the
    // exact figure to raise the limit to.
    let (line, err, _) = driver_with_memlock(one - 4096, &[]);
    assert!(!line.starts_with("ready"), "{line}");
    assert!(
        err.contains("RLIMIT_MEMLOCK allows")
            && err.contains(&format!("ulimit -l {}", one.div_ceil(1024))),
        "{err}"
    );
    // Room for one lane, not two: the default shrinks to one lane.
    let (line, err, threads) = driver_with_memlock(two - 4096, &[]);
    assert!(line.starts_with("ready "), "{line}\n{err}");
    assert_eq!(threads, Some(2), "one lane thread beside the main one");
    // Two lanes asked for explicitly are not shrunk: refused, with the figure.
    let (line, err, _) = driver_with_memlock(two - 4096, &["--lanes", "2"]);
    assert!(!line.starts_with("ready"), "{line}");
    assert!(
        err.contains(&format!("ulimit -l {}", two.div_ceil(1024))),
        "{err}"
    );
    // Positive control: with the room, two lanes.
    let (line, err, threads) = driver_with_memlock(two, &["--lanes", "2"]);
    assert!(line.starts_with("ready "), "{line}\n{err}");
    assert_eq!(threads, Some(3));
}
