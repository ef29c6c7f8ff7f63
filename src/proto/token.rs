//! The lock value that identifies one holder.

use std::fmt;
use std::sync::Arc;

/// The random value stored under every locked key. Only the holder of the token can extend or
/// release the lock. Printable ASCII, so redsync, node-redlock and redis-cli all read it the same.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Token(Arc<str>);

/// Why a string cannot be a lock token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The token was empty.
    Empty,
    /// The token was longer than [`Token::MAX_LEN`] bytes.
    TooLong(usize),
    /// The token held a byte outside printable ASCII (0x21..=0x7e).
    NotPrintable {
        /// Byte offset of the first offending byte.
        at: usize,
    },
}

impl Token {
    /// Longest accepted token, in bytes.
    pub const MAX_LEN: usize = 512;

    /// A token made from 128 random bits, as 32 lowercase hex digits. The driver supplies the
    /// bits from a CSPRNG; the core never draws them itself.
    pub fn from_random_bits(bits: u128) -> Self {
        Self(Arc::from(format!("{bits:032x}")))
    }

    /// Uses a caller-chosen value (for example to share a lock with another client library).
    pub fn new(value: impl Into<String>) -> Result<Self, TokenError> {
        let value = value.into();
        if value.is_empty() {
            return Err(TokenError::Empty);
        }
        if value.len() > Self::MAX_LEN {
            return Err(TokenError::TooLong(value.len()));
        }
        if let Some(at) = value.bytes().position(|b| !(0x21..=0x7e).contains(&b)) {
            return Err(TokenError::NotPrintable { at });
        }
        Ok(Self(Arc::from(value)))
    }

    /// The token as stored in Redis.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Token").field(&&*self.0).finish()
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("lock token is empty"),
            Self::TooLong(len) => write!(
                f,
                "lock token is {len} bytes long, at most {} are allowed",
                Token::MAX_LEN
            ),
            Self::NotPrintable { at } => {
                write!(f, "lock token has a non-printable byte at offset {at}")
            }
        }
    }
}

impl std::error::Error for TokenError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_32_hex_digits() {
        let token = Token::from_random_bits(0xab);
        assert_eq!(token.as_str().len(), 32);
        assert!(token.as_str().ends_with("ab"));
        assert!(Token::new(token.as_str()).is_ok());
    }

    #[test]
    fn bad_tokens_are_refused() {
        assert_eq!(Token::new(""), Err(TokenError::Empty));
        assert_eq!(Token::new("a b"), Err(TokenError::NotPrintable { at: 1 }));
        assert_eq!(Token::new("é"), Err(TokenError::NotPrintable { at: 0 }));
        assert_eq!(Token::new("x".repeat(513)), Err(TokenError::TooLong(513)));
    }
}
