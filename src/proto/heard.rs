//! What a waiter has heard of the last release of one resource.
//!
//! Each node runs the release script itself, so a release is announced once per node (see
//! [`RELEASED_CHANNEL_PREFIX`](super::RELEASED_CHANNEL_PREFIX)). A waiter should retry once a
//! quorum of nodes has announced it — earlier, its attempt would still find the keys on the
//! others — and only once, not once per node. A release made in the waiter's own process is
//! known at once, and its announcements then add nothing.

/// The last release of one resource heard of, and from which nodes.
#[derive(Debug, Default)]
pub struct LastRelease(Option<Heard>);

#[derive(Debug)]
struct Heard {
    token: String,
    /// Bit `i` set: node `i` announced it; every bit: it was made here.
    nodes: u64,
    /// Whether it was already counted.
    counted: bool,
}

impl LastRelease {
    /// Node `node` announced that the lock held under `token` was released. Returns whether the
    /// release counts now: once `quorum` nodes have announced it, and only the first time. A
    /// node past the 64th is not counted; such a release still reaches waiters as they retry.
    pub fn announced(&mut self, node: usize, token: &str, quorum: usize) -> bool {
        let bit = u32::try_from(node)
            .ok()
            .and_then(|node| 1u64.checked_shl(node))
            .unwrap_or(0);
        self.heard(token, bit, quorum)
    }

    /// The lock held under `token` was released in this process. Returns whether the release
    /// counts now: unless the nodes' announcements already made it count.
    pub fn released_here(&mut self, token: &str) -> bool {
        self.heard(token, u64::MAX, 1)
    }

    fn heard(&mut self, token: &str, nodes: u64, quorum: usize) -> bool {
        let heard = match &mut self.0 {
            Some(heard) if heard.token == token => heard,
            other => other.insert(Heard {
                token: token.to_owned(),
                nodes: 0,
                counted: false,
            }),
        };
        heard.nodes |= nodes;
        if heard.counted || (heard.nodes.count_ones() as usize) < quorum {
            return false;
        }
        heard.counted = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::LastRelease;

    #[test]
    fn a_release_counts_once_a_quorum_announced_it_and_only_once() {
        let mut last = LastRelease::default();
        assert!(!last.announced(0, "a", 2));
        assert!(
            !last.announced(0, "a", 2),
            "the same node twice is one node"
        );
        assert!(last.announced(2, "a", 2));
        assert!(!last.announced(1, "a", 2));
        assert!(!last.released_here("a"));
        // A new release starts over.
        assert!(!last.announced(1, "b", 2));
        assert!(last.announced(0, "b", 2));
        assert!(
            !last.announced(64, "c", 1),
            "nodes past the 64th are not counted"
        );
    }

    #[test]
    fn a_release_made_here_counts_at_once_and_its_announcements_add_nothing() {
        let mut last = LastRelease::default();
        assert!(last.released_here("a"));
        for node in 0..3 {
            assert!(!last.announced(node, "a", 2));
        }
        assert!(!last.announced(0, "b", 2));
        assert!(
            last.released_here("b"),
            "announced by too few nodes to have counted yet"
        );
    }
}
