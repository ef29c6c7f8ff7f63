//! The drive loop over JavaScript promises: send what the core asks, hand it replies and
//! timeouts, until it has an outcome or the caller cancels.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use js_sys::futures::JsFuture;
use js_sys::Array;
use quorumlock::proto::{NodeId, Operation, RequestId};
use wasm_bindgen::JsValue;

use crate::host::{self, Transport};
use crate::reply;
use crate::timer::Sleep;

struct InFlight {
    node: NodeId,
    request: RequestId,
    reply: JsFuture,
}

enum Event {
    Reply(usize, Result<JsValue, JsValue>),
    Timer,
    Cancelled,
}

/// How a drive ended.
pub(crate) enum Driven<T> {
    /// The operation produced its outcome.
    Done(T),
    /// The cancel promise settled first. The operation may have requests in flight that can
    /// still take effect on the nodes.
    Cancelled,
}

/// Runs `op` until it has an outcome, or until `cancel` settles (resolved or rejected).
///
/// Replies the core no longer awaits are dropped, together with their timers; the executor's
/// promise may settle later and is then ignored.
pub(crate) async fn drive<O: Operation>(
    transport: &Transport,
    op: &mut O,
    mut cancel: Option<JsFuture>,
) -> Driven<O::Output> {
    let mut in_flight: Vec<InFlight> = Vec::new();
    let mut timer: Option<Sleep> = None;
    loop {
        while let Some(transmit) = op.poll_transmit() {
            let args = Array::new();
            for arg in transmit.command.to_strings() {
                args.push(&JsValue::from_str(&arg));
            }
            let node = u32::try_from(transmit.node.index()).unwrap_or(u32::MAX);
            match transport.send(node, args) {
                Ok(promise) => in_flight.push(InFlight {
                    node: transmit.node,
                    request: transmit.request,
                    reply: JsFuture::from(promise),
                }),
                Err(thrown) => op.handle_reply(
                    transmit.node,
                    transmit.request,
                    reply::from_rejected(&thrown),
                    host::now(),
                ),
            }
        }
        if let Some(outcome) = op.poll_outcome() {
            return Driven::Done(outcome);
        }
        in_flight.retain(|f| op.is_awaiting(f.node, f.request));

        // Check the clock before arming a timer: a deadline that already passed is handled now.
        match op.poll_timeout() {
            Some(deadline) => {
                let now = host::now();
                if deadline <= now {
                    op.handle_timeout(now);
                    continue;
                }
                if timer.as_ref().map(Sleep::deadline) != Some(deadline) {
                    timer = Some(Sleep::until(deadline));
                }
            }
            None => timer = None,
        }

        let event = poll_fn(|cx| {
            if let Some(cancel) = cancel.as_mut() {
                if Pin::new(cancel).poll(cx).is_ready() {
                    return Poll::Ready(Event::Cancelled);
                }
            }
            for (index, request) in in_flight.iter_mut().enumerate() {
                if let Poll::Ready(settled) = Pin::new(&mut request.reply).poll(cx) {
                    return Poll::Ready(Event::Reply(index, settled));
                }
            }
            match timer.as_mut() {
                Some(sleep) => Pin::new(sleep).poll(cx).map(|()| Event::Timer),
                None => Poll::Pending,
            }
        })
        .await;

        match event {
            Event::Reply(index, settled) => {
                let done = in_flight.swap_remove(index);
                let reply = match settled {
                    Ok(value) => reply::from_resolved(&value),
                    Err(error) => reply::from_rejected(&error),
                };
                op.handle_reply(done.node, done.request, reply, host::now());
            }
            Event::Timer => {
                timer = None;
                op.handle_timeout(host::now());
            }
            Event::Cancelled => return Driven::Cancelled,
        }
    }
}
