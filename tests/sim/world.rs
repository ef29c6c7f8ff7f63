//! A deterministic world of Redis nodes, a network and competing lock clients on one global
//! clock. Nodes keep real key stores with node-local expiry and a script cache; clients drive
//! the real `Acquire`, `Extend` and `Release` machines on their own (skewed) clocks.
//!
//! Every holder's safe interval is recorded in true time so that [`overlaps`] can check mutual
//! exclusion after the fact.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use quorumlock::proto::{
    Acquire, AcquireError, Command, CommandKind, Config, Extend, Instant, Lease, NodeId, Operation,
    Release, Reply, RequestId, Token, Transmit,
};

use super::{show_reply, SeededRng};

/// What a node answers to `EVALSHA` when its script cache does not hold the digest.
pub const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";

/// Stops a history that would run away (a liveness bug) instead of hanging the test.
const MAX_EVENTS: u64 = 500_000;
/// The most steps one client may take without waiting for anything.
const MAX_STEPS_PER_WAKE: usize = 10_000;

/// A clock running at `1 + ppm / 1_000_000` times true time, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    ppm: i64,
}

impl Clock {
    pub fn new(ppm: i64) -> Self {
        assert!(ppm.abs() < 1_000_000, "a clock must move forwards");
        Self { ppm }
    }

    fn rate(self) -> u128 {
        (1_000_000 + self.ppm) as u128
    }

    /// What this clock reads at true time `true_ns`.
    pub fn local(self, true_ns: u64) -> u64 {
        (u128::from(true_ns) * self.rate() / 1_000_000) as u64
    }

    /// The first true time at which this clock reads at least `local_ns`.
    pub fn true_of(self, local_ns: u64) -> u64 {
        (u128::from(local_ns) * 1_000_000).div_ceil(self.rate()) as u64
    }
}

/// Something that happens to a node or a client at a chosen true time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The node refuses connections but keeps its keys (a partition, or a stop with persistence).
    Down(usize),
    /// The node accepts connections again.
    Up(usize),
    /// The node dies and forgets every key and script; it refuses connections until `Up`.
    Crash(usize),
    /// The node forgets its scripts (`SCRIPT FLUSH`) but keeps its keys.
    FlushScripts(usize),
    /// The client stops handling events (a GC pause, a descheduled process) for a while.
    Pause { client: usize, length: Duration },
}

/// Message timing and loss. Latencies are one way.
#[derive(Debug, Clone, Copy)]
pub struct Network {
    pub latency: (Duration, Duration),
    /// Messages that take a slow path, typically past the request deadline.
    pub slow_per_million: u64,
    pub slow_latency: (Duration, Duration),
    /// Messages that never arrive; half of them reset the connection (the client sees an I/O
    /// error), the other half vanish silently.
    pub loss_per_million: u64,
}

impl Network {
    /// A perfect network with a fixed one-way latency, for hand-built scenarios.
    pub fn fixed(latency: Duration) -> Self {
        Self {
            latency: (latency, latency),
            slow_per_million: 0,
            slow_latency: (latency, latency),
            loss_per_million: 0,
        }
    }
}

/// One acquire → hold → release cycle of a client.
#[derive(Debug, Clone)]
pub struct Cycle {
    /// Pause before the acquire starts, after the previous cycle ended (client-clock time).
    pub start_after: Duration,
    pub resources: Vec<String>,
    /// How long the client means to hold the lock once granted (client-clock time).
    pub hold: Duration,
    /// Whether the client extends the lock half-way through each validity period.
    pub extend: bool,
}

#[derive(Debug, Clone)]
pub struct ClientPlan {
    pub clock_ppm: i64,
    pub cycles: Vec<Cycle>,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub config: Config,
    pub node_clock_ppm: Vec<i64>,
    pub clients: Vec<ClientPlan>,
    /// True-time offsets from the start of the history.
    pub faults: Vec<(Duration, Fault)>,
    pub network: Network,
    /// Drives latency, loss, tokens and retry jitter.
    pub seed: u64,
    /// Keep a readable line per event (for replaying a failing seed).
    pub trace: bool,
}

/// A holder's safe interval, in true nanoseconds since the start of the history: from seeing
/// the grant to the earlier of starting the release and its own clock reaching the lease's
/// `valid_until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub client: usize,
    pub resources: Vec<String>,
    pub token: Token,
    pub from: u64,
    pub until: u64,
    pub extensions: u32,
}

/// Two holders of one resource whose safe intervals intersect.
#[derive(Debug, Clone)]
pub struct Overlap {
    pub resource: String,
    pub first: Hold,
    pub second: Hold,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub acquires: u64,
    pub acquired: u64,
    pub attempts: u64,
    /// Attempts in which at least one node said the resource was held by someone else.
    pub contended_attempts: u64,
    pub extensions: u64,
    pub extend_failures: u64,
    pub releases: u64,
    /// Replies the machines no longer waited for (late, duplicate, or from an earlier round).
    pub unawaited_replies: u64,
    pub noscript_replies: u64,
    pub refused_connections: u64,
    pub lost_messages: u64,
    pub events: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, other: Self) {
        self.acquires += other.acquires;
        self.acquired += other.acquired;
        self.attempts += other.attempts;
        self.contended_attempts += other.contended_attempts;
        self.extensions += other.extensions;
        self.extend_failures += other.extend_failures;
        self.releases += other.releases;
        self.unawaited_replies += other.unawaited_replies;
        self.noscript_replies += other.noscript_replies;
        self.refused_connections += other.refused_connections;
        self.lost_messages += other.lost_messages;
        self.events += other.events;
    }
}

#[derive(Debug, Clone)]
pub struct History {
    pub holds: Vec<Hold>,
    pub stats: Stats,
    /// Changes whenever anything in the history changes: equal fingerprints mean a faithful
    /// replay.
    pub fingerprint: u64,
    pub trace: Vec<String>,
    /// Set when the history broke a liveness rule (ran away, or a client never finished).
    pub stuck: Option<String>,
}

impl History {
    pub fn overlaps(&self) -> Vec<Overlap> {
        overlaps(&self.holds)
    }
}

/// Every pair of holders of the same resource whose safe intervals intersect.
pub fn overlaps(holds: &[Hold]) -> Vec<Overlap> {
    let mut resources: Vec<&String> = holds.iter().flat_map(|h| &h.resources).collect();
    resources.sort();
    resources.dedup();
    let mut found = Vec::new();
    for resource in resources {
        let mut holders: Vec<&Hold> = holds
            .iter()
            .filter(|h| h.until > h.from && h.resources.contains(resource))
            .collect();
        holders.sort_by_key(|h| (h.from, h.until));
        let mut latest: Option<&Hold> = None;
        for hold in holders {
            if let Some(previous) = latest {
                if hold.from < previous.until {
                    found.push(Overlap {
                        resource: resource.clone(),
                        first: previous.clone(),
                        second: hold.clone(),
                    });
                }
                if hold.until > previous.until {
                    latest = Some(hold);
                }
            } else {
                latest = Some(hold);
            }
        }
    }
    found
}

/// Runs a scenario to the end: until every client has finished its cycles and nothing is left
/// in flight.
pub fn run(scenario: &Scenario, base: Instant) -> History {
    let mut world = World::new(scenario, base);
    world.run();
    world.finish()
}

#[derive(Debug, Clone)]
enum Event {
    AtNode {
        client: usize,
        node: usize,
        operation: u64,
        request: RequestId,
        command: Command,
    },
    AtClient {
        client: usize,
        node: usize,
        operation: u64,
        request: RequestId,
        command: Command,
        reply: Reply,
    },
    Wake {
        client: usize,
        generation: u64,
    },
    Resume {
        client: usize,
    },
    Fault(Fault),
}

#[derive(Debug)]
struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Debug, Clone)]
struct StoredKey {
    name: String,
    value: String,
    /// Node-local nanoseconds.
    expires_at: u64,
}

#[derive(Debug)]
struct Node {
    clock: Clock,
    up: bool,
    keys: Vec<StoredKey>,
    /// Digests loaded with `EVAL`.
    scripts: Vec<&'static str>,
}

impl Node {
    fn execute(&mut self, command: &Command, local: u64) -> Reply {
        // Redis treats a key as gone once its clock is past the expiry.
        self.keys.retain(|key| key.expires_at >= local);
        match command.kind() {
            CommandKind::SetNx => {
                let [key] = command.keys() else {
                    return Reply::Error("ERR syntax error".to_owned());
                };
                if self.exists(key) {
                    return Reply::Nil;
                }
                match command.ttl_ms() {
                    Some(ttl) => {
                        self.set(key, command.token().as_str(), local, ttl);
                        Reply::Ok
                    }
                    None => Reply::Error("ERR syntax error".to_owned()),
                }
            }
            CommandKind::EvalSha(script) => {
                if self.scripts.contains(&script.sha1) {
                    self.run_script(script.name, command, local)
                } else {
                    Reply::Error(NOSCRIPT.to_owned())
                }
            }
            CommandKind::Eval(script) => {
                if !self.scripts.contains(&script.sha1) {
                    self.scripts.push(script.sha1);
                }
                self.run_script(script.name, command, local)
            }
        }
    }

    fn exists(&self, name: &str) -> bool {
        self.keys.iter().any(|key| key.name == name)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.keys
            .iter()
            .find(|key| key.name == name)
            .map(|key| key.value.as_str())
    }

    fn set(&mut self, name: &str, value: &str, local: u64, ttl_ms: u64) {
        self.keys.retain(|key| key.name != name);
        self.keys.push(StoredKey {
            name: name.to_owned(),
            value: value.to_owned(),
            expires_at: local + ttl_ms * 1_000_000,
        });
    }

    fn run_script(&mut self, name: &str, command: &Command, local: u64) -> Reply {
        let keys = command.keys();
        let token = command.token().as_str();
        match (name, command.ttl_ms()) {
            ("acquire", Some(ttl)) => {
                if keys.iter().any(|key| self.exists(key)) {
                    return Reply::Integer(0);
                }
                for key in keys {
                    self.set(key, token, local, ttl);
                }
                Reply::Integer(1)
            }
            ("extend", Some(ttl)) => {
                if keys.iter().any(|key| self.get(key) != Some(token)) {
                    return Reply::Integer(0);
                }
                for stored in &mut self.keys {
                    if keys.contains(&stored.name) {
                        stored.expires_at = local + ttl * 1_000_000;
                    }
                }
                Reply::Integer(1)
            }
            ("release", _) => {
                let before = self.keys.len();
                self.keys
                    .retain(|stored| !(keys.contains(&stored.name) && stored.value == token));
                Reply::Integer((before - self.keys.len()) as i64)
            }
            ("clean-up", _) => {
                self.keys
                    .retain(|stored| !(keys.contains(&stored.name) && stored.value == token));
                // The longest remaining TTL, in ms, of the keys left: another owner's.
                let longest = self
                    .keys
                    .iter()
                    .filter(|stored| keys.contains(&stored.name))
                    .map(|stored| (stored.expires_at.saturating_sub(local) / 1_000_000) as i64)
                    .max();
                Reply::Integer(longest.unwrap_or(-2))
            }
            _ => Reply::Error(format!("ERR script {name} called with the wrong arguments")),
        }
    }
}

#[derive(Debug)]
enum Phase {
    Idle {
        start_at: Instant,
        cycle: Cycle,
    },
    Acquiring {
        op: Box<Acquire>,
        cycle: Cycle,
        /// The last attempt already counted as contended.
        counted_attempt: u32,
    },
    Holding {
        lease: Lease,
        release_at: Instant,
        extend: bool,
    },
    Extending {
        op: Box<Extend>,
        lease: Lease,
        release_at: Instant,
    },
    Releasing {
        op: Box<Release>,
    },
    Finished,
}

#[derive(Debug)]
struct Client {
    clock: Clock,
    cycles: VecDeque<Cycle>,
    phase: Phase,
    rng: SeededRng,
    /// Tags the messages of the current operation: request ids are unique only within one
    /// operation, so a driver must not hand an older operation's reply to a newer one.
    operation: u64,
    paused_until: u64,
    deferred: VecDeque<Event>,
    wake_at: Option<u64>,
    wake_generation: u64,
    open_hold: Option<usize>,
}

struct World<'a> {
    scenario: &'a Scenario,
    base: Instant,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    /// Last delivery time per (client, node) and direction, so each connection stays FIFO.
    channels: Vec<[u64; 2]>,
    rng: SeededRng,
    holds: Vec<Hold>,
    stats: Stats,
    fingerprint: u64,
    trace: Vec<String>,
    stuck: Option<String>,
}

const TO_NODE: usize = 0;
const TO_CLIENT: usize = 1;

impl<'a> World<'a> {
    fn new(scenario: &'a Scenario, base: Instant) -> Self {
        assert_eq!(
            scenario.node_clock_ppm.len(),
            scenario.config.nodes(),
            "one clock per configured node"
        );
        let mut rng = SeededRng::new(scenario.seed);
        let nodes = scenario
            .node_clock_ppm
            .iter()
            .map(|&ppm| Node {
                clock: Clock::new(ppm),
                up: true,
                keys: Vec::new(),
                scripts: Vec::new(),
            })
            .collect();
        let clients = scenario
            .clients
            .iter()
            .map(|plan| {
                let mut cycles: VecDeque<Cycle> = plan.cycles.iter().cloned().collect();
                let phase = match cycles.pop_front() {
                    Some(cycle) => Phase::Idle {
                        start_at: base + cycle.start_after,
                        cycle,
                    },
                    None => Phase::Finished,
                };
                Client {
                    clock: Clock::new(plan.clock_ppm),
                    cycles,
                    phase,
                    rng: SeededRng::new(rng.next_u64()),
                    operation: 0,
                    paused_until: 0,
                    deferred: VecDeque::new(),
                    wake_at: None,
                    wake_generation: 0,
                    open_hold: None,
                }
            })
            .collect();
        let mut world = Self {
            scenario,
            base,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            clients,
            channels: vec![[0; 2]; scenario.clients.len() * scenario.config.nodes()],
            rng,
            holds: Vec::new(),
            stats: Stats::default(),
            fingerprint: 0xcbf2_9ce4_8422_2325,
            trace: Vec::new(),
            stuck: None,
        };
        for (at, fault) in &scenario.faults {
            world.schedule(at.as_nanos() as u64, Event::Fault(fault.clone()));
        }
        for client in 0..world.clients.len() {
            world.reschedule_wake(client);
        }
        world
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            event,
        }));
    }

    fn mix(&mut self, value: u64) {
        self.fingerprint = (self.fingerprint ^ value).wrapping_mul(0x0100_0000_01b3);
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        if self.scenario.trace {
            let text = line();
            self.trace
                .push(format!("{:>12.3}ms  {text}", self.now as f64 / 1e6));
        }
    }

    fn run(&mut self) {
        while let Some(Reverse(next)) = self.queue.pop() {
            self.now = next.at;
            self.stats.events += 1;
            self.mix(next.at);
            if self.stats.events > MAX_EVENTS {
                self.stuck = Some(format!("more than {MAX_EVENTS} events"));
                return;
            }
            match next.event {
                Event::AtNode {
                    client,
                    node,
                    operation,
                    request,
                    command,
                } => self.at_node(client, node, operation, request, command),
                event @ Event::AtClient { client, .. } => self.deliver(client, event),
                event @ Event::Wake { client, .. } => self.deliver(client, event),
                Event::Resume { client } => self.drain(client),
                Event::Fault(fault) => self.fault(fault),
            }
            if self.stuck.is_some() {
                return;
            }
        }
        for (index, client) in self.clients.iter().enumerate() {
            if !matches!(client.phase, Phase::Finished) {
                self.stuck = Some(format!("client {index} never finished: {:?}", client.phase));
                return;
            }
        }
    }

    fn finish(self) -> History {
        History {
            holds: self.holds,
            stats: self.stats,
            fingerprint: self.fingerprint,
            trace: self.trace,
            stuck: self.stuck,
        }
    }

    fn fault(&mut self, fault: Fault) {
        self.log(|| format!("fault {fault:?}"));
        match fault {
            Fault::Down(node) => {
                self.mix(1);
                self.nodes[node].up = false;
            }
            Fault::Up(node) => {
                self.mix(2);
                self.nodes[node].up = true;
            }
            Fault::Crash(node) => {
                self.mix(3);
                let node = &mut self.nodes[node];
                node.up = false;
                node.keys.clear();
                node.scripts.clear();
            }
            Fault::FlushScripts(node) => {
                self.mix(4);
                self.nodes[node].scripts.clear();
            }
            Fault::Pause { client, length } => {
                self.mix(5);
                let until = self.now + length.as_nanos() as u64;
                let paused = &mut self.clients[client].paused_until;
                *paused = (*paused).max(until);
                self.schedule(until, Event::Resume { client });
            }
        }
    }

    /// Sends one message over the (client, node) connection in `direction`, or loses it.
    fn carry(&mut self, client: usize, node: usize, direction: usize) -> Carried {
        let network = self.scenario.network;
        if self.rng.chance(network.loss_per_million) {
            self.stats.lost_messages += 1;
            if self.rng.chance(500_000) {
                return Carried::Lost;
            }
            let latency = self.rng.duration(network.latency.0, network.latency.1);
            return Carried::Reset(self.arrival(client, node, TO_CLIENT, latency));
        }
        let latency = if self.rng.chance(network.slow_per_million) {
            self.rng
                .duration(network.slow_latency.0, network.slow_latency.1)
        } else {
            self.rng.duration(network.latency.0, network.latency.1)
        };
        Carried::At(self.arrival(client, node, direction, latency))
    }

    /// When a message sent now arrives: never before an earlier message on the same connection.
    fn arrival(&mut self, client: usize, node: usize, direction: usize, latency: Duration) -> u64 {
        let channel = &mut self.channels[client * self.nodes.len() + node][direction];
        let at = (self.now + latency.as_nanos() as u64).max(*channel);
        *channel = at;
        at
    }

    fn send(&mut self, client: usize, transmit: Transmit) {
        let Transmit {
            node,
            request,
            command,
            ..
        } = transmit;
        let node = node.index();
        let operation = self.clients[client].operation;
        self.mix(node as u64);
        self.log(|| format!("c{client} -> n{node} {request} {command}"));
        match self.carry(client, node, TO_NODE) {
            Carried::At(at) => self.schedule(
                at,
                Event::AtNode {
                    client,
                    node,
                    operation,
                    request,
                    command,
                },
            ),
            Carried::Reset(at) => {
                let reply = Reply::Io("connection reset by peer".to_owned());
                self.schedule(
                    at,
                    Event::AtClient {
                        client,
                        node,
                        operation,
                        request,
                        command,
                        reply,
                    },
                )
            }
            Carried::Lost => {}
        }
    }

    fn at_node(
        &mut self,
        client: usize,
        node: usize,
        operation: u64,
        request: RequestId,
        command: Command,
    ) {
        let state = &mut self.nodes[node];
        let reply = if state.up {
            let local = state.clock.local(self.now);
            state.execute(&command, local)
        } else {
            self.stats.refused_connections += 1;
            Reply::Io("connection refused".to_owned())
        };
        self.log(|| {
            format!(
                "n{node} <- c{client} {request} {command} => {}",
                show_reply(&reply)
            )
        });
        let reply = match self.carry(client, node, TO_CLIENT) {
            Carried::At(at) => Some((at, reply)),
            Carried::Reset(at) => Some((at, Reply::Io("connection reset by peer".to_owned()))),
            Carried::Lost => None,
        };
        if let Some((at, reply)) = reply {
            self.schedule(
                at,
                Event::AtClient {
                    client,
                    node,
                    operation,
                    request,
                    command,
                    reply,
                },
            );
        }
    }

    /// Hands an event to a client, or keeps it until the client's pause is over. Kept events
    /// are handled first and in order, as a paused process finds its socket buffers.
    fn deliver(&mut self, client: usize, event: Event) {
        self.clients[client].deferred.push_back(event);
        if self.now >= self.clients[client].paused_until {
            self.drain(client);
        }
    }

    fn drain(&mut self, client: usize) {
        if self.now < self.clients[client].paused_until {
            return;
        }
        while let Some(event) = self.clients[client].deferred.pop_front() {
            self.at_client(client, event);
            if self.stuck.is_some() {
                return;
            }
        }
    }

    fn local_now(&self, client: usize) -> Instant {
        let local = self.clients[client].clock.local(self.now);
        self.base + Duration::from_nanos(local)
    }

    fn at_client(&mut self, client: usize, event: Event) {
        let now = self.local_now(client);
        match event {
            Event::AtClient {
                node,
                operation,
                request,
                command,
                reply,
                ..
            } => {
                self.mix(100 + node as u64);
                if matches!(&reply, Reply::Error(message) if message.starts_with("NOSCRIPT")) {
                    self.stats.noscript_replies += 1;
                }
                let state = &mut self.clients[client];
                if operation != state.operation {
                    self.stats.unawaited_replies += 1;
                    return;
                }
                let node = NodeId::new(node);
                let shown = self.scenario.trace.then(|| reply.clone());
                let is_refusal = matches!(reply, Reply::Nil)
                    || (matches!(reply, Reply::Integer(0))
                        && command.script().is_some_and(|s| s.name == "acquire"));
                let awaited = match &mut state.phase {
                    Phase::Acquiring {
                        op,
                        counted_attempt,
                        ..
                    } => {
                        let awaited = op.is_awaiting(node, request);
                        if awaited && is_refusal && *counted_attempt != op.attempts() {
                            *counted_attempt = op.attempts();
                            self.stats.contended_attempts += 1;
                        }
                        op.handle_reply(node, request, reply, now);
                        awaited
                    }
                    Phase::Extending { op, .. } => {
                        let awaited = op.is_awaiting(node, request);
                        op.handle_reply(node, request, reply, now);
                        awaited
                    }
                    Phase::Releasing { op } => {
                        let awaited = op.is_awaiting(node, request);
                        op.handle_reply(node, request, reply, now);
                        awaited
                    }
                    Phase::Idle { .. } | Phase::Holding { .. } | Phase::Finished => false,
                };
                if !awaited {
                    self.stats.unawaited_replies += 1;
                }
                self.log(|| {
                    format!(
                        "c{client} <- n{} {request} {}{}",
                        node.index(),
                        shown.as_ref().map(show_reply).unwrap_or_default(),
                        if awaited { "" } else { "  (not awaited)" }
                    )
                });
            }
            Event::Wake { generation, .. } => {
                let state = &mut self.clients[client];
                if generation != state.wake_generation {
                    return;
                }
                state.wake_at = None;
            }
            Event::AtNode { .. } | Event::Resume { .. } | Event::Fault(_) => {
                unreachable!("only client events are delivered to clients")
            }
        }
        self.pump(client, now);
    }

    /// Lets the client act until it has to wait for something.
    fn pump(&mut self, client: usize, now: Instant) {
        let mut steps = 0;
        while self.step(client, now) {
            steps += 1;
            if steps > MAX_STEPS_PER_WAKE {
                self.stuck = Some(format!(
                    "client {client} kept working without waiting: {:?}",
                    self.clients[client].phase
                ));
                return;
            }
        }
        self.reschedule_wake(client);
    }

    fn reschedule_wake(&mut self, client: usize) {
        let state = &self.clients[client];
        let next = match &state.phase {
            Phase::Idle { start_at, .. } => Some(*start_at),
            Phase::Acquiring { op, .. } => op.poll_timeout(),
            Phase::Holding {
                lease,
                release_at,
                extend,
            } => Some(if *extend {
                (*release_at).min(lease.renew_at())
            } else {
                *release_at
            }),
            Phase::Extending { op, .. } => op.poll_timeout(),
            Phase::Releasing { op } => op.poll_timeout(),
            Phase::Finished => None,
        };
        let at = next.map(|local| {
            let local = local.saturating_duration_since(self.base).as_nanos() as u64;
            state.clock.true_of(local).max(self.now)
        });
        if at == state.wake_at {
            return;
        }
        let state = &mut self.clients[client];
        state.wake_generation += 1;
        state.wake_at = at;
        let generation = state.wake_generation;
        if let Some(at) = at {
            self.schedule(at, Event::Wake { client, generation });
        }
    }

    /// One step of a client's life. Returns whether anything happened.
    fn step(&mut self, client: usize, now: Instant) -> bool {
        let phase = std::mem::replace(&mut self.clients[client].phase, Phase::Finished);
        let (phase, progressed) = match phase {
            Phase::Idle { start_at, cycle } if now >= start_at => {
                (self.start_acquire(client, cycle, now), true)
            }
            Phase::Acquiring {
                mut op,
                cycle,
                counted_attempt,
            } => {
                let progressed = if let Some(transmit) = op.poll_transmit() {
                    self.send(client, transmit);
                    true
                } else if let Some(outcome) = op.poll_outcome() {
                    self.stats.attempts += u64::from(op.attempts());
                    let phase = self.acquired(client, cycle, outcome, now);
                    self.clients[client].phase = phase;
                    return true;
                } else if op.poll_timeout().is_some_and(|due| due <= now) {
                    op.handle_timeout(now);
                    true
                } else {
                    false
                };
                (
                    Phase::Acquiring {
                        op,
                        cycle,
                        counted_attempt,
                    },
                    progressed,
                )
            }
            Phase::Holding {
                lease,
                release_at,
                extend,
            } => {
                if now >= release_at {
                    (self.start_release(client, &lease, now), true)
                } else if extend && now >= lease.renew_at() {
                    let seed = self.clients[client].rng.next_u64();
                    self.clients[client].operation += 1;
                    let op = Extend::new(&self.scenario.config, &lease, seed, now);
                    self.log(|| format!("c{client} extends"));
                    (
                        Phase::Extending {
                            op: Box::new(op),
                            lease,
                            release_at,
                        },
                        true,
                    )
                } else {
                    (
                        Phase::Holding {
                            lease,
                            release_at,
                            extend,
                        },
                        false,
                    )
                }
            }
            Phase::Extending {
                mut op,
                lease,
                release_at,
            } => {
                if let Some(transmit) = op.poll_transmit() {
                    self.send(client, transmit);
                    (
                        Phase::Extending {
                            op,
                            lease,
                            release_at,
                        },
                        true,
                    )
                } else if let Some(outcome) = op.poll_outcome() {
                    (self.extended(client, lease, release_at, outcome, now), true)
                } else if op.poll_timeout().is_some_and(|due| due <= now) {
                    op.handle_timeout(now);
                    (
                        Phase::Extending {
                            op,
                            lease,
                            release_at,
                        },
                        true,
                    )
                } else {
                    (
                        Phase::Extending {
                            op,
                            lease,
                            release_at,
                        },
                        false,
                    )
                }
            }
            Phase::Releasing { mut op } => {
                if let Some(transmit) = op.poll_transmit() {
                    self.send(client, transmit);
                    (Phase::Releasing { op }, true)
                } else if let Some(released) = op.poll_outcome() {
                    self.log(|| format!("c{client} released: {}", released.report));
                    (self.next_cycle(client, now), true)
                } else if op.poll_timeout().is_some_and(|due| due <= now) {
                    op.handle_timeout(now);
                    (Phase::Releasing { op }, true)
                } else {
                    (Phase::Releasing { op }, false)
                }
            }
            other => (other, false),
        };
        self.clients[client].phase = phase;
        progressed
    }

    fn start_acquire(&mut self, client: usize, cycle: Cycle, now: Instant) -> Phase {
        let state = &mut self.clients[client];
        state.operation += 1;
        let bits = (u128::from(state.rng.next_u64()) << 64) | u128::from(state.rng.next_u64());
        let seed = state.rng.next_u64();
        let token = Token::from_random_bits(bits);
        self.stats.acquires += 1;
        self.log(|| format!("c{client} acquires {:?} as {token}", cycle.resources));
        let op = Acquire::new(
            &self.scenario.config,
            cycle.resources.iter().cloned(),
            token,
            seed,
            now,
        )
        .expect("scenario resources are valid");
        Phase::Acquiring {
            op: Box::new(op),
            cycle,
            counted_attempt: 0,
        }
    }

    fn true_of(&self, client: usize, local: Instant) -> u64 {
        let local = local.saturating_duration_since(self.base).as_nanos() as u64;
        self.clients[client].clock.true_of(local)
    }

    fn acquired(
        &mut self,
        client: usize,
        cycle: Cycle,
        outcome: Result<Lease, AcquireError>,
        now: Instant,
    ) -> Phase {
        match outcome {
            Ok(lease) => {
                self.stats.acquired += 1;
                self.mix(200);
                let until = self.true_of(client, lease.valid_until());
                self.log(|| {
                    format!(
                        "c{client} holds {:?} until {:.3}ms",
                        lease.resources(),
                        until as f64 / 1e6
                    )
                });
                self.clients[client].open_hold = Some(self.holds.len());
                self.holds.push(Hold {
                    client,
                    resources: lease.resources().to_vec(),
                    token: lease.token().clone(),
                    from: self.now,
                    until,
                    extensions: 0,
                });
                Phase::Holding {
                    lease,
                    release_at: now + cycle.hold,
                    extend: cycle.extend,
                }
            }
            Err(error) => {
                self.mix(201);
                self.log(|| format!("c{client} gave up: {error}"));
                self.next_cycle(client, now)
            }
        }
    }

    fn extended(
        &mut self,
        client: usize,
        lease: Lease,
        release_at: Instant,
        outcome: Result<Lease, quorumlock::proto::ExtendError>,
        now: Instant,
    ) -> Phase {
        match outcome {
            Ok(extended) => {
                self.stats.extensions += 1;
                self.mix(300);
                let until = self.true_of(client, extended.valid_until());
                if let Some(index) = self.clients[client].open_hold {
                    let hold = &mut self.holds[index];
                    hold.until = until;
                    hold.extensions = extended.extensions();
                }
                self.log(|| format!("c{client} extended until {:.3}ms", until as f64 / 1e6));
                Phase::Holding {
                    lease: extended,
                    release_at,
                    extend: true,
                }
            }
            Err(error) => {
                self.stats.extend_failures += 1;
                self.mix(301);
                self.log(|| format!("c{client} could not extend: {error}"));
                self.start_release(client, &lease, now)
            }
        }
    }

    fn start_release(&mut self, client: usize, lease: &Lease, now: Instant) -> Phase {
        if let Some(index) = self.clients[client].open_hold.take() {
            let hold = &mut self.holds[index];
            hold.until = hold.until.min(self.now);
        }
        self.stats.releases += 1;
        self.clients[client].operation += 1;
        self.log(|| format!("c{client} releases"));
        Phase::Releasing {
            op: Box::new(Release::for_lease(&self.scenario.config, lease, now)),
        }
    }

    fn next_cycle(&mut self, client: usize, now: Instant) -> Phase {
        let state = &mut self.clients[client];
        // Nothing of the finished operation is awaited any more.
        state.operation += 1;
        match state.cycles.pop_front() {
            Some(cycle) => Phase::Idle {
                start_at: now + cycle.start_after,
                cycle,
            },
            None => Phase::Finished,
        }
    }
}

enum Carried {
    At(u64),
    /// Lost, and the client learns of it as a reset connection at this time.
    Reset(u64),
    Lost,
}
