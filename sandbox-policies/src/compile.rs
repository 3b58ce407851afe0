//! Build-time compilation of a policy into BPF, for `build.rs` scripts.
//!
//! [`embed`] reads a policy, refuses it if the lint finds anything, compiles
//! it with seccompiler in three modes and writes the programs to `OUT_DIR`:
//! `NAME-enforce.bpf` (the policy as written: kill the process), and the two
//! learning modes `NAME-trap.bpf` (SIGSYS to a handler that names the call)
//! and `NAME-log.bpf` (the kernel logs the call and lets it through), plus
//! `NAME-overlay.bpf` for the overlay filter `NAME-errno` if the file has one
//! (empty otherwise; see [`crate::lint::OVERLAY_SUFFIX`]). A BPF
//! instruction is stored as 8 little-endian bytes: code u16, jt u8, jf u8,
//! k u32.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use seccompiler::{BpfProgram, TargetArch};

use crate::{lint, model};

/// The three compiled variants of a policy.
pub const MODES: [(&str, &str); 3] = [
    ("enforce", "kill_process"),
    ("trap", "trap"),
    ("log", "log"),
];

/// Compiles filter `name` of `json` with its mismatch action replaced by
/// `mismatch` (a seccompiler action string), into BPF bytes.
pub fn compile(json: &str, name: &str, mismatch: &str, arch: &str) -> Result<Vec<u8>, String> {
    let mut value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let filter = value
        .get_mut(name)
        .ok_or_else(|| format!("no filter named {name:?}"))?;
    filter["mismatch_action"] = serde_json::Value::String(mismatch.to_owned());
    let text = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
    let arch =
        TargetArch::try_from(arch).map_err(|e| format!("unsupported target arch {arch}: {e:?}"))?;
    let programs: HashMap<String, BpfProgram> =
        seccompiler::compile_from_json(text.as_slice(), arch).map_err(|e| e.to_string())?;
    let prog = programs
        .get(name)
        .ok_or_else(|| format!("no filter named {name:?}"))?;
    let mut bytes = Vec::with_capacity(prog.len() * 8);
    for insn in prog {
        bytes.extend_from_slice(&insn.code.to_le_bytes());
        bytes.push(insn.jt);
        bytes.push(insn.jf);
        bytes.extend_from_slice(&insn.k.to_le_bytes());
    }
    Ok(bytes)
}

/// For `build.rs`: lint, compile and write the three variants of filter
/// `name` from `policy` into `out_dir`. Panics (failing the build) with every
/// finding when the policy is refused.
pub fn embed(policy: &Path, name: &str, out_dir: &Path, arch: &str) {
    println!("cargo:rerun-if-changed={}", policy.display());
    let json = fs::read_to_string(policy)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", policy.display()));
    let filters = model::parse(&json).unwrap_or_else(|e| panic!("{}: {e}", policy.display()));
    if !filters.iter().any(|f| f.name == name) {
        panic!("{} has no filter named {name:?}", policy.display());
    }
    let findings = lint::lint_set(&filters);
    if !findings.is_empty() {
        let list: Vec<String> = findings.iter().map(|f| format!("  - {f}")).collect();
        panic!(
            "{} breaks the policy lint:\n{}",
            policy.display(),
            list.join("\n")
        );
    }
    for (mode, action) in MODES {
        let bytes = compile(&json, name, action, arch)
            .unwrap_or_else(|e| panic!("{} does not compile ({mode}): {e}", policy.display()));
        let out = out_dir.join(format!("{name}-{mode}.bpf"));
        fs::write(&out, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
    }
    // The overlay (if any) is compiled as written: allow by default, an
    // errno for its calls. Without one, an empty file.
    let overlay_name = format!("{name}{}", lint::OVERLAY_SUFFIX);
    let overlay = if filters.iter().any(|f| f.name == overlay_name) {
        compile(&json, &overlay_name, "allow", arch).unwrap_or_else(|e| {
            panic!(
                "{} does not compile ({overlay_name}): {e}",
                policy.display()
            )
        })
    } else {
        Vec::new()
    };
    let out = out_dir.join(format!("{name}-overlay.bpf"));
    fs::write(&out, overlay).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}

/// The whole `build.rs` of a program that embeds filter `name` from
/// `sandbox-policies/FILE`: paths and target from cargo's environment.
pub fn build_script(file: &str, name: &str) {
    let var = |v: &str| std::env::var(v).unwrap_or_else(|_| panic!("cargo sets {v}"));
    let root = std::path::PathBuf::from(var("CARGO_MANIFEST_DIR"));
    let out = std::path::PathBuf::from(var("OUT_DIR"));
    embed(
        &root.join("../sandbox-policies").join(file),
        name,
        &out,
        &var("CARGO_CFG_TARGET_ARCH"),
    );
}

/// For `build.rs`: writes the syscall table as Rust source (`SYSCALL_NAMES`)
/// so a runtime without this crate can name a refused call.
pub fn write_syscall_names(out: &Path) {
    let mut src = String::from("/// (number, name) of the system calls the build's kernel headers list.\npub static SYSCALL_NAMES: &[(u32, &str)] = &[\n");
    for (name, nr) in crate::syscalls::SYSCALLS {
        src.push_str(&format!("    ({nr}, {name:?}),\n"));
    }
    src.push_str("];\n");
    fs::write(out, src).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = r#"{"t": {"mismatch_action": "kill_process", "match_action": "allow", "filter": [
        {"syscall": "read", "comment": "r"}]}}"#;

    #[test]
    fn the_modes_differ_only_in_the_default_action() {
        let kill = compile(P, "t", "kill_process", "x86_64").unwrap();
        let trap = compile(P, "t", "trap", "x86_64").unwrap();
        let log = compile(P, "t", "log", "x86_64").unwrap();
        assert_eq!(kill.len(), trap.len());
        assert_ne!(kill, trap);
        assert_ne!(trap, log);
        // SECCOMP_RET_KILL_PROCESS is 0x80000000, stored as a return's k.
        let ks: Vec<u32> = kill
            .chunks(8)
            .map(|c| u32::from_le_bytes([c[4], c[5], c[6], c[7]]))
            .collect();
        assert!(ks.contains(&0x8000_0000));
    }

    #[test]
    fn a_syscall_seccompiler_does_not_know_is_a_compile_error() {
        let bad = P.replace("\"read\"", "\"opne\"");
        assert!(compile(&bad, "t", "kill_process", "x86_64").is_err());
    }
}
