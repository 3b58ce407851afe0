//! The workspace's `rust-version` (root `Cargo.toml`) is a real minimum: no
//! locked dependency that a build on this platform compiles declares a newer
//! one. No older toolchain is at hand to prove it by building, so this reads
//! what each dependency declares, from `cargo metadata --locked --offline`
//! (the manifests of the crates the build already unpacked; Windows-only
//! ones in `Cargo.lock` are never compiled here, and filtered out). Our own
//! code's side is clippy's `incompatible_msrv` lint, which reads the same
//! `rust-version` in `make lint`.
//!
//! It lives in this crate because this is the project's tooling crate and
//! already reads JSON (`serde_json`): no dependency is added for it.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// `1.85`, `1.80.0`: compared as (major, minor, patch), missing parts 0.
fn parse(version: &str) -> (u64, u64, u64) {
    let mut parts = version
        .split('.')
        .map(|p| p.parse::<u64>().unwrap_or_else(|_| panic!("{version:?}")));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// `cargo metadata` for the workspace, the packages this host builds.
fn metadata() -> Value {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let version = Command::new(&cargo).arg("-vV").output().expect("cargo -vV");
    let host = String::from_utf8_lossy(&version.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("cargo -vV names the host");
    let out = Command::new(&cargo)
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .arg("--filter-platform")
        .arg(&host)
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata JSON")
}

/// A package: name, version, declared rust-version, whether it is ours.
struct Package {
    name: String,
    version: String,
    rust_version: Option<String>,
    ours: bool,
}

fn packages(meta: &Value) -> Vec<Package> {
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| Package {
            name: p["name"].as_str().expect("name").to_owned(),
            version: p["version"].as_str().expect("version").to_owned(),
            rust_version: p["rust_version"].as_str().map(str::to_owned),
            ours: members.contains(&p["id"].as_str().expect("id")),
        })
        .collect()
}

/// The dependencies that declare a newer rust-version than `ours`.
fn newer_than(packages: &[Package], ours: &str) -> Vec<String> {
    packages
        .iter()
        .filter(|p| !p.ours)
        .filter_map(|p| {
            let theirs = p.rust_version.as_deref()?;
            (parse(theirs) > parse(ours)).then(|| format!("{} {} ({theirs})", p.name, p.version))
        })
        .collect()
}

#[test]
fn no_locked_dependency_needs_a_newer_rust_than_the_workspace_declares() {
    let packages = packages(&metadata());
    let ours: Vec<&str> = packages
        .iter()
        .filter(|p| p.ours)
        .map(|p| p.rust_version.as_deref().unwrap_or("none"))
        .collect();
    assert!(!ours.is_empty(), "no workspace members");
    assert!(
        ours.iter().all(|v| *v == ours[0] && *v != "none"),
        "every crate inherits the workspace's rust-version: {ours:?}"
    );
    let ours = ours[0];
    let newer = newer_than(&packages, ours);
    assert!(
        newer.is_empty(),
        "rust-version is {ours}, but these locked dependencies declare a newer one: {}; \
         raise it in the root Cargo.toml (and the README's requirement), or lock an older \
         version (`cargo update -p NAME --precise VERSION`)",
        newer.join(", ")
    );
    // What sets the minimum today, for whoever reads the output.
    let binding: Vec<String> = packages
        .iter()
        .filter(|p| !p.ours && p.rust_version.as_deref().map(parse) == Some(parse(ours)))
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    println!("rust-version {ours}; declared exactly by: {binding:?}");
    // Positive control: against a floor below every declaration, the same
    // check names dependencies (it reads what they declare).
    let dependencies_declaring = packages
        .iter()
        .filter(|p| !p.ours && p.rust_version.is_some())
        .count();
    assert!(dependencies_declaring > 0, "no dependency declares one");
    assert_eq!(newer_than(&packages, "1.0.0").len(), dependencies_declaring);
}

#[test]
fn versions_compare_by_number_not_by_text() {
    assert!(parse("1.85") > parse("1.80.0"));
    assert!(parse("1.100") > parse("1.85"));
    assert_eq!(parse("1.85"), parse("1.85.0"));
    assert!(parse("1.85.1") > parse("1.85"));
}
