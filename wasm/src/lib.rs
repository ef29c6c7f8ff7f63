#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! The quorumlock Redlock core for JavaScript runtimes.
//!
//! This crate is the WebAssembly half of the npm package `quorumlock`: it runs the protocol
//! machines of [`quorumlock::proto`] for JavaScript, which carries the commands to one executor
//! per Redis node. JavaScript drives: it starts an operation, reports each reply, deadline and
//! cancellation, and each of those calls runs the operation as far as it can go and answers
//! with one number (see `driver::status`). The public JavaScript API (`Redlock`, `Lock`,
//! `using`, the error classes) lives in `js/` and is the only caller of what is exported here;
//! its inputs are checked there first, and again here, so that no input ever makes the module
//! trap.

mod driver;
mod host;
mod messages;
mod reply;
mod settings;
mod template;
mod to_js;
mod waits;

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Array;
use quorumlock::proto::{
    Acquire, AcquireError, Config, Extend, ExtendError, Instant, Lease, Operation, Release,
    Released, Settings,
};
use wasm_bindgen::prelude::*;

use driver::{status, Host, Io, Stepped, Tickets};
pub use host::Transport;
use to_js::code;
use waits::{Waiter, Waits};

/// The protocol engine for one set of Redis nodes, and the operations it is running.
#[wasm_bindgen]
pub struct RedlockCore {
    transport: Transport,
    nodes: usize,
    /// The constructor's settings; an acquire without retry options uses them with its TTL.
    settings: Settings,
    /// The last TTL an acquire without retry options asked for, and the configuration built
    /// for it: callers tend to use one TTL, and then each acquire reuses it as it is.
    last_config: Option<(std::time::Duration, Config)>,
    clock: host::Clock,
    /// The last clock reading taken (see [`RedlockCore::step`]).
    last_read: Instant,
    tickets: Tickets,
    scripts: template::Scripts,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    /// Acquires waiting for resources that locks of this engine hold (see [`waits`]).
    waits: Waits,
    /// Whether JavaScript subscribes to releases by other processes (see
    /// [`RedlockCore::listen`]): then it is told which resources anybody waits for.
    subscribed: bool,
    /// How many nodes a release must be heard from before it wakes a waiter.
    quorum: usize,
    /// The numbers of the last release `finish` handed out, which JavaScript reads in place
    /// (see [`RedlockCore::outcome_address`]): a view on memory costs it less than a new
    /// `Float64Array` per release. Its length is fixed, so it never moves.
    outcome: Box<[f64]>,
}

struct Slot {
    io: Io,
    task: Task,
}

/// What a finished operation hands out.
enum Outcome {
    Value(JsValue),
    /// Numbers to read from [`RedlockCore::outcome`], as a release without failures ends.
    Numbers(Vec<f64>),
}

enum Task {
    Acquire(Box<Acquire>, Config, Waiter),
    /// An acquire whose caller aborted it, told so ([`Operation::handle_cancel`]) and driven on
    /// until it is over, then failed with `ABORTED`: at once from a pause, and after a clean-up
    /// once every node has answered it or timed out. With `true`, its end wakes a waiter for its
    /// resources: its clean-up deleted what its attempt may have set, or it had been woken
    /// itself and must not swallow that wake-up.
    Cancelled(Box<Acquire>, bool),
    Extend(Box<Extend>, Config, Rc<RefCell<HeldState>>),
    /// A release, with the lock it deletes: its resources and token say whom it wakes.
    Release(Release, Rc<RefCell<HeldState>>),
    /// Over; `finish` hands out the value. A release or an extension that still awaits slower
    /// nodes comes along, to become a [`Task::Tail`] then.
    Finished(Result<Outcome, JsValue>, Option<Leftover>),
    /// An operation whose outcome was handed out, finishing the requests it still wants
    /// answered (see [`Release`] and [`Extend`]). Driven like any operation until it answers
    /// `DONE`.
    Tail(Leftover),
}

/// An operation past its outcome that still awaits slower nodes: a release decided by a quorum
/// finishes its deletions, and both resend to a node that answers `NOSCRIPT` late.
// Most releases on three or more nodes leave a tail; boxing it would cost each an allocation,
// where a leftover extension is rare and already boxed.
#[allow(clippy::large_enum_variant)]
enum Leftover {
    Release(Release),
    Extend(Box<Extend>),
}

#[wasm_bindgen]
impl RedlockCore {
    /// An engine for `nodes` nodes reached through `transport`. Throws a `RangeError` when the
    /// options cannot be used.
    #[wasm_bindgen(constructor)]
    pub fn new(
        transport: Transport,
        nodes: u32,
        options: &JsValue,
    ) -> Result<RedlockCore, JsValue> {
        let nodes = usize::try_from(nodes).map_err(|_| range_error("too many nodes"))?;
        // The TTL comes with each acquire; check everything else against the longest one.
        let settings = settings::from_options(options).map_err(|e| range_error(&e.0))?;
        let mut longest = settings.clone();
        longest.ttl = Config::MAX_TTL;
        let quorum = Config::new(nodes, longest)
            .map_err(|e| range_error(&messages::config(&e)))?
            .quorum();
        Ok(Self {
            transport,
            nodes,
            settings,
            last_config: None,
            clock: host::Clock::new(),
            last_read: host::now(),
            tickets: Tickets::default(),
            scripts: template::Scripts::default(),
            slots: Vec::new(),
            free: Vec::new(),
            waits: Waits::default(),
            subscribed: false,
            quorum,
            outcome: vec![0.0; 1 + 3 * nodes].into_boxed_slice(),
        })
    }

    /// Starts acquiring `resources` for `ttl_ms`, with the constructor's settings, or with
    /// `options` when given (all settings, retry options included). Returns the operation's
    /// id; nothing is sent before [`RedlockCore::step`]. Throws a `TypeError` or a
    /// `RangeError` for input the core cannot use.
    pub fn acquire(
        &mut self,
        resources: Array,
        ttl_ms: f64,
        options: &JsValue,
    ) -> Result<u32, JsValue> {
        let mut names = Vec::with_capacity(resources.length() as usize);
        for (index, resource) in resources.iter().enumerate() {
            match resource.as_string() {
                Some(name) => names.push(name),
                None => return Err(type_error(&format!("resource {index} is not a string"))),
            }
        }
        self.start_acquire(names, ttl_ms, options)
    }

    /// [`RedlockCore::acquire`] of the one key `resource`, which crosses as a string argument
    /// rather than through an array.
    #[wasm_bindgen(js_name = acquireKey)]
    pub fn acquire_key(
        &mut self,
        resource: String,
        ttl_ms: f64,
        options: &JsValue,
    ) -> Result<u32, JsValue> {
        self.start_acquire(vec![resource], ttl_ms, options)
    }

    /// Starts extending `lock` to `ttl_ms` from now, if a quorum still holds it for us.
    /// Returns the operation's id. Throws a `RangeError` for a TTL the settings cannot use.
    pub fn extend(&mut self, lock: &HeldLock, ttl_ms: f64) -> Result<u32, JsValue> {
        let ttl = duration_ms(ttl_ms, "ttl")?;
        let (config, extend) = {
            let state = lock.state.borrow();
            let config = state
                .config
                .with_ttl(ttl)
                .map_err(|e| range_error(&messages::config(&e)))?;
            let extend = Extend::new(&config, &state.lease, host::seed(), self.read_clock());
            (config, extend)
        };
        Ok(self.insert(
            Task::Extend(Box::new(extend), config, lock.state.clone()),
            true,
        ))
    }

    /// Starts deleting `lock`'s keys on every node that still holds them for us. Returns the
    /// operation's id; it always succeeds, with `[clean, report]`.
    pub fn release(&mut self, lock: &HeldLock) -> u32 {
        let release = {
            let state = lock.state.borrow();
            Release::for_lease(&state.config, &state.lease, self.read_clock())
        };
        self.insert(Task::Release(release, lock.state.clone()), true)
    }

    /// Runs operation `id` as far as it goes: sends what it asks for. Returns a
    /// `performance.now()` reading to call [`RedlockCore::timeout`] at (`Infinity`: wait for
    /// a reply), or `-1` (done: call [`RedlockCore::finish`]), `-2` (failed: the same), `-3`
    /// (no such operation).
    pub fn step(&mut self, id: u32) -> f64 {
        // Nothing happens at a step that a reading is needed for: only whether a deadline has
        // passed, for which an earlier reading is safe (see `driver::wait`). The clock is a
        // call out to JavaScript; the last reading spares it.
        let read_at = self.last_read;
        self.advance(id, read_at, |_, _, _| {})
    }

    /// Reports the reply to the request sent with `ticket`: `tag` says what it is (`0` OK,
    /// `1` nil, `2` the integer `number`, `3` a server error, `4` a failure to carry the
    /// command, `5` anything else; `text` describes the last three). Answers like
    /// [`RedlockCore::step`]; `-3` when nothing awaits that reply any more.
    pub fn reply(
        &mut self,
        id: u32,
        ticket: u32,
        tag: u32,
        number: f64,
        text: Option<String>,
    ) -> f64 {
        // A reply nothing waits for changes nothing: the operation is not even stepped, so
        // whatever it would do next stays with the call JavaScript is waiting to make.
        let awaited = self
            .slots
            .get(id as usize)
            .and_then(Option::as_ref)
            .is_some_and(|slot| slot.io.sent(ticket));
        if !awaited {
            return status::IGNORED;
        }
        let reply = reply::decode(tag, number, text);
        let now = self.read_clock();
        self.advance(id, now, |task, io, now| match task {
            Task::Acquire(op, _, _) | Task::Cancelled(op, _) => {
                driver::reply(&mut **op, io, ticket, reply, now)
            }
            Task::Release(op, _) | Task::Tail(Leftover::Release(op)) => {
                driver::reply(op, io, ticket, reply, now)
            }
            Task::Extend(op, _, _) | Task::Tail(Leftover::Extend(op)) => {
                driver::reply(&mut **op, io, ticket, reply, now)
            }
            Task::Finished(..) => {}
        })
    }

    /// The deadline JavaScript was given has come: answers like [`RedlockCore::step`] (with
    /// the same deadline again if it has not quite passed by the core's clock).
    pub fn timeout(&mut self, id: u32) -> f64 {
        let now = self.read_clock();
        let clock = &self.clock;
        let Some(slot) = self.slots.get_mut(id as usize).and_then(Option::as_mut) else {
            return status::IGNORED;
        };
        if let Some(deadline) = slot.io.pending_deadline(now) {
            return clock.to_ms(deadline);
        }
        self.advance(id, now, |task, _, now| match task {
            Task::Acquire(op, _, _) | Task::Cancelled(op, _) => op.handle_timeout(now),
            Task::Release(op, _) | Task::Tail(Leftover::Release(op)) => op.handle_timeout(now),
            Task::Extend(op, _, _) | Task::Tail(Leftover::Extend(op)) => op.handle_timeout(now),
            Task::Finished(..) => {}
        })
    }

    /// Cancels acquire `id`. The core decides what that takes (see
    /// [`Operation::handle_cancel`]): an attempt already sent is cleaned up on every node, a
    /// pause just ends. The acquire is driven like any operation until that is over, and then
    /// fails with code `ABORTED`. Answers like [`RedlockCore::step`]; `-3` for anything but an
    /// acquire in progress.
    pub fn cancel(&mut self, id: u32) -> f64 {
        let now = self.read_clock();
        let Self {
            slots,
            waits,
            transport,
            subscribed,
            ..
        } = self;
        let Some(slot) = slots.get_mut(id as usize).and_then(Option::as_mut) else {
            return status::IGNORED;
        };
        slot.task = match std::mem::replace(&mut slot.task, finished_placeholder()) {
            Task::Acquire(mut acquire, _, waiter) => {
                acquire.handle_cancel(now);
                // An aborted acquire no longer waits, and wakes nobody when it merely ends a
                // pause: it held nothing.
                if waiter.registered {
                    waits.unregister(id, acquire.resources(), forget(transport, *subscribed));
                }
                let cleaning = acquire.poll_timeout().is_some();
                Task::Cancelled(acquire, cleaning || waiter.carrying)
            }
            other => {
                slot.task = other;
                return status::IGNORED;
            }
        };
        // Its requests stay in flight: a clean-up already under way still wants its answers,
        // and the step forgets the requests the acquire no longer awaits.
        self.step(id)
    }

    /// The result of finished operation `id`: a [`HeldLock`] for an acquire, `true` for an
    /// extension, the outcome of a release, or `[code, message, report, retryAfterMs]` for a
    /// failure; `undefined` for no such operation. A release's outcome is
    /// `[clean, [numbers, details]]` when a node failed; otherwise it is a count `n`, and the
    /// outcome is the first `n` numbers at [`RedlockCore::outcome_address`] (`clean` as 1 or 0,
    /// then `status, errorKind, latencyMs` per node), valid until the next call into the core.
    /// The operation is then forgotten, unless it still awaits slower nodes (a release or an
    /// extension decided by a quorum): then it goes on as a tail, which JavaScript steps, feeds replies and
    /// deadlines like any operation until it answers `-1`, and finishes once more
    /// (`undefined`). Calling [`RedlockCore::step`] right after this tells which: `-3` when the
    /// operation is gone.
    pub fn finish(&mut self, id: u32) -> JsValue {
        let Some(slot) = self.slots.get_mut(id as usize) else {
            return JsValue::UNDEFINED;
        };
        let Some(Slot { task, .. }) = slot else {
            return JsValue::UNDEFINED;
        };
        if !matches!(task, Task::Finished(..)) {
            return JsValue::UNDEFINED;
        }
        let Task::Finished(result, tail) = std::mem::replace(task, finished_placeholder()) else {
            return JsValue::UNDEFINED;
        };
        match tail {
            Some(leftover) => *task = Task::Tail(leftover),
            None => {
                *slot = None;
                self.free.push(id);
            }
        }
        match result {
            Ok(Outcome::Value(value)) | Err(value) => value,
            Ok(Outcome::Numbers(numbers)) => match self.outcome.get_mut(..numbers.len()) {
                Some(room) => {
                    room.copy_from_slice(&numbers);
                    JsValue::from_f64(numbers.len() as f64)
                }
                None => js_sys::Float64Array::from(&numbers[..]).into(),
            },
        }
    }

    /// Where in the module's memory (a byte offset) `finish` leaves the numbers of a release.
    #[wasm_bindgen(js_name = outcomeAddress)]
    pub fn outcome_address(&self) -> u32 {
        u32::try_from(self.outcome.as_ptr() as usize).unwrap_or(0)
    }

    /// JavaScript has subscribers for releases by other processes: from now on it is told
    /// through [`Transport::watch`] and [`Transport::unwatch`] which resources anybody waits
    /// for, and reports what it hears with [`RedlockCore::released_elsewhere`].
    pub fn listen(&mut self) {
        self.subscribed = true;
    }

    /// Node `node` published that the lock on `resource` held under `token` was released.
    /// Once a quorum of nodes has said so, the first acquire waiting for `resource` that can
    /// use it tries again at once, as after a release here. A release nobody here waits for,
    /// one heard before, and one of this engine's own locks are ignored.
    #[wasm_bindgen(js_name = releasedElsewhere)]
    pub fn released_elsewhere(&mut self, node: u32, resource: &str, token: &str) {
        if self.waits.is_idle() {
            return;
        }
        if self
            .waits
            .released_elsewhere(resource, token, node as usize, self.quorum)
        {
            self.waits.count_release();
            self.wake_or_miss(resource);
        }
    }
}

impl RedlockCore {
    /// The body of [`RedlockCore::acquire`] and [`RedlockCore::acquire_key`].
    fn start_acquire(
        &mut self,
        names: Vec<String>,
        ttl_ms: f64,
        options: &JsValue,
    ) -> Result<u32, JsValue> {
        let ttl = duration_ms(ttl_ms, "ttl")?;
        let config = if options.is_undefined() {
            self.default_config(ttl)?
        } else {
            let mut settings = settings::from_options(options).map_err(|e| range_error(&e.0))?;
            settings.ttl = ttl;
            Config::new(self.nodes, settings).map_err(|e| range_error(&messages::config(&e)))?
        };
        let (token, seed) = host::token_and_seed().map_err(|_| {
            JsValue::from(js_sys::Error::new("crypto.getRandomValues is unavailable"))
        })?;
        let acquire = Acquire::new(&config, names, token, seed, self.read_clock())
            .map_err(|e| type_error(&messages::resources(&e)))?;
        let waiter = self.waits.waiter(config.retry().retries);
        Ok(self.insert(Task::Acquire(Box::new(acquire), config, waiter), false))
    }

    /// The configuration of the constructor's settings with `ttl`.
    fn default_config(&mut self, ttl: std::time::Duration) -> Result<Config, JsValue> {
        if let Some((last_ttl, config)) = &self.last_config {
            if *last_ttl == ttl {
                return Ok(config.clone());
            }
        }
        let mut settings = self.settings.clone();
        settings.ttl = ttl;
        let config =
            Config::new(self.nodes, settings).map_err(|e| range_error(&messages::config(&e)))?;
        self.last_config = Some((ttl, config.clone()));
        Ok(config)
    }

    /// Adds an operation; `token_known` when JavaScript started it with the lock's token.
    fn insert(&mut self, task: Task, token_known: bool) -> u32 {
        let slot = Some(Slot {
            io: Io::new(token_known),
            task,
        });
        match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = slot;
                id
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// The current time, kept as the last reading.
    fn read_clock(&mut self) -> Instant {
        let now = host::now();
        self.last_read = now;
        now
    }

    /// Applies `event` to operation `id` at `now`, then runs it to its next wait; `now` is
    /// also what `driver::wait` judges by whether a deadline has passed. Then wakes the waiters
    /// its outcome concerns.
    fn advance(
        &mut self,
        id: u32,
        now: Instant,
        event: impl FnOnce(&mut Task, &mut Io, Instant),
    ) -> f64 {
        let (code, follow_up) = self.run(id, now, event);
        match follow_up {
            FollowUp::Nothing => {}
            FollowUp::Wake(resources) => {
                for resource in &resources {
                    self.wake_or_miss(resource);
                }
            }
            FollowUp::PassOn(resources, over) => {
                for resource in &resources {
                    self.wake_one(resource, Some(id));
                }
                if over {
                    let forget = forget(&self.transport, self.subscribed);
                    self.waits.unregister(id, &resources, forget);
                }
            }
        }
        code
    }

    /// The body of [`RedlockCore::advance`]: runs the operation, and says whom to wake.
    fn run(
        &mut self,
        id: u32,
        now: Instant,
        event: impl FnOnce(&mut Task, &mut Io, Instant),
    ) -> (f64, FollowUp) {
        let Self {
            transport,
            clock,
            tickets,
            scripts,
            slots,
            waits,
            subscribed,
            ..
        } = self;
        let subscribed = *subscribed;
        let mut host = Host {
            transport,
            tickets,
            scripts,
            clock,
        };
        let mut follow_up = FollowUp::Nothing;
        let Some(slot) = slots.get_mut(id as usize).and_then(Option::as_mut) else {
            return (status::IGNORED, follow_up);
        };
        event(&mut slot.task, &mut slot.io, now);
        let io = &mut slot.io;
        let finished = match &mut slot.task {
            Task::Finished(..) => return (status::IGNORED, follow_up),
            Task::Tail(leftover) => {
                let waiting = match leftover {
                    Leftover::Release(op) => driver::step_tail(op, io, id, &mut host, now),
                    Leftover::Extend(op) => driver::step_tail(&mut **op, io, id, &mut host, now),
                };
                match waiting {
                    Some(at) => return (at, follow_up),
                    None => Ok(Outcome::Value(JsValue::UNDEFINED)),
                }
            }
            Task::Acquire(op, config, waiter) => loop {
                let listening = waiter.enabled();
                let mut skipped = false;
                let stepped = driver::step(&mut **op, io, id, &mut host, now, |op, io| {
                    // A resource held by a lock of this engine is not worth asking the nodes
                    // for: its release wakes this acquire. Only an attempt not yet sent can be
                    // skipped, and one waits to go out only when nothing awaited is in flight
                    // (a clean-up's slower nodes, no longer awaited, may still be).
                    if listening && !waits.is_idle() && io.is_idle(op) {
                        if let Some((now, until)) = waits.held_until(op.resources(), host::now) {
                            skipped |= op.handle_known_held(now, until);
                        }
                    }
                });
                match stepped {
                    // Mid-round, or cleaning up after a failed attempt: nothing to do here.
                    Stepped::Waiting(at) if !listening || !io.is_idle(&**op) => {
                        return (at, follow_up)
                    }
                    // A pause between attempts.
                    Stepped::Waiting(at) => {
                        if waiter.carrying {
                            waiter.carrying = false;
                            // An attempt skipped for a known holder waits for that holder's
                            // release, as do the others; one that failed at the nodes may have
                            // failed for a reason of its own (another of its resources was
                            // held), so the waiters after it get their turn.
                            if !skipped {
                                follow_up = FollowUp::PassOn(op.resources().to_vec(), false);
                            }
                        }
                        let first_pause = !waiter.registered;
                        if first_pause {
                            let watch = watch(host.transport, subscribed);
                            waits.register(id, op.resources(), now, watch);
                            waiter.registered = true;
                        }
                        // A release that came before this acquire listened, or that found every
                        // waiter mid-attempt, may have left the lock free: try again now rather
                        // than sleep out the delay.
                        let missed = waits.missed(op.resources());
                        if (missed || (first_pause && waits.released_since(waiter)))
                            && op.handle_wakeup(host::now())
                        {
                            if missed {
                                waits.clear_missed(op.resources());
                            }
                            waiter.carrying = true;
                            continue;
                        }
                        return (at, follow_up);
                    }
                    Stepped::Done(Ok(lease)) => {
                        // Noted before this acquire stops waiting, so that a lock taken after
                        // waiting stays known even when nobody else waits now: a contender
                        // still mid-attempt is refused, pauses, and then waits for its release.
                        if !waits.is_idle() {
                            waits.held(
                                lease.resources(),
                                lease.token().as_str(),
                                lease.valid_until(),
                            );
                        }
                        if waiter.registered {
                            let forget = forget(host.transport, subscribed);
                            waits.unregister(id, op.resources(), forget);
                        }
                        break Ok(Outcome::Value(HeldLock::new(config.clone(), lease).into()));
                    }
                    Stepped::Done(Err(error)) => {
                        if waiter.carrying && !skipped {
                            follow_up = FollowUp::PassOn(op.resources().to_vec(), true);
                        } else if waiter.registered {
                            let forget = forget(host.transport, subscribed);
                            waits.unregister(id, op.resources(), forget);
                        }
                        break Err(acquire_failure(&error));
                    }
                }
            },
            // Whatever a cancelled acquire still gives as its outcome means nothing (see
            // `Operation::handle_cancel`), and the core reports nothing on its clean-up: the
            // failure goes without a report, like the `AbortError` JavaScript makes of it.
            Task::Cancelled(op, wakes) => {
                match driver::step_tail(&mut **op, io, id, &mut host, now) {
                    Some(at) => return (at, follow_up),
                    None => {
                        if *wakes {
                            waits.count_release();
                            if !waits.is_idle() {
                                follow_up = FollowUp::Wake(op.resources().to_vec());
                            }
                        }
                        Err(to_js::failure(
                            code::ABORTED,
                            "the acquire was aborted",
                            JsValue::NULL,
                        ))
                    }
                }
            }
            Task::Extend(op, config, state) => {
                match driver::step(&mut **op, io, id, &mut host, now, |_, _| {}) {
                    Stepped::Waiting(at) => return (at, follow_up),
                    Stepped::Done(Ok(lease)) => {
                        if !waits.is_idle() {
                            waits.held(
                                lease.resources(),
                                lease.token().as_str(),
                                lease.valid_until(),
                            );
                        }
                        *state.borrow_mut() = HeldState {
                            config: config.clone(),
                            lease,
                        };
                        Ok(Outcome::Value(JsValue::TRUE))
                    }
                    Stepped::Done(Err(error)) => {
                        // The keys are gone or another owner's: whoever waits may have them.
                        if matches!(error, ExtendError::Lost { .. }) {
                            follow_up = lock_gone(waits, &state.borrow().lease);
                        }
                        Err(extend_failure(&error))
                    }
                }
            }
            Task::Release(op, state) => match driver::step(op, io, id, &mut host, now, |_, _| {}) {
                Stepped::Waiting(at) => return (at, follow_up),
                Stepped::Done(released) => {
                    follow_up = lock_gone(waits, &state.borrow().lease);
                    Ok(released_outcome(&released))
                }
            },
        };
        let code = if finished.is_ok() {
            status::DONE
        } else {
            status::FAILED
        };
        // A release or an extension decided by a quorum may still await slower nodes: it stays
        // for its tail.
        let tail = match std::mem::replace(&mut slot.task, finished_placeholder()) {
            Task::Release(op, _) if op.poll_timeout().is_some() => Some(Leftover::Release(op)),
            Task::Extend(op, _, _) if op.poll_timeout().is_some() => Some(Leftover::Extend(op)),
            _ => None,
        };
        slot.task = Task::Finished(finished, tail);
        (code, follow_up)
    }

    /// Hands a release of `resource` to a waiter, or keeps it for the first to pause next
    /// when none can use it now.
    fn wake_or_miss(&mut self, resource: &str) {
        if !self.wake_one(resource, None) {
            self.waits.miss(resource);
        }
    }

    /// Hands a release of `resource` to the first acquire waiting for it, in arrival order
    /// (after acquire `after`, when given), that can use it: one pausing between attempts.
    /// Returns whether one did; JavaScript then steps it (see `Transport::wake`).
    fn wake_one(&mut self, resource: &str, after: Option<u32>) -> bool {
        let Self {
            transport,
            slots,
            waits,
            ..
        } = self;
        let mut now = None;
        for &waiting in waits.waiters(resource, after) {
            let Some(Some(Slot {
                task: Task::Acquire(op, _, waiter),
                ..
            })) = slots.get_mut(waiting as usize)
            else {
                continue;
            };
            if op.handle_wakeup(*now.get_or_insert_with(host::now)) {
                waiter.carrying = true;
                transport.wake(waiting);
                return true;
            }
        }
        false
    }
}

/// Whom to wake once an operation has run (see [`RedlockCore::advance`]).
enum FollowUp {
    Nothing,
    /// A lock on these resources is gone: wake the first waiter for each.
    Wake(Vec<String>),
    /// The attempt that a wake-up started failed: hand the wake-up on to the waiters after
    /// this acquire, and with `true` forget the acquire as a waiter (it is over).
    PassOn(Vec<String>, bool),
}

/// `lease` no longer holds its resources (released, or found lost): counts that as a release
/// and, when anybody waits, says whom to wake.
fn lock_gone(waits: &mut Waits, lease: &Lease) -> FollowUp {
    waits.count_release();
    if waits.is_idle() {
        return FollowUp::Nothing;
    }
    let token = lease.token().as_str();
    let resources = lease
        .resources()
        .iter()
        .filter(|resource| waits.released_here(resource, token))
        .cloned()
        .collect();
    FollowUp::Wake(resources)
}

/// What [`Waits::register`] calls for a resource that gains its first waiter: when JavaScript
/// has subscribers, it subscribes to the resource's releases elsewhere.
fn watch(transport: &Transport, subscribed: bool) -> impl FnMut(&str) + '_ {
    move |resource| {
        if subscribed {
            transport.watch(resource);
        }
    }
}

/// What [`Waits::unregister`] calls for a resource that loses its last waiter.
fn forget(transport: &Transport, subscribed: bool) -> impl FnMut(&str) + '_ {
    move |resource| {
        if subscribed {
            transport.unwatch(resource);
        }
    }
}

/// What a task is left as while its parts are moved out.
fn finished_placeholder() -> Task {
    Task::Finished(Ok(Outcome::Value(JsValue::UNDEFINED)), None)
}

fn acquire_failure(error: &AcquireError) -> JsValue {
    to_js::acquire_failure(error)
}

fn extend_failure(error: &ExtendError) -> JsValue {
    to_js::extend_failure(error)
}

fn released_outcome(released: &Released) -> Outcome {
    match to_js::released(released.is_clean(), &released.report) {
        to_js::Released::Numbers(numbers) => Outcome::Numbers(numbers),
        to_js::Released::Value(value) => Outcome::Value(value),
    }
}

struct HeldState {
    config: Config,
    lease: Lease,
}

/// A lock held on a quorum of nodes.
#[wasm_bindgen]
pub struct HeldLock {
    state: Rc<RefCell<HeldState>>,
}

impl HeldLock {
    fn new(config: Config, lease: Lease) -> Self {
        Self {
            state: Rc::new(RefCell::new(HeldState { config, lease })),
        }
    }
}

fn millis(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[wasm_bindgen]
impl HeldLock {
    /// The token stored under every key.
    pub fn value(&self) -> String {
        self.state.borrow().lease.token().as_str().to_owned()
    }

    /// The locked resources.
    pub fn resources(&self) -> Vec<String> {
        self.state.borrow().lease.resources().to_vec()
    }

    /// Validity granted by the last acquire or extend round, in milliseconds.
    #[wasm_bindgen(js_name = validityMs)]
    pub fn validity_ms(&self) -> f64 {
        millis(self.state.borrow().lease.validity())
    }

    /// Validity left now, in milliseconds (zero once expired).
    #[wasm_bindgen(js_name = remainingMs)]
    pub fn remaining_ms(&self) -> f64 {
        millis(self.state.borrow().lease.remaining(host::now()))
    }

    /// Milliseconds from now until the validity ends: negative once it has ended, unlike
    /// [`HeldLock::remaining_ms`].
    #[wasm_bindgen(js_name = validForMs)]
    pub fn valid_for_ms(&self) -> f64 {
        let valid_until = self.state.borrow().lease.valid_until();
        let now = host::now();
        if valid_until >= now {
            millis(valid_until.saturating_duration_since(now))
        } else {
            -millis(now.saturating_duration_since(valid_until))
        }
    }

    /// Milliseconds from now until an automatic extension should start (zero if overdue).
    #[wasm_bindgen(js_name = renewInMs)]
    pub fn renew_in_ms(&self) -> f64 {
        let renew_at = self.state.borrow().lease.renew_at();
        millis(renew_at.saturating_duration_since(host::now()))
    }

    /// How many times the lock was extended.
    pub fn extensions(&self) -> u32 {
        self.state.borrow().lease.extensions()
    }

    /// Per-node outcome of the last acquire or extend round, as `[numbers, details]` (see
    /// `to_js::report`).
    pub fn report(&self) -> JsValue {
        to_js::report(self.state.borrow().lease.report())
    }
}

/// The module's memory, where JavaScript reads a release's numbers (see
/// [`RedlockCore::finish`]).
#[wasm_bindgen(js_name = wasmMemory)]
pub fn wasm_memory() -> JsValue {
    wasm_bindgen::memory()
}

/// What the release and clean-up scripts put before a key to name its waiter marker; commands
/// defined by shape (see `template.rs`) have JavaScript add it.
#[wasm_bindgen(js_name = markerPrefix)]
pub fn marker_prefix() -> String {
    quorumlock::proto::WAITING_MARKER_PREFIX.to_owned()
}

/// What the release script puts before a key to name the channel it publishes the release on.
#[wasm_bindgen(js_name = releasedChannelPrefix)]
pub fn released_channel_prefix() -> String {
    quorumlock::proto::RELEASED_CHANNEL_PREFIX.to_owned()
}

/// A TTL in milliseconds as a duration; a `RangeError` naming `name` when it cannot be one.
fn duration_ms(ms: f64, name: &str) -> Result<std::time::Duration, JsValue> {
    if !(ms.is_finite() && ms >= 0.0) {
        return Err(range_error(&format!(
            "{name} must be a finite, non-negative number"
        )));
    }
    std::time::Duration::try_from_secs_f64(ms / 1000.0)
        .map_err(|_| range_error(&format!("{name} is out of range")))
}

fn range_error(message: &str) -> JsValue {
    js_sys::RangeError::new(message).into()
}

fn type_error(message: &str) -> JsValue {
    js_sys::TypeError::new(message).into()
}
