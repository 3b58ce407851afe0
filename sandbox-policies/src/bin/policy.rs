//! `policy lint` and `policy review`: the review toolchain for
//! `sandbox-policies/`. Run through `make policy-lint` / `make policy-review`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

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

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("lint") => lint(),
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
        _ => {
            eprintln!("usage: policy lint | policy review  (the review goes to standard output)");
            ExitCode::from(2)
        }
    }
}
