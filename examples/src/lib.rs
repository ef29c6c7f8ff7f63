#![forbid(unsafe_code)]
//! Shared pieces of the runnable examples.
