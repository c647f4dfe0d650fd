//! Many records at once: parallel decoding into one pixel allocation, and the
//! Arrow record batch that hands it to Python without a copy.

mod arrow;
mod decode;
mod encode;
mod memory;
mod normalize;
mod source;

pub use decode::{decode_batch, DecodedBatch};
pub use encode::{encode_batch, encode_frames, Frame};
pub use memory::advise_huge_pages;
pub use normalize::{normalize_frames, normalize_frames_into_planes, Layout, Scale};
pub use source::{BytesSource, PathSource, RecordSource};
