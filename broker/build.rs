//! Lints and compiles `sandbox-policies/broker.json` into BPF at build time;
//! the `broker` program installs it once the vault is running.

fn main() {
    policy::compile::build_script("broker.json", "broker");
}
