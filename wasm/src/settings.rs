//! Reading lock settings from the options object the JavaScript API has already checked.
//!
//! The checks are repeated here, cheaply, because a value that slipped through must become a
//! `RangeError`, never a trap.

use std::time::Duration;

use quorumlock::proto::{Retry, Settings};
use wasm_bindgen::JsValue;

/// Why an option cannot be used, worded for a JavaScript caller.
pub(crate) struct BadOption(pub(crate) String);

/// The settings in `options`: durations in milliseconds, counts as numbers, absent fields
/// (`undefined` or `null`) at their defaults.
pub(crate) fn from_options(options: &JsValue) -> Result<Settings, BadOption> {
    let mut settings = Settings::default();
    if let Some(ttl) = duration(options, "ttl")? {
        settings.ttl = ttl;
    }
    if let Some(factor) = number(options, "driftFactor")? {
        settings.drift_factor = factor;
    }
    if let Some(min_validity) = duration(options, "minValidity")? {
        settings.min_validity = min_validity;
    }
    settings.request_timeout = duration(options, "requestTimeout")?;
    settings.max_extensions = count(options, "maxExtensions")?;
    settings.max_hold = duration(options, "maxHold")?;

    let defaults = Retry::default();
    let retries = count(options, "retryCount")?.unwrap_or(defaults.retries);
    let delay = duration(options, "retryDelay")?.unwrap_or(defaults.delay);
    let jitter = duration(options, "retryJitter")?.unwrap_or(defaults.jitter);
    settings.retry = match duration(options, "retryDeadline")? {
        Some(deadline) => {
            let mut retry = Retry::until(deadline, delay, jitter);
            // An explicit count still limits a deadline-bound retry.
            if count(options, "retryCount")?.is_some() {
                retry.retries = retries;
            }
            retry
        }
        None => Retry::new(retries, delay, jitter),
    };
    Ok(settings)
}

fn number(options: &JsValue, name: &str) -> Result<Option<f64>, BadOption> {
    let value = js_sys::Reflect::get(options, &JsValue::from_str(name))
        .map_err(|_| BadOption("options must be an object".to_owned()))?;
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    match value.as_f64() {
        Some(n) if n.is_finite() => Ok(Some(n)),
        _ => Err(BadOption(format!("{name} must be a finite number"))),
    }
}

fn duration(options: &JsValue, name: &str) -> Result<Option<Duration>, BadOption> {
    let Some(ms) = number(options, name)? else {
        return Ok(None);
    };
    if ms < 0.0 {
        return Err(BadOption(format!("{name} must not be negative")));
    }
    Duration::try_from_secs_f64(ms / 1000.0)
        .map(Some)
        .map_err(|_| BadOption(format!("{name} is out of range")))
}

fn count(options: &JsValue, name: &str) -> Result<Option<u32>, BadOption> {
    let Some(n) = number(options, name)? else {
        return Ok(None);
    };
    if n < 0.0 || n.fract() != 0.0 || n > f64::from(u32::MAX) {
        return Err(BadOption(format!(
            "{name} must be a whole number between 0 and {}",
            u32::MAX
        )));
    }
    Ok(Some(n as u32))
}
