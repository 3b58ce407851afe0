//! Lints and compiles `sandbox-policies/vault.json` into BPF at build time
//! (enforcing and learning variants). The vault embeds the programs, so a
//! policy that does not compile or breaks the lint breaks the build, and the
//! vault needs no JSON parser next to its key.

fn main() {
    policy::compile::build_script("vault.json", "vault");
}
