//! Which hashes a decode computes, and where they end up. The hash functions
//! themselves live in `crate::hashing`; this wires them into the decode pass.

use super::pixels::RgbImage;
use crate::error::CoreError;
use crate::hashing::{self, Pdq256};

/// Hash names callers may ask for, in the order their columns appear.
pub const HASHES: [&str; 9] = [
    "xxh3",
    "blake3",
    "pixels",
    "ahash",
    "dhash",
    "phash",
    "pdq",
    "pdq_dihedral",
    "pdq_fast",
];

/// `pdq_fast` decodes a JPEG at the smallest DCT scale (1/2, 1/4, 1/8) that
/// keeps both sides at least this long. Measured on 32 Instagram-like
/// 1080x1080 photos (1/4 scale): Hamming distance to the exact PDQ median 5,
/// at most 14; at 1/8 scale (135 px) the median was 28, and 500x375 photos
/// at 1/2 scale (188 px) gave 18: too far from PDQ's usual radius of 31.
pub const PDQ_FAST_MIN_SIDE: u32 = 256;

/// The hashes to compute for every record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashRequest {
    /// xxh3-128 of the encoded bytes.
    pub xxh3: bool,
    /// BLAKE3 of the encoded bytes.
    pub blake3: bool,
    /// xxh3-128 of the decoded RGB pixels (and size).
    pub pixels: bool,
    /// `imagehash.average_hash`.
    pub ahash: bool,
    /// `imagehash.dhash`.
    pub dhash: bool,
    /// `imagehash.phash`.
    pub phash: bool,
    /// PDQ hash and quality.
    pub pdq: bool,
    /// The eight dihedral PDQ hashes (orig, rot90, rot180, rot270, flipx,
    /// flipy, flipp, flipm).
    pub pdq_dihedral: bool,
    /// PDQ hash and quality of a JPEG decoded at a reduced DCT scale
    /// ([`PDQ_FAST_MIN_SIDE`]); the exact PDQ where no scale applies (other
    /// formats, smaller JPEGs).
    pub pdq_fast: bool,
}

impl HashRequest {
    pub fn from_names<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashRequest, CoreError> {
        let mut r = HashRequest::default();
        for name in names {
            match name {
                "xxh3" | "xxh3_128" => r.xxh3 = true,
                "blake3" => r.blake3 = true,
                "pixels" | "pixel_xxh3" => r.pixels = true,
                "ahash" | "average_hash" => r.ahash = true,
                "dhash" => r.dhash = true,
                "phash" => r.phash = true,
                "pdq" => r.pdq = true,
                "pdq_dihedral" => r.pdq_dihedral = true,
                "pdq_fast" => r.pdq_fast = true,
                other => {
                    return Err(CoreError::Unknown {
                        what: "hash",
                        name: other.into(),
                    })
                }
            }
        }
        Ok(r)
    }

    /// Whether any hash needs every decoded pixel at full size (`pdq_fast`
    /// may not: see [`crate::image::decode`]).
    pub fn needs_pixels(&self) -> bool {
        self.pixels || self.ahash || self.dhash || self.phash || self.pdq || self.pdq_dihedral
    }
}

/// The hashes of one record; `None` where not asked for or not computable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageHashes {
    pub xxh3: Option<[u8; 16]>,
    pub blake3: Option<[u8; 32]>,
    pub pixels: Option<[u8; 16]>,
    pub ahash: Option<u64>,
    pub dhash: Option<u64>,
    pub phash: Option<u64>,
    pub pdq: Option<(Pdq256, u8)>,
    pub pdq_dihedral: Option<[Pdq256; 8]>,
    pub pdq_fast: Option<(Pdq256, u8)>,
}

pub fn hash_bytes(data: &[u8], request: &HashRequest, out: &mut ImageHashes) {
    if request.xxh3 {
        out.xxh3 = Some(hashing::xxh3_128_bytes(data));
    }
    if request.blake3 {
        out.blake3 = Some(hashing::blake3_bytes(data));
    }
}

/// Hashes the displayed picture. It is in RGB as Pillow's `convert("RGB")`
/// gives it (alpha dropped, not composited), which is what `imagehash` and
/// `pdqhash` see.
pub fn hash_pixels(img: &RgbImage, request: &HashRequest, out: &mut ImageHashes) {
    let (w, h) = (img.width as usize, img.height as usize);
    if request.pixels {
        out.pixels = Some(hashing::pixel_hash(img.width, img.height, &img.data));
    }
    if request.ahash || request.dhash || request.phash {
        let l = hashing::luma_l(&img.data);
        out.ahash = request.ahash.then(|| hashing::average_hash(&l, w, h));
        out.dhash = request.dhash.then(|| hashing::difference_hash(&l, w, h));
        out.phash = request.phash.then(|| hashing::dct_hash(&l, w, h));
    }
    // `pdq_fast` is the exact PDQ here unless a reduced decode gave it.
    let fast = request.pdq_fast && out.pdq_fast.is_none();
    if request.pdq || request.pdq_dihedral || fast {
        let pdq = hashing::pdq_from_rgb(&img.data, w, h);
        if request.pdq_dihedral {
            out.pdq_dihedral = Some(pdq.dihedral());
        }
        if request.pdq {
            out.pdq = Some((pdq.hash, pdq.quality));
        }
        if fast {
            out.pdq_fast = Some((pdq.hash, pdq.quality));
        }
    }
}

/// `pdq_fast` of a picture decoded at a reduced scale (see
/// [`PDQ_FAST_MIN_SIDE`]).
pub fn hash_reduced(img: &RgbImage, out: &mut ImageHashes) {
    let pdq = hashing::pdq_from_rgb(&img.data, img.width as usize, img.height as usize);
    out.pdq_fast = Some((pdq.hash, pdq.quality));
}
