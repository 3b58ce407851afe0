//! Where the private key lives, found from the outside with only the public
//! modulus: the vault's memory is searched for numbers that divide n (how
//! OpenSSL stores the primes: little-endian 64-bit limbs), d, dp, dq and
//! qinv are derived from them, and all six are searched in both byte orders.
//! Every copy must lie inside the secure heap's arena (the mlocked,
//! dont-dump anonymous mapping between two guard pages); the copies found
//! there are the positive control.

use openssl::bn::{BigNum, BigNumContext, BigNumRef};

use suites::driver::{canary, Driver};
use suites::keys::{arena, derive, factors, le};
use suites::scan;

/// Scans the vault and checks every copy of every private number.
fn check_locality(d: &Driver, n: &BigNumRef, e: &BigNumRef, arena_size: u64, when: &str) {
    let mem = scan::read(d.vault).unwrap();
    let arena = arena(&mem, arena_size);
    let half = usize::try_from(n.num_bytes()).unwrap() / 2;
    let f = factors(&mem, n, half);
    assert!(
        f.len() >= 2,
        "{when}: the primes were not found in the vault's memory (scanner broken?)"
    );
    let (p, q) = (&f[0], &f[1]);
    let mut ctx = BigNumContext::new().unwrap();
    let mut pq = BigNum::new().unwrap();
    pq.checked_mul(p, q, &mut ctx).unwrap();
    assert!(&pq == n, "{when}: p * q != n");
    let private = derive(n, e, p, q);
    let mut inside: std::collections::BTreeMap<String, usize> = Default::default();
    let mut outside = Vec::new();
    for (name, v) in &private.numbers {
        let be = v.to_vec();
        for (order, needle) in [("big-endian", be.clone()), ("little-endian", le(&be))] {
            for (addr, region) in mem.find(&needle) {
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
        }
    }
    assert!(
        outside.is_empty(),
        "{when}: private numbers outside the secure heap:\n{}",
        outside.join("\n")
    );
    // Positive control: each number is found inside the arena.
    for name in ["p", "q", "dp", "dq"] {
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
