//! The check behind `policy verify`: do the filters a process holds say
//! what the reviewed JSON says?
//!
//! Three answers per filter, each from a different place:
//! - **identity**: the program the kernel holds, with its run-time pid
//!   slots set to 0, compared byte for byte with the program compiled from
//!   the JSON (the canonical form `REVIEW.md` hashes), and the pid values
//!   found in those slots compared with the process's own pid;
//! - **hash**: the SHA-256 of that canonical form, to compare with the line
//!   `sha256 <name>: <hex>` of `REVIEW.md`;
//! - **meaning**: the kernel's program run by [`crate::bpf`] (an
//!   interpreter written from the kernel's definitions, not from the
//!   compiler) over every system call number of x86_64 below 1024, their
//!   x32 aliases, other architectures, the boundary values of every
//!   argument a rule names, and every value the program itself compares a
//!   word with ([`crate::bpf::comparisons`]: a number, an argument, an
//!   architecture or an instruction pointer the JSON never mentions), each
//!   against what the JSON says for the same call ([`json_result`], read
//!   from the [`crate::model`] of the file, not from the program). A
//!   program that computes on what it loads in any way but masking, which
//!   such an evaluation could not cover, fails the check. A compiler bug,
//!   a stale build or a planted filter shows up here even where the bytes
//!   were never expected to match. (What it does not cover: a decision on
//!   two words at once that the JSON does not make, e.g. "arg3 is X and
//!   arg4 is Y"; the byte comparison is what rules that out.)
//!
//! The reading of the filters from a live process is in [`crate::live`].

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use crate::bpf::{self, Insn, SeccompData};
use crate::compile::{self, Program, JEQ_K};
use crate::model::{Action, Filter, Op, Width};
use crate::{lint, model, syscalls};

/// The system call numbers evaluated for each architecture value: every
/// number the x86_64 table has (up to 547 today) and the unassigned ones
/// after it, up to here.
pub const NR_LIMIT: u32 = 1024;

/// Architecture values other than x86_64 that a call may carry: i386 (an
/// `int 0x80` from a 64-bit process), aarch64, 0 and all ones.
const OTHER_ARCHES: [(u32, &str); 4] = [
    (bpf::AUDIT_ARCH_I386, "i386"),
    (0xc000_00b7, "aarch64"),
    (0, "arch 0"),
    (u32::MAX, "arch 0xffffffff"),
];

/// One filter the policy says a process holds, in the order it installs them.
#[derive(Debug, Clone)]
pub struct ExpectedFilter {
    /// Its name in the JSON (`vault`, `vault-errno`, ...).
    pub name: String,
    /// The file it is read from, for messages.
    pub file: String,
    /// The rules as the JSON writes them (the enforcing meaning).
    pub model: Filter,
    /// The enforcing program compiled from the JSON (canonical: pid slots 0).
    pub enforce: Program,
    /// The learning-mode programs (`trap`, `log`) of a primary filter: a
    /// process started with `--sandbox-learning` holds one of them.
    pub learning: Vec<(&'static str, Program)>,
}

/// The policy a process of kind `process` (`vault` or `broker`) installs,
/// from `dir` (the `sandbox-policies` directory): the overlay
/// (`NAME-errno`) first, then the primary, as `common::sandbox::install`
/// does.
pub fn expected(dir: &Path, process: &str) -> Result<Vec<ExpectedFilter>, String> {
    let file = format!("{process}.json");
    if !crate::POLICY_FILES.contains(&file.as_str()) {
        return Err(format!(
            "no policy for {process:?}: the policies are {}",
            crate::POLICY_FILES.join(", ")
        ));
    }
    let path = dir.join(&file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let filters = model::parse(&text).map_err(|e| format!("{file}: {e}"))?;
    let overlay = format!("{process}{}", lint::OVERLAY_SUFFIX);
    let mut out = Vec::new();
    for name in [overlay.as_str(), process] {
        let Some(model) = filters.iter().find(|f| f.name == name) else {
            if name == overlay {
                continue;
            }
            return Err(format!("{file} has no filter {name:?}"));
        };
        let is_overlay = name == overlay;
        let mismatch = if is_overlay { "allow" } else { "kill_process" };
        let arch = "x86_64";
        let enforce = compile::compile(&text, name, mismatch, arch)?;
        let mut learning = Vec::new();
        if !is_overlay {
            for (mode, action) in compile::MODES {
                if mode != "enforce" {
                    learning.push((mode, compile::compile(&text, name, action, arch)?));
                }
            }
        }
        out.push(ExpectedFilter {
            name: name.to_owned(),
            file: file.clone(),
            model: model.clone(),
            enforce,
            learning,
        });
    }
    Ok(out)
}

/// A filter as the kernel holds it for one thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The program, 8 bytes per instruction (`PTRACE_SECCOMP_GET_FILTER`).
    pub bpf: Vec<u8>,
    /// `PTRACE_SECCOMP_GET_METADATA`'s flags (only `SECCOMP_FILTER_FLAG_LOG`
    /// is reported by the kernel).
    pub flags: u64,
}

/// The `SECCOMP_RET_*` value of a JSON action.
pub fn ret_of(action: Action) -> u32 {
    match action {
        Action::Allow => bpf::RET_ALLOW,
        Action::Errno(n) => bpf::RET_ERRNO | (n & bpf::RET_DATA),
        Action::KillThread => bpf::RET_KILL_THREAD,
        Action::KillProcess => bpf::RET_KILL_PROCESS,
        Action::Log => bpf::RET_LOG,
        Action::Trap => bpf::RET_TRAP,
        Action::Trace(n) => bpf::RET_TRACE | (n & bpf::RET_DATA),
    }
}

/// What the JSON filter `f` says for the call `data` in a process whose pid
/// is `pid`: a call of another architecture ends the process (the filters
/// are written for x86_64 alone); a call with a listed number whose rule's
/// conditions all hold gets the match action; anything else the mismatch
/// action. `mismatch` replaces the filter's own (a learning mode).
pub fn json_result(f: &Filter, mismatch: Option<Action>, data: &SeccompData, pid: u32) -> u32 {
    if data.arch != bpf::AUDIT_ARCH_X86_64 {
        return bpf::RET_KILL_PROCESS;
    }
    let name = syscalls::name(data.nr);
    if f.rules
        .iter()
        .any(|r| Some(r.syscall.as_str()) == name && conditions_hold(r, data, pid))
    {
        ret_of(f.match_action)
    } else {
        ret_of(mismatch.unwrap_or(f.mismatch_action))
    }
}

/// Whether every condition of rule `r` holds for the arguments of `data`
/// in a process whose pid is `pid` (its system call is not compared).
pub fn conditions_hold(r: &model::Rule, data: &SeccompData, pid: u32) -> bool {
    r.args.iter().all(|c| {
        data.args
            .get(usize::from(c.index))
            .is_some_and(|&a| c.holds_for(a, pid))
    })
}

/// The values worth trying for an argument that conditions compare with:
/// each constant, its neighbours, the same low word with other high words
/// (a dword comparison must ignore them, a qword one must not), masks with
/// one bit more or less, and the extremes.
fn boundary_values(conds: &[&model::Condition], pid: u32) -> BTreeSet<u64> {
    let mut v: BTreeSet<u64> = [0, 1, u64::from(u32::MAX), 1 << 32, u64::MAX, u64::MAX - 1]
        .into_iter()
        .collect();
    for c in conds {
        let val = if c.runtime.is_some() {
            u64::from(pid)
        } else {
            c.val
        };
        for x in [val, val.wrapping_sub(1), val.wrapping_add(1)] {
            v.insert(x);
            v.insert(x | 0xffff_ffff_0000_0000);
            v.insert(x ^ (1 << 32));
            if c.width == Width::Dword {
                v.insert(x & 0xffff_ffff);
            }
        }
        if let Op::MaskedEq(m) = c.op {
            v.insert(m);
            v.insert(val | m);
            v.insert(val & !m);
            // One bit of the mask flipped at a time, and one bit outside it.
            for bit in 0..64 {
                let b = 1u64 << bit;
                if m & b != 0 {
                    v.insert(val ^ b);
                }
            }
            let outside = !m & val.wrapping_add(1).max(1);
            v.insert(val | outside);
        }
    }
    v
}

/// At most this many argument vectors per system call: the product of the
/// boundary values of the arguments named is far below it for every rule
/// of this project; past it, each argument varies alone.
const MAX_VECTORS: usize = 200_000;

/// The argument vectors to evaluate for system call `nr` under filters
/// `filters`: every combination of the boundary values of the arguments
/// any rule for `nr` names (the others 0), plus all-zero and all-ones.
pub fn vectors(filters: &[&Filter], nr: u32, pid: u32) -> Vec<[u64; 6]> {
    let name = syscalls::name(nr);
    let conds: Vec<&model::Condition> = filters
        .iter()
        .flat_map(|f| &f.rules)
        .filter(|r| Some(r.syscall.as_str()) == name)
        .flat_map(|r| &r.args)
        .collect();
    let mut per_index: Vec<(usize, Vec<u64>)> = Vec::new();
    for index in 0..6u8 {
        let here: Vec<&model::Condition> =
            conds.iter().copied().filter(|c| c.index == index).collect();
        if !here.is_empty() {
            let vals = boundary_values(&here, pid).into_iter().collect();
            per_index.push((usize::from(index), vals));
        }
    }
    let mut out = vec![[0u64; 6], [u64::MAX; 6]];
    let product = per_index
        .iter()
        .try_fold(1usize, |acc, (_, v)| acc.checked_mul(v.len()))
        .unwrap_or(usize::MAX);
    if product <= MAX_VECTORS {
        let mut combos = vec![[0u64; 6]];
        for (i, vals) in &per_index {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    vals.iter().map(move |&v| {
                        let mut c = c;
                        c[*i] = v;
                        c
                    })
                })
                .collect();
        }
        out.extend(combos);
    } else {
        for (i, vals) in &per_index {
            for &v in vals {
                let mut c = [0u64; 6];
                c[*i] = v;
                out.push(c);
            }
        }
    }
    out
}

/// Every call [`evaluate`] tries: each number below [`NR_LIMIT`] under
/// x86_64 with its argument vectors, the same with the x32 bit set, a few
/// numbers far out (negative ones included), and every number under the
/// other architecture values with all-zero arguments.
///
/// `compared` are the comparisons the programs under check make
/// ([`bpf::comparisons`]): each constant and its neighbours is tried at its
/// word too, so a decision a program makes that the JSON does not (a
/// number, an argument, an architecture or an instruction pointer of its
/// own) is reached: with the system call numbers it compares, for every
/// number, with each of the other words set alone.
pub fn calls(filters: &[&Filter], pid: u32, compared: &[(u32, u32)]) -> Vec<SeccompData> {
    let mut out = Vec::new();
    let mut nrs: BTreeSet<u32> = (0..NR_LIMIT)
        .chain([0x3fff_ffff, 0x7fff_ffff, 0x8000_0000, u32::MAX])
        .collect();
    let mut arches: BTreeSet<u32> = OTHER_ARCHES.iter().map(|(a, _)| *a).collect();
    // Single-word variations: (offset, value) beyond the JSON's own.
    let mut words: BTreeSet<(u32, u32)> = BTreeSet::new();
    for &(off, k) in compared {
        for v in [k, k.wrapping_sub(1), k.wrapping_add(1)] {
            match off {
                0 => {
                    nrs.insert(v);
                }
                4 => {
                    arches.insert(v);
                }
                _ => {
                    words.insert((off, v));
                }
            }
        }
    }
    arches.remove(&bpf::AUDIT_ARCH_X86_64);
    for &nr in &nrs {
        let mut base = vectors(filters, nr, pid);
        for &(off, v) in &words {
            let mut d = SeccompData::x86_64(nr, [0; 6]);
            if set_word(&mut d, off, v) {
                base.push(d.args);
                if d.instruction_pointer != 0 {
                    out.push(d);
                }
            }
        }
        for args in base {
            out.push(SeccompData::x86_64(nr, args));
            if nr < NR_LIMIT {
                out.push(SeccompData::x86_64(nr | bpf::X32_SYSCALL_BIT, args));
            }
        }
    }
    for arch in arches {
        for nr in 0..NR_LIMIT {
            out.push(SeccompData {
                arch,
                ..SeccompData::x86_64(nr, [0; 6])
            });
        }
    }
    out
}

/// Sets the word at byte offset `off` of `d` to `v` (the instruction
/// pointer's or an argument's half); false for nr, arch or past the end.
fn set_word(d: &mut SeccompData, off: u32, v: u32) -> bool {
    let put = |x: &mut u64, high: bool| {
        if high {
            *x = (*x & 0xffff_ffff) | (u64::from(v) << 32);
        } else {
            *x = (*x & !0xffff_ffff) | u64::from(v);
        }
    };
    match off {
        8 | 12 => put(&mut d.instruction_pointer, off == 12),
        16..=60 if off % 4 == 0 => {
            let Ok(i) = usize::try_from((off - 16) / 8) else {
                return false;
            };
            match d.args.get_mut(i) {
                Some(a) => put(a, (off - 16) % 8 == 4),
                None => return false,
            }
        }
        _ => return false,
    }
    true
}

/// A call on which the kernel's program and the JSON disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disagreement {
    pub call: SeccompData,
    /// What the program the kernel holds returns (or why it could not run).
    pub kernel: Result<u32, bpf::Fault>,
    /// What the JSON says.
    pub json: u32,
}

/// A call in words: `getuid (102)`, `x32 read (0x40000000)`,
/// `i386 nr 1`, with the arguments that are not 0.
pub fn describe_call(d: &SeccompData) -> String {
    let mut s = if d.arch == bpf::AUDIT_ARCH_X86_64 {
        let base = d.nr & !bpf::X32_SYSCALL_BIT;
        let x32 = d.nr & bpf::X32_SYSCALL_BIT != 0 && d.nr < bpf::X32_SYSCALL_BIT + NR_LIMIT;
        match (x32, syscalls::name(if x32 { base } else { d.nr })) {
            (true, Some(n)) => format!("x32 {n} ({:#x})", d.nr),
            (true, None) => format!("x32 nr {:#x}", d.nr),
            (false, Some(n)) => format!("{n} ({})", d.nr),
            (false, None) => format!("nr {} ({:#x})", d.nr, d.nr),
        }
    } else {
        let arch = OTHER_ARCHES
            .iter()
            .find(|(a, _)| *a == d.arch)
            .map_or_else(|| format!("arch {:#x}", d.arch), |(_, n)| (*n).to_owned());
        format!("{arch} nr {}", d.nr)
    };
    let args: Vec<String> = d
        .args
        .iter()
        .enumerate()
        .filter(|(_, &a)| a != 0)
        .map(|(i, a)| format!("arg{i}={a:#x}"))
        .collect();
    if !args.is_empty() {
        let _ = write!(s, " {}", args.join(" "));
    }
    s
}

/// The result of running one program over [`calls`].
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// How many calls were evaluated.
    pub calls: usize,
    /// Every call on which the program and the JSON disagree.
    pub disagreements: Vec<Disagreement>,
}

/// Runs `prog` over every call of [`calls`] and compares each result with
/// `json(call)`.
pub fn evaluate(
    prog: &[Insn],
    calls: &[SeccompData],
    json: impl Fn(&SeccompData) -> u32,
) -> Evaluation {
    let mut disagreements = Vec::new();
    for call in calls {
        let kernel = bpf::run(prog, call);
        let want = json(call);
        if kernel != Ok(want) {
            disagreements.push(Disagreement {
                call: *call,
                kernel,
                json: want,
            });
        }
    }
    Evaluation {
        calls: calls.len(),
        disagreements,
    }
}

/// How a held program relates to the program compiled from the JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Byte-identical once its pid slots are set to 0; the values found in
    /// the slots, in slot order.
    Enforcing { pids: Vec<u32> },
    /// Byte-identical to a learning-mode program (`trap` or `log`), not to
    /// the enforcing one.
    Learning { mode: &'static str, pids: Vec<u32> },
    /// Not the program compiled from the JSON.
    Different,
}

/// The pid values at `slots` of `prog` and the program with them set to 0,
/// if every slot is a `JEQ_K` inside the program.
pub fn canonical(prog: &[Insn], slots: &[u32]) -> Option<(Vec<Insn>, Vec<u32>)> {
    let mut out = prog.to_vec();
    let mut pids = Vec::new();
    for &s in slots {
        let insn = out.get_mut(usize::try_from(s).ok()?)?;
        if insn.code != JEQ_K {
            return None;
        }
        pids.push(insn.k);
        insn.k = 0;
    }
    Some((out, pids))
}

/// Compares `held` with the programs of `e`.
pub fn identity(held: &[Insn], e: &ExpectedFilter) -> Identity {
    let same = |p: &Program| -> Option<Vec<u32>> {
        let (canon, pids) = canonical(held, &p.pid_slots)?;
        (bpf::encode(&canon) == p.bpf).then_some(pids)
    };
    if let Some(pids) = same(&e.enforce) {
        return Identity::Enforcing { pids };
    }
    for (mode, p) in &e.learning {
        if let Some(pids) = same(p) {
            return Identity::Learning { mode, pids };
        }
    }
    Identity::Different
}

/// The SHA-256 `REVIEW.md` would show for `held` as filter `e`: of the
/// program with the enforcing program's pid slots set to 0 where they are
/// pid comparisons, else of the program as held.
pub fn published_hash(held: &[Insn], e: Option<&ExpectedFilter>) -> String {
    let canon = e
        .and_then(|e| canonical(held, &e.enforce.pid_slots))
        .map_or_else(|| held.to_vec(), |(c, _)| c);
    bpf::sha256_hex(&bpf::encode(&canon))
}

/// The check of one filter at one position of a process's stack.
#[derive(Debug, Clone)]
pub struct FilterCheck {
    /// Position in install order (0: installed first).
    pub position: usize,
    /// The filter the policy puts there, if any.
    pub expected: Option<String>,
    pub instructions: usize,
    pub hash: String,
    /// `None` when there is nothing to compare with (a filter past the
    /// policy's count) or the program could not be decoded.
    pub identity: Option<Identity>,
    pub flags: u64,
    /// `None` when nothing was expected here.
    pub meaning: Option<Evaluation>,
    /// The decoding failed (not whole instructions).
    pub undecodable: bool,
    /// Why the evaluation cannot cover the program, if it cannot: it
    /// computes on the data it loads ([`bpf::comparisons`]).
    pub uncoverable: Option<String>,
}

/// The check of one process (one thread's stack; the threads are compared
/// with each other by the caller).
#[derive(Debug, Clone)]
pub struct ProcessCheck {
    pub filters: Vec<FilterCheck>,
    /// The policy's filter count.
    pub expected_count: usize,
    /// The kernel's combination of every held filter against the JSON's
    /// combination of the policy's (most restrictive wins).
    pub combined: Evaluation,
    /// The process's own pid, which the pid slots must hold.
    pub pid: u32,
}

impl ProcessCheck {
    /// Whether the process holds exactly the reviewed enforcing programs,
    /// with its own pid in every slot, and their meaning is the JSON's.
    pub fn passed(&self) -> bool {
        self.filters.len() == self.expected_count
            && self.combined.disagreements.is_empty()
            && self.filters.iter().all(|f| {
                f.flags == 0
                    && !f.undecodable
                    && f.uncoverable.is_none()
                    && f.meaning
                        .as_ref()
                        .is_some_and(|m| m.disagreements.is_empty())
                    && matches!(&f.identity, Some(Identity::Enforcing { pids })
                        if pids.iter().all(|&p| p == self.pid))
            })
    }
}

/// Checks `held` (install order, oldest first) against `expected` for a
/// process whose pid is `pid`.
pub fn check(expected: &[ExpectedFilter], held: &[Held], pid: u32) -> ProcessCheck {
    let models: Vec<&Filter> = expected.iter().map(|e| &e.model).collect();
    let mut compared = Vec::new();
    let mut uncoverable = Vec::new();
    for h in held {
        let found = bpf::decode(&h.bpf)
            .ok_or_else(|| "not whole instructions".to_owned())
            .and_then(|p| bpf::comparisons(&p));
        match found {
            Ok(c) => {
                compared.extend(c);
                uncoverable.push(None);
            }
            Err(e) => uncoverable.push(Some(e)),
        }
    }
    let calls = calls(&models, pid, &compared);
    let mut filters = Vec::new();
    let mut programs = Vec::new();
    for (position, h) in held.iter().enumerate() {
        let e = expected.get(position);
        let Some(prog) = bpf::decode(&h.bpf) else {
            filters.push(FilterCheck {
                position,
                expected: e.map(|e| e.name.clone()),
                instructions: 0,
                hash: bpf::sha256_hex(&h.bpf),
                identity: None,
                meaning: None,
                flags: h.flags,
                undecodable: true,
                uncoverable: None,
            });
            programs.push(None);
            continue;
        };
        let identity = e.map(|e| identity(&prog, e));
        let meaning = e.map(|e| {
            let mismatch = match &identity {
                Some(Identity::Learning { mode: "trap", .. }) => Some(Action::Trap),
                Some(Identity::Learning { mode: "log", .. }) => Some(Action::Log),
                _ => None,
            };
            evaluate(&prog, &calls, |c| json_result(&e.model, mismatch, c, pid))
        });
        filters.push(FilterCheck {
            position,
            expected: e.map(|e| e.name.clone()),
            instructions: prog.len(),
            hash: published_hash(&prog, e),
            identity,
            meaning,
            flags: h.flags,
            undecodable: false,
            uncoverable: uncoverable.get(position).cloned().flatten(),
        });
        programs.push(Some(prog));
    }
    // The whole stack, as the kernel runs it, against the whole policy.
    let mut disagreements = Vec::new();
    for call in &calls {
        let kernel: Result<Vec<u32>, bpf::Fault> = programs
            .iter()
            .map(|p| {
                p.as_ref()
                    .map_or(Ok(bpf::RET_KILL_PROCESS), |p| bpf::run(p, call))
            })
            .collect();
        let kernel = kernel.map(|r| bpf::combine(&r));
        let json: Vec<u32> = expected
            .iter()
            .map(|e| json_result(&e.model, None, call, pid))
            .collect();
        let json = bpf::combine(&json);
        if kernel != Ok(json) {
            disagreements.push(Disagreement {
                call: *call,
                kernel,
                json,
            });
        }
    }
    ProcessCheck {
        filters,
        expected_count: expected.len(),
        combined: Evaluation {
            calls: calls.len(),
            disagreements,
        },
        pid,
    }
}

/// At most this many disagreements are listed per program (the count is
/// always given).
pub const SHOWN: usize = 12;

/// A result in the JSON's words, or the interpreter's fault.
fn result_words(r: &Result<u32, bpf::Fault>) -> String {
    match r {
        Ok(v) => bpf::describe(*v),
        Err(f) => format!("no result ({f})"),
    }
}

/// The disagreements of `e` in words, indented by `indent`.
pub fn render_disagreements(e: &Evaluation, indent: &str) -> String {
    let mut s = String::new();
    for d in e.disagreements.iter().take(SHOWN) {
        let _ = writeln!(
            s,
            "{indent}{}: the kernel's program says {}, the JSON says {}",
            describe_call(&d.call),
            result_words(&d.kernel),
            bpf::describe(d.json)
        );
    }
    if e.disagreements.len() > SHOWN {
        let _ = writeln!(s, "{indent}... and {} more", e.disagreements.len() - SHOWN);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
    }

    fn held(p: &Program, pid: u32) -> Held {
        let mut prog = bpf::decode(&p.bpf).unwrap();
        for &s in &p.pid_slots {
            prog[usize::try_from(s).unwrap()].k = pid;
        }
        Held {
            bpf: bpf::encode(&prog),
            flags: 0,
        }
    }

    #[test]
    fn the_compiled_policies_mean_what_the_json_says() {
        if !syscalls::available() {
            return;
        }
        for process in ["vault", "broker"] {
            let e = expected(&dir(), process).unwrap();
            assert_eq!(e.len(), 2, "{process}: overlay then primary");
            let pid = 4242;
            let stack: Vec<Held> = e.iter().map(|f| held(&f.enforce, pid)).collect();
            let c = check(&e, &stack, pid);
            for f in &c.filters {
                let m = f.meaning.as_ref().unwrap();
                assert!(
                    m.disagreements.is_empty(),
                    "{process}/{:?}:\n{}",
                    f.expected,
                    render_disagreements(m, "  ")
                );
                assert!(
                    m.calls > 4 * NR_LIMIT as usize,
                    "every number, x32, other arches"
                );
            }
            assert!(c.passed(), "{process}");
            // The pid written into the slots is found there; another pid
            // in them fails the check.
            let pids: Vec<_> = c.filters.iter().map(|f| f.identity.clone()).collect();
            assert!(pids
                .iter()
                .all(|i| matches!(i, Some(Identity::Enforcing { pids }) if pids.iter().all(|&p| p == pid))));
            assert!(
                !check(&e, &stack, pid + 1).passed(),
                "{process}: a foreign pid"
            );
        }
    }

    #[test]
    fn an_extra_allowed_call_is_reported_by_bytes_and_by_meaning() {
        if !syscalls::available() {
            return;
        }
        let path = dir().join("vault.json");
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        json["vault"]["filter"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"syscall": "getuid"}));
        let planted =
            compile::compile(&json.to_string(), "vault", "kill_process", "x86_64").unwrap();
        let e = expected(&dir(), "vault").unwrap();
        let stack = vec![held(&e[0].enforce, 7), held(&planted, 7)];
        let c = check(&e, &stack, 7);
        assert!(!c.passed());
        assert_eq!(c.filters[1].identity, Some(Identity::Different));
        let d = &c.filters[1].meaning.as_ref().unwrap().disagreements;
        let getuid = syscalls::number("getuid").unwrap();
        assert!(
            !d.is_empty() && d.iter().all(|d| d.call.nr == getuid),
            "{d:?}"
        );
        assert_eq!(d[0].kernel, Ok(bpf::RET_ALLOW));
        assert_eq!(d[0].json, bpf::RET_KILL_PROCESS);
        assert!(!c.combined.disagreements.is_empty());
        assert!(
            render_disagreements(c.filters[1].meaning.as_ref().unwrap(), "").contains(
                "getuid (102): the kernel's program says allow, the JSON says kill_process"
            )
        );
    }

    #[test]
    fn a_loosened_argument_is_found_at_its_boundary() {
        if !syscalls::available() {
            return;
        }
        // write allowed on fd 2 only in the JSON; a program that allows
        // fd 1 as well must disagree exactly there.
        let path = dir().join("vault.json");
        let text = std::fs::read_to_string(path).unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let rules = json["vault"]["filter"].as_array_mut().unwrap();
        rules.push(serde_json::json!({"syscall": "write", "args": [
            {"index": 0, "type": "dword", "op": "eq", "val": 1}]}));
        let planted =
            compile::compile(&json.to_string(), "vault", "kill_process", "x86_64").unwrap();
        let e = expected(&dir(), "vault").unwrap();
        let c = check(&e, &[held(&e[0].enforce, 9), held(&planted, 9)], 9);
        let d = &c.filters[1].meaning.as_ref().unwrap().disagreements;
        assert!(!d.is_empty());
        assert!(
            d.iter()
                .all(|d| d.call.nr == 1 && d.call.args[0] & 0xffff_ffff == 1),
            "{d:?}"
        );
    }

    /// The enforcing vault program with a block in front that allows every
    /// call when the word at `off` equals `k`.
    fn with_backdoor(e: &ExpectedFilter, pid: u32, off: u32, k: u32) -> Held {
        let mut prog = vec![
            Insn {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: off,
            },
            Insn {
                code: 0x15,
                jt: 0,
                jf: 1,
                k,
            },
            Insn {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: bpf::RET_ALLOW,
            },
        ];
        prog.extend(bpf::decode(&held(&e.enforce, pid).bpf).unwrap());
        Held {
            bpf: bpf::encode(&prog),
            flags: 0,
        }
    }

    #[test]
    fn a_decision_the_json_does_not_make_is_found_by_meaning() {
        if !syscalls::available() {
            return;
        }
        let e = expected(&dir(), "vault").unwrap();
        let pid = 31;
        // A number far out, a high half no rule reads, the instruction
        // pointer, an argument no rule names: each a way in that a
        // boundary-value evaluation of the JSON's own values alone missed.
        for (off, k, what) in [
            (0, 2000, "nr 2000"),
            (60, 1, "arg5's high half"),
            (8, 0xdead, "the instruction pointer"),
            (48, 0x1234, "arg4"),
        ] {
            let stack = vec![held(&e[0].enforce, pid), with_backdoor(&e[1], pid, off, k)];
            let c = check(&e, &stack, pid);
            let m = c.filters[1].meaning.as_ref().unwrap();
            assert!(!m.disagreements.is_empty(), "{what}: not found");
            assert!(!c.passed(), "{what}");
        }
    }

    #[test]
    fn a_program_that_computes_on_its_data_cannot_be_covered() {
        let e = expected(&dir(), "vault").unwrap();
        let mut prog = vec![
            Insn {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: 0,
            },
            // A += 1: the decision below is on nr + 1, not on a word.
            Insn {
                code: 0x04,
                jt: 0,
                jf: 0,
                k: 1,
            },
            Insn {
                code: 0x15,
                jt: 0,
                jf: 1,
                k: 2001,
            },
            Insn {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: bpf::RET_ALLOW,
            },
        ];
        prog.extend(bpf::decode(&held(&e[1].enforce, 5).bpf).unwrap());
        let stack = vec![
            held(&e[0].enforce, 5),
            Held {
                bpf: bpf::encode(&prog),
                flags: 0,
            },
        ];
        let c = check(&e, &stack, 5);
        assert!(c.filters[1]
            .uncoverable
            .as_deref()
            .is_some_and(|r| r.contains("computes on loaded data")));
        assert!(c.filters[0].uncoverable.is_none());
        assert!(!c.passed());
    }

    #[test]
    fn a_learning_program_is_named_as_such_and_does_not_pass() {
        let e = expected(&dir(), "broker").unwrap();
        let trap = &e[1].learning.iter().find(|(m, _)| *m == "trap").unwrap().1;
        let c = check(&e, &[held(&e[0].enforce, 5), held(trap, 5)], 5);
        assert!(matches!(
            c.filters[1].identity,
            Some(Identity::Learning { mode: "trap", .. })
        ));
        assert!(!c.passed());
    }

    #[test]
    fn a_missing_or_extra_filter_fails() {
        let e = expected(&dir(), "vault").unwrap();
        let one = vec![held(&e[1].enforce, 3)];
        assert!(!check(&e, &one, 3).passed());
        let three = vec![
            held(&e[0].enforce, 3),
            held(&e[1].enforce, 3),
            held(&e[1].enforce, 3),
        ];
        assert!(!check(&e, &three, 3).passed());
    }

    #[test]
    fn each_namer_traps_its_rule_s_calls_and_nothing_else() {
        if !syscalls::available() {
            return;
        }
        let pid = 777;
        for process in ["vault", "broker"] {
            let text = std::fs::read_to_string(dir().join(format!("{process}.json"))).unwrap();
            for e in expected(&dir(), process).unwrap() {
                let calls = calls(&[&e.model], pid, &[]);
                let nrs: Vec<Option<u32>> = e
                    .model
                    .rules
                    .iter()
                    .map(|r| syscalls::number(&r.syscall))
                    .collect();
                // For each call, the rules that allow it: at most one (the
                // rules of a filter are disjoint, so taking one away takes
                // away no call another rule allows).
                let allowed_by: Vec<Vec<usize>> = calls
                    .iter()
                    .map(|c| {
                        (0..nrs.len())
                            .filter(|&j| {
                                c.arch == bpf::AUDIT_ARCH_X86_64
                                    && nrs[j] == Some(c.nr)
                                    && conditions_hold(&e.model.rules[j], c, pid)
                            })
                            .collect()
                    })
                    .collect();
                for (c, by) in calls.iter().zip(&allowed_by) {
                    assert!(
                        by.len() <= 1,
                        "{}: {} allowed by rules {by:?}",
                        e.name,
                        describe_call(c)
                    );
                }
                for i in 0..e.model.rules.len() {
                    let namer = compile::namer(&text, &e.name, i + 1, "x86_64").unwrap();
                    let prog = bpf::decode(&held(&namer, pid).bpf).unwrap();
                    for (c, by) in calls.iter().zip(&allowed_by) {
                        let want = if by.contains(&i) {
                            bpf::RET_TRAP
                        } else if c.arch == bpf::AUDIT_ARCH_X86_64 {
                            bpf::RET_ALLOW
                        } else {
                            bpf::RET_KILL_PROCESS
                        };
                        assert_eq!(
                            bpf::run(&prog, c),
                            Ok(want),
                            "{} rule {}: {}",
                            e.name,
                            i + 1,
                            describe_call(c)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn calls_read_as_names() {
        if !syscalls::available() {
            return;
        }
        assert_eq!(
            describe_call(&SeccompData::x86_64(102, [0; 6])),
            "getuid (102)"
        );
        assert_eq!(
            describe_call(&SeccompData::x86_64(
                1 | bpf::X32_SYSCALL_BIT,
                [2, 0, 0, 0, 0, 0]
            )),
            "x32 write (0x40000001) arg0=0x2"
        );
        let i386 = SeccompData {
            arch: bpf::AUDIT_ARCH_I386,
            ..SeccompData::x86_64(1, [0; 6])
        };
        assert_eq!(describe_call(&i386), "i386 nr 1");
    }
}
