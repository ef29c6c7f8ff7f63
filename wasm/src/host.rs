//! Everything the module takes from its JavaScript host: the transport to the Redis nodes, the
//! clocks and the CSPRNG. Keeping them in one file keeps every other module free of host calls,
//! and makes this the one place allowed to read the clock.

use std::cell::RefCell;

use quorumlock::proto::{Instant, Token};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// The JavaScript side of the node connections (`js/engine.js`). The core never waits on
    /// it: it hands over commands, and JavaScript later reports each reply, a deadline that
    /// passed or a cancellation by calling back into the core.
    pub type Transport;

    /// Sends command number `command` of operation `op` to node `node`; the reply is to be
    /// reported with `ticket`. Must not call back into the core synchronously.
    #[wasm_bindgen(method)]
    pub fn send(this: &Transport, op: u32, node: u32, ticket: u32, command: u32);

    /// Defines command number `command` of operation `op`: its arguments, each written as its
    /// length in UTF-16 code units, a colon, and the argument (`3:SET5:key:1…`).
    #[wasm_bindgen(method)]
    pub fn define(this: &Transport, op: u32, command: u32, args: &str);

    /// Defines command number `command` of operation `op` by its shape (see `template.rs`):
    /// `name` (0 `SET`, 1 `EVALSHA`, 2 `EVAL`), the number of its `script`, whether the keys'
    /// waiter `markers` follow them, and its `ttl` (-1 for none). The keys are the operation's,
    /// the token the one given by [`Transport::token`] or with the lock.
    #[wasm_bindgen(method, js_name = defineShape)]
    pub fn define_shape(
        this: &Transport,
        op: u32,
        command: u32,
        name: u32,
        script: u32,
        markers: bool,
        ttl: f64,
    );

    /// Script number `number` of commands defined by shape: its SHA1 digest (for `EVALSHA`)
    /// and its source (for `EVAL`). Given once, before the first command to use it.
    #[wasm_bindgen(method)]
    pub fn script(this: &Transport, number: u32, sha1: &str, source: &str);

    /// The token of operation `op`, before its first command defined by shape.
    #[wasm_bindgen(method)]
    pub fn token(this: &Transport, op: u32, token: &str);

    /// Acquire `op`, pausing between attempts, was woken by a release and has an attempt to
    /// send: JavaScript is to step it, once the current call into the core has returned.
    #[wasm_bindgen(method)]
    pub fn wake(this: &Transport, op: u32);

    /// Somebody now waits for `resource`: JavaScript is to subscribe to its releases by other
    /// processes (see `RedlockCore::listen`). Must not call back into the core synchronously.
    #[wasm_bindgen(method)]
    pub fn watch(this: &Transport, resource: &str);

    /// Nobody waits for `resource` any more: JavaScript is to unsubscribe.
    #[wasm_bindgen(method)]
    pub fn unwatch(this: &Transport, resource: &str);

    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;

    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues, catch)]
    fn get_random_values(buffer: &mut [u8]) -> Result<JsValue, JsValue>;
}

/// The current monotonic time (`performance.now()` behind `web_time` on wasm32).
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// Maps core instants to `performance.now()` milliseconds, the clock JavaScript arms its
/// deadlines on.
pub(crate) struct Clock {
    origin: Instant,
    origin_ms: f64,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            origin: now(),
            origin_ms: performance_now(),
        }
    }

    /// `instant` as a `performance.now()` reading.
    pub(crate) fn to_ms(&self, instant: Instant) -> f64 {
        let since = instant.saturating_duration_since(self.origin);
        self.origin_ms + since.as_secs_f64() * 1000.0
    }
}

/// Random bytes fetched per `crypto.getRandomValues` call: enough for 170 locks.
const POOL_BYTES: usize = 4080;

struct Pool {
    bytes: Vec<u8>,
    at: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { bytes: Vec::new(), at: 0 }) };
}

/// `N` bytes from a pool of `crypto.getRandomValues` output, refilled when used up. Each byte is
/// handed out once.
fn random<const N: usize>() -> Result<[u8; N], JsValue> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.bytes.len() < pool.at + N {
            let mut fresh = vec![0u8; POOL_BYTES];
            // getRandomValues fills at most 65,536 bytes per call; the pool is far below that.
            get_random_values(&mut fresh)?;
            pool.bytes = fresh;
            pool.at = 0;
        }
        let at = pool.at;
        let mut out = [0u8; N];
        out.copy_from_slice(&pool.bytes[at..at + N]);
        // Wipe what was handed out, so the pool never holds a token still in use.
        pool.bytes[at..at + N].fill(0);
        pool.at = at + N;
        Ok(out)
    })
}

/// A fresh 128-bit token and a jitter seed from the CSPRNG.
pub(crate) fn token_and_seed() -> Result<(Token, u64), JsValue> {
    let bytes = random::<24>()?;
    let mut token_bits = [0u8; 16];
    let mut seed_bits = [0u8; 8];
    token_bits.copy_from_slice(&bytes[..16]);
    seed_bits.copy_from_slice(&bytes[16..]);
    Ok((
        Token::from_random_bits(u128::from_le_bytes(token_bits)),
        u64::from_le_bytes(seed_bits),
    ))
}

/// A jitter seed alone. Jitter needs spread, not secrecy, so a host without a CSPRNG falls
/// back to `Math.random` rather than failing an extension.
pub(crate) fn seed() -> u64 {
    match random::<8>() {
        Ok(bits) => u64::from_le_bytes(bits),
        Err(_) => (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64,
    }
}
