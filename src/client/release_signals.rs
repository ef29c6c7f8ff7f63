//! In-process wake-ups: a release by one task wakes a task of the same client that waits for
//! the same resource, instead of leaving it to sleep out its retry delay.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// One [`Notify`] per resource that somebody waits for. `Notify::notify_one` wakes waiters in
/// arrival order and keeps a single permit when nobody is listening at that instant, so a
/// release that falls between a waiter's failed attempt and its next wait is not lost.
#[derive(Default)]
pub(crate) struct ReleaseSignals {
    waiting: Mutex<HashMap<String, Waiting>>,
    /// Subscriptions alive; lets a release skip the map when nobody waits (the common case).
    subscriptions: AtomicUsize,
}

struct Waiting {
    notify: Arc<Notify>,
    subscribers: usize,
}

impl ReleaseSignals {
    /// Wakes one waiter (the longest waiting) for each of `resources`.
    pub(crate) fn released(&self, resources: &[String]) {
        if self.subscriptions.load(Ordering::Acquire) == 0 {
            return;
        }
        if let Ok(waiting) = self.waiting.lock() {
            for resource in resources {
                if let Some(entry) = waiting.get(resource) {
                    entry.notify.notify_one();
                }
            }
        }
    }

    /// Registers interest in releases of `resources` until the subscription is dropped.
    pub(crate) fn subscribe(self: &Arc<Self>, resources: &[String]) -> Subscription {
        let mut notifies = Vec::with_capacity(resources.len());
        if let Ok(mut waiting) = self.waiting.lock() {
            for resource in resources {
                let entry = waiting.entry(resource.clone()).or_insert_with(|| Waiting {
                    notify: Arc::new(Notify::new()),
                    subscribers: 0,
                });
                entry.subscribers += 1;
                notifies.push(entry.notify.clone());
            }
        }
        self.subscriptions.fetch_add(1, Ordering::AcqRel);
        Subscription {
            signals: self.clone(),
            resources: resources.to_vec(),
            notifies,
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
        self.signals.subscriptions.fetch_sub(1, Ordering::AcqRel);
        if let Ok(mut waiting) = self.signals.waiting.lock() {
            for resource in &self.resources {
                if let Some(entry) = waiting.get_mut(resource) {
                    entry.subscribers -= 1;
                    if entry.subscribers == 0 {
                        waiting.remove(resource);
                    }
                }
            }
        }
    }
}
