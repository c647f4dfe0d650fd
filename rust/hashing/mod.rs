//! Image hashing: exact hashes of bytes and pixels, `imagehash`-identical
//! perceptual hashes, and Meta's PDQ.

mod exact;
mod pdq;
mod pdq_avx2;
mod pdq_strips;
mod perceptual;
mod pillow;
#[cfg(test)]
mod reference_tests;

pub use exact::{blake3_bytes, pixel_hash, xxh3_128_bytes};
pub use pdq::{luma_from_rgb, pdq_from_luma, pdq_from_rgb, Pdq256, PdqResult, DIHEDRAL};
pub use perceptual::{average_hash, dct_hash, difference_hash};
pub use pillow::{luma_l, resize_l, PillowFilter};
