//! Requests that meet a held lock, or too few nodes: rejected at once with 423 and
//! Retry-After, or made to wait; 503 without a quorum; custom rejections.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{bounded, channel_body, get, probe, respond_once, soon, Nodes};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use quorumlock_tower::{key, LockLayer, Rejection, RejectionKind};
use tower::{Layer, ServiceExt};

fn layer(nodes: &Nodes) -> LockLayer<key::QueryParam> {
    LockLayer::new(nodes.redlock.clone(), key::query("resource_id")).namespace("test:")
}

async fn text(response: Response<impl http_body::Body<Error: std::fmt::Debug>>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// `lock already taken, locked nodes: [0 1 2]`, where the round may have been decided before
/// the last node answered: at least a quorum of two refused.
fn assert_contended(message: &str) {
    let nodes = message
        .strip_prefix("lock already taken, locked nodes: [")
        .and_then(|rest| rest.strip_suffix("]\n"))
        .unwrap_or_else(|| panic!("not a contention message: {message:?}"));
    let nodes: Vec<&str> = nodes.split(' ').collect();
    assert!(nodes.len() >= 2, "{message}");
    assert!(
        nodes.iter().all(|n| ["0", "1", "2"].contains(n)),
        "{message}"
    );
}

#[tokio::test]
async fn a_second_request_for_a_held_resource_gets_423_with_retry_after() {
    let nodes = Nodes::start(Duration::from_secs(3));
    bounded(async {
        let (_sender, body) = channel_body();
        let (first, mut first_probe) = probe(respond_once(Response::new(body)));
        let holder = layer(&nodes)
            .layer(first)
            .oneshot(get("/?resource_id=invoice-7"))
            .await
            .unwrap();
        let held = first_probe.next_lock().await.unwrap();
        nodes
            .assert_held("test:invoice-7", held.token().as_str())
            .await;

        let (second, second_probe) = probe(|_| Response::new(Full::new(Bytes::new())));
        let refused = layer(&nodes)
            .layer(second)
            .oneshot(get("/?resource_id=invoice-7"))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::LOCKED);
        // The nodes report the holder's keys expire in just under its 3 s TTL.
        assert_eq!(refused.headers()[RETRY_AFTER], "3");
        assert_eq!(refused.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
        let message = text(refused).await;
        assert_contended(&message);
        assert_eq!(second_probe.calls(), 0, "the refused handler ran");
        // The refusal did not disturb the holder.
        nodes
            .assert_held("test:invoice-7", held.token().as_str())
            .await;
        drop(holder);
    })
    .await;
}

/// Nodes 1 and 2 still hold keys of contenders that are about to go away (their keys expire
/// in 15 ms), node 0 is free: a split vote, with no winner. It must not end in a 423 for a
/// resource that is free a moment later.
#[tokio::test]
async fn a_split_vote_is_retried_rather_than_refused() {
    let nodes = Nodes::start(Duration::from_secs(3));
    bounded(async {
        nodes.set_on(1, "test:split", "other-contender", 15).await;
        nodes.set_on(2, "test:split", "another-contender", 15).await;
        let (service, mut probe) = probe(|_| Response::new(Full::new(Bytes::new())));
        let response = layer(&nodes)
            .layer(service)
            .oneshot(get("/?resource_id=split"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(probe.next_lock().await.is_some());
    })
    .await;
}

#[tokio::test]
async fn a_resource_held_everywhere_is_refused_and_left_alone() {
    let nodes = Nodes::start(Duration::from_secs(3));
    bounded(async {
        for node in 0..3 {
            nodes.set_on(node, "test:held", "holder", 30_000).await;
        }
        let (service, probe) = probe(|_| Response::new(Full::new(Bytes::new())));
        let refused = layer(&nodes)
            .layer(service)
            .oneshot(get("/?resource_id=held"))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::LOCKED);
        assert_eq!(probe.calls(), 0);
        assert_eq!(
            nodes.values("test:held").await,
            vec![Some("holder".to_owned()); 3],
            "the refused attempt touched the holder's keys"
        );
    })
    .await;
}

#[tokio::test]
async fn different_resources_proceed_in_parallel() {
    let nodes = Nodes::start(Duration::from_secs(3));
    bounded(async {
        let (_a_sender, a_body) = channel_body();
        let (_b_sender, b_body) = channel_body();
        let (a, mut a_probe) = probe(respond_once(Response::new(a_body)));
        let (b, mut b_probe) = probe(respond_once(Response::new(b_body)));
        let (a_response, b_response) = tokio::join!(
            layer(&nodes).layer(a).oneshot(get("/?resource_id=a")),
            layer(&nodes).layer(b).oneshot(get("/?resource_id=b")),
        );
        // Kept alive to the end of the test: the bodies hold the locks.
        let (a_response, b_response) = (a_response.unwrap(), b_response.unwrap());
        assert_eq!(a_response.status(), StatusCode::OK);
        assert_eq!(b_response.status(), StatusCode::OK);
        let a_held = a_probe.next_lock().await.unwrap();
        let b_held = b_probe.next_lock().await.unwrap();
        // Both bodies are still open, and both keys held at the same time.
        nodes.assert_held("test:a", a_held.token().as_str()).await;
        nodes.assert_held("test:b", b_held.token().as_str()).await;
    })
    .await;
}

#[tokio::test]
async fn in_wait_mode_a_request_waits_for_the_holder_then_proceeds() {
    let nodes = Nodes::start(Duration::from_secs(3));
    bounded(async {
        let (sender, body) = channel_body();
        let (first, mut first_probe) = probe(respond_once(Response::new(body)));
        let waiting_layer = layer(&nodes).wait_up_to(Duration::from_secs(20));
        let holder = waiting_layer
            .clone()
            .layer(first)
            .oneshot(get("/?resource_id=queue"))
            .await
            .unwrap();
        let first_held = first_probe.next_lock().await.unwrap();

        let (second, mut second_probe) = probe(|_| Response::new(Full::new(Bytes::new())));
        let waiter = tokio::spawn(
            waiting_layer
                .layer(second)
                .oneshot(get("/?resource_id=queue")),
        );
        // While the first body is open the second handler must not run, however long we
        // look; half a second is many retry rounds.
        let early =
            tokio::time::timeout(Duration::from_millis(500), second_probe.next_lock()).await;
        assert!(
            early.is_err(),
            "the second request ran while the first held the lock"
        );
        assert!(!waiter.is_finished());

        drop(sender);
        assert!(holder.into_body().collect().await.is_ok());
        let response = soon("the waiting request", waiter).await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let second_held = second_probe.next_lock().await.unwrap();
        assert_ne!(first_held.token(), second_held.token());
    })
    .await;
}

#[tokio::test]
async fn in_wait_mode_a_request_gives_up_at_its_deadline() {
    let nodes = Nodes::start(Duration::from_secs(3));
    bounded(async {
        let (_sender, body) = channel_body();
        let (first, _first_probe) = probe(respond_once(Response::new(body)));
        let holder = layer(&nodes)
            .layer(first)
            .oneshot(get("/?resource_id=busy"))
            .await
            .unwrap();

        let (second, second_probe) = probe(|_| Response::new(Full::new(Bytes::new())));
        let refused = layer(&nodes)
            .wait_up_to(Duration::from_millis(300))
            .contended_status(StatusCode::CONFLICT)
            .contended_retry_after(Duration::from_secs(7))
            .layer(second)
            .oneshot(get("/?resource_id=busy"))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::CONFLICT);
        assert_eq!(refused.headers()[RETRY_AFTER], "7");
        assert_eq!(second_probe.calls(), 0);
        drop(holder);
    })
    .await;
}

#[tokio::test]
async fn without_a_quorum_of_nodes_requests_get_503_and_run_nothing() {
    let nodes = Nodes::start(Duration::from_secs(3));
    bounded(async {
        nodes.cluster.kill(1).unwrap();
        nodes.cluster.kill(2).unwrap();
        let (service, probe) = probe(|_| Response::new(Full::new(Bytes::new())));
        let response = layer(&nodes)
            .layer(service)
            .oneshot(get("/?resource_id=orphan"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "2");
        // Node 0's vote may come after the round was already decided by the two refusals.
        let message = text(response).await;
        assert!(
            [0, 1].into_iter().any(|granted| message
                == format!(
                    "lock service unavailable: {granted} of 3 nodes granted the lock, 2 needed\n"
                )),
            "{message}"
        );
        assert_eq!(probe.calls(), 0);
        // The failed attempt cleaned up after itself on the node that said yes.
        assert_eq!(
            common::get_on(&nodes.cluster.urls()[0], "test:orphan").await,
            None
        );
    })
    .await;
}

#[tokio::test]
async fn on_rejection_replaces_the_default_answers() {
    let nodes = Nodes::start(Duration::from_secs(3));
    bounded(async {
        let (_sender, body) = channel_body();
        let (first, _first_probe) = probe(respond_once(Response::new(body)));
        let holder = layer(&nodes)
            .layer(first)
            .oneshot(get("/?resource_id=custom"))
            .await
            .unwrap();

        let json = |rejection: Rejection| {
            let reason = match rejection.kind() {
                RejectionKind::Contended(_) => "busy",
                RejectionKind::Unavailable(_) => "down",
                RejectionKind::InvalidKey(_) => "bad key",
                _ => "other",
            };
            let mut response = Response::new(Bytes::from(format!(
                r#"{{"error":"{reason}","key":"{}"}}"#,
                rejection.key().unwrap_or_default()
            )));
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            response
        };
        let custom = layer(&nodes).on_rejection(json);
        let (second, _) = probe(|_| Response::new(Full::new(Bytes::new())));
        let refused = custom
            .clone()
            .layer(second.clone())
            .oneshot(get("/?resource_id=custom"))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            text(refused).await,
            r#"{"error":"busy","key":"test:custom"}"#
        );

        let bad = custom
            .layer(second)
            .oneshot(get("/?resource_id="))
            .await
            .unwrap();
        assert_eq!(text(bad).await, r#"{"error":"bad key","key":""}"#);
        drop(holder);
    })
    .await;
}

/// `Retry-After` comes from how long the holder's keys still live on the nodes, not from this
/// layer's TTL: a holder (here another client) whose keys expire in 1.5 s gets `2`.
#[tokio::test]
async fn retry_after_follows_the_holders_remaining_time() {
    let nodes = Nodes::start(Duration::from_secs(30));
    bounded(async {
        for index in 0..3 {
            nodes
                .set_on(index, "test:foreign", "another-client", 1_500)
                .await;
        }
        let (service, service_probe) = probe(|_| Response::new(Full::new(Bytes::new())));
        let refused = layer(&nodes)
            .layer(service)
            .oneshot(get("/?resource_id=foreign"))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::LOCKED);
        assert_eq!(refused.headers()[RETRY_AFTER], "2");
        assert_eq!(service_probe.calls(), 0);
    })
    .await;
}
