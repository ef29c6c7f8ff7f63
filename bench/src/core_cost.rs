//! The sans-IO machines alone (S5): acquire and release driven with replies fed in memory.
//!
//! Run under callgrind, the instruction count is repeatable to the instruction; the
//! difference between two iteration counts divided by their difference is the cost of one
//! acquire+release, start-up and process exit cancelling out.

use std::collections::VecDeque;
use std::time::Duration;

use quorumlock::proto::{
    Acquire, CommandKind, Config, Instant, NodeId, Operation, Release, Reply, RequestId, Settings,
    Token,
};

/// Replies land this long after their request, so validity arithmetic sees time pass.
const REPLY_LATENCY: Duration = Duration::from_micros(50);

/// Acquires and releases one resource `iterations` times on `nodes` nodes that grant
/// everything. Returns how many nodes granted in total, so nothing can be optimised away.
pub fn acquire_release(nodes: usize, iterations: u64) -> Result<u64, String> {
    let config = Config::new(nodes, Settings::default()).map_err(|e| e.to_string())?;
    let token = Token::from_random_bits(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    let mut now = Instant::now();
    let mut pending = VecDeque::with_capacity(2 * nodes);
    let mut granted = 0u64;
    for seed in 0..iterations {
        let acquire = Acquire::new(&config, ["bench:core"], token.clone(), seed, now)
            .map_err(|e| e.to_string())?;
        let lease = drive(acquire, &mut pending, &mut now).map_err(|e| e.to_string())?;
        granted += lease.report().granted_count() as u64;
        let released = drive(
            Release::for_lease(&config, &lease, now),
            &mut pending,
            &mut now,
        );
        granted += released.report.granted_count() as u64;
    }
    Ok(granted)
}

/// Runs `op` to its outcome, answering each request as a healthy node would, in order, and on
/// past the outcome while the operation still waits for replies (a release's slower nodes), as
/// a driver does in the background.
fn drive<O: Operation>(
    mut op: O,
    pending: &mut VecDeque<(NodeId, RequestId, Reply)>,
    now: &mut Instant,
) -> O::Output {
    pending.clear();
    let mut outcome = None;
    loop {
        while let Some(transmit) = op.poll_transmit() {
            let reply = match transmit.command.kind() {
                CommandKind::SetNx => Reply::Ok,
                CommandKind::EvalSha(_) | CommandKind::Eval(_) => Reply::Integer(1),
            };
            pending.push_back((transmit.node, transmit.request, reply));
        }
        if outcome.is_none() {
            outcome = op.poll_outcome();
        }
        if let Some(done) = outcome.take() {
            if op.poll_timeout().is_none() {
                return done;
            }
            outcome = Some(done);
        }
        *now += REPLY_LATENCY;
        match pending.pop_front() {
            Some((node, request, reply)) => op.handle_reply(node, request, reply, *now),
            None => op.handle_timeout(*now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_grants_both_rounds() {
        // Both decide at a quorum; the release's other nodes are still answered after it.
        assert_eq!(acquire_release(3, 10), Ok(10 * (2 + 2)));
        assert_eq!(acquire_release(5, 10), Ok(10 * (3 + 3)));
    }
}
