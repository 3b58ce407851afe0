//! Where the private key lives, found from the outside with only the public
//! modulus: the vault's memory is searched for numbers that divide n (how
//! OpenSSL stores the primes: little-endian 64-bit limbs), d, dp, dq and
//! qinv are derived from them, and all six are searched in both byte orders.
//! Every copy must lie inside the secure heap's arena (the mlocked,
//! dont-dump anonymous mapping between two guard pages); the copies found
//! there are the positive control.

use openssl::bn::{BigNum, BigNumContext, BigNumRef};

use suites::driver::{canary, Driver};
use suites::scan::{self, Memory, Region};

/// The arena: an anonymous read-write mapping of exactly `size` bytes,
/// locked and dont-dump, between two inaccessible guard pages.
fn arena(mem: &Memory, size: u64) -> Region {
    let rs = &mem.regions;
    let found: Vec<&Region> = rs
        .iter()
        .enumerate()
        .filter(|(i, r)| {
            r.len() == size
                && r.path.is_empty()
                && r.perms.starts_with("rw")
                && r.has_flag("lo")
                && r.has_flag("dd")
                && *i > 0
                && rs[i - 1].perms.starts_with("---")
                && rs[i - 1].end == r.start
                && rs
                    .get(i + 1)
                    .is_some_and(|n| n.perms.starts_with("---") && n.start == r.end)
        })
        .map(|(_, r)| r)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one secure-heap arena of {size} bytes: {found:?}"
    );
    found[0].clone()
}

fn le(bytes_be: &[u8]) -> Vec<u8> {
    bytes_be.iter().rev().copied().collect()
}

/// Searches the memory for factors of `n` of `bytes` length, stored as
/// little-endian limbs (OpenSSL's BIGNUM) or big-endian.
fn factors(mem: &Memory, n: &BigNumRef, bytes: usize) -> Vec<BigNum> {
    let mut ctx = BigNumContext::new().unwrap();
    let mut found: Vec<BigNum> = Vec::new();
    let mut rem = BigNum::new().unwrap();
    for b in &mem.bytes {
        let mut off = 0;
        while off + bytes <= b.len() {
            let w = &b[off..off + bytes];
            // An RSA prime is odd and has its top bit set.
            for be in [false, true] {
                let (low, high) = if be {
                    (w[bytes - 1], w[0])
                } else {
                    (w[0], w[bytes - 1])
                };
                if low & 1 == 0 || high & 0x80 == 0 {
                    continue;
                }
                let cand = if be {
                    BigNum::from_slice(w).unwrap()
                } else {
                    BigNum::from_slice(&le(w)).unwrap()
                };
                rem.checked_rem(n, &cand, &mut ctx).unwrap();
                if rem.num_bits() == 0 && cand.num_bits() > 64 && !found.iter().any(|f| f == &cand)
                {
                    found.push(cand);
                }
            }
            off += 8;
        }
    }
    found
}

struct Private {
    numbers: Vec<(String, BigNum)>,
}

fn derive(n: &BigNumRef, e: &BigNumRef, p: &BigNumRef, q: &BigNumRef) -> Private {
    let mut ctx = BigNumContext::new().unwrap();
    let one = BigNum::from_u32(1).unwrap();
    let mut p1 = BigNum::new().unwrap();
    p1.checked_sub(p, &one).unwrap();
    let mut q1 = BigNum::new().unwrap();
    q1.checked_sub(q, &one).unwrap();
    let mut phi = BigNum::new().unwrap();
    phi.checked_mul(&p1, &q1, &mut ctx).unwrap();
    let mut g = BigNum::new().unwrap();
    g.gcd(&p1, &q1, &mut ctx).unwrap();
    let mut lambda = BigNum::new().unwrap();
    lambda.checked_div(&phi, &g, &mut ctx).unwrap();
    let mut numbers = vec![
        ("p".to_owned(), p.to_owned().unwrap()),
        ("q".to_owned(), q.to_owned().unwrap()),
    ];
    // OpenSSL may take d modulo lambda(n) or phi(n): look for both.
    for (tag, m) in [("d (mod lambda)", &lambda), ("d (mod phi)", &phi)] {
        let mut d = BigNum::new().unwrap();
        d.mod_inverse(e, m, &mut ctx).unwrap();
        let mut dp = BigNum::new().unwrap();
        dp.nnmod(&d, &p1, &mut ctx).unwrap();
        let mut dq = BigNum::new().unwrap();
        dq.nnmod(&d, &q1, &mut ctx).unwrap();
        numbers.push((tag.to_owned(), d));
        numbers.push(("dp".to_owned(), dp));
        numbers.push(("dq".to_owned(), dq));
    }
    for (tag, a, m) in [("qinv (q^-1 mod p)", q, p), ("qinv (p^-1 mod q)", p, q)] {
        let mut inv = BigNum::new().unwrap();
        inv.mod_inverse(a, m, &mut ctx).unwrap();
        numbers.push((tag.to_owned(), inv));
    }
    let _ = n;
    Private { numbers }
}

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
        let arena_size: u64 = status.rsplit(' ').next().unwrap().parse().unwrap();
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
