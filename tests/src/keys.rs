//! Finding an RSA private key in a process's memory from its public key:
//! the primes (limbs that divide n), then every number derived from them.

use openssl::bn::{BigNum, BigNumContext, BigNumRef};

use crate::scan::{Memory, Region};

/// The arena: an anonymous read-write mapping of exactly `size` bytes,
/// locked and dont-dump, between two inaccessible guard pages.
pub fn arena(mem: &Memory, size: u64) -> Region {
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

pub fn le(bytes_be: &[u8]) -> Vec<u8> {
    bytes_be.iter().rev().copied().collect()
}

/// Searches the memory for factors of `n` of `bytes` length, stored as
/// little-endian limbs (OpenSSL's BIGNUM) or big-endian.
pub fn factors(mem: &Memory, n: &BigNumRef, bytes: usize) -> Vec<BigNum> {
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

/// The private numbers derived from p and q, with their names.
#[derive(Debug)]
pub struct Private {
    pub numbers: Vec<(String, BigNum)>,
}

pub fn derive(n: &BigNumRef, e: &BigNumRef, p: &BigNumRef, q: &BigNumRef) -> Private {
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
