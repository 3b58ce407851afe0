//! The broker: keeps only ciphertext, by name, and lends plaintext to closures.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use common::protocol::{self, HeapStatus, Request, Response, ENVELOPE_AAD, NONCE_LEN, TAG_LEN};
use common::ring::{Backing, Channel, MAX_FRAME};
use common::secret::{Memory, SecretBuf, WipeOnDrop};
pub use common::secretmem::Setting as SecretMemory;

use common::sandbox::Mode as SandboxMode;

use crate::crypto::{self, RsaPublicKey};
use crate::error::{Error, ProtocolOrRing};
use crate::launch::process::VaultArgs;
use crate::launch::{self, Image, LaunchError, VaultExit, VaultProcess};
use crate::session::{label, KeyInfo, Lane, Link, Session};

/// Largest secret stored (in an envelope beyond one RSA block).
pub const MAX_SECRET_LEN: usize = 64 * 1024;
/// Length of an envelope's AES-256 data key.
const DATA_KEY_LEN: usize = 32;

/// What the broker keeps of a secret: ciphertext only.
#[derive(Clone)]
enum Sealed {
    /// RSA-OAEP-SHA256 of the secret itself.
    Direct(Vec<u8>),
    /// AES-256-GCM of the secret under a data key wrapped with RSA-OAEP-SHA256.
    Envelope {
        wrapped: Vec<u8>,
        nonce: [u8; NONCE_LEN],
        tag: [u8; TAG_LEN],
        ciphertext: Vec<u8>,
    },
}

/// Bytes of OAEP overhead with SHA-256 (2 * 32 + 2).
const OAEP_SHA256_OVERHEAD: usize = 66;
/// Longest secret name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Most secrets one broker keeps by default ([`Config::max_secrets`]).
pub const MAX_SECRETS: usize = 4096;

/// How the broker starts and talks to its vault. Start from
/// [`Config::default`] and change what you need:
///
/// ```
/// use std::time::Duration;
///
/// let config = broker::Config {
///     vault_path: Some("/opt/app/libexec/privsep-vault/vault".into()),
///     key_bits: 3072,
///     request_timeout: Duration::from_secs(2),
///     ..broker::Config::default()
/// };
/// assert_eq!(config.lanes, 0); // the default: one per CPU, at most 4
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// The vault binary. Default `None`: the one [`crate::protect_process`]
    /// prepared, if it was called; else, from the running program's
    /// directory, `../libexec/privsep-vault/vault` (where `make install`
    /// puts it), then `vault` beside it, then the fixed place under the
    /// install prefix baked in at build time,
    /// [`crate::launch::installed_vault`] (`/usr/local/...` by default;
    /// [`crate::launch::vault_candidates`]; when none exists,
    /// [`LaunchError::NotFound`] lists the paths tried).
    /// Whichever it is, it is trust-checked and run from a descriptor: see
    /// [`crate::launch`].
    pub vault_path: Option<PathBuf>,
    /// RSA modulus size: 2048 (the default), 3072 or 4096; anything else is
    /// [`Error::KeyBits`].
    pub key_bits: u32,
    /// Secure heap arena size in bytes, a power of two. Default `None`:
    /// sized by lanes ([`common::budget::default_arena`]: 1 MiB for one
    /// lane, 2 MiB for two to four). The arena holds the key, all of
    /// OpenSSL's state in the vault and a 256 KiB stack per lane; the vault
    /// refuses one too small for them.
    pub heap_size: Option<usize>,
    /// Secure heap minimum allocation in bytes, a power of two. Default
    /// `None`: the vault's, 16.
    pub heap_min: Option<usize>,
    /// Longest a request may wait for its answer before the vault is
    /// declared stuck and killed ([`Error::Timeout`]). Default 5 s.
    pub request_timeout: Duration,
    /// Longest the start may take, key generation included. Default 60 s.
    pub start_timeout: Duration,
    /// How long a shutdown waits for the vault to exit before SIGTERM, and
    /// after SIGTERM before SIGKILL. Default 2 s.
    pub shutdown_grace: Duration,
    /// The vault's sandbox. Default [`SandboxMode::Enforce`]; the learning
    /// modes are for policy work only.
    pub sandbox_mode: SandboxMode,
    /// Extra arguments for the vault (the regression suite's `--selftest`).
    #[doc(hidden)]
    pub vault_args: Vec<String>,
    /// Whether the vault's secure-heap arena (the key), the rings' data and
    /// the broker's plaintext buffers are `memfd_secret` memory: pages out
    /// of the kernel's direct map, so that a passive read by root
    /// (`/proc/PID/mem`, ptrace `PEEKDATA`, `process_vm_readv`, a core
    /// dump) fails, though root that drives the process with ptrace still
    /// wins. Default [`SecretMemory::Auto`]: where the kernel offers it,
    /// else ordinary locked memory ([`Broker::secret_memory`] says which,
    /// and why). [`SecretMemory::Require`] makes its absence
    /// [`Error::SecretMemoryUnavailable`]; [`SecretMemory::Off`] is for
    /// comparison and for tests that read the processes' memory.
    pub secret_memory: SecretMemory,
    /// Most secrets stored at once; one more is [`Error::TooManySecrets`].
    /// Default [`MAX_SECRETS`] (4096).
    pub max_secrets: usize,
    /// Lanes: ring pairs, each served by its own thread in the vault;
    /// requests from that many threads run in parallel. Default 0: one per
    /// CPU, at most [`DEFAULT_MAX_LANES`] (4), and fewer if the memory-lock
    /// limit requires it ([`common::budget`]). A number asked for (at most
    /// [`MAX_LANES`]) is never shrunk: the start fails with
    /// [`Error::MemLock`], naming the figure, if the limit is too low for it.
    pub lanes: usize,
    /// Whether OpenSSL's error strings may load in this process. Default
    /// `false`: [`Broker::spawn`] first tells OpenSSL never to load them
    /// (`OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS`), which keeps the text of
    /// every error OpenSSL knows (about 430 KiB of resident memory, measured
    /// by `make bench`) out of the application. OpenSSL's errors are then
    /// reported by their codes (`error:0200006E`; `openssl errstr 0200006E`
    /// gives the text). This is a choice for the whole process, and only
    /// the first initialisation of OpenSSL makes it: if the application
    /// used OpenSSL before spawning a broker, its choice stands (the
    /// `openssl` crate loads the strings at its first use). `true` leaves
    /// OpenSSL's default, which loads them at its first use.
    pub openssl_error_strings: bool,
}

/// Most lanes a vault serves.
pub const MAX_LANES: usize = 16;
/// Most lanes chosen by default (one per CPU up to this).
pub const DEFAULT_MAX_LANES: usize = 4;

impl Default for Config {
    fn default() -> Self {
        Self {
            vault_path: None,
            key_bits: 2048,
            heap_size: None,
            heap_min: None,
            request_timeout: Duration::from_secs(5),
            start_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(2),
            sandbox_mode: SandboxMode::Enforce,
            vault_args: Vec::new(),
            secret_memory: SecretMemory::Auto,
            max_secrets: MAX_SECRETS,
            lanes: 0,
            openssl_error_strings: false,
        }
    }
}

/// Evidence, observed by the broker, that each side wiped its copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WipeEvidence {
    /// Non-zero bytes the vault left of the request frame in the ring after
    /// reading it (0: the vault wiped it). `None` if it could not be told.
    pub request_frame_residue: Option<usize>,
    /// Non-zero bytes left in both rings of the lane the exchange used after
    /// the broker read the answer (0: nothing, neither ciphertext nor
    /// plaintext, is left in that shared memory).
    pub ring_residue: usize,
    /// Non-zero bytes left in the broker's private copy after the closure
    /// returned (0: wiped).
    pub broker_copy_residue: usize,
}

impl WipeEvidence {
    /// Whether every observation shows a complete wipe.
    pub fn all_wiped(&self) -> bool {
        self.request_frame_residue == Some(0)
            && self.ring_residue == 0
            && self.broker_copy_residue == 0
    }
}

/// A running vault, and the ciphertexts of the secrets stored with it.
///
/// [`Broker::spawn`] starts the vault and waits until its key is generated
/// and verified; dropping the handle shuts the vault down as
/// [`Broker::shutdown`] does.
///
/// **Lanes.** The broker talks to the vault over several lanes
/// ([`Broker::lanes`], [`Config::lanes`]): each a ring pair (a request
/// ring and an answer ring in one sealed memfd) served by its own thread
/// in the vault. `Broker` is `Send + Sync`: share it between threads (an
/// `Arc`, or a reference in scoped threads). A request takes a free lane,
/// or waits for one when all are busy, so requests from as many threads as
/// there are lanes run in parallel.
///
/// **Failures.** When the vault dies, stops answering or breaks the
/// protocol on any lane, it is killed and every ring wiped; that request
/// and every later one get the error ([`Error::VaultDied`],
/// [`Error::Timeout`], [`Error::Protocol`]) until [`Broker::restart`]
/// starts a new vault, with a new key.
///
/// ```no_run
/// // no_run: starts a vault (see the crate's documentation for where it
/// // is found).
/// use std::sync::Arc;
///
/// let vault = Arc::new(broker::Broker::spawn(broker::Config::default())?);
/// let readers: Vec<_> = (0..vault.lanes())
///     .map(|_| {
///         let vault = Arc::clone(&vault);
///         std::thread::spawn(move || vault.with_secret("db-password", |b| b.len()))
///     })
///     .collect();
/// for r in readers {
///     println!("{:?}", r.join().expect("no panic"));
/// }
/// # Ok::<(), broker::Error>(())
/// ```
pub struct Broker {
    session: RwLock<Arc<Session>>,
    /// The vault program, checked once and run from this descriptor on
    /// every (re)start.
    image: Arc<Image>,
    secrets: Mutex<BTreeMap<String, Entry>>,
    buffers: Mutex<Vec<SecretBuf>>,
    /// What the rings and the plaintext buffers are made of, chosen once.
    memory: MemoryChoice,
    config: Config,
}

/// The memory chosen at [`Broker::spawn`] for the broker's side.
#[derive(Debug, Clone)]
struct MemoryChoice {
    backing: Backing,
    /// Under [`SecretMemory::Auto`], why secret memory is not used.
    why_not: Option<String>,
}

/// Which memory holds the secrets, as [`Broker::secret_memory`] found it:
/// `memfd_secret` pages (out of the kernel's direct map, so a passive read
/// by root fails) or ordinary locked memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMemoryInForce {
    /// The setting asked for.
    pub setting: SecretMemory,
    /// The vault's secure-heap arena (the key, OpenSSL's state, the stacks
    /// of the threads that use the key) is secret memory.
    pub arena: bool,
    /// The rings' data (ciphertext and plaintext in transit) is secret
    /// memory.
    pub rings: bool,
    /// The broker's plaintext buffers are secret memory.
    pub buffers: bool,
    /// Under [`SecretMemory::Auto`], why the broker's side is not secret
    /// memory (the vault says why for the arena on its standard error).
    pub why_not: Option<String>,
}

/// Chooses the broker's memory for `setting`: probed once, before anything
/// starts.
fn choose_memory(setting: SecretMemory) -> Result<MemoryChoice, Error> {
    let secret = MemoryChoice {
        backing: Backing::Secret,
        why_not: None,
    };
    match (setting, common::secretmem::probe()) {
        (SecretMemory::Off, _) => Ok(MemoryChoice {
            backing: Backing::SealedMemfd,
            why_not: None,
        }),
        (_, Ok(())) => Ok(secret),
        (SecretMemory::Require, Err(e)) => {
            Err(Error::SecretMemoryUnavailable { why: e.to_string() })
        }
        (SecretMemory::Auto, Err(e)) => Ok(MemoryChoice {
            backing: Backing::SealedMemfd,
            why_not: Some(e.to_string()),
        }),
    }
}

/// A stored secret: its ciphertext and the key it was sealed under.
struct Entry {
    key_id: [u8; 32],
    sealed: Sealed,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("vault_pid", &self.vault_pid())
            .field("key_bits", &self.config.key_bits)
            .finish_non_exhaustive()
    }
}

/// The memory of the broker's plaintext buffers for a ring backing.
fn memory_for(ring: Backing) -> Memory {
    match ring {
        Backing::SealedMemfd => Memory::Locked,
        Backing::Secret => Memory::Secret,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a `with_secret` closure never happens under these locks, but
    // if one did, the data (ciphertexts, ring state) is still consistent.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Broker {
    /// Starts a vault and waits until its key is generated and verified.
    ///
    /// The vault is the one [`Config::vault_path`] names, else the one
    /// [`crate::protect_process`] prepared, else the first of
    /// [`crate::launch::vault_candidates`] that exists.
    ///
    /// # Errors
    ///
    /// [`Error::KeyBits`]; [`Error::Launch`] when the vault is not found
    /// (the message lists the paths tried), fails the trust check or cannot
    /// be started; [`Error::MemLock`] when `RLIMIT_MEMLOCK` is too low;
    /// [`Error::VaultDied`] or [`Error::Timeout`] when the vault fails its
    /// own start-up checks or takes longer than [`Config::start_timeout`];
    /// [`Error::VaultTraced`].
    pub fn spawn(config: Config) -> Result<Self, Error> {
        if !config.openssl_error_strings {
            // Before any other use of OpenSSL by this library (a no-op if
            // the application initialised OpenSSL first).
            common::openssl_init::keep_error_strings_unloaded();
        }
        if !matches!(config.key_bits, 2048 | 3072 | 4096) {
            return Err(Error::KeyBits {
                bits: config.key_bits,
            });
        }
        let image = match (&config.vault_path, launch::protected_vault()) {
            (Some(path), _) => Arc::new(Image::prepare(path, c"vault").map_err(LaunchError::from)?),
            (None, Some(image)) => image,
            (None, None) => Arc::new(
                Image::prepare(&launch::find_vault()?, c"vault").map_err(LaunchError::from)?,
            ),
        };
        let memory = choose_memory(config.secret_memory)?;
        let (session, buf) = Self::start_session(&config, &image, memory.backing)?;
        Ok(Self {
            session: RwLock::new(Arc::new(session)),
            image,
            secrets: Mutex::new(BTreeMap::new()),
            buffers: Mutex::new(vec![buf]),
            memory,
            config,
        })
    }

    /// Starts a vault and waits for its public key.
    fn start_session(
        config: &Config,
        image: &Image,
        backing: Backing,
    ) -> Result<(Session, SecretBuf), Error> {
        // The vault inherits this process's RLIMIT_MEMLOCK, and cannot
        // exceed it (it has no CAP_IPC_LOCK): choose what fits before
        // anything starts.
        let wanted = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(DEFAULT_MAX_LANES);
        let asked = (config.lanes != 0).then(|| config.lanes.clamp(1, MAX_LANES));
        let plan = common::budget::plan(
            asked,
            wanted,
            config.heap_size,
            common::budget::memlock_limit(),
        )?;
        let lanes = plan.lanes;
        let mut all_fds = Vec::with_capacity(lanes);
        let mut chans = Vec::with_capacity(lanes);
        for _ in 0..lanes {
            let (fds, chan) = Channel::create_with(backing).map_err(Error::Ring)?;
            all_fds.push(fds);
            chans.push(Lane::new(chan));
        }
        let ring_seals =
            common::seal::seals(all_fds[0].control.as_fd()).map_err(|e| Error::Ring(e.into()))?;
        let args = VaultArgs {
            key_bits: config.key_bits,
            heap_size: Some(plan.arena),
            heap_min: config.heap_min,
            sandbox_mode: config.sandbox_mode,
            secret_memory: config.secret_memory,
            extra: config.vault_args.clone(),
        };
        let controls: Vec<_> = all_fds.iter().map(|f| f.control.as_fd()).collect();
        let datas: Vec<_> = all_fds
            .iter()
            .filter_map(|f| f.data.as_ref().map(AsFd::as_fd))
            .collect();
        let vault =
            VaultProcess::spawn(image, &controls, &datas, &args).map_err(LaunchError::from)?;
        // The vault has its own copies of the fds; ours are no longer needed.
        drop(controls);
        drop(datas);
        drop(all_fds);
        let vault_pid = vault.pid();
        let link = Link::new(vault, chans);
        let mut buf = SecretBuf::new_in(MAX_FRAME as usize, memory_for(backing))?;
        let (id, _) = link.exchange(
            &Request::PublicKey,
            crate::session::START_UP,
            config.start_timeout,
            &mut buf,
            false,
        )?;
        let der = match buf.expose(|f| match protocol::decode_response(f) {
            Ok((got, Response::PublicKey { der })) if got == id => Ok(der.to_vec()),
            Ok((got, _)) if got != id => Err(ProtocolOrRing::WrongId { expected: id, got }),
            Ok((_, Response::Error(code))) => Err(ProtocolOrRing::WrongKind {
                request: "PublicKey",
                got: code.describe(),
            }),
            Ok((_, other)) => Err(ProtocolOrRing::WrongKind {
                request: "PublicKey",
                got: label(&other),
            }),
            Err(e) => Err(e.into()),
        }) {
            Ok(der) => der,
            Err(e) => return Err(link.protocol_error("start-up", e)),
        };
        let public = match RsaPublicKey::from_der(&der) {
            Ok(k) if k.bits() == config.key_bits => k,
            Ok(k) => {
                let e = Error::PublicKey(format!(
                    "the vault sent a {}-bit key, {} were asked for",
                    k.bits(),
                    config.key_bits
                ));
                link.stop(config.shutdown_grace);
                return Err(e);
            }
            Err(e) => {
                link.stop(config.shutdown_grace);
                return Err(Error::PublicKey(e.to_string()));
            }
        };
        // No tracer may hold the vault. It cannot attach after the vault's
        // first instruction (the vault is non-dumpable from there, and it was
        // started with CLONE_UNTRACED), and the vault checks itself; this is
        // the same check from outside, before any secret is sent to it.
        if let Some(tracer) = tracer_of(vault_pid) {
            link.stop(config.shutdown_grace);
            return Err(Error::VaultTraced { tracer });
        }
        let fingerprint = match crypto::sha256(&der) {
            Ok(f) => f,
            Err(e) => {
                link.stop(config.shutdown_grace);
                return Err(Error::PublicKey(e.to_string()));
            }
        };
        let key = Arc::new(KeyInfo {
            public,
            der,
            fingerprint,
            vault_pid,
            ring_seals,
        });
        Ok((Session { link, key }, buf))
    }

    /// The current session.
    fn session(&self) -> Arc<Session> {
        self.session
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current vault's key.
    fn key(&self) -> Arc<KeyInfo> {
        self.session().key.clone()
    }

    /// Starts a fresh vault (with a fresh key) in place of the current one,
    /// which is shut down first if it still runs. Secrets stored under the
    /// old key cannot be opened any more: their names are returned, and
    /// [`Broker::with_secret`] reports them as [`Error::Lost`] until they are
    /// stored again.
    pub fn restart(&self) -> Result<Vec<String>, Error> {
        let mut session = self.session.write().unwrap_or_else(|p| p.into_inner());
        session.link.stop(self.config.shutdown_grace);
        let (fresh, buf) = Self::start_session(&self.config, &self.image, self.memory.backing)?;
        let current = fresh.key.fingerprint;
        *session = Arc::new(fresh);
        drop(session);
        self.give_buffer(buf);
        Ok(lock(&self.secrets)
            .iter()
            .filter(|(_, e)| e.key_id != current)
            .map(|(n, _)| n.clone())
            .collect())
    }

    /// Names of the secrets stored under a key that no longer exists.
    pub fn lost_names(&self) -> Vec<String> {
        let current = self.key().fingerprint;
        lock(&self.secrets)
            .iter()
            .filter(|(_, e)| e.key_id != current)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The vault program this broker runs (and how: from an execute-only
    /// sealed copy, or installed execute-only).
    pub fn vault_image(&self) -> &Image {
        &self.image
    }

    /// The vault's pid.
    pub fn vault_pid(&self) -> u32 {
        self.key().vault_pid
    }

    /// What the ring is made of.
    pub fn ring_backing(&self) -> Backing {
        self.memory.backing
    }

    /// Which memory holds the secrets now: the broker's side as chosen at
    /// [`Broker::spawn`], the vault's arena as the vault reports it.
    ///
    /// # Errors
    ///
    /// As [`Broker::heap_status`], which it asks the vault.
    pub fn secret_memory(&self) -> Result<SecretMemoryInForce, Error> {
        let arena = self.heap_status()?.arena_secret;
        let secret = self.memory.backing == Backing::Secret;
        Ok(SecretMemoryInForce {
            setting: self.config.secret_memory,
            arena,
            rings: secret,
            buffers: secret,
            why_not: self.memory.why_not.clone(),
        })
    }

    /// The seals the ring's memfd carries (`F_GET_SEALS`, read before the fd
    /// was handed to the vault): the whole region's, or the control part's
    /// for a secret memory ring (whose data part cannot be sealed; its size
    /// is set once instead).
    pub fn ring_seals(&self) -> i32 {
        self.key().ring_seals
    }

    /// The configuration the broker runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The vault's public key, DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.key().der.clone()
    }

    /// The vault's public key, PEM.
    pub fn public_key_pem(&self) -> Result<Vec<u8>, Error> {
        RsaPublicKey::pem(&self.key().der).map_err(|e| Error::PublicKey(e.to_string()))
    }

    /// SHA-256 of the DER public key.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.key().fingerprint
    }

    /// Largest secret [`Broker::store`] takes (64 KiB).
    pub fn max_secret_len(&self) -> usize {
        MAX_SECRET_LEN
    }

    /// Largest secret encrypted directly with RSA-OAEP-SHA256, as in the
    /// original (190 bytes at 2048 bits): passwords. Longer ones are sealed in
    /// an envelope.
    pub fn direct_secret_len(&self) -> usize {
        self.key_bytes().saturating_sub(OAEP_SHA256_OVERHEAD)
    }

    /// Bytes of an RSA block (the direct ciphertext's length).
    pub fn key_bytes(&self) -> usize {
        self.key().public.size()
    }

    fn take_buffer(&self) -> Result<SecretBuf, Error> {
        match lock(&self.buffers).pop() {
            Some(b) => Ok(b),
            None => Ok(SecretBuf::new_in(
                MAX_FRAME as usize,
                memory_for(self.memory.backing),
            )?),
        }
    }

    fn give_buffer(&self, mut buf: SecretBuf) {
        buf.clear();
        let mut pool = lock(&self.buffers);
        if pool.len() < 8 {
            pool.push(buf);
        }
    }

    fn check_name(name: &str) -> Result<(), Error> {
        if name.is_empty() {
            return Err(Error::BadName {
                reason: "it is empty",
            });
        }
        if name.len() > MAX_NAME_LEN {
            return Err(Error::BadName {
                reason: "it is longer than 128 bytes",
            });
        }
        if name.chars().any(char::is_control) {
            return Err(Error::BadName {
                reason: "it contains control characters",
            });
        }
        Ok(())
    }

    /// Encrypts `secret` with the vault's public key and keeps only the
    /// ciphertext under `name`. The plaintext buffer is consumed and wiped at
    /// once, whether or not this succeeds. A name already in use is refused.
    ///
    /// Up to [`Broker::direct_secret_len`] bytes, the secret is encrypted
    /// directly with RSA-OAEP-SHA256 (the original's scheme). Longer ones, up
    /// to 64 KiB, go into an envelope: a fresh AES-256-GCM key per secret
    /// encrypts it, and RSA-OAEP-SHA256 wraps that key; the data key lives in
    /// a locked buffer and is wiped as soon as it is wrapped.
    pub fn store(&self, name: &str, secret: SecretBuf) -> Result<(), Error> {
        let secret = secret; // dropped (wiped) at the end of this call
        Self::check_name(name)?;
        if secret.is_empty() {
            return Err(Error::EmptySecret);
        }
        if secret.len() > MAX_SECRET_LEN {
            return Err(Error::SecretTooLong {
                len: secret.len(),
                limit: MAX_SECRET_LEN,
            });
        }
        {
            let mut secrets = lock(&self.secrets);
            // A secret lost with an earlier vault's key may be stored again.
            let current = self.key().fingerprint;
            if secrets.get(name).is_some_and(|e| e.key_id != current) {
                secrets.remove(name);
            }
            if secrets.contains_key(name) {
                return Err(Error::NameExists {
                    name: name.to_owned(),
                });
            }
            if secrets.len() >= self.config.max_secrets {
                return Err(Error::TooManySecrets {
                    limit: self.config.max_secrets,
                });
            }
        }
        let key = self.key();
        let direct = key.public.size().saturating_sub(OAEP_SHA256_OVERHEAD);
        let sealed = if secret.len() <= direct {
            Sealed::Direct(secret.expose(|plain| encrypt(&key.public, plain))?)
        } else {
            secret.expose(|plain| seal_envelope(&key.public, plain))?
        };
        drop(secret);
        let mut secrets = lock(&self.secrets);
        if secrets.contains_key(name) {
            return Err(Error::NameExists {
                name: name.to_owned(),
            });
        }
        secrets.insert(
            name.to_owned(),
            Entry {
                key_id: key.fingerprint,
                sealed,
            },
        );
        Ok(())
    }

    /// Lends the plaintext of `name` to `f`. The ciphertext goes to the vault,
    /// the plaintext comes back through the ring (wiped there by the broker as
    /// it reads it) into a locked private buffer, which is wiped when `f`
    /// returns or panics.
    pub fn with_secret<R>(&self, name: &str, f: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
        self.with_secret_inner(name, f, false).map(|(r, _)| r)
    }

    /// As [`Broker::with_secret`], and also reports what the broker observed
    /// of both sides' wipes (scans both rings: slower, for demos and tests).
    pub fn with_secret_evidence<R>(
        &self,
        name: &str,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<(R, WipeEvidence), Error> {
        self.with_secret_inner(name, f, true)
    }

    fn with_secret_inner<R>(
        &self,
        name: &str,
        f: impl FnOnce(&[u8]) -> R,
        observe: bool,
    ) -> Result<(R, WipeEvidence), Error> {
        let (key_id, sealed) = lock(&self.secrets)
            .get(name)
            .map(|e| (e.key_id, e.sealed.clone()))
            .ok_or_else(|| Error::UnknownName {
                name: name.to_owned(),
            })?;
        let request = match &sealed {
            Sealed::Direct(ciphertext) => Request::Decrypt { ciphertext },
            Sealed::Envelope {
                wrapped,
                nonce,
                tag,
                ciphertext,
            } => Request::Unseal {
                wrapped,
                nonce,
                tag,
                ciphertext,
            },
        };
        let mut buf = self.take_buffer()?;
        let mut evidence = WipeEvidence::default();
        let session = self.session();
        if session.key.fingerprint != key_id {
            self.give_buffer(buf);
            return Err(Error::Lost {
                name: name.to_owned(),
            });
        }
        let (id, observed) = session.link.exchange(
            &request,
            "a decryption",
            self.config.request_timeout,
            &mut buf,
            observe,
        )?;
        if let Some((residue, ring)) = observed {
            evidence.request_frame_residue = residue;
            evidence.ring_residue = ring;
        }
        let result = {
            let guard = WipeOnDrop(&mut buf);
            guard
                .0
                .expose(|frame| match protocol::decode_response(frame) {
                    Ok((got, _)) if got != id => Err(ProtocolOrRing::WrongId { expected: id, got }),
                    Ok((_, Response::Plaintext { bytes })) if bytes.len() > MAX_SECRET_LEN => {
                        Err(ProtocolOrRing::AnswerTooLarge {
                            len: bytes.len(),
                            max: MAX_SECRET_LEN,
                        })
                    }
                    Ok((_, Response::Plaintext { bytes })) => Ok(Ok(f(bytes))),
                    Ok((_, Response::Error(code))) => Ok(Err(code)),
                    Ok((_, other)) => Err(ProtocolOrRing::WrongKind {
                        request: "Decrypt",
                        got: label(&other),
                    }),
                    Err(e) => Err(e.into()),
                })
        };
        if observe {
            evidence.broker_copy_residue = buf.nonzero_bytes();
        }
        self.give_buffer(buf);
        match result {
            Ok(Ok(r)) => Ok((r, evidence)),
            Ok(Err(code)) => Err(Error::Refused {
                during: "a decryption",
                code,
            }),
            Err(e) => Err(session.link.protocol_error("a decryption", e)),
        }
    }

    /// Forgets `name` (its ciphertext is dropped).
    pub fn delete(&self, name: &str) -> Result<(), Error> {
        lock(&self.secrets)
            .remove(name)
            .map(drop)
            .ok_or_else(|| Error::UnknownName {
                name: name.to_owned(),
            })
    }

    /// The names of the secrets held, sorted.
    pub fn names(&self) -> Vec<String> {
        lock(&self.secrets).keys().cloned().collect()
    }

    /// Asks the vault for its secure heap and key state.
    pub fn heap_status(&self) -> Result<HeapStatus, Error> {
        let mut buf = self.take_buffer()?;
        let session = self.session();
        let (id, _) = session.link.exchange(
            &Request::HeapStatus,
            "a heap status request",
            self.config.request_timeout,
            &mut buf,
            false,
        )?;
        let r = buf.expose(|f| match protocol::decode_response(f) {
            Ok((got, _)) if got != id => Err(ProtocolOrRing::WrongId { expected: id, got }),
            Ok((_, Response::HeapStatus(s))) => Ok(s),
            Ok((_, other)) => Err(ProtocolOrRing::WrongKind {
                request: "HeapStatus",
                got: label(&other),
            }),
            Err(e) => Err(e.into()),
        });
        let r = r.map_err(|e| session.link.protocol_error("a heap status request", e));
        self.give_buffer(buf);
        r
    }

    /// Shuts the vault down: asks it to wipe and exit, then SIGTERM after the
    /// grace period, then SIGKILL. Returns how the vault ended. Later calls
    /// fail with [`Error::ShutDown`] (or report the earlier death).
    pub fn shutdown(&self) -> Result<VaultExit, Error> {
        let session = self.session();
        if let Some(exit) = session.link.closed() {
            return if exit.is_clean() {
                Err(Error::ShutDown)
            } else {
                Err(Error::VaultDied {
                    exit,
                    during: "shutdown",
                    said: crate::error::LastWords(None),
                    program: None,
                })
            };
        }
        Ok(session.link.stop(self.config.shutdown_grace))
    }

    /// Whether the vault has ended, and how (does not block).
    pub fn vault_exit(&self) -> Option<VaultExit> {
        self.session().link.vault_exit()
    }

    /// Number of lanes: ring pairs, each with its own worker thread in the
    /// vault; as many requests run at once.
    pub fn lanes(&self) -> usize {
        self.session().link.lanes()
    }
}

/// The `TracerPid` of process `pid`, if it is non-zero (or unreadable,
/// which counts as traced: pid 0 is then reported).
fn tracer_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok();
    let tracer = status.as_deref().and_then(|st| {
        st.lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .and_then(|v| v.trim().parse::<u32>().ok())
    });
    match tracer {
        Some(0) => None,
        Some(t) => Some(t),
        None => Some(0),
    }
}

fn seal_envelope(public: &RsaPublicKey, plain: &[u8]) -> Result<Sealed, Error> {
    let mut data_key = SecretBuf::new(DATA_KEY_LEN)?;
    data_key
        .fill(|b| crypto::rand_bytes(&mut b[..DATA_KEY_LEN]).map(|()| DATA_KEY_LEN))
        .map_err(|e| Error::Encrypt(e.to_string()))?;
    let mut nonce = [0u8; NONCE_LEN];
    crypto::rand_bytes(&mut nonce).map_err(|e| Error::Encrypt(e.to_string()))?;
    let (ciphertext, tag) = data_key
        .expose(|k| crypto::aes_256_gcm_seal(k, &nonce, ENVELOPE_AAD, plain))
        .map_err(|e| Error::Encrypt(e.to_string()))?;
    let wrapped = data_key.expose(|k| encrypt(public, k))?;
    drop(data_key);
    Ok(Sealed::Envelope {
        wrapped,
        nonce,
        tag,
        ciphertext,
    })
}

fn encrypt(public: &RsaPublicKey, plain: &[u8]) -> Result<Vec<u8>, Error> {
    public
        .encrypt_oaep_sha256(plain)
        .map_err(|e| Error::Encrypt(e.to_string()))
}

impl Drop for Broker {
    fn drop(&mut self) {
        let grace = self.config.shutdown_grace;
        self.session().link.stop(grace);
    }
}
