#![warn(missing_docs)]
//! The quorumlock core for JavaScript runtimes (work in progress).
