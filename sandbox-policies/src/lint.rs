//! The rules a policy must follow before it may be embedded.
//!
//! - every rule and every argument condition says why it is needed;
//! - the default (mismatch) action is `kill_process`, the match action `allow`;
//! - no system call has both an unconditional and a conditional rule
//!   (seccompiler silently drops the conditional one);
//! - system calls that are dangerous in general are only allowed with
//!   argument conditions;
//! - system calls that no policy here may allow at all are absent;
//! - a call that sends a signal to a pid or tid is pinned to the process
//!   itself (`"val": "own_pid"` on its target), and `pidfd_send_signal` to
//!   named signals;
//! - every system call name is known, and no rule is a duplicate.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::{Action, Filter, Op, Rule, RuntimeValue};
use crate::syscalls;

/// System calls allowed only with argument conditions.
pub const NEEDS_CONDITIONS: &[&str] = &[
    "arch_prctl",
    "clone",
    "clone3",
    "fcntl",
    "futex",
    "ioctl",
    "kill",
    "madvise",
    "mmap",
    "mprotect",
    "mremap",
    "personality",
    "pidfd_send_signal",
    "pkey_mprotect",
    "prctl",
    "rt_sigaction",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "setsockopt",
    "socket",
    "socketpair",
    "tgkill",
    "tkill",
    "wait4",
];

/// System calls no policy of this project may allow, with or without
/// conditions: ways out of a sandbox or into another process.
pub const NEVER: &[&str] = &[
    "add_key",
    "bpf",
    "chroot",
    "delete_module",
    "execve",
    "execveat",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "mount",
    "move_mount",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "reboot",
    "request_key",
    "setns",
    "swapoff",
    "swapon",
    "umount2",
    "unshare",
    "userfaultfd",
];

/// System calls that signal a process or thread named by a number in
/// argument 0. The number can be any process of the user (and `kill` takes
/// 0 and -1 for groups and everyone): a rule for one of these must pin
/// argument 0 to the process's own pid, a value known only at run time.
pub const SIGNAL_BY_PID: &[&str] = &[
    "kill",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "tgkill",
    "tkill",
];

/// What is wrong with the target pin of a rule for a [`SIGNAL_BY_PID`]
/// call, if anything.
fn signal_target_problem(rule: &Rule) -> Option<String> {
    let target: Vec<_> = rule.args.iter().filter(|c| c.index == 0).collect();
    if !target
        .iter()
        .any(|c| c.op == Op::Eq && c.runtime == Some(RuntimeValue::OwnPid))
    {
        return Some(
            "signals any process the user may signal: pin argument 0 (the target) with \
             {\"op\": \"eq\", \"val\": \"own_pid\"}"
                .into(),
        );
    }
    if target.iter().any(|c| c.runtime.is_none()) {
        return Some(
            "argument 0 (the target) may only be compared with own_pid: a constant pid names \
             another process, or a group (0) or everyone (-1)"
                .into(),
        );
    }
    None
}

/// What is wrong with a `pidfd_send_signal` rule, if anything: the pidfd
/// names a process, the rule must name the signals.
fn pidfd_signal_problem(rule: &Rule) -> Option<String> {
    let pinned = rule
        .args
        .iter()
        .any(|c| c.index == 1 && c.op == Op::Eq && c.runtime.is_none());
    (!pinned).then(|| {
        "any signal could be sent: pin argument 1 (sig) with an \"eq\" condition per signal".into()
    })
}

/// One lint finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Filter name.
    pub filter: String,
    /// Rule number (1-based), if the finding is about a rule.
    pub rule: Option<usize>,
    /// System call concerned, if any.
    pub syscall: Option<String>,
    /// What is wrong, and what to do.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "filter {:?}", self.filter)?;
        if let Some(r) = self.rule {
            write!(f, " rule {r}")?;
        }
        if let Some(s) = &self.syscall {
            write!(f, " ({s})")?;
        }
        write!(f, ": {}", self.message)
    }
}

fn blank(c: &Option<String>) -> bool {
    c.as_deref().is_none_or(|s| s.trim().is_empty())
}

/// The scenarios of the "every rule is needed" suites (`tests/tests/rules.rs`
/// for the vault, `tests/tests/rules_broker.rs` for the broker)
/// a rule's `"needed_by"` may name: (policy file, name, what it runs). Each
/// runs the real programs with one rule taken away
/// (`--sandbox-name-rule`), and must see that rule's call refused.
pub const SCENARIOS: &[(&str, &str, &str)] = &[
    (
        "vault.json",
        "lifecycle",
        "`broker demo`: start, key generation inside the sandbox, warm-up of every lane, three reads 20 ms apart, graceful shutdown",
    ),
    (
        "vault.json",
        "panic",
        "the same with `--selftest panic`: a panic inside the sandbox after key generation, which aborts (SIGABRT)",
    ),
    (
        "vault.json",
        "panic-sigabrt-ignored",
        "the panic again, with SIGABRT ignored by whoever started the demo: the vault inherits that, so abort()'s first raise returns and it resets SIGABRT to its default action",
    ),
    (
        "vault.json",
        "sigstop",
        "the vault stopped with SIGSTOP while its lanes sleep between reads, then continued with SIGCONT",
    ),
    (
        "vault.json",
        "sigterm",
        "SIGTERM sent to the vault while its lanes sleep: its handler sets the stop flag and returns",
    ),
    (
        "vault.json",
        "reseed",
        "`--selftest reseed`: OpenSSL's primary DRBG reseeded from the kernel (RAND_poll), as it does on its own after an hour or 256 reseeds of the lanes' DRBGs",
    ),
    (
        "vault.json",
        "glibc-fatal",
        "`--selftest glibc-fatal`: a double free, which glibc reports on stderr before it aborts",
    ),
    (
        "vault.json",
        "segv",
        "`--selftest segv`: a write to address 0, a real segmentation fault",
    ),
    (
        "vault.json",
        "sigbus",
        "`--selftest sigbus`: a load past the end of a file mapped before the sandbox, a real bus error",
    ),
    (
        "vault.json",
        "clone3",
        "`--selftest clone3`: the clone3 glibc makes first to start a thread, made directly (glibc makes it with every signal blocked, where a trap cannot be named)",
    ),
    (
        "vault.json",
        "contend",
        "`--selftest contend`: lane 0 holds a glibc rwlock (OpenSSL's lock type) and a glibc mutex (malloc's) until the main thread sleeps on each",
    ),
    (
        "vault.json",
        "heap",
        "`--selftest heap`: glibc's malloc, on lane 0 (a thread's arena) and on the main thread (the main heap), maps a 100 MiB block, grows it to 200 MiB and frees it, then takes 48 MiB in 64 KiB blocks and gives them back",
    ),
    (
        "broker.json",
        "broker-lifecycle",
        "`broker demo --password-stdin`: start, the password from a pipe, three reads 20 ms apart, graceful shutdown",
    ),
    (
        "broker.json",
        "broker-sigterm",
        "SIGTERM sent to the broker while it waits between two reads a day apart: the signalfd wakes its poll, the loop ends, the shutdown is graceful",
    ),
    (
        "broker.json",
        "broker-sigstop",
        "the broker stopped with SIGSTOP while it waits between reads, continued with SIGCONT (its timed poll is restarted), then ended with SIGTERM",
    ),
    (
        "broker.json",
        "broker-terminal",
        "the password typed on a terminal (a pseudo-terminal): echo off, the key read, the settings restored; two reads",
    ),
    (
        "broker.json",
        "broker-panic",
        "`--selftest panic`: a panic in the broker at the terminal's password prompt (SIGUSR1 sent once the prompt shows): the panic hook restores the terminal, then the broker aborts",
    ),
    (
        "broker.json",
        "broker-panic-sigabrt-ignored",
        "the broker's panic again, with SIGABRT ignored by whoever started it: abort()'s first raise returns and it resets SIGABRT to its default action",
    ),
    (
        "broker.json",
        "broker-escalation",
        "the vault stopped (SIGSTOP) between reads, then SIGTERM to the broker: its shutdown request goes unanswered, and the broker escalates to SIGTERM, then SIGKILL, through the vault's pidfd",
    ),
    (
        "broker.json",
        "broker-segv",
        "`--selftest segv`: a write to address 0 in the broker between reads, a real segmentation fault",
    ),
    (
        "broker.json",
        "broker-sigbus",
        "`--selftest sigbus`: a load in the broker, between reads, past the end of a file mapped before the filter, a real bus error",
    ),
    (
        "broker.json",
        "broker-clone3",
        "`--selftest clone3`: the clone3 glibc makes first to start a thread, made directly by the broker between reads (glibc makes it with every signal blocked, where a trap cannot be named)",
    ),
    (
        "broker.json",
        "broker-contend",
        "`--selftest contend`: between reads, the selftest thread holds a glibc mutex (the lock type of malloc's arenas) until a second thread, started with it before the sandbox, sleeps on it",
    ),
    (
        "broker.json",
        "broker-heap",
        "`--selftest heap`: between reads, glibc's malloc on the selftest thread (a thread's arena) maps a 100 MiB block, grows it to 200 MiB and frees it, then takes 48 MiB in 64 KiB blocks and gives them back",
    ),
    (
        "broker.json",
        "broker-thread-end",
        "`--selftest thread-end`: between reads, the selftest thread ends (the suite waits until it is gone) while the broker goes on, then SIGTERM",
    ),
];

/// Suffix of an overlay filter: `NAME-errno` answers some calls of filter
/// `NAME` with an errno instead of letting them through (seccomp applies the
/// most restrictive result of all installed filters, and errno wins over
/// allow). The way to say "clone3 gets ENOSYS" with seccompiler, whose
/// filters have one match action each.
pub const OVERLAY_SUFFIX: &str = "-errno";

/// Checks every filter of one policy file: primaries with [`lint`] (aware of
/// their overlay), overlays with their own rules.
pub fn lint_set(filters: &[Filter]) -> Vec<Finding> {
    let mut out = Vec::new();
    for f in filters {
        match f.name.strip_suffix(OVERLAY_SUFFIX) {
            Some(primary) => {
                out.extend(lint_overlay(f, filters.iter().find(|p| p.name == primary)))
            }
            None => {
                let overlay = filters
                    .iter()
                    .find(|o| o.name == format!("{}{OVERLAY_SUFFIX}", f.name));
                out.extend(lint_with_overlay(f, overlay));
            }
        }
    }
    out
}

/// Whether `overlay` answers every use of `syscall` with an errno.
fn answered_by(overlay: Option<&Filter>, syscall: &str) -> bool {
    overlay.is_some_and(|o| {
        o.rules
            .iter()
            .any(|r| r.syscall == syscall && r.args.is_empty())
    })
}

fn lint_overlay(overlay: &Filter, primary: Option<&Filter>) -> Vec<Finding> {
    let mut out = lint_needed(overlay);
    let mut push = |rule: Option<usize>, syscall: Option<&str>, message: String| {
        out.push(Finding {
            filter: overlay.name.clone(),
            rule,
            syscall: syscall.map(str::to_owned),
            message,
        });
    };
    let Some(primary) = primary else {
        push(
            None,
            None,
            "an overlay needs the filter it overlays (the name without -errno)".into(),
        );
        return out;
    };
    if overlay.mismatch_action != Action::Allow {
        push(
            None,
            None,
            format!(
                "an overlay's default action must be allow (the primary filter decides), not {}",
                overlay.mismatch_action
            ),
        );
    }
    if !matches!(overlay.match_action, Action::Errno(_)) {
        push(
            None,
            None,
            format!(
                "an overlay's match action must be an errno, not {}",
                overlay.match_action
            ),
        );
    }
    for (i, rule) in overlay.rules.iter().enumerate() {
        let (n, s) = (Some(i + 1), Some(rule.syscall.as_str()));
        if blank(&rule.comment) {
            push(
                n,
                s,
                "no justification: add a \"comment\" saying why the call gets an errno".into(),
            );
        }
        if !rule.args.is_empty() {
            push(
                n,
                s,
                "overlay rules take no conditions: the whole call gets the errno".into(),
            );
        }
        if syscalls::available() && syscalls::number(&rule.syscall).is_none() {
            push(n, s, "unknown system call name".into());
        }
        if !primary
            .rules
            .iter()
            .any(|r| r.syscall == rule.syscall && r.args.is_empty())
        {
            push(
                n,
                s,
                format!(
                    "filter {:?} must allow it unconditionally, or its kill wins over the errno",
                    primary.name
                ),
            );
        }
    }
    out
}

/// Checks one filter on its own; an empty result means it passes.
pub fn lint(filter: &Filter) -> Vec<Finding> {
    lint_with_overlay(filter, None)
}

/// The claims of the rules about which scenarios need them: known names,
/// no repeats, and a rule is either needed by scenarios or unreached with a
/// reason, not both.
fn lint_needed(filter: &Filter) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, r) in filter.rules.iter().enumerate() {
        let mut push = |message: String| {
            out.push(Finding {
                filter: filter.name.clone(),
                rule: Some(i + 1),
                syscall: Some(r.syscall.clone()),
                message,
            });
        };
        // A filter's file is named after its primary filter (`vault.json`
        // holds `vault` and `vault-errno`); only that file's scenarios run
        // with its rules taken away.
        let primary = filter
            .name
            .strip_suffix(OVERLAY_SUFFIX)
            .unwrap_or(&filter.name);
        let file = format!("{primary}.json");
        for (j, n) in r.needed_by.iter().enumerate() {
            if !SCENARIOS.iter().any(|(f, name, _)| *f == file && name == n) {
                let known: Vec<&str> = SCENARIOS
                    .iter()
                    .filter(|(f, _, _)| *f == file)
                    .map(|(_, name, _)| *name)
                    .collect();
                push(format!(
                    "needed_by names {n:?}, not a scenario of {file}'s suite (known: {})",
                    if known.is_empty() {
                        "none yet".to_owned()
                    } else {
                        known.join(", ")
                    }
                ));
            }
            if r.needed_by[..j].contains(n) {
                push(format!("needed_by names {n:?} twice"));
            }
        }
        if !r.needed_by.is_empty() && r.unreached.is_some() {
            push("both needed_by and unreached: a rule is one or the other".into());
        }
        if r.unreached.as_deref().is_some_and(|s| s.trim().is_empty()) {
            push("unreached needs the reason the rule stays".into());
        }
    }
    out
}

fn lint_with_overlay(filter: &Filter, overlay: Option<&Filter>) -> Vec<Finding> {
    let mut out = lint_needed(filter);
    let mut push = |rule: Option<usize>, syscall: Option<&str>, message: String| {
        out.push(Finding {
            filter: filter.name.clone(),
            rule,
            syscall: syscall.map(str::to_owned),
            message,
        });
    };
    if filter.mismatch_action != Action::KillProcess {
        push(
            None,
            None,
            format!(
                "the default (mismatch) action is {}; it must be kill_process",
                filter.mismatch_action
            ),
        );
    }
    if filter.match_action != Action::Allow {
        push(
            None,
            None,
            format!(
                "the match action is {}; it must be allow",
                filter.match_action
            ),
        );
    }
    // syscall -> (has unconditional rule, has conditional rule)
    let mut shapes: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
    for (i, rule) in filter.rules.iter().enumerate() {
        let n = Some(i + 1);
        let s = Some(rule.syscall.as_str());
        if blank(&rule.comment) {
            push(
                n,
                s,
                "no justification: add a \"comment\" saying why the call is needed".into(),
            );
        }
        for (j, c) in rule.args.iter().enumerate() {
            if blank(&c.comment) {
                push(
                    n,
                    s,
                    format!(
                        "condition {} (argument {}) has no \"comment\" saying what it pins",
                        j + 1,
                        c.index
                    ),
                );
            }
        }
        if syscalls::available() && syscalls::number(&rule.syscall).is_none() {
            push(n, s, "unknown system call name".into());
        }
        if NEVER.contains(&rule.syscall.as_str()) {
            push(
                n,
                s,
                "this system call may never be allowed in this project's sandboxes".into(),
            );
        }
        if rule.args.is_empty()
            && NEEDS_CONDITIONS.contains(&rule.syscall.as_str())
            && !answered_by(overlay, &rule.syscall)
        {
            push(
                n,
                s,
                "dangerous in general: allow it only with argument conditions".into(),
            );
        }
        if SIGNAL_BY_PID.contains(&rule.syscall.as_str()) {
            if let Some(m) = signal_target_problem(rule) {
                push(n, s, m);
            }
        }
        if rule.syscall == "pidfd_send_signal" {
            if let Some(m) = pidfd_signal_problem(rule) {
                push(n, s, m);
            }
        }
        if filter.rules[..i]
            .iter()
            .any(|r| r.syscall == rule.syscall && r.args == rule.args)
        {
            push(n, s, "duplicate of an earlier rule".into());
        }
        let shape = shapes.entry(&rule.syscall).or_default();
        if rule.args.is_empty() {
            shape.0 = true;
        } else {
            shape.1 = true;
        }
    }
    for (syscall, (unconditional, conditional)) in shapes {
        if unconditional && conditional {
            push(
                None,
                Some(syscall),
                "has both an unconditional and a conditional rule: seccompiler silently drops the conditional one"
                    .into(),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse;

    fn one(rules: &str) -> Filter {
        one_with("kill_process", rules)
    }

    fn one_with(mismatch: &str, rules: &str) -> Filter {
        parse(&format!(
            r#"{{"t": {{"mismatch_action": "{mismatch}", "match_action": "allow", "filter": [{rules}]}}}}"#
        ))
        .unwrap()
        .remove(0)
    }

    fn messages(f: &Filter) -> Vec<String> {
        lint(f).into_iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_good_filter_passes() {
        let f = one(r#"{"syscall": "read", "comment": "input"},
               {"syscall": "mmap", "comment": "malloc", "args": [{"index": 2, "type": "dword", "op": {"masked_eq": 4}, "val": 0, "comment": "no PROT_EXEC"}]}"#);
        assert!(lint(&f).is_empty(), "{:?}", messages(&f));
    }

    #[test]
    fn each_rule_is_enforced() {
        let cases = [
            (one(r#"{"syscall": "read"}"#), "no justification"),
            (
                one(r#"{"syscall": "read", "comment": "  "}"#),
                "no justification",
            ),
            (
                one(
                    r#"{"syscall": "mmap", "comment": "m", "args": [{"index": 2, "type": "dword", "op": "eq", "val": 3}]}"#,
                ),
                "condition 1 (argument 2) has no \"comment\"",
            ),
            (
                one(
                    r#"{"syscall": "write", "comment": "a"}, {"syscall": "write", "comment": "b", "args": [{"index": 0, "type": "dword", "op": "eq", "val": 2, "comment": "fd"}]}"#,
                ),
                "silently drops the conditional one",
            ),
            (
                one(r#"{"syscall": "mmap", "comment": "m"}"#),
                "only with argument conditions",
            ),
            (
                one(r#"{"syscall": "ioctl", "comment": "m"}"#),
                "only with argument conditions",
            ),
            (
                one(r#"{"syscall": "prctl", "comment": "m"}"#),
                "only with argument conditions",
            ),
            (
                one(r#"{"syscall": "socket", "comment": "m"}"#),
                "only with argument conditions",
            ),
            (
                one(r#"{"syscall": "clone", "comment": "m"}"#),
                "only with argument conditions",
            ),
            (
                one(r#"{"syscall": "execve", "comment": "m"}"#),
                "may never be allowed",
            ),
            (
                one(r#"{"syscall": "ptrace", "comment": "m"}"#),
                "may never be allowed",
            ),
            (
                one(r#"{"syscall": "read", "comment": "a"}, {"syscall": "read", "comment": "b"}"#),
                "duplicate",
            ),
            (
                one_with("allow", r#"{"syscall": "read", "comment": "a"}"#),
                "must be kill_process",
            ),
            (
                one_with("trap", r#"{"syscall": "read", "comment": "a"}"#),
                "must be kill_process",
            ),
        ];
        for (f, want) in cases {
            let m = messages(&f);
            assert!(
                m.iter().any(|x| x.contains(want)),
                "expected {want:?} in {m:?}"
            );
        }
    }

    /// Each signal lint, failing and passing.
    #[test]
    fn signals_are_pinned_to_the_process_itself_and_to_named_signals() {
        let pin =
            r#"{"index": 0, "type": "dword", "op": "eq", "val": "own_pid", "comment": "itself"}"#;
        let abrt = r#"{"index": 2, "type": "dword", "op": "eq", "val": 6, "comment": "SIGABRT"}"#;
        let rule = |call: &str, args: &[&str]| {
            one(&format!(
                r#"{{"syscall": "{call}", "comment": "c", "args": [{}]}}"#,
                args.join(", ")
            ))
        };
        let unpinned = "pin argument 0 (the target)";
        let constant = "may only be compared with own_pid";
        for call in SIGNAL_BY_PID {
            // Passing: the target pinned to the process itself.
            let good = rule(call, &[pin, abrt]);
            assert!(lint(&good).is_empty(), "{call}: {:?}", messages(&good));
            // Failing: only the signal pinned; a constant pid; 0; -1 as a
            // dword; a range that contains 0 and every pid.
            let bad = [
                (rule(call, &[abrt]), unpinned),
                (
                    rule(
                        call,
                        &[
                            r#"{"index": 0, "type": "dword", "op": "eq", "val": 1, "comment": "init"}"#,
                            abrt,
                        ],
                    ),
                    unpinned,
                ),
                (
                    rule(
                        call,
                        &[
                            r#"{"index": 0, "type": "dword", "op": "eq", "val": 0, "comment": "group"}"#,
                        ],
                    ),
                    unpinned,
                ),
                (
                    rule(
                        call,
                        &[
                            r#"{"index": 0, "type": "dword", "op": "eq", "val": 4294967295, "comment": "all"}"#,
                        ],
                    ),
                    unpinned,
                ),
                (
                    rule(
                        call,
                        &[
                            r#"{"index": 0, "type": "dword", "op": "le", "val": 100, "comment": "low"}"#,
                        ],
                    ),
                    unpinned,
                ),
                (
                    rule(
                        call,
                        &[
                            pin,
                            r#"{"index": 0, "type": "dword", "op": "ne", "val": 0, "comment": "x"}"#,
                        ],
                    ),
                    constant,
                ),
                (
                    one(&format!(r#"{{"syscall": "{call}", "comment": "c"}}"#)),
                    "only with argument conditions",
                ),
            ];
            for (f, want) in bad {
                let m = messages(&f);
                assert!(
                    m.iter().any(|x| x.contains(want)),
                    "{call}: {want:?} not in {m:?}"
                );
            }
        }
        // pidfd_send_signal: the signal must be named.
        let zero2 = r#"{"index": 2, "type": "qword", "op": "eq", "val": 0, "comment": "no info"}"#;
        let zero3 = r#"{"index": 3, "type": "dword", "op": "eq", "val": 0, "comment": "no flags"}"#;
        let term = r#"{"index": 1, "type": "dword", "op": "eq", "val": 15, "comment": "SIGTERM"}"#;
        let good = rule("pidfd_send_signal", &[term, zero2, zero3]);
        assert!(lint(&good).is_empty(), "{:?}", messages(&good));
        let pinned = "pin argument 1 (sig)";
        let bad = [
            (rule("pidfd_send_signal", &[zero2, zero3]), pinned),
            (
                rule(
                    "pidfd_send_signal",
                    &[r#"{"index": 1, "type": "dword", "op": "le", "val": 15, "comment": "low"}"#],
                ),
                pinned,
            ),
            (
                rule(
                    "pidfd_send_signal",
                    &[
                        r#"{"index": 1, "type": "dword", "op": "eq", "val": "own_pid", "comment": "?"}"#,
                    ],
                ),
                pinned,
            ),
            (
                one(r#"{"syscall": "pidfd_send_signal", "comment": "c"}"#),
                "only with argument conditions",
            ),
        ];
        for (f, want) in bad {
            let m = messages(&f);
            assert!(m.iter().any(|x| x.contains(want)), "{want:?} not in {m:?}");
        }
    }

    #[test]
    fn an_overlay_must_answer_with_an_errno_what_its_primary_allows() {
        let good = parse(
            r#"{"p": {"mismatch_action": "kill_process", "match_action": "allow", "filter": [{"syscall": "clone3", "comment": "answered by the overlay"}]},
               "p-errno": {"mismatch_action": "allow", "match_action": {"errno": 38}, "filter": [{"syscall": "clone3", "comment": "ENOSYS"}]}}"#,
        )
        .unwrap();
        assert!(lint_set(&good).is_empty(), "{:?}", lint_set(&good));
        // Without the overlay, the unconditional clone3 is refused.
        assert!(!lint(&good[0]).is_empty());
        let bad = parse(
            r#"{"p": {"mismatch_action": "kill_process", "match_action": "allow", "filter": [{"syscall": "read", "comment": "r"}]},
               "p-errno": {"mismatch_action": "kill_process", "match_action": "allow", "filter": [{"syscall": "clone3"}]}}"#,
        )
        .unwrap();
        let m: Vec<String> = lint_set(&bad).iter().map(|f| f.to_string()).collect();
        for want in [
            "default action must be allow",
            "must be an errno",
            "no justification",
            "must allow it unconditionally",
        ] {
            assert!(m.iter().any(|x| x.contains(want)), "{want:?} not in {m:?}");
        }
    }

    #[test]
    fn unknown_names_are_refused_where_the_table_exists() {
        if !syscalls::available() {
            return;
        }
        let f = one(r#"{"syscall": "opne", "comment": "typo"}"#);
        assert!(messages(&f)
            .iter()
            .any(|m| m.contains("unknown system call name")));
    }

    #[test]
    fn the_project_policies_pass() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for file in crate::POLICY_FILES {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            let filters = parse(&text).unwrap();
            let findings = lint_set(&filters);
            assert!(findings.is_empty(), "{file}: {findings:?}");
        }
    }
}
