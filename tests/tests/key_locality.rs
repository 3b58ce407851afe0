//! Where the private key lives, found from the outside with only the public
//! modulus: the vault's memory is searched for numbers that divide n (how
//! OpenSSL stores the primes: little-endian 64-bit limbs), then d (mod
//! lambda(n) and mod phi(n)), dp, dq, qinv and the Montgomery constants
//! OpenSSL caches (R^2 mod p, R^2 mod q) are derived from them, and all are
//! searched in both byte orders. Every copy must lie inside the secure
//! heap's arena (the mlocked, dont-dump anonymous mapping between two guard
//! pages): at rest, and in samples taken while the vault is stopped in the
//! middle of decryptions on every lane (stacks included). The copies found
//! in the arena are one positive control; the other is the same key code
//! run with OpenSSL's ordinary allocator (`stock-rsa`), where the scan must
//! find the cached numbers outside.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use openssl::bn::{BigNum, BigNumContext, BigNumRef};

use suites::driver::{canary, Driver};
use suites::keys::{arena, derive, factors, le, Private};
use suites::scan::{self, Memory, Region};

/// The private numbers of the key whose public half is (n, e), found in
/// `pid`'s memory.
fn key_of(pid: u32, n: &BigNumRef, e: &BigNumRef, when: &str) -> Private {
    let mem = scan::read(pid).unwrap();
    let half = usize::try_from(n.num_bytes()).unwrap() / 2;
    let f = factors(&mem, n, half);
    assert!(
        f.len() >= 2,
        "{when}: the primes were not found in the process's memory (scanner broken?)"
    );
    let (p, q) = (&f[0], &f[1]);
    let mut ctx = BigNumContext::new().unwrap();
    let mut pq = BigNum::new().unwrap();
    pq.checked_mul(p, q, &mut ctx).unwrap();
    assert!(&pq == n, "{when}: p * q != n");
    derive(n, e, p, q)
}

/// Every copy of every number of `private` in `mem`: counts inside the
/// arena by name, and a description of each copy outside it.
fn copies(
    mem: &Memory,
    arena: &Region,
    private: &Private,
) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut inside: BTreeMap<String, usize> = Default::default();
    let mut outside = Vec::new();
    let mut needles = Vec::new();
    let mut labels = Vec::new();
    for (name, v) in &private.numbers {
        let be = v.to_vec();
        for (order, needle) in [("big-endian", be.clone()), ("little-endian", le(&be))] {
            needles.push(needle);
            labels.push((name.clone(), order));
        }
    }
    for (i, addr, region) in mem.find_many(&needles) {
        let (name, order) = &labels[i];
        if arena.contains(addr) {
            *inside.entry(name.clone()).or_default() += 1;
        } else {
            outside.push(format!(
                "{name} ({order}) at {addr:#x} in {} {} [{}]",
                region.perms,
                region.path,
                region.flags.join(" ")
            ));
        }
    }
    (inside, outside)
}

/// Scans the vault and checks every copy of every private number.
fn check_locality(d: &Driver, n: &BigNumRef, e: &BigNumRef, arena_size: u64, when: &str) {
    let private = key_of(d.vault, n, e, when);
    let mem = scan::read(d.vault).unwrap();
    let arena = arena(&mem, arena_size);
    let (inside, outside) = copies(&mem, &arena, &private);
    assert!(
        outside.is_empty(),
        "{when}: private numbers outside the secure heap:\n{}",
        outside.join("\n")
    );
    // Positive control: each number is found inside the arena (the
    // Montgomery constants too: every lane warmed up before serving).
    for name in ["p", "q", "dp", "dq", "R^2 mod p", "R^2 mod q"] {
        assert!(
            inside.get(name).copied().unwrap_or(0) >= 1,
            "{when}: {name} not found in the arena: {inside:?}"
        );
    }
    assert!(
        inside.keys().any(|k| k.starts_with("d (")),
        "{when}: d not found in the arena: {inside:?}"
    );
    assert!(
        inside.keys().any(|k| k.starts_with("qinv")),
        "{when}: qinv not found in the arena: {inside:?}"
    );
    // ... and none in the broker application either.
    let app = scan::read(d.pid()).unwrap();
    for (name, v) in private.numbers.iter().filter(|(n, _)| n == "p" || n == "q") {
        let be = v.to_vec();
        assert!(
            app.find(&be).is_empty() && app.find(&le(&be)).is_empty(),
            "{when}: {name} in the broker application"
        );
    }
}

#[test]
fn every_copy_of_the_private_key_lies_in_the_secure_heap() {
    for bits in ["2048", "4096"] {
        let mut d = Driver::start(None, &["--key-bits", bits], None);
        let der = d.public_key();
        let rsa = openssl::rsa::Rsa::public_key_from_der(&der).unwrap();
        let status = d.ask("status");
        let arena_size: u64 = status.split(' ').nth(3).unwrap().parse().unwrap();
        check_locality(
            &d,
            rsa.n(),
            rsa.e(),
            arena_size,
            &format!("RSA-{bits} after key generation"),
        );
        d.store(&canary("PW-"));
        let reads = if bits == "2048" { 2000 } else { 300 };
        for _ in 0..reads {
            d.send("read");
        }
        for _ in 0..reads {
            assert!(d.answer().starts_with("read "));
        }
        check_locality(
            &d,
            rsa.n(),
            rsa.e(),
            arena_size,
            &format!("RSA-{bits} after {reads} decryptions"),
        );
    }
}

/// Every thread of `pid` is stopped; returns how many were stopped in user
/// code (not inside a system call): caught computing.
fn stopped_threads_computing(pid: u32) -> usize {
    let mut computing = 0;
    for tid in suites::threads(pid) {
        let stat =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.trim_start().chars().next());
        assert!(
            matches!(state, Some('T') | Some('t')),
            "thread {tid} not stopped: {state:?}"
        );
        // "-1 SP PC" when stopped outside a system call.
        let sc =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).unwrap_or_default();
        if sc.starts_with("-1 ") {
            computing += 1;
        }
    }
    computing
}

fn wait_all_stopped(pid: u32) {
    let start = std::time::Instant::now();
    loop {
        let all = suites::threads(pid).into_iter().all(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()
                        .and_then(|r| r.trim_start().chars().next())
                })
                .is_some_and(|c| c == 'T' || c == 't')
        });
        if all {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the vault never stopped"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: signalling the vault this test's driver started.
    let r = unsafe { libc::kill(i32::try_from(pid).unwrap(), sig) };
    assert_eq!(r, 0);
}

#[test]
fn no_key_number_leaves_the_arena_even_in_the_middle_of_decryptions() {
    let mut d = Driver::start(None, &["--key-bits", "2048"], None);
    let der = d.public_key();
    let rsa = openssl::rsa::Rsa::public_key_from_der(&der).unwrap();
    let status = d.ask("status");
    let arena_size: u64 = status.split(' ').nth(3).unwrap().parse().unwrap();
    let private = key_of(d.vault, rsa.n(), rsa.e(), "at rest");
    d.store(&canary("MID-"));
    let mut samples = 0;
    let mut computing = 0;
    let mut seed = std::process::id();
    let mut failures = Vec::new();
    while computing < 20 && samples < 400 {
        // Every lane decrypting at once (eight readers on the lanes), and
        // a few samples during each batch.
        d.send("preads 8 50");
        for _ in 0..4 {
            // Sampling jitter (not a synchronisation): stop at varied points.
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            std::thread::sleep(Duration::from_micros(u64::from(seed % 2000)));
            signal(d.vault, libc::SIGSTOP);
            wait_all_stopped(d.vault);
            let busy = stopped_threads_computing(d.vault);
            let mem = scan::read_data(d.vault).unwrap();
            signal(d.vault, libc::SIGCONT);
            let arena = arena(&mem, arena_size);
            let (_, outside) = copies(&mem, &arena, &private);
            if !outside.is_empty() {
                failures.push(format!("sample {samples}: {}", outside.join("; ")));
            }
            samples += 1;
            if busy > 0 {
                computing += 1;
            }
        }
        let done = d.answer();
        assert!(done.starts_with("preads 8 50 "), "{done}");
    }
    assert!(
        failures.is_empty(),
        "key numbers outside the arena:\n{}",
        failures.join("\n")
    );
    // The samples must have caught the vault computing (a thread stopped in
    // user code, not waiting in a system call) many times.
    assert!(
        computing >= 20,
        "only {computing} of {samples} samples caught a thread in user code"
    );
    println!("{samples} samples, {computing} with a thread caught computing: no key number outside the arena");
}

#[test]
fn the_scan_finds_the_cached_numbers_outside_the_arena_without_the_allocator() {
    // Positive control: the vault's key code with OpenSSL's ordinary
    // allocator (what this project did before, with the cache on).
    let mut child = Command::new(suites::binary("stock-rsa"))
        .arg("2048")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut w = line.split_whitespace();
    assert_eq!(w.next(), Some("ready"), "{line}");
    let arena_size: u64 = w.next().unwrap().parse().unwrap();
    let hex = w.next().unwrap();
    let der: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let rsa = openssl::rsa::Rsa::public_key_from_der(&der).unwrap();
    let pid = child.id();
    let private = key_of(pid, rsa.n(), rsa.e(), "stock allocator");
    let mem = scan::read(pid).unwrap();
    let arena = arena(&mem, arena_size);
    let (inside, outside) = copies(&mem, &arena, &private);
    drop(child.stdin.take());
    child.wait().unwrap();
    for name in ["p", "q", "R^2 mod p", "R^2 mod q"] {
        assert!(
            outside.iter().any(|o| o.starts_with(&format!("{name} ("))),
            "{name} was not found outside the arena with the stock allocator: {outside:?}"
        );
    }
    // The key itself was still generated into the arena.
    assert!(inside.get("p").copied().unwrap_or(0) >= 1, "{inside:?}");
}
