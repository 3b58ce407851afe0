//! Every rule is needed (issue 13, part 3): for each allow rule of the
//! vault's policy, the scenarios its `"needed_by"` names run the real
//! programs with that rule taken away, and each must make the rule's call.
//!
//! Taking a rule away: `--sandbox-name-rule FILTER:RULE` makes the vault
//! install, with its policy enforcing, a one-rule filter that traps exactly
//! that rule's calls (`policy::compile::namer`; trap beats allow and errno,
//! and everything the policy refuses is still killed). The SIGSYS handler
//! names each trapped call on stderr, which the broker relays:
//! `vault[PID]: sandbox (rule check): without vault rule 12 (writev), the
//! process made writev (#20) args ...`.
//!
//! A rule marked `"unreached"` (with the reason it stays) is checked the
//! other way: no scenario makes its call. A rule with neither is not yet
//! shown to be needed, and REVIEW.md says so.
//!
//! Positive controls: each scenario, run without a rule taken away, names
//! nothing and ends as it should; and a rule taken away that a scenario does
//! not need is not named by it (the line comes from the rule's calls, not
//! from the mechanism).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use suites::rulecheck::{self, signal, wait_threads, ScenarioRun};

/// What a scenario run printed (stdout and stderr) and how it ended.
struct Run {
    out: String,
    err: String,
    code: Option<i32>,
}

impl rulecheck::ScenarioRun for Run {
    /// Whether the rule's call was made: named by the SIGSYS handler, or,
    /// where glibc makes it with every signal blocked (a thread's final
    /// `exit`), the vault killed by SIGSYS with nothing named before. The
    /// trap cannot run its handler then, and the kernel kills instead; the
    /// same scenario without the rule taken away never ends by SIGSYS
    /// ([`each_scenario_alone_names_nothing_and_ends_as_it_should`]), and
    /// with nothing named, nothing was answered ENOSYS either: the run was
    /// the plain one up to that call.
    fn named(&self, filter: &str, rule: usize, syscall: &str) -> bool {
        self.err.contains(&format!(
            "sandbox (rule check): without {filter} rule {rule} ({syscall}), the process made {syscall} (#"
        )) || (rulecheck::MADE_WITH_SIGNALS_BLOCKED.contains(&syscall)
            && self.err.contains("vault killed by the sandbox (SIGSYS)")
            && !self.any_named())
    }

    /// Whether the vault took rule `rule` of `filter` away, and says it is
    /// about `syscall` (a vault built from other JSON would number its
    /// rules differently).
    fn took_away(&self, filter: &str, rule: usize, syscall: &str) -> bool {
        self.err.contains(&format!(
            "RULE CHECK: the policy enforcing, with {filter} rule {rule} ({syscall}) taken away"
        ))
    }

    fn any_named(&self) -> bool {
        self.err.contains("sandbox (rule check): without ")
    }

    fn text(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.out, self.err
        )
    }
}

/// A running demo whose stderr is read from the start (so a flood of named
/// calls can never fill the pipe and stall it). Once a call is named, the
/// vault is killed: the rule is shown needed, and a vault answered ENOSYS
/// where it never expects it may otherwise spin or wait until the broker's
/// deadlines end it.
struct Demo {
    child: Child,
    err: std::thread::JoinHandle<String>,
}

fn spawn_demo(args: &[&str]) -> Demo {
    spawn_demo_with(args, false)
}

/// As [`spawn_demo`]; with `ignore_sigabrt`, the demo starts with SIGABRT
/// ignored, as a parent that ignores it leaves it (an ignored disposition
/// survives fork and exec, and `CLONE_CLEAR_SIGHAND` resets only handled
/// signals), and its vault inherits that.
fn spawn_demo_with(args: &[&str], ignore_sigabrt: bool) -> Demo {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(suites::binary("broker"));
    if ignore_sigabrt {
        // SAFETY: between fork and exec, one async-signal-safe call.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGABRT, libc::SIG_IGN);
                Ok(())
            });
        }
    }
    let mut child = cmd
        .arg("demo")
        .arg("--password-stdin")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("broker demo");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"pw\n")
        .expect("password");
    let stderr = child.stderr.take().expect("stderr");
    let broker = child.id();
    let err = std::thread::spawn(move || {
        let mut all = String::new();
        let mut killed = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !killed && line.contains("sandbox (rule check): without ") {
                // `vault[PID]: ...`, as the broker relays the vault's lines;
                // killed only while it is still the broker's child (the
                // broker, not reaped, keeps its own pid; a vault already
                // gone and reaped leaves a pid that may be reused).
                let pid = line
                    .strip_prefix("vault[")
                    .and_then(|r| r.split(']').next())
                    .and_then(|p| p.parse::<u32>().ok());
                if let Some(pid) = pid.filter(|&p| parent_of(p) == Some(broker)) {
                    signal(pid, libc::SIGKILL);
                    killed = true;
                }
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    Demo { child, err }
}

/// Collects the rest of the demo's output and its exit.
fn finish(mut demo: Demo, mut out: String) -> Run {
    if let Some(mut o) = demo.child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    let status = demo.child.wait().expect("wait");
    Run {
        out,
        err: demo.err.join().expect("stderr reader"),
        code: status.code(),
    }
}

/// Reads `child`'s stdout up to the demo's first read; returns what was
/// read and the vault's pid.
fn until_first_read(
    child: &mut Child,
) -> (
    String,
    Option<u32>,
    Option<BufReader<std::process::ChildStdout>>,
) {
    let mut seen = String::new();
    let mut vault = None;
    let Some(stdout) = child.stdout.take() else {
        return (seen, vault, None);
    };
    let mut lines = BufReader::new(stdout);
    let mut line = String::new();
    while lines.read_line(&mut line).unwrap_or(0) > 0 {
        if let Some(rest) = line.trim_start().strip_prefix("vault pid ") {
            vault = rest.split_whitespace().next().and_then(|p| p.parse().ok());
        }
        seen.push_str(&line);
        let first = line.trim_start().starts_with("#1 ");
        line.clear();
        if first {
            return (seen, vault, Some(lines));
        }
    }
    (seen, vault, Some(lines))
}

/// Waits until every thread of `pid` sleeps (state S): the lanes are in
/// their futex wait for the next request.
fn wait_all_asleep(pid: u32) -> bool {
    wait_threads(pid, "to sleep", |c| c == 'S')
}

/// The parent of `pid`, from `/proc/PID/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A scenario with the vault idle between two reads a day apart: `act` gets
/// the vault's pid once all its threads sleep; then the demo is ended with
/// SIGTERM (its graceful shutdown).
fn idle_scenario(rule: &[&str], act: impl FnOnce(u32)) -> Run {
    let mut args = vec!["--iterations", "2", "--interval-ms", "86400000"];
    args.extend_from_slice(rule);
    let mut demo = spawn_demo(&args);
    let (seen, vault, rest) = until_first_read(&mut demo.child);
    if let (Some(vault), Some(_)) = (vault, rest.as_ref()) {
        if wait_all_asleep(vault) {
            act(vault);
        }
    }
    signal(demo.child.id(), libc::SIGTERM);
    let mut out = seen;
    if let Some(mut r) = rest {
        let _ = r.read_to_string(&mut out);
    }
    finish(demo, out)
}

/// Runs scenario `name` with `rule` (`vault:12`) taken away, or with none.
fn scenario(name: &str, rule: Option<&str>) -> Run {
    let mut taken: Vec<&str> = Vec::new();
    if let Some(r) = rule {
        taken.extend(["--vault-arg", "--sandbox-name-rule", "--vault-arg", r]);
    }
    match name {
        "lifecycle" => {
            let mut args = vec!["--iterations", "3", "--interval-ms", "20"];
            args.extend_from_slice(&taken);
            finish(spawn_demo(&args), String::new())
        }
        "panic-sigabrt-ignored" => {
            let mut args = vec!["--iterations", "3", "--interval-ms", "20"];
            args.extend_from_slice(&taken);
            args.extend(["--vault-arg", "--selftest", "--vault-arg", "panic"]);
            finish(spawn_demo_with(&args, true), String::new())
        }
        "panic" | "reseed" | "glibc-fatal" | "segv" | "sigbus" | "clone3" | "contend" | "heap" => {
            let mut args = vec!["--iterations", "3", "--interval-ms", "20"];
            args.extend_from_slice(&taken);
            args.extend(["--vault-arg", "--selftest", "--vault-arg", name]);
            finish(spawn_demo(&args), String::new())
        }
        "sigstop" => idle_scenario(&taken, |vault| {
            signal(vault, libc::SIGSTOP);
            if wait_threads(vault, "stopped", |c| c == 'T') {
                signal(vault, libc::SIGCONT);
                wait_all_asleep(vault);
            }
        }),
        "sigterm" => idle_scenario(&taken, |vault| {
            signal(vault, libc::SIGTERM);
            // The vault ends on its own once its handler has run.
            let start = std::time::Instant::now();
            while suites::proc_state(vault).is_some_and(|s| s != 'Z') {
                assert!(
                    start.elapsed() < std::time::Duration::from_secs(10),
                    "the vault did not end on SIGTERM"
                );
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }),
        other => panic!("no scenario {other:?} in this suite"),
    }
}

/// Whether `run` of scenario `name` ended as that scenario does with every
/// rule in place: served and exited 0, or crashed the way it means to.
fn ended_well(name: &str, run: &Run) -> bool {
    let crashed = |signal: &str, message: &str| {
        run.err.contains(&format!("vault crashed ({signal})")) && run.err.contains(message)
    };
    let served = |message: &str| run.code == Some(0) && run.err.contains(message);
    !run.err.contains("SIGSYS")
        && match name {
            "panic" | "panic-sigabrt-ignored" => {
                crashed("SIGABRT", "a deliberate panic inside the sandbox")
            }
            "glibc-fatal" => crashed("SIGABRT", "double free detected"),
            "segv" => crashed("SIGSEGV", ""),
            "sigbus" => crashed("SIGBUS", ""),
            "reseed" => served("selftest: RAND_poll returned 1"),
            "clone3" => served("selftest: clone3 returned -1 (Function not implemented"),
            "contend" => served("selftest: both locks were contended"),
            // Each side on the arena it is there for, every allocation made.
            "heap" => {
                served("lane 0: selftest: heap grown and given back on a thread's arena: every allocation succeeded: true")
                    && run.err.contains("main thread: selftest: heap grown and given back on the main heap: every allocation succeeded: true")
            }
            _ => run.code == Some(0),
        }
}

/// The checks shared with the broker's suite, over the vault's policy.
const CHECKS: rulecheck::Checks<Run> = rulecheck::Checks {
    file: "vault.json",
    scenario,
    ended_well,
    slowest: None,
};

#[test]
fn each_scenario_alone_names_nothing_and_ends_as_it_should() {
    let failures = CHECKS.each_scenario_alone();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_vault_rule_is_needed_by_the_scenarios_it_names() {
    let failures = CHECKS.every_rule_needed(10);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn no_scenario_reaches_a_rule_marked_unreached() {
    let failures = CHECKS.nothing_unreached_is_reached();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_rule_a_scenario_does_not_need_is_not_named_by_it() {
    // gettid is made only by abort() (the panic scenario); the lifecycle
    // without it names nothing, the panic scenario names it.
    let policy = rulecheck::policy("vault.json");
    let vault = policy.iter().find(|f| f.name == "vault").expect("vault");
    let rule = vault
        .rules
        .iter()
        .position(|r| r.syscall == "gettid")
        .expect("a gettid rule")
        + 1;
    let taken = format!("vault:{rule}");
    let calm = scenario("lifecycle", Some(&taken));
    assert!(!calm.any_named(), "{}", calm.err);
    assert_eq!(calm.code, Some(0), "{}\n{}", calm.out, calm.err);
    let panic = scenario("panic", Some(&taken));
    assert!(panic.named("vault", rule, "gettid"), "{}", panic.err);
}

/// Policy work: which scenario makes which rule's call, every pair tried
/// (`cargo test -p suites --test rules -- --ignored --nocapture`). What the
/// JSON's `needed_by` and `unreached` should say, measured.
#[test]
#[ignore = "policy work: slow, prints a table"]
fn print_which_scenarios_reach_which_rule() {
    rulecheck::print_matrix("vault.json", |s, r| {
        scenario(s, Some(&r.arg())).named(&r.filter, r.rule, &r.syscall)
    });
}
