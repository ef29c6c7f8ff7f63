//! A lock lost while its request runs: the handler sees it, and by default the client never
//! receives a complete response produced without the lock.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{bounded, channel_body, get, probe, respond_once, soon, Nodes};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use quorumlock_tower::{key, HeldLock, LockLayer, LockLost, OnLoss};
use tokio::sync::{mpsc, oneshot};
use tower::{Layer, ServiceExt};

/// Short enough that the next extension, which finds the keys gone, comes quickly.
const TTL: Duration = Duration::from_millis(400);

fn layer(nodes: &Nodes) -> LockLayer<key::QueryParam> {
    LockLayer::new(nodes.redlock.clone(), key::query("resource_id")).namespace("test:")
}

#[tokio::test]
async fn a_body_whose_lock_is_lost_ends_with_an_error() {
    let nodes = Nodes::start(TTL);
    bounded(async {
        let (sender, body) = channel_body();
        let (service, mut probe) = probe(respond_once(Response::new(body)));
        let response = layer(&nodes)
            .layer(service)
            .oneshot(get("/?resource_id=stream"))
            .await
            .unwrap();
        let held = probe.next_lock().await.unwrap();
        let mut body = response.into_body();
        sender.send(Ok(Bytes::from_static(b"before"))).unwrap();
        body.frame().await.unwrap().unwrap();

        nodes.delete("test:stream").await;
        let reason = soon("the loss", held.lost()).await;
        assert!(reason.is_some(), "the lock was released, not lost");
        assert!(held.is_lost() && !held.is_valid());

        // Data the handler still produces is not sent: the body fails instead.
        sender.send(Ok(Bytes::from_static(b"after"))).unwrap();
        let error = body.frame().await.unwrap().unwrap_err();
        let lost = error
            .downcast_ref::<LockLost>()
            .expect("not a LockLost error");
        assert_eq!(lost.key(), "test:stream");
        assert!(body.frame().await.is_none());
    })
    .await;
}

#[tokio::test]
async fn a_lock_lost_during_the_handler_turns_its_response_into_503() {
    let nodes = Nodes::start(TTL);
    bounded(async {
        let (report, mut seen) = mpsc::unbounded_channel::<HeldLock>();
        let (go_on, proceed) = oneshot::channel::<()>();
        let proceed = std::sync::Arc::new(tokio::sync::Mutex::new(Some(proceed)));
        let service = tower::service_fn(move |request: Request<()>| {
            let held = request.extensions().get::<HeldLock>().cloned().unwrap();
            let (report, proceed) = (report.clone(), proceed.clone());
            async move {
                report.send(held.clone()).unwrap();
                let proceed = proceed.lock().await.take().unwrap();
                proceed.await.unwrap();
                // The handler notices, but answers as if all went well.
                assert!(held.is_lost());
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("done"))))
            }
        });
        let pending = tokio::spawn(
            layer(&nodes)
                .layer(service)
                .oneshot(get("/?resource_id=handler")),
        );
        let held = seen.recv().await.unwrap();
        nodes.delete("test:handler").await;
        assert!(soon("the loss", held.lost()).await.is_some());
        go_on.send(()).unwrap();

        let response = soon("the response", pending).await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            body,
            "the lock was lost while the request was handled; its outcome is unknown\n"
        );
    })
    .await;
}

#[tokio::test]
async fn with_on_loss_continue_the_response_is_delivered_as_is() {
    let nodes = Nodes::start(TTL);
    bounded(async {
        let (sender, body) = channel_body();
        let (service, mut probe) = probe(respond_once(Response::new(body)));
        let response = layer(&nodes)
            .on_loss(OnLoss::Continue)
            .layer(service)
            .oneshot(get("/?resource_id=lenient"))
            .await
            .unwrap();
        let held = probe.next_lock().await.unwrap();
        nodes.delete("test:lenient").await;
        assert!(soon("the loss", held.lost()).await.is_some());

        sender.send(Ok(Bytes::from_static(b"still sent"))).unwrap();
        drop(sender);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "still sent");
    })
    .await;
}

#[tokio::test]
async fn a_lost_lock_never_deletes_the_new_holders_key() {
    let nodes = Nodes::start(TTL);
    bounded(async {
        let (_sender, body) = channel_body();
        let (service, mut probe) = probe(respond_once(Response::new(body)));
        let response = layer(&nodes)
            .layer(service)
            .oneshot(get("/?resource_id=taken"))
            .await
            .unwrap();
        let held = probe.next_lock().await.unwrap();

        // Someone else takes the resource after our keys vanished.
        nodes.delete("test:taken").await;
        let thief = nodes
            .redlock
            .try_lock("test:taken")
            .ttl(Duration::from_secs(30))
            .await
            .unwrap();
        assert!(soon("the loss", held.lost()).await.is_some());
        drop(response);
        soon("the release", held.released()).await.unwrap();
        nodes
            .assert_held("test:taken", thief.token().as_str())
            .await;
        thief.release().await;
    })
    .await;
}
