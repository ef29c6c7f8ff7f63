//! The service of the Tower-layer scenario (S4): one trivial route three ways.
//!
//! - `GET /bare/{id}`: the handler alone;
//! - `GET /layer/{id}`: behind `LockLayer`, locking resource `{id}`;
//! - `GET /inline/{id}`: the handler locks `{id}` itself, answers, and releases.
//!
//! The load generator gives every request its own `{id}`, so locks are never contended and
//! the figures show what locking costs, not how long anyone waited.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use quorumlock::Redlock;
use quorumlock_tower::{key, LockLayer};

/// The body every route answers with.
const BODY: &str = "ok";

#[derive(Clone)]
struct Inline {
    redlock: Redlock,
    namespace: String,
}

/// The three routes; every Redis key starts with `namespace`.
pub fn router(redlock: Redlock, namespace: &str) -> Router {
    let layer =
        LockLayer::new(redlock.clone(), key::path_param("/layer/{id}", "id")).namespace(namespace);
    let inline = Inline {
        redlock,
        namespace: namespace.to_owned(),
    };
    Router::new()
        .route("/bare/{id}", get(bare))
        .route("/layer/{id}", get(bare).layer(layer))
        .route("/inline/{id}", get(locked_inline).with_state(inline))
}

async fn bare() -> &'static str {
    BODY
}

/// Locks with a single attempt, like the layer's default of rejecting contended requests.
async fn locked_inline(State(inline): State<Inline>, Path(id): Path<String>) -> Response {
    match inline
        .redlock
        .try_lock(format!("{}{id}", inline.namespace))
        .await
    {
        Ok(lock) => {
            let response = BODY.into_response();
            lock.release().await;
            response
        }
        Err(error) if error.is_contended() => StatusCode::LOCKED.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}
