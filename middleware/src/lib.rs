#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! Tower layer guarding HTTP routes with per-resource Redlock locks (work in progress).
