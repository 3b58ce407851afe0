//! Finding an RSA private key in a process's memory from its public key:
//! the primes (limbs that divide n), then every number derived from them.

use openssl::bn::{BigNum, BigNumContext, BigNumRef};

use crate::scan::{Memory, Region};

/// The arena: `size` bytes of anonymous, locked, dont-dump memory between
/// two inaccessible guard pages. Inside it, the vault's thread stacks each
/// have an inaccessible page of their own (`vault::arena_thread`), so the
/// arena may show as several adjacent mappings: they are merged.
pub fn arena(mem: &Memory, size: u64) -> Region {
    let rs = &mem.regions;
    let arena_like = |r: &Region| r.path.is_empty() && r.has_flag("lo") && r.has_flag("dd");
    let mut found: Vec<Region> = Vec::new();
    let mut i = 0;
    while i < rs.len() {
        if !arena_like(&rs[i]) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j + 1 < rs.len() && arena_like(&rs[j + 1]) && rs[j + 1].start == rs[j].end {
            j += 1;
        }
        let (first, last) = (&rs[i], &rs[j]);
        let guarded = i > 0
            && rs[i - 1].perms.starts_with("---")
            && rs[i - 1].end == first.start
            && rs
                .get(j + 1)
                .is_some_and(|n| n.perms.starts_with("---") && n.start == last.end);
        if guarded && last.end - first.start == size && first.perms.starts_with("rw") {
            let mut merged = first.clone();
            merged.end = last.end;
            found.push(merged);
        }
        i = j + 1;
    }
    assert_eq!(
        found.len(),
        1,
        "expected exactly one secure-heap arena of {size} bytes: {found:?}"
    );
    found.remove(0)
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
    // The Montgomery constants OpenSSL caches for p and q (BN_MONT_CTX):
    // R^2 mod m, with R = 2^ri and ri the bit length of m rounded up to
    // whole 64-bit words.
    for (tag, m) in [("R^2 mod p", p), ("R^2 mod q", q)] {
        let ri = (m.num_bits() + 63) / 64 * 64;
        let mut r2 = BigNum::new().unwrap();
        r2.set_bit(2 * ri).unwrap();
        let mut rr = BigNum::new().unwrap();
        rr.nnmod(&r2, m, &mut ctx).unwrap();
        numbers.push((tag.to_owned(), rr));
    }
    let _ = n;
    Private { numbers }
}
