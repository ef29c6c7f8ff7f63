//! The wording of failures, for JavaScript.
//!
//! The core's `Display` impls print latencies and the drift factor as floating-point numbers,
//! and float formatting is a third of this module once compiled. The same sentences are built
//! here from integers only; the numbers behind them travel as the structured report.

use std::fmt::Write;
use std::time::Duration;

use quorumlock::proto::{AcquireError, ConfigError, ExtendError, NodeId, Report, ResourceError};

/// `1500ms`, `2.05ms`: milliseconds with up to three decimals, without float formatting.
fn ms(duration: Duration) -> String {
    // u64 rather than the u128 of `as_micros`, whose formatting code is twice the size.
    let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    let (whole, fraction) = (micros / 1000, micros % 1000);
    if fraction == 0 {
        format!("{whole}ms")
    } else {
        let digits = format!("{fraction:03}");
        format!("{whole}.{}ms", digits.trim_end_matches('0'))
    }
}

/// Node ids as `[0 1 2]`, the format Redlock services print.
fn node_list(nodes: &[NodeId]) -> String {
    let mut out = String::from("[");
    for (i, node) in nodes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{}", node.index());
    }
    out.push(']');
    out
}

fn tally(report: &Report) -> (usize, usize) {
    (report.granted_count(), report.nodes().len())
}

pub(crate) fn acquire(error: &AcquireError) -> String {
    match error {
        AcquireError::Contended { report, .. } => {
            format!(
                "lock already taken, locked nodes: {}",
                node_list(&report.refused())
            )
        }
        AcquireError::NoQuorum { report, quorum } => {
            let (granted, nodes) = tally(report);
            format!("no quorum: {granted} of {nodes} nodes granted the lock, {quorum} needed")
        }
        AcquireError::ValidityTooShort {
            validity,
            min_validity,
            ..
        } => format!(
            "quorum reached too late: {} of validity left, {} required",
            ms(*validity),
            ms(*min_validity)
        ),
        _ => "the lock was not acquired".to_owned(),
    }
}

pub(crate) fn extend(error: &ExtendError) -> String {
    match error {
        ExtendError::Lost { report } => format!(
            "lock lost: our keys are gone or taken on nodes {}",
            node_list(&report.refused())
        ),
        ExtendError::NoQuorum { report, quorum } => {
            let (granted, nodes) = tally(report);
            format!(
                "extension got no quorum: {granted} of {nodes} nodes confirmed, {quorum} needed"
            )
        }
        ExtendError::Expired { .. } => "lock expired before the extension was confirmed".to_owned(),
        ExtendError::LimitReached { extensions, held } => format!(
            "extension limit reached after {extensions} extensions and {} held",
            ms(*held)
        ),
        _ => "the lock was not extended".to_owned(),
    }
}

pub(crate) fn config(error: &ConfigError) -> String {
    match error {
        ConfigError::NoNodes => "no Redis nodes were given".to_owned(),
        ConfigError::ZeroTtl => "the lock TTL must be at least 1 ms".to_owned(),
        ConfigError::TtlTooLong(ttl) => format!("the lock TTL {} is too long", ms(*ttl)),
        ConfigError::InvalidDriftFactor(_) => "the drift factor is not a number in [0, 1)".to_owned(),
        ConfigError::ZeroMinValidity => "the minimum validity must be above zero".to_owned(),
        ConfigError::TtlTooShort {
            ttl,
            drift,
            min_validity,
        } => format!(
            "the lock TTL {} is not longer than the drift allowance {} plus the minimum validity {}",
            ms(*ttl),
            ms(*drift),
            ms(*min_validity)
        ),
        ConfigError::ZeroRequestTimeout => "the request timeout must be above zero".to_owned(),
        ConfigError::RequestTimeoutTooLong {
            request_timeout,
            budget,
        } => format!(
            "the request timeout {} does not fit in the {} the TTL leaves after drift and minimum validity",
            ms(*request_timeout),
            ms(*budget)
        ),
        _ => "the lock settings cannot be used".to_owned(),
    }
}

pub(crate) fn resources(error: &ResourceError) -> String {
    match error {
        ResourceError::Empty => "no resource to lock was given".to_owned(),
        ResourceError::EmptyName(at) => format!("resource {at} is an empty string"),
        ResourceError::Duplicate(name) => format!("resource \"{name}\" was given twice"),
        _ => "the resources cannot be locked".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_print_without_floats() {
        assert_eq!(ms(Duration::from_millis(1500)), "1500ms");
        assert_eq!(ms(Duration::from_micros(2050)), "2.05ms");
        assert_eq!(ms(Duration::from_micros(2)), "0.002ms");
        assert_eq!(ms(Duration::ZERO), "0ms");
    }

    #[test]
    fn node_lists_read_like_redlock_services() {
        assert_eq!(node_list(&[NodeId::new(0), NodeId::new(2)]), "[0 2]");
        assert_eq!(node_list(&[]), "[]");
    }
}
