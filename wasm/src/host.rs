//! Everything the module takes from its JavaScript host: the transport to the Redis nodes,
//! timers, the clock and the CSPRNG. Keeping them in one file keeps every other module free of
//! host calls, and makes this the one place allowed to read the clock.

use js_sys::Promise;
use quorumlock::proto::{Instant, Token};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// The JavaScript side of the node connections: `send(node, args)` hands one command (an
    /// array of strings) to the executor of node `node` and returns a promise of its tagged
    /// reply (see `reply.rs`).
    pub type Transport;

    /// Sends one command; the promise is expected never to reject, but a rejection or a
    /// synchronous throw still only counts as a failed vote.
    #[wasm_bindgen(method, catch)]
    pub fn send(this: &Transport, node: u32, args: js_sys::Array) -> Result<Promise, JsValue>;

    #[wasm_bindgen(js_name = setTimeout)]
    pub(crate) fn set_timeout(handler: &JsValue, delay_ms: f64) -> JsValue;

    #[wasm_bindgen(js_name = clearTimeout)]
    pub(crate) fn clear_timeout(handle: &JsValue);

    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues, catch)]
    fn get_random_values(buffer: &mut [u8]) -> Result<JsValue, JsValue>;
}

/// The current monotonic time (`performance.now()` behind `web_time` on wasm32).
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// A fresh 128-bit token and a jitter seed from `crypto.getRandomValues`.
pub(crate) fn token_and_seed() -> Result<(Token, u64), JsValue> {
    let mut bytes = [0u8; 24];
    get_random_values(&mut bytes)?;
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
/// back to the clock rather than failing an extension.
pub(crate) fn seed() -> u64 {
    match token_and_seed() {
        Ok((_, seed)) => seed,
        Err(_) => (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64,
    }
}
