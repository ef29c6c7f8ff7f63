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

/// Deletes each key that still holds the token (compare-and-delete). Returns how many keys
/// were deleted; deleting nothing is not an error, so release is idempotent.
pub static RELEASE: Script = Script {
    name: "release",
    source: r#"local released = 0
for _, key in ipairs(KEYS) do
  if redis.call("GET", key) == ARGV[1] then
    redis.call("DEL", key)
    released = released + 1
  end
end
return released
"#,
    sha1: "7909fc9aedbb7d4a809a90c1397894453e58a483",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_sources() {
        for script in [&ACQUIRE, &EXTEND, &RELEASE] {
            let digest = sha1_smol::Sha1::from(script.source).digest().to_string();
            assert_eq!(script.sha1, digest, "digest of the {} script", script.name);
        }
    }
}
