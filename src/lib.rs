#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! quorumlock
pub mod proto;
