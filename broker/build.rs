//! Lints and compiles `sandbox-policies/broker.json` into BPF at build time;
//! the `broker` program installs it once the vault is running.
//!
//! Also bakes in the install prefix where the library looks for an
//! installed vault after the places relative to the running program
//! (`PREFIX/libexec/privsep-vault/vault`): `PRIVSEP_VAULT_PREFIX` at build
//! time, `/usr/local` (the Makefile's default `PREFIX`) when unset.

use std::path::{Component, Path};

/// The Makefile's default `PREFIX`.
const DEFAULT_PREFIX: &str = "/usr/local";

fn main() {
    policy::compile::build_script("broker.json", "broker");

    println!("cargo:rerun-if-env-changed=PRIVSEP_VAULT_PREFIX");
    let prefix = std::env::var("PRIVSEP_VAULT_PREFIX")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
    let prefix = match prefix.trim_end_matches('/') {
        "" => "/".to_owned(),
        trimmed => trimmed.to_owned(),
    };
    let path = Path::new(&prefix);
    // An absolute path without `.`/`..` components: the trust check walks
    // it from `/`, and the error messages print it as the place looked in.
    let plain = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    assert!(
        plain,
        "PRIVSEP_VAULT_PREFIX={prefix:?}: give an absolute path without `.` or `..` (the PREFIX the vault is installed under, as in `sudo make install PREFIX=...`)"
    );
    println!("cargo:rustc-env=PRIVSEP_BUILT_VAULT_PREFIX={prefix}");
}
