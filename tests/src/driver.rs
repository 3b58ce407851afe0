//! Driving `residue-driver` (an application using the broker library) one
//! step at a time from a suite.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// A running driver and its vault.
#[derive(Debug)]
pub struct Driver {
    pub child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The vault's pid.
    pub vault: u32,
}

impl Driver {
    /// Starts `residue-driver` (from `dir`, or the build directory), with
    /// `--secret-memory off` before `args`.
    pub fn start(dir: Option<&Path>, args: &[&str], uid: Option<u32>) -> Self {
        Self::start_program("residue-driver", dir, args, uid)
    }

    /// Starts `program`: `residue-driver`, or `openssl-app-driver` and
    /// `lean-driver` (the same application, using the `openssl` crate for
    /// itself with that crate's set-up, and with the README's).
    pub fn start_program(
        program: &str,
        dir: Option<&Path>,
        args: &[&str],
        uid: Option<u32>,
    ) -> Self {
        use std::os::unix::process::CommandExt;
        let path = match dir {
            Some(d) => d.join(program),
            None => crate::binary(program),
        };
        let mut cmd = Command::new(path);
        // Ordinary memory unless the test asks otherwise (a later option
        // wins): the suites read the processes' memory to prove what is
        // not there, and cannot see secret memory.
        cmd.args(["--secret-memory", "off"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let mut child = cmd.spawn().expect("start residue-driver");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut d = Driver {
            child,
            stdin,
            stdout,
            vault: 0,
        };
        let ready = d.line();
        d.vault = ready
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("driver said {ready:?}"));
        d
    }

    /// The driver's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.stdout.read_line(&mut l).expect("read from the driver");
        l.trim_end().to_owned()
    }

    /// Sends one command and returns the answer line.
    pub fn ask(&mut self, cmd: &str) -> String {
        self.send(cmd);
        self.line()
    }

    /// Sends one command without waiting for the answer.
    pub fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").expect("write to the driver");
        self.stdin.flush().expect("flush");
    }

    /// Reads the answer to a command sent with [`Driver::send`].
    pub fn answer(&mut self) -> String {
        self.line()
    }

    /// Stores `secret` (one line, no newline inside) under "canary".
    pub fn store(&mut self, secret: &[u8]) {
        assert_eq!(self.ask("store"), "send-secret");
        self.stdin.write_all(secret).expect("write");
        self.stdin.write_all(b"\n").expect("write");
        self.stdin.flush().expect("flush");
        assert_eq!(self.line(), "stored");
    }

    /// The vault's public key, DER.
    pub fn public_key(&mut self) -> Vec<u8> {
        let l = self.ask("pubkey");
        let h = l.strip_prefix("pubkey ").expect("pubkey answer");
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
            .collect()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "exit");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}

/// Random printable bytes from the kernel, prefixed, for canaries.
pub fn canary(prefix: &str) -> Vec<u8> {
    let mut raw = [0u8; 16];
    let f = std::fs::File::open("/dev/urandom").expect("urandom");
    std::io::Read::read_exact(&mut &f, &mut raw).expect("random");
    let mut c = prefix.as_bytes().to_vec();
    for b in raw {
        c.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    c
}

/// Hex of bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
