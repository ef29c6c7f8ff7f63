//! Outcomes as plain JavaScript values, which `js/errors.js` and `js/lock.js` turn into the
//! public objects. Numbers and arrays rather than objects keep this side small and the
//! boundary cheap.

use js_sys::{Array, Float64Array};
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

/// `[numbers, details]`: `numbers` holds `status, errorKind, latencyMs` per node, in node order
/// (codes as in `js/errors.js`, `NaN` for no latency); `details` is `null`, or an array with
/// the error text of each failed node (`null` for the others).
pub(crate) fn report(report: &Report) -> JsValue {
    let mut numbers = Vec::with_capacity(report.nodes().len() * 3);
    let any_failed = push_numbers(report, &mut numbers);
    pair(
        Float64Array::from(&numbers[..]).into(),
        details(report, any_failed),
    )
}

/// What a release ends with.
pub(crate) enum Released {
    /// No node failed, so there are only numbers to tell: `clean` as 1 or 0, then those of
    /// [`report`]. JavaScript reads them from the module's memory (see `RedlockCore::finish`).
    Numbers(Vec<f64>),
    /// `[clean, [numbers, details]]`.
    Value(JsValue),
}

/// A release's outcome.
pub(crate) fn released(clean: bool, report: &Report) -> Released {
    let mut numbers = Vec::with_capacity(1 + report.nodes().len() * 3);
    numbers.push(if clean { 1.0 } else { 0.0 });
    if !push_numbers(report, &mut numbers) {
        return Released::Numbers(numbers);
    }
    let encoded = pair(
        Float64Array::from(&numbers[1..]).into(),
        details(report, true),
    );
    Released::Value(pair(JsValue::from_bool(clean), encoded))
}

/// Appends `status, errorKind, latencyMs` per node to `numbers`; tells whether a node failed.
fn push_numbers(report: &Report, numbers: &mut Vec<f64>) -> bool {
    let mut any_failed = false;
    for node in report.nodes() {
        let (status, kind) = match &node.status {
            NodeStatus::Granted => (0.0, 0.0),
            NodeStatus::Refused => (1.0, 0.0),
            NodeStatus::TimedOut => (2.0, 0.0),
            NodeStatus::NoAnswer => (3.0, 0.0),
            NodeStatus::Failed(error) => {
                any_failed = true;
                let kind = match error.kind {
                    NodeErrorKind::Io => 1.0,
                    NodeErrorKind::Auth => 2.0,
                    NodeErrorKind::Server => 3.0,
                    _ => 4.0,
                };
                (4.0, kind)
            }
        };
        let latency = node.latency.map_or(f64::NAN, |l| l.as_secs_f64() * 1000.0);
        numbers.extend_from_slice(&[status, kind, latency]);
    }
    any_failed
}

/// The error text of each failed node (`null` for the others), or `null` when none failed.
fn details(report: &Report, any_failed: bool) -> JsValue {
    if !any_failed {
        return JsValue::NULL;
    }
    let details = Array::new();
    for node in report.nodes() {
        match &node.status {
            NodeStatus::Failed(error) => details.push(&JsValue::from_str(&error.detail)),
            _ => details.push(&JsValue::NULL),
        };
    }
    details.into()
}

fn pair(first: JsValue, second: JsValue) -> JsValue {
    let pair = Array::new();
    pair.push(&first);
    pair.push(&second);
    pair.into()
}

/// `[code, message, report, retryAfterMs]`: what a failed operation ends with.
pub(crate) fn failure(code: &str, message: &str, report_value: JsValue) -> JsValue {
    failure_with(code, message, report_value, JsValue::NULL)
}

fn failure_with(code: &str, message: &str, report_value: JsValue, retry_after: JsValue) -> JsValue {
    let failure = Array::new();
    failure.push(&JsValue::from_str(code));
    failure.push(&JsValue::from_str(message));
    failure.push(&report_value);
    failure.push(&retry_after);
    failure.into()
}

pub(crate) fn acquire_failure(error: &AcquireError) -> JsValue {
    let (code, retry_after) = match error {
        AcquireError::Contended { retry_after, .. } => (
            code::CONTENDED,
            retry_after.map_or(JsValue::NULL, |after| {
                JsValue::from_f64((after.as_secs_f64() * 1000.0).ceil())
            }),
        ),
        AcquireError::NoQuorum { .. } => (code::NO_QUORUM, JsValue::NULL),
        AcquireError::ValidityTooShort { .. } => (code::VALIDITY_TOO_SHORT, JsValue::NULL),
        _ => (code::FAILED, JsValue::NULL),
    };
    failure_with(
        code,
        &messages::acquire(error),
        report(error.report()),
        retry_after,
    )
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
