//! The drive loop shared by every operation: send what the core asks, hand it replies and
//! timeouts, until it has an outcome.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use crate::proto::{NodeId, Operation, Reply, RequestId};

use super::clock;
use super::node::Node;

type ReplyFuture<'a> = Pin<Box<dyn Future<Output = Reply> + Send + 'a>>;

struct InFlight<'a> {
    node: NodeId,
    request: RequestId,
    reply: ReplyFuture<'a>,
}

enum Event {
    Reply(usize, Reply),
    Timer,
}

/// Runs `op` to its outcome against `nodes`.
///
/// Requests whose reply the core no longer needs (timed out, or the round was decided without
/// them) are dropped at once, so a stalled node never accumulates work here.
pub(crate) async fn drive<O: Operation>(nodes: &[Node], mut op: O) -> O::Output {
    let mut in_flight: Vec<InFlight<'_>> = Vec::with_capacity(nodes.len());
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
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
                reply: Box::pin(node.send(transmit.command)),
            });
        }
        if let Some(outcome) = op.poll_outcome() {
            return outcome;
        }
        in_flight.retain(|f| op.is_awaiting(f.node, f.request));

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
            match &mut timer {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let armed = deadline.is_some();

        let event = poll_fn(|cx| {
            for (index, request) in in_flight.iter_mut().enumerate() {
                if let Poll::Ready(reply) = request.reply.as_mut().poll(cx) {
                    return Poll::Ready(Event::Reply(index, reply));
                }
            }
            match &mut timer {
                Some(sleep) if armed => sleep.as_mut().poll(cx).map(|()| Event::Timer),
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
        }
    }
}
