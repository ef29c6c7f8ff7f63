//! Decoding the replies the JavaScript transport hands back.
//!
//! The transport (`js/transport.js`) normalises whatever an executor does — resolve, reject,
//! throw, answer garbage — into a pair `[tag, payload]`, so this side only has to read that
//! pair. Anything else still decodes, as an unexpected reply: input from JavaScript never
//! makes the module trap.

use js_sys::Array;
use quorumlock::proto::Reply;
use wasm_bindgen::{JsCast, JsValue};

const OK: u32 = 0;
const NIL: u32 = 1;
const INTEGER: u32 = 2;
const SERVER_ERROR: u32 = 3;
const IO_ERROR: u32 = 4;
const UNEXPECTED: u32 = 5;

/// Details longer than this are cut: a report must stay readable whatever a node sends.
const MAX_DETAIL: usize = 200;

/// The reply a resolved transport promise stands for.
pub(crate) fn from_resolved(value: &JsValue) -> Reply {
    let Some(pair) = value.dyn_ref::<Array>().filter(|pair| pair.length() == 2) else {
        return Reply::Unexpected("malformed transport reply".to_owned());
    };
    let tag = pair.get(0).as_f64().unwrap_or(-1.0);
    let payload = pair.get(1);
    let text = || detail(payload.as_string().unwrap_or_default());
    match tag as u32 {
        _ if tag.fract() != 0.0 || tag < 0.0 => {
            Reply::Unexpected("malformed transport reply".to_owned())
        }
        OK => Reply::Ok,
        NIL => Reply::Nil,
        INTEGER => match payload.as_f64() {
            // Integers up to 2^53 are exact in a JavaScript number; the scripts return 0..=N.
            Some(n) if n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_992.0 => {
                Reply::Integer(n as i64)
            }
            _ => Reply::Unexpected("non-integer number".to_owned()),
        },
        SERVER_ERROR => Reply::Error(text()),
        IO_ERROR => Reply::Io(text()),
        UNEXPECTED => Reply::Unexpected(text()),
        _ => Reply::Unexpected("malformed transport reply".to_owned()),
    }
}

/// The reply a rejected transport promise (or a synchronous throw) stands for.
pub(crate) fn from_rejected(error: &JsValue) -> Reply {
    let message = js_sys::Reflect::get(error, &JsValue::from_str("message"))
        .ok()
        .and_then(|m| m.as_string())
        .or_else(|| error.as_string())
        .unwrap_or_else(|| "the executor failed".to_owned());
    Reply::Io(detail(message))
}

fn detail(mut text: String) -> String {
    if text.len() > MAX_DETAIL {
        let mut cut = MAX_DETAIL;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}
