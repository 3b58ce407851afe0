//! `policy verify`: shows a reviewer that the filters the kernel holds for
//! a running vault or broker are the ones `REVIEW.md` describes.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use policy::live::{self, Order};
use policy::verify::{self, ExpectedFilter, Identity, ProcessCheck};

/// Exit status when a check ran and found a difference.
const DIFFERS: u8 = 1;
/// Exit status for a usage error.
const USAGE: u8 = 2;
/// Exit status when the filters could not be read at all.
const CANNOT: u8 = 3;

pub fn main(args: &[String]) -> ExitCode {
    match args {
        [flag, broker] if flag == "--start" => start(Path::new(broker)),
        [pid] => one(pid, None),
        [pid, flag, kind] if flag == "--policy" => one(pid, Some(kind)),
        [pid, flag] if flag.starts_with("--policy=") => one(pid, flag.strip_prefix("--policy=")),
        _ => {
            eprintln!("{}", super::USAGE);
            ExitCode::from(USAGE)
        }
    }
}

fn one(pid: &str, kind: Option<&str>) -> ExitCode {
    let Ok(pid) = pid.parse::<u32>() else {
        eprintln!(
            "policy verify: {pid:?} is not a process id\n{}",
            super::USAGE
        );
        return ExitCode::from(USAGE);
    };
    let order = match prepare() {
        Ok(o) => o,
        Err(code) => return code,
    };
    let kind = match kind {
        Some(k) => k.to_owned(),
        None => match comm(pid) {
            // A vault run from its sealed copy is named after the memfd.
            Some(c) if c == "vault" || c == "memfd:vault" => "vault".to_owned(),
            Some(c) if c == "broker" => c,
            Some(c) => {
                eprintln!(
                    "policy verify: process {pid} is {c:?}, neither a vault nor a broker; \
                     say which policy it should hold with --policy vault|broker"
                );
                return ExitCode::from(USAGE);
            }
            None => {
                eprintln!("policy verify: no process {pid}");
                return ExitCode::from(CANNOT);
            }
        },
    };
    match process(pid, &kind, order) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(DIFFERS),
        Err(e) => {
            eprintln!("policy verify: {e}");
            ExitCode::from(CANNOT)
        }
    }
}

/// The checks that come before any process: not under seccomp ourselves,
/// and which index the kernel gives the oldest filter.
fn prepare() -> Result<Order, ExitCode> {
    if live::self_under_seccomp() {
        eprintln!(
            "policy verify: this process runs under seccomp, and the kernel shows no filter to \
             a process that does (EACCES); run it outside any sandbox"
        );
        return Err(ExitCode::from(CANNOT));
    }
    match live::probe_order() {
        Ok(o) => {
            println!(
                "kernel: PTRACE_SECCOMP_GET_FILTER index 0 is the {} filter (probed: a child \
                 installed two known filters and they were read back); filters are shown in \
                 install order",
                if o == Order::OldestFirst {
                    "oldest"
                } else {
                    "newest"
                }
            );
            Ok(o)
        }
        Err(e) => {
            eprintln!("policy verify: cannot read seccomp filters on this machine: {e}");
            Err(ExitCode::from(CANNOT))
        }
    }
}

/// The pid of `pid` as the process itself sees it: the last of `NSpid` in
/// its status (its innermost pid namespace), or `pid` where the kernel
/// does not say.
fn own_pid(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|v| v.split_whitespace().last().and_then(|p| p.parse().ok()))
        })
        .unwrap_or(pid)
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_owned())
}

fn dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `sha256 NAME: HEX` lines of `REVIEW.md`.
fn published() -> Vec<(String, String)> {
    std::fs::read_to_string(dir().join("REVIEW.md"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("sha256 ")?;
            let (name, hex) = rest.split_once(": ")?;
            Some((name.to_owned(), hex.trim().to_owned()))
        })
        .collect()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Checks process `pid` against the policy of `kind`; prints the report.
/// `Ok(true)` when the process holds exactly the reviewed programs.
fn process(pid: u32, kind: &str, order: Order) -> Result<bool, String> {
    let expected = verify::expected(dir(), kind)?;
    let threads = live::read_process(pid, order)?;
    let name = comm(pid).unwrap_or_else(|| "?".into());
    println!(
        "\nprocess {pid} ({name}), checked against sandbox-policies/{kind}.json: {}, each \
         stopped under ptrace in turn and let go",
        plural(threads.len(), "thread", "threads")
    );
    let (main_tid, main_held) = &threads[0];
    // The pid the process wrote into its filter is the one getpid() gave
    // it: in its own pid namespace (a container's), not in this one's.
    let own = own_pid(pid);
    let check = verify::check(&expected, main_held, own);
    let published = published();
    let mut ok = report(&check, &expected, &published);
    // Every thread must hold the same stack (TSYNC installs it in all).
    let differing: Vec<_> = threads
        .iter()
        .filter(|(_, h)| h != main_held)
        .map(|(t, _)| *t)
        .collect();
    if differing.is_empty() {
        println!(
            "  threads: all {} hold the same filters as thread {main_tid} ✓",
            threads.len()
        );
    } else {
        ok = false;
        println!(
            "  threads: {} other filters than thread {main_tid}: {differing:?} ✗",
            plural(differing.len(), "thread holds", "threads hold")
        );
        for (tid, held) in threads.iter().filter(|(t, _)| differing.contains(t)) {
            let c = verify::check(&expected, held, own);
            println!("  thread {tid}:");
            report(&c, &expected, &published);
        }
    }
    println!(
        "  verdict: {}",
        if ok {
            "the kernel holds exactly the reviewed enforcing programs, and they mean what the JSON says ✓"
        } else {
            "NOT the reviewed policy ✗"
        }
    );
    Ok(ok)
}

/// Prints the check of one thread's stack; whether it passed.
fn report(c: &ProcessCheck, expected: &[ExpectedFilter], published: &[(String, String)]) -> bool {
    let mut ok = c.passed();
    let n = c.filters.len();
    if n != c.expected_count {
        println!(
            "  the kernel holds {}, the policy installs {} ✗",
            plural(n, "filter", "filters"),
            plural(c.expected_count, "filter", "filters")
        );
    }
    for f in &c.filters {
        let label = f
            .expected
            .as_deref()
            .unwrap_or("(no filter of the policy here)");
        println!(
            "  filter {} of {n}{}: {label}",
            f.position + 1,
            if f.position == 0 {
                " (installed first)"
            } else {
                ""
            }
        );
        println!("    sha256 {label}: {}", f.hash);
        match published
            .iter()
            .find(|(name, _)| Some(name.as_str()) == f.expected.as_deref())
        {
            Some((_, hex)) if *hex == f.hash => println!("    the same hash as REVIEW.md's ✓"),
            Some((_, hex)) => {
                ok = false;
                println!("    REVIEW.md publishes {hex} ✗");
            }
            None if f.expected.is_some() => {
                println!("    (REVIEW.md has no sha256 line for it)");
            }
            None => {}
        }
        let flags = if f.flags == 0 {
            "no flags".to_owned()
        } else {
            format!(
                "flags {:#x} ✗ (SECCOMP_FILTER_FLAG_LOG: the policy sets none)",
                f.flags
            )
        };
        println!(
            "    {}, {flags}",
            plural(f.instructions, "instruction", "instructions")
        );
        if f.undecodable {
            println!("    the program is not a whole number of instructions ✗");
        }
        let e = f
            .expected
            .as_ref()
            .and_then(|name| expected.iter().find(|e| &e.name == name));
        match (&f.identity, e) {
            (Some(Identity::Enforcing { pids }), Some(e)) => {
                println!(
                    "    byte-identical to the enforcing program compiled from {} ✓",
                    e.file
                );
                pid_slots(&e.enforce.pid_slots, pids, c.pid);
            }
            (Some(Identity::Learning { mode, pids }), Some(e)) => {
                println!(
                    "    the LEARNING-mode program ({mode}) compiled from {}, not the enforcing \
                     one: the process was started with --sandbox-learning {mode} ✗",
                    e.file
                );
                if let Some((_, p)) = e.learning.iter().find(|(m, _)| m == mode) {
                    pid_slots(&p.pid_slots, pids, c.pid);
                }
            }
            (Some(Identity::Different), Some(e)) => println!(
                "    NOT the program compiled from {} ({} there) ✗",
                e.file,
                plural(
                    e.enforce.bpf.len() / policy::bpf::INSN_LEN,
                    "instruction",
                    "instructions"
                )
            ),
            _ => {}
        }
        if let Some(why) = &f.uncoverable {
            println!("    the evaluation cannot cover this program: {why} ✗");
        }
        if let Some(m) = &f.meaning {
            if m.disagreements.is_empty() {
                println!(
                    "    meaning: {} evaluated by an interpreter independent of the compiler, \
                     each with the result the JSON gives ✓",
                    plural(m.calls, "call", "calls")
                );
            } else {
                println!(
                    "    meaning: {} of {} evaluated differ from the JSON ✗",
                    m.disagreements.len(),
                    plural(m.calls, "call", "calls")
                );
                print!("{}", verify::render_disagreements(m, "      "));
            }
        }
    }
    let m = &c.combined;
    if m.disagreements.is_empty() {
        println!(
            "  all filters together, combined as the kernel does (the most restrictive result \
             wins): {}, each as the JSON gives ✓",
            plural(m.calls, "call", "calls")
        );
    } else {
        ok = false;
        println!(
            "  all filters together, combined as the kernel does: {} of {} differ from the JSON ✗",
            m.disagreements.len(),
            plural(m.calls, "call", "calls")
        );
        print!("{}", verify::render_disagreements(m, "    "));
    }
    ok
}

fn pid_slots(slots: &[u32], pids: &[u32], pid: u32) {
    if slots.is_empty() {
        println!("    run-time values: none");
        return;
    }
    for (slot, found) in slots.iter().zip(pids) {
        println!(
            "    instruction {slot} holds the pid {found}: {}",
            if *found == pid {
                "the process's own ✓"
            } else {
                "NOT the process's own ✗"
            }
        );
    }
}

/// `make policy-verify`: starts `BROKER demo` with a throwaway password and
/// a day between reads, waits for its first read (both sandboxes are up by
/// then), verifies the broker and its vault, and stops the demo with
/// SIGTERM (its graceful shutdown).
fn start(broker: &Path) -> ExitCode {
    let order = match prepare() {
        Ok(o) => o,
        Err(code) => return code,
    };
    let child = Command::new(broker)
        .args([
            "demo",
            "--password-stdin",
            "--interval-ms",
            "86400000",
            "--iterations",
            "2",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("policy verify: cannot start {}: {e}", broker.display());
            return ExitCode::from(CANNOT);
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"policy-verify\n");
    }
    let broker_pid = child.id();
    let mut vault_pid = None;
    let mut reached = false;
    let mut seen = Vec::new();
    if let Some(out) = child.stdout.take() {
        let mut lines = BufReader::new(out).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.trim_start().strip_prefix("vault pid ") {
                vault_pid = rest
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse::<u32>().ok());
            }
            let first_read = line.trim_start().starts_with("#1 ");
            seen.push(line);
            if first_read {
                reached = true;
                break;
            }
        }
        // Keep draining the demo's output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
    }
    let result = match (reached, vault_pid) {
        (true, Some(vault)) => {
            println!(
                "started {} demo: broker pid {broker_pid}, vault pid {vault}; both sandboxes are \
                 up (the first read went through)",
                broker.display()
            );
            let mut all = true;
            for (pid, kind) in [(vault, "vault"), (broker_pid, "broker")] {
                match process(pid, kind, order) {
                    Ok(ok) => all &= ok,
                    Err(e) => {
                        eprintln!("policy verify: {e}");
                        all = false;
                    }
                }
            }
            Ok(all)
        }
        _ => Err(format!(
            "the demo did not reach its first read; its output:\n{}",
            seen.join("\n")
        )),
    };
    // SAFETY: a signal to the child we started and have not reaped.
    unsafe {
        libc::kill(
            libc::pid_t::try_from(broker_pid).unwrap_or(0),
            libc::SIGTERM,
        )
    };
    let status = child.wait();
    match result {
        Ok(true) => {
            println!("\nboth processes hold exactly the reviewed policy ✓");
            match status {
                Ok(s) if s.success() => ExitCode::SUCCESS,
                Ok(s) => {
                    eprintln!("policy verify: the demo then ended with {s}");
                    ExitCode::from(CANNOT)
                }
                Err(e) => {
                    eprintln!("policy verify: cannot wait for the demo: {e}");
                    ExitCode::from(CANNOT)
                }
            }
        }
        Ok(false) => ExitCode::from(DIFFERS),
        Err(e) => {
            eprintln!("policy verify: {e}");
            ExitCode::from(CANNOT)
        }
    }
}
