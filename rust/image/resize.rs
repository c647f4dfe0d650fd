//! Resampling with fast_image_resize (SIMD convolution, Pillow's algorithm).

use std::cell::RefCell;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::error::DecodeError;
use super::geometry::CropBox;
use super::options::Filter;
use super::pixels::RgbView;

thread_local! {
    // The resizer keeps scratch buffers; one per thread avoids reallocating them.
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

fn algorithm(filter: Filter) -> ResizeAlg {
    match filter {
        Filter::Nearest => ResizeAlg::Nearest,
        Filter::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
        Filter::Bicubic => ResizeAlg::Convolution(FilterType::CatmullRom),
        Filter::Lanczos => ResizeAlg::Convolution(FilterType::Lanczos3),
        Filter::Box => ResizeAlg::Convolution(FilterType::Box),
        Filter::Hamming => ResizeAlg::Convolution(FilterType::Hamming),
    }
}

/// Clamps a box into the image; float error can push edges a hair outside.
fn clamp_box(b: CropBox, width: u32, height: u32) -> CropBox {
    let (w, h) = (f64::from(width), f64::from(height));
    let left = b.left.clamp(0.0, w);
    let top = b.top.clamp(0.0, h);
    CropBox {
        left,
        top,
        width: b.width.min(w - left).max(f64::MIN_POSITIVE),
        height: b.height.min(h - top).max(f64::MIN_POSITIVE),
    }
}

/// Resamples `crop` of `src` into `dst`, an RGB buffer of `width` x `height`.
pub fn resize_into(
    src: RgbView,
    crop: CropBox,
    dst: &mut [u8],
    width: u32,
    height: u32,
    filter: Filter,
) -> Result<(), DecodeError> {
    let internal = |e: &dyn std::fmt::Display| DecodeError::Internal(format!("resize: {e}"));
    let crop = clamp_box(crop, src.width, src.height);
    let whole = crop == CropBox::full(src.width, src.height);
    if whole && (src.width, src.height) == (width, height) {
        dst.copy_from_slice(src.data);
        return Ok(());
    }
    let src_view = ImageRef::new(src.width, src.height, src.data, PixelType::U8x3)
        .map_err(|e| internal(&e))?;
    let mut dst_view =
        Image::from_slice_u8(width, height, dst, PixelType::U8x3).map_err(|e| internal(&e))?;
    let options = ResizeOptions::new().resize_alg(algorithm(filter)).crop(
        crop.left,
        crop.top,
        crop.width,
        crop.height,
    );
    RESIZER
        .with(|r| r.borrow_mut().resize(&src_view, &mut dst_view, &options))
        .map_err(|e| internal(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::pixels::RgbImage;

    #[test]
    fn identity_is_a_copy() {
        let src = RgbImage::new(2, 1, vec![1, 2, 3, 4, 5, 6]);
        let mut out = vec![0; 6];
        resize_into(
            src.view(),
            CropBox::full(2, 1),
            &mut out,
            2,
            1,
            Filter::Bilinear,
        )
        .unwrap();
        assert_eq!(out, src.data);
    }

    #[test]
    fn box_filter_averages() {
        let src = RgbImage::new(2, 2, [0, 0, 0, 100, 100, 100].repeat(2));
        let mut out = vec![0; 3];
        resize_into(src.view(), CropBox::full(2, 2), &mut out, 1, 1, Filter::Box).unwrap();
        assert_eq!(out, vec![50, 50, 50]);
    }

    #[test]
    fn crop_selects_the_region() {
        // Left half black, right half white: box-filtering the right half is
        // white (wider kernels would legitimately reach across the edge).
        let row = [[0u8; 3].repeat(4), [255u8; 3].repeat(4)].concat();
        let src = RgbImage::new(8, 4, row.repeat(4));
        let mut out = vec![0; 2 * 2 * 3];
        let right = CropBox {
            left: 4.0,
            top: 0.0,
            width: 4.0,
            height: 4.0,
        };
        resize_into(src.view(), right, &mut out, 2, 2, Filter::Box).unwrap();
        assert!(out.iter().all(|&v| v == 255), "{out:?}");
    }
}
