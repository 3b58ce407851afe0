//! Writes the system call name table used by the learning mode's SIGSYS
//! handler (`sandbox.rs`), from the kernel headers, through the policy crate.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("syscall_names.rs");
    policy::compile::write_syscall_names(&out);
}
