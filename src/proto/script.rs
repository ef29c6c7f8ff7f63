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

/// Prefix of the Pub/Sub channel on which [`RELEASE`] announces a released key: the channel
/// for key `k` is `quorumlock:released:k`, and the message is the released token. Waiters in
/// other processes subscribe to it to retry at once instead of sleeping out their delay.
pub const RELEASED_CHANNEL_PREFIX: &str = "quorumlock:released:";

/// Deletes each key that still holds the token (compare-and-delete) and announces each deleted
/// key on its release channel. Returns how many keys were deleted; deleting nothing is not an
/// error, so release is idempotent.
pub static RELEASE: Script = Script {
    name: "release",
    source: r#"local released = 0
for _, key in ipairs(KEYS) do
  if redis.call("GET", key) == ARGV[1] then
    redis.call("DEL", key)
    redis.call("PUBLISH", "quorumlock:released:" .. key, ARGV[1])
    released = released + 1
  end
end
return released
"#,
    sha1: "7d9576fce25b6b8effbd3bd920f7309826202ce8",
};

/// Clean-up after a failed acquire attempt: deletes each key that holds the token, like
/// [`RELEASE`] but without the announcement — the lock was never held, and waking other
/// waiters for it would only start futile attempts that fail, clean up and wake the next ones
/// in turn. Returns the longest remaining TTL in milliseconds among the keys it left (another
/// owner's), `-1` if one of them never expires, `-2` if none is left: how long the holder may
/// keep this node, at no extra round trip.
pub static CLEAN_UP: Script = Script {
    name: "clean-up",
    source: r#"local longest = -2
for _, key in ipairs(KEYS) do
  if redis.call("GET", key) == ARGV[1] then
    redis.call("DEL", key)
  else
    local ttl = redis.call("PTTL", key)
    if ttl == -1 then
      return -1
    end
    if ttl > longest then
      longest = ttl
    end
  end
end
return longest
"#,
    sha1: "54f61c428ad981204dfce47981a8f4b58d7db041",
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
            .contains(&format!("\"{RELEASED_CHANNEL_PREFIX}\" .. key")));
        assert!(!CLEAN_UP.source.contains("PUBLISH"));
    }
}
