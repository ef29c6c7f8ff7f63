//! CPU time of the current process.

use std::time::Duration;

use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::time::TimeValLike;

/// User plus system CPU time this process has used so far, across all its threads.
pub fn process_cpu_time() -> Duration {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let micros =
                usage.user_time().num_microseconds() + usage.system_time().num_microseconds();
            Duration::from_micros(u64::try_from(micros).unwrap_or(0))
        }
        // getrusage(RUSAGE_SELF) only fails for an invalid `who`; a zero reading shows up as
        // an obviously wrong figure rather than a crash mid-run.
        Err(_) => Duration::ZERO,
    }
}
