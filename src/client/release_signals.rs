//! Wake-ups for waiters: a release wakes a task of this client that waits for the same
//! resource, instead of leaving it to sleep out its retry delay. Releases made by this client
//! are signalled directly; releases made elsewhere arrive through the release listeners.
//!
//! A lock this client took after waiting stays known as the resource's holder until its
//! release, even when nobody waits any more: a task that was mid-attempt then, or the holder's
//! own next request, waits for that release instead of asking the nodes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use redis::Client;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;

use crate::proto::{Instant, LastRelease};

use super::release_listener::{self, Interest};

/// One [`Notify`] per resource that somebody waits for. `Notify::notify_one` wakes waiters in
/// arrival order and keeps a single permit when nobody is listening at that instant, so a
/// release that falls between a waiter's failed attempt and its next wait is not lost.
pub(crate) struct ReleaseSignals {
    /// Resources somebody waits for, and those a lock taken after waiting holds.
    waiting: Mutex<HashMap<String, Waiting>>,
    /// Entries in `waiting`; lets a release skip the map when no resource is contended (the
    /// common case).
    tracked: AtomicUsize,
    /// Releases made by this client so far. A waiter subscribes only when it first pauses; if
    /// this moved since its acquire began, a release may have come before anybody listened.
    epoch: AtomicU64,
    clients: Vec<Client>,
    quorum: usize,
    connect_timeout: Duration,
    /// One Pub/Sub listener per node, started when somebody first waits.
    listeners: OnceLock<Vec<UnboundedSender<Interest>>>,
}

struct Waiting {
    notify: Arc<Notify>,
    subscribers: usize,
    /// The last release heard of, which wakes a waiter once (see [`LastRelease`]).
    last_release: LastRelease,
    /// A holder of this client that got the resource while somebody here waited for it, and
    /// until when its lease is valid. Its release wakes a waiter directly, so until then
    /// waiters need not ask the nodes.
    holder: Option<LocalHolder>,
}

struct LocalHolder {
    token: String,
    until: Instant,
}

impl ReleaseSignals {
    pub(crate) fn new(clients: Vec<Client>, quorum: usize, connect_timeout: Duration) -> Self {
        Self {
            waiting: Mutex::default(),
            tracked: AtomicUsize::new(0),
            epoch: AtomicU64::new(0),
            clients,
            quorum,
            connect_timeout,
            listeners: OnceLock::new(),
        }
    }

    /// A lock held under `token` was released by this client: a quorum of nodes has answered,
    /// so a waiter can go at once.
    pub(crate) fn released(&self, resources: &[String], token: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if self.tracked.load(Ordering::Acquire) == 0 {
            return;
        }
        for resource in resources {
            self.heard(resource, token, None);
        }
    }

    /// This client got (or extended) a lock on `resources` under `token`, valid until
    /// `until`. Noted only for resources somebody here waits for, the acquire that got it
    /// included while it still holds its [`Subscription`]: nobody else is likely to ask.
    pub(crate) fn held(&self, resources: &[String], token: &str, until: Instant) {
        if self.tracked.load(Ordering::Acquire) == 0 {
            return;
        }
        let Ok(mut waiting) = self.waiting.lock() else {
            return;
        };
        for resource in resources {
            if let Some(entry) = waiting.get_mut(resource) {
                match &mut entry.holder {
                    Some(holder) if holder.token == token => holder.until = until,
                    other => {
                        *other = Some(LocalHolder {
                            token: token.to_owned(),
                            until,
                        })
                    }
                }
            }
        }
    }

    /// Until when a holder of this client keeps any of `resources`, if one does at the instant
    /// `now` returns (read only when somebody waits at all).
    pub(crate) fn held_until(
        &self,
        resources: &[String],
        now: impl FnOnce() -> Instant,
    ) -> Option<(Instant, Instant)> {
        if self.tracked.load(Ordering::Acquire) == 0 {
            return None;
        }
        let waiting = self.waiting.lock().ok()?;
        let now = now();
        resources
            .iter()
            .filter_map(|resource| waiting.get(resource)?.holder.as_ref())
            .map(|holder| holder.until)
            .filter(|until| *until > now)
            .max()
            .map(|until| (now, until))
    }

    /// Releases this client made so far.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// `node` announced over Pub/Sub that a lock on `resource` held under `token` was released.
    pub(crate) fn released_elsewhere(&self, node: usize, resource: &str, token: &str) {
        self.heard(resource, token, Some(node));
    }

    fn heard(&self, resource: &str, token: &str, node: Option<usize>) {
        let Ok(mut waiting) = self.waiting.lock() else {
            return;
        };
        let Some(entry) = waiting.get_mut(resource) else {
            return;
        };
        if entry.holder.as_ref().is_some_and(|h| h.token == token) {
            entry.holder = None;
        }
        if entry.subscribers == 0 {
            // Nobody to wake: the entry only remembered a holder.
            if entry.holder.is_none() {
                waiting.remove(resource);
                self.tracked.store(waiting.len(), Ordering::Release);
            }
            return;
        }
        let counts = match node {
            Some(node) => entry.last_release.announced(node, token, self.quorum),
            None => entry.last_release.released_here(token),
        };
        if counts {
            entry.notify.notify_one();
        }
    }

    /// Registers interest in releases of `resources` until the subscription is dropped; `now`
    /// is the time of the waiter's first pause.
    pub(crate) fn subscribe(self: &Arc<Self>, resources: &[String], now: Instant) -> Subscription {
        let mut notifies = Vec::with_capacity(resources.len());
        let mut first_interest = Vec::new();
        if let Ok(mut waiting) = self.waiting.lock() {
            // A lock dropped without a release leaves nothing behind once its keys expired.
            waiting.retain(|_, entry| {
                entry.subscribers > 0 || entry.holder.as_ref().is_some_and(|h| h.until > now)
            });
            for resource in resources {
                let entry = waiting.entry(resource.clone()).or_insert_with(|| Waiting {
                    notify: Arc::new(Notify::new()),
                    subscribers: 0,
                    last_release: LastRelease::default(),
                    holder: None,
                });
                if entry.subscribers == 0 {
                    first_interest.push(resource.clone());
                }
                entry.subscribers += 1;
                notifies.push(entry.notify.clone());
            }
            self.tracked.store(waiting.len(), Ordering::Release);
        }
        for resource in first_interest {
            self.tell_listeners(Interest::Watch(resource));
        }
        Subscription {
            signals: self.clone(),
            resources: resources.to_vec(),
            notifies,
        }
    }

    fn tell_listeners(self: &Arc<Self>, interest: Interest) {
        let listeners = self.listeners.get_or_init(|| {
            self.clients
                .iter()
                .enumerate()
                .filter_map(|(node, client)| {
                    release_listener::spawn(
                        node,
                        client.clone(),
                        self.connect_timeout,
                        Arc::downgrade(self),
                    )
                })
                .collect()
        });
        for listener in listeners {
            // A listener that has stopped just means no wake-ups from its node.
            let _ = listener.send(interest.clone());
        }
    }
}

/// Interest in the release of some resources.
pub(crate) struct Subscription {
    signals: Arc<ReleaseSignals>,
    resources: Vec<String>,
    notifies: Vec<Arc<Notify>>,
}

impl Subscription {
    /// One notifier per resource.
    pub(crate) fn notifies(&self) -> &[Arc<Notify>] {
        &self.notifies
    }

    /// Hands a wake-up this waiter could not use to the next waiter.
    pub(crate) fn pass_on(&self) {
        for notify in &self.notifies {
            notify.notify_one();
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut forgotten = Vec::new();
        if let Ok(mut waiting) = self.signals.waiting.lock() {
            for resource in &self.resources {
                if let Some(entry) = waiting.get_mut(resource) {
                    entry.subscribers -= 1;
                    if entry.subscribers == 0 {
                        if entry.holder.is_some() {
                            // Kept for the holder; a permit nobody took is not for the next
                            // waiter, who comes after this holder.
                            entry.notify = Arc::new(Notify::new());
                        } else {
                            waiting.remove(resource);
                        }
                        forgotten.push(resource.clone());
                    }
                }
            }
            self.signals.tracked.store(waiting.len(), Ordering::Release);
        }
        for resource in forgotten {
            self.signals.tell_listeners(Interest::Forget(resource));
        }
    }
}
