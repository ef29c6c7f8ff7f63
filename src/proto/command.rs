//! What the core asks a driver to send, and what the driver hands back.

use std::fmt;
use std::sync::Arc;

use super::script::Script;
use super::time::Instant;
use super::token::Token;

/// Index of a Redis node in the order the nodes were configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(usize);

impl NodeId {
    /// The node at `index` in the configured list.
    pub const fn new(index: usize) -> Self {
        Self(index)
    }

    /// Position in the configured list.
    pub const fn index(self) -> usize {
        self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Identifies one request of one operation, so a late reply to an earlier round or attempt is
/// recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(u64);

impl RequestId {
    pub(crate) const fn new(id: u64) -> Self {
        Self(id)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// How a [`Command`] is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// `SET key token NX PX ttl`: single-resource acquire.
    SetNx,
    /// `EVALSHA sha1 numkeys keys… args…`.
    EvalSha(&'static Script),
    /// `EVAL source numkeys keys… args…`: the fallback after `NOSCRIPT`.
    Eval(&'static Script),
}

/// One argument of a command: text, or an integer the driver may encode natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg<'a> {
    /// A string argument.
    Str(&'a str),
    /// An integer argument (key counts, TTLs in milliseconds).
    Int(u64),
}

impl fmt::Display for Arg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Str(s) => f.write_str(s),
            Arg::Int(n) => n.fmt(f),
        }
    }
}

/// One Redis command. Cloning is cheap: the keys and the token are shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    kind: CommandKind,
    keys: Arc<[String]>,
    /// Waiter markers of the keys, passed in `KEYS` after them (release and clean-up scripts).
    markers: Option<Arc<[String]>>,
    token: Token,
    ttl_ms: Option<u64>,
}

impl Command {
    pub(crate) fn new(
        kind: CommandKind,
        keys: Arc<[String]>,
        token: Token,
        ttl_ms: Option<u64>,
    ) -> Self {
        Self {
            kind,
            keys,
            markers: None,
            token,
            ttl_ms,
        }
    }

    /// The same command with the keys' waiter markers appended to `KEYS`.
    pub(crate) fn with_markers(mut self, markers: Arc<[String]>) -> Self {
        self.markers = Some(markers);
        self
    }

    /// The waiter markers passed after the keys, if any.
    pub fn markers(&self) -> &[String] {
        self.markers.as_deref().unwrap_or_default()
    }

    /// How the command is sent.
    pub fn kind(&self) -> CommandKind {
        self.kind
    }

    /// The script this command runs, if any.
    pub fn script(&self) -> Option<&'static Script> {
        match self.kind {
            CommandKind::SetNx => None,
            CommandKind::EvalSha(script) | CommandKind::Eval(script) => Some(script),
        }
    }

    /// The keys the command touches.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The lock token.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The TTL in milliseconds, for commands that set one.
    pub fn ttl_ms(&self) -> Option<u64> {
        self.ttl_ms
    }

    /// The same command sent by source instead of by digest.
    pub(crate) fn into_eval(mut self) -> Self {
        if let CommandKind::EvalSha(script) = self.kind {
            self.kind = CommandKind::Eval(script);
        }
        self
    }

    /// Number of arguments including the command name.
    pub fn arg_count(&self) -> usize {
        let tail = 1 + usize::from(self.ttl_ms.is_some());
        match self.kind {
            CommandKind::SetNx => 1 + self.keys.len() + tail + 2,
            CommandKind::EvalSha(_) | CommandKind::Eval(_) => {
                3 + self.keys.len() + self.markers().len() + tail
            }
        }
    }

    /// Calls `f` with every argument in order, starting with the command name. No allocation:
    /// drivers encode straight into their own buffers.
    pub fn for_each_arg(&self, mut f: impl FnMut(Arg<'_>)) {
        match self.kind {
            CommandKind::SetNx => {
                f(Arg::Str("SET"));
                for key in self.keys.iter() {
                    f(Arg::Str(key));
                }
                f(Arg::Str(self.token.as_str()));
                f(Arg::Str("NX"));
                f(Arg::Str("PX"));
            }
            CommandKind::EvalSha(script) | CommandKind::Eval(script) => {
                if let CommandKind::Eval(_) = self.kind {
                    f(Arg::Str("EVAL"));
                    f(Arg::Str(script.source));
                } else {
                    f(Arg::Str("EVALSHA"));
                    f(Arg::Str(script.sha1));
                }
                f(Arg::Int((self.keys.len() + self.markers().len()) as u64));
                for key in self.keys.iter().chain(self.markers()) {
                    f(Arg::Str(key));
                }
                f(Arg::Str(self.token.as_str()));
            }
        }
        if let Some(ttl) = self.ttl_ms {
            f(Arg::Int(ttl));
        }
    }

    /// Every argument as a string (for JavaScript executors and transcripts).
    pub fn to_strings(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.arg_count());
        self.for_each_arg(|arg| out.push(arg.to_string()));
        out
    }
}

/// The command line, with a script shown by name rather than by its source or digest.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut result = Ok(());
        self.for_each_arg(|arg| {
            let shown = match (self.kind, arg) {
                (CommandKind::EvalSha(script) | CommandKind::Eval(script), Arg::Str(s))
                    if s == script.sha1 || s == script.source =>
                {
                    Arg::Str(script.name)
                }
                _ => arg,
            };
            if !first {
                result = result.and_then(|()| f.write_str(" "));
            }
            first = false;
            result = result.and_then(|()| write!(f, "{shown}"));
        });
        result
    }
}

/// A request the driver must send now: `command` to `node`, tagged `request`. The core stops
/// waiting for the reply at `deadline` (the driver may drop the request then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send.
    pub node: NodeId,
    /// Tag to hand back with the reply.
    pub request: RequestId,
    /// What to send.
    pub command: Command,
    /// When the core gives up on this request.
    pub deadline: Instant,
}

/// What came back from one node for one request. Transport failures are replies too: to the
/// protocol they are simply votes that did not say yes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Ok,
    /// A nil reply (`SET NX` on an existing key).
    Nil,
    /// An integer reply (the scripts' results).
    Integer(i64),
    /// An error reply from the server, as sent: `"NOSCRIPT No matching script…"`.
    Error(String),
    /// The request could not be carried out: connection refused, reset, unreadable reply.
    Io(String),
    /// The driver gave up waiting on its own.
    TimedOut,
    /// A well-formed reply of a shape these commands never produce.
    Unexpected(String),
}
