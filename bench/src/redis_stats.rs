//! What the Redis nodes did during a measured window, from `INFO` before and after.

use std::collections::BTreeMap;

use serde::Serialize;

/// Counters of one node at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeCounters {
    /// `used_cpu_user + used_cpu_sys`, in seconds.
    pub cpu_s: f64,
    /// `total_commands_processed`: every command run, including those called from scripts.
    pub commands: u64,
    /// `calls` of each command in `INFO commandstats`.
    pub calls: BTreeMap<String, u64>,
}

impl NodeCounters {
    /// Reads the `cpu`, `stats` and `commandstats` sections of an `INFO` reply.
    pub fn parse(info: &str) -> Self {
        let mut counters = Self::default();
        for line in info.lines() {
            let Some((field, value)) = line.trim_end().split_once(':') else {
                continue;
            };
            match field {
                "used_cpu_user" | "used_cpu_sys" => counters.cpu_s += value.parse().unwrap_or(0.0),
                "total_commands_processed" => counters.commands = value.parse().unwrap_or(0),
                _ => {
                    if let Some(command) = field.strip_prefix("cmdstat_") {
                        let calls = value
                            .split(',')
                            .find_map(|pair| pair.strip_prefix("calls="))
                            .and_then(|calls| calls.parse().ok())
                            .unwrap_or(0);
                        counters.calls.insert(command.to_owned(), calls);
                    }
                }
            }
        }
        counters
    }
}

/// What all nodes did between two snapshots, the probe's own `INFO` calls left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RedisDelta {
    /// CPU time of all nodes together, in microseconds.
    pub cpu_us: f64,
    /// Commands run on all nodes together, including those called from scripts.
    pub commands: u64,
    /// The same, per command name.
    pub calls: BTreeMap<String, u64>,
}

impl RedisDelta {
    /// Sums `after − before` over the nodes.
    pub fn between(before: &[NodeCounters], after: &[NodeCounters]) -> Self {
        let mut delta = Self::default();
        for (before, after) in before.iter().zip(after) {
            delta.cpu_us += (after.cpu_s - before.cpu_s).max(0.0) * 1e6;
            let info_calls = calls_between(before, after, "info");
            delta.commands += after
                .commands
                .saturating_sub(before.commands)
                .saturating_sub(info_calls);
            for (command, &calls) in &after.calls {
                let made = calls.saturating_sub(before.calls.get(command).copied().unwrap_or(0));
                if made > 0 && command != "info" {
                    *delta.calls.entry(command.clone()).or_default() += made;
                }
            }
        }
        delta
    }
}

fn calls_between(before: &NodeCounters, after: &NodeCounters, command: &str) -> u64 {
    let calls = |counters: &NodeCounters| counters.calls.get(command).copied().unwrap_or(0);
    calls(after).saturating_sub(calls(before))
}

/// One plain connection per node, for snapshots only.
pub struct Probe {
    connections: Vec<redis::Connection>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("nodes", &self.connections.len())
            .finish()
    }
}

impl Probe {
    /// Connects to every node.
    pub fn connect(urls: &[String]) -> Result<Self, String> {
        let connections = urls
            .iter()
            .map(|url| {
                redis::Client::open(url.as_str())
                    .and_then(|client| client.get_connection())
                    .map_err(|error| format!("{url}: {error}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { connections })
    }

    /// The counters of every node now.
    pub fn snapshot(&mut self) -> Result<Vec<NodeCounters>, String> {
        self.connections
            .iter_mut()
            .map(|connection| {
                redis::cmd("INFO")
                    .arg("cpu")
                    .arg("stats")
                    .arg("commandstats")
                    .query::<String>(connection)
                    .map(|info| NodeCounters::parse(&info))
                    .map_err(|error| error.to_string())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:0.500000\r\n# Stats\r\ntotal_commands_processed:10\r\n# Commandstats\r\ncmdstat_set:calls=4,usec=7,usec_per_call=1.75\r\ncmdstat_info:calls=6,usec=57\r\n";
    const AFTER: &str = "# CPU\r\nused_cpu_sys:1.750000\r\nused_cpu_user:0.750000\r\n# Stats\r\ntotal_commands_processed:17\r\n# Commandstats\r\ncmdstat_set:calls=10,usec=7,usec_per_call=1.75\r\ncmdstat_info:calls=7,usec=57\r\n";

    #[test]
    fn info_is_parsed() {
        let counters = NodeCounters::parse(BEFORE);
        assert_eq!(counters.cpu_s, 2.0);
        assert_eq!(counters.commands, 10);
        assert_eq!(counters.calls.get("set"), Some(&4));
    }

    #[test]
    fn the_probes_own_info_calls_are_left_out() {
        let before = [NodeCounters::parse(BEFORE)];
        let after = [NodeCounters::parse(AFTER)];
        let delta = RedisDelta::between(&before, &after);
        assert_eq!(delta.commands, 6);
        assert_eq!(delta.calls.get("set"), Some(&6));
        assert!(!delta.calls.contains_key("info"));
        assert!((delta.cpu_us - 500_000.0).abs() < 1.0);
    }
}
