//! Lints and compiles `sandbox-policies/broker.json` into BPF at build time;
//! the `broker` program installs it once the vault is running.

use std::env;
use std::path::PathBuf;

fn main() {
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    policy::compile::embed(
        &root.join("../sandbox-policies/broker.json"),
        "broker",
        &out,
        &arch,
    );
}
