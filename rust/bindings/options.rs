//! Decode options from Python, extracted in one place: the dict that
//! `fastprep.DecodeOptions.to_core()` builds, key for key.

use pyo3::prelude::*;

use crate::image::DecodeOptions;

#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct PyDecodeOptions {
    size: Option<(u32, u32)>,
    mode: String,
    resize_shorter: Option<u32>,
    filter: String,
    apply_orientation: bool,
    reduced_decode: bool,
    background: (u8, u8, u8),
    max_pixels: u64,
    seed: u64,
    scale: (f64, f64),
    ratio: (f64, f64),
    flip_p: f64,
    hashes: Vec<String>,
    pixels: bool,
    short_side: Option<u32>,
    max_side: Option<u32>,
    read_to_end: bool,
    channels_first: bool,
    drop_alpha: bool,
}

impl From<PyDecodeOptions> for DecodeOptions {
    fn from(o: PyDecodeOptions) -> DecodeOptions {
        let (r, g, b) = o.background;
        DecodeOptions {
            size: o.size,
            mode: o.mode,
            resize_shorter: o.resize_shorter,
            filter: o.filter,
            apply_orientation: o.apply_orientation,
            reduced_decode: o.reduced_decode,
            background: [r, g, b],
            max_pixels: o.max_pixels,
            seed: o.seed,
            scale: o.scale,
            ratio: o.ratio,
            flip_p: o.flip_p,
            hashes: o.hashes,
            pixels: o.pixels,
            short_side: o.short_side,
            max_side: o.max_side,
            read_to_end: o.read_to_end,
            channels_first: o.channels_first,
            drop_alpha: o.drop_alpha,
        }
    }
}
