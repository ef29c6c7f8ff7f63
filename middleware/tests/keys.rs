//! Keys from untrusted input, end to end: missing keys pass unlocked, unusable ones get 400
//! before any lock or handler, and huge or hostile ones become bounded, hashed Redis keys.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{bounded, channel_body, get, probe, respond_once, Nodes};
use http::{HeaderName, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use quorumlock_tower::{key, LockLayer};
use tower::{Layer, ServiceExt};

fn ok() -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from_static(b"ok")))
}

#[tokio::test]
async fn unusable_query_keys_get_400_and_never_reach_the_handler() {
    let nodes = Nodes::start(Duration::from_secs(3));
    bounded(async {
        let layer = LockLayer::new(nodes.redlock.clone(), key::query("resource_id"));
        for (uri, message) in [
            (
                "/?resource_id=",
                "invalid lock key: query parameter `resource_id` is empty\n",
            ),
            (
                "/?resource_id=a&resource_id=b",
                "invalid lock key: query parameter `resource_id` is given more than once\n",
            ),
            (
                "/?resource_id=%FF%FE",
                "invalid lock key: query parameter `resource_id` is not UTF-8 once percent-decoded\n",
            ),
        ] {
            let (service, probe) = probe(|_| ok());
            let response = layer.clone().layer(service).oneshot(get(uri)).await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, message, "{uri}");
            assert_eq!(probe.calls(), 0, "{uri}");
        }
    })
    .await;
}

#[tokio::test]
async fn unusable_header_keys_get_400() {
    let nodes = Nodes::start(Duration::from_secs(3));
    bounded(async {
        let layer = LockLayer::new(
            nodes.redlock.clone(),
            key::header(HeaderName::from_static("x-resource")),
        );
        let (service, probe) = probe(|_| ok());
        let request = Request::builder()
            .uri("/")
            .header(
                "x-resource",
                http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
            )
            .body(())
            .unwrap();
        let response = layer.layer(service).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(probe.calls(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_closure_returning_an_empty_name_is_refused() {
    let nodes = Nodes::start(Duration::from_secs(3));
    bounded(async {
        let layer = LockLayer::new(nodes.redlock.clone(), key::from_fn(|_| String::new()));
        let (service, probe) = probe(|_| ok());
        let response = layer.layer(service).oneshot(get("/")).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(probe.calls(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_huge_key_is_locked_under_a_bounded_hash() {
    let nodes = Nodes::start(Duration::from_secs(3));
    bounded(async {
        let name = "x".repeat(16 * 1024);
        let layer =
            LockLayer::new(nodes.redlock.clone(), key::query("resource_id")).namespace("app:");
        let expected = layer.redis_key(&name);
        assert!(expected.starts_with("app:#"), "{expected}");
        assert_eq!(expected.len(), "app:#".len() + 64);

        // A body still streaming keeps the lock, so Redis can be checked.
        let (_sender, body) = channel_body();
        let (service, mut probe) = probe(respond_once(Response::new(body)));
        let response = layer
            .layer(service)
            .oneshot(get(&format!("/?resource_id={name}")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let held = probe.next_lock().await.unwrap();
        assert_eq!(held.key(), expected);
        nodes.assert_held(&expected, held.token().as_str()).await;
    })
    .await;
}

#[tokio::test]
async fn hostile_bytes_are_hashed_and_cannot_reach_other_keys() {
    let nodes = Nodes::start(Duration::from_secs(3));
    bounded(async {
        let layer =
            LockLayer::new(nodes.redlock.clone(), key::query("resource_id")).namespace("app:");
        // CR LF and NUL, a forged hashed name, and a name reaching outside the namespace.
        for (raw, decoded) in [
            ("a%0D%0AFLUSHALL%0D%0A", "a\r\nFLUSHALL\r\n"),
            ("nul%00byte", "nul\0byte"),
            ("%23forged", "#forged"),
            ("..%2F..%2Fother", "../../other"),
        ] {
            let (_sender, body) = channel_body();
            let (service, mut probe) = probe(respond_once(Response::new(body)));
            let response = layer
                .clone()
                .layer(service)
                .oneshot(get(&format!("/?resource_id={raw}")))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{raw}");
            let held = probe.next_lock().await.unwrap();
            assert!(held.key().starts_with("app:"), "{}", held.key());
            assert!(
                held.key().bytes().all(|b| b.is_ascii_graphic()),
                "{:?}",
                held.key()
            );
            assert_eq!(held.key(), layer.redis_key(decoded));
            nodes.assert_held(held.key(), held.token().as_str()).await;
        }
        // `../../other` is a plain printable name: it stays inside the namespace verbatim.
        assert_eq!(layer.redis_key("../../other"), "app:../../other");
    })
    .await;
}

#[tokio::test]
async fn a_missing_key_passes_unlocked_and_touches_no_node() {
    let nodes = Nodes::start(Duration::from_secs(3));
    bounded(async {
        // With every node down, any attempt to lock would answer 503.
        for node in 0..3 {
            nodes.cluster.kill(node).unwrap();
        }
        let layer = LockLayer::new(nodes.redlock.clone(), key::query("resource_id"));
        let (service, mut probe) = probe(|_| ok());
        let response = layer
            .layer(service)
            .oneshot(get("/?unrelated=1"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(probe.next_lock().await.is_none());
    })
    .await;
}
