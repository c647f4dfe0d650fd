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

/// Horizontal pass over rows `first_row..first_row + rows` of `src`.
fn horizontal(src: &[u8], width: usize, first_row: usize, rows: usize, taps: &Taps) -> Vec<u8> {
    let out_w = taps.bounds.len();
    let mut out = vec![0u8; rows * out_w];
    for y in 0..rows {
        let line = &src[(y + first_row) * width..(y + first_row + 1) * width];
        for (xx, &(xmin, xmax)) in taps.bounds.iter().enumerate() {
            let k = &taps.weights[xx * taps.size..xx * taps.size + xmax];
            // Integer dot product with Pillow's rounding term; wrapping i32
            // arithmetic as Pillow's `int` accumulator.
            let acc = line[xmin..xmin + xmax]
                .iter()
                .zip(k)
                .fold(1i32 << (PRECISION_BITS - 1), |acc, (&p, &w)| {
                    acc.wrapping_add(i32::from(p).wrapping_mul(w))
                });
            out[y * out_w + xx] = clip8(acc);
        }
    }
    out
}

/// Vertical pass of a `width`-wide image whose first row is source row
/// `row_offset`.
fn vertical(src: &[u8], width: usize, row_offset: usize, taps: &Taps) -> Vec<u8> {
    let out_h = taps.bounds.len();
    let mut out = vec![0u8; width * out_h];
    let mut acc = vec![0i32; width];
    for (yy, &(ymin, ymax)) in taps.bounds.iter().enumerate() {
        let k = &taps.weights[yy * taps.size..yy * taps.size + ymax];
        // Whole rows at a time: the same integer sums as Pillow's loop.
        acc.fill(1i32 << (PRECISION_BITS - 1));
        for (y, &w) in k.iter().enumerate() {
            let row = &src[(ymin + y - row_offset) * width..(ymin + y - row_offset + 1) * width];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a = a.wrapping_add(i32::from(p).wrapping_mul(w));
            }
        }
        for (o, &a) in out[yy * width..(yy + 1) * width].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// `Image.resize((width, height), filter)` of a single-channel 8-bit image,
/// as Pillow 13 computes it: horizontal pass first (over just the rows the
/// vertical pass reads), unless the image shrinks much more vertically, in
/// which case the vertical pass goes first.
pub fn resize_l(
    src: &[u8],
    width: usize,
    height: usize,
    out_w: usize,
    out_h: usize,
    filter: PillowFilter,
) -> Vec<u8> {
    let need_h = out_w != width;
    let need_v = out_h != height;
    let (dh, dw) = (height as i64 - out_h as i64, width as i64 - out_w as i64);
    let vertical_first = dh > 0 && dh > 2 * dw;
    let horizontal_taps = precompute(width, out_w, filter);
    let vertical_taps = precompute(height, out_h, filter);
    if vertical_first {
        let mid = if need_v {
            vertical(src, width, 0, &vertical_taps)
        } else {
            src.to_vec()
        };
        let rows = if need_v { out_h } else { height };
        return if need_h {
            horizontal(&mid, width, 0, rows, &horizontal_taps)
        } else {
            mid
        };
    }
    if !need_h {
        return if need_v {
            vertical(src, width, 0, &vertical_taps)
        } else {
            src.to_vec()
        };
    }
    // Only the rows the vertical pass reads go through the horizontal pass.
    let first_row = vertical_taps.bounds.first().map_or(0, |b| b.0);
    let last_row = vertical_taps.bounds.last().map_or(0, |b| b.0 + b.1);
    let (first_row, rows) = if need_v {
        (first_row, last_row - first_row)
    } else {
        (0, height)
    };
    let mid = horizontal(src, width, first_row, rows, &horizontal_taps);
    if need_v {
        vertical(&mid, out_w, first_row, &vertical_taps)
    } else {
        mid
    }
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
