//! The layer inside an axum router: route parameters as keys, and `HeldLock` as an extractor.

#![cfg(feature = "axum")]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use common::{bounded, Nodes};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use quorumlock_tower::{key, HeldLock, LockLayer};
use tower::{Layer, ServiceExt};

async fn text(router: Router, uri: &str) -> (StatusCode, String) {
    let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn route_params_name_the_lock_and_handlers_extract_it() {
    let nodes = Nodes::start(Duration::from_secs(3));
    bounded(async {
        let layer =
            LockLayer::new(nodes.redlock.clone(), key::route_param("id")).namespace("orders:");
        let router = Router::new()
            .route(
                "/orders/{id}/pay",
                get(|lock: HeldLock| async move { lock.key().to_owned() }),
            )
            .route(
                "/orders",
                get(|lock: Option<HeldLock>| async move { format!("{}", lock.is_some()) }),
            )
            .route_layer(layer);

        assert_eq!(
            text(router.clone(), "/orders/4%32/pay").await,
            (StatusCode::OK, "orders:42".to_owned())
        );
        // A route without the parameter passes unlocked.
        assert_eq!(
            text(router.clone(), "/orders").await,
            (StatusCode::OK, "false".to_owned())
        );
        // Wrapped around the router from outside, the layer runs before routing and finds no
        // route: the request passes unlocked, and a handler that insists on a lock says so.
        let inner = Router::new().route(
            "/orders/{id}/pay",
            get(|lock: HeldLock| async move { lock.key().to_owned() }),
        );
        let outside = LockLayer::new(nodes.redlock.clone(), key::route_param("id")).layer(inner);
        let request = Request::builder()
            .uri("/orders/42/pay")
            .body(Body::empty())
            .unwrap();
        let response = outside.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    })
    .await;
}
