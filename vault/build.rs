//! Compiles `sandbox-policies/vault.json` into a BPF program at build time.
//!
//! The vault embeds the compiled program (`include_bytes!`), so a policy that
//! does not compile breaks the build instead of the vault at run time, and the
//! vault itself needs no JSON parser next to its key.

use std::collections::HashMap;
use std::env;
use std::fs;
use std::path::PathBuf;

use seccompiler::{BpfProgram, TargetArch};

fn main() {
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let policy = root.join("../sandbox-policies/vault.json");
    println!("cargo:rerun-if-changed={}", policy.display());
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let arch = TargetArch::try_from(arch.as_str())
        .unwrap_or_else(|e| panic!("unsupported target arch {arch}: {e:?}"));
    let json =
        fs::read(&policy).unwrap_or_else(|e| panic!("cannot read {}: {e}", policy.display()));
    let filters: HashMap<String, BpfProgram> =
        seccompiler::compile_from_json(json.as_slice(), arch)
            .unwrap_or_else(|e| panic!("{} does not compile: {e}", policy.display()));
    let prog = filters
        .get("vault")
        .unwrap_or_else(|| panic!("{} has no filter named \"vault\"", policy.display()));
    let mut bytes = Vec::with_capacity(prog.len() * 8);
    for insn in prog {
        bytes.extend_from_slice(&insn.code.to_le_bytes());
        bytes.push(insn.jt);
        bytes.push(insn.jf);
        bytes.extend_from_slice(&insn.k.to_le_bytes());
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("vault.bpf");
    fs::write(&out, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
