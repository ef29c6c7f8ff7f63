//! Decoding the replies JavaScript reports.
//!
//! The engine (`js/engine.js`) reduces whatever an executor does — resolve, reject, throw,
//! answer garbage — to a tag, a number and a text, so this side only has to read those. Any
//! other combination still decodes, as an unexpected reply: input from JavaScript never makes
//! the module trap.

use quorumlock::proto::Reply;

const OK: u32 = 0;
const NIL: u32 = 1;
const INTEGER: u32 = 2;
const SERVER_ERROR: u32 = 3;
const IO_ERROR: u32 = 4;
const UNEXPECTED: u32 = 5;

/// Details longer than this are cut: a report must stay readable whatever a node sends.
const MAX_DETAIL: usize = 200;

/// The reply that `tag` with its `number` (integers) or `text` (errors) stands for.
pub(crate) fn decode(tag: u32, number: f64, text: Option<String>) -> Reply {
    let text = || detail(text.unwrap_or_default());
    match tag {
        OK => Reply::Ok,
        NIL => Reply::Nil,
        // Integers up to 2^53 are exact in a JavaScript number; the scripts return small ones.
        INTEGER if number.fract() == 0.0 && number.abs() <= 9_007_199_254_740_992.0 => {
            Reply::Integer(number as i64)
        }
        INTEGER => Reply::Unexpected("non-integer number".to_owned()),
        SERVER_ERROR => Reply::Error(text()),
        IO_ERROR => Reply::Io(text()),
        UNEXPECTED => Reply::Unexpected(text()),
        _ => Reply::Unexpected("malformed transport reply".to_owned()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_decode_to_replies() {
        assert_eq!(decode(OK, 0.0, None), Reply::Ok);
        assert_eq!(decode(NIL, 0.0, None), Reply::Nil);
        assert_eq!(decode(INTEGER, 3.0, None), Reply::Integer(3));
        assert!(matches!(decode(INTEGER, 0.5, None), Reply::Unexpected(_)));
        assert_eq!(
            decode(SERVER_ERROR, 0.0, Some("NOSCRIPT x".to_owned())),
            Reply::Error("NOSCRIPT x".to_owned())
        );
        assert!(matches!(decode(99, 0.0, None), Reply::Unexpected(_)));
        match decode(IO_ERROR, 0.0, Some("é".repeat(300))) {
            Reply::Io(text) => assert!(text.len() <= MAX_DETAIL + '…'.len_utf8()),
            other => panic!("{other:?}"),
        }
    }
}
