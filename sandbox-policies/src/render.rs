//! The review: each policy as a table a person can read, committed as
//! `sandbox-policies/REVIEW.md` so that every policy change shows up as a
//! readable diff (a test fails when the file is stale).

use std::fmt::Write;

use crate::compile::{self, Program};
use crate::decode::{self, Decoder};
use crate::lint::OVERLAY_SUFFIX;
use crate::model::{Action, Condition, Filter, Op, RuntimeValue, Width};
use crate::{bpf, syscalls};

fn arg_label(syscall: &str, c: &Condition) -> (String, Decoder) {
    let (name, dec) = decode::argument(syscall, c.index);
    let width = match c.width {
        Width::Dword => "",
        Width::Qword => " (64-bit)",
    };
    if name.is_empty() {
        (format!("arg{}{width}", c.index), dec)
    } else {
        (format!("arg{} ({name}){width}", c.index), dec)
    }
}

/// One condition in words: `arg2 (prot) has no PROT_EXEC`.
pub fn condition(syscall: &str, c: &Condition) -> String {
    let (label, dec) = arg_label(syscall, c);
    match c.runtime {
        // The model allows a run-time value with eq only.
        Some(RuntimeValue::OwnPid) => {
            return format!(
                "{label} == the process's own pid (written into the filter when it is installed)"
            )
        }
        None => {}
    }
    let val = || decode::name_value(dec, c.val);
    match c.op {
        Op::Eq => format!("{label} == {}", val()),
        Op::Ne => format!("{label} != {}", val()),
        Op::Lt => format!("{label} < {}", c.val),
        Op::Le => format!("{label} <= {}", c.val),
        Op::Gt => format!("{label} > {}", c.val),
        Op::Ge => format!("{label} >= {}", c.val),
        Op::MaskedEq(mask) if c.val == 0 => {
            format!("{label} has no {}", decode::name_mask(dec, mask))
        }
        Op::MaskedEq(mask) if c.val == mask => {
            format!("{label} has {}", decode::name_mask(dec, mask))
        }
        Op::MaskedEq(mask) => format!("{label} & {} == {}", decode::name_mask(dec, mask), val()),
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// `n` things, with the plural right: `1 rule`, `31 rules`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Renders the filters of one policy file.
pub fn render_file(file: &str, filters: &[Filter], out: &mut String) {
    for f in filters {
        let _ = writeln!(out, "## `{}` (from `sandbox-policies/{file}`)\n", f.name);
        let rules = count(f.rules.len(), "rule", "rules");
        if f.mismatch_action == Action::KillProcess {
            let _ = writeln!(
                out,
                "Default action: **{}**: any system call not listed below ends the process. \
                 Listed calls (when their conditions hold): **{}**. {rules}.\n",
                f.mismatch_action, f.match_action,
            );
        } else {
            let _ = writeln!(
                out,
                "Overlay, installed with its primary filter: the calls listed below get **{}** \
                 (the most restrictive result of all filters wins, and an errno wins over allow); \
                 for every other call this overlay says **{}** and the primary filter decides. {rules}.\n",
                f.match_action, f.mismatch_action,
            );
        }
        let _ = writeln!(
            out,
            "| # | system call | nr | only when | action | why | needed by (see *Every rule is needed*) |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for (i, r) in f.rules.iter().enumerate() {
            let nr = syscalls::number(&r.syscall).map_or_else(|| "?".to_owned(), |n| n.to_string());
            let conds = if r.args.is_empty() {
                "always".to_owned()
            } else {
                r.args
                    .iter()
                    .map(|c| match &c.comment {
                        Some(why) => format!("{} ({})", condition(&r.syscall, c), why.trim()),
                        None => condition(&r.syscall, c),
                    })
                    .collect::<Vec<_>>()
                    .join("<br>and ")
            };
            let needed = match (&r.unreached, r.needed_by.as_slice()) {
                (Some(why), _) => format!("unreached here: {}", why.trim()),
                (None, []) => "**not yet shown**".to_owned(),
                (None, names) => names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} | {} | {} | {} |",
                i + 1,
                r.syscall,
                nr,
                cell(&conds),
                f.match_action,
                cell(r.comment.as_deref().unwrap_or("(no justification)")),
                cell(&needed)
            );
        }
        out.push('\n');
    }
}

/// The architecture every program on this page is compiled for: the
/// policies are written for x86_64 only.
pub const ARCH: &str = "x86_64";

/// The default action a filter is compiled with for the enforcing mode,
/// as [`crate::compile::embed`] does it: an overlay (`NAME-errno`) as
/// written, allow; a primary filter kill_process.
pub fn enforcing_mismatch(name: &str) -> &'static str {
    if name.ends_with(OVERLAY_SUFFIX) {
        "allow"
    } else {
        "kill_process"
    }
}

/// The enforcing program of filter `name` of `json`: what the process
/// installs by default, with every pid slot at 0 (the canonical form).
pub fn enforcing_program(json: &str, name: &str) -> Result<Program, String> {
    compile::compile(json, name, enforcing_mismatch(name), ARCH)
        .map_err(|e| format!("filter {name:?} does not compile: {e}"))
}

/// Instructions in a stored program.
fn instructions(p: &Program) -> usize {
    p.bpf.len() / bpf::INSN_LEN
}

/// The pid slots of a program as the page lists them: `none`, `97`,
/// `97, 120`.
fn slot_list(p: &Program) -> String {
    if p.pid_slots.is_empty() {
        "none".to_owned()
    } else {
        p.pid_slots
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One process: a primary filter and its overlay (if the file has one), in
/// the order `common::sandbox::install` installs them.
struct Process<'a> {
    file: &'a str,
    json: &'a str,
    /// Install order: the overlay first, then the primary filter.
    filters: Vec<&'a str>,
}

fn processes<'a>(files: &'a [(&'a str, &'a str, Vec<Filter>)]) -> Vec<Process<'a>> {
    let mut out = Vec::new();
    for (file, json, filters) in files {
        for primary in filters.iter().filter(|f| !f.name.ends_with(OVERLAY_SUFFIX)) {
            let overlay = format!("{}{OVERLAY_SUFFIX}", primary.name);
            let mut order: Vec<&str> = filters
                .iter()
                .filter(|f| f.name == overlay)
                .map(|f| f.name.as_str())
                .collect();
            order.push(primary.name.as_str());
            out.push(Process {
                file,
                json,
                filters: order,
            });
        }
    }
    out
}

/// The hashes of what the kernel holds, per process, and of the learning
/// modes' programs.
fn render_kernel(files: &[(&str, &str, Vec<Filter>)], out: &mut String) -> Result<(), String> {
    out.push_str(KERNEL_INTRO);
    let procs = processes(files);
    for p in &procs {
        let Some(&primary) = p.filters.last() else {
            continue;
        };
        let _ = writeln!(
            out,
            "### The `{primary}` process (`sandbox-policies/{}`)\n",
            p.file
        );
        let _ = writeln!(
            out,
            "| install order | kernel index | filter | instructions | pid slots (instruction indices, from 0) |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        let last = p.filters.len() - 1;
        let mut lines = String::new();
        for (i, &name) in p.filters.iter().enumerate() {
            let prog = enforcing_program(p.json, name)?;
            let age = match i {
                0 if last == 0 => " (the only one)",
                0 => " (the oldest)",
                _ if i == last => " (the newest)",
                _ => "",
            };
            let _ = writeln!(
                out,
                "| {} | {i}{age} | `{name}` | {} | {} |",
                i + 1,
                instructions(&prog),
                slot_list(&prog)
            );
            let _ = writeln!(lines, "sha256 {name}: {}", bpf::sha256_hex(&prog.bpf));
        }
        let _ = writeln!(out, "\n```\n{lines}```\n");
    }
    out.push_str(LEARNING_INTRO);
    let _ = writeln!(
        out,
        "| learning mode | filter | instructions | pid slots | SHA-256 (pid slots at 0) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for p in &procs {
        let Some(&primary) = p.filters.last() else {
            continue;
        };
        for (mode, action) in compile::MODES.iter().filter(|(m, _)| *m != "enforce") {
            let prog = compile::compile(p.json, primary, action, ARCH)
                .map_err(|e| format!("filter {primary:?} does not compile ({mode}): {e}"))?;
            let _ = writeln!(
                out,
                "| {mode} | `{primary}` | {} | {} | `{}` |",
                instructions(&prog),
                slot_list(&prog),
                bpf::sha256_hex(&prog.bpf)
            );
        }
    }
    out.push('\n');
    Ok(())
}

/// Renders the whole review from `(file name, JSON text)` pairs.
pub fn render(files: &[(&str, &str)]) -> Result<String, String> {
    let mut parsed = Vec::new();
    for &(file, json) in files {
        let filters = crate::model::parse(json).map_err(|e| format!("{file}: {e}"))?;
        parsed.push((file, json, filters));
    }
    let mut out = String::from(
        "# Sandbox policy review\n\n\
         Generated by `make policy-review` from the JSON policies in this directory; do not edit by hand.\n\
         A test fails when this file differs from what the policies produce, so every policy change\n\
         shows up here as a readable diff. Numbers are x86_64 system call numbers.\n\n",
    );
    render_kernel(&parsed, &mut out)?;
    out.push_str(CHECK_YOURSELF);
    out.push_str(ASSUMPTIONS);
    out.push_str(UNFILTERABLE);
    for (file, _, filters) in &parsed {
        render_file(file, filters, &mut out);
    }
    out.push_str(&needed_section(&parsed));
    out.push_str(RUNTIME_VALUES);
    Ok(out)
}

/// The method of "Every rule is needed".
const NEEDED_INTRO: &str = "\
## Every rule is needed

The last column of each table names the scenarios of `tests/tests/rules.rs` (the vault's)
and `tests/tests/rules_broker.rs` (the broker's; both run by `make test`) that prove the
rule is needed. Each runs the real broker and vault with the
policy enforcing and that one rule taken away (`--sandbox-name-rule FILTER:RULE`: one more
filter traps exactly the rule's calls, and trap beats allow and errno, while everything
the policy refuses is still killed); the SIGSYS handler names each such call on stderr,
and the test must see the rule's call named (and the program's banner name the rule's
call, so that a build from other JSON is caught). Where glibc makes the call with every
signal blocked (a thread's end: `madvise(MADV_DONTNEED)` on the unused stack, then its
last `exit`), the trap cannot be handled and the kernel kills the process instead: for
those two calls alone, a kill by SIGSYS with nothing named before counts, since the same
scenario with every rule in place never ends by SIGSYS (a test checks that too). Rare
paths are forced by the `--selftest` options of the vault and of `broker demo`, never left
to chance. A rule *unreached here* stays for the reason given; the suite checks that every
scenario, with that rule taken away, ends as it does with every rule in place and never
makes the call. A rule **not yet shown** has no scenario yet: it is on the list of open
work, not a proof.

";

/// "Every rule is needed": the method, the scenarios of each file, and the
/// rules not yet shown to be needed.
fn needed_section(parsed: &[(&str, &str, Vec<Filter>)]) -> String {
    let mut out = String::from(NEEDED_INTRO);
    for (file, _, filters) in parsed {
        let scenarios: Vec<_> = crate::lint::SCENARIOS
            .iter()
            .filter(|(f, _, _)| f == file)
            .collect();
        let _ = writeln!(out, "Scenarios for `{file}`:\n");
        if scenarios.is_empty() {
            let _ = writeln!(out, "- none yet\n");
        } else {
            for (_, name, what) in &scenarios {
                let _ = writeln!(out, "- `{name}`: {what}");
            }
            out.push('\n');
        }
        let pending: Vec<String> = filters
            .iter()
            .flat_map(|f| {
                f.rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.needed_by.is_empty() && r.unreached.is_none())
                    .map(move |(i, r)| format!("`{}` rule {} (`{}`)", f.name, i + 1, r.syscall))
            })
            .collect();
        if pending.is_empty() {
            let _ = writeln!(
                out,
                "Every rule of `{file}` is shown needed or unreached here.\n"
            );
        } else {
            let _ = writeln!(
                out,
                "Not yet shown to be needed in `{file}`: {}: {}.\n",
                count(pending.len(), "rule", "rules"),
                pending.join(", ")
            );
        }
    }
    out
}

/// What the hashes are of.
const KERNEL_INTRO: &str = "\
## What the kernel holds

Each sandboxed process (the vault, and the `broker demo` program once its vault runs) holds
exactly two seccomp filters, installed by `common::sandbox::install` on all its threads at once
(TSYNC): the `-errno` overlay first, then the primary filter. The kernel numbers a process's
filters from the oldest: `PTRACE_SECCOMP_GET_FILTER` index 0 is the overlay, index 1 the
primary filter. (A process started under someone else's seccomp filter, a container runtime's
or systemd's `SystemCallFilter=`, inherits it too, and that one comes before these two.)

For each filter: its number of BPF instructions and the SHA-256 of the program as the kernel
holds it, the array of `struct sock_filter` (8 bytes per instruction, little-endian: code u16,
jt u8, jf u8, k u32), exactly what `PTRACE_SECCOMP_GET_FILTER` returns. A rule on the process's
own pid (`\"val\": \"own_pid\"`) compares with a value known only at run time: the process writes
its pid into the instructions listed under *pid slots* when it installs the filter (see *Values
written at installation* below). The hash here is of the program with each of those values set
to 0, the canonical program the build embeds; `policy verify` sets them to 0 before it hashes a
running process's filter, and shows the values it found there.

";

/// Which programs the learning modes install.
const LEARNING_INTRO: &str = "\
These are the hashes of the enforcing programs, the ones installed unless a learning mode is
asked for. With `--sandbox-learning trap` or `--sandbox-learning log` (policy work only) the
primary filters are compiled with another default action, so their programs differ and their
hashes do not match the lines above; the overlays are the same in every mode. For reference
only, the learning-mode programs of the primary filters:

";

/// How a reviewer compares this page with a running process.
const CHECK_YOURSELF: &str = "\
## How to check a running vault yourself

Both commands run as root: reading another process's filters needs `CAP_SYS_ADMIN` and a kernel
with checkpoint/restore support (`CONFIG_CHECKPOINT_RESTORE`, which `PTRACE_SECCOMP_GET_FILTER`
needs), and the reading process must itself not run under seccomp.

```
sudo make policy-verify
```

starts a demo broker and its vault, verifies both, and stops them.

```
sudo target/debug/policy verify PID
```

verifies any running vault or broker, by its pid (`cargo build --locked -p sandbox-policies`
builds `target/debug/policy`). For each filter it prints its SHA-256 (with
the pid slots set to 0), to compare with the `sha256` lines above; whether it is byte-identical
to the program compiled from the JSON; the pid values found in the slots; and a semantic check
of the kernel's program by an independent BPF interpreter (`src/bpf.rs`, not seccompiler) over
every system call number, x32 and i386, and the boundary values of every argument a rule names.

";

/// The architecture and kernel the policies are written for.
const ASSUMPTIONS: &str = "\
## Architecture and kernel assumptions

- x86_64 only. Every filter, the overlays included, begins with an architecture check: a system
  call made under any other architecture (for example i386, through `int 0x80`) ends the process
  (kill_process) before any rule is looked at.
- x32: x32 system calls arrive as x86_64 ones with bit 30 set in the number
  (`nr | 0x40000000`). No rule lists such a number, so they get each filter's default action: the
  overlay says allow and the primary filter ends the process.
- The numbers in the tables are the x86_64 numbers of the kernel headers the build used.

";

/// What no filter can refuse.
const UNFILTERABLE: &str = "\
## What no filter can stop

Recent x86_64 kernels have two system calls that the kernel's uprobe trampoline makes in place
of a breakpoint when a uprobe or uretprobe is attached to the process (tracing, which takes
privileges): `uretprobe` (335, since Linux 6.11) and `uprobe` (336) where the kernel has it.
`kernel/seccomp.c` lets them through without running any filter, by design (for `uretprobe`
since the 2025 commit \"seccomp: passthrough uretprobe systemcall without filtering\"), so no
rule here can refuse them. The exemption is for x86_64 calls only: an i386 call with these
numbers is filtered like any other. Made from anywhere but the trampoline the kernel installed,
both end the process with SIGILL; they do nothing else. (On a kernel that has `uretprobe` but
not yet the exemption, these filters, which do not list it, would end a process in which a
uretprobe fires.)

";

/// How a condition on the process's own pid gets into a program.
const RUNTIME_VALUES: &str = "\
## Values written at installation

A seccomp comparison takes a constant, and a pid is known only at run time. A condition that
reads \"the process's own pid\" is compiled with 0 in its place; the build lists the instructions
that hold it (each a `BPF_JMP|BPF_JEQ|BPF_K`, one per such condition, or the build fails), and
the process writes its own `getpid()` into exactly those instructions before it installs the
filter (`common::sandbox::install`, which refuses a listed instruction that is anything else or
not 0). The embedded programs, with those instructions at 0, are the canonical form: the one
hashed under *What the kernel holds*.
";

/// Reads and renders the project's policy files from `dir`.
pub fn render_dir(dir: &std::path::Path) -> Result<String, String> {
    let mut files = Vec::new();
    for file in crate::POLICY_FILES {
        let text = std::fs::read_to_string(dir.join(file)).map_err(|e| format!("{file}: {e}"))?;
        files.push((file, text));
    }
    let pairs: Vec<(&str, &str)> = files.iter().map(|(f, t)| (*f, t.as_str())).collect();
    render(&pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse;
    use std::path::Path;

    #[test]
    fn conditions_read_as_words() {
        let f = parse(
            r#"{"t": {"mismatch_action": "kill_process", "match_action": "allow", "filter": [
                {"syscall": "mmap", "comment": "m", "args": [
                    {"index": 2, "type": "dword", "op": {"masked_eq": 4}, "val": 0, "comment": "W^X"},
                    {"index": 3, "type": "dword", "op": {"masked_eq": 32}, "val": 32, "comment": "anon"}]},
                {"syscall": "futex", "comment": "f", "args": [{"index": 1, "type": "dword", "op": "eq", "val": 129, "comment": "w"}]}
            ]}}"#,
        )
        .unwrap();
        let r = &f[0].rules;
        assert_eq!(
            condition("mmap", &r[0].args[0]),
            "arg2 (prot) has no PROT_EXEC"
        );
        assert_eq!(
            condition("mmap", &r[0].args[1]),
            "arg3 (flags) has MAP_ANONYMOUS"
        );
        assert_eq!(
            condition("futex", &r[1].args[0]),
            "arg1 (op) == FUTEX_WAKE_PRIVATE (129)"
        );
        let mut out = String::new();
        render_file("t.json", &f, &mut out);
        assert!(out.contains("| 1 | `mmap` | 9 | arg2 (prot) has no PROT_EXEC (W^X)<br>and arg3 (flags) has MAP_ANONYMOUS (anon) | allow | m |"), "{out}");
    }

    #[test]
    fn the_own_pid_and_pidfd_signals_read_as_words() {
        let json = r#"{"t": {"mismatch_action": "kill_process", "match_action": "allow", "filter": [
                {"syscall": "tgkill", "comment": "a", "args": [
                    {"index": 0, "type": "dword", "op": "eq", "val": "own_pid", "comment": "itself"}]},
                {"syscall": "pidfd_send_signal", "comment": "p", "args": [
                    {"index": 1, "type": "dword", "op": "eq", "val": 15, "comment": "t"},
                    {"index": 2, "type": "qword", "op": "eq", "val": 0, "comment": "i"},
                    {"index": 3, "type": "dword", "op": "eq", "val": 0, "comment": "f"}]}
            ]}}"#;
        let f = parse(json).unwrap();
        let r = &f[0].rules;
        assert_eq!(
            condition("tgkill", &r[0].args[0]),
            "arg0 (tgid) == the process's own pid (written into the filter when it is installed)"
        );
        assert_eq!(
            condition("pidfd_send_signal", &r[1].args[0]),
            "arg1 (sig) == SIGTERM (15)"
        );
        assert_eq!(
            condition("pidfd_send_signal", &r[1].args[1]),
            "arg2 (info) (64-bit) == 0"
        );
        assert_eq!(
            condition("pidfd_send_signal", &r[1].args[2]),
            "arg3 (flags) == 0"
        );
        let all = render(&[("t.json", json)]).unwrap();
        assert!(all.contains("## What no filter can stop"), "{all}");
        assert!(all.contains("`uretprobe` (335") && all.contains("`uprobe` (336)"));
        // A policy without an overlay: one filter, the only one installed.
        assert!(all.contains("| 1 | 0 (the only one) | `t` |"), "{all}");
        let t = compile::compile(json, "t", "kill_process", ARCH).unwrap();
        assert!(all.contains(&format!("sha256 t: {}\n", bpf::sha256_hex(&t.bpf))));
    }

    #[test]
    fn counts_have_the_right_plural() {
        assert_eq!(count(0, "rule", "rules"), "0 rules");
        assert_eq!(count(1, "rule", "rules"), "1 rule");
        assert_eq!(count(31, "rule", "rules"), "31 rules");
        let json = r#"{"p": {"mismatch_action": "kill_process", "match_action": "allow", "filter": [
                {"syscall": "clone3", "comment": "answered by the overlay"}]},
            "p-errno": {"mismatch_action": "allow", "match_action": {"errno": 38}, "filter": [
                {"syscall": "clone3", "comment": "ENOSYS"}]}}"#;
        let mut out = String::new();
        render_file("t.json", &parse(json).unwrap(), &mut out);
        assert_eq!(out.matches(" 1 rule.").count(), 2, "{out}");
        assert!(!out.contains("1 rules"), "{out}");
        // The whole page of the project's policies: no "1 rules", no
        // "1 instructions" anywhere.
        let page = render_dir(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        for wrong in [" 1 rules", " 1 instructions", " 1 slots", "| 1 rules"] {
            assert!(!page.contains(wrong), "{wrong:?} in the review");
        }
        assert!(page.contains(" 1 rule."), "the overlays have one rule each");
    }

    #[test]
    fn errno_results_read_by_name_and_number() {
        assert_eq!(Action::Errno(38).to_string(), "errno ENOSYS (38)");
        assert_eq!(Action::Errno(1).to_string(), "errno EPERM (1)");
        // A value without a name in the table stays a number.
        assert_eq!(Action::Errno(1000).to_string(), "errno 1000");
        let json = r#"{"p-errno": {"mismatch_action": "allow", "match_action": {"errno": 38}, "filter": [
                {"syscall": "clone3", "comment": "ENOSYS"}]}}"#;
        let mut out = String::new();
        render_file("t.json", &parse(json).unwrap(), &mut out);
        assert!(out.contains("get **errno ENOSYS (38)**"), "{out}");
        assert!(
            out.contains("| always | errno ENOSYS (38) | ENOSYS |"),
            "{out}"
        );
        assert!(!out.contains("errno 38"), "{out}");
    }

    fn policy_dir() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    fn committed_review() -> String {
        std::fs::read_to_string(policy_dir().join("REVIEW.md")).expect("REVIEW.md")
    }

    /// Every filter of the project's policy files, with its file's JSON.
    fn all_filters() -> Vec<(String, String)> {
        let mut out = Vec::new();
        for file in crate::POLICY_FILES {
            let json = std::fs::read_to_string(policy_dir().join(file)).unwrap();
            for f in parse(&json).unwrap() {
                out.push((f.name, json.clone()));
            }
        }
        out
    }

    /// The enforcing program of `name`, compiled here the way
    /// `compile::embed` does it (not through this module's helpers).
    fn enforcing(json: &str, name: &str) -> Program {
        let mismatch = if name.ends_with(OVERLAY_SUFFIX) {
            "allow"
        } else {
            "kill_process"
        };
        compile::compile(json, name, mismatch, "x86_64").unwrap()
    }

    /// Checks every `sha256 NAME: HEX` line of `page` against the SHA-256
    /// of the enforcing program of filter NAME, and that every filter has
    /// exactly one such line. Returns how many lines it checked.
    fn check_hashes(page: &str) -> Result<usize, String> {
        let filters = all_filters();
        let mut seen = Vec::new();
        for line in page.lines() {
            let Some(rest) = line.strip_prefix("sha256 ") else {
                continue;
            };
            let (name, hex) = rest
                .split_once(": ")
                .ok_or_else(|| format!("not `sha256 NAME: HEX`: {line:?}"))?;
            if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(format!("not 64 lowercase hex digits: {line:?}"));
            }
            let (_, json) = filters
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| format!("no filter named {name:?}: {line:?}"))?;
            let want = bpf::sha256_hex(&enforcing(json, name).bpf);
            if hex != want {
                return Err(format!(
                    "{name}: the page says {hex}, the program hashes to {want}"
                ));
            }
            seen.push(name.to_owned());
        }
        let mut all: Vec<String> = filters.into_iter().map(|(n, _)| n).collect();
        all.sort();
        let n = seen.len();
        seen.sort();
        if seen != all {
            return Err(format!(
                "hashes published for {seen:?}, filters are {all:?}"
            ));
        }
        Ok(n)
    }

    #[test]
    fn every_published_hash_is_that_of_the_enforcing_program() {
        let page = committed_review();
        assert_eq!(
            check_hashes(&page),
            Ok(4),
            "vault, vault-errno, broker, broker-errno"
        );
        // Positive controls: a stale digit, the learning mode's program, a
        // missing line and a duplicated one are each noticed.
        let (line, hex) = page
            .lines()
            .find_map(|l| l.strip_prefix("sha256 vault: ").map(|h| (l, h)))
            .unwrap();
        let flipped = if hex.starts_with('0') { "1" } else { "0" };
        let stale = page.replace(line, &format!("sha256 vault: {flipped}{}", &hex[1..]));
        assert!(check_hashes(&stale).is_err());
        let json = std::fs::read_to_string(policy_dir().join("vault.json")).unwrap();
        let trap = compile::compile(&json, "vault", "trap", "x86_64").unwrap();
        let learning = page.replace(
            line,
            &format!("sha256 vault: {}", bpf::sha256_hex(&trap.bpf)),
        );
        assert!(check_hashes(&learning).is_err());
        assert!(check_hashes(&page.replace(line, "")).is_err());
        assert!(check_hashes(&page.replace(line, &format!("{line}\n{line}"))).is_err());
    }

    /// What the page hashes is byte for byte what the build embeds (and
    /// `common::sandbox::install` installs): `compile::embed` run into a
    /// scratch directory.
    #[test]
    fn the_published_programs_are_the_embedded_ones() {
        let out = std::env::temp_dir().join(format!("policy-review-embed-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        let page = committed_review();
        for (file, primary) in [("vault.json", "vault"), ("broker.json", "broker")] {
            compile::embed(&policy_dir().join(file), primary, &out, "x86_64");
            let read =
                |suffix: &str| std::fs::read(out.join(format!("{primary}-{suffix}"))).unwrap();
            let overlay = format!("{primary}{OVERLAY_SUFFIX}");
            for (name, bpf_file) in [(primary, "enforce.bpf"), (overlay.as_str(), "overlay.bpf")] {
                let line = format!("sha256 {name}: {}", bpf::sha256_hex(&read(bpf_file)));
                assert!(page.lines().any(|l| l == line), "{line} not in REVIEW.md");
            }
            // Not the learning programs.
            for learning in ["trap.bpf", "log.bpf"] {
                let hex = bpf::sha256_hex(&read(learning));
                assert!(!page.contains(&format!("sha256 {primary}: {hex}")));
            }
        }
        std::fs::remove_dir_all(&out).unwrap();
    }

    /// `(install position, filter, pid slots)` of each row of the tables
    /// under "What the kernel holds".
    fn published_slots(page: &str) -> Vec<(usize, String, Vec<u32>)> {
        let start = page.find("## What the kernel holds").expect("the section");
        let section = &page[start..];
        let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
        let mut rows = Vec::new();
        for line in section[..end].lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() != 7 {
                continue;
            }
            let (Ok(order), Some(name)) = (
                cells[1].parse::<usize>(),
                cells[3].strip_prefix('`').and_then(|c| c.strip_suffix('`')),
            ) else {
                continue;
            };
            let slots = if cells[5] == "none" {
                Vec::new()
            } else {
                cells[5].split(", ").map(|s| s.parse().unwrap()).collect()
            };
            rows.push((order, name.to_owned(), slots));
        }
        rows
    }

    #[test]
    fn the_listed_pid_slots_and_install_order_are_the_programs() {
        let rows = published_slots(&committed_review());
        let filters = all_filters();
        assert_eq!(rows.len(), filters.len(), "{rows:?}");
        for (_, name, slots) in &rows {
            let (_, json) = filters.iter().find(|(n, _)| n == name).unwrap();
            assert_eq!(*slots, enforcing(json, name).pid_slots, "{name}");
        }
        // Not vacuous: the tgkill pin of each primary filter has a slot.
        for primary in ["vault", "broker"] {
            assert!(
                rows.iter().any(|(_, n, s)| n == primary && s.len() == 1),
                "{rows:?}"
            );
        }
        // The overlay first, then its primary filter.
        let order: Vec<(usize, &str)> = rows.iter().map(|(o, n, _)| (*o, n.as_str())).collect();
        assert_eq!(
            order,
            [
                (1, "vault-errno"),
                (2, "vault"),
                (1, "broker-errno"),
                (2, "broker")
            ]
        );
    }

    /// What "Architecture and kernel assumptions" says, run on the
    /// enforcing programs with the independent interpreter.
    #[test]
    fn the_architecture_claims_hold() {
        let filters = all_filters();
        let prog = |name: &str| {
            let (_, json) = filters.iter().find(|(n, _)| n == name).unwrap();
            bpf::decode(&enforcing(json, name).bpf).unwrap()
        };
        for primary in ["vault", "broker"] {
            let overlay = prog(&format!("{primary}{OVERLAY_SUFFIX}"));
            let main = prog(primary);
            let both = |d: &bpf::SeccompData| {
                let r = [bpf::run(&overlay, d).unwrap(), bpf::run(&main, d).unwrap()];
                (r, bpf::combine(&r))
            };
            // Positive control: an allowed call (exit_group, 231) is allowed,
            // and clone3 (435) gets the overlay's ENOSYS.
            let x86 = |nr| bpf::SeccompData::x86_64(nr, [0; 6]);
            assert_eq!(both(&x86(231)).1, bpf::RET_ALLOW, "{primary}");
            assert_eq!(both(&x86(435)).1, bpf::RET_ERRNO | 38, "{primary}");
            for nr in [0, 1, 231, 435] {
                // i386: every filter's architecture check kills.
                let i386 = bpf::SeccompData {
                    arch: bpf::AUDIT_ARCH_I386,
                    ..x86(nr)
                };
                let (r, _) = both(&i386);
                assert_eq!(r, [bpf::RET_KILL_PROCESS; 2], "{primary} i386 {nr}");
                // x32: the default actions, allow and kill.
                let (r, all) = both(&x86(nr | bpf::X32_SYSCALL_BIT));
                assert_eq!(
                    r,
                    [bpf::RET_ALLOW, bpf::RET_KILL_PROCESS],
                    "{primary} x32 {nr}"
                );
                assert_eq!(all, bpf::RET_KILL_PROCESS);
            }
            // uretprobe and uprobe are not listed: only the kernel's
            // exemption lets them through.
            for nr in [335, 336] {
                assert_eq!(both(&x86(nr)).1, bpf::RET_KILL_PROCESS, "{primary} {nr}");
            }
        }
    }

    /// The committed review must be what the policies produce.
    #[test]
    fn review_md_is_up_to_date() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let fresh = render_dir(dir).unwrap();
        let committed = std::fs::read_to_string(dir.join("REVIEW.md")).unwrap_or_default();
        assert!(
            committed == fresh,
            "sandbox-policies/REVIEW.md is stale: run `make policy-review` and commit the result"
        );
    }
}
