//! The `broker` program's own seccomp filter, compiled at build time from
//! `sandbox-policies/broker.json`.
//!
//! The program installs it once the vault is running: from then on it cannot
//! exec, ptrace, read other processes' memory, open sockets or files, load
//! modules or enter namespaces. The library does not install it on behalf of
//! an application that embeds it: an application has its own needs and must
//! choose its own filter. This one fits the program and no more: it makes
//! one request at a time, so the plaintext buffer the broker made before
//! the filter is the only one it needs. An application that installed it
//! and read from several threads at once would need a second buffer, and
//! with secret memory a new buffer is a `memfd_secret` call, which this
//! filter refuses (the process is killed).

use common::sandbox::{self, Aside, Compiled, Mode, SandboxError};

/// The embedded policy, in its three modes.
pub const POLICY: Compiled = common::embedded_policy!("broker");

/// Installs the broker program's filter on every thread.
pub fn install(mode: Mode) -> Result<(), SandboxError> {
    sandbox::install(&POLICY, mode)
}

/// The rule check (`broker demo --sandbox-name-rule FILTER:RULE`, policy
/// work and the "every rule is needed" suite only): the filter enforcing
/// and, on top, the namer of that rule, which traps its calls (see
/// [`common::sandbox::install_naming`]). The broker may write on fd 1 and
/// fd 2, one rule each: the line naming a call goes to stderr, or to stdout
/// when the call named is a write to stderr.
pub fn install_naming(filter: &str, rule: u32) -> Result<(), SandboxError> {
    sandbox::install_naming(&POLICY, filter, rule, Aside::WriteAvoiding(2, 1))
}

/// The rules [`install_naming`] can take away, per filter of the embedded
/// policy: the filter's name and its highest rule number (rules are
/// numbered from 1, as `sandbox-policies/REVIEW.md` numbers them), in the
/// policy's order.
pub fn rule_ranges() -> Vec<(&'static str, u32)> {
    let mut ranges: Vec<(&'static str, u32)> = Vec::new();
    for n in POLICY.namers {
        match ranges.iter_mut().find(|(f, _)| *f == n.filter) {
            Some((_, last)) => *last = (*last).max(n.rule),
            None => ranges.push((n.filter, n.rule)),
        }
    }
    ranges
}

/// Whether the embedded policy has rule `rule` of filter `filter`, the one
/// [`install_naming`] would take away.
pub fn has_rule(filter: &str, rule: u32) -> bool {
    POLICY
        .namers
        .iter()
        .any(|n| n.filter == filter && n.rule == rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_of_each_range_exists_and_none_beyond() {
        let ranges = rule_ranges();
        assert!(!ranges.is_empty());
        for (filter, last) in ranges {
            for rule in 1..=last {
                assert!(has_rule(filter, rule), "{filter}:{rule} missing");
            }
            assert!(!has_rule(filter, last + 1));
            assert!(!has_rule(filter, 0));
        }
        assert!(!has_rule("no-such-filter", 1));
    }
}
