//! `policy lint`, `policy review` and `policy verify`: the review toolchain
//! for `sandbox-policies/`. Run through `make policy-lint`,
//! `make policy-review` and `make policy-verify`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[path = "policy/verify.rs"]
mod verify;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn lint() -> ExitCode {
    let mut bad = 0;
    for file in policy::POLICY_FILES {
        let path = dir().join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        };
        let filters = match policy::model::parse(&text) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("{file}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let findings = policy::lint::lint_set(&filters);
        for finding in &findings {
            eprintln!("{file}: {finding}");
        }
        bad += findings.len();
        for f in &filters {
            let arch = std::env::consts::ARCH;
            let action = if f.name.ends_with(policy::lint::OVERLAY_SUFFIX) {
                "allow"
            } else {
                "kill_process"
            };
            if let Err(e) = policy::compile::compile(&text, &f.name, action, arch) {
                eprintln!("{file}: filter {:?} does not compile: {e}", f.name);
                bad += 1;
            } else if findings.iter().all(|x| x.filter != f.name) {
                let n = policy::render::count(f.rules.len(), "rule", "rules");
                println!("{file}: filter {:?}: {n}, lint clean, compiles", f.name);
            }
        }
    }
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{bad} problem(s)");
        ExitCode::FAILURE
    }
}

const USAGE: &str = "usage: policy lint
       policy review                  (the review goes to standard output)
       policy verify PID [--policy vault|broker]
       policy verify --start BROKER   (starts `BROKER demo`, verifies its broker and vault, stops them)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("lint") if args.len() == 1 => lint(),
        Some("verify") => verify::main(&args[1..]),
        Some("review") => match policy::render::render_dir(&dir()) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
