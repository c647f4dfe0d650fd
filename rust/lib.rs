//! fastprep's Rust core.
//!
//! Everything here is plain Rust tested with `cargo test`; the only PyO3 code
//! is in [`bindings`], compiled with the `python` feature (maturin turns it on).

pub mod batch;
pub mod dedup;
pub mod error;
pub mod hashing;
pub mod hashtags;
pub mod image;
pub mod pool;

#[cfg(feature = "python")]
mod bindings;
