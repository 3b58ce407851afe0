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
//!
//! Run-time values: seccomp compares an argument with a constant, and a pid
//! is known only when the filter is installed. Before seccompiler sees the
//! policy, each `"val": "own_pid"` becomes a placeholder constant of its own
//! ([`PLACEHOLDER_BASE`] + n); after compiling, the instructions carrying
//! the placeholders are found (each must be a `BPF_JMP|BPF_JEQ|BPF_K` and
//! there must be exactly one per run-time condition, else the build fails:
//! a collision), their `k` is set to 0, and their indices are written next
//! to the program as `NAME-MODE.pid` (u32 little-endian each, ascending).
//! The program with those slots at 0 is the canonical form: deterministic,
//! and what a review or a published hash speaks of. `common::sandbox`
//! writes the installing process's pid into the listed slots.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use seccompiler::{BpfProgram, TargetArch};

use crate::{lint, model};

/// `BPF_JMP | BPF_JEQ | BPF_K`: the only instruction a run-time value may
/// sit in (an equality test of the loaded argument word with `k`).
pub const JEQ_K: u16 = 0x05 | 0x10;

/// The first placeholder constant; run-time condition n of a filter (in
/// file order) gets `PLACEHOLDER_BASE + n` until its slot is found. No
/// policy constant, action, offset or syscall number of this project is
/// near it; if one ever is, the build fails instead of patching it.
pub const PLACEHOLDER_BASE: u32 = 0x5ec0_d000;

/// One compiled filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The canonical program: 8 bytes per instruction, every run-time slot
    /// with `k` = 0.
    pub bpf: Vec<u8>,
    /// Indices of the instructions whose `k` is the installing process's
    /// pid (`"own_pid"`), ascending.
    pub pid_slots: Vec<u32>,
}

impl Program {
    /// The slot list as stored next to the program: u32 little-endian each.
    pub fn pid_slot_bytes(&self) -> Vec<u8> {
        self.pid_slots
            .iter()
            .flat_map(|i| i.to_le_bytes())
            .collect()
    }
}

/// Replaces each run-time value of `filter` (a filter object of the JSON)
/// with its placeholder, in file order; returns the placeholders given out.
/// Removes the fields seccompiler does not know ([`model::OWN_RULE_FIELDS`]).
fn substitute(filter: &mut serde_json::Value) -> Result<Vec<u32>, String> {
    let mut given = Vec::new();
    let rules = filter
        .get_mut("filter")
        .and_then(serde_json::Value::as_array_mut)
        .ok_or("filter must be a list of rules")?;
    for rule in rules {
        if let Some(obj) = rule.as_object_mut() {
            for field in model::OWN_RULE_FIELDS {
                obj.remove(field);
            }
        }
        let Some(args) = rule
            .get_mut("args")
            .and_then(serde_json::Value::as_array_mut)
        else {
            continue;
        };
        for cond in args {
            let Some(val) = cond.get_mut("val") else {
                continue;
            };
            if val.as_str() == Some(model::RuntimeValue::OwnPid.as_str()) {
                let n = u32::try_from(given.len()).map_err(|e| e.to_string())?;
                let placeholder = PLACEHOLDER_BASE
                    .checked_add(n)
                    .ok_or("too many run-time values")?;
                *val = serde_json::Value::from(placeholder);
                given.push(placeholder);
            }
        }
    }
    Ok(given)
}

/// Finds the instruction of each placeholder in `prog`, sets its `k` to 0
/// and returns the indices, ascending. Fails on anything but exactly one
/// `JEQ_K` per placeholder, and on a placeholder anywhere else.
fn locate(prog: &mut BpfProgram, placeholders: &[u32]) -> Result<Vec<u32>, String> {
    let mut slots = Vec::new();
    for (i, insn) in prog.iter_mut().enumerate() {
        if !placeholders.contains(&insn.k) {
            continue;
        }
        if insn.code != JEQ_K {
            return Err(format!(
                "collision: instruction {i} (code {:#06x}) carries the run-time placeholder {:#x}; \
                 only a BPF_JMP|BPF_JEQ|BPF_K may",
                insn.code, insn.k
            ));
        }
        if slots.iter().any(|&(_, k)| k == insn.k) {
            return Err(format!(
                "collision: the run-time placeholder {:#x} appears in more than one instruction \
                 (a policy constant equal to it?)",
                insn.k
            ));
        }
        slots.push((u32::try_from(i).map_err(|e| e.to_string())?, insn.k));
        insn.k = 0;
    }
    if slots.len() != placeholders.len() {
        return Err(format!(
            "collision: {} run-time condition(s) but {} instruction(s) carry their placeholders",
            placeholders.len(),
            slots.len()
        ));
    }
    Ok(slots.into_iter().map(|(i, _)| i).collect())
}

/// The three compiled variants of a policy.
pub const MODES: [(&str, &str); 3] = [
    ("enforce", "kill_process"),
    ("trap", "trap"),
    ("log", "log"),
];

/// Compiles filter `name` of `json` with its mismatch action replaced by
/// `mismatch` (a seccompiler action string), into its canonical program and
/// the slots of its run-time values.
pub fn compile(json: &str, name: &str, mismatch: &str, arch: &str) -> Result<Program, String> {
    // The strict reader first: it refuses a run-time value it does not know
    // or one compared with anything but eq.
    let filters = model::parse(json).map_err(|e| e.to_string())?;
    let runtime = filters
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| format!("no filter named {name:?}"))?
        .rules
        .iter()
        .flat_map(|r| &r.args)
        .filter(|c| c.runtime.is_some())
        .count();
    let mut value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let filter = value
        .get_mut(name)
        .ok_or_else(|| format!("no filter named {name:?}"))?;
    filter["mismatch_action"] = serde_json::Value::String(mismatch.to_owned());
    let placeholders = substitute(filter)?;
    if placeholders.len() != runtime {
        return Err(format!(
            "{runtime} run-time condition(s) read, {} substituted",
            placeholders.len()
        ));
    }
    // Other filters of the file keep their run-time values; seccompiler
    // compiles every filter of the file, so give them their placeholders too
    // (their programs are not used here).
    if let Some(all) = value.as_object_mut() {
        for (other, f) in all.iter_mut() {
            if other != name {
                substitute(f)?;
            }
        }
    }
    let text = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
    let arch =
        TargetArch::try_from(arch).map_err(|e| format!("unsupported target arch {arch}: {e:?}"))?;
    let programs: HashMap<String, BpfProgram> =
        seccompiler::compile_from_json(text.as_slice(), arch).map_err(|e| e.to_string())?;
    let mut prog = programs
        .get(name)
        .ok_or_else(|| format!("no filter named {name:?}"))?
        .clone();
    let pid_slots = locate(&mut prog, &placeholders)?;
    let mut bpf = Vec::with_capacity(prog.len() * 8);
    for insn in &prog {
        bpf.extend_from_slice(&insn.code.to_le_bytes());
        bpf.push(insn.jt);
        bpf.push(insn.jf);
        bpf.extend_from_slice(&insn.k.to_le_bytes());
    }
    Ok(Program { bpf, pid_slots })
}

/// The name of the one-rule filter [`namer`] builds.
const NAMER: &str = "rule-namer";

/// A filter that traps the calls rule `rule` (1-based, as `REVIEW.md`
/// numbers them) of filter `name` allows, and allows everything else.
///
/// Installed after a process's real filters, it takes exactly that rule's
/// calls away from them and hands them to a SIGSYS handler that names them
/// (trap is more restrictive than allow and errno, so it wins; everything
/// the policy refuses is still killed by the policy itself). The "every
/// rule is needed" suite runs each lifecycle with each rule taken away this
/// way, and must see the rule's call named.
pub fn namer(json: &str, name: &str, rule: usize, arch: &str) -> Result<Program, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let rules = value
        .get(name)
        .and_then(|f| f.get("filter"))
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| format!("no filter named {name:?}"))?;
    let one = rule
        .checked_sub(1)
        .and_then(|i| rules.get(i))
        .ok_or_else(|| format!("filter {name:?} has no rule {rule}"))?;
    let filter = serde_json::json!({ NAMER: {
        "mismatch_action": "allow",
        "match_action": "trap",
        "filter": [one],
    }});
    compile(&filter.to_string(), NAMER, "allow", arch)
}

fn write(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
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
        let prog = compile(&json, name, action, arch)
            .unwrap_or_else(|e| panic!("{} does not compile ({mode}): {e}", policy.display()));
        write(&out_dir.join(format!("{name}-{mode}.bpf")), &prog.bpf);
        write(
            &out_dir.join(format!("{name}-{mode}.pid")),
            &prog.pid_slot_bytes(),
        );
    }
    // The overlay (if any) is compiled as written: allow by default, an
    // errno for its calls. Without one, empty files.
    let overlay_name = format!("{name}{}", lint::OVERLAY_SUFFIX);
    let overlay = if filters.iter().any(|f| f.name == overlay_name) {
        compile(&json, &overlay_name, "allow", arch).unwrap_or_else(|e| {
            panic!(
                "{} does not compile ({overlay_name}): {e}",
                policy.display()
            )
        })
    } else {
        Program {
            bpf: Vec::new(),
            pid_slots: Vec::new(),
        }
    };
    write(&out_dir.join(format!("{name}-overlay.bpf")), &overlay.bpf);
    write(
        &out_dir.join(format!("{name}-overlay.pid")),
        &overlay.pid_slot_bytes(),
    );
    // One namer per rule of the filter and of its overlay, and the Rust
    // list of them (`NAME-namers.rs`) that `common::embedded_policy!`
    // includes.
    let mut list = String::from("&[\n");
    for f in filters
        .iter()
        .filter(|f| f.name == name || f.name == overlay_name)
    {
        for (i, r) in f.rules.iter().enumerate() {
            let rule = i + 1;
            let prog = namer(&json, &f.name, rule, arch).unwrap_or_else(|e| {
                panic!(
                    "{}: no namer for {} rule {rule}: {e}",
                    policy.display(),
                    f.name
                )
            });
            let stem = out_dir.join(format!("{}-name-{rule}", f.name));
            write(&stem.with_extension("bpf"), &prog.bpf);
            write(&stem.with_extension("pid"), &prog.pid_slot_bytes());
            list.push_str(&format!(
                "    ::common::sandbox::Namer {{ filter: {:?}, rule: {rule}, syscall: {:?}, program: \
                 ::common::sandbox::Embedded {{ bpf: include_bytes!({:?}), pid_slots: include_bytes!({:?}) }} }},\n",
                f.name,
                r.syscall,
                stem.with_extension("bpf").display().to_string(),
                stem.with_extension("pid").display().to_string(),
            ));
        }
    }
    list.push_str("]\n");
    write(&out_dir.join(format!("{name}-namers.rs")), list.as_bytes());
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
        let kill = compile(P, "t", "kill_process", "x86_64").unwrap().bpf;
        let trap = compile(P, "t", "trap", "x86_64").unwrap().bpf;
        let log = compile(P, "t", "log", "x86_64").unwrap().bpf;
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

    fn insns(bpf: &[u8]) -> Vec<(u16, u32)> {
        bpf.chunks(8)
            .map(|c| {
                (
                    u16::from_le_bytes([c[0], c[1]]),
                    u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect()
    }

    /// A tgkill pinned to the own pid (dword), and a made-up qword pin on
    /// another call, each also with a constant condition.
    fn pinned(pid: &str) -> String {
        format!(
            r#"{{"t": {{"mismatch_action": "kill_process", "match_action": "allow", "filter": [
            {{"syscall": "read", "comment": "r"}},
            {{"syscall": "tgkill", "comment": "abort", "args": [
                {{"index": 0, "type": "dword", "op": "eq", "val": {pid}, "comment": "itself"}},
                {{"index": 2, "type": "dword", "op": "eq", "val": 6, "comment": "SIGABRT"}}]}},
            {{"syscall": "kill", "comment": "k", "args": [
                {{"index": 0, "type": "qword", "op": "eq", "val": {pid}, "comment": "itself"}},
                {{"index": 1, "type": "dword", "op": "eq", "val": 0, "comment": "probe"}}]}}]}}}}"#
        )
    }

    #[test]
    fn run_time_slots_are_jeq_k_at_zero_and_patch_into_the_constant_program() {
        for (mode, action) in MODES {
            let prog = compile(&pinned("\"own_pid\""), "t", action, "x86_64").unwrap();
            assert_eq!(prog.pid_slots.len(), 2, "{mode}");
            assert!(prog.pid_slots.windows(2).all(|w| w[0] < w[1]));
            let ins = insns(&prog.bpf);
            for &s in &prog.pid_slots {
                let (code, k) = ins[usize::try_from(s).unwrap()];
                assert_eq!((code, k), (JEQ_K, 0), "{mode} slot {s}");
            }
            assert_eq!(
                prog.pid_slot_bytes().len(),
                4 * prog.pid_slots.len(),
                "u32 each"
            );
            // Writing a pid into the slots gives exactly the program of the
            // same policy with that pid as a constant.
            let constant = compile(&pinned("4242"), "t", action, "x86_64").unwrap();
            assert!(constant.pid_slots.is_empty());
            let mut patched = prog.bpf.clone();
            for &s in &prog.pid_slots {
                let at = usize::try_from(s).unwrap() * 8 + 4;
                patched[at..at + 4].copy_from_slice(&4242u32.to_le_bytes());
            }
            assert_eq!(patched, constant.bpf, "{mode}");
            // Deterministic: the canonical form does not change between runs.
            assert_eq!(
                compile(&pinned("\"own_pid\""), "t", action, "x86_64").unwrap(),
                prog
            );
        }
    }

    #[test]
    fn a_constant_equal_to_a_placeholder_fails_the_build() {
        // A policy constant equal to the first placeholder: two JEQs carry it.
        let clash = pinned("\"own_pid\"").replace(
            r#""val": 0, "comment": "probe""#,
            &format!(r#""val": {PLACEHOLDER_BASE}, "comment": "probe""#),
        );
        let e = compile(&clash, "t", "kill_process", "x86_64").unwrap_err();
        assert!(e.contains("collision"), "{e}");
        // The same placeholder as the k of a comparison other than JEQ.
        let clash = P.replace(
            r#"{"syscall": "read", "comment": "r"}"#,
            &format!(
                r#"{{"syscall": "read", "comment": "r", "args": [{{"index": 0, "type": "dword", "op": "ge", "val": {PLACEHOLDER_BASE}, "comment": "c"}}]}},
                {{"syscall": "tgkill", "comment": "a", "args": [{{"index": 0, "type": "dword", "op": "eq", "val": "own_pid", "comment": "p"}}]}}"#
            ),
        );
        let e = compile(&clash, "t", "kill_process", "x86_64").unwrap_err();
        assert!(e.contains("collision"), "{e}");
        // Without run-time values the constant is just a constant.
        let fine = P.replace(
            r#"{"syscall": "read", "comment": "r"}"#,
            &format!(
                r#"{{"syscall": "read", "comment": "r", "args": [{{"index": 0, "type": "dword", "op": "eq", "val": {PLACEHOLDER_BASE}, "comment": "c"}}]}}"#
            ),
        );
        assert!(compile(&fine, "t", "kill_process", "x86_64")
            .unwrap()
            .pid_slots
            .is_empty());
    }
}
