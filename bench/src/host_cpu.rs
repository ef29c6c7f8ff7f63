//! How busy the whole machine was, to tell a quiet measurement from a disturbed one.
//!
//! The bench runs one client at a time, so during a measured window the cores should be busy
//! with that client and the Redis nodes only. Whatever else the machine did in the window
//! (another build, another test run) is "other" CPU, and a row measured with much of it is
//! flagged in the report.

use std::time::Duration;

use nix::unistd::{sysconf, SysconfVar};

/// CPU time all cores spent busy (not idle, not waiting for I/O) since boot, from
/// `/proc/stat`; `None` where that file does not exist.
pub fn busy_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks_per_second = sysconf(SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
    busy_ticks(&stat).map(|ticks| Duration::from_secs_f64(ticks as f64 / ticks_per_second as f64))
}

/// Sums the busy fields of the first (all-cores) `cpu` line: user, nice, system, irq, softirq
/// and steal; idle and iowait are left out, and guest time is already inside user.
fn busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    let field = |index: usize| fields.get(index).copied().unwrap_or(0);
    Some(field(0) + field(1) + field(2) + field(5) + field(6) + field(7))
}

#[cfg(test)]
mod tests {
    use super::busy_ticks;

    #[test]
    fn idle_and_iowait_are_not_busy() {
        let stat = "cpu  100 20 30 4000 50 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(busy_ticks(stat), Some(100 + 20 + 30 + 6 + 7 + 8));
    }
}
