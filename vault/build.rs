//! Lints and compiles `sandbox-policies/vault.json` into BPF at build time
//! (enforcing and learning variants). The vault embeds the programs, so a
//! policy that does not compile or breaks the lint breaks the build, and the
//! vault needs no JSON parser next to its key.

use std::env;
use std::path::PathBuf;

fn main() {
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    policy::compile::embed(
        &root.join("../sandbox-policies/vault.json"),
        "vault",
        &out,
        &arch,
    );
}
