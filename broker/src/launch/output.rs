//! Step 3: the vault's standard error is a pipe the broker drains.
//!
//! The vault writes nowhere but its rings and this pipe (its policy allows
//! `write` on fd 2 only, and fd 2 is this pipe, not the user's terminal or
//! log). A subverted vault could use fd 2 to flood, to send escape sequences
//! to a terminal, or to forge messages; so the broker:
//!
//! - drains the pipe continuously on a thread of its own: a vault that
//!   writes more than a pipe holds never blocks, whatever the broker's own
//!   standard error is doing;
//! - forwards each line in plain printable ASCII: escape sequences removed
//!   whole, every other control character dropped, runs of spaces collapsed
//!   (a padded line cannot push text to the start of the next row), and
//!   anything else (all of Unicode: bidirectional and invisible format
//!   characters, look-alikes, bytes that are controls on an 8-bit terminal)
//!   written as a visible `\u{..}` escape; its length capped, and the prefix
//!   `vault[PID]: ` it cannot forge; at most [`MAX_LINES`] lines per vault,
//!   then one line saying how many more there were. Forwarding goes through
//!   a bounded queue to one writer thread, so a stuck terminal drops lines
//!   instead of stopping the drain (the queue holds more than one vault's
//!   allowance, so with one vault nothing is dropped but beyond the cap);
//!   when the vault has ended, the broker waits (briefly) for its lines to
//!   be written, so that a program exiting right after does not lose them;
//! - keeps the last line, which the error reporting the vault's death
//!   quotes ([`crate::error::LastWords`]).
//!
//! The learning mode's banner and the lines naming refused calls reach the
//! user this way.

use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::sys::cvt;

/// Longest line forwarded, in characters; longer ones are cut with `...`.
pub const MAX_LINE_CHARS: usize = 300;
/// Most lines forwarded for one vault.
pub const MAX_LINES: usize = 500;
/// Bytes of one line kept while it is being assembled.
const MAX_LINE_BYTES: usize = 4 * MAX_LINE_CHARS;
/// Items waiting for the writer thread; more are dropped. Room for one
/// vault's whole allowance, its summary line and its flush marker.
const QUEUE: usize = 2 * MAX_LINES + 8;

/// What the writer thread is given.
enum Item {
    Line(String),
    /// Everything queued before this has been written once it is reached.
    Flush(Arc<Shared>),
}

/// Creates the pipe: `(read end, write end)`, both close-on-exec.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 writes two descriptors into the live array.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both descriptors were just created and are owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// What the drain thread shares with the vault's handle.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    ended: Condvar,
}

#[derive(Debug, Default)]
struct State {
    last: Option<String>,
    eof: bool,
    /// The writer has written everything this vault sent (or the marker
    /// could not be queued).
    flushed: bool,
}

/// The drain of one vault's standard error.
#[derive(Debug)]
pub(crate) struct Output {
    shared: Arc<Shared>,
}

impl Output {
    /// Starts draining `read` (the pipe's read end) for vault `pid`,
    /// forwarding to the broker's standard error.
    pub fn start(read: OwnedFd, pid: u32) -> io::Result<Self> {
        Self::start_to(read, pid, forwarder()?)
    }

    /// As [`Output::start`], forwarding into `forward`.
    fn start_to(read: OwnedFd, pid: u32, forward: SyncSender<Item>) -> io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::Builder::new()
            .name("vault-stderr".into())
            .spawn(move || drain(std::fs::File::from(read), pid, &s, &forward))?;
        Ok(Self { shared })
    }

    /// The last line the vault wrote, once it has closed the pipe (it has
    /// ended) or after `wait`, whichever comes first.
    pub fn last_line(&self, wait: Duration) -> Option<String> {
        self.wait_for(wait, |st| st.eof).last.clone()
    }

    /// Waits, up to `wait`, until the vault has closed the pipe and every
    /// line it sent has been written out.
    pub fn flush(&self, wait: Duration) {
        drop(self.wait_for(wait, |st| st.eof && st.flushed));
    }

    /// The state once `done` holds of it, or once `wait` has passed.
    fn wait_for(&self, wait: Duration, done: impl Fn(&State) -> bool) -> MutexGuard<'_, State> {
        let deadline = Instant::now() + wait;
        let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        while !done(&st) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .shared
                .ended
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        st
    }
}

/// The one writer thread of the process, fed through a bounded queue.
fn forwarder() -> io::Result<SyncSender<Item>> {
    static TX: OnceLock<SyncSender<Item>> = OnceLock::new();
    if let Some(tx) = TX.get() {
        return Ok(tx.clone());
    }
    let (tx, rx) = sync_channel::<Item>(QUEUE);
    std::thread::Builder::new()
        .name("vault-stderr-out".into())
        .spawn(move || {
            for item in rx {
                match item {
                    Item::Line(line) => {
                        let mut err = io::stderr().lock();
                        let _ = err.write_all(line.as_bytes());
                        let _ = err.flush();
                    }
                    Item::Flush(shared) => shared.mark_flushed(),
                }
            }
        })?;
    Ok(TX.get_or_init(|| tx).clone())
}

impl Shared {
    fn mark_flushed(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.flushed = true;
        self.ended.notify_all();
    }
}

/// Reads the pipe until the vault closes it, forwarding clean lines.
fn drain(mut pipe: std::fs::File, pid: u32, shared: &Arc<Shared>, forward: &SyncSender<Item>) {
    let mut line = Vec::with_capacity(256);
    let mut cut = false;
    let mut sent = 0usize;
    let dropped = AtomicUsize::new(0);
    let mut emit = |raw: &[u8], cut: bool| {
        let Some(clean) = clean_line(raw, cut) else {
            return;
        };
        let shown = format!("vault[{pid}]: {clean}\n");
        shared.state.lock().unwrap_or_else(|p| p.into_inner()).last = Some(clean);
        if sent >= MAX_LINES {
            dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match forward.try_send(Item::Line(shown)) {
            Ok(()) => sent += 1,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    let mut buf = [0u8; 8192];
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                emit(&line, cut);
                line.clear();
                cut = false;
            } else if line.len() < MAX_LINE_BYTES {
                line.push(b);
            } else {
                cut = true;
            }
        }
    }
    if !line.is_empty() {
        emit(&line, cut);
    }
    let dropped = dropped.into_inner();
    if dropped > 0 {
        let _ = forward.try_send(Item::Line(format!(
            "vault[{pid}]: ({dropped} more line(s) of output not shown)\n"
        )));
    }
    let queued = forward.try_send(Item::Flush(shared.clone())).is_ok();
    let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    st.eof = true;
    if !queued {
        // No room for the marker (several vaults flooding at once): do not
        // make anyone wait for it.
        st.flushed = true;
    }
    shared.ended.notify_all();
}

/// Removes terminal escape sequences whole (not only their control
/// characters, which would leave `[31m` behind): CSI (`ESC [` or U+009B, up
/// to a final byte `@`..`~`), OSC, DCS and the like (`ESC ]`, `ESC P`,
/// U+009D, ..., up to BEL or `ESC \`), and two-character `ESC x`.
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let kind = match c {
            '\u{1b}' => match chars.next() {
                Some('[') => 'c',
                Some(']' | 'P' | 'X' | '^' | '_') => 's',
                _ => continue,
            },
            '\u{9b}' => 'c',
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => 's',
            c => {
                out.push(c);
                continue;
            }
        };
        if kind == 'c' {
            // Parameters and intermediates, then one final byte.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            // A string, ended by BEL, ST (U+009C) or ESC \.
            while let Some(c) = chars.next() {
                if c == '\u{7}' || c == '\u{9c}' {
                    break;
                }
                if c == '\u{1b}' {
                    if chars.peek() == Some(&'\\') {
                        chars.next();
                    }
                    break;
                }
            }
        }
    }
    out
}

/// One line as it may be shown: invalid UTF-8 replaced, escape sequences
/// removed whole, other controls dropped (a tab counts as a space), runs of
/// spaces collapsed, every character outside printable ASCII written as
/// `\u{..}`, the vault's own `vault: ` prefix dropped (the broker adds its
/// own), at most [`MAX_LINE_CHARS`] characters. `None` for a line left empty.
pub fn clean_line(raw: &[u8], cut: bool) -> Option<String> {
    let text = strip_escapes(&String::from_utf8_lossy(raw));
    let mut out = String::with_capacity(text.len().min(MAX_LINE_CHARS * 2));
    let mut truncated = cut;
    for c in text.chars() {
        let c = if c == '\t' { ' ' } else { c };
        if c.is_control() || (c == ' ' && (out.is_empty() || out.ends_with(' '))) {
            continue;
        }
        let piece = if c.is_ascii() {
            c.to_string()
        } else {
            format!("\\u{{{:x}}}", u32::from(c))
        };
        if out.len() + piece.len() > MAX_LINE_CHARS {
            truncated = true;
            break;
        }
        out.push_str(&piece);
    }
    let trimmed = out.trim_end();
    let body = trimmed.strip_prefix("vault: ").unwrap_or(trimmed);
    if body.is_empty() {
        return None;
    }
    let mut body = body.to_owned();
    if truncated {
        body.push_str("...");
    }
    Some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_controls_never_pass() {
        let raw = b"\x1b[2J\x1b]0;owned\x07vault: hello\r\x08 \xc2\x9b31m world \xe2\x80\xae!";
        let line = clean_line(raw, false).unwrap();
        assert!(
            line.chars().all(|c| c.is_ascii() && !c.is_control()),
            "{line:?}"
        );
        assert_eq!(line, "hello world \\u{202e}!");
        // Padding cannot push text onto the next row, nor can look-alikes
        // or invisible characters pass as themselves.
        assert_eq!(
            clean_line(
                "a      \t   broker: x \u{61c}\u{200b}\u{2713}".as_bytes(),
                false
            )
            .as_deref(),
            Some("a broker: x \\u{61c}\\u{200b}\\u{2713}")
        );
        assert_eq!(clean_line(b"\x1b\x07\r", false), None);
        assert_eq!(clean_line(b"vault: x", false).as_deref(), Some("x"));
        assert_eq!(
            clean_line(b"a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\b\x1bMc", false).as_deref(),
            Some("alinkbc")
        );
    }

    #[test]
    fn long_lines_are_cut() {
        let raw = vec![b'a'; MAX_LINE_CHARS * 3];
        let line = clean_line(&raw, false).unwrap();
        assert_eq!(line.len(), MAX_LINE_CHARS + 3);
        assert!(line.ends_with("..."));
        assert!(clean_line(b"short", true).unwrap().ends_with("..."));
        let wide = "\u{2713}".repeat(MAX_LINE_CHARS);
        assert!(clean_line(wide.as_bytes(), false).unwrap().len() <= MAX_LINE_CHARS + 3);
    }

    #[test]
    fn the_drain_keeps_the_last_line_and_never_blocks_the_writer() {
        let (r, w) = pipe().unwrap();
        // A forward queue nobody reads: it fills at once, and the drain
        // must go on regardless.
        let (tx, rx) = sync_channel(1);
        let out = Output::start_to(r, 1, tx).unwrap();
        let writer = std::thread::spawn(move || {
            let mut w = std::fs::File::from(w);
            // Far more than a pipe holds: the drain must keep reading.
            let junk = b"\x1b[31mnoise\x1b[0m\n".repeat(200_000);
            w.write_all(&junk).unwrap();
            w.write_all(b"vault: the end\n").unwrap();
        });
        writer.join().unwrap();
        assert_eq!(
            out.last_line(Duration::from_secs(10)).as_deref(),
            Some("the end")
        );
        match rx.recv().unwrap() {
            Item::Line(first) => assert_eq!(first, "vault[1]: noise\n"),
            Item::Flush(_) => panic!("a flush before any line"),
        }
    }
}
