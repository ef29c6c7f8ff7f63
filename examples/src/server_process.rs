//! The example server (`lock-server`) as a child process, for the demo and the end-to-end
//! tests: started with the Redis nodes to use, ready once it prints where it listens, and
//! always reaped: [`stop`](ServerProcess::stop) asks it to shut down (`SIGTERM`) and
//! dropping it kills it.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::NODES_ENV;

/// How long a server may take to say it listens.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a server may take to shut down after `SIGTERM` before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Output lines kept for error messages.
const OUTPUT_TAIL: usize = 20;

/// What the server prints once it accepts connections.
const LISTENING: &str = " listening on http://";

/// A running `lock-server` child process.
#[derive(Debug)]
pub struct ServerProcess {
    name: String,
    addr: SocketAddr,
    child: Option<Child>,
    output: Arc<Mutex<VecDeque<String>>>,
}

/// The `lock-server` binary next to the running executable (cargo builds all binaries of a
/// package into one directory).
pub fn sibling_binary(name: &str) -> io::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} not found: build it with `cargo build -p quorumlock-examples --bins` (add \
                 --release for a release build)",
                path.display()
            ),
        ))
    }
}

impl ServerProcess {
    /// Starts `program` as instance `name` on a free loopback port, using `nodes`, and waits
    /// until it listens. `extra_args` go on its command line.
    pub fn start(
        program: &Path,
        name: &str,
        nodes: &[String],
        extra_args: &[&str],
    ) -> io::Result<Self> {
        let mut child = Command::new(program)
            .args(["--listen", "127.0.0.1:0", "--name", name])
            .args(extra_args)
            .env(NODES_ENV, nodes.join(","))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", program.display())))?;
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let (lines, readiness) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            drain(stdout, lines.clone(), output.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            drain(stderr, lines, output.clone());
        }
        let mut server = Self {
            name: name.to_owned(),
            // Replaced below; dropping `server` on an early return kills the child.
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child: Some(child),
            output,
        };
        loop {
            match readiness.recv_timeout(READY_TIMEOUT) {
                Ok(line) => {
                    if let Some(addr) = line.split_once(LISTENING).map(|(_, addr)| addr.trim()) {
                        server.addr = addr.parse().map_err(|_| {
                            io::Error::other(format!("unreadable address in {line:?}"))
                        })?;
                        return Ok(server);
                    }
                }
                Err(_) => {
                    return Err(io::Error::other(format!(
                        "instance {name} did not start listening; its output:\n{}",
                        server.output_tail()
                    )))
                }
            }
        }
    }

    /// The instance name it was started with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` + `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last lines it printed.
    pub fn output_tail(&self) -> String {
        let lines = self.output.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Asks the server to shut down (`SIGTERM`), kills it if it has not exited within ten
    /// seconds, and reaps it.
    pub fn stop(mut self) -> io::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            return Err(io::Error::other("already stopped"));
        };
        let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
        // The child is not reaped before `try_wait` below says so, so the pid is still ours.
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let mut waited = Duration::ZERO;
        let step = Duration::from_millis(20);
        // Polling: std offers no way to wait for a child with a deadline.
        while waited < STOP_TIMEOUT {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            thread::sleep(step);
            waited += step;
        }
        child.kill()?;
        child.wait()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Forwards a pipe's lines to `lines` and keeps the last ones, until the pipe closes; keeps
/// reading after nobody listens so the child never blocks on a full pipe.
fn drain(
    pipe: impl Read + Send + 'static,
    lines: mpsc::Sender<String>,
    output: Arc<Mutex<VecDeque<String>>>,
) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            {
                let mut tail = output.lock().unwrap_or_else(|e| e.into_inner());
                if tail.len() == OUTPUT_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
            }
            let _ = lines.send(line);
        }
    });
}
