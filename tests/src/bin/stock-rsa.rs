//! The key-locality suite's positive control: the vault's key code with the
//! protection of this change turned off, in a process of its own. The key
//! is generated into a real secure heap exactly as the vault does it, but
//! OpenSSL keeps its ordinary allocator, so the Montgomery caches of p and q
//! (copies of p and q, R^2 mod p, R^2 mod q) and every temporary land in the
//! ordinary heap. A scan that cannot find them here would prove nothing
//! about the vault.
//!
//! `stock-rsa BITS`: prints `ready ARENA_SIZE HEX_DER` once the key exists
//! and 200 private operations have run, then waits for its stdin to close.

use std::io::Read;

fn main() {
    let bits: u32 = std::env::args()
        .nth(1)
        .and_then(|b| b.parse().ok())
        .unwrap_or(2048);
    let kb = vault::key::KeyBits::from_bits(bits).expect("2048, 3072 or 4096");
    let arena = 1 << 20;
    vault::heap::init(arena, 16).expect("secure heap");
    let key = vault::key::Key::generate(kb, arena, 16).expect("key");
    for _ in 0..200 {
        key.warm_up().expect("private operation");
    }
    let der = key.public_der().expect("der");
    let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
    println!("ready {arena} {hex}");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(key);
}
