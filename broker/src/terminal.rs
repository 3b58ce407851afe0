//! Password input: from the terminal with echo off, or from standard input
//! for scripts (`--password-stdin`).
//!
//! The bytes go straight from `read(2)` into a [`SecretBuf`] (locked, never
//! dumped, wiped on drop): no `String`, no `BufReader`, no growing line
//! buffer. A byte that has to be looked at outside the buffer (the one that
//! decides whether a full buffer is too long) sits in a `Zeroizing` local.
//!
//! On the terminal, the line discipline is put in a mode with echo, canonical
//! input and signal keys off, so that editing and cancel keys are handled here
//! (see [`read_password`]). The original settings are restored on every exit:
//! by a drop guard, and, because the release profile aborts on panic (no drop
//! runs), by the panic hook of [`install_restore_hook`], which restores every
//! terminal registered in `SAVED`.
//!
//! Waiting is `poll(2)` on the input and an optional interrupt descriptor (a
//! signalfd in the broker): when the interrupt descriptor becomes readable,
//! reading stops with [`PasswordError::Interrupted`] without consuming from it,
//! so the caller can read it to learn which signal arrived.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, PoisonError};

use common::secret::{SecretBuf, SecretError};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{self, LocalFlags, SetArg, Termios};
use zeroize::Zeroizing;

/// Where the password comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordSource {
    /// The terminal on standard input, with echo off; the prompt goes to
    /// standard error.
    Terminal,
    /// Standard input, whatever it is (pipe, file, terminal), up to the first
    /// newline or the end of the input; no prompt. For scripts
    /// (`--password-stdin`).
    Stdin,
}

/// Why no password was read. In every case nothing of what was typed or read
/// is kept: the buffer is wiped.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Terminal input was asked for but standard input is not a terminal.
    #[error("standard input is not a terminal; to read the password from standard input (a pipe or a file), pass --password-stdin")]
    NotATerminal,
    /// The entry or the line was empty.
    #[error("the password is empty; enter a password of at least one byte")]
    Empty,
    /// More than `limit` bytes were entered; reading stopped there.
    #[error("the password is longer than the limit of {limit} bytes; nothing was kept")]
    TooLong {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The input ended before a password was given: standard input at its end
    /// with nothing read, or the terminal at its end (hung up) before Enter.
    #[error("the input ended before a password was given; nothing was kept")]
    InputEnded,
    /// Entry was cancelled: by a key (`what` names it: Ctrl-C, Ctrl-\\, or
    /// Ctrl-D on an empty entry) or by a signal on the interrupt descriptor.
    #[error("password entry interrupted by {what}; nothing was kept")]
    Interrupted {
        /// The key (`"Ctrl-C"`, `"Ctrl-\\"`) or `"a termination signal"`.
        what: &'static str,
    },
    /// Reading or changing the terminal settings failed.
    #[error(
        "cannot {op}; to read the password from standard input instead, pass --password-stdin"
    )]
    Terminal {
        /// What was being done.
        op: &'static str,
        /// The system call's error.
        #[source]
        source: nix::Error,
    },
    /// The terminal accepted the new settings but still echoes (or still works
    /// line by line); the password was not read, so it could not be shown.
    #[error(
        "the terminal did not turn off echo; the password was not read (use --password-stdin)"
    )]
    EchoStillOn,
    /// A system call on the input, the prompt output or the interrupt
    /// descriptor failed.
    #[error("cannot {op}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The system call's error.
        #[source]
        source: io::Error,
    },
    /// The locked buffer for the password could not be set up.
    #[error("cannot set up the locked buffer for the password")]
    Buffer(#[from] SecretError),
}

/// Reads one password into a fresh [`SecretBuf`] of capacity `max_len`.
///
/// `interrupt`: an fd (a signalfd in practice) that becomes readable when the
/// process is asked to stop (SIGINT/SIGTERM/SIGHUP); reading then stops at
/// once with [`PasswordError::Interrupted`], after restoring the terminal. It
/// is only polled, never read.
///
/// [`PasswordSource::Terminal`]: standard input must be a terminal. The prompt
/// is written to standard error. Keys, taken from the terminal's own settings:
/// Enter (`\r` or `\n`) ends the entry; erase (usually Backspace/DEL) and
/// `0x08` delete the last character (a whole UTF-8 sequence when the entry
/// ends with one, else one byte); kill (Ctrl-U) clears the entry; interrupt
/// (Ctrl-C) and quit (Ctrl-\\) cancel; end-of-file (Ctrl-D) cancels on an
/// empty entry and is ignored otherwise; suspend (Ctrl-Z) is ignored. Every
/// other byte, NUL included, is part of the password.
///
/// [`PasswordSource::Stdin`]: reads up to the first `\n`, or to the end of
/// the input. One line ending is removed, `\n` or `\r\n`; nothing else (a
/// password that ends in `\r` at the end of the input keeps it). Reading
/// stops at the first `\n`: whatever follows it (a second line, an empty one)
/// is not part of the password. Reading is in chunks, so bytes after the
/// newline may be consumed from the input; they are wiped, never kept.
/// Standard input is read through the descriptor, so nothing should have
/// been read from it through `std::io::stdin()` before (its buffer would be
/// skipped).
///
/// A password of exactly `max_len` bytes is accepted; one byte more is
/// [`PasswordError::TooLong`].
///
/// # Errors
///
/// [`PasswordError::NotATerminal`] (terminal source only), `Empty`, `TooLong`,
/// `InputEnded`, `Interrupted`; `Terminal`, `EchoStillOn`, `Io` and `Buffer`
/// when a system call fails. The terminal is restored in every case.
pub fn read_password(
    source: PasswordSource,
    prompt: &str,
    max_len: usize,
    interrupt: Option<BorrowedFd<'_>>,
) -> Result<SecretBuf, PasswordError> {
    let stdin = io::stdin();
    match source {
        PasswordSource::Terminal => {
            let stderr = io::stderr();
            read_terminal(stdin.as_fd(), stderr.as_fd(), prompt, max_len, interrupt)
        }
        PasswordSource::Stdin => read_line_from(stdin.as_fd(), max_len, interrupt),
    }
}

/// Installs (once) a panic hook that restores any terminal mode changed by
/// this module before chaining to the previous hook (the release profile
/// aborts on panic, so drop guards do not run there).
///
/// Call it early in `main`, from a thread that is not panicking.
pub fn install_restore_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_saved_terminals();
            previous(info);
        }));
    });
}

/// Reads a password from the terminal `tty`, writing the prompt and the final
/// newline to `out`.
fn read_terminal(
    tty: BorrowedFd<'_>,
    out: BorrowedFd<'_>,
    prompt: &str,
    max_len: usize,
    interrupt: Option<BorrowedFd<'_>>,
) -> Result<SecretBuf, PasswordError> {
    let is_tty = nix::unistd::isatty(tty.as_raw_fd()).map_err(|e| PasswordError::Io {
        op: "check whether standard input is a terminal",
        source: e.into(),
    })?;
    if !is_tty {
        return Err(PasswordError::NotATerminal);
    }
    // Allocated before the terminal is touched, so that a buffer error leaves
    // the terminal as it was. Dropped (wiped) on every error return below,
    // after `raw` (declared later, dropped first) restored the terminal.
    let mut buf = SecretBuf::new(max_len)?;
    let raw = RawMode::enter(tty, out)?;
    write_all(out, prompt.as_bytes()).map_err(|source| PasswordError::Io {
        op: "write the password prompt",
        source,
    })?;
    let keys = Keys::from_termios(&raw.saved);

    loop {
        wait_readable(tty, interrupt)?;
        let key = if buf.len() < buf.capacity() {
            // Read the byte straight into the buffer, then take it back out
            // (wiped by `pop`) if it was a key rather than password data.
            match buf.fill(|spare| {
                let one = spare.len().min(1);
                read_some(tty, &mut spare[..one])
            }) {
                Ok(_) => {}
                Err(ReadStop::Retry) => continue,
                Err(ReadStop::Eof) => return Err(PasswordError::InputEnded),
                Err(ReadStop::Failed(e)) => return Err(read_error(e)),
            }
            let key = buf.expose(|b| b.last().map_or(Key::Ignore, |&c| keys.classify(c)));
            if key != Key::Byte {
                buf.pop();
            }
            key
        } else {
            // Full: one more byte decides between "done" (Enter), an edit,
            // and "too long". It is wiped when `byte` goes out of scope.
            let mut byte = Zeroizing::new(0u8);
            match read_some(tty, std::slice::from_mut(&mut *byte)) {
                Ok(_) => {}
                Err(ReadStop::Retry) => continue,
                Err(ReadStop::Eof) => return Err(PasswordError::InputEnded),
                Err(ReadStop::Failed(e)) => return Err(read_error(e)),
            }
            match keys.classify(*byte) {
                Key::Byte => return Err(PasswordError::TooLong { limit: max_len }),
                key => key,
            }
        };
        match key {
            Key::Enter if buf.is_empty() => return Err(PasswordError::Empty),
            Key::Enter => break,
            // End of file on an empty entry, as a shell takes it: leave.
            Key::EndOfFile(what) if buf.is_empty() => {
                return Err(PasswordError::Interrupted { what })
            }
            // Ctrl-D on a non-empty entry is ignored.
            Key::Byte | Key::Ignore | Key::EndOfFile(_) => {}
            Key::Cancel(what) => return Err(PasswordError::Interrupted { what }),
            Key::Erase => {
                let keep = buf.expose(|entry| entry.len() - last_char_len(entry));
                buf.truncate(keep);
            }
            Key::Kill => buf.clear(),
        }
    }
    // Restore the terminal before handing the password over.
    drop(raw);
    Ok(buf)
}

/// Reads one line from `fd` into a fresh buffer of capacity `max_len`: up to
/// the first `\n` (removed, with one `\r` just before it), or to the end of
/// the input (nothing removed).
fn read_line_from(
    fd: BorrowedFd<'_>,
    max_len: usize,
    interrupt: Option<BorrowedFd<'_>>,
) -> Result<SecretBuf, PasswordError> {
    let mut buf = SecretBuf::new(max_len)?;
    // Whether any byte came in: the end of an input that gave nothing is
    // not an empty password but no password at all.
    let mut read_any = false;
    // Set when the buffer was full and the next byte was `\r`: only a `\n`
    // may follow (the end of the input would make the `\r` part of a
    // password one byte too long).
    let mut cr_past_limit = false;
    loop {
        wait_readable(fd, interrupt)?;
        if buf.len() < buf.capacity() {
            let start = buf.len();
            match buf.fill(|spare| read_some(fd, spare)) {
                Ok(_) => read_any = true,
                Err(ReadStop::Retry) => continue,
                Err(ReadStop::Eof) if read_any => break,
                Err(ReadStop::Eof) => return Err(PasswordError::InputEnded),
                Err(ReadStop::Failed(e)) => return Err(read_error(e)),
            }
            let newline = buf.expose(|b| b[start..].iter().position(|&c| c == b'\n'));
            if let Some(offset) = newline {
                // Wipes the newline and everything read after it.
                buf.truncate(start + offset);
                if buf.expose(|b| b.last() == Some(&b'\r')) {
                    buf.pop();
                }
                break;
            }
        } else {
            // Full with no newline yet: one more byte, or the end of the
            // input, decides. The byte is wiped when `byte` goes out of scope.
            let mut byte = Zeroizing::new(0u8);
            match read_some(fd, std::slice::from_mut(&mut *byte)) {
                Ok(_) => {}
                Err(ReadStop::Retry) => continue,
                Err(ReadStop::Eof) if cr_past_limit => {
                    return Err(PasswordError::TooLong { limit: max_len })
                }
                Err(ReadStop::Eof) if read_any => break,
                Err(ReadStop::Eof) => return Err(PasswordError::InputEnded),
                Err(ReadStop::Failed(e)) => return Err(read_error(e)),
            }
            read_any = true;
            match *byte {
                b'\n' => {
                    if !cr_past_limit && buf.expose(|b| b.last() == Some(&b'\r')) {
                        buf.pop();
                    }
                    break;
                }
                b'\r' if !cr_past_limit => cr_past_limit = true,
                _ => return Err(PasswordError::TooLong { limit: max_len }),
            }
        }
    }
    if buf.is_empty() {
        return Err(PasswordError::Empty);
    }
    Ok(buf)
}

/// Bytes that erasing takes off the end of `entry`: its last character when
/// the entry ends with a whole UTF-8 sequence (so Backspace after "é" leaves
/// nothing of it), else one byte (a password is bytes, not necessarily
/// UTF-8); 0 for an empty entry.
fn last_char_len(entry: &[u8]) -> usize {
    (2..=entry.len().min(4))
        .find(|&n| {
            entry
                .get(entry.len() - n..)
                .and_then(|tail| std::str::from_utf8(tail).ok())
                .is_some_and(|tail| tail.chars().count() == 1)
        })
        .unwrap_or(entry.len().min(1))
}

/// What a byte typed on the terminal means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// Part of the password.
    Byte,
    /// End of the entry.
    Enter,
    /// Cancel the entry; names the key.
    Cancel(&'static str),
    /// Delete the last byte.
    Erase,
    /// Clear the entry.
    Kill,
    /// End of file: cancels an empty entry, ignored otherwise; names the key.
    EndOfFile(&'static str),
    /// Ignored (suspend: job control is not offered while the terminal is in
    /// password mode).
    Ignore,
}

/// The terminal's special characters, as set before we changed the mode
/// (`None` where disabled).
#[derive(Debug)]
struct Keys {
    intr: Option<u8>,
    quit: Option<u8>,
    erase: Option<u8>,
    kill: Option<u8>,
    eof: Option<u8>,
    susp: Option<u8>,
}

/// Backspace (Ctrl-H), an erase key whatever `VERASE` says.
const BACKSPACE: u8 = 0x08;

impl Keys {
    fn from_termios(t: &Termios) -> Self {
        let cc = |index: usize| {
            t.control_chars
                .get(index)
                .copied()
                .filter(|&c| c != libc::_POSIX_VDISABLE)
        };
        Self {
            intr: cc(libc::VINTR),
            quit: cc(libc::VQUIT),
            erase: cc(libc::VERASE),
            kill: cc(libc::VKILL),
            eof: cc(libc::VEOF),
            susp: cc(libc::VSUSP),
        }
    }

    fn classify(&self, c: u8) -> Key {
        let is = |key: Option<u8>| key == Some(c);
        if c == b'\r' || c == b'\n' {
            Key::Enter
        } else if is(self.intr) {
            Key::Cancel(if c == 0x03 {
                "Ctrl-C"
            } else {
                "the interrupt key"
            })
        } else if is(self.quit) {
            Key::Cancel(if c == 0x1c { "Ctrl-\\" } else { "the quit key" })
        } else if is(self.erase) || c == BACKSPACE {
            Key::Erase
        } else if is(self.kill) {
            Key::Kill
        } else if is(self.eof) {
            Key::EndOfFile(if c == 0x04 {
                "Ctrl-D"
            } else {
                "the end-of-file key"
            })
        } else if is(self.susp) {
            Key::Ignore
        } else {
            Key::Byte
        }
    }
}

/// Saved settings of the terminals currently in password mode, for the panic
/// hook. Invariant: an entry is present only while the [`RawMode`] guard that
/// added it is alive; that guard holds a `BorrowedFd` for `fd` and removes the
/// entry (under this lock) before its drop finishes, so while an entry is here
/// and the lock is held, `fd` is open.
static SAVED: Mutex<Vec<SavedMode>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
struct SavedMode {
    id: u64,
    fd: RawFd,
    termios: Termios,
}

/// Puts every registered terminal back to its saved settings, removes the
/// entries, and prints a newline to standard error if it restored any.
///
/// Called from the panic hook. Locking cannot deadlock on the panicking
/// thread: no code holds `SAVED` across anything that can panic (a push, a
/// retain, this loop).
fn restore_saved_terminals() {
    let mut saved = SAVED.lock().unwrap_or_else(PoisonError::into_inner);
    if saved.is_empty() {
        return;
    }
    for entry in saved.drain(..) {
        // We hold the `SAVED` lock; an entry is present only while the guard
        // that added it is alive and borrows `entry.fd` (it removes the entry
        // under this lock before the borrow ends).
        // SAFETY: so the fd is open and not reused during this iteration.
        let fd = unsafe { BorrowedFd::borrow_raw(entry.fd) };
        // TCSANOW: do not wait for output to drain while panicking.
        let _ = termios::tcsetattr(fd, SetArg::TCSANOW, &entry.termios);
    }
    drop(saved);
    let _ = io::stderr().write_all(b"\n");
}

/// Password mode on a terminal; dropping it restores the saved settings and
/// prints a newline to `out` (the user's Enter was not echoed).
#[derive(Debug)]
struct RawMode<'fd> {
    tty: BorrowedFd<'fd>,
    out: BorrowedFd<'fd>,
    saved: Termios,
    id: u64,
}

impl<'fd> RawMode<'fd> {
    /// Saves the settings of `tty`, registers them for the panic hook, and
    /// switches to byte-at-a-time input with echo and signal keys off.
    fn enter(tty: BorrowedFd<'fd>, out: BorrowedFd<'fd>) -> Result<Self, PasswordError> {
        let saved = termios::tcgetattr(tty).map_err(|source| PasswordError::Terminal {
            op: "read the terminal settings (tcgetattr)",
            source,
        })?;
        let mut raw = saved.clone();
        // Off: echo; line editing by the kernel (ICANON; we edit); Ctrl-C,
        // Ctrl-\ and Ctrl-Z as signals (ISIG; we see them as bytes); the
        // implementation-defined extensions such as literal-next (IEXTEN).
        raw.local_flags.remove(
            LocalFlags::ECHO
                | LocalFlags::ECHOE
                | LocalFlags::ECHOK
                | LocalFlags::ECHONL
                | LocalFlags::ICANON
                | LocalFlags::ISIG
                | LocalFlags::IEXTEN,
        );
        raw.control_chars[libc::VMIN] = 1;
        raw.control_chars[libc::VTIME] = 0;

        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        SAVED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(SavedMode {
                id,
                fd: tty.as_raw_fd(),
                termios: saved.clone(),
            });
        // From here on, every return drops the guard, which restores.
        let guard = Self {
            tty,
            out,
            saved,
            id,
        };

        // TCSAFLUSH: anything typed before this point was echoed; discard it
        // rather than take it as the start of the password.
        termios::tcsetattr(tty, SetArg::TCSAFLUSH, &raw).map_err(|source| {
            PasswordError::Terminal {
                op: "change the terminal settings (tcsetattr)",
                source,
            }
        })?;
        // tcsetattr succeeds if any of the changes was made: check that echo
        // really is off before anything is typed.
        let now = termios::tcgetattr(tty).map_err(|source| PasswordError::Terminal {
            op: "read back the terminal settings (tcgetattr)",
            source,
        })?;
        if now
            .local_flags
            .intersects(LocalFlags::ECHO | LocalFlags::ICANON | LocalFlags::ISIG)
        {
            return Err(PasswordError::EchoStillOn);
        }
        Ok(guard)
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        // TCSAFLUSH: input not read yet is discarded. After a cancel or an
        // error it may be the rest of the password, typed without echo; the
        // shell must not get it (it would echo it and keep it in history).
        let _ = termios::tcsetattr(self.tty, SetArg::TCSAFLUSH, &self.saved);
        let _ = write_all(self.out, b"\n");
        // Removing the entry last keeps the `SAVED` invariant: `self.tty` is
        // still borrowed here.
        SAVED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|entry| entry.id != self.id);
    }
}

/// Why a `read(2)` produced no data.
#[derive(Debug)]
enum ReadStop {
    /// End of file.
    Eof,
    /// EINTR or EAGAIN: poll again.
    Retry,
    /// Any other error.
    Failed(Errno),
}

/// One `read(2)` into `dst`, which must not be empty (0 means end of file).
fn read_some(fd: BorrowedFd<'_>, dst: &mut [u8]) -> Result<usize, ReadStop> {
    match nix::unistd::read(fd.as_raw_fd(), dst) {
        Ok(0) => Err(ReadStop::Eof),
        Ok(n) => Ok(n),
        Err(Errno::EINTR | Errno::EAGAIN) => Err(ReadStop::Retry),
        Err(e) => Err(ReadStop::Failed(e)),
    }
}

fn read_error(e: Errno) -> PasswordError {
    PasswordError::Io {
        op: "read the password",
        source: e.into(),
    }
}

/// Blocks until `input` is readable (or at end of file, or in error: the read
/// tells which), or fails with `Interrupted` as soon as `interrupt` is
/// readable, which takes precedence. Retries on EINTR.
fn wait_readable(
    input: BorrowedFd<'_>,
    interrupt: Option<BorrowedFd<'_>>,
) -> Result<(), PasswordError> {
    let ready = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
    let watched = if interrupt.is_some() { 2 } else { 1 };
    loop {
        let mut fds = [
            PollFd::new(input, PollFlags::POLLIN),
            // A placeholder when there is no interrupt descriptor; not polled.
            PollFd::new(interrupt.unwrap_or(input), PollFlags::POLLIN),
        ];
        match nix::poll::poll(&mut fds[..watched], PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => {
                return Err(PasswordError::Io {
                    op: "wait for input (poll)",
                    source: e.into(),
                })
            }
        }
        if interrupt.is_some() {
            let revents = fds[1].revents().unwrap_or(PollFlags::empty());
            if revents.contains(PollFlags::POLLNVAL) {
                return Err(PasswordError::Io {
                    op: "watch the interrupt descriptor (poll)",
                    source: Errno::EBADF.into(),
                });
            }
            if revents.intersects(ready) {
                return Err(PasswordError::Interrupted {
                    what: "a termination signal",
                });
            }
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if revents.contains(PollFlags::POLLNVAL) {
            return Err(PasswordError::Io {
                op: "wait for input (poll)",
                source: Errno::EBADF.into(),
            });
        }
        if revents.intersects(ready) {
            return Ok(());
        }
    }
}

/// Writes all of `bytes` to `fd`, retrying on EINTR.
fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> Result<(), io::Error> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::fs::OpenOptions;
    use std::os::fd::OwnedFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::mpsc;
    use std::time::Duration;

    use nix::fcntl::OFlag;
    use nix::pty::openpty;

    /// A close-on-exec pipe, so the child process of the panic hook test
    /// does not keep other tests' pipes open.
    fn pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
        nix::unistd::pipe2(OFlag::O_CLOEXEC)
    }

    /// Tests that change terminal modes or the `SAVED` registry run one at a
    /// time: `restore_saved_terminals` acts on every registered terminal.
    static PTY_TESTS: Mutex<()> = Mutex::new(());

    const PROMPT: &str = "Password: ";

    /// Runs `f` with an interrupt descriptor (and its write end) that a
    /// watchdog makes readable after 20 s, so a read that blocks forever fails
    /// the test (as `Interrupted { what: "a termination signal" }`) instead of
    /// hanging it.
    fn with_watchdog<R>(f: impl FnOnce(BorrowedFd<'_>, BorrowedFd<'_>) -> R) -> R {
        let (interrupt_r, interrupt_w) = pipe().unwrap();
        let trigger = interrupt_w.try_clone().unwrap();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if stop_rx.recv_timeout(Duration::from_secs(20)).is_err() {
                write_all(interrupt_w.as_fd(), b"!").unwrap();
            }
        });
        let r = f(interrupt_r.as_fd(), trigger.as_fd());
        stop_tx.send(()).unwrap();
        watchdog.join().unwrap();
        r
    }

    /// A function running on its own thread, with a bounded wait for its
    /// result.
    struct Bounded<R>(mpsc::Receiver<R>);

    impl<R> Bounded<R> {
        /// The result, or a test failure after 30 s: a read that ignored the
        /// interrupt descriptor (the watchdog's included) would never return.
        /// Waiting on our own thread rather than joining the reader lets the
        /// test fail, and release `PTY_TESTS`, instead of hanging.
        fn wait(self) -> R {
            self.0
                .recv_timeout(Duration::from_secs(30))
                .expect("the read returned within 30 s")
        }
    }

    fn bounded<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Bounded<R> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        Bounded(rx)
    }

    fn bytes_of(r: Result<SecretBuf, PasswordError>) -> Result<Vec<u8>, PasswordError> {
        r.map(|buf| buf.expose(<[u8]>::to_vec))
    }

    /// Reads everything from `fd` until `until` was seen or end of file.
    fn read_until(fd: BorrowedFd<'_>, until: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut chunk = [0u8; 256];
        while !got.windows(until.len().max(1)).any(|w| w == until) {
            match nix::unistd::read(fd.as_raw_fd(), &mut chunk).unwrap() {
                0 => break,
                n => got.extend_from_slice(&chunk[..n]),
            }
        }
        got
    }

    /// Whether `fd` has something to read within `ms` milliseconds.
    fn readable_within(fd: BorrowedFd<'_>, ms: u16) -> bool {
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        nix::poll::poll(&mut fds, PollTimeout::from(ms)).unwrap() > 0
    }

    struct TtyRun {
        result: Result<Vec<u8>, PasswordError>,
        /// What was written to `out`: the prompt, then the final newline.
        out: Vec<u8>,
        before: Termios,
        /// The slave's settings while the password was being read.
        during: Option<Termios>,
        after: Termios,
        /// Whether anything came back on the master (echo).
        echoed: bool,
        /// Terminals still registered for the panic hook after the read.
        still_registered: usize,
    }

    /// Reads a password from a fresh pty with `max_len`, typing `typed` on the
    /// master once the prompt shows that the terminal is in password mode.
    fn run_tty(typed: &[u8], max_len: usize) -> TtyRun {
        run_tty_with(typed, max_len, |_| {})
    }

    /// As `run_tty`, calling `before_typing` with the write end of the
    /// interrupt descriptor once the prompt was seen.
    fn run_tty_with(
        typed: &[u8],
        max_len: usize,
        before_typing: impl FnOnce(BorrowedFd<'_>),
    ) -> TtyRun {
        let _serial = PTY_TESTS.lock().unwrap_or_else(PoisonError::into_inner);
        let pty = openpty(None, None).unwrap();
        let before = termios::tcgetattr(&pty.slave).unwrap();
        let (out_r, out_w) = pipe().unwrap();
        let (result, out, during) = with_watchdog(|interrupt, trigger| {
            let slave = pty.slave.try_clone().unwrap();
            let interrupt = interrupt.try_clone_to_owned().unwrap();
            let reader = bounded(move || {
                let r = read_terminal(
                    slave.as_fd(),
                    out_w.as_fd(),
                    PROMPT,
                    max_len,
                    Some(interrupt.as_fd()),
                );
                drop(out_w); // end of file for `read_until` below
                bytes_of(r)
            });
            let mut out = read_until(out_r.as_fd(), PROMPT.as_bytes());
            let during = out
                .ends_with(PROMPT.as_bytes())
                .then(|| termios::tcgetattr(&pty.slave).unwrap());
            before_typing(trigger);
            write_all(pty.master.as_fd(), typed).unwrap();
            let result = reader.wait();
            out.extend(read_until(out_r.as_fd(), b"\0never\0"));
            (result, out, during)
        });
        let after = termios::tcgetattr(&pty.slave).unwrap();
        let echoed = readable_within(pty.master.as_fd(), 50);
        // Checked while `PTY_TESTS` is held: no other read is registered.
        let still_registered = SAVED.lock().unwrap().len();
        TtyRun {
            result,
            out,
            before,
            during,
            after,
            echoed,
            still_registered,
        }
    }

    /// Asserts the terminal was in password mode during the read and is back
    /// to its original settings afterwards, with the newline printed.
    fn assert_mode_restored(run: &TtyRun) {
        let during = run.during.as_ref().expect("prompt was written");
        assert!(
            !during.local_flags.contains(LocalFlags::ECHO),
            "echo off while reading"
        );
        assert!(
            !during.local_flags.contains(LocalFlags::ICANON),
            "byte at a time"
        );
        assert!(
            !during.local_flags.contains(LocalFlags::ISIG),
            "signal keys off"
        );
        assert_eq!(during.control_chars[libc::VMIN], 1);
        assert_eq!(during.control_chars[libc::VTIME], 0);
        assert!(run
            .before
            .local_flags
            .contains(LocalFlags::ECHO | LocalFlags::ICANON));
        assert_eq!(run.after, run.before, "terminal settings restored");
        assert_eq!(
            run.out,
            format!("{PROMPT}\n").as_bytes(),
            "prompt, then a newline"
        );
        assert!(!run.echoed, "nothing typed was echoed");
        assert_eq!(run.still_registered, 0, "registration removed");
    }

    #[test]
    fn tty_plain_entry_with_cr_or_lf() {
        let run = run_tty(b"hunter2\r", 64);
        assert_eq!(run.result.as_ref().unwrap(), b"hunter2");
        assert_mode_restored(&run);

        let run = run_tty(b"hunter2\n", 64);
        assert_eq!(run.result.as_ref().unwrap(), b"hunter2");
        assert_mode_restored(&run);
    }

    #[test]
    fn tty_erase_deletes_the_last_character() {
        // VERASE of a fresh pty is DEL (0x7f).
        let run = run_tty(b"pasx\x7fs\r", 64);
        assert_eq!(run.before.control_chars[libc::VERASE], 0x7f);
        assert_eq!(run.result.as_ref().unwrap(), b"pass");
        assert_mode_restored(&run);

        let run = run_tty(b"abc\x08d\r", 64);
        assert_eq!(run.result.as_ref().unwrap(), b"abd", "0x08 erases too");

        let run = run_tty(b"a\x7f\x7f\x7fb\r", 64);
        assert_eq!(
            run.result.as_ref().unwrap(),
            b"b",
            "erase on an empty entry does nothing"
        );
    }

    #[test]
    fn tty_erase_deletes_one_utf8_character_not_one_byte() {
        // "é" is two bytes (c3 a9): one Backspace takes both.
        let run = run_tty("é\x7f\r".as_bytes(), 64);
        assert!(
            matches!(run.result, Err(PasswordError::Empty)),
            "{:?}",
            run.result
        );
        assert_mode_restored(&run);

        let run = run_tty("aé\x7fb\r".as_bytes(), 64);
        assert_eq!(run.result.as_ref().unwrap(), b"ab");
        // Three and four bytes, with either erase key.
        let run = run_tty("x€\x08y😀\x7f\r".as_bytes(), 64);
        assert_eq!(run.result.as_ref().unwrap(), b"xy");
        let run = run_tty("ñé\x7f\x7f\x7fz\r".as_bytes(), 64);
        assert_eq!(run.result.as_ref().unwrap(), b"z");
        // Bytes that are not a whole UTF-8 sequence go one at a time.
        let run = run_tty(b"a\xc3\xa9\x80\x7f\r", 64);
        assert_eq!(run.result.as_ref().unwrap(), "aé".as_bytes());
        let run = run_tty(b"a\xe2\x82\x7f\r", 64);
        assert_eq!(run.result.as_ref().unwrap(), b"a\xe2");
        // When full: the last character makes room for exactly one more.
        let run = run_tty("abé\x7fc\r".as_bytes(), 4);
        assert_eq!(run.result.as_ref().unwrap(), b"abc");
    }

    #[test]
    fn last_char_len_finds_the_last_utf8_sequence() {
        assert_eq!(last_char_len(b""), 0);
        assert_eq!(last_char_len(b"a"), 1);
        assert_eq!(last_char_len(b"ab"), 1);
        assert_eq!(last_char_len("é".as_bytes()), 2);
        assert_eq!(last_char_len("a€".as_bytes()), 3);
        assert_eq!(last_char_len("😀".as_bytes()), 4);
        assert_eq!(last_char_len(b"\xff"), 1);
        assert_eq!(last_char_len(b"\xa9"), 1, "a lone continuation byte");
        assert_eq!(last_char_len(b"\xf0\x9f\x98"), 1, "a cut sequence");
        assert_eq!(
            last_char_len(b"\xc3\xa9\xa9"),
            1,
            "one continuation too many"
        );
    }

    #[test]
    fn tty_kill_clears_the_entry() {
        let run = run_tty(b"wrong\x15right\r", 64);
        assert_eq!(run.result.as_ref().unwrap(), b"right");
        assert_mode_restored(&run);

        let run = run_tty(b"wrong\x15\r", 64);
        assert!(
            matches!(run.result, Err(PasswordError::Empty)),
            "{:?}",
            run.result
        );
    }

    #[test]
    fn tty_ctrl_c_and_ctrl_backslash_interrupt_and_restore() {
        let run = run_tty(b"sec\x03ret\r", 64);
        assert!(
            matches!(
                run.result,
                Err(PasswordError::Interrupted { what: "Ctrl-C" })
            ),
            "{:?}",
            run.result
        );
        assert_mode_restored(&run);

        let run = run_tty(b"sec\x1cret\r", 64);
        assert!(
            matches!(
                run.result,
                Err(PasswordError::Interrupted { what: "Ctrl-\\" })
            ),
            "{:?}",
            run.result
        );
        assert_mode_restored(&run);
    }

    #[test]
    fn tty_too_long_stops_at_the_limit_and_restores() {
        let run = run_tty(b"abcde\r", 4);
        assert!(
            matches!(run.result, Err(PasswordError::TooLong { limit: 4 })),
            "{:?}",
            run.result
        );
        assert_mode_restored(&run);

        let run = run_tty(b"abcd\r", 4);
        assert_eq!(
            run.result.as_ref().unwrap(),
            b"abcd",
            "exactly the limit is accepted"
        );

        let run = run_tty(b"abcd\x7fe\r", 4);
        assert_eq!(
            run.result.as_ref().unwrap(),
            b"abce",
            "editing still works when full"
        );

        let run = run_tty(b"abcd\x15wxyz\r", 4);
        assert_eq!(run.result.as_ref().unwrap(), b"wxyz");
    }

    #[test]
    fn tty_empty_entry_and_ctrl_d() {
        let run = run_tty(b"\r", 64);
        assert!(
            matches!(run.result, Err(PasswordError::Empty)),
            "{:?}",
            run.result
        );
        assert_mode_restored(&run);

        // Ctrl-D on an empty entry is the end of the input: cancelled, as a
        // shell takes it, not an empty password.
        let run = run_tty(b"\x04", 64);
        assert!(
            matches!(
                run.result,
                Err(PasswordError::Interrupted { what: "Ctrl-D" })
            ),
            "{:?}",
            run.result
        );
        assert_mode_restored(&run);

        let run = run_tty(b"ab\x15\x04", 64);
        assert!(
            matches!(
                run.result,
                Err(PasswordError::Interrupted { what: "Ctrl-D" })
            ),
            "emptied by Ctrl-U first: {:?}",
            run.result
        );

        let run = run_tty(b"ab\x04c\r", 64);
        assert_eq!(
            run.result.as_ref().unwrap(),
            b"abc",
            "Ctrl-D on a non-empty entry is ignored"
        );
    }

    #[test]
    fn tty_ctrl_z_ignored_and_nul_kept() {
        let run = run_tty(b"a\x1ab\r", 64);
        assert_eq!(run.result.as_ref().unwrap(), b"ab");

        let run = run_tty(b"a\0b\xff\r", 64);
        assert_eq!(run.result.as_ref().unwrap(), b"a\0b\xff");
        assert_mode_restored(&run);
    }

    #[test]
    fn tty_interrupt_fd_stops_without_consuming_it() {
        let (sig_r, sig_w) = pipe().unwrap();
        let _serial = PTY_TESTS.lock().unwrap_or_else(PoisonError::into_inner);
        let pty = openpty(None, None).unwrap();
        let before = termios::tcgetattr(&pty.slave).unwrap();
        let (out_r, out_w) = pipe().unwrap();
        write_all(pty.master.as_fd(), b"abc").unwrap();
        write_all(sig_w.as_fd(), b"S").unwrap();
        let slave = pty.slave.try_clone().unwrap();
        let sig = sig_r.try_clone().unwrap();
        let r = bounded(move || {
            let r = read_terminal(slave.as_fd(), out_w.as_fd(), PROMPT, 64, Some(sig.as_fd()));
            bytes_of(r) // `out_w` closed here: end of file for `read_until`
        })
        .wait();
        assert!(
            matches!(
                r,
                Err(PasswordError::Interrupted {
                    what: "a termination signal"
                })
            ),
            "{r:?}"
        );
        assert_eq!(termios::tcgetattr(&pty.slave).unwrap(), before);
        assert_eq!(
            read_until(out_r.as_fd(), b"\0never\0"),
            format!("{PROMPT}\n").as_bytes()
        );
        let mut b = [0u8; 2];
        assert_eq!(
            nix::unistd::read(sig_r.as_raw_fd(), &mut b).unwrap(),
            1,
            "left for the caller"
        );
    }

    #[test]
    fn tty_interrupt_fd_while_waiting() {
        // Nothing typed; the interrupt descriptor becomes readable while the
        // read waits.
        let run = run_tty_with(b"", 64, |trigger| write_all(trigger, b"S").unwrap());
        assert!(
            matches!(
                run.result,
                Err(PasswordError::Interrupted {
                    what: "a termination signal"
                })
            ),
            "{:?}",
            run.result
        );
        assert_mode_restored(&run);
    }

    #[test]
    fn tty_typeahead_before_the_prompt_is_discarded() {
        // Typed (and echoed) before the terminal was in password mode: not
        // taken as the start of the password.
        let _serial = PTY_TESTS.lock().unwrap_or_else(PoisonError::into_inner);
        let pty = openpty(None, None).unwrap();
        let before = termios::tcgetattr(&pty.slave).unwrap();
        write_all(pty.master.as_fd(), b"shown").unwrap();
        // The echo shows the line discipline has taken the bytes in.
        assert_eq!(read_until(pty.master.as_fd(), b"shown"), b"shown");
        let (out_r, out_w) = pipe().unwrap();
        let slave = pty.slave.try_clone().unwrap();
        let reader = bounded(move || {
            bytes_of(read_terminal(
                slave.as_fd(),
                out_w.as_fd(),
                PROMPT,
                64,
                None,
            ))
        });
        assert_eq!(
            read_until(out_r.as_fd(), PROMPT.as_bytes()),
            PROMPT.as_bytes()
        );
        write_all(pty.master.as_fd(), b"pw\r").unwrap();
        assert_eq!(reader.wait().unwrap(), b"pw");
        assert_eq!(termios::tcgetattr(&pty.slave).unwrap(), before);
        assert!(
            !readable_within(pty.master.as_fd(), 50),
            "\"pw\" not echoed"
        );
    }

    #[test]
    fn tty_echo_would_be_noticed() {
        // Positive control for `echoed`: with the default settings a pty
        // echoes what is typed on it.
        let pty = openpty(None, None).unwrap();
        assert!(!readable_within(pty.master.as_fd(), 50));
        write_all(pty.master.as_fd(), b"x").unwrap();
        assert!(readable_within(pty.master.as_fd(), 1000));
    }

    #[test]
    fn not_a_terminal_points_to_password_stdin() {
        let (r, w) = pipe().unwrap();
        let err = read_terminal(r.as_fd(), w.as_fd(), PROMPT, 64, None).unwrap_err();
        assert!(matches!(err, PasswordError::NotATerminal), "{err:?}");
        assert!(err.to_string().contains("--password-stdin"), "{err}");
        drop(w);
        assert!(
            read_until(r.as_fd(), b"\0never\0").is_empty(),
            "no prompt written"
        );
    }

    #[test]
    fn error_messages_name_the_limit_and_what_happened() {
        assert_eq!(
            PasswordError::TooLong { limit: 1024 }.to_string(),
            "the password is longer than the limit of 1024 bytes; nothing was kept"
        );
        assert!(PasswordError::InputEnded
            .to_string()
            .contains("the input ended before a password was given"));
        assert!(PasswordError::Interrupted { what: "Ctrl-C" }
            .to_string()
            .contains("Ctrl-C"));
    }

    /// The child half of `panic_hook_restores_without_drop`: run only in a
    /// child process, where it leaves a terminal in password mode with no
    /// drop guard to restore it (as under `panic = "abort"`) and panics.
    #[test]
    #[ignore = "run by panic_hook_restores_without_drop in a child process"]
    fn panic_hook_child() {
        let Ok(path) = std::env::var("TERMINAL_TEST_CHILD_TTY") else {
            return;
        };
        if std::env::var("TERMINAL_TEST_CHILD_HOOK").as_deref() == Ok("1") {
            install_restore_hook();
        }
        let tty = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(path)
            .unwrap();
        let null = OpenOptions::new().write(true).open("/dev/null").unwrap();
        let raw = RawMode::enter(tty.as_fd(), null.as_fd()).unwrap();
        let _never_dropped = std::mem::ManuallyDrop::new(raw);
        panic!("simulated panic in password mode");
    }

    /// Runs `panic_hook_child` in a child process on a fresh pty; returns the
    /// slave's settings before and after.
    fn run_panicking_child(install_hook: bool) -> (Termios, Termios) {
        let pty = openpty(None, None).unwrap();
        let before = termios::tcgetattr(&pty.slave).unwrap();
        let path = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd())).unwrap();
        let module = module_path!();
        let test = module.split_once("::").map_or(module, |(_, rest)| rest);
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                &format!("{test}::panic_hook_child"),
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env("TERMINAL_TEST_CHILD_TTY", &path)
            .env(
                "TERMINAL_TEST_CHILD_HOOK",
                if install_hook { "1" } else { "0" },
            )
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !output.status.success(),
            "the child must have panicked: {all}"
        );
        // Printed by the default hook: with ours installed, this shows that
        // it chained to the previous one.
        assert!(all.contains("simulated panic in password mode"), "{all}");
        let after = termios::tcgetattr(&pty.slave).unwrap();
        (before, after)
    }

    #[test]
    fn panic_hook_restores_without_drop() {
        let (before, after) = run_panicking_child(true);
        assert_eq!(after, before, "the hook restored the terminal");
        // Positive control: without the hook, the terminal stays in password
        // mode, so the check above would notice a hook that did nothing.
        let (before, after) = run_panicking_child(false);
        assert!(before.local_flags.contains(LocalFlags::ECHO));
        assert!(
            !after.local_flags.contains(LocalFlags::ECHO),
            "left with echo off"
        );
    }

    // ---- standard input (pipes) ----

    /// Reads a line from a pipe into which `input` is written; the write end
    /// is closed afterwards if `close` (end of file), else kept open.
    fn run_line(input: &[u8], max_len: usize, close: bool) -> Result<Vec<u8>, PasswordError> {
        let (r, w) = pipe().unwrap();
        write_all(w.as_fd(), input).unwrap();
        let _keep_open = if close {
            drop(w);
            None
        } else {
            Some(w)
        };
        bounded(move || {
            with_watchdog(|interrupt, _| {
                bytes_of(read_line_from(r.as_fd(), max_len, Some(interrupt)))
            })
        })
        .wait()
    }

    #[test]
    fn stdin_reads_up_to_the_newline() {
        assert_eq!(run_line(b"hunter2\n", 64, false).unwrap(), b"hunter2");
        assert_eq!(run_line(b"hunter2\r\n", 64, true).unwrap(), b"hunter2");
        assert_eq!(
            run_line(b"a\r\r\n", 64, true).unwrap(),
            b"a\r",
            "only one \\r dropped"
        );
        assert_eq!(
            run_line(b"a\rb\n", 64, true).unwrap(),
            b"a\rb",
            "inner \\r kept"
        );
    }

    #[test]
    fn stdin_keeps_nothing_after_the_newline() {
        let (r, w) = pipe().unwrap();
        write_all(w.as_fd(), b"first\nsecond line\n").unwrap();
        let buf = read_line_from(r.as_fd(), 64, None).unwrap();
        assert_eq!(buf.expose(<[u8]>::to_vec), b"first");
        // The whole chunk was read into the buffer; everything after "first"
        // must have been wiped, not just hidden by the length.
        assert_eq!(buf.nonzero_bytes(), 5);
    }

    #[test]
    fn stdin_line_in_pieces() {
        let (r, w) = pipe().unwrap();
        let writer = std::thread::spawn(move || {
            write_all(w.as_fd(), b"hun").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            write_all(w.as_fd(), b"ter\r").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            write_all(w.as_fd(), b"\nrest").unwrap();
        });
        let got =
            bounded(move || with_watchdog(|i, _| bytes_of(read_line_from(r.as_fd(), 64, Some(i)))))
                .wait();
        writer.join().unwrap();
        assert_eq!(got.unwrap(), b"hunter");
    }

    #[test]
    fn stdin_end_of_file_ends_the_password_as_it_is() {
        // `printf %s pw`: no line ending, nothing removed.
        assert_eq!(run_line(b"abc", 64, true).unwrap(), b"abc");
        assert_eq!(
            run_line(b"abc\r", 64, true).unwrap(),
            b"abc\r",
            "a \r without \n is part of the password"
        );
        assert_eq!(run_line(b"a\nb", 64, true).unwrap(), b"a");
        // At the limit exactly, the end of the input is accepted like a newline.
        assert_eq!(run_line(b"abcd", 4, true).unwrap(), b"abcd");
        // The limit with a \r past it, then the end: the \r is a fifth byte.
        let r = run_line(b"abcd\r", 4, true);
        assert!(
            matches!(r, Err(PasswordError::TooLong { limit: 4 })),
            "{r:?}"
        );
    }

    #[test]
    fn stdin_only_the_first_line_is_the_password() {
        // Reading stops at the first newline: "pw\n\n" is "pw", and an empty
        // first line is an empty password whatever follows.
        assert_eq!(run_line(b"pw\n\n", 64, true).unwrap(), b"pw");
        assert_eq!(run_line(b"pw\r\n\r\n", 64, true).unwrap(), b"pw");
        let r = run_line(b"\npw\n", 64, true);
        assert!(matches!(r, Err(PasswordError::Empty)), "{r:?}");
    }

    #[test]
    fn stdin_at_its_end_with_nothing_read_is_no_password() {
        let r = run_line(b"", 64, true);
        assert!(matches!(r, Err(PasswordError::InputEnded)), "{r:?}");
        let r = run_line(b"", 0, true);
        assert!(matches!(r, Err(PasswordError::InputEnded)), "{r:?}");
        // Positive control: one byte, then the end, is a password.
        assert_eq!(run_line(b"x", 64, true).unwrap(), b"x");
    }

    #[test]
    fn stdin_too_long_is_bounded() {
        // The write end stays open: a reader that kept waiting for a newline
        // would hang (and the watchdog would turn it into `Interrupted`).
        let r = run_line(b"abcde", 4, false);
        assert!(
            matches!(r, Err(PasswordError::TooLong { limit: 4 })),
            "{r:?}"
        );
        let r = run_line(&[b'x'; 5000], 4096, false);
        assert!(
            matches!(r, Err(PasswordError::TooLong { limit: 4096 })),
            "{r:?}"
        );
        let r = run_line(b"abcd\rx\n", 4, true);
        assert!(
            matches!(r, Err(PasswordError::TooLong { limit: 4 })),
            "{r:?}"
        );
        let r = run_line(b"abcd\r\r\n", 4, true);
        assert!(
            matches!(r, Err(PasswordError::TooLong { limit: 4 })),
            "{r:?}"
        );
    }

    #[test]
    fn stdin_exactly_the_limit_is_accepted() {
        assert_eq!(run_line(b"abcd\n", 4, false).unwrap(), b"abcd");
        assert_eq!(run_line(b"abcd\r\n", 4, false).unwrap(), b"abcd");
        assert_eq!(run_line(b"abc\r\n", 4, false).unwrap(), b"abc");
    }

    #[test]
    fn stdin_empty_line_refused() {
        let r = run_line(b"\n", 64, false);
        assert!(matches!(r, Err(PasswordError::Empty)), "{r:?}");
        let r = run_line(b"\r\n", 64, false);
        assert!(matches!(r, Err(PasswordError::Empty)), "{r:?}");
        let r = run_line(b"\n", 0, false);
        assert!(matches!(r, Err(PasswordError::Empty)), "{r:?}");
    }

    #[test]
    fn stdin_nul_and_non_utf8_kept() {
        assert_eq!(run_line(b"a\0b\xff\n", 64, false).unwrap(), b"a\0b\xff");
    }

    #[test]
    fn stdin_interrupt_fd_wins_and_is_not_consumed() {
        let (sig_r, sig_w) = pipe().unwrap();
        write_all(sig_w.as_fd(), b"S").unwrap();

        // Nothing to read: the interrupt ends the wait.
        let (r, w) = pipe().unwrap();
        let sig = sig_r.try_clone().unwrap();
        let res =
            bounded(move || bytes_of(read_line_from(r.as_fd(), 64, Some(sig.as_fd())))).wait();
        drop(w);
        assert!(
            matches!(
                res,
                Err(PasswordError::Interrupted {
                    what: "a termination signal"
                })
            ),
            "{res:?}"
        );

        // Input ready too: the interrupt still wins.
        let (r, w) = pipe().unwrap();
        write_all(w.as_fd(), b"abc\n").unwrap();
        let (r2, sig) = (r.try_clone().unwrap(), sig_r.try_clone().unwrap());
        let res =
            bounded(move || bytes_of(read_line_from(r2.as_fd(), 64, Some(sig.as_fd())))).wait();
        assert!(
            matches!(res, Err(PasswordError::Interrupted { .. })),
            "{res:?}"
        );

        let mut b = [0u8; 2];
        assert_eq!(
            nix::unistd::read(sig_r.as_raw_fd(), &mut b).unwrap(),
            1,
            "left for the caller"
        );
        // Positive control: with the interrupt drained, the same input reads.
        let res = read_line_from(r.as_fd(), 64, Some(sig_r.as_fd()));
        assert_eq!(bytes_of(res).unwrap(), b"abc");
    }
}
