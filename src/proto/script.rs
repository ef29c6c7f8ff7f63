//! The Lua scripts, in one place, with their SHA1 digests.
//!
//! Every script names each key it touches in `KEYS`, as Redis Cluster and Dragonfly require.
//! `ARGV[1]` is always the token; `ARGV[2]`, where present, the TTL in milliseconds.

/// A Lua script as sent with `EVALSHA` (by digest) or `EVAL` (by source).
#[derive(Debug, PartialEq, Eq)]
pub struct Script {
    /// What the script does, for logs and reports.
    pub name: &'static str,
    /// The Lua source, sent with `EVAL` after a `NOSCRIPT` reply.
    pub source: &'static str,
    /// Lowercase hex SHA1 of `source`, sent with `EVALSHA`.
    pub sha1: &'static str,
}

/// Sets every key to the token with a TTL, or none of them if any key exists. Returns 1 when
/// all were set, 0 otherwise.
pub static ACQUIRE: Script = Script {
    name: "acquire",
    source: r#"for _, key in ipairs(KEYS) do
  if redis.call("EXISTS", key) == 1 then
    return 0
  end
end
for _, key in ipairs(KEYS) do
  redis.call("SET", key, ARGV[1], "PX", ARGV[2])
end
return 1
"#,
    sha1: "1a39443447e3ce4a56ca02154384d0d7f8d04049",
};

/// Resets the TTL of every key, but only if every key still holds the token. It never
/// creates a key: a key that vanished means the lock was lost, and re-creating it would
/// silently grant a second holder. Returns 1 when all were extended, 0 otherwise.
pub static EXTEND: Script = Script {
    name: "extend",
    source: r#"for _, key in ipairs(KEYS) do
  if redis.call("GET", key) ~= ARGV[1] then
    return 0
  end
end
for _, key in ipairs(KEYS) do
  redis.call("PEXPIRE", key, ARGV[2])
end
return 1
"#,
    sha1: "377c792dd259a9a7e7f4b6ba4c798544464f8373",
};

/// Prefix of the Pub/Sub channel on which the release script announces a released key: the
/// channel for key `k` is `quorumlock:released:k`, and the message is the released token.
/// Waiters in other processes subscribe to it to retry at once instead of sleeping out their
/// delay.
pub const RELEASED_CHANNEL_PREFIX: &str = "quorumlock:released:";

/// Prefix of the marker a waiter leaves beside a key it found taken (`quorumlock:waiting:k`,
/// set by the clean-up script with the waiter's TTL). The release script deletes it together
/// with the key, in the same `DEL`, and announces the release only when that `DEL` removed
/// both: a release nobody waits for costs the two calls a plain compare-and-delete costs, and
/// builds no Lua table (an `MGET` of key and marker did, and cost Redis about 0.5 µs more per
/// release). The waiters it wakes that lose the next race leave a fresh marker.
pub const WAITING_MARKER_PREFIX: &str = "quorumlock:waiting:";

/// The waiter markers of `keys`, in order.
pub(crate) fn waiting_markers(keys: &[String]) -> std::sync::Arc<[String]> {
    keys.iter()
        .map(|key| format!("{WAITING_MARKER_PREFIX}{key}"))
        .collect()
}

/// Deletes each key that still holds the token (compare-and-delete) with its waiter marker and,
/// where a waiter had left that marker, announces the release on the key's channel. `KEYS` holds the keys, then their
/// markers. Returns how many keys were deleted; deleting nothing is not an error, so release is
/// idempotent.
pub static RELEASE: Script = Script {
    name: "release",
    source: r#"local n = #KEYS / 2
local released = 0
for i = 1, n do
  if redis.call("GET", KEYS[i]) == ARGV[1] then
    released = released + 1
    if redis.call("DEL", KEYS[i], KEYS[n + i]) == 2 then
      redis.call("PUBLISH", "quorumlock:released:" .. KEYS[i], ARGV[1])
    end
  end
end
return released
"#,
    sha1: "c8d605a4f80f1841d1acc9867eb8ff4a04c2cc54",
};

/// Clean-up after a failed acquire attempt: deletes each key that holds the token, like
/// [`RELEASE`] but without any announcement — the lock was never held, and waking other
/// waiters for it would only start futile attempts. For each key held by another owner it
/// leaves a waiter marker (`ARGV[2]`: its lifetime in ms), so that owner's release announces
/// itself. `KEYS` holds the keys, then their markers. Returns the longest remaining TTL in
/// milliseconds among the other owner's keys, `-1` if one never expires, `-2` if none is left:
/// how long the holder may keep this node, at no extra round trip.
pub static CLEAN_UP: Script = Script {
    name: "clean-up",
    source: r#"local n = #KEYS / 2
local longest = -2
for i = 1, n do
  if redis.call("GET", KEYS[i]) == ARGV[1] then
    redis.call("DEL", KEYS[i])
  else
    local ttl = redis.call("PTTL", KEYS[i])
    if ttl ~= -2 then
      redis.call("SET", KEYS[n + i], "1", "PX", ARGV[2])
    end
    if ttl == -1 or longest == -1 then
      longest = -1
    elseif ttl > longest then
      longest = ttl
    end
  end
end
return longest
"#,
    sha1: "5ce7f17e88253212a032ce2bb8a8c8d974209064",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_sources() {
        for script in [&ACQUIRE, &EXTEND, &RELEASE, &CLEAN_UP] {
            let digest = sha1_smol::Sha1::from(script.source).digest().to_string();
            assert_eq!(script.sha1, digest, "digest of the {} script", script.name);
        }
    }

    #[test]
    fn the_release_script_announces_on_the_documented_channel() {
        assert!(RELEASE
            .source
            .contains(&format!("\"{RELEASED_CHANNEL_PREFIX}\" .. KEYS[i]")));
        assert!(!CLEAN_UP.source.contains("PUBLISH"));
        assert!(CLEAN_UP.source.contains("KEYS[n + i]") && RELEASE.source.contains("KEYS[n + i]"));
        assert_eq!(
            &*waiting_markers(&["a".to_owned()]),
            [format!("{WAITING_MARKER_PREFIX}a")]
        );
    }
}
