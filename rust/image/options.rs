//! What the caller asks for: output geometry, filter and decode switches.
//!
//! [`DecodeOptions`] is the request as callers spell it (names, an optional
//! size); [`DecodeOptions::resolve`] applies the geometry rules once and gives
//! the [`ImageOptions`] the decoder runs with.

use super::hashes::HashRequest;
use crate::error::CoreError;

/// Pillow's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`).
pub const DEFAULT_MAX_PIXELS: u64 = 178_956_970;

/// Geometry modes, in documentation order.
pub const MODES: [&str; 4] = ["center_crop", "resize", "letterbox", "random_resized_crop"];

/// Resampling filter names offered to callers (`area` is an accepted alias of `box`).
pub const FILTERS: [&str; 6] = [
    "nearest", "bilinear", "bicubic", "lanczos", "box", "hamming",
];

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
    /// Each image keeps its aspect ratio: the shorter side becomes `shorter`
    /// and the longer side is capped at `longer` (torchvision's `Resize(size,
    /// max_size)` rule), never upscaling. Sizes differ per record.
    KeepAspect {
        shorter: Option<u32>,
        longer: Option<u32>,
    },
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
    /// Output (width, height) for a displayed source of `width` x `height`.
    pub fn output_size(&self, width: u32, height: u32) -> (u32, u32) {
        match *self {
            Geometry::Original => (width, height),
            Geometry::KeepAspect { shorter, longer } => {
                super::geometry::keep_aspect_size(width, height, shorter, longer)
            }
            Geometry::CenterCrop { height, width, .. }
            | Geometry::Resize { height, width }
            | Geometry::Letterbox { height, width }
            | Geometry::RandomResizedCrop { height, width, .. } => (width, height),
        }
    }

    /// The fixed output size (height, width), if every record has the same one.
    pub fn fixed_size(&self) -> Option<(u32, u32)> {
        match *self {
            Geometry::Original | Geometry::KeepAspect { .. } => None,
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
    /// A JPEG crop reads the scan data down to the last row, so damage below
    /// the crop is flagged exactly as a full decode flags it. Off: reading
    /// stops after the crop's last row (faster; for files known intact).
    pub read_to_end: bool,
    /// Fixed-size outputs as three planes (`[3, H, W]`, torch's per-image
    /// layout) instead of interleaved `[H, W, 3]`.
    pub channels_first: bool,
    /// Transparent pixels keep their stored colour (alpha dropped, as
    /// Pillow's `convert("RGB")` does) instead of blending over `background`.
    pub drop_alpha: bool,
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
            read_to_end: true,
            channels_first: false,
            drop_alpha: false,
        }
    }
}

/// torchvision's evaluation rule: `Resize(256) + CenterCrop(224)`, scaled.
pub fn default_resize_shorter(height: u32, width: u32) -> u32 {
    (f64::from(height.max(width)) * 256.0 / 224.0).round() as u32
}

impl Geometry {
    /// The geometry `mode` names for an output of `size` (height, width).
    pub fn from_mode(
        mode: &str,
        size: Option<(u32, u32)>,
        options: &DecodeOptions,
    ) -> Result<Geometry, CoreError> {
        if !MODES.contains(&mode) {
            return Err(CoreError::Unknown {
                what: "mode",
                name: mode.into(),
            });
        }
        let Some((height, width)) = size else {
            return Ok(Geometry::Original);
        };
        if height == 0 || width == 0 {
            return Err(CoreError::InvalidArgument(format!(
                "size must be positive, got {height}x{width}"
            )));
        }
        Ok(match mode {
            "center_crop" => {
                let shorter = options
                    .resize_shorter
                    .unwrap_or_else(|| default_resize_shorter(height, width));
                if shorter < height.max(width) {
                    return Err(CoreError::InvalidArgument(format!(
                        "resize_shorter ({shorter}) must be at least the crop size ({height}x{width})"
                    )));
                }
                Geometry::CenterCrop {
                    height,
                    width,
                    shorter,
                }
            }
            "resize" => Geometry::Resize { height, width },
            "letterbox" => Geometry::Letterbox { height, width },
            _ => {
                let ((lo, hi), (rlo, rhi)) = (options.scale, options.ratio);
                if !(0.0 < lo && lo <= hi && hi <= 1.0 && 0.0 < rlo && rlo <= rhi) {
                    return Err(CoreError::InvalidArgument(
                        "scale must be 0 < lo <= hi <= 1 and ratio 0 < lo <= hi".into(),
                    ));
                }
                Geometry::RandomResizedCrop {
                    height,
                    width,
                    scale: options.scale,
                    ratio: options.ratio,
                    flip_p: options.flip_p,
                    seed: options.seed,
                }
            }
        })
    }
}

/// A decode request as callers spell it: Python's `fastprep.DecodeOptions`
/// field for field, with the same defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeOptions {
    /// Output (height, width); `None` keeps each image's size.
    pub size: Option<(u32, u32)>,
    /// One of [`MODES`]; ignored without a size.
    pub mode: String,
    /// Shorter side before a centre crop; default [`default_resize_shorter`].
    pub resize_shorter: Option<u32>,
    /// One of [`FILTERS`].
    pub filter: String,
    pub apply_orientation: bool,
    pub reduced_decode: bool,
    pub background: [u8; 3],
    pub max_pixels: u64,
    /// Seeds the random crop and flip per record.
    pub seed: u64,
    /// Random crop area range, as a fraction of the image.
    pub scale: (f64, f64),
    /// Random crop aspect-ratio range.
    pub ratio: (f64, f64),
    /// Probability of a horizontal flip after a random crop.
    pub flip_p: f64,
    /// Hash names, see [`super::HASHES`].
    pub hashes: Vec<String>,
    /// Produce pixels (off: only hashes and metadata).
    pub pixels: bool,
    /// Keep each image's aspect: its shorter side becomes this (never
    /// upscaled). Excludes `size`.
    pub short_side: Option<u32>,
    /// Keep each image's aspect: its longer side is capped at this (FFCV's
    /// `max_resolution`). Excludes `size`.
    pub max_side: Option<u32>,
    /// See [`ImageOptions::read_to_end`].
    pub read_to_end: bool,
    /// See [`ImageOptions::channels_first`]; needs a fixed `size`.
    pub channels_first: bool,
    /// See [`ImageOptions::drop_alpha`].
    pub drop_alpha: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            size: None,
            mode: "center_crop".into(),
            resize_shorter: None,
            filter: "bilinear".into(),
            apply_orientation: true,
            reduced_decode: true,
            background: [255, 255, 255],
            max_pixels: DEFAULT_MAX_PIXELS,
            seed: 0,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            flip_p: 0.5,
            hashes: Vec::new(),
            pixels: true,
            short_side: None,
            max_side: None,
            read_to_end: true,
            channels_first: false,
            drop_alpha: false,
        }
    }
}

impl DecodeOptions {
    /// Checks every rule and gives the options the decoder runs with.
    pub fn resolve(&self) -> Result<ImageOptions, CoreError> {
        let filter = Filter::from_name(&self.filter).ok_or_else(|| CoreError::Unknown {
            what: "filter",
            name: self.filter.clone(),
        })?;
        let geometry = match (self.short_side, self.max_side) {
            (None, None) => Geometry::from_mode(&self.mode, self.size, self)?,
            _ if self.size.is_some() => {
                return Err(CoreError::InvalidArgument(
                    "size and short_side/max_side exclude each other".into(),
                ))
            }
            (Some(0), _) | (_, Some(0)) => {
                return Err(CoreError::InvalidArgument(
                    "short_side and max_side must be positive".into(),
                ))
            }
            (shorter, longer) => Geometry::KeepAspect { shorter, longer },
        };
        if self.channels_first && geometry.fixed_size().is_none() {
            return Err(CoreError::InvalidArgument(
                "channels_first needs a fixed output size".into(),
            ));
        }
        Ok(ImageOptions {
            geometry,
            filter,
            apply_orientation: self.apply_orientation,
            reduced_decode: self.reduced_decode,
            background: self.background,
            max_pixels: self.max_pixels,
            hashes: HashRequest::from_names(self.hashes.iter().map(String::as_str))?,
            output_pixels: self.pixels,
            read_to_end: self.read_to_end,
            channels_first: self.channels_first,
            drop_alpha: self.drop_alpha,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_resolve_to_the_decoder_defaults() {
        assert_eq!(
            DecodeOptions::default().resolve(),
            Ok(ImageOptions::default())
        );
    }

    #[test]
    fn centre_crop_defaults_to_the_torchvision_ratio() {
        let options = DecodeOptions {
            size: Some((224, 200)),
            ..Default::default()
        };
        let geometry = options.resolve().map(|o| o.geometry);
        assert_eq!(
            geometry,
            Ok(Geometry::CenterCrop {
                height: 224,
                width: 200,
                shorter: 256
            })
        );
        assert_eq!(default_resize_shorter(32, 32), 37);
    }

    #[test]
    fn bad_requests_name_the_problem() {
        let with = |change: fn(&mut DecodeOptions)| {
            let mut o = DecodeOptions {
                size: Some((16, 16)),
                ..Default::default()
            };
            change(&mut o);
            o.resolve().map(|_| ()).unwrap_err().to_string()
        };
        assert_eq!(
            with(|o| o.mode = "stretch".into()),
            "unknown mode \"stretch\""
        );
        assert_eq!(
            with(|o| o.filter = "sinc".into()),
            "unknown filter \"sinc\""
        );
        assert_eq!(
            with(|o| o.hashes = vec!["md5".into()]),
            "unknown hash \"md5\""
        );
        assert!(with(|o| o.resize_shorter = Some(8)).contains("at least the crop size"));
        assert!(with(|o| {
            o.mode = "random_resized_crop".into();
            o.scale = (0.5, 0.1);
        })
        .starts_with("scale must be"));
        assert!(with(|o| o.size = Some((0, 4))).contains("positive"));
        assert!(with(|o| o.short_side = Some(8)).contains("exclude each other"));
    }

    #[test]
    fn short_and_max_side_keep_the_aspect() {
        let o = DecodeOptions {
            short_side: Some(256),
            max_side: Some(512),
            ..Default::default()
        };
        assert_eq!(
            o.resolve().map(|o| o.geometry),
            Ok(Geometry::KeepAspect {
                shorter: Some(256),
                longer: Some(512)
            })
        );
    }

    #[test]
    fn every_listed_name_resolves() {
        for mode in MODES {
            for filter in FILTERS {
                let o = DecodeOptions {
                    size: Some((8, 8)),
                    mode: mode.into(),
                    filter: filter.into(),
                    hashes: super::super::HASHES.iter().map(|h| h.to_string()).collect(),
                    ..Default::default()
                };
                assert!(o.resolve().is_ok(), "{mode} {filter}");
            }
        }
    }
}
