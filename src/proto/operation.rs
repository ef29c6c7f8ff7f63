//! The one interface every protocol machine offers its driver.

use super::command::{NodeId, Reply, RequestId, Transmit};
use super::time::Instant;

/// A protocol operation as a state machine: the driver feeds it replies and timeouts and carries
/// out what it asks for, until it yields an outcome.
///
/// Driving contract (the same for every operation):
/// 1. send every [`poll_transmit`](Operation::poll_transmit) until it returns `None`;
/// 2. if [`poll_outcome`](Operation::poll_outcome) returns `Some`, hand it to the caller. If
///    [`poll_timeout`](Operation::poll_timeout) is then `None`, the operation is over and nothing
///    it sent earlier needs an answer any more. If it is `Some`, the operation still has requests
///    it wants answered (a release's slower nodes): keep driving it, off the caller's path,
///    until it is `None`; stopping instead only gives up that tail;
/// 3. wait for the first of a reply (→ [`handle_reply`](Operation::handle_reply)) or the instant
///    from [`poll_timeout`](Operation::poll_timeout) (→ [`handle_timeout`](Operation::handle_timeout)),
///    passing the current time; then go back to 1.
pub trait Operation {
    /// What the operation produces.
    type Output;

    /// The next request to send, if any.
    #[must_use]
    fn poll_transmit(&mut self) -> Option<Transmit>;

    /// When to call [`handle_timeout`](Operation::handle_timeout) if nothing else happens first.
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant>;

    /// The result, once, when the operation is over.
    #[must_use]
    fn poll_outcome(&mut self) -> Option<Self::Output>;

    /// A reply (or transport failure) for an earlier [`Transmit`].
    fn handle_reply(&mut self, node: NodeId, request: RequestId, reply: Reply, now: Instant);

    /// The instant from [`poll_timeout`](Operation::poll_timeout) has come (or passed).
    fn handle_timeout(&mut self, now: Instant);

    /// Whether a reply to `request` would still be used; when it is not, the driver may drop the
    /// request.
    #[must_use]
    fn is_awaiting(&self, node: NodeId, request: RequestId) -> bool;

    /// A hint from outside the protocol that what the operation waits for may have changed —
    /// typically that a holder released the lock an acquire is waiting on. An operation pausing
    /// between attempts starts the next one at once. Returns whether the hint was used; one
    /// that arrives mid-round is not, and the driver may pass it on to another waiter.
    fn handle_wakeup(&mut self, now: Instant) -> bool {
        let _ = now;
        false
    }

    /// A fact from outside the protocol: what the operation is after is held by a holder the
    /// driver knows of (one of its own) until `held_until`, and its release will be signalled
    /// through [`handle_wakeup`](Operation::handle_wakeup). An acquire that is about to start
    /// an attempt counts that attempt as contended without sending anything, and pauses as
    /// after any contended attempt: asking the nodes could only be refused. Returns whether the
    /// fact was used.
    fn handle_known_held(&mut self, now: Instant, held_until: Instant) -> bool {
        let _ = (now, held_until);
        false
    }

    /// The caller no longer wants the outcome (its future was dropped). The operation turns
    /// whatever it started into work that leaves nothing behind: an acquire gives up its
    /// attempts and releases on every node whatever it may have set, a release or an extension
    /// just finishes the requests it sent. Afterwards, drive it as a tail (contract step 2)
    /// until [`poll_timeout`](Operation::poll_timeout) is `None`; an outcome it still gives
    /// means nothing.
    fn handle_cancel(&mut self, now: Instant) {
        let _ = now;
    }
}

/// A boxed machine drives like the machine itself, so drivers can keep large machines out of
/// their futures.
impl<O: Operation + ?Sized> Operation for Box<O> {
    type Output = O::Output;

    fn poll_transmit(&mut self) -> Option<Transmit> {
        (**self).poll_transmit()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }

    fn poll_outcome(&mut self) -> Option<Self::Output> {
        (**self).poll_outcome()
    }

    fn handle_reply(&mut self, node: NodeId, request: RequestId, reply: Reply, now: Instant) {
        (**self).handle_reply(node, request, reply, now)
    }

    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now)
    }

    fn is_awaiting(&self, node: NodeId, request: RequestId) -> bool {
        (**self).is_awaiting(node, request)
    }

    fn handle_wakeup(&mut self, now: Instant) -> bool {
        (**self).handle_wakeup(now)
    }

    fn handle_known_held(&mut self, now: Instant, held_until: Instant) -> bool {
        (**self).handle_known_held(now, held_until)
    }

    fn handle_cancel(&mut self, now: Instant) {
        (**self).handle_cancel(now)
    }
}
