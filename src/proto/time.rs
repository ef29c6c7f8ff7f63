//! The one `Instant` type of the core.

/// A monotonic instant: `std::time::Instant` natively, `web_time::Instant` on
/// `wasm32-unknown-unknown` (where std's has no clock behind it). The core only ever receives
/// instants as arguments and compares or offsets them.
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub use std::time::Instant;

/// A monotonic instant: `std::time::Instant` natively, `web_time::Instant` on
/// `wasm32-unknown-unknown` (where std's has no clock behind it). The core only ever receives
/// instants as arguments and compares or offsets them.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub use web_time::Instant;
