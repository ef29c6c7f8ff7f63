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
    fill_from_pool(&mut bytes)?;
    let (token_bytes, seed_bytes) = bytes.split_at(16);
    let token_bits = u128::from_le_bytes(token_bytes.try_into().unwrap_or_default());
    let seed = u64::from_le_bytes(seed_bytes.try_into().unwrap_or_default());
    Ok((Token::from_random_bits(token_bits), seed))
}

/// A jitter seed alone (extensions reuse the lock's token).
pub(crate) fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    // Jitter needs spread, not secrecy: without OS entropy a fixed seed still jitters.
    match fill_from_pool(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => 0x9e37_79b9_7f4a_7c15,
    }
}

/// Bytes drawn from the operating system's CSPRNG a page at a time, handed out once each: one
/// `getrandom` call per 170 locks instead of one per lock.
struct Pool {
    bytes: Box<[u8; POOL_BYTES]>,
    used: usize,
    /// A forked child must not hand out its parent's bytes again.
    pid: u32,
}

const POOL_BYTES: usize = 4096;

thread_local! {
    static POOL: std::cell::RefCell<Option<Pool>> = const { std::cell::RefCell::new(None) };
}

#[allow(clippy::disallowed_methods)]
fn fill_from_pool(out: &mut [u8]) -> Result<(), getrandom::Error> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let pid = std::process::id();
        let fresh = match pool.as_ref() {
            Some(pool) => pool.pid != pid || pool.used + out.len() > POOL_BYTES,
            None => true,
        };
        if fresh {
            let mut bytes = Box::new([0u8; POOL_BYTES]);
            getrandom::fill(&mut bytes[..])?;
            *pool = Some(Pool {
                bytes,
                used: 0,
                pid,
            });
        }
        let Some(pool) = pool.as_mut() else {
            return Ok(());
        };
        let taken = &mut pool.bytes[pool.used..pool.used + out.len()];
        out.copy_from_slice(taken);
        taken.fill(0);
        pool.used += out.len();
        Ok(())
    })
}
