//! Every rule is needed (issue 13, part 3), the broker's side: for each
//! allow rule of the broker program's own filter (`sandbox-policies/
//! broker.json`), the scenarios its `"needed_by"` names run the real
//! `broker demo` with that rule taken away, and each must make the rule's
//! call. (`tests/tests/rules.rs` does the same for the vault.)
//!
//! Taking a rule away: `broker demo --sandbox-name-rule FILTER:RULE` makes
//! the broker install, with its filter enforcing, a one-rule filter that
//! traps exactly that rule's calls (`policy::compile::namer`; trap beats
//! allow and errno, and everything the filter refuses is still killed). The
//! SIGSYS handler names each trapped call, on the broker's stderr (on its
//! stdout when the rule taken away is the one for writes to stderr):
//! `sandbox (rule check): without broker rule 8 (getrandom), the process
//! made getrandom (#318) args ...`. Once a call is named the broker is
//! killed (the rule is shown needed; answered ENOSYS where it never expects
//! it, the broker may otherwise spin or wait for a deadline), and the vault
//! it leaves is checked to be gone.
//!
//! Rare paths are provoked, never waited for by chance: the broker's
//! `--selftest NAME` fails on purpose once it receives SIGUSR1, which this
//! suite sends at a known point (at the password prompt, or between two
//! reads); a stuck vault is made by stopping it. Every wait is for an event
//! (a line of output, a process or thread state in /proc), with a bound
//! only as a failure guard.
//!
//! A rule marked `"unreached"` (with the reason it stays) is checked the
//! other way: no scenario makes its call. A rule with neither is not yet
//! shown to be needed, and REVIEW.md says so.
//!
//! Positive controls: each scenario, run without a rule taken away, names
//! nothing and ends as it should; and a rule taken away that a scenario does
//! not need is not named by it.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use suites::pty::{openpty, termios_of};

use suites::rulecheck::{self, signal, wait_threads, ScenarioRun, GUARD};

/// The marker of a named call.
const NAMED: &str = "sandbox (rule check): without ";

/// What a scenario run printed and how it ended.
#[derive(Debug)]
struct Run {
    out: String,
    err: String,
    code: Option<i32>,
    signal: Option<i32>,
    /// On a terminal: whether its local modes (echo...) are as before.
    terminal_restored: Option<bool>,
}

impl rulecheck::ScenarioRun for Run {
    fn text(&self) -> String {
        format!(
            "exit {:?} signal {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.signal, self.out, self.err
        )
    }

    /// Whether the rule's call was made: named by the SIGSYS handler (on
    /// stderr, or stdout for the rule of writes to stderr), or, where glibc
    /// makes it with every signal blocked (a thread's final `exit`), the
    /// broker killed by SIGSYS with nothing named before. The trap cannot
    /// run its handler then, and the kernel kills instead; the same scenario
    /// without the rule taken away never ends by SIGSYS
    /// ([`each_broker_scenario_alone_names_nothing_and_ends_as_it_should`]),
    /// and with nothing named, nothing was answered ENOSYS either: the run
    /// was the plain one up to that call.
    fn named(&self, filter: &str, rule: usize, syscall: &str) -> bool {
        let line =
            format!("{NAMED}{filter} rule {rule} ({syscall}), the process made {syscall} (#");
        self.err.contains(&line)
            || self.out.contains(&line)
            || (rulecheck::MADE_WITH_SIGNALS_BLOCKED.contains(&syscall)
                && self.signal == Some(libc::SIGSYS)
                && !self.any_named())
    }

    /// Whether the broker took rule `rule` of `filter` away, and says it is
    /// about `syscall` (a broker built from other JSON would number its
    /// rules differently).
    fn took_away(&self, filter: &str, rule: usize, syscall: &str) -> bool {
        self.out.contains(&format!(
            "SANDBOX RULE CHECK: the broker's own filter enforces, with {filter} rule {rule} ({syscall})"
        ))
    }

    fn any_named(&self) -> bool {
        self.err.contains(NAMED) || self.out.contains(NAMED)
    }
}

/// The broker's stdout and stderr as read so far.
#[derive(Default)]
struct Output {
    out: String,
    err: String,
    /// Streams at their end (2: both).
    closed: u32,
}

/// A running `broker demo`, its output read from the start by two threads
/// (so that nothing it writes can fill a pipe and stall it), which kill the
/// broker as soon as a call is named.
struct Demo {
    child: Child,
    output: Arc<(Mutex<Output>, Condvar)>,
    readers: Vec<std::thread::JoinHandle<()>>,
    /// The pseudo-terminal on the broker's stdin, if any: (master, slave,
    /// the slave's local modes before the broker started).
    pty: Option<(std::fs::File, OwnedFd, libc::tcflag_t)>,
}

/// Where the password comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Input {
    /// `--password-stdin`, from a pipe.
    Pipe,
    /// Typed on a pseudo-terminal, by the scenario.
    Terminal,
}

fn spawn_demo(input: Input, args: &[&str]) -> Demo {
    spawn_demo_with(input, args, false)
}

/// As [`spawn_demo`]; with `ignore_sigabrt`, the broker starts with SIGABRT
/// ignored, as a parent that ignores it leaves it (an ignored disposition
/// survives fork and exec).
fn spawn_demo_with(input: Input, args: &[&str], ignore_sigabrt: bool) -> Demo {
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
    // A backtrace would have the panic hook open the binary for its
    // symbols, which the filter refuses (killed by SIGSYS); the broker
    // program drops RUST_BACKTRACE at its start, and every scenario runs
    // with it set, as a developer's shell may have it, to hold that.
    cmd.env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .arg("demo")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let pty = match input {
        Input::Pipe => {
            cmd.arg("--password-stdin").stdin(Stdio::piped());
            None
        }
        Input::Terminal => {
            let (master, slave) = openpty();
            let modes = termios_of(&slave).c_lflag;
            cmd.stdin(Stdio::from(slave.try_clone().expect("slave")));
            Some((std::fs::File::from(master), slave, modes))
        }
    };
    let mut child = cmd.spawn().expect("broker demo");
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin.write_all(b"pw\n").expect("password");
    }
    let output = Arc::new((Mutex::new(Output::default()), Condvar::new()));
    let pid = child.id();
    let mut readers = Vec::new();
    let streams: [(Box<dyn Read + Send>, bool); 2] = [
        (Box::new(child.stdout.take().expect("stdout")), false),
        (Box::new(child.stderr.take().expect("stderr")), true),
    ];
    for (mut stream, is_err) in streams {
        let output = output.clone();
        readers.push(std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut killed = false;
            loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                let (lock, cv) = &*output;
                let mut o = lock.lock().expect("output");
                if n == 0 {
                    o.closed += 1;
                    cv.notify_all();
                    return;
                }
                let text = String::from_utf8_lossy(&buf[..n]);
                if is_err {
                    o.err.push_str(&text);
                } else {
                    o.out.push_str(&text);
                }
                // The handler writes its whole line with one write(2).
                if !killed && (o.out.contains(NAMED) || o.err.contains(NAMED)) {
                    signal(pid, libc::SIGKILL);
                    killed = true;
                }
                cv.notify_all();
            }
        }));
    }
    Demo {
        child,
        output,
        readers,
        pty,
    }
}

impl Demo {
    /// Waits until stdout (or stderr) holds `needle`; false if the broker
    /// closed both first (a rule taken away may end it early).
    fn wait_for(&self, needle: &str, on_stderr: bool) -> bool {
        self.wait_until(needle, on_stderr, |_| true)
    }

    /// As [`Self::wait_for`], for the whole line that holds `needle`: the
    /// program may write one line in several pieces (Rust's unbuffered
    /// standard error), and a signal sent on the first piece could end it
    /// before the rest is written.
    fn wait_for_line(&self, needle: &str, on_stderr: bool) -> bool {
        self.wait_until(needle, on_stderr, |rest| rest.contains('\n'))
    }

    /// Waits until `needle` is printed with `rest_ok` true of what follows
    /// it; false if the program closed its output or a call was named first.
    fn wait_until(&self, needle: &str, on_stderr: bool, rest_ok: impl Fn(&str) -> bool) -> bool {
        let (lock, cv) = &*self.output;
        let start = Instant::now();
        let mut o = lock.lock().expect("output");
        loop {
            let text = if on_stderr { &o.err } else { &o.out };
            if let Some(at) = text.find(needle) {
                if rest_ok(&text[at + needle.len()..]) {
                    return true;
                }
            }
            if o.closed == 2 || o.out.contains(NAMED) || o.err.contains(NAMED) {
                return false;
            }
            let left = GUARD.saturating_sub(start.elapsed());
            assert!(
                !left.is_zero(),
                "no {needle:?}:\n--- stdout\n{}--- stderr\n{}",
                o.out,
                o.err
            );
            o = cv.wait_timeout(o, left).expect("output").0;
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The vault's pid, from the demo's `vault pid N ready` line.
    fn vault_pid(&self) -> Option<u32> {
        let (lock, _) = &*self.output;
        let o = lock.lock().expect("output");
        o.out
            .split("vault pid ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
    }

    /// Waits until the broker has read up to its first read of the
    /// password, and every one of its threads sleeps: idle between reads.
    fn wait_idle_after_first_read(&self) -> bool {
        self.wait_for("#1 ", false) && wait_threads(self.pid(), "to sleep", |c| c == 'S')
    }

    /// Waits for the password prompt on the terminal (written once echo
    /// is off and the panic hook knows the saved settings).
    fn wait_prompt(&self) -> bool {
        self.wait_for("password (not echoed): ", true)
    }

    fn type_keys(&mut self, keys: &[u8]) {
        use std::io::Write;
        if let Some((master, _, _)) = &mut self.pty {
            master.write_all(keys).expect("typing");
        }
    }

    /// Waits for the broker's end, collects its output, and makes sure its
    /// vault is gone (a vault this test stopped is killed).
    fn finish(mut self) -> Run {
        let status = self.child.wait().expect("wait");
        for r in self.readers.drain(..) {
            r.join().expect("reader");
        }
        if let Some(vault) = self.vault_pid() {
            let start = Instant::now();
            while !gone(vault) {
                if suites::proc_state(vault) == Some('T') || start.elapsed() > GUARD {
                    signal(vault, libc::SIGKILL);
                }
                assert!(
                    start.elapsed() < GUARD + Duration::from_secs(5),
                    "the vault {vault} outlived its broker"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let (lock, _) = &*self.output;
        let o = lock.lock().expect("output");
        Run {
            out: o.out.clone(),
            err: o.err.clone(),
            code: status.code(),
            signal: status.signal(),
            terminal_restored: self
                .pty
                .as_ref()
                .map(|(_, slave, modes)| termios_of(slave).c_lflag == *modes),
        }
    }
}

/// Whether `pid` has ended (a zombie counts: it runs no more).
fn gone(pid: u32) -> bool {
    matches!(suites::proc_state(pid), None | Some('Z' | 'X'))
}

/// The demo idle between two reads a day apart.
const IDLE: [&str; 4] = ["--iterations", "2", "--interval-ms", "86400000"];

/// Runs scenario `name` with `rule` (`broker:8`) taken away, or with none.
fn scenario(name: &str, rule: Option<&str>) -> Run {
    let mut args: Vec<&str> = Vec::new();
    if let Some(r) = rule {
        args.extend(["--sandbox-name-rule", r]);
    }
    match name {
        "broker-lifecycle" => {
            args.extend(["--iterations", "3", "--interval-ms", "20"]);
            spawn_demo(Input::Pipe, &args).finish()
        }
        "broker-sigterm" | "broker-sigstop" => {
            args.extend(IDLE);
            let demo = spawn_demo(Input::Pipe, &args);
            let broker = demo.pid();
            if demo.wait_idle_after_first_read() && name == "broker-sigstop" {
                signal(broker, libc::SIGSTOP);
                if wait_threads(broker, "stopped", |c| c == 'T') {
                    signal(broker, libc::SIGCONT);
                    wait_threads(broker, "to sleep", |c| c == 'S');
                }
            }
            signal(broker, libc::SIGTERM);
            demo.finish()
        }
        "broker-terminal" => {
            args.extend(["--iterations", "2", "--interval-ms", "20"]);
            let mut demo = spawn_demo(Input::Terminal, &args);
            if demo.wait_prompt() {
                demo.type_keys(b"pw\r");
            }
            demo.finish()
        }
        "broker-panic" | "broker-panic-sigabrt-ignored" => {
            args.extend(["--iterations", "2", "--interval-ms", "20"]);
            args.extend(["--selftest", "panic"]);
            let demo = spawn_demo_with(
                Input::Terminal,
                &args,
                name == "broker-panic-sigabrt-ignored",
            );
            if demo.wait_prompt() {
                signal(demo.pid(), libc::SIGUSR1);
            }
            demo.finish()
        }
        "broker-escalation" => {
            args.extend(IDLE);
            let demo = spawn_demo(Input::Pipe, &args);
            if demo.wait_for("#1 ", false) {
                if let Some(vault) = demo.vault_pid() {
                    // Asleep on their rings (each lane has said so in the
                    // ring), so the shutdown request must wake them.
                    wait_threads(vault, "to sleep", |c| c == 'S');
                    signal(vault, libc::SIGSTOP);
                    wait_threads(vault, "stopped", |c| c == 'T');
                }
            }
            signal(demo.pid(), libc::SIGTERM);
            demo.finish()
        }
        "broker-thread-end" => {
            args.extend(IDLE);
            args.extend(["--selftest", "thread-end"]);
            let demo = spawn_demo(Input::Pipe, &args);
            if demo.wait_idle_after_first_read() {
                signal(demo.pid(), libc::SIGUSR1);
                // Gone, or the broker killed by its end's trapped call.
                if demo.wait_for_line("selftest: the selftest thread ends", true)
                    && rulecheck::wait_thread_gone(demo.pid(), "broker-selftest")
                {
                    signal(demo.pid(), libc::SIGTERM);
                }
            }
            demo.finish()
        }
        "broker-segv" | "broker-sigbus" | "broker-clone3" | "broker-contend" | "broker-heap" => {
            args.extend(IDLE);
            let test = name.trim_start_matches("broker-");
            args.extend(["--selftest", test]);
            let demo = spawn_demo(Input::Pipe, &args);
            if demo.wait_idle_after_first_read() {
                signal(demo.pid(), libc::SIGUSR1);
                let last = match test {
                    "clone3" => Some("selftest: clone3 returned"),
                    "contend" => Some("selftest: the lock was contended"),
                    "heap" => Some("selftest: heap grown and given back"),
                    _ => None,
                };
                if last.is_some_and(|l| demo.wait_for_line(l, true)) {
                    signal(demo.pid(), libc::SIGTERM);
                }
            }
            demo.finish()
        }
        other => panic!("no scenario {other:?} in this suite"),
    }
}

/// Policy work: which scenario makes which rule's call, every pair tried
/// (`cargo test -p suites --test rules_broker -- --ignored --nocapture`).
/// What the JSON's `needed_by` and `unreached` should say, measured.
#[test]
#[ignore = "policy work: slow, prints a table"]
fn print_which_broker_scenarios_reach_which_rule() {
    rulecheck::print_matrix("broker.json", |s, r| {
        scenario(s, Some(&r.arg())).named(&r.filter, r.rule, &r.syscall)
    });
}

/// Whether `run` of scenario `name` ended as that scenario does with every
/// rule in place.
fn ended_well(name: &str, run: &Run) -> bool {
    let graceful = |why: &str| {
        run.code == Some(0) && run.out.contains(why) && run.out.contains("vault exited cleanly")
    };
    run.signal != Some(libc::SIGSYS)
        && !run.err.contains("SIGSYS")
        && match name {
            "broker-lifecycle" => graceful("#3 "),
            "broker-sigterm" | "broker-sigstop" => graceful("SIGTERM received"),
            "broker-terminal" => graceful("#2 ") && run.terminal_restored == Some(true),
            "broker-panic" | "broker-panic-sigabrt-ignored" => {
                run.signal == Some(libc::SIGABRT)
                    && run.err.contains("a deliberate panic in the broker")
                    && run.terminal_restored == Some(true)
            }
            "broker-escalation" => {
                run.code == Some(1) && run.err.contains("vault killed (SIGKILL)")
            }
            "broker-segv" => run.signal == Some(libc::SIGSEGV),
            "broker-sigbus" => run.signal == Some(libc::SIGBUS),
            "broker-clone3" => {
                graceful("SIGTERM received")
                    && run
                        .err
                        .contains("selftest: clone3 returned -1 (Function not implemented")
            }
            "broker-contend" => {
                graceful("SIGTERM received")
                    && run.err.contains("selftest: the lock was contended: true")
            }
            "broker-thread-end" => {
                graceful("SIGTERM received")
                    && run.err.contains("selftest: the selftest thread ends")
            }
            "broker-heap" => {
                graceful("SIGTERM received")
                    && run.err.contains("selftest: heap grown and given back on a thread's arena: every allocation succeeded: true")
            }
            _ => false,
        }
}

/// The checks shared with the vault's suite, over the broker's policy.
const CHECKS: rulecheck::Checks<Run> = rulecheck::Checks {
    file: "broker.json",
    scenario,
    ended_well,
    // The escalation waits out two grace periods.
    slowest: Some("broker-escalation"),
};

#[test]
fn each_broker_scenario_alone_names_nothing_and_ends_as_it_should() {
    let failures = CHECKS.each_scenario_alone();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_broker_rule_is_needed_by_the_scenarios_it_names() {
    let failures = CHECKS.every_rule_needed(30);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn no_broker_scenario_reaches_a_rule_marked_unreached() {
    assert!(
        !rulecheck::unreached("broker.json").is_empty(),
        "no rule is marked unreached"
    );
    let failures = CHECKS.nothing_unreached_is_reached();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_broker_rule_a_scenario_does_not_need_is_not_named_by_it() {
    // gettid is made only by abort() (the panic scenario); the lifecycle
    // without it names nothing and ends well, the panic scenario names it.
    let policy = rulecheck::policy("broker.json");
    let broker = policy.iter().find(|f| f.name == "broker").expect("broker");
    let rule = broker
        .rules
        .iter()
        .position(|r| r.syscall == "gettid")
        .expect("a gettid rule")
        + 1;
    let taken = format!("broker:{rule}");
    let calm = scenario("broker-lifecycle", Some(&taken));
    assert!(!calm.any_named(), "{}", calm.text());
    assert_eq!(calm.code, Some(0), "{}", calm.text());
    assert!(
        calm.out.contains("RULE CHECK: broker rule"),
        "{}",
        calm.text()
    );
    let panic = scenario("broker-panic", Some(&taken));
    assert!(panic.named("broker", rule, "gettid"), "{}", panic.text());
    assert!(
        panic.any_named(),
        "named, not merely killed: {}",
        panic.text()
    );
}

#[test]
fn the_rule_check_is_refused_with_the_learning_mode() {
    let run = |args: &[&str]| {
        Command::new(suites::binary("broker"))
            .arg("demo")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("broker")
    };
    let both = run(&[
        "--password-stdin",
        "--sandbox-learning",
        "trap",
        "--sandbox-name-rule",
        "broker:1",
    ]);
    assert_eq!(both.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&both.stderr).contains("not with --sandbox-learning"));
    // A rule the policy does not have is refused with the other options,
    // before a vault starts: demo.rs
    // (a_rule_check_of_a_rule_the_policy_lacks_is_refused_with_the_range_before_a_key_exists).
}
