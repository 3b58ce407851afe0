//! The secret-memory suite's probe of the arena move
//! (`vault::secret_arena::place`) in a process of its own, single-threaded
//! as the vault is when it moves its arena: OpenSSL's allocator and secure
//! heap set up as the vault does, then the move asked for ranges that are
//! not exactly the arena (each must be refused by the range checks, the
//! arena left as it was and working), then for the arena itself (it must
//! move onto secret memory and work there). One line per step on stdout:
//!
//! ```text
//! wrong START-END: refused: REASON | moved
//! auto on a wrong range: fell back: REASON | ...
//! arena works: true|false
//! arena START-END: Secret | error
//! arena works: true|false
//! ```

use vault::secret_arena::{place, Setting};

fn works() -> bool {
    // An OpenSSL big number, its limbs from the arena, written and read.
    let Ok(mut bn) = openssl::bn::BigNum::new() else {
        return false;
    };
    bn.set_bit(2000).is_ok() && bn.num_bits() == 2001
}

fn main() {
    vault::alloc::install().expect("the vault's allocator, first thing");
    let size = 1 << 20;
    vault::heap::init(size, 16).expect("secure heap");
    let (a, b) = vault::alloc::record_arena(size).expect("arena");
    // OpenSSL's start allocates its locks: seen by their file name.
    openssl::init();
    for (x, y) in [(a + 4096, b), (a, b - 4096), (a - 4096, b), (a, b + 4096)] {
        match place(x, y, Setting::Require) {
            Err(e) => println!("wrong {x:#x}-{y:#x}: refused: {e}"),
            Ok(p) => println!("wrong {x:#x}-{y:#x}: {p:?}"),
        }
    }
    match place(a + 4096, b, Setting::Auto) {
        Ok(vault::secret_arena::Placement::OrdinaryFallback(why)) => {
            println!("auto on a wrong range: fell back: {why}")
        }
        other => println!("auto on a wrong range: {other:?}"),
    }
    println!("arena works: {}", works());
    match place(a, b, Setting::Require) {
        Ok(p) => println!("arena {a:#x}-{b:#x}: {p:?}"),
        Err(e) => println!("arena {a:#x}-{b:#x}: error {e}"),
    }
    println!("arena works: {}", works());
}
