//! The drive loop shared by every operation: send what the core asks, hand it replies and
//! timeouts, until it has an outcome.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use futures_util::FutureExt;
use redis::Cmd;
use tokio::sync::futures::OwnedNotified;

use crate::proto::{Command, Instant, NodeId, Operation, Reply, RequestId};

use super::clock;
use super::node::{self, Node, NodeSet};
use super::release_signals::{ReleaseSignals, Subscription};

type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send + 'static>>;

struct InFlight {
    node: NodeId,
    request: RequestId,
    deadline: Instant,
    reply: ReplyFuture,
}

enum Event {
    Reply(usize, Reply),
    Timer,
    Released,
}

/// Runs `op` to its outcome against `nodes`.
///
/// Requests the core timed out are dropped at once, so a stalled node never accumulates work
/// here. Requests the core stopped waiting for because the round was decided without them are
/// left to finish in the background until their own deadline (see [`let_go`]).
pub(crate) async fn drive<O>(nodes: &Arc<NodeSet>, op: O) -> O::Output
where
    O: Operation + Send + 'static,
{
    drive_with_wakeups(nodes, op, None).await.0
}

/// Like [`drive`], and while the operation pauses between attempts it also listens for
/// in-process releases of `resources` (see [`ReleaseSignals`]), handing them to the operation as
/// [`Operation::handle_wakeup`]. The subscription is taken only once the operation first pauses,
/// so an uncontended acquire never touches the registry. It comes back with the outcome: an
/// acquire that waited notes its lock as the resources' holder before dropping it (see
/// [`ReleaseSignals::held`]).
pub(crate) async fn drive_with_wakeups<O>(
    set: &Arc<NodeSet>,
    op: O,
    wakeups: Option<(&Arc<ReleaseSignals>, Arc<[String]>)>,
) -> (O::Output, Option<Subscription>)
where
    O: Operation + Send + 'static,
{
    let nodes = &set.nodes;
    let mut driving = Driving {
        set,
        op: None,
        in_flight: Vec::with_capacity(nodes.len()),
    };
    let op = driving.op.insert(op);
    let in_flight = &mut driving.in_flight;
    // Pinned in place rather than boxed: most operations never get to wait on it, and a box
    // would cost every one of them an allocation.
    let mut timer = std::pin::pin!(None::<tokio::time::Sleep>);
    let mut subscription: Option<Subscription> = None;
    let epoch_at_start = wakeups.as_ref().map_or(0, |(signals, _)| signals.epoch());
    let mut released: Vec<Pin<Box<OwnedNotified>>> = Vec::new();
    loop {
        // A resource held by another task of this client is not worth asking the nodes for:
        // its release wakes this one directly. Only an attempt not yet sent can be skipped, and
        // one can only be waiting to go out when nothing is in flight, so mid-round the
        // registry is not consulted at all.
        if let (Some((signals, resources)), true) = (&wakeups, in_flight.is_empty()) {
            if let Some((now, until)) = signals.held_until(resources, clock::now) {
                op.handle_known_held(now, until);
            }
        }
        send_all(nodes, op, in_flight);
        if let Some(outcome) = op.poll_outcome() {
            let has_tail = op.poll_timeout().is_some();
            let in_flight = std::mem::take(in_flight);
            if has_tail {
                if let Some(op) = driving.op.take() {
                    finish_in_background(set, op, in_flight);
                }
            } else {
                driving.op = None;
                let now = clock::now();
                for request in in_flight {
                    let_go(set, request, now);
                }
            }
            return (outcome, subscription);
        }
        prune(set, op, in_flight);

        // Check the clock before arming the timer: a deadline that already passed is handled
        // now rather than after a trip through the timer wheel.
        let deadline = op.poll_timeout();
        if let Some(deadline) = deadline {
            let now = clock::now();
            if deadline <= now {
                op.handle_timeout(now);
                continue;
            }
            let deadline = tokio::time::Instant::from_std(deadline);
            match timer.as_mut().as_pin_mut() {
                Some(sleep) => sleep.reset(deadline),
                None => timer.set(Some(tokio::time::sleep_until(deadline))),
            }
        }
        let armed = deadline.is_some();

        // Nothing in flight and no outcome: the operation pauses between attempts. Only then is
        // a release worth hearing about; mid-round, a wake-up would be wasted on this task.
        let pausing = in_flight.is_empty();
        if pausing && released.is_empty() {
            if let Some((signals, resources)) = &wakeups {
                let first_pause = subscription.is_none();
                let subscription =
                    subscription.get_or_insert_with(|| signals.subscribe(resources, clock::now()));
                // A release between the start and this first pause found nobody listening:
                // try again now rather than sleep out the delay on a lock that may be free.
                if first_pause
                    && signals.epoch() != epoch_at_start
                    && op.handle_wakeup(clock::now())
                {
                    continue;
                }
                released.extend(
                    subscription
                        .notifies()
                        .iter()
                        .map(|notify| Box::pin(notify.clone().notified_owned())),
                );
            }
        }

        let event = poll_fn(|cx| {
            for (index, request) in in_flight.iter_mut().enumerate() {
                if let Poll::Ready(reply) = request.reply.as_mut().poll(cx) {
                    return Poll::Ready(Event::Reply(index, reply));
                }
            }
            if pausing {
                for notified in &mut released {
                    if notified.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Event::Released);
                    }
                }
            }
            match timer.as_mut().as_pin_mut() {
                Some(sleep) if armed => sleep.poll(cx).map(|()| Event::Timer),
                _ => Poll::Pending,
            }
        })
        .await;

        match event {
            Event::Reply(index, reply) => {
                let done = in_flight.swap_remove(index);
                op.handle_reply(done.node, done.request, reply, clock::now());
            }
            Event::Timer => op.handle_timeout(clock::now()),
            Event::Released => {
                // The fired future is spent; fresh ones are armed at the next pause.
                released.clear();
                if !op.handle_wakeup(clock::now()) {
                    if let Some(subscription) = &subscription {
                        subscription.pass_on();
                    }
                }
            }
        }
    }
}

/// An operation being driven, and its requests in flight. If the caller drops the drive before
/// the outcome (a timeout around `lock()`, a `select!`, a client that went away), the drop hands
/// them to the background after telling the operation ([`Operation::handle_cancel`]): a
/// cancelled acquire still releases whatever its attempt may have set, on every node, and a
/// cancelled release still deletes everywhere, instead of leaving keys to their TTL.
struct Driving<'a, O: Operation + Send + 'static> {
    set: &'a Arc<NodeSet>,
    /// `None` once the outcome was handed over.
    op: Option<O>,
    in_flight: Vec<InFlight>,
}

impl<O: Operation + Send + 'static> Drop for Driving<'_, O> {
    fn drop(&mut self) {
        if let Some(mut op) = self.op.take() {
            op.handle_cancel(clock::now());
            finish_in_background(self.set, op, std::mem::take(&mut self.in_flight));
        }
    }
}

/// Lets an operation finish its remaining requests without holding up the caller: one that
/// has given its outcome (a release's slower nodes, see [`Release`](crate::proto::Release)),
/// or one whose caller went away (see [`Driving`]).
///
/// Replies that are already in are handed over at once; on loopback the last node often
/// answers with the others, and then no task is needed.
fn finish_in_background<O>(set: &Arc<NodeSet>, mut op: O, mut in_flight: Vec<InFlight>)
where
    O: Operation + Send + 'static,
{
    let mut index = 0;
    while index < in_flight.len() {
        match (&mut in_flight[index].reply).now_or_never() {
            Some(reply) => {
                let done = in_flight.swap_remove(index);
                op.handle_reply(done.node, done.request, reply, clock::now());
            }
            None => index += 1,
        }
    }
    // A reply just handled may ask for a resend (`NOSCRIPT`).
    send_all(&set.nodes, &mut op, &mut in_flight);
    if in_flight.is_empty() && op.poll_timeout().is_none() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        let now = clock::now();
        for request in in_flight {
            let_go(set, request, now);
        }
        return;
    };
    let tail_set = Arc::clone(set);
    set.background.adopt(
        &runtime,
        Box::pin(async move { drive_tail(&tail_set, op, in_flight).await }),
    );
}

/// Drives an operation past its outcome until it has nothing left in flight. It runs adopted
/// by the client's background collector, which drops it if the client abandons background
/// work (see [`Background`](super::background::Background)).
async fn drive_tail<O: Operation>(set: &Arc<NodeSet>, mut op: O, mut in_flight: Vec<InFlight>) {
    loop {
        send_all(&set.nodes, &mut op, &mut in_flight);
        prune(set, &op, &mut in_flight);
        if in_flight.is_empty() {
            return;
        }
        let (index, reply) = poll_fn(|cx| {
            for (index, request) in in_flight.iter_mut().enumerate() {
                if let Poll::Ready(reply) = request.reply.as_mut().poll(cx) {
                    return Poll::Ready((index, reply));
                }
            }
            Poll::Pending
        })
        .await;
        let done = in_flight.swap_remove(index);
        op.handle_reply(done.node, done.request, reply, clock::now());
    }
}

/// Sends every request the operation asks for. A round sends the same command to every node,
/// so it is turned into its redis-rs form once and shared.
fn send_all<O: Operation>(nodes: &[Node], op: &mut O, in_flight: &mut Vec<InFlight>) {
    let mut built: Option<(Command, Arc<Cmd>)> = None;
    while let Some(transmit) = op.poll_transmit() {
        let Some(node) = nodes.get(transmit.node.index()) else {
            // The core only addresses configured nodes; treat anything else as a dead node.
            op.handle_reply(
                transmit.node,
                transmit.request,
                Reply::Io("no such node".into()),
                clock::now(),
            );
            continue;
        };
        in_flight.push(InFlight {
            node: transmit.node,
            request: transmit.request,
            deadline: transmit.deadline,
            reply: Box::pin(node.send(shared_cmd(&mut built, transmit.command))),
        });
    }
}

/// The redis-rs form of `command`, reusing the last one built when it is the same command.
fn shared_cmd(built: &mut Option<(Command, Arc<Cmd>)>, command: Command) -> Arc<Cmd> {
    match built {
        Some((last, cmd)) if *last == command => Arc::clone(cmd),
        _ => {
            let cmd = Arc::new(node::to_redis_cmd(&command));
            *built = Some((command, Arc::clone(&cmd)));
            cmd
        }
    }
}

/// Lets go of the requests whose replies the operation no longer awaits.
fn prune<O: Operation>(set: &Arc<NodeSet>, op: &O, in_flight: &mut Vec<InFlight>) {
    let mut index = 0;
    while index < in_flight.len() {
        if op.is_awaiting(in_flight[index].node, in_flight[index].request) {
            index += 1;
        } else {
            let request = in_flight.swap_remove(index);
            let_go(set, request, clock::now());
        }
    }
}

/// Deals with a request whose reply the core no longer needs.
///
/// One past its deadline is dropped, and the node hears of the timeout (enough of them in a row
/// and it replaces a connection that may be half-open). One still within its deadline — the
/// round was decided by a faster quorum — must still reach its node, or the lock would be held
/// on a bare quorum that the loss of one more node breaks: it runs on in the background until
/// the node answers, or the client abandons background work (see
/// [`Background`](super::background::Background)). A late SET that lands after a failed
/// attempt's clean-up release is the same risk as one already on the wire; the key expires
/// with its TTL.
fn let_go(set: &Arc<NodeSet>, mut request: InFlight, now: Instant) {
    let Some(node) = set.nodes.get(request.node.index()) else {
        return;
    };
    if request.deadline <= now {
        node.note_timeout();
        return;
    }
    // Dropped, a request whose reply is not in yet might never reach its node: redis-rs skips
    // a request whose caller has gone while it still waits in the connection's queue, and one
    // waiting for its connection (a node still connecting, or one that restarted while idle and
    // needs its one retry on a fresh connection) would be lost. Either leaves the lock on fewer
    // nodes. So the client's background collector runs it on until its reply, or until the
    // client abandons background work.
    if (&mut request.reply).now_or_never().is_some() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    set.background
        .adopt(&runtime, Box::pin(request.reply.map(|_: Reply| ())));
}
