//! Real `redis-server` processes for tests, examples and benchmarks.
//!
//! A Redlock client is only as good as its behaviour when nodes die, hang or
//! come back empty, and a mock cannot reproduce the timing of a real server.
//! This module starts genuine `redis-server` processes on free loopback ports
//! and lets a test kill, pause (`SIGSTOP`), resume (`SIGCONT`) and restart
//! them.
//!
//! ```no_run
//! use quorumlock::testing::RedisCluster;
//!
//! # fn main() -> Result<(), quorumlock::testing::HarnessError> {
//! let cluster = RedisCluster::start(3)?;
//! let urls = cluster.urls(); // ["redis://127.0.0.1:41234", ...]
//! # let _ = urls;
//! cluster.pause(1)?; // node 1 stops answering but keeps its connections
//! cluster.resume(1)?;
//! cluster.kill(2)?; // connections to node 2 are refused from now on
//! cluster.restart(2)?; // same port, empty keyspace
//! # Ok(())
//! # }
//! // Dropping the cluster kills every process and removes its directory.
//! ```
//!
//! [`RedisCluster::start_tls`] starts nodes that accept only TLS
//! (`rediss://` URLs), with certificates from a throwaway
//! [`TlsAuthority`]; the client side has to trust that authority's
//! certificate, for instance through the `SSL_CERT_FILE` environment
//! variable that rustls' native certificate store reads.
//!
//! The binary is taken from the `QUORUMLOCK_REDIS_SERVER` environment
//! variable if it is set, otherwise `redis-server` is looked up on `PATH`.
//! Nodes run without persistence, so a restarted node has lost every key,
//! which is exactly the failure Redlock's quorum has to survive.
//!
//! Unix only. If the test process itself is killed with `SIGKILL`, the
//! servers outlive it: tying a child's life to its parent needs
//! `prctl(PR_SET_PDEATHSIG)` in `pre_exec`, which is `unsafe`. Interrupting
//! `cargo test` from a terminal is fine, because the servers share the
//! terminal's process group and receive the `SIGINT` too.

// Harness timing is about processes, not locks: it may read the clock.
#![allow(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Environment variable naming the `redis-server` binary to run.
///
/// When unset (or empty), `redis-server` is looked up on `PATH`.
pub const REDIS_SERVER_ENV: &str = "QUORUMLOCK_REDIS_SERVER";

/// How long a server may take to report readiness. Generous because CI
/// machines running many test binaries at once can be very slow; a healthy
/// server is ready in milliseconds, so this only bounds the failure case.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many fresh ports to try when another process grabs the port between
/// our probe and the server's `bind`.
const PORT_ATTEMPTS: usize = 5;

/// How many of the server's last output lines to keep for error reports.
const OUTPUT_TAIL: usize = 30;

/// Logged at `notice` level once the listening socket is open. Matched
/// case-insensitively because Redis before 5.0 wrote "The server is now ready
/// to accept connections".
const READY_MARKER: &str = "ready to accept connections";

/// Where a TLS node finds its certificate, its private key and its
/// authority's certificate, inside its own directory.
const TLS_CERT_FILE: &str = "tls-node.crt";
const TLS_KEY_FILE: &str = "tls-node.key";
const TLS_CA_CERT_FILE: &str = "tls-ca.crt";

/// The names a node's certificate is valid for: clients connect to
/// `127.0.0.1`, and `localhost` costs nothing.
const TLS_NODE_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// Distinguishes the authorities created by one test process.
static AUTHORITY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Distinguishes the directories of nodes started by one test process.
static DIR_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Why the harness could not do what was asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum HarnessError {
    /// The `redis-server` binary does not exist.
    RedisServerNotFound {
        /// The program the harness tried to run.
        program: String,
    },
    /// An I/O error while preparing, spawning or reaping a server process.
    Spawn(io::Error),
    /// The server exited, or did not report readiness in time.
    NotReady {
        /// The port the server was asked to listen on.
        port: u16,
        /// The last lines the server printed (stdout and stderr interleaved),
        /// followed by a line saying whether it exited or was killed for
        /// taking too long.
        output: String,
    },
    /// The cluster has no node with this index.
    NoSuchNode(usize),
    /// Sending a signal failed; `ESRCH` means the node is not running.
    Signal(nix::Error),
    /// Generating a TLS key or certificate failed.
    Certificate {
        /// What the certificate library reported.
        detail: String,
    },
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RedisServerNotFound { program } => write!(
                f,
                "redis-server not found (tried \"{program}\"): install it \
                 (Debian: apt-get install redis-server) or set {REDIS_SERVER_ENV}"
            ),
            Self::Spawn(err) => write!(f, "could not run redis-server: {err}"),
            Self::NotReady { port, output } => {
                write!(f, "redis-server on port {port} did not become ready")?;
                if output.is_empty() {
                    write!(f, " (it printed nothing)")
                } else {
                    write!(f, "; its last output:\n{output}")
                }
            }
            Self::NoSuchNode(index) => write!(f, "no redis node with index {index}"),
            Self::Signal(errno) => write!(f, "could not signal redis-server: {errno}"),
            Self::Certificate { detail } => {
                write!(f, "could not generate a TLS test certificate: {detail}")
            }
        }
    }
}

impl HarnessError {
    fn certificate(error: rcgen::Error) -> Self {
        Self::Certificate {
            detail: error.to_string(),
        }
    }
}

impl std::error::Error for HarnessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Spawn(err) => Some(err),
            Self::Signal(errno) => Some(errno),
            _ => None,
        }
    }
}

/// A throwaway certificate authority that signs the certificates of TLS nodes
/// (see [`RedisCluster::start_tls`]).
///
/// Its key lives only in memory and its certificate is trusted by nothing
/// until a test says so, so it can vouch for nothing outside the test. One
/// authority can sign the nodes of several clusters, which lets a test
/// process trust a single certificate for all of them.
pub struct TlsAuthority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TlsAuthority {
    /// Generates a new key pair and a self-signed CA certificate.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Certificate`] if key generation or signing fails.
    pub fn new() -> Result<Self, HarnessError> {
        let key = KeyPair::generate().map_err(HarnessError::certificate)?;
        let mut params = CertificateParams::default();
        // A subject of its own: a node certificate whose issuer and subject
        // names were equal would look self-signed to a verifier.
        // Unique within the process (and across processes, mostly): a verifier
        // that finds a trusted CA of the same name checks the signature
        // against it and reports a bad signature instead of an unknown issuer.
        params.distinguished_name.push(
            DnType::CommonName,
            format!(
                "quorumlock throwaway test CA {}-{}",
                std::process::id(),
                AUTHORITY_COUNTER.fetch_add(1, Ordering::Relaxed)
            ),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params
            .self_signed(&key)
            .map_err(HarnessError::certificate)?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The authority's certificate in PEM, for clients to trust.
    #[must_use]
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A fresh key and a certificate for [`TLS_NODE_NAMES`], signed by this
    /// authority.
    fn issue_node_certificate(&self) -> Result<NodeCertificate, HarnessError> {
        let key = KeyPair::generate().map_err(HarnessError::certificate)?;
        let names = TLS_NODE_NAMES.map(String::from).to_vec();
        let mut params = CertificateParams::new(names).map_err(HarnessError::certificate)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "quorumlock test node");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(HarnessError::certificate)?;
        Ok(NodeCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_cert_pem: self.cert_pem.clone(),
        })
    }
}

impl fmt::Debug for TlsAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The private key stays out of test output.
        f.debug_struct("TlsAuthority")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// What a TLS node needs on disk, in PEM.
struct NodeCertificate {
    cert_pem: String,
    key_pem: String,
    ca_cert_pem: String,
}

impl NodeCertificate {
    fn write_to(&self, dir: &Path) -> io::Result<()> {
        std::fs::write(dir.join(TLS_CERT_FILE), &self.cert_pem)?;
        std::fs::write(dir.join(TLS_KEY_FILE), &self.key_pem)?;
        std::fs::write(dir.join(TLS_CA_CERT_FILE), &self.ca_cert_pem)
    }
}

/// A group of independent `redis-server` processes, as Redlock expects: the
/// nodes know nothing of each other, there is no replication.
///
/// Every method takes `&self`, so a cluster can be shared (for instance in an
/// `Arc`) between a test and the tasks that disturb it.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisNode>,
}

impl RedisCluster {
    /// Starts `n` servers and waits until each accepts connections.
    ///
    /// # Errors
    ///
    /// [`HarnessError::RedisServerNotFound`] if there is no `redis-server`,
    /// [`HarnessError::NotReady`] if a server exits or is not ready within
    /// ten seconds, [`HarnessError::Spawn`] for other I/O errors. Servers
    /// that did start are killed again before the error is returned.
    pub fn start(n: usize) -> Result<Self, HarnessError> {
        Self::start_with_args(n, &[])
    }

    /// Like [`start`](Self::start), appending `extra_args` to every server's
    /// command line, e.g. `&["--requirepass", "secret"]`.
    ///
    /// The harness relies on `--port`, `--bind`, `--daemonize no`, `--dir`
    /// and on logging at `notice` level to stdout (and on the `--tls-*`
    /// options of [`start_tls`](Self::start_tls) nodes); overriding those
    /// breaks it.
    ///
    /// # Errors
    ///
    /// As for [`start`](Self::start); an argument `redis-server` rejects
    /// makes it exit, which is reported as [`HarnessError::NotReady`] with
    /// its complaint in `output`.
    pub fn start_with_args(n: usize, extra_args: &[&str]) -> Result<Self, HarnessError> {
        Self::start_with_program(default_program(), n, extra_args)
    }

    /// Like [`start_with_args`](Self::start_with_args) with an explicit
    /// binary instead of [`REDIS_SERVER_ENV`] or `PATH`.
    ///
    /// Exists because environment variables are process-global and tests run
    /// in parallel: a test wanting a particular binary must not change what
    /// every other test runs.
    ///
    /// # Errors
    ///
    /// As for [`start`](Self::start).
    pub fn start_with_program(
        program: impl AsRef<OsStr>,
        n: usize,
        extra_args: &[&str],
    ) -> Result<Self, HarnessError> {
        Self::start_nodes(program.as_ref(), n, extra_args, None)
    }

    /// Starts `n` servers that accept only TLS, with certificates signed by
    /// `authority`, and waits until each is ready. Their
    /// [`urls`](Self::urls) are `rediss://127.0.0.1:PORT`; a client must
    /// trust [`authority.cert_pem()`](TlsAuthority::cert_pem) to connect.
    ///
    /// Every node gets its own key and certificate, valid for `127.0.0.1`
    /// and `localhost`, and does not ask clients for certificates. Each
    /// server listens on a TLS port only (`--port 0`), so a plain `redis://`
    /// connection never reaches a Redis prompt. Kill, pause, resume and
    /// restart work as for [`start`](Self::start); a restarted node keeps
    /// its certificate.
    ///
    /// The binary must have been built with TLS support.
    ///
    /// # Errors
    ///
    /// As for [`start`](Self::start), plus [`HarnessError::Certificate`] if
    /// a node certificate cannot be generated. A binary without TLS support
    /// rejects the TLS options, which is reported as
    /// [`HarnessError::NotReady`].
    pub fn start_tls(n: usize, authority: &TlsAuthority) -> Result<Self, HarnessError> {
        let certificates = (0..n)
            .map(|_| authority.issue_node_certificate())
            .collect::<Result<Vec<_>, _>>()?;
        Self::start_nodes(&default_program(), n, &[], Some(&certificates))
    }

    /// Starts `n` nodes in parallel; `certificates`, one per node, makes them
    /// TLS nodes.
    fn start_nodes(
        program: &OsStr,
        n: usize,
        extra_args: &[&str],
        certificates: Option<&[NodeCertificate]>,
    ) -> Result<Self, HarnessError> {
        let args: Vec<OsString> = extra_args.iter().map(OsString::from).collect();
        let args = &args;
        // In parallel, because start-up is dominated by waiting for each
        // server's first log lines, and large clusters would add up.
        let results: Vec<Result<RedisNode, HarnessError>> = thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let certificate = certificates.map(|certificates| &certificates[i]);
                    scope.spawn(move || RedisNode::start(program, args, certificate))
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        // Collecting into a Result drops (and so kills) the nodes that did
        // start when another one failed.
        let nodes = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(Self { nodes })
    }

    /// The number of nodes, running or not.
    #[must_use]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster was started with zero nodes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node with index `i`.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`; use [`get`](Self::get) to avoid that.
    #[must_use]
    pub fn node(&self, i: usize) -> &RedisNode {
        match self.nodes.get(i) {
            Some(node) => node,
            None => panic!(
                "no redis node with index {i} (the cluster has {})",
                self.nodes.len()
            ),
        }
    }

    /// The node with index `i`, if there is one.
    #[must_use]
    pub fn get(&self, i: usize) -> Option<&RedisNode> {
        self.nodes.get(i)
    }

    /// All nodes, in index order.
    #[must_use]
    pub fn nodes(&self) -> &[RedisNode] {
        &self.nodes
    }

    /// [`RedisNode::url`] for every node, in index order, including
    /// nodes that are currently killed (their port stays reserved for
    /// [`restart`](Self::restart)).
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisNode::url).collect()
    }

    /// Kills node `i` with `SIGKILL` and waits until it has exited, so its
    /// port refuses connections when this returns. Killing a node that is
    /// not running succeeds and does nothing.
    ///
    /// # Errors
    ///
    /// [`HarnessError::NoSuchNode`] if `i >= self.len()`, otherwise as for
    /// [`RedisNode::kill`].
    pub fn kill(&self, i: usize) -> Result<(), HarnessError> {
        self.try_node(i)?.kill()
    }

    /// Stops node `i` with `SIGSTOP`: it keeps its socket, so connections
    /// are still accepted by the kernel, but nothing is answered until
    /// [`resume`](Self::resume). This is how a GC pause or a partitioned
    /// node looks to a client.
    ///
    /// # Errors
    ///
    /// [`HarnessError::NoSuchNode`] if `i >= self.len()`, otherwise as for
    /// [`RedisNode::pause`].
    pub fn pause(&self, i: usize) -> Result<(), HarnessError> {
        self.try_node(i)?.pause()
    }

    /// Continues node `i` with `SIGCONT` after [`pause`](Self::pause).
    ///
    /// # Errors
    ///
    /// [`HarnessError::NoSuchNode`] if `i >= self.len()`, otherwise as for
    /// [`RedisNode::resume`].
    pub fn resume(&self, i: usize) -> Result<(), HarnessError> {
        self.try_node(i)?.resume()
    }

    /// Starts node `i` again on the same port and waits until it is ready.
    /// A running node is killed first. The new server starts with no keys.
    ///
    /// # Errors
    ///
    /// [`HarnessError::NoSuchNode`] if `i >= self.len()`, otherwise as for
    /// [`RedisNode::restart`].
    pub fn restart(&self, i: usize) -> Result<(), HarnessError> {
        self.try_node(i)?.restart()
    }

    fn try_node(&self, i: usize) -> Result<&RedisNode, HarnessError> {
        self.nodes.get(i).ok_or(HarnessError::NoSuchNode(i))
    }
}

/// One `redis-server` process, with the port and directory it keeps across
/// restarts.
///
/// Dropping a node kills its process (even a paused one), waits for it to
/// exit and removes its directory.
#[derive(Debug)]
pub struct RedisNode {
    port: u16,
    program: OsString,
    args: Vec<OsString>,
    dir: PathBuf,
    /// Whether the node listens for TLS only, with the certificate files in
    /// `dir`.
    tls: bool,
    /// `None` while killed. Behind a mutex so that every operation can take
    /// `&self`, and so that two threads cannot restart the node at once.
    child: Mutex<Option<Child>>,
}

impl RedisNode {
    fn start(
        program: &OsStr,
        args: &[OsString],
        certificate: Option<&NodeCertificate>,
    ) -> Result<Self, HarnessError> {
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            let dir = std::env::temp_dir().join(format!(
                "quorumlock-redis-{}-{}-{}",
                std::process::id(),
                DIR_COUNTER.fetch_add(1, Ordering::Relaxed),
                port
            ));
            std::fs::create_dir_all(&dir).map_err(HarnessError::Spawn)?;
            // Built before the process exists so that its Drop removes the
            // directory on every failure path below.
            let node = Self {
                port,
                program: program.to_owned(),
                args: args.to_vec(),
                dir,
                tls: certificate.is_some(),
                child: Mutex::new(None),
            };
            if let Some(certificate) = certificate {
                certificate
                    .write_to(&node.dir)
                    .map_err(HarnessError::Spawn)?;
            }
            match node.launch() {
                Ok(child) => {
                    *node.lock() = Some(child);
                    return Ok(node);
                }
                Err(failure) if failure.port_taken && attempt < PORT_ATTEMPTS => attempt += 1,
                Err(failure) => return Err(failure.error),
            }
        }
    }

    /// The TCP port this node listens on (for TLS only on a TLS node); it
    /// never changes.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The node's socket address, `127.0.0.1:PORT`.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://127.0.0.1:PORT` for a TLS
    /// node.
    #[must_use]
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Whether the node accepts only TLS connections (see
    /// [`RedisCluster::start_tls`]).
    #[must_use]
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The server's working directory (`--dir`), removed when the node is
    /// dropped.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process id of the current server, or `None` while the node is
    /// killed. Changes on [`restart`](Self::restart).
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.lock().as_ref().map(Child::id)
    }

    /// Whether the server process is alive. A paused node is alive; a
    /// server that crashed on its own is noticed here.
    #[must_use]
    pub fn is_running(&self) -> bool {
        let mut slot = self.lock();
        match slot.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_))) => {
                // Reaped now, so forget it: its pid may be reused.
                *slot = None;
                false
            }
            Some(Err(_)) | None => false,
        }
    }

    /// See [`RedisCluster::kill`].
    ///
    /// # Errors
    ///
    /// [`HarnessError::Spawn`] if reaping the process fails.
    pub fn kill(&self) -> Result<(), HarnessError> {
        match self.lock().take() {
            Some(child) => terminate(child).map(drop).map_err(HarnessError::Spawn),
            None => Ok(()),
        }
    }

    /// See [`RedisCluster::pause`].
    ///
    /// # Errors
    ///
    /// [`HarnessError::Signal`] with `ESRCH` if the node is killed.
    pub fn pause(&self) -> Result<(), HarnessError> {
        self.signal(Signal::SIGSTOP)
    }

    /// See [`RedisCluster::resume`].
    ///
    /// # Errors
    ///
    /// [`HarnessError::Signal`] with `ESRCH` if the node is killed.
    pub fn resume(&self) -> Result<(), HarnessError> {
        self.signal(Signal::SIGCONT)
    }

    /// See [`RedisCluster::restart`].
    ///
    /// # Errors
    ///
    /// [`HarnessError::NotReady`] if the new server exits or is not ready
    /// within ten seconds (for instance because another process took the
    /// port while the node was down), [`HarnessError::Spawn`] for other I/O
    /// errors. The node is left killed.
    pub fn restart(&self) -> Result<(), HarnessError> {
        let mut slot = self.lock();
        if let Some(child) = slot.take() {
            terminate(child).map_err(HarnessError::Spawn)?;
        }
        // No retry on another port: the point of a restart is that clients
        // find the node where it was. Redis sets SO_REUSEADDR, so the old
        // server's TIME_WAIT connections do not block the port.
        let child = self.launch().map_err(|failure| failure.error)?;
        *slot = Some(child);
        Ok(())
    }

    fn signal(&self, sig: Signal) -> Result<(), HarnessError> {
        // Holding the lock while signalling guarantees the child has not been
        // reaped, so its pid cannot belong to an unrelated process.
        let slot = self.lock();
        let child = slot.as_ref().ok_or(HarnessError::Signal(Errno::ESRCH))?;
        signal::kill(pid_of(child), sig).map_err(HarnessError::Signal)
    }

    fn lock(&self) -> MutexGuard<'_, Option<Child>> {
        // A panic elsewhere while holding the lock leaves the Option intact,
        // and Drop must still be able to kill the process.
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Spawns the server and blocks until it logs readiness, exits or times out.
    fn launch(&self) -> Result<Child, LaunchFailure> {
        let mut command = Command::new(&self.program);
        if self.tls {
            // Port 0 closes the plain listener: a client that forgot TLS
            // must fail rather than quietly talk in the clear.
            command
                .args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(self.dir.join(TLS_CERT_FILE))
                .arg("--tls-key-file")
                .arg(self.dir.join(TLS_KEY_FILE))
                .arg("--tls-ca-cert-file")
                .arg(self.dir.join(TLS_CA_CERT_FILE))
                .args(["--tls-auth-clients", "no"]);
        } else {
            command.arg("--port").arg(self.port.to_string());
        }
        let mut child = command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--loglevel", "notice"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| {
                LaunchFailure::fatal(if err.kind() == io::ErrorKind::NotFound {
                    HarnessError::RedisServerNotFound {
                        program: self.program.to_string_lossy().into_owned(),
                    }
                } else {
                    HarnessError::Spawn(err)
                })
            })?;

        let (tx, rx) = mpsc::channel();
        let pumps = [
            child
                .stdout
                .take()
                .map(|out| pump(out, tx.clone(), self.port, "stdout")),
            child
                .stderr
                .take()
                .map(|err| pump(err, tx, self.port, "stderr")),
        ];
        let mut open_streams = 0;
        for started in pumps.into_iter().flatten() {
            match started {
                Ok(()) => open_streams += 1,
                Err(err) => {
                    let _ = terminate(child);
                    return Err(LaunchFailure::fatal(HarnessError::Spawn(err)));
                }
            }
        }

        let deadline = Instant::now() + READY_TIMEOUT;
        let mut tail = VecDeque::with_capacity(OUTPUT_TAIL);
        let exited = loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Output::Line(line)) => {
                    let ready = line.to_ascii_lowercase().contains(READY_MARKER);
                    if tail.len() == OUTPUT_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                    if ready {
                        // Dropping the receiver is fine: the pump threads
                        // ignore failed sends and keep draining the pipes,
                        // so the server never blocks on a full one.
                        return Ok(child);
                    }
                }
                Ok(Output::Closed) => {
                    open_streams -= 1;
                    // Both pipes at EOF means the server has exited, and
                    // every line it printed has been received.
                    if open_streams == 0 {
                        break true;
                    }
                }
                // Unreachable in practice: each pump sends `Closed` before
                // dropping its sender.
                Err(RecvTimeoutError::Disconnected) => break true,
                Err(RecvTimeoutError::Timeout) => break false,
            }
        };

        let port_taken = tail
            .iter()
            .any(|line| line.contains("Address already in use"));
        // Killed even when it exited: a process can close its pipes and live
        // on, and a plain `wait` would then hang.
        let status = terminate(child);
        // The server's own words rarely say whether it died or hung, and
        // that is the first thing someone debugging a failed start needs.
        tail.push_back(if exited {
            match status {
                Ok(status) => format!("[harness] redis-server exited ({status})"),
                Err(err) => format!("[harness] redis-server exited (wait failed: {err})"),
            }
        } else {
            format!(
                "[harness] no \"Ready to accept connections\" within {} s; killed it",
                READY_TIMEOUT.as_secs()
            )
        });
        let output = Vec::from(tail).join("\n");
        Err(LaunchFailure {
            port_taken,
            error: HarnessError::NotReady {
                port: self.port,
                output,
            },
        })
    }
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        if let Some(child) = self.lock().take() {
            let _ = terminate(child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct LaunchFailure {
    error: HarnessError,
    /// Whether retrying on another port may help.
    port_taken: bool,
}

impl LaunchFailure {
    fn fatal(error: HarnessError) -> Self {
        Self {
            error,
            port_taken: false,
        }
    }
}

enum Output {
    Line(String),
    Closed,
}

fn default_program() -> OsString {
    std::env::var_os(REDIS_SERVER_ENV)
        .filter(|program| !program.is_empty())
        .unwrap_or_else(|| OsString::from("redis-server"))
}

/// Asks the kernel for an unused port. The listener is dropped before the
/// server binds, so another process can take the port in between; the caller
/// retries when that happens.
fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(HarnessError::Spawn)?;
    Ok(listener.local_addr().map_err(HarnessError::Spawn)?.port())
}

/// Forwards a pipe's lines to `tx` until EOF, then reports `Closed`.
fn pump(
    pipe: impl Read + Send + 'static,
    tx: Sender<Output>,
    port: u16,
    stream: &str,
) -> io::Result<()> {
    thread::Builder::new()
        .name(format!("redis-{port}-{stream}"))
        .spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                // Bytes rather than `lines()`: a non-UTF-8 line would end
                // `lines()` with an error and stop the draining.
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
                        // Fails once readiness was seen and the receiver is
                        // gone; keep reading anyway so the pipe never fills.
                        let _ = tx.send(Output::Line(line));
                    }
                }
            }
            let _ = tx.send(Output::Closed);
        })
        .map(drop)
}

/// Kills and reaps `child`; the port is closed when this returns.
fn terminate(mut child: Child) -> io::Result<ExitStatus> {
    let pid = pid_of(&child);
    // Errors are ignored: the process may already have exited on its own,
    // and `wait` below reports anything that matters.
    let _ = signal::kill(pid, Signal::SIGKILL);
    // SIGKILL ends a stopped process too; the SIGCONT is insurance so that
    // `wait` can never hang on a node a test left paused.
    let _ = signal::kill(pid, Signal::SIGCONT);
    child.wait()
}

fn pid_of(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).expect("process ids fit in pid_t"))
}
