//! How long the layer holds a request's lock, checked in Redis itself: past the handler, until
//! the body is consumed, failed or dropped; not at all for bodies that will never be sent; and
//! extended while a body streams past the TTL.

mod common;

use std::io;
use std::time::Duration;

use bytes::Bytes;
use common::{bounded, channel_body, get, probe, respond_once, soon, Nodes};
use http::header::CONTENT_LENGTH;
use http::{Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Empty, Full};
use quorumlock_tower::{key, HeldLock, LockLayer};
use tower::{Layer, ServiceExt};

fn layer(nodes: &Nodes) -> LockLayer<key::QueryParam> {
    LockLayer::new(nodes.redlock.clone(), key::query("resource_id")).namespace("test:")
}

/// Asserts that the release round is over by the time the client has the whole response.
fn already_released(held: &HeldLock) {
    assert!(
        held.is_released(),
        "the response was complete before the lock was released"
    );
}

/// Waits until the lock's release round is over, for releases that run in the background
/// (a dropped or failed body), so Redis can be checked without racing them.
async fn released(held: &HeldLock) {
    soon("the release", held.released())
        .await
        .expect("the keep-alive task was cancelled");
}

#[tokio::test]
async fn lock_outlives_the_handler_until_the_body_is_consumed() {
    let nodes = Nodes::start(Duration::from_secs(5));
    bounded(async {
        let (sender, body) = channel_body();
        let (service, mut probe) = probe(respond_once(Response::new(body)));
        let service = layer(&nodes).layer(service);

        let response = service.oneshot(get("/?resource_id=report")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let held = probe.next_lock().await.expect("the handler saw no lock");
        assert_eq!(held.key(), "test:report");

        // The handler has returned and the response future resolved: the lock must still be
        // in Redis, under the token the handler saw.
        nodes
            .assert_held("test:report", held.token().as_str())
            .await;
        assert!(held.is_valid());

        sender.send(Ok(Bytes::from_static(b"part 1, "))).unwrap();
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "part 1, ");
        nodes
            .assert_held("test:report", held.token().as_str())
            .await;
        assert!(body.holds_lock());

        sender.send(Ok(Bytes::from_static(b"part 2"))).unwrap();
        drop(sender);
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(rest, "part 2");
        already_released(&held);
        nodes.assert_free("test:report").await;
        assert!(!held.is_valid());
        assert_eq!(held.lost().await, None, "a normal release is not a loss");
    })
    .await;
}

#[tokio::test]
async fn dropping_the_body_releases_the_lock() {
    let nodes = Nodes::start(Duration::from_secs(5));
    bounded(async {
        let (_sender, body) = channel_body();
        let (service, mut probe) = probe(respond_once(Response::new(body)));
        let response = layer(&nodes)
            .layer(service)
            .oneshot(get("/?resource_id=dropped"))
            .await
            .unwrap();
        let held = probe.next_lock().await.unwrap();
        nodes
            .assert_held("test:dropped", held.token().as_str())
            .await;

        // The client went away: the server drops the body unfinished.
        drop(response);
        released(&held).await;
        nodes.assert_free("test:dropped").await;
    })
    .await;
}

#[tokio::test]
async fn a_failing_body_releases_the_lock_and_passes_its_error_on() {
    let nodes = Nodes::start(Duration::from_secs(5));
    bounded(async {
        let (sender, body) = channel_body();
        let (service, mut probe) = probe(respond_once(Response::new(body)));
        let response = layer(&nodes)
            .layer(service)
            .oneshot(get("/?resource_id=broken"))
            .await
            .unwrap();
        let held = probe.next_lock().await.unwrap();
        nodes
            .assert_held("test:broken", held.token().as_str())
            .await;

        sender.send(Err(io::Error::other("disk on fire"))).unwrap();
        let mut body = response.into_body();
        let error = body.frame().await.unwrap().unwrap_err();
        assert_eq!(error.to_string(), "disk on fire");
        // The body is still alive, and the lock already gone.
        assert!(!body.holds_lock());
        released(&held).await;
        nodes.assert_free("test:broken").await;
        drop(sender);
    })
    .await;
}

#[tokio::test]
async fn head_requests_release_at_once_whatever_the_body() {
    let nodes = Nodes::start(Duration::from_secs(5));
    bounded(async {
        // A body that would never end: a HEAD response is never sent, so it must not matter.
        let (sender, body) = channel_body();
        let (service, mut probe) = probe(respond_once(Response::new(body)));
        let request = Request::builder()
            .method(Method::HEAD)
            .uri("/?resource_id=head")
            .body(())
            .unwrap();
        let response = layer(&nodes).layer(service).oneshot(request).await.unwrap();
        let held = probe.next_lock().await.unwrap();
        already_released(&held);
        nodes.assert_free("test:head").await;
        assert!(!response.body().holds_lock());
        drop((response, sender));
    })
    .await;
}

#[tokio::test]
async fn no_content_responses_release_at_once() {
    let nodes = Nodes::start(Duration::from_secs(5));
    bounded(async {
        let (sender, body) = channel_body();
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::NO_CONTENT;
        let (service, mut probe) = probe(respond_once(response));
        let response = layer(&nodes)
            .layer(service)
            .oneshot(get("/?resource_id=nocontent"))
            .await
            .unwrap();
        let held = probe.next_lock().await.unwrap();
        already_released(&held);
        nodes.assert_free("test:nocontent").await;
        drop((response, sender));
    })
    .await;
}

#[tokio::test]
async fn empty_bodies_release_at_once() {
    let nodes = Nodes::start(Duration::from_secs(5));
    bounded(async {
        let (service, mut probe) = probe(|_| Response::new(Empty::<Bytes>::new()));
        let response = layer(&nodes)
            .layer(service)
            .oneshot(get("/?resource_id=empty"))
            .await
            .unwrap();
        let held = probe.next_lock().await.unwrap();
        already_released(&held);
        nodes.assert_free("test:empty").await;
        drop(response);
    })
    .await;
}

#[tokio::test]
async fn the_last_content_length_byte_releases_without_a_final_poll() {
    let nodes = Nodes::start(Duration::from_secs(5));
    bounded(async {
        // A stream that never signals its end itself: only Content-Length says it is done.
        let (sender, body) = channel_body();
        let mut response = Response::new(body);
        response.headers_mut().insert(CONTENT_LENGTH, 11.into());
        let (service, mut probe) = probe(respond_once(response));
        let response = layer(&nodes)
            .layer(service)
            .oneshot(get("/?resource_id=sized"))
            .await
            .unwrap();
        let held = probe.next_lock().await.unwrap();
        let mut body = response.into_body();

        sender.send(Ok(Bytes::from_static(b"hello "))).unwrap();
        body.frame().await.unwrap().unwrap();
        nodes.assert_held("test:sized", held.token().as_str()).await;

        sender.send(Ok(Bytes::from_static(b"world"))).unwrap();
        body.frame().await.unwrap().unwrap();
        already_released(&held);
        nodes.assert_free("test:sized").await;
        drop((body, sender));
    })
    .await;
}

#[tokio::test]
async fn a_complete_body_is_answered_with_the_lock_already_released() {
    let nodes = Nodes::start(Duration::from_secs(5));
    bounded(async {
        let (service, mut probe) = probe(|_| Response::new(Full::new(Bytes::from_static(b"done"))));
        // A single attempt: any key left behind would refuse the second request.
        let service = layer(&nodes).reject_retries(0).layer(service);

        let response = service
            .clone()
            .oneshot(get("/?resource_id=full"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let held = probe.next_lock().await.unwrap();
        // The response is whole as it is handed out: the lock is already gone, and the body
        // is what the handler produced.
        already_released(&held);
        assert!(!held.is_valid());
        assert_eq!(held.lost().await, None, "a normal release is not a loss");
        assert!(!response.body().holds_lock());
        assert_eq!(response.body().size_hint().exact(), Some(4));
        nodes.assert_free("test:full").await;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "done");

        // So the next request for the resource is not turned away.
        let again = service.oneshot(get("/?resource_id=full")).await.unwrap();
        assert_eq!(again.status(), StatusCode::OK);
        let second = probe.next_lock().await.unwrap();
        assert_ne!(second.token(), held.token());
        already_released(&second);
    })
    .await;
}

#[tokio::test]
async fn a_body_whose_data_is_all_ready_is_answered_released() {
    let nodes = Nodes::start(Duration::from_secs(5));
    bounded(async {
        // A stream that never ends by itself, but whose Content-Length is all there at once.
        let (sender, body) = channel_body();
        sender.send(Ok(Bytes::from_static(b"hello"))).unwrap();
        let mut response = Response::new(body);
        response.headers_mut().insert(CONTENT_LENGTH, 5.into());
        let (service, mut probe) = probe(respond_once(response));
        let response = layer(&nodes)
            .layer(service)
            .oneshot(get("/?resource_id=ready"))
            .await
            .unwrap();
        let held = probe.next_lock().await.unwrap();
        already_released(&held);
        nodes.assert_free("test:ready").await;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "hello");
        drop(sender);
    })
    .await;
}

#[tokio::test]
async fn a_stream_with_a_ready_first_part_holds_the_lock_until_its_end() {
    let nodes = Nodes::start(Duration::from_secs(5));
    bounded(async {
        // The first part is there when the handler returns; the rest is not.
        let (sender, body) = channel_body();
        sender.send(Ok(Bytes::from_static(b"part 1, "))).unwrap();
        let (service, mut probe) = probe(respond_once(Response::new(body)));
        let response = layer(&nodes)
            .layer(service)
            .oneshot(get("/?resource_id=ready-then-slow"))
            .await
            .unwrap();
        let held = probe.next_lock().await.unwrap();
        nodes
            .assert_held("test:ready-then-slow", held.token().as_str())
            .await;
        let mut body = response.into_body();
        assert!(body.holds_lock());

        // The part read before the response was returned comes first.
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "part 1, ");
        nodes
            .assert_held("test:ready-then-slow", held.token().as_str())
            .await;
        assert!(held.is_valid());

        sender.send(Ok(Bytes::from_static(b"part 2"))).unwrap();
        drop(sender);
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(rest, "part 2");
        already_released(&held);
        nodes.assert_free("test:ready-then-slow").await;
    })
    .await;
}

#[tokio::test]
async fn a_body_failing_at_once_is_answered_released_and_fails() {
    let nodes = Nodes::start(Duration::from_secs(5));
    bounded(async {
        let (sender, body) = channel_body();
        sender.send(Err(io::Error::other("disk on fire"))).unwrap();
        let (service, mut probe) = probe(respond_once(Response::new(body)));
        let response = layer(&nodes)
            .layer(service)
            .oneshot(get("/?resource_id=failed-early"))
            .await
            .unwrap();
        let held = probe.next_lock().await.unwrap();
        already_released(&held);
        nodes.assert_free("test:failed-early").await;
        let mut body = response.into_body();
        let error = body.frame().await.unwrap().unwrap_err();
        assert_eq!(error.to_string(), "disk on fire");
        assert!(body.frame().await.is_none());
        drop(sender);
    })
    .await;
}

#[tokio::test]
async fn a_handler_running_past_the_ttl_keeps_its_lock() {
    let ttl = Duration::from_millis(400);
    let nodes = Nodes::start(ttl);
    bounded(async {
        let (report, mut seen) = tokio::sync::mpsc::unbounded_channel::<HeldLock>();
        let service = tower::service_fn(move |request: Request<()>| {
            let held = request.extensions().get::<HeldLock>().cloned().unwrap();
            let report = report.clone();
            async move {
                // The point is the passage of time: three TTLs, so without extensions the
                // keys would be long gone (and the response, lost, would be a 503).
                tokio::time::sleep(ttl * 3).await;
                let extended = held.lease().extensions();
                let valid = held.is_valid();
                report.send(held).unwrap();
                let body = format!("extended {extended} times, valid: {valid}");
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(body))))
            }
        });
        let response = layer(&nodes)
            .layer(service)
            .oneshot(get("/?resource_id=long"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let held = seen.recv().await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let extended = held.lease().extensions();
        assert!(extended >= 2, "{body:?}, {:?}", held.lease());
        assert!(body.ends_with(b"valid: true"), "{body:?}");
        already_released(&held);
        nodes.assert_free("test:long").await;
    })
    .await;
}

#[tokio::test]
async fn a_body_streaming_past_the_ttl_stays_locked() {
    let ttl = Duration::from_millis(400);
    let nodes = Nodes::start(ttl);
    bounded(async {
        let (sender, body) = channel_body();
        let (service, mut probe) = probe(respond_once(Response::new(body)));
        let response = layer(&nodes)
            .layer(service)
            .oneshot(get("/?resource_id=slow"))
            .await
            .unwrap();
        let held = probe.next_lock().await.unwrap();
        let mut body = response.into_body();

        for chunk in 0..4 {
            // The point is the passing of time: each pause is a whole TTL, so without
            // extensions the key would have expired by the second chunk.
            tokio::time::sleep(ttl).await;
            sender
                .send(Ok(Bytes::from(format!("chunk {chunk}"))))
                .unwrap();
            body.frame().await.unwrap().unwrap();
            nodes.assert_held("test:slow", held.token().as_str()).await;
            let left = nodes.pttl("test:slow").await;
            assert!(
                left.iter().filter(|ms| **ms > 0).count() >= 2,
                "PTTL {left:?}"
            );
        }
        assert!(held.lease().extensions() >= 4, "{:?}", held.lease());
        assert!(held.is_valid());

        drop(sender);
        assert!(body.frame().await.is_none());
        already_released(&held);
        nodes.assert_free("test:slow").await;
    })
    .await;
}

#[tokio::test]
async fn an_inner_service_error_passes_through_and_releases() {
    let nodes = Nodes::start(Duration::from_secs(5));
    bounded(async {
        let (report, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let service = tower::service_fn(move |request: Request<()>| {
            let _ = report.send(request.extensions().get::<HeldLock>().cloned());
            async { Err::<Response<Empty<Bytes>>, _>(io::Error::other("backend down")) }
        });
        let error = layer(&nodes)
            .layer(service)
            .oneshot(get("/?resource_id=failing"))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "backend down");
        let held = seen.recv().await.unwrap().unwrap();
        released(&held).await;
        nodes.assert_free("test:failing").await;
    })
    .await;
}

#[tokio::test]
async fn the_service_driven_to_ready_is_the_one_called() {
    /// Refuses calls it was not made ready for; clones start unready, as a service whose
    /// readiness reserves a slot would.
    struct ReadyOnce {
        ready: bool,
    }
    impl Clone for ReadyOnce {
        fn clone(&self) -> Self {
            Self { ready: false }
        }
    }
    impl tower::Service<Request<()>> for ReadyOnce {
        type Response = Response<Empty<Bytes>>;
        type Error = &'static str;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            self.ready = true;
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            let was_ready = std::mem::replace(&mut self.ready, false);
            std::future::ready(if was_ready {
                Ok(Response::new(Empty::new()))
            } else {
                Err("called without being driven to ready")
            })
        }
    }

    let nodes = Nodes::start(Duration::from_secs(5));
    bounded(async {
        let service = layer(&nodes).layer(ReadyOnce { ready: false });
        let response = service.oneshot(get("/?resource_id=ready")).await;
        assert_eq!(response.map(|r| r.status()), Ok(StatusCode::OK));
    })
    .await;
}

#[tokio::test]
async fn requests_without_a_key_pass_unlocked() {
    let nodes = Nodes::start(Duration::from_secs(5));
    bounded(async {
        let (service, mut probe) = probe(|_| Response::new(Full::new(Bytes::from_static(b"hi"))));
        let response = layer(&nodes)
            .layer(service)
            .oneshot(get("/?other=1"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(probe.next_lock().await.is_none());
        assert!(!response.body().holds_lock());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "hi");
    })
    .await;
}

#[tokio::test]
async fn a_response_dropped_while_its_lock_is_released_still_releases() {
    let nodes = Nodes::start(Duration::from_secs(5));
    bounded(async {
        let (service, mut probe) = probe(|_| Response::new(Full::new(Bytes::from_static(b"done"))));
        let mut pending = Box::pin(
            layer(&nodes)
                .layer(service)
                .oneshot(get("/?resource_id=cancelled")),
        );
        // Drive the response future until the handler has answered: from then on it waits for
        // the release round, and is not polled again.
        let held = tokio::select! {
            biased;
            held = probe.next_lock() => held.unwrap(),
            _ = &mut pending => panic!("answered before the test could cancel it"),
        };
        assert!(!held.is_released());
        // The client goes away: the server drops the response future mid-release.
        drop(pending);
        soon("the release", held.released())
            .await
            .expect("the release did not run to its end");
        nodes.assert_free("test:cancelled").await;
    })
    .await;
}

#[tokio::test]
async fn a_flush_waits_for_the_release_of_a_dropped_response() {
    let nodes = Nodes::start(Duration::from_secs(5));
    bounded(async {
        // Whether the release's own task gets to finish before a flush that does not wait for
        // it returns depends on scheduling; a few rounds make the race all but certain to show.
        for round in 0..20 {
            let (service, mut probe) =
                probe(|_| Response::new(Full::new(Bytes::from_static(b"done"))));
            let mut pending = Box::pin(
                layer(&nodes)
                    .layer(service)
                    .oneshot(get(&format!("/?resource_id=flushed-{round}"))),
            );
            let held = tokio::select! {
                biased;
                held = probe.next_lock() => held.unwrap(),
                _ = &mut pending => panic!("answered before the test could cancel it"),
            };
            drop(pending);
            // The release now runs in a task of its own; a flush must count it from the drop
            // on, not from the task's first poll, which may come after the flush has started.
            nodes.redlock.flush().await;
            assert!(
                held.is_released(),
                "round {round}: the flush returned before the dropped response's release was over"
            );
            nodes.assert_free(&format!("test:flushed-{round}")).await;
        }
    })
    .await;
}
