//! Outcomes as plain JavaScript values, which `js/errors.js` and `js/lock.js` turn into the
//! public objects. Arrays rather than objects keep this side small.

use js_sys::Array;
use quorumlock::proto::{AcquireError, ExtendError, NodeErrorKind, NodeStatus, Report};
use wasm_bindgen::JsValue;

use crate::messages;

/// Stable failure codes, shared with `js/errors.js`.
pub(crate) mod code {
    pub(crate) const CONTENDED: &str = "LOCK_CONTENDED";
    pub(crate) const NO_QUORUM: &str = "NO_QUORUM";
    pub(crate) const VALIDITY_TOO_SHORT: &str = "VALIDITY_TOO_SHORT";
    pub(crate) const LOST: &str = "LOCK_LOST";
    pub(crate) const EXPIRED: &str = "LOCK_EXPIRED";
    pub(crate) const EXTENSION_LIMIT: &str = "EXTENSION_LIMIT";
    pub(crate) const ABORTED: &str = "ABORTED";
    pub(crate) const FAILED: &str = "FAILED";
}

/// One `[status, errorKind, errorDetail, latencyMs]` entry per node, in node order.
pub(crate) fn report(report: &Report) -> JsValue {
    let nodes = Array::new();
    for node in report.nodes() {
        let (status, kind, detail) = match &node.status {
            NodeStatus::Granted => ("granted", JsValue::NULL, JsValue::NULL),
            NodeStatus::Refused => ("refused", JsValue::NULL, JsValue::NULL),
            NodeStatus::TimedOut => ("timed-out", JsValue::NULL, JsValue::NULL),
            NodeStatus::NoAnswer => ("no-answer", JsValue::NULL, JsValue::NULL),
            NodeStatus::Failed(error) => {
                let kind = match error.kind {
                    NodeErrorKind::Io => "io",
                    NodeErrorKind::Auth => "auth",
                    NodeErrorKind::Server => "server",
                    _ => "protocol",
                };
                (
                    "failed",
                    JsValue::from_str(kind),
                    JsValue::from_str(&error.detail),
                )
            }
        };
        let latency = node.latency.map_or(JsValue::NULL, |l| {
            JsValue::from_f64(l.as_secs_f64() * 1000.0)
        });
        let entry = Array::new();
        entry.push(&JsValue::from_str(status));
        entry.push(&kind);
        entry.push(&detail);
        entry.push(&latency);
        nodes.push(&entry.into());
    }
    nodes.into()
}

/// `[code, message, report]`: what a rejected promise carries.
pub(crate) fn failure(code: &str, message: &str, report_value: JsValue) -> JsValue {
    let failure = Array::new();
    failure.push(&JsValue::from_str(code));
    failure.push(&JsValue::from_str(message));
    failure.push(&report_value);
    failure.into()
}

pub(crate) fn acquire_failure(error: &AcquireError) -> JsValue {
    let code = match error {
        AcquireError::Contended { .. } => code::CONTENDED,
        AcquireError::NoQuorum { .. } => code::NO_QUORUM,
        AcquireError::ValidityTooShort { .. } => code::VALIDITY_TOO_SHORT,
        _ => code::FAILED,
    };
    failure(code, &messages::acquire(error), report(error.report()))
}

pub(crate) fn extend_failure(error: &ExtendError) -> JsValue {
    let code = match error {
        ExtendError::Lost { .. } => code::LOST,
        ExtendError::NoQuorum { .. } => code::NO_QUORUM,
        ExtendError::Expired { .. } => code::EXPIRED,
        ExtendError::LimitReached { .. } => code::EXTENSION_LIMIT,
        _ => code::FAILED,
    };
    let report_value = error.report().map_or(JsValue::NULL, report);
    failure(code, &messages::extend(error), report_value)
}
