//! The driver's only reads of the clock and of OS randomness. The core takes both as
//! arguments; keeping them here makes every other read a lint error (see `clippy.toml`).

use crate::proto::{Instant, Token};

/// The current monotonic time.
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// A fresh 128-bit token and a jitter seed, from the operating system's CSPRNG.
#[allow(clippy::disallowed_methods)]
pub(crate) fn token_and_seed() -> Result<(Token, u64), getrandom::Error> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)?;
    let (token_bytes, seed_bytes) = bytes.split_at(16);
    let token_bits = u128::from_le_bytes(token_bytes.try_into().unwrap_or_default());
    let seed = u64::from_le_bytes(seed_bytes.try_into().unwrap_or_default());
    Ok((Token::from_random_bits(token_bits), seed))
}

/// A jitter seed alone (extensions reuse the lock's token).
#[allow(clippy::disallowed_methods)]
pub(crate) fn seed() -> u64 {
    // Jitter needs spread, not secrecy: fall back to the clock if the OS has no entropy.
    getrandom::u64().unwrap_or_else(|_| now().elapsed().as_nanos() as u64)
}
