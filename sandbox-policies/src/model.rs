//! A policy file, read strictly and with its comments.
//!
//! The format is seccompiler's JSON: a map from filter name to
//! `{"mismatch_action", "match_action", "filter": [rules]}`; a rule is
//! `{"syscall", "args"?, "comment"?}`; a condition is `{"index", "type",
//! "op", "val", "comment"?}`.
//!
//! One extension, which [`crate::compile`] resolves before seccompiler sees
//! the file: `"val": "own_pid"` (with `"op": "eq"` only) compares the
//! argument with the pid of the process that installs the filter, a value
//! known only at run time ([`RuntimeValue`]).

use std::fmt;

use serde_json::{Map, Value};

/// Errors reading a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Where in the file (filter name, rule number).
    pub at: String,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.what)
    }
}

impl std::error::Error for ParseError {}

/// A seccomp action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Errno(u32),
    KillThread,
    KillProcess,
    Log,
    Trap,
    Trace(u32),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Allow => f.write_str("allow"),
            Self::Errno(e) => write!(f, "errno {}", crate::bpf::errno_name(*e)),
            Self::KillThread => f.write_str("kill_thread"),
            Self::KillProcess => f.write_str("kill_process"),
            Self::Log => f.write_str("log"),
            Self::Trap => f.write_str("trap"),
            Self::Trace(t) => write!(f, "trace {t}"),
        }
    }
}

/// Width of an argument comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// The low 32 bits only.
    Dword,
    /// All 64 bits.
    Qword,
}

/// Comparison operator of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & mask) == val`.
    MaskedEq(u64),
}

/// A value a condition compares with that is known only when the filter is
/// installed. The compiled program carries 0 in its place, and the list of
/// the instructions to patch (see [`crate::compile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeValue {
    /// `"own_pid"`: the pid (thread-group id) of the process that installs
    /// the filter, as `getpid()` returns it there.
    OwnPid,
}

impl RuntimeValue {
    /// The name the JSON uses for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OwnPid => "own_pid",
        }
    }
}

/// One argument condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub index: u8,
    pub width: Width,
    pub op: Op,
    /// The constant compared with; 0 when `runtime` is set.
    pub val: u64,
    /// Set when the value is known only at run time (`"val": "own_pid"`).
    pub runtime: Option<RuntimeValue>,
    pub comment: Option<String>,
}

impl Condition {
    /// Whether the argument value `arg` satisfies this condition. A
    /// condition on a run-time value holds for no value known in advance:
    /// use [`Condition::holds_for`].
    pub fn holds(&self, arg: u64) -> bool {
        self.runtime.is_none() && self.compare(arg, self.val)
    }

    /// Whether `arg` satisfies this condition in a process whose pid is
    /// `own_pid` (the value the filter is patched with when it is installed).
    pub fn holds_for(&self, arg: u64, own_pid: u32) -> bool {
        let val = match self.runtime {
            None => self.val,
            Some(RuntimeValue::OwnPid) => u64::from(own_pid),
        };
        self.compare(arg, val)
    }

    fn compare(&self, arg: u64, val: u64) -> bool {
        let arg = match self.width {
            Width::Dword => arg & 0xffff_ffff,
            Width::Qword => arg,
        };
        match self.op {
            Op::Eq => arg == val,
            Op::Ne => arg != val,
            Op::Lt => arg < val,
            Op::Le => arg <= val,
            Op::Gt => arg > val,
            Op::Ge => arg >= val,
            Op::MaskedEq(m) => arg & m == val,
        }
    }
}

/// One rule: a system call, allowed when all its conditions hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub syscall: String,
    pub args: Vec<Condition>,
    pub comment: Option<String>,
    /// `"needed_by"`: the scenarios of the "every rule is needed" suite
    /// (`tests/tests/rules.rs`, names in [`crate::lint::SCENARIOS`]) that
    /// must make this rule's call: with the rule taken away, each must see
    /// it refused.
    pub needed_by: Vec<String>,
    /// `"unreached"`: why the rule stays though no scenario can reach its
    /// call on this machine (the suite checks that none does).
    pub unreached: Option<String>,
}

/// The fields of a rule this project adds to seccompiler's format; they
/// are removed before seccompiler reads a policy.
pub const OWN_RULE_FIELDS: [&str; 2] = ["needed_by", "unreached"];

/// One named filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub mismatch_action: Action,
    pub match_action: Action,
    pub rules: Vec<Rule>,
}

fn err(at: impl Into<String>, what: impl Into<String>) -> ParseError {
    ParseError {
        at: at.into(),
        what: what.into(),
    }
}

fn only_fields(obj: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), ParseError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(err(at, format!("unknown field {k:?}"))),
        None => Ok(()),
    }
}

fn parse_action(v: &Value, at: &str) -> Result<Action, ParseError> {
    match v {
        Value::String(s) => match s.as_str() {
            "allow" => Ok(Action::Allow),
            "kill_thread" => Ok(Action::KillThread),
            "kill_process" => Ok(Action::KillProcess),
            "log" => Ok(Action::Log),
            "trap" => Ok(Action::Trap),
            other => Err(err(at, format!("unknown action {other:?}"))),
        },
        Value::Object(o) if o.len() == 1 => {
            let (k, n) = o.iter().next().ok_or_else(|| err(at, "empty action"))?;
            let n = n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| err(at, "action argument must be a u32"))?;
            match k.as_str() {
                "errno" => Ok(Action::Errno(n)),
                "trace" => Ok(Action::Trace(n)),
                other => Err(err(at, format!("unknown action {other:?}"))),
            }
        }
        _ => Err(err(
            at,
            "an action is a string or {\"errno\": N} / {\"trace\": N}",
        )),
    }
}

fn comment(obj: &Map<String, Value>, at: &str) -> Result<Option<String>, ParseError> {
    match obj.get("comment") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(err(at, "comment must be a string")),
    }
}

fn parse_condition(v: &Value, at: &str) -> Result<Condition, ParseError> {
    let o = v
        .as_object()
        .ok_or_else(|| err(at, "a condition is an object"))?;
    only_fields(o, &["index", "type", "op", "val", "comment"], at)?;
    let index = o
        .get("index")
        .and_then(Value::as_u64)
        .and_then(|i| u8::try_from(i).ok())
        .filter(|i| *i <= 5)
        .ok_or_else(|| err(at, "index must be 0..=5"))?;
    let width = match o.get("type").and_then(Value::as_str) {
        Some("dword") => Width::Dword,
        Some("qword") => Width::Qword,
        _ => return Err(err(at, "type must be \"dword\" or \"qword\"")),
    };
    let op = match o.get("op") {
        Some(Value::String(s)) => match s.as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "lt" => Op::Lt,
            "le" => Op::Le,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            other => return Err(err(at, format!("unknown op {other:?}"))),
        },
        Some(Value::Object(m)) if m.len() == 1 => {
            match m.get("masked_eq").and_then(Value::as_u64) {
                Some(mask) => Op::MaskedEq(mask),
                None => return Err(err(at, "op object must be {\"masked_eq\": MASK}")),
            }
        }
        _ => return Err(err(at, "op is missing or malformed")),
    };
    let (val, runtime) = match o.get("val") {
        Some(Value::String(s)) => {
            let runtime = match s.as_str() {
                "own_pid" => RuntimeValue::OwnPid,
                other => {
                    return Err(err(
                        at,
                        format!("unknown run-time value {other:?} (the one known is \"own_pid\")"),
                    ))
                }
            };
            if op != Op::Eq {
                return Err(err(
                    at,
                    format!(
                        "{:?} may only be compared with \"op\": \"eq\"",
                        runtime.as_str()
                    ),
                ));
            }
            (0, Some(runtime))
        }
        Some(v) => (
            v.as_u64()
                .ok_or_else(|| err(at, "val must be an unsigned integer or \"own_pid\""))?,
            None,
        ),
        None => return Err(err(at, "val missing")),
    };
    Ok(Condition {
        index,
        width,
        op,
        val,
        runtime,
        comment: comment(o, at)?,
    })
}

/// Reads a policy file: every filter it defines, rules in file order.
pub fn parse(json: &str) -> Result<Vec<Filter>, ParseError> {
    let root: Value = serde_json::from_str(json).map_err(|e| err("file", e.to_string()))?;
    let root = root
        .as_object()
        .ok_or_else(|| err("file", "the top level is an object of named filters"))?;
    let mut filters = Vec::new();
    for (name, f) in root {
        let at = format!("filter {name:?}");
        let f = f
            .as_object()
            .ok_or_else(|| err(&at, "a filter is an object"))?;
        only_fields(f, &["mismatch_action", "match_action", "filter"], &at)?;
        let mismatch_action = parse_action(
            f.get("mismatch_action")
                .ok_or_else(|| err(&at, "mismatch_action missing"))?,
            &at,
        )?;
        let match_action = parse_action(
            f.get("match_action")
                .ok_or_else(|| err(&at, "match_action missing"))?,
            &at,
        )?;
        let list = f
            .get("filter")
            .and_then(Value::as_array)
            .ok_or_else(|| err(&at, "filter must be a list of rules"))?;
        let mut rules = Vec::new();
        for (i, r) in list.iter().enumerate() {
            let at = format!("filter {name:?} rule {}", i + 1);
            let r = r
                .as_object()
                .ok_or_else(|| err(&at, "a rule is an object"))?;
            only_fields(
                r,
                &["syscall", "args", "comment", "needed_by", "unreached"],
                &at,
            )?;
            let syscall = r
                .get("syscall")
                .and_then(Value::as_str)
                .ok_or_else(|| err(&at, "syscall missing"))?
                .to_owned();
            let args = match r.get("args") {
                None => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|c| parse_condition(c, &at))
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(err(&at, "args must be a list")),
            };
            let needed_by = match r.get("needed_by") {
                None => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| err(&at, "needed_by must be a list of scenario names"))
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(err(&at, "needed_by must be a list of scenario names")),
            };
            let unreached = match r.get("unreached") {
                None => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(err(&at, "unreached must be a string (the reason)")),
            };
            rules.push(Rule {
                syscall,
                args,
                comment: comment(r, &at)?,
                needed_by,
                unreached,
            });
        }
        filters.push(Filter {
            name: name.clone(),
            mismatch_action,
            match_action,
            rules,
        });
    }
    Ok(filters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules_conditions_and_comments() {
        let f = parse(
            r#"{"x": {"mismatch_action": "kill_process", "match_action": "allow", "filter": [
                {"syscall": "write", "comment": "why", "args": [{"index": 0, "type": "dword", "op": "eq", "val": 2, "comment": "fd"}]},
                {"syscall": "mmap", "comment": "m", "args": [{"index": 2, "type": "dword", "op": {"masked_eq": 4}, "val": 0}]}
            ]}}"#,
        )
        .unwrap();
        assert_eq!(f[0].rules.len(), 2);
        assert_eq!(f[0].rules[0].args[0].comment.as_deref(), Some("fd"));
        assert_eq!(f[0].rules[1].args[0].op, Op::MaskedEq(4));
        assert!(f[0].rules[1].args[0].holds(3) && !f[0].rules[1].args[0].holds(7));
    }

    #[test]
    fn own_pid_is_a_run_time_value_compared_for_equality() {
        let f = parse(
            r#"{"x": {"mismatch_action": "kill_process", "match_action": "allow", "filter": [
                {"syscall": "tgkill", "comment": "abort", "args": [
                    {"index": 0, "type": "dword", "op": "eq", "val": "own_pid", "comment": "itself"},
                    {"index": 2, "type": "dword", "op": "eq", "val": 6, "comment": "SIGABRT"}]}
            ]}}"#,
        )
        .unwrap();
        let pin = &f[0].rules[0].args[0];
        assert_eq!(pin.runtime, Some(RuntimeValue::OwnPid));
        assert_eq!(pin.val, 0);
        assert!(pin.holds_for(4242, 4242));
        // dword: the kernel reads a pid_t, the low 32 bits.
        assert!(pin.holds_for(0xffff_ffff_0000_1092, 4242));
        assert!(!pin.holds_for(4243, 4242) && !pin.holds_for(0, 4242));
        // Without a pid, no value is known to satisfy it; not even 0.
        assert!(!pin.holds(0) && !pin.holds(4242));
        // A constant condition reads the same either way.
        let sig = &f[0].rules[0].args[1];
        assert_eq!(sig.runtime, None);
        assert!(sig.holds(6) && sig.holds_for(6, 4242) && !sig.holds_for(9, 4242));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        let bad = [
            r#"{"x": {"mismatch_action": "kill_process", "match_action": "allow", "filter": [], "extra": 1}}"#,
            r#"{"x": {"mismatch_action": "explode", "match_action": "allow", "filter": []}}"#,
            r#"{"x": {"mismatch_action": "kill_process", "match_action": "allow", "filter": [{"syscall": "read", "why": "x"}]}}"#,
            r#"{"x": {"mismatch_action": "kill_process", "match_action": "allow", "filter": [{"syscall": "read", "args": [{"index": 6, "type": "dword", "op": "eq", "val": 0}]}]}}"#,
            r#"{"x": {"mismatch_action": "kill_process", "match_action": "allow", "filter": [{"syscall": "read", "args": [{"index": 0, "type": "dword", "op": "eq", "val": "0"}]}]}}"#,
            r#"{"x": {"mismatch_action": "kill_process", "match_action": "allow", "filter": [{"syscall": "read", "args": [{"index": 0, "type": "dword", "op": "eq", "val": "own_tid"}]}]}}"#,
            r#"{"x": {"mismatch_action": "kill_process", "match_action": "allow", "filter": [{"syscall": "read", "args": [{"index": 0, "type": "dword", "op": "ne", "val": "own_pid"}]}]}}"#,
            r#"{"x": {"mismatch_action": "kill_process", "match_action": "allow", "filter": [{"syscall": "read", "args": [{"index": 0, "type": "dword", "op": {"masked_eq": 7}, "val": "own_pid"}]}]}}"#,
            r#"{"x": {"mismatch_action": "kill_process", "match_action": "allow", "filter": [{"syscall": "read", "args": [{"index": 0, "type": "dword", "op": "eq"}]}]}}"#,
        ];
        for b in bad {
            assert!(parse(b).is_err(), "{b}");
        }
    }
}
