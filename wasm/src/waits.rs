//! In-process wake-ups between the operations of one engine.
//!
//! An acquire that waits for a resource held by another lock of the same engine need not sleep
//! out its jittered retry delay: the release of that lock (or an extension finding it lost, or
//! an aborted acquire's clean-up) wakes it through [`Operation::handle_wakeup`], and while the
//! lock is valid the waiter need not ask the nodes at all ([`Operation::handle_known_held`]).
//!
//! An acquire becomes a waiter only when it first pauses between attempts, so an uncontended
//! acquire never registers, and while nobody waits every hook the engine calls here is one
//! check of an empty map. A lock taken by an acquire that had waited stays known as the
//! resource's holder after its last waiter left: contenders that were mid-attempt then, and
//! the holder's own next request, pause for its release instead of asking the nodes.
//!
//! A release wakes one waiter per resource, the first in arrival order that can use the hint;
//! the others sleep on. The one woken carries the hand-off: if it gets the lock, its own release
//! wakes the next; if its attempt fails, it passes the wake-up on to the waiters after it. Waking
//! every waiter instead would send them all to the nodes at once, where at most one can win, and
//! where their split votes can leave none of them with a quorum and all of them sleeping out
//! their delay.
//!
//! Releases by other processes arrive the same way when JavaScript has subscribers: a resource
//! gaining its first waiter or losing its last is reported (see [`Waits::register`]), and a
//! release heard on the resource's channel from a quorum of nodes wakes a waiter like a release
//! here does ([`Waits::released_elsewhere`]). Each node publishes a release it runs, and a
//! release here is heard back from the nodes too: every release wakes once, by its token.
//!
//! [`Operation::handle_wakeup`]: quorumlock::proto::Operation::handle_wakeup
//! [`Operation::handle_known_held`]: quorumlock::proto::Operation::handle_known_held

use quorumlock::proto::{Instant, LastRelease};

/// The waiters and known holders of one engine's resources.
#[derive(Default)]
pub(crate) struct Waits {
    /// Only resources somebody waits for, or that a lock taken after waiting holds, have an
    /// entry.
    by_resource: ByResource,
    /// Releases (and losses, and aborted acquires' clean-ups) so far. A waiter registers only
    /// at its first pause; if this moved since its acquire began, a release may have come
    /// before it listened.
    epoch: u64,
}

/// The entries by resource, in a list: only contended resources have one, which are few, and a
/// list keeps the module smaller than a map would.
#[derive(Default)]
struct ByResource(Vec<(String, Entry)>);

impl ByResource {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn get(&self, resource: &str) -> Option<&Entry> {
        self.0
            .iter()
            .find(|(name, _)| name == resource)
            .map(|(_, entry)| entry)
    }

    fn get_mut(&mut self, resource: &str) -> Option<&mut Entry> {
        self.0
            .iter_mut()
            .find(|(name, _)| name == resource)
            .map(|(_, entry)| entry)
    }

    /// The entry of `resource`, added empty if it has none.
    fn entry(&mut self, resource: &str) -> &mut Entry {
        let at = match self.0.iter().position(|(name, _)| name == resource) {
            Some(at) => at,
            None => {
                self.0.push((
                    resource.to_owned(),
                    Entry {
                        waiters: Vec::new(),
                        holder: None,
                        missed: false,
                        last_release: LastRelease::default(),
                    },
                ));
                self.0.len() - 1
            }
        };
        &mut self.0[at].1
    }

    fn remove(&mut self, resource: &str) {
        self.0.retain(|(name, _)| name != resource);
    }

    /// Drops the entries that only remember a holder whose validity ended by `now`: a lock
    /// dropped without a release leaves nothing behind once its keys have expired.
    fn forget_expired_holders(&mut self, now: Instant) {
        self.0.retain(|(_, entry)| {
            !entry.waiters.is_empty() || entry.holder.as_ref().is_some_and(|h| h.until > now)
        });
    }
}

struct Entry {
    /// The waiting acquires by id, in the order they first paused.
    waiters: Vec<u32>,
    /// A lock of this engine on the resource, noted when it was taken or extended while
    /// somebody here waited for it (the acquire that took it included): until its release,
    /// waiters need not ask the nodes.
    holder: Option<Holder>,
    /// A release that no waiter could use, each being mid-attempt. The first to pause next
    /// takes it rather than sleep out its delay on a lock that may be free; a later holder
    /// makes it moot.
    missed: bool,
    /// The last release of the resource heard of, which wakes a waiter once (see
    /// [`LastRelease`]).
    last_release: LastRelease,
}

struct Holder {
    token: String,
    /// The end of its validity: past it, the holder says nothing about the nodes, and waiters
    /// ask them again.
    until: Instant,
}

/// What an acquire keeps about its part in the wake-ups.
#[derive(Clone, Copy)]
pub(crate) struct Waiter {
    /// Whether it takes part at all: an acquire without retries never pauses.
    enabled: bool,
    /// [`Waits::epoch`] when the acquire started.
    epoch_at_start: u64,
    /// Whether it is among the waiters (from its first pause on).
    pub(crate) registered: bool,
    /// Whether its current attempt was started by a wake-up. If that attempt fails, the
    /// wake-up goes on to the waiters after it; if it succeeds, its release wakes them.
    pub(crate) carrying: bool,
}

impl Waiter {
    /// Whether the acquire listens for wake-ups.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }
}

impl Waits {
    /// Whether nobody waits and no holder is remembered: then nothing else here needs calling.
    pub(crate) fn is_idle(&self) -> bool {
        self.by_resource.is_empty()
    }

    /// The part of a new acquire; `retries` is how many attempts it may make after the first.
    pub(crate) fn waiter(&self, retries: u32) -> Waiter {
        Waiter {
            enabled: retries > 0,
            epoch_at_start: self.epoch,
            registered: false,
            carrying: false,
        }
    }

    /// Whether something was released since `waiter`'s acquire began.
    pub(crate) fn released_since(&self, waiter: &Waiter) -> bool {
        self.epoch != waiter.epoch_at_start
    }

    /// Counts a release, whether or not anybody waits.
    pub(crate) fn count_release(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// Adds acquire `id`, pausing for the first time at `now`, to the waiters for `resources`;
    /// `watch` is told of each resource nobody waited for until now.
    pub(crate) fn register(
        &mut self,
        id: u32,
        resources: &[String],
        now: Instant,
        mut watch: impl FnMut(&str),
    ) {
        self.by_resource.forget_expired_holders(now);
        for resource in resources {
            if self
                .by_resource
                .get(resource)
                .is_none_or(|entry| entry.waiters.is_empty())
            {
                watch(resource);
            }
            let entry = self.by_resource.entry(resource);
            if !entry.waiters.contains(&id) {
                entry.waiters.push(id);
            }
        }
    }

    /// Removes acquire `id` from the waiters for `resources`; `forget` is told of each resource
    /// nobody waits for any more. Its entry stays while a lock of this engine is known to hold
    /// it (see [`Waits::held`]), and goes with everything else known about it otherwise.
    pub(crate) fn unregister(
        &mut self,
        id: u32,
        resources: &[String],
        mut forget: impl FnMut(&str),
    ) {
        for resource in resources {
            if let Some(entry) = self.by_resource.get_mut(resource.as_str()) {
                let waited = !entry.waiters.is_empty();
                entry.waiters.retain(|waiter| *waiter != id);
                if waited && entry.waiters.is_empty() {
                    if entry.holder.is_none() {
                        self.by_resource.remove(resource.as_str());
                    }
                    forget(resource);
                }
            }
        }
    }

    /// A lock of this engine holds `resources` under `token` until `until` (taken, or
    /// extended). Noted only for resources somebody waits for, the acquire that took it
    /// included when it had waited: nobody else is likely to ask.
    pub(crate) fn held(&mut self, resources: &[String], token: &str, until: Instant) {
        for resource in resources {
            if let Some(entry) = self.by_resource.get_mut(resource.as_str()) {
                match &mut entry.holder {
                    Some(holder) if holder.token == token => holder.until = until,
                    other => {
                        *other = Some(Holder {
                            token: token.to_owned(),
                            until,
                        })
                    }
                }
                entry.missed = false;
            }
        }
    }

    /// The lock of this engine held under `token` no longer holds `resource` (released, or
    /// found lost). Returns whether to wake a waiter for it: not when the nodes' messages
    /// about the release already did.
    pub(crate) fn released_here(&mut self, resource: &str, token: &str) -> bool {
        self.holder_gone(resource, token)
            .is_some_and(|last| last.released_here(token))
    }

    /// Node `node` published a release of `resource` under `token`. Returns whether to wake a
    /// waiter for it: once the release has been heard from `quorum` nodes, and only once (see
    /// [`LastRelease::announced`]).
    pub(crate) fn released_elsewhere(
        &mut self,
        resource: &str,
        token: &str,
        node: usize,
        quorum: usize,
    ) -> bool {
        self.holder_gone(resource, token)
            .is_some_and(|last| last.announced(node, token, quorum))
    }

    /// Forgets the holder of `resource` if it held it under `token`, and gives what was heard
    /// of its releases; `None` if nobody waits for the resource. An entry left with neither a
    /// holder nor a waiter goes.
    fn holder_gone(&mut self, resource: &str, token: &str) -> Option<&mut LastRelease> {
        let entry = self.by_resource.get_mut(resource)?;
        if entry.holder.as_ref().is_some_and(|h| h.token == token) {
            entry.holder = None;
        }
        if entry.waiters.is_empty() {
            if entry.holder.is_none() {
                self.by_resource.remove(resource);
            }
            return None;
        }
        self.by_resource
            .get_mut(resource)
            .map(|entry| &mut entry.last_release)
    }

    /// Until when a lock of this engine keeps any of `resources`, if one still does at the
    /// instant `now` returns (read only when a holder is known at all).
    pub(crate) fn held_until(
        &self,
        resources: &[String],
        now: impl FnOnce() -> Instant,
    ) -> Option<(Instant, Instant)> {
        let mut holders = resources
            .iter()
            .filter_map(|resource| self.by_resource.get(resource.as_str())?.holder.as_ref())
            .map(|holder| holder.until)
            .peekable();
        holders.peek()?;
        let now = now();
        holders
            .filter(|until| *until > now)
            .max()
            .map(|until| (now, until))
    }

    /// The waiters for `resource` in arrival order, from just after `after` when given (and
    /// still waiting), else from the first.
    pub(crate) fn waiters(&self, resource: &str, after: Option<u32>) -> &[u32] {
        let Some(entry) = self.by_resource.get(resource) else {
            return &[];
        };
        let from = after
            .and_then(|id| entry.waiters.iter().position(|waiter| *waiter == id))
            .map_or(0, |at| at + 1);
        &entry.waiters[from..]
    }

    /// A release of `resource` found no waiter that could use it, each being mid-attempt.
    /// Without waiters there is nobody to keep it for: an acquire that pauses later learns of
    /// releases since it started from [`Waits::released_since`].
    pub(crate) fn miss(&mut self, resource: &str) {
        if let Some(entry) = self.by_resource.get_mut(resource) {
            if !entry.waiters.is_empty() {
                entry.missed = true;
            }
        }
    }

    /// Whether a release of any of `resources` found no waiter that could use it.
    pub(crate) fn missed(&self, resources: &[String]) -> bool {
        resources.iter().any(|resource| {
            self.by_resource
                .get(resource.as_str())
                .is_some_and(|entry| entry.missed)
        })
    }

    /// The missed releases of `resources` were handed to a waiter.
    pub(crate) fn clear_missed(&mut self, resources: &[String]) {
        for resource in resources {
            if let Some(entry) = self.by_resource.get_mut(resource.as_str()) {
                entry.missed = false;
            }
        }
    }
}
