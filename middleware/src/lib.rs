#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! A Tower layer (works with axum, hyper and any `tower::Service` over `http` types) that makes
//! each request hold a [Redlock](quorumlock) lock on the resource it names, from before the
//! handler runs until the response body has been sent.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use axum::{routing::post, Router};
//! use quorumlock_tower::{key, LockLayer};
//!
//! let redlock = quorumlock::Redlock::builder([
//!     "redis://127.0.0.1:7001",
//!     "redis://127.0.0.1:7002",
//!     "redis://127.0.0.1:7003",
//! ])
//! .ttl(Duration::from_secs(10))
//! .build()?;
//!
//! let app: Router = Router::new()
//!     .route("/orders/{id}/pay", post(|| async { "paid" }))
//!     // Two requests for the same order never run at once, across every instance.
//!     .route_layer(LockLayer::new(redlock, key::path_param("/orders/{id}/pay", "id")).namespace("shop:orders:"));
//! # let _ = app; Ok(()) }
//! ```
//!
//! # What happens to a request
//!
//! 1. `poll_ready` is the inner service's. On `call`, the [key extractor](key) reads the
//!    request head. No key: the request goes straight to the inner service, unlocked. A
//!    refused key: `400`, and the handler never runs.
//! 2. The response future acquires the lock (the inner service that was driven to ready is
//!    set aside and called once the lock is held). Contended: `423 Locked` with `Retry-After`
//!    at once, or after waiting up to a deadline with [`Contention::Wait`]. No quorum of
//!    nodes answered: `503` with `Retry-After`. Both through [`LockLayer::on_rejection`].
//! 3. The handler runs with a [`HeldLock`] in its request extensions: the Redis key, the
//!    token, the lease, and a lost signal. A request still running half-way through its lease
//!    has its lock handed to a keep-alive task ([`quorumlock::Lock::keep_alive`]), which
//!    extends it from then on, so long handlers keep it; requests that end sooner never start
//!    one. The timer that starts it runs in the request's own task: a handler that blocks its
//!    thread rather than awaiting delays the first extension.
//! 4. When the handler returns, its body is polled once. If that gives the whole body (a
//!    `Full` body, a `String`, JSON), the lock is released and the response is returned with
//!    that data, so the server sends it in one piece. When nothing will be sent (`HEAD`,
//!    `204`, `304`, an empty body) the lock is likewise released before the response is
//!    returned. A body that still streams carries the lock ([`LockBody`]), which stays held
//!    however long it streams. It is released when the body is over, and the end is not let
//!    through before the release round is done: a body of known length (`Content-Length`, or
//!    one that says it is at its end) holds back its last frame, any other body its
//!    end-of-stream. So every byte the handler produces is covered, and a client that has the
//!    whole response can lock the resource again at once. A body that fails or is dropped (the
//!    client went away) releases in the background.
//!
//! Errors of the inner service pass through unchanged (`Error = S::Error`); the layer's own
//! outcomes are responses.
//!
//! # If the lock is lost
//!
//! An extension can fail: the keys expired during a long pause, someone deleted them, or no
//! quorum answered in time. The handler sees it ([`HeldLock::is_lost`], [`HeldLock::lost`]);
//! the layer never cancels the handler. With the default [`OnLoss::Fail`], a response whose
//! lock was lost before the handler returned is replaced by a `503`, and a body whose lock is
//! lost while streaming ends with a [`LockLost`] error, so the client sees a truncated response
//! rather than a complete one produced without the lock. [`OnLoss::Continue`] delivers the
//! response as it is.
//!
//! # Keys
//!
//! Resource names usually come from the client. The layer prefixes them with a namespace
//! ([`LockLayer::namespace`]), keeps short printable names verbatim (`quorumlock:http:42`) and
//! replaces long or unusual ones with their SHA-256 (`quorumlock:http:#9f86…`), so a request
//! can neither pick arbitrary Redis keys nor make them large. [`LockLayer::redis_key`] tells
//! which key a name maps to.

mod body;
mod future;
mod held;
pub mod key;
mod layer;
mod rejection;
mod service;

pub use body::{LockBody, LockLost};
pub use future::ResponseFuture;
pub use held::HeldLock;
pub use key::{KeyExtractor, KeyRejection};
pub use layer::{Contention, LockLayer, OnLoss};
pub use rejection::{DefaultRejection, OnRejection, Rejection, RejectionKind};
pub use service::LockService;

/// The error type of [`LockBody`]: the inner body's error, or [`LockLost`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
