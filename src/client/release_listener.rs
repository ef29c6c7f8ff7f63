//! Hears, over Redis Pub/Sub, of releases made by other processes, so a waiter here retries the
//! moment a holder elsewhere lets go rather than after its retry delay.

use std::collections::HashSet;
use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::Client;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::proto::RELEASED_CHANNEL_PREFIX;

use super::release_signals::ReleaseSignals;

/// Pause before reconnecting to a node whose Pub/Sub connection failed. Wake-ups are an
/// optimisation (waiters still retry on their own), so a dead node is not worth hammering.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// A change in which resources somebody in this process waits for.
#[derive(Debug, Clone)]
pub(crate) enum Interest {
    /// Start listening for releases of this resource.
    Watch(String),
    /// Nobody waits for this resource any more.
    Forget(String),
}

/// Starts the listener task of one node; it ends when the returned sender is dropped.
pub(crate) fn spawn(
    node: usize,
    client: Client,
    connect_timeout: Duration,
    signals: Weak<ReleaseSignals>,
) -> Option<UnboundedSender<Interest>> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let (sender, interests) = unbounded_channel();
    runtime.spawn(listen(node, client, connect_timeout, signals, interests));
    Some(sender)
}

fn channel(resource: &str) -> String {
    format!("{RELEASED_CHANNEL_PREFIX}{resource}")
}

/// Applies one change to `watched`; returns the channel to (un)subscribe, if the set changed.
fn apply(watched: &mut HashSet<String>, interest: Interest) -> Option<(bool, String)> {
    match interest {
        Interest::Watch(resource) => watched
            .insert(resource.clone())
            .then(|| (true, channel(&resource))),
        Interest::Forget(resource) => watched
            .remove(&resource)
            .then(|| (false, channel(&resource))),
    }
}

async fn listen(
    node: usize,
    client: Client,
    connect_timeout: Duration,
    signals: Weak<ReleaseSignals>,
    mut interests: UnboundedReceiver<Interest>,
) {
    let mut watched = HashSet::new();
    loop {
        while watched.is_empty() {
            match interests.recv().await {
                Some(interest) => {
                    apply(&mut watched, interest);
                }
                None => return,
            }
        }
        let Some((mut sink, mut stream)) = connect(&client, connect_timeout, &watched).await else {
            // Keep track of interest while the node is unreachable, then try again.
            let pause = tokio::time::sleep(RECONNECT_PAUSE);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    () = &mut pause => break,
                    interest = interests.recv() => match interest {
                        Some(interest) => { apply(&mut watched, interest); }
                        None => return,
                    },
                }
            }
            continue;
        };
        loop {
            tokio::select! {
                interest = interests.recv() => {
                    let Some(interest) = interest else { return };
                    let Some((watch, channel)) = apply(&mut watched, interest) else { continue };
                    let sent = if watch {
                        sink.subscribe(&channel).await
                    } else {
                        sink.unsubscribe(&channel).await
                    };
                    if sent.is_err() {
                        break;
                    }
                }
                message = stream.next() => {
                    let Some(message) = message else { break };
                    let Some(resource) = message.get_channel_name().strip_prefix(RELEASED_CHANNEL_PREFIX) else {
                        continue;
                    };
                    let Ok(token) = message.get_payload::<String>() else { continue };
                    match signals.upgrade() {
                        Some(signals) => signals.released_elsewhere(node, resource, &token),
                        None => return,
                    }
                }
            }
        }
    }
}

async fn connect(
    client: &Client,
    connect_timeout: Duration,
    watched: &HashSet<String>,
) -> Option<(PubSubSink, PubSubStream)> {
    let pubsub = tokio::time::timeout(connect_timeout, client.get_async_pubsub())
        .await
        .ok()?
        .ok()?;
    let (mut sink, stream) = pubsub.split();
    let channels: Vec<String> = watched.iter().map(|resource| channel(resource)).collect();
    sink.subscribe(channels).await.ok()?;
    Some((sink, stream))
}
