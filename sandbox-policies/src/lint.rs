//! The rules a policy must follow before it may be embedded.
//!
//! - every rule and every argument condition says why it is needed;
//! - the default (mismatch) action is `kill_process`, the match action `allow`;
//! - no system call has both an unconditional and a conditional rule
//!   (seccompiler silently drops the conditional one);
//! - system calls that are dangerous in general are only allowed with
//!   argument conditions;
//! - system calls that no policy here may allow at all are absent;
//! - every system call name is known, and no rule is a duplicate.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::{Action, Filter};
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
    "pkey_mprotect",
    "prctl",
    "rt_sigaction",
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
    c.as_deref().map_or(true, |s| s.trim().is_empty())
}

/// Checks one filter; an empty result means it passes.
pub fn lint(filter: &Filter) -> Vec<Finding> {
    let mut out = Vec::new();
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
        if rule.args.is_empty() && NEEDS_CONDITIONS.contains(&rule.syscall.as_str()) {
            push(
                n,
                s,
                "dangerous in general: allow it only with argument conditions".into(),
            );
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
            for f in parse(&text).unwrap() {
                assert!(lint(&f).is_empty(), "{file}: {:?}", messages(&f));
            }
        }
    }
}
