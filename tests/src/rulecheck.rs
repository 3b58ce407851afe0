//! What the "every rule is needed" suites share (`tests/tests/rules.rs`
//! for the vault's policy, `rules_broker.rs` for the broker program's):
//! the policy and its scenarios, waiting on thread states, and running the
//! claims two at a time.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use policy::model::Filter;

/// The calls glibc makes, on some path, with every signal blocked, where a
/// trap cannot run its handler and the kernel kills instead (SIGSYS): a
/// thread's end, which first blocks every signal, then gives the unused part
/// of the thread's stack back (`madvise(MADV_DONTNEED)`, for a stack glibc
/// allocated) and makes its last `exit`. For these alone, a kill by SIGSYS
/// with nothing named counts as the call made (every scenario alone is
/// checked never to end by SIGSYS, and with nothing named nothing was
/// answered ENOSYS: the run was the plain one up to that call). A thread
/// that is not joined may not get that far before the process exits, so a
/// rule shown this way is shown by a thread whose end is waited for: the
/// vault joins its lanes; the broker's `thread-end` selftest ends a thread
/// while the broker goes on, and the suite waits until it is gone.
pub const MADE_WITH_SIGNALS_BLOCKED: &[&str] = &["exit", "madvise"];

/// One rule of a policy, as `--sandbox-name-rule` and the suites name it.
#[derive(Debug, Clone)]
pub struct RuleRef {
    /// The filter (`vault`, `vault-errno`, ...).
    pub filter: String,
    /// From 1, as `REVIEW.md` numbers it.
    pub rule: usize,
    pub syscall: String,
}

impl RuleRef {
    /// `FILTER:RULE`, the option's argument.
    pub fn arg(&self) -> String {
        format!("{}:{}", self.filter, self.rule)
    }
}

/// Every rule of `file`, with its `needed_by` and whether it is marked
/// `unreached`.
pub fn rules(file: &str) -> Vec<(RuleRef, Vec<String>, bool)> {
    policy(file)
        .into_iter()
        .flat_map(|f| {
            f.rules
                .into_iter()
                .enumerate()
                .map(move |(i, r)| {
                    (
                        RuleRef {
                            filter: f.name.clone(),
                            rule: i + 1,
                            syscall: r.syscall,
                        },
                        r.needed_by,
                        r.unreached.is_some(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Each claim of `file`: (rule, a scenario its `needed_by` names).
pub fn claims(file: &str) -> Vec<(RuleRef, String)> {
    rules(file)
        .into_iter()
        .flat_map(|(r, needed, _)| needed.into_iter().map(move |s| (r.clone(), s)))
        .collect()
}

/// Each rule of `file` marked `unreached`, with each scenario of the file.
pub fn unreached(file: &str) -> Vec<(RuleRef, String)> {
    rules(file)
        .into_iter()
        .filter(|(_, _, unreached)| *unreached)
        .flat_map(|(r, _, _)| {
            scenarios(file)
                .into_iter()
                .map(move |s| (r.clone(), s.to_owned()))
        })
        .collect()
}

/// Policy work: runs every scenario of `file` with every rule taken away
/// and prints, per rule, the scenarios that made its call (`reaches`).
pub fn print_matrix(file: &str, reaches: impl Fn(&str, &RuleRef) -> bool + Sync) {
    let jobs: Vec<RuleRef> = rules(file).into_iter().map(|(r, _, _)| r).collect();
    let mut rows: Vec<(String, usize, String)> = Vec::new();
    let lines = std::sync::Mutex::new(&mut rows);
    run_all(jobs, |r| {
        let reached: Vec<&str> = scenarios(file)
            .into_iter()
            .filter(|s| reaches(s, r))
            .collect();
        lines.lock().expect("rows").push((
            r.filter.clone(),
            r.rule,
            format!(
                "{}:{:<3} {:<18} {}",
                r.filter,
                r.rule,
                r.syscall,
                reached.join(" ")
            ),
        ));
        None
    });
    rows.sort();
    for (_, _, line) in rows {
        println!("{line}");
    }
}

/// The longest a wait on a process's state may take before the test fails
/// (a guard against a hang, never a timing the test depends on).
pub const GUARD: Duration = Duration::from_secs(30);

/// The policy file `file` (`vault.json`, `broker.json`) as the suites read it.
pub fn policy(file: &str) -> Vec<Filter> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sandbox-policies")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    policy::model::parse(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The scenarios of `file`'s suite, from the lint's list.
pub fn scenarios(file: &str) -> Vec<&'static str> {
    policy::lint::SCENARIOS
        .iter()
        .filter(|(f, _, _)| *f == file)
        .map(|(_, name, _)| *name)
        .collect()
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: a signal to a process of the test; kill has no memory effects.
    unsafe { libc::kill(i32::try_from(pid).expect("pid"), sig) };
}

/// The state letter of thread `tid` of `pid`, `None` once it is gone.
pub fn thread_state(pid: u32, tid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

/// Looks every 2 ms until `check` gives an answer; after [`GUARD`], fails
/// with `what` and the last thing `check` saw.
fn poll_proc<S: std::fmt::Debug + Default>(
    what: &str,
    mut check: impl FnMut(&mut S) -> Option<bool>,
) -> bool {
    let start = Instant::now();
    let mut seen = S::default();
    loop {
        if let Some(answer) = check(&mut seen) {
            return answer;
        }
        assert!(start.elapsed() < GUARD, "{what}: {seen:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until `done(state)` holds for every thread of `pid`, or the
/// process has ended (a rule taken away may end it early: then there is
/// nothing to wait for). False if it ended.
pub fn wait_threads(pid: u32, what: &str, done: impl Fn(char) -> bool) -> bool {
    poll_proc(
        &format!("the threads of {pid} never got {what}"),
        |states: &mut Vec<Option<char>>| {
            *states = crate::threads(pid)
                .into_iter()
                .map(|t| thread_state(pid, t))
                .collect();
            if states.is_empty() || states.iter().any(|s| matches!(s, None | Some('Z' | 'X'))) {
                return Some(false);
            }
            states.iter().all(|s| s.is_some_and(&done)).then_some(true)
        },
    )
}

/// Waits until no thread of `pid` is named `comm`, or the process has
/// ended (a rule taken away may end it: then there is nothing to wait
/// for). False if it ended.
pub fn wait_thread_gone(pid: u32, comm: &str) -> bool {
    poll_proc(
        &format!("the thread {comm} of {pid} never ended"),
        |tasks: &mut Vec<u32>| {
            *tasks = crate::threads(pid);
            if tasks.is_empty() || matches!(crate::proc_state(pid), None | Some('Z' | 'X')) {
                return Some(false);
            }
            let named = tasks.iter().any(|t| {
                std::fs::read_to_string(format!("/proc/{pid}/task/{t}/comm"))
                    .is_ok_and(|c| c.trim_end() == comm)
            });
            (!named).then_some(true)
        },
    )
}

/// One run of a scenario, as the shared checks read it.
pub trait ScenarioRun {
    /// Whether the run made the call of `filter` rule `rule` (`syscall`)
    /// that was taken away (the rule check named it).
    fn named(&self, filter: &str, rule: usize, syscall: &str) -> bool;
    /// Whether the program took that rule away, and says it is about
    /// `syscall` (a program built from other JSON would number its rules
    /// differently).
    fn took_away(&self, filter: &str, rule: usize, syscall: &str) -> bool;
    /// Whether any call was named.
    fn any_named(&self) -> bool;
    /// How the run ended and what it printed, for a failure's message.
    fn text(&self) -> String;
}

/// The checks the vault's and the broker's suites share, over one policy
/// file and that suite's scenarios. Each returns the failures found.
#[derive(Debug)]
pub struct Checks<R> {
    /// The policy file (`vault.json`, `broker.json`).
    pub file: &'static str,
    /// Runs scenario `name` with a rule (`vault:8`) taken away, or none.
    pub scenario: fn(&str, Option<&str>) -> R,
    /// Whether a run of scenario `name` ended as that scenario does with
    /// every rule in place.
    pub ended_well: fn(&str, &R) -> bool,
    /// The scenario that runs longest, started first so that it overlaps
    /// the rest.
    pub slowest: Option<&'static str>,
}

impl<R: ScenarioRun> Checks<R> {
    /// The positive control: each scenario, with no rule taken away, names
    /// nothing and ends as it should.
    pub fn each_scenario_alone(&self) -> Vec<String> {
        run_all(scenarios(self.file), |name| {
            let run = (self.scenario)(name, None);
            if run.any_named() {
                return Some(format!(
                    "{name}: a call was named with no rule taken away:\n{}",
                    run.text()
                ));
            }
            (!(self.ended_well)(name, &run)).then(|| format!("{name}: ended badly\n{}", run.text()))
        })
    }

    /// Each rule's `"needed_by"` scenarios, run with it taken away, make
    /// its call. At least `least` claims are expected.
    pub fn every_rule_needed(&self, least: usize) -> Vec<String> {
        let jobs = self.slowest_first(claims(self.file));
        assert!(jobs.len() >= least, "only {} claims", jobs.len());
        run_all(jobs, |(r, name)| {
            let (filter, rule, syscall) = (&r.filter, r.rule, &r.syscall);
            let run = (self.scenario)(name, Some(&r.arg()));
            if !run.took_away(filter, rule, syscall) {
                return Some(format!(
                    "{filter} rule {rule} ({syscall}): the program did not take that rule away (built from other JSON?):\n{}",
                    run.text()
                ));
            }
            (!run.named(filter, rule, syscall)).then(|| {
                format!(
                    "{filter} rule {rule} ({syscall}): scenario {name} never made its call\n{}",
                    run.text()
                )
            })
        })
    }

    /// No scenario makes the call of a rule marked `"unreached"`, in a run
    /// that did take the rule away and otherwise ended as it should (else
    /// nothing was checked).
    pub fn nothing_unreached_is_reached(&self) -> Vec<String> {
        let jobs = self.slowest_first(unreached(self.file));
        run_all(jobs, |(r, name)| {
            let (filter, rule, syscall) = (&r.filter, r.rule, &r.syscall);
            let run = (self.scenario)(name, Some(&r.arg()));
            if !run.took_away(filter, rule, syscall) || !(self.ended_well)(name, &run) {
                return Some(format!(
                    "{filter} rule {rule} ({syscall}), scenario {name}: the run did not take the rule away and end as the scenario does:\n{}",
                    run.text()
                ));
            }
            run.named(filter, rule, syscall).then(|| {
                format!(
                    "{filter} rule {rule} ({syscall}) is marked unreached, but scenario {name} makes its call:\n{}",
                    run.text()
                )
            })
        })
    }

    fn slowest_first(&self, mut jobs: Vec<(RuleRef, String)>) -> Vec<(RuleRef, String)> {
        if let Some(slow) = self.slowest {
            jobs.sort_by_key(|(_, s)| s != slow);
        }
        jobs
    }
}

/// Runs `jobs` two at a time (the machines have two cores; each run is a
/// broker and a vault generating a key); the failures `work` reports.
pub fn run_all<T: Send>(jobs: Vec<T>, work: impl Fn(&T) -> Option<String> + Sync) -> Vec<String> {
    let queue = Mutex::new(jobs.into_iter());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let job = queue.lock().expect("queue").next();
                let Some(job) = job else { break };
                if let Some(f) = work(&job) {
                    failures.lock().expect("failures").push(f);
                }
            });
        }
    });
    failures.into_inner().expect("failures")
}
