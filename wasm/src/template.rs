//! Commands as JavaScript builds them from a few numbers and what it already holds.
//!
//! Every command of one operation names the same keys and carries the same token, and
//! JavaScript holds both anyway: the keys it asked for, and the token it hands out with the
//! lock. So rather than its arguments, a command crosses as its [`Shape`] — which command,
//! which script, whether the waiter markers follow the keys, the TTL — and `js/engine.js`
//! (`buildCommand`) fills it in. A shape is used only once the command has been checked,
//! argument by argument, to be laid out exactly as JavaScript will build it; any other command
//! crosses in full.

use quorumlock::proto::{Arg, Command, CommandKind, Script, WAITING_MARKER_PREFIX};

/// Command names as JavaScript numbers them (`js/engine.js`).
const SET: u32 = 0;
const EVALSHA: u32 = 1;
const EVAL: u32 = 2;

/// A command reduced to what JavaScript cannot know on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    /// `SET`, `EVALSHA` or `EVAL`.
    pub(crate) name: u32,
    /// The script's number in [`Scripts`] (0 for `SET`).
    pub(crate) script: u32,
    /// Whether each key's waiter marker follows the keys.
    pub(crate) markers: bool,
    /// The TTL argument, if any.
    pub(crate) ttl: Option<u64>,
}

/// What tells the commands of one operation apart: they all name its keys and carry its token,
/// so two with the same kind, script, markers and TTL are the same command. Cheap to compare
/// for every request sent, unlike the commands (whose scripts compare by their text).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    name: u32,
    script: Option<&'static Script>,
    markers: bool,
    ttl: Option<u64>,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        let same_script = match (self.script, other.script) {
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            (None, None) => true,
            _ => false,
        };
        self.name == other.name
            && same_script
            && self.markers == other.markers
            && self.ttl == other.ttl
    }
}

/// The [`Key`] of `command`.
pub(crate) fn key(command: &Command) -> Key {
    let (name, script) = match command.kind() {
        CommandKind::SetNx => (SET, None),
        CommandKind::EvalSha(script) => (EVALSHA, Some(script)),
        CommandKind::Eval(script) => (EVAL, Some(script)),
    };
    Key {
        name,
        script,
        markers: !command.markers().is_empty(),
        ttl: command.ttl_ms(),
    }
}

/// The scripts the commands so far ran, numbered in order of first use: a script's digest and
/// source cross to JavaScript once, with its number (see [`Scripts::take_new`]).
#[derive(Default)]
pub(crate) struct Scripts {
    known: Vec<&'static Script>,
    /// How many of `known` JavaScript has been given.
    given: usize,
}

impl Scripts {
    fn number(&mut self, script: &'static Script) -> u32 {
        let at = match self
            .known
            .iter()
            .position(|known| std::ptr::eq(*known, script))
        {
            Some(at) => at,
            None => {
                self.known.push(script);
                self.known.len() - 1
            }
        };
        u32::try_from(at).unwrap_or(u32::MAX)
    }

    /// The scripts numbered since the last call, with their numbers, for JavaScript.
    pub(crate) fn take_new(&mut self) -> impl Iterator<Item = (u32, &'static Script)> + '_ {
        let from = self.given;
        self.given = self.known.len();
        self.known[from..]
            .iter()
            .enumerate()
            .map(move |(at, script)| (u32::try_from(from + at).unwrap_or(u32::MAX), *script))
    }
}

/// The shape of `command`, if JavaScript builds exactly its arguments from it, the command's
/// keys and its token: `SET key token NX PX ttl` for one key, or `EVALSHA|EVAL script count
/// keys… [markers…] token [ttl]`.
pub(crate) fn shape(command: &Command, scripts: &mut Scripts) -> Option<Shape> {
    let keys = command.keys();
    let markers = command.markers();
    let token = command.token().as_str();
    let ttl = command.ttl_ms();
    let (name, script) = match command.kind() {
        CommandKind::SetNx => (SET, None),
        CommandKind::EvalSha(script) => (EVALSHA, Some(script)),
        CommandKind::Eval(script) => (EVAL, Some(script)),
    };
    if name == SET && (keys.len() != 1 || !markers.is_empty()) {
        return None;
    }
    if !markers.is_empty() && markers.len() != keys.len() {
        return None;
    }
    let count = (keys.len() + markers.len()) as u64;
    let mut at = 0usize;
    let mut matches = true;
    command.for_each_arg(|arg| {
        let expected = match script {
            None => match at {
                0 => arg == Arg::Str("SET"),
                1 => arg == Arg::Str(keys[0].as_str()),
                2 => arg == Arg::Str(token),
                3 => arg == Arg::Str("NX"),
                4 => arg == Arg::Str("PX"),
                5 => ttl.is_some_and(|ttl| arg == Arg::Int(ttl)),
                _ => false,
            },
            Some(script) => {
                let first_key = 3;
                let first_marker = first_key + keys.len();
                let token_at = first_marker + markers.len();
                match at {
                    0 => arg == Arg::Str(if name == EVAL { "EVAL" } else { "EVALSHA" }),
                    1 => {
                        arg == Arg::Str(if name == EVAL {
                            script.source
                        } else {
                            script.sha1
                        })
                    }
                    2 => arg == Arg::Int(count),
                    _ if at < first_marker => arg == Arg::Str(keys[at - first_key].as_str()),
                    _ if at < token_at => {
                        let key = &keys[at - first_marker];
                        matches!(arg, Arg::Str(marker)
                            if marker.strip_prefix(WAITING_MARKER_PREFIX) == Some(key.as_str()))
                    }
                    _ if at == token_at => arg == Arg::Str(token),
                    _ if at == token_at + 1 => ttl.is_some_and(|ttl| arg == Arg::Int(ttl)),
                    _ => false,
                }
            }
        };
        matches &= expected;
        at += 1;
    });
    let expected_count = match script {
        None => 5,
        Some(_) => 3 + keys.len() + markers.len() + 1,
    } + usize::from(ttl.is_some());
    if !matches || at != expected_count {
        return None;
    }
    Some(Shape {
        name,
        script: script.map_or(0, |script| scripts.number(script)),
        markers: !markers.is_empty(),
        ttl,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use quorumlock::proto::{Acquire, Config, Instant, Operation, Release, Settings, Token};

    use super::*;

    fn config() -> Config {
        let mut settings = Settings::default();
        settings.ttl = Duration::from_millis(10_000);
        Config::new(3, settings).unwrap()
    }

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn lock_and_release_commands_have_shapes() {
        let mut scripts = Scripts::default();
        let token = Token::new("tok").unwrap();
        let mut one = Acquire::new(&config(), ["k"], token.clone(), 0, Instant::now()).unwrap();
        let set = one.poll_transmit().unwrap().command;
        assert_eq!(
            shape(&set, &mut scripts),
            Some(Shape {
                name: SET,
                script: 0,
                markers: false,
                ttl: Some(10_000)
            })
        );
        let mut two =
            Acquire::new(&config(), ["a", "b"], token.clone(), 0, Instant::now()).unwrap();
        let eval = two.poll_transmit().unwrap().command;
        let acquire_shape = shape(&eval, &mut scripts).unwrap();
        // Several keys go by source (see `Acquire::new`).
        assert_eq!((acquire_shape.name, acquire_shape.markers), (EVAL, false));
        let given: Vec<_> = scripts.take_new().map(|(n, s)| (n, s.sha1)).collect();
        assert_eq!(
            given,
            vec![(acquire_shape.script, eval.script().unwrap().sha1)]
        );

        let keys: std::sync::Arc<[String]> = vec!["a".to_owned(), "b".to_owned()].into();
        let mut release = Release::new(&config(), &keys, &token, Instant::now());
        let delete = release.poll_transmit().unwrap().command;
        let release_shape = shape(&delete, &mut scripts).unwrap();
        assert_eq!((release_shape.name, release_shape.markers), (EVALSHA, true));
        assert_ne!(release_shape.script, acquire_shape.script);
        assert_eq!(scripts.take_new().count(), 1);
        assert_eq!(scripts.take_new().count(), 0);
    }
}
