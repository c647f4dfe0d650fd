//! Many records at once: parallel decoding into one pixel allocation, and the
//! Arrow record batch that hands it to Python without a copy.

mod arrow;
mod decode;
mod memory;
mod pool;
mod source;

pub use decode::{decode_batch, DecodedBatch};
pub use pool::{default_threads, run_in_pool, THREADS_ENV};
pub use source::{BytesSource, PathSource, RecordSource};
