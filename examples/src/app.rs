//! The example HTTP service: the two well-known Redlock demo routes, done right, plus a
//! waiting variant and a streaming route, each behind a `LockLayer`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use quorumlock::Redlock;
use quorumlock_tower::{key, HeldLock, LockLayer};

/// Prefix of every Redis key the service locks: resource `42` is key `quorumlock:demo:42`.
pub const NAMESPACE: &str = "quorumlock:demo:";

/// Resource name of `/try-to-acquire-global-lock`.
pub const GLOBAL_RESOURCE: &str = "global";

/// Longest critical operation or stream interval a request may ask for.
const MAX_MS: u64 = 60_000;

/// Most chunks a stream may ask for.
const MAX_CHUNKS: u64 = 1_000;

/// How one instance of the service behaves.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// Shown in every answer, to tell instances apart.
    pub instance: String,
    /// Default length of the critical operation (`?ms=` overrides it).
    pub critical: Duration,
    /// How long `/wait` waits for a held resource before answering `423`.
    pub wait: Duration,
}

#[derive(Clone)]
struct AppState {
    instance: Arc<str>,
    critical: Duration,
}

/// The service's routes:
///
/// - `GET /try-to-acquire-global-lock[?ms=N]`: locks one global resource for the critical
///   operation; `200 lock acquired`, or `423` with `Retry-After` while another request holds it.
///   Unlike the demo service it is modelled on, it releases the lock when the response is sent.
/// - `GET /lock?resource_id=X[&ms=N]`: runs a critical operation on resource `X`; `423` while
///   another request, on any instance, holds `X`.
/// - `GET /wait?resource_id=X[&ms=N]`: the same, but waits for `X` instead of answering `423`.
/// - `GET /stream?resource_id=X[&chunks=N&interval_ms=M]`: streams lines while holding `X`,
///   until the last byte.
pub fn router(redlock: Redlock, settings: AppSettings) -> Router {
    let global = LockLayer::new(
        redlock.clone(),
        key::from_fn(|_| GLOBAL_RESOURCE.to_owned()),
    )
    .namespace(NAMESPACE);
    let per_resource = LockLayer::new(redlock, key::query("resource_id")).namespace(NAMESPACE);
    let waiting = per_resource.clone().wait_up_to(settings.wait);
    let state = AppState {
        instance: settings.instance.into(),
        critical: settings.critical,
    };
    Router::new()
        .route("/", get(help))
        .route(
            "/try-to-acquire-global-lock",
            get(global_lock).layer(global),
        )
        .route("/lock", get(critical_operation).layer(per_resource.clone()))
        .route("/wait", get(critical_operation).layer(waiting))
        .route("/stream", get(stream).layer(per_resource))
        .with_state(state)
}

type Params = Query<HashMap<String, String>>;

async fn help(State(app): State<AppState>) -> String {
    format!(
        "quorumlock example service, instance {}\n\
         \n\
         GET /try-to-acquire-global-lock[?ms=N]   one global lock, held for the operation\n\
         GET /lock?resource_id=X[&ms=N]           critical operation on X; 423 while X is held\n\
         GET /wait?resource_id=X[&ms=N]           the same, waiting for X instead of 423\n\
         GET /stream?resource_id=X[&chunks=N&interval_ms=M]\n\
         \x20                                        streams while holding X, until the last byte\n\
         \n\
         Locks live under Redis keys {NAMESPACE}<resource>.\n",
        app.instance
    )
}

async fn global_lock(
    State(app): State<AppState>,
    lock: HeldLock,
    Query(params): Params,
) -> Response {
    let length = match millis(&params, "ms", app.critical) {
        Ok(length) => length,
        Err(problem) => return bad_request(&problem),
    };
    match run_critical(&lock, length).await {
        Ok(()) => "lock acquired\n".into_response(),
        Err(lost) => lost,
    }
}

async fn critical_operation(
    State(app): State<AppState>,
    lock: Option<HeldLock>,
    Query(params): Params,
) -> Response {
    // Without `resource_id` the layer lets the request through unlocked; this route must not
    // run unlocked, so it refuses.
    let Some(lock) = lock else {
        return bad_request("resource_id is required, e.g. /lock?resource_id=42");
    };
    let length = match millis(&params, "ms", app.critical) {
        Ok(length) => length,
        Err(problem) => return bad_request(&problem),
    };
    match run_critical(&lock, length).await {
        Ok(()) => format!(
            "{}: critical operation done in {} ms by instance {}\n",
            lock.key(),
            length.as_millis(),
            app.instance
        )
        .into_response(),
        Err(lost) => lost,
    }
}

/// The stand-in for real work under the lock: it stops early if the lock is lost.
async fn run_critical(lock: &HeldLock, length: Duration) -> Result<(), Response> {
    tokio::select! {
        () = tokio::time::sleep(length) => Ok(()),
        Some(reason) = lock.lost() => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            format!("lock lost during the critical operation: {reason}\n"),
        )
            .into_response()),
    }
}

async fn stream(
    State(app): State<AppState>,
    lock: Option<HeldLock>,
    Query(params): Params,
) -> Response {
    let Some(lock) = lock else {
        return bad_request("resource_id is required, e.g. /stream?resource_id=42");
    };
    let interval = match millis(&params, "interval_ms", Duration::from_secs(1)) {
        Ok(interval) => interval,
        Err(problem) => return bad_request(&problem),
    };
    let chunks = match number(&params, "chunks", 10, MAX_CHUNKS) {
        Ok(0) => return bad_request("chunks must be at least 1"),
        Ok(chunks) => chunks,
        Err(problem) => return bad_request(&problem),
    };
    let instance = app.instance.clone();
    let lines = futures_util::stream::unfold(1, move |chunk| {
        let (lock, instance) = (lock.clone(), instance.clone());
        async move {
            if chunk > chunks {
                return None;
            }
            if chunk > 1 {
                tokio::time::sleep(interval).await;
            }
            let lease = lock.lease();
            let mut line = format!(
                "chunk {chunk}/{chunks} from instance {instance}: {} held, valid {} ms more, extended {} times\n",
                lock.key(),
                lock.remaining().as_millis(),
                lease.extensions()
            );
            if chunk == chunks {
                line.push_str("last chunk: the lock is released as this response ends\n");
            }
            Some((Ok::<_, Infallible>(Bytes::from(line)), chunk + 1))
        }
    });
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(lines),
    )
        .into_response()
}

fn millis(
    params: &HashMap<String, String>,
    name: &str,
    default: Duration,
) -> Result<Duration, String> {
    let default = u64::try_from(default.as_millis()).unwrap_or(MAX_MS);
    number(params, name, default, MAX_MS).map(Duration::from_millis)
}

fn number(
    params: &HashMap<String, String>,
    name: &str,
    default: u64,
    max: u64,
) -> Result<u64, String> {
    let Some(text) = params.get(name) else {
        return Ok(default);
    };
    match text.parse::<u64>() {
        Ok(value) if value <= max => Ok(value),
        _ => Err(format!("{name} must be a whole number from 0 to {max}")),
    }
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
}
