//! Image decoding, orientation and resizing: encoded bytes in, RGB8 out.

mod codecs;
mod decode;
mod encode;
mod error;
mod format;
mod geometry;
mod hashes;
mod jpeg;
mod metadata;
mod options;
mod orientation;
mod pixels;
mod plausible;
mod resize;
mod strip;

pub use decode::{decode, decode_into, probe, Decoded};
pub use encode::{
    encode, encode_jpeg, encode_jpeg_sampled, encode_png, encode_webp, EncodeError, EncodeFormat,
};
pub use error::{DecodeError, ERROR_KINDS};
pub use format::{sniff, Format};
pub use geometry::{random_resized_crop_box, CropBox};
pub use hashes::{HashRequest, ImageHashes, HASHES};
pub use options::{
    default_resize_shorter, DecodeOptions, Filter, Geometry, ImageOptions, DEFAULT_MAX_PIXELS,
    FILTERS, MODES,
};
pub use orientation::Orientation;
pub use pixels::RgbImage;
pub use strip::strip_metadata;
