//! What the caller asks for: output geometry, filter and decode switches.

use super::hashes::HashRequest;

/// Pillow's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`).
pub const DEFAULT_MAX_PIXELS: u64 = 178_956_970;

/// Resampling filters, named as in Pillow and torchvision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    Nearest,
    Bilinear,
    /// Keys cubic with a = -0.5 (Pillow's BICUBIC, Catmull-Rom).
    Bicubic,
    /// Lanczos with 3 lobes (Pillow's LANCZOS).
    Lanczos,
    /// Box / area averaging (OpenCV's INTER_AREA when shrinking).
    Box,
    Hamming,
}

impl Filter {
    pub fn from_name(name: &str) -> Option<Filter> {
        Some(match name {
            "nearest" => Filter::Nearest,
            "bilinear" => Filter::Bilinear,
            "bicubic" => Filter::Bicubic,
            "lanczos" => Filter::Lanczos,
            "box" | "area" => Filter::Box,
            "hamming" => Filter::Hamming,
            _ => return None,
        })
    }
}

/// Output geometry. Sizes are (height, width) of the output, as in torchvision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Geometry {
    /// Keep each image's own (oriented) size.
    Original,
    /// torchvision `Resize(shorter) + CenterCrop((height, width))`.
    CenterCrop {
        height: u32,
        width: u32,
        shorter: u32,
    },
    /// Stretch to exactly (height, width).
    Resize { height: u32, width: u32 },
    /// Fit within (height, width) keeping the aspect ratio; pad with the background.
    Letterbox { height: u32, width: u32 },
    /// torchvision `RandomResizedCrop` then a horizontal flip with probability
    /// `flip_p`, seeded per record from `(seed, record index)`.
    RandomResizedCrop {
        height: u32,
        width: u32,
        scale: (f64, f64),
        ratio: (f64, f64),
        flip_p: f64,
        seed: u64,
    },
}

impl Geometry {
    /// The fixed output size (height, width), if every record has the same one.
    pub fn fixed_size(&self) -> Option<(u32, u32)> {
        match *self {
            Geometry::Original => None,
            Geometry::CenterCrop { height, width, .. }
            | Geometry::Resize { height, width }
            | Geometry::Letterbox { height, width }
            | Geometry::RandomResizedCrop { height, width, .. } => Some((height, width)),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ImageOptions {
    pub geometry: Geometry,
    pub filter: Filter,
    pub apply_orientation: bool,
    /// Decode JPEGs at 1/2, 1/4 or 1/8 scale in the DCT domain when the output
    /// is small enough.
    pub reduced_decode: bool,
    /// Colour under transparent pixels and around letterboxed images.
    pub background: [u8; 3],
    pub max_pixels: u64,
    /// Hashes computed in the same pass.
    pub hashes: HashRequest,
    /// Produce pixels at all (off: only hashes and metadata).
    pub output_pixels: bool,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            geometry: Geometry::Original,
            filter: Filter::Bilinear,
            apply_orientation: true,
            reduced_decode: true,
            background: [255, 255, 255],
            max_pixels: DEFAULT_MAX_PIXELS,
            hashes: HashRequest::default(),
            output_pixels: true,
        }
    }
}
