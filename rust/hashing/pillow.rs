//! Pillow's greyscale conversion and convolution resampling, reproduced to
//! the bit: `imagehash` hashes are computed on `img.convert("L").resize(...,
//! LANCZOS)`, so matching them means matching Pillow's arithmetic exactly
//! (double-precision kernel weights, 22-bit fixed-point taps, horizontal pass
//! first, rounding and clipping after each pass).

use std::f64::consts::PI;

/// `Image.convert("L")` from RGB: ITU-R 601-2 luma in 16-bit fixed point.
pub fn luma_l(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| {
            ((u32::from(p[0]) * 19595 + u32::from(p[1]) * 38470 + u32::from(p[2]) * 7471 + 0x8000)
                >> 16) as u8
        })
        .collect()
}

/// Resampling filters of Pillow's `Image.resize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PillowFilter {
    Box,
    Bilinear,
    Lanczos,
}

impl PillowFilter {
    fn support(self) -> f64 {
        match self {
            PillowFilter::Box => 0.5,
            PillowFilter::Bilinear => 1.0,
            PillowFilter::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            PillowFilter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            PillowFilter::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            PillowFilter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * PI;
        x.sin() / x
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Fixed-point taps for one axis: for each output index, the first input
/// index and its integer weights.
struct Taps {
    bounds: Vec<(usize, usize)>,
    size: usize,
    weights: Vec<i32>,
}

#[allow(clippy::needless_range_loop)] // mirrors Pillow's loops
fn precompute(in_size: usize, out_size: usize, filter: PillowFilter) -> Taps {
    let (in0, in1) = (0.0, in_size as f64);
    let scale = (in1 - in0) / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    let size = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * size];
    let mut k = vec![0f64; size];
    for xx in 0..out_size {
        let center = in0 + (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filter_scale;
        // C truncation towards zero, as Pillow's `(int)` casts.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut total = 0.0;
        for x in 0..xmax {
            let w = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            k[x] = w;
            total += w;
        }
        for (x, w) in k.iter().enumerate().take(xmax) {
            let w = if total != 0.0 { w / total } else { *w };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            weights[xx * size + x] = if w < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        bounds.push((xmin, xmax));
    }
    Taps {
        bounds,
        size,
        weights,
    }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    if acc >= (1 << PRECISION_BITS << 8) {
        255
    } else if acc <= 0 {
        0
    } else {
        (acc >> PRECISION_BITS) as u8
    }
}

/// `Image.resize((width, height), filter)` of a single-channel 8-bit image.
pub fn resize_l(
    src: &[u8],
    width: usize,
    height: usize,
    out_w: usize,
    out_h: usize,
    filter: PillowFilter,
) -> Vec<u8> {
    let horizontal = precompute(width, out_w, filter);
    let vertical = precompute(height, out_h, filter);
    // Only the rows the vertical pass reads go through the horizontal pass.
    let first_row = vertical.bounds.first().map_or(0, |b| b.0);
    let last_row = vertical.bounds.last().map_or(0, |b| b.0 + b.1);
    let rows = last_row - first_row;
    let need_h = out_w != width;
    let need_v = out_h != height;
    let (mid, mid_w, row_offset) = if need_h {
        let mut mid = vec![0u8; rows * out_w];
        for y in 0..rows {
            let line = &src[(y + first_row) * width..(y + first_row + 1) * width];
            for xx in 0..out_w {
                let (xmin, xmax) = horizontal.bounds[xx];
                let k = &horizontal.weights[xx * horizontal.size..];
                let mut acc: i32 = 1 << (PRECISION_BITS - 1);
                for x in 0..xmax {
                    acc = acc.wrapping_add(i32::from(line[xmin + x]).wrapping_mul(k[x]));
                }
                mid[y * out_w + xx] = clip8(acc);
            }
        }
        (mid, out_w, first_row)
    } else {
        (src.to_vec(), width, 0)
    };
    if !need_v {
        return mid;
    }
    let mut out = vec![0u8; out_w * out_h];
    for yy in 0..out_h {
        let (ymin, ymax) = vertical.bounds[yy];
        let k = &vertical.weights[yy * vertical.size..];
        for xx in 0..mid_w {
            let mut acc: i32 = 1 << (PRECISION_BITS - 1);
            for y in 0..ymax {
                acc = acc.wrapping_add(
                    i32::from(mid[(ymin + y - row_offset) * mid_w + xx]).wrapping_mul(k[y]),
                );
            }
            out[yy * out_w + xx] = clip8(acc);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_matches_pillow_constants() {
        assert_eq!(
            luma_l(&[255, 255, 255, 0, 0, 0, 255, 0, 0, 0, 255, 0]),
            vec![255, 0, 76, 150]
        );
    }

    #[test]
    fn flat_images_stay_flat() {
        let src = vec![77u8; 50 * 40];
        for f in [
            PillowFilter::Box,
            PillowFilter::Bilinear,
            PillowFilter::Lanczos,
        ] {
            assert!(resize_l(&src, 50, 40, 9, 8, f).iter().all(|&v| v == 77));
        }
    }

    #[test]
    fn box_halving_averages_pairs() {
        let src = vec![0u8, 100, 50, 50];
        assert_eq!(resize_l(&src, 4, 1, 2, 1, PillowFilter::Box), vec![50, 50]);
    }
}
