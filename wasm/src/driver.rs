//! Operations in flight, driven from JavaScript.
//!
//! Nothing here waits: each call runs an operation as far as it can go — sending what the
//! core asks through the [`Transport`], handling a reply, a deadline or a cancellation — and
//! tells JavaScript what to wait for next. A command sent to several nodes crosses to
//! JavaScript once, as its shape (see [`crate::template`]) or else as one string, and each
//! send after that is four numbers.

use quorumlock::proto::{Arg, Command, Instant, NodeId, Operation, Reply, RequestId};

use crate::host::{self, Clock, Transport};
use crate::template::{self, Scripts};

/// What a step tells JavaScript, as one number: the operation is waiting until this
/// `performance.now()` reading (or `+∞`, for a reply only), or one of the codes below.
pub(crate) mod status {
    /// The operation is over and succeeded; `finish` gives its result.
    pub(crate) const DONE: f64 = -1.0;
    /// The operation is over and failed; `finish` gives the failure.
    pub(crate) const FAILED: f64 = -2.0;
    /// The call did not concern a live operation (a late reply, a second cancel): nothing
    /// changed.
    pub(crate) const IGNORED: f64 = -3.0;
}

/// Distinct commands kept per operation. The machines use a handful (the attempt, its `EVAL`
/// fallback, the clean-up and its fallback); past this, commands are numbered afresh.
const MAX_COMMANDS: usize = 8;

struct Sent {
    ticket: u32,
    node: NodeId,
    request: RequestId,
}

/// A command JavaScript already has, as it was defined there: by shape, or in full.
enum Defined {
    Shape(template::Key),
    Full(Command),
}

/// The bookkeeping shared by every kind of operation: requests in flight and the commands
/// already defined on the JavaScript side.
pub(crate) struct Io {
    in_flight: Vec<Sent>,
    commands: Vec<Defined>,
    defined: u32,
    deadline: Option<Instant>,
    /// Whether JavaScript holds the operation's token, which shapes leave out.
    token_known: bool,
}

impl Io {
    /// Bookkeeping for a new operation; `token_known` when JavaScript started it with the
    /// token in hand (an extension or a release of a lock it holds).
    pub(crate) fn new(token_known: bool) -> Self {
        Self {
            in_flight: Vec::new(),
            commands: Vec::new(),
            defined: 0,
            deadline: None,
            token_known,
        }
    }

    /// Whether the request sent with `ticket` is still in flight.
    pub(crate) fn sent(&self, ticket: u32) -> bool {
        self.in_flight.iter().any(|sent| sent.ticket == ticket)
    }

    /// The node and request a reply reported with `ticket` answers, forgotten from then on.
    pub(crate) fn take(&mut self, ticket: u32) -> Option<(NodeId, RequestId)> {
        let at = self
            .in_flight
            .iter()
            .position(|sent| sent.ticket == ticket)?;
        let sent = self.in_flight.swap_remove(at);
        Some((sent.node, sent.request))
    }

    /// Forgets every request in flight: their replies will be ignored.
    pub(crate) fn forget(&mut self) {
        self.in_flight.clear();
        self.deadline = None;
    }

    /// Whether no request `op` awaits is in flight: it pauses, or has not sent yet. Forgets
    /// the requests it no longer awaits on the way, as [`wait`] would.
    pub(crate) fn is_idle<O: Operation>(&mut self, op: &O) -> bool {
        self.in_flight
            .retain(|sent| op.is_awaiting(sent.node, sent.request));
        self.in_flight.is_empty()
    }

    /// The deadline of the last step, if it has not passed at `now`.
    pub(crate) fn pending_deadline(&self, now: Instant) -> Option<Instant> {
        self.deadline.filter(|deadline| *deadline > now)
    }

    /// The JavaScript number of `command`, defining it there first if it is new.
    ///
    /// The commands of one operation differ only in what their [`template::Key`] holds (their
    /// keys and token are the operation's), so keys are compared rather than whole commands,
    /// and a command is checked against its shape only when it is new.
    fn number(
        &mut self,
        transport: &Transport,
        scripts: &mut Scripts,
        op: u32,
        command: Command,
    ) -> u32 {
        let key = template::key(&command);
        let known = self.commands.iter().position(|known| match known {
            Defined::Shape(known) => *known == key,
            Defined::Full(known) => *known == command,
        });
        if let Some(at) = known {
            return self.defined - (self.commands.len() - at) as u32;
        }
        let number = self.defined;
        let defined = match template::shape(&command, scripts) {
            Some(shape) => {
                for (number, script) in scripts.take_new() {
                    transport.script(number, script.sha1, script.source);
                }
                if !self.token_known {
                    transport.token(op, command.token().as_str());
                    self.token_known = true;
                }
                // No TTL crosses as -1: TTLs are whole milliseconds far below 2^53.
                let ttl = shape.ttl.map_or(-1.0, |ttl| ttl as f64);
                transport.define_shape(op, number, shape.name, shape.script, shape.markers, ttl);
                Defined::Shape(key)
            }
            None => {
                transport.define(op, number, &encode(&command));
                Defined::Full(command)
            }
        };
        if self.commands.len() == MAX_COMMANDS {
            self.commands.remove(0);
        }
        self.commands.push(defined);
        self.defined += 1;
        number
    }
}

/// Every argument as its UTF-16 length, a colon and the argument.
fn encode(command: &Command) -> String {
    let mut out = String::with_capacity(16 + command.arg_count() * 24);
    command.for_each_arg(|arg| match arg {
        Arg::Str(text) => {
            let units = if text.is_ascii() {
                text.len()
            } else {
                text.encode_utf16().count()
            };
            let mut digits = Decimal::default();
            out.push_str(digits.of(units as u64));
            out.push(':');
            out.push_str(text);
        }
        Arg::Int(n) => {
            let mut digits = Decimal::default();
            let text = digits.of(n);
            let mut length = Decimal::default();
            out.push_str(length.of(text.len() as u64));
            out.push(':');
            out.push_str(text);
        }
    });
    out
}

/// Room for the decimal digits of any `u64`, written without the formatting machinery.
#[derive(Default)]
struct Decimal([u8; 20]);

impl Decimal {
    /// `n` in decimal.
    fn of(&mut self, mut n: u64) -> &str {
        let mut at = self.0.len();
        loop {
            at -= 1;
            self.0[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        // Only ASCII digits were written.
        std::str::from_utf8(&self.0[at..]).unwrap_or_default()
    }
}

/// The source of tickets: unique per engine, so a late reply to a finished operation never
/// matches a request of the operation that reused its slot.
#[derive(Default)]
pub(crate) struct Tickets(u32);

impl Tickets {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(1);
        self.0
    }
}

/// What the engine lends an operation while it runs: the way to JavaScript and the state
/// shared by all operations.
pub(crate) struct Host<'a> {
    pub(crate) transport: &'a Transport,
    pub(crate) tickets: &'a mut Tickets,
    pub(crate) scripts: &'a mut Scripts,
    pub(crate) clock: &'a Clock,
}

/// What running an operation to its next wait produced.
pub(crate) enum Stepped<T> {
    /// The outcome.
    Done(T),
    /// Waiting until this `performance.now()` reading (`+∞`: for a reply only).
    Waiting(f64),
}

/// Hands `reply`, received at `now`, to `op` if it answers a request still in flight.
pub(crate) fn reply<O: Operation>(
    op: &mut O,
    io: &mut Io,
    ticket: u32,
    reply: Reply,
    now: Instant,
) {
    if let Some((node, request)) = io.take(ticket) {
        op.handle_reply(node, request, reply, now);
    }
}

/// Runs `op` until it needs to wait or has its outcome, following the driving contract of
/// [`Operation`]: send everything, check for the outcome, handle a deadline already passed.
///
/// With the outcome, the requests the operation still awaits stay in flight when it has a tail
/// (see [`step_tail`]); otherwise they are forgotten. `read_at` is a clock reading no later than
/// now (see [`wait`]). `before_send` sees the operation each time before it sends, so that facts
/// from outside the protocol can reach an attempt before it goes out.
pub(crate) fn step<O: Operation>(
    op: &mut O,
    io: &mut Io,
    id: u32,
    host: &mut Host<'_>,
    read_at: Instant,
    mut before_send: impl FnMut(&mut O, &mut Io),
) -> Stepped<O::Output> {
    loop {
        before_send(op, io);
        send_all(op, io, id, host);
        if let Some(outcome) = op.poll_outcome() {
            if op.poll_timeout().is_none() {
                io.forget();
            }
            return Stepped::Done(outcome);
        }
        if let Some(at) = wait(op, io, host.clock, read_at) {
            return Stepped::Waiting(at);
        }
    }
}

/// Runs `op` as a tail, which looks no more at its outcome: an operation that has given it
/// (a release, finishing with its slower nodes), or one that was cancelled (see
/// [`Operation::handle_cancel`]). It sends what `op` asks for, resends included (an `EVAL`
/// after `NOSCRIPT`). Returns the `performance.now()` reading it waits until, or `None` once
/// it has nothing left to wait for and is over.
pub(crate) fn step_tail<O: Operation>(
    op: &mut O,
    io: &mut Io,
    id: u32,
    host: &mut Host<'_>,
    read_at: Instant,
) -> Option<f64> {
    loop {
        send_all(op, io, id, host);
        if op.poll_timeout().is_none() {
            io.forget();
            return None;
        }
        if let Some(at) = wait(op, io, host.clock, read_at) {
            return Some(at);
        }
    }
}

/// Sends every request `op` asks for.
fn send_all<O: Operation>(op: &mut O, io: &mut Io, id: u32, host: &mut Host<'_>) {
    let Host {
        transport,
        tickets,
        scripts,
        ..
    } = host;
    while let Some(transmit) = op.poll_transmit() {
        let number = io.number(transport, scripts, id, transmit.command);
        let ticket = tickets.next();
        io.in_flight.push(Sent {
            ticket,
            node: transmit.node,
            request: transmit.request,
        });
        let node = u32::try_from(transmit.node.index()).unwrap_or(u32::MAX);
        transport.send(id, node, ticket, number);
    }
}

/// Forgets the requests `op` no longer awaits and works out what it waits for next: the
/// `performance.now()` reading of its deadline (`+∞`: a reply only). A deadline that has
/// already passed is handled at once, and then `None` says to run `op` again.
///
/// Whether it has passed is judged by `read_at`, a reading taken earlier (when JavaScript
/// called in, or before) rather than a fresh one: the clock is a call out to JavaScript, and an
/// earlier reading can only find a deadline not yet passed, which JavaScript then reports on
/// time.
/// The timeout itself is handled at a fresh reading, so that nothing is decided as of a
/// moment already past.
fn wait<O: Operation>(op: &mut O, io: &mut Io, clock: &Clock, read_at: Instant) -> Option<f64> {
    io.in_flight
        .retain(|sent| op.is_awaiting(sent.node, sent.request));
    match op.poll_timeout() {
        Some(deadline) => {
            if deadline <= read_at {
                op.handle_timeout(host::now());
                return None;
            }
            io.deadline = Some(deadline);
            Some(clock.to_ms(deadline))
        }
        None => {
            io.deadline = None;
            Some(f64::INFINITY)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use quorumlock::proto::{Acquire, Config, Settings, Token};

    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn arguments_carry_their_utf16_length() {
        let mut settings = Settings::default();
        settings.ttl = Duration::from_millis(10_000);
        let config = Config::new(3, settings).unwrap();
        let token = Token::new("tok").unwrap();
        let mut acquire = Acquire::new(&config, ["ké😀"], token, 0, Instant::now()).unwrap();
        let transmit = acquire.poll_transmit().unwrap();
        assert_eq!(encode(&transmit.command), "3:SET4:ké😀3:tok2:NX2:PX5:10000");
    }

    #[test]
    fn decimals_match_formatting() {
        for n in [0, 1, 9, 10, 99, 100, 10_000, 31_536_000_000, u64::MAX] {
            assert_eq!(Decimal::default().of(n), n.to_string());
        }
    }
}
