//! Child processes of the orchestrator: started, talked to line by line, and always stopped.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::protocol::{Measured, READY, RESULT_PREFIX};

/// Lines of a child's standard error kept for error messages.
const STDERR_TAIL: usize = 20;

/// A running child process. Dropping it kills the process and reaps it.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl ChildProcess {
    /// Starts `command` with piped standard streams; `name` labels its errors.
    pub fn spawn(name: impl Into<String>, mut command: Command) -> Result<Self, String> {
        let name = name.into();
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| {
                format!("{name}: cannot start {:?}: {error}", command.get_program())
            })?;
        let stdin = child.stdin.take();
        let (sender, stdout) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        if let Some(err) = child.stderr.take() {
            let tail = stderr.clone();
            thread::spawn(move || keep_tail(err, &tail));
        }
        Ok(Self {
            name,
            child,
            stdin,
            stdout,
            stderr,
        })
    }

    /// Waits for a line that `accept` takes, returning what it made of it. Other lines are
    /// passed through to standard error.
    pub fn wait_line<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut accept: impl FnMut(&str) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => match accept(&line) {
                    Some(value) => return Ok(value),
                    None => eprintln!("  [{}] {line}", self.name),
                },
                Err(RecvTimeoutError::Timeout) => {
                    return Err(self.failure(&format!("no {what} within {} s", timeout.as_secs())))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                    return Err(self.failure(&format!("exited ({status}) before {what}")));
                }
            }
        }
    }

    /// Waits for the client protocol's ready line.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        self.wait_line(timeout, "ready line", |line| (line == READY).then_some(()))
    }

    /// Tells a ready client to start its measured run.
    pub fn go(&mut self) -> Result<(), String> {
        let written = match self.stdin.as_mut() {
            Some(stdin) => writeln!(stdin, "go").and_then(|()| stdin.flush()),
            None => Err(std::io::Error::other("standard input closed")),
        };
        written.map_err(|error| self.failure(&format!("cannot send go: {error}")))
    }

    /// Waits for the client's result line.
    pub fn wait_result(&mut self, timeout: Duration) -> Result<Measured, String> {
        let mut parse_error = None;
        let result = self.wait_line(timeout, "result", |line| {
            let json = line.strip_prefix(RESULT_PREFIX)?;
            match serde_json::from_str(json) {
                Ok(measured) => Some(measured),
                Err(error) => {
                    parse_error = Some(error.to_string());
                    Some(Measured::default())
                }
            }
        })?;
        match parse_error {
            Some(error) => Err(self.failure(&format!("unreadable result: {error}"))),
            None => Ok(result),
        }
    }

    /// Waits up to `timeout` for the process to exit by itself, then kills it.
    pub fn finish(mut self, timeout: Duration) {
        self.stdin.take();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn failure(&self, what: &str) -> String {
        let tail = self
            .stderr
            .lock()
            .map(|tail| tail.iter().cloned().collect::<Vec<_>>().join("\n    "))
            .unwrap_or_default();
        if tail.is_empty() {
            format!("{}: {what}", self.name)
        } else {
            format!("{}: {what}; its last output:\n    {tail}", self.name)
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn keep_tail(stream: impl Read, tail: &Mutex<VecDeque<String>>) {
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
}
