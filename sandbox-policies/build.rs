//! Generates the x86_64 system call table (name, number) from the kernel's
//! UAPI header, so that reviews show numbers and the vault's learning mode
//! can name a refused call. Where the header is missing (another
//! architecture), the table is empty and names fall back to numbers.

use std::env;
use std::fs;
use std::path::PathBuf;

const HEADER: &str = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";

fn main() {
    println!("cargo:rerun-if-changed={HEADER}");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let mut rows = Vec::new();
    if arch == "x86_64" {
        if let Ok(text) = fs::read_to_string(HEADER) {
            for line in text.lines() {
                let mut w = line.split_whitespace();
                if let (Some("#define"), Some(name), Some(nr)) = (w.next(), w.next(), w.next()) {
                    if let (Some(name), Ok(nr)) = (name.strip_prefix("__NR_"), nr.parse::<u32>()) {
                        rows.push((name.to_owned(), nr));
                    }
                }
            }
        }
    }
    let mut src = String::from("/// (name, number) of every system call the kernel headers list.\npub static SYSCALLS: &[(&str, u32)] = &[\n");
    for (name, nr) in &rows {
        src.push_str(&format!("    ({name:?}, {nr}),\n"));
    }
    src.push_str("];\n");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("syscalls.rs");
    fs::write(out, src).expect("write syscalls.rs");
}
