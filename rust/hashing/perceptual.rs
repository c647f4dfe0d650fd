//! `imagehash`'s average, difference and DCT hashes (default sizes), bit for
//! bit: Pillow greyscale, Pillow LANCZOS resize, then numpy's comparisons.
//! Bit 63 of the result is the hash's first element, so the hex of the u64
//! equals `str(imagehash.xxx(img))`.

use super::pillow::{resize_l, PillowFilter};

fn pack(bits: impl Iterator<Item = bool>) -> u64 {
    bits.fold(0u64, |acc, b| (acc << 1) | u64::from(b))
}

/// `imagehash.average_hash(img)`: 8x8, each pixel above the mean.
pub fn average_hash(l: &[u8], width: usize, height: usize) -> u64 {
    let small = resize_l(l, width, height, 8, 8, PillowFilter::Lanczos);
    let mean = small.iter().map(|&v| f64::from(v)).sum::<f64>() / 64.0;
    pack(small.iter().map(|&v| f64::from(v) > mean))
}

/// `imagehash.dhash(img)`: 9x8, each pixel brighter than its left neighbour.
pub fn difference_hash(l: &[u8], width: usize, height: usize) -> u64 {
    let small = resize_l(l, width, height, 9, 8, PillowFilter::Lanczos);
    pack(
        small
            .chunks_exact(9)
            .flat_map(|row| (0..8).map(move |x| row[x + 1] > row[x])),
    )
}

/// Unnormalised DCT-II along one axis of a 32x32 block (scipy.fftpack.dct).
fn dct_32(input: &[f64; 1024], along_rows: bool) -> [f64; 1024] {
    let mut cos = [0f64; 1024];
    for k in 0..32 {
        for n in 0..32 {
            cos[k * 32 + n] = (std::f64::consts::PI * k as f64 * (2 * n + 1) as f64 / 64.0).cos();
        }
    }
    let mut out = [0f64; 1024];
    for line in 0..32 {
        for k in 0..32 {
            let mut sum = 0f64;
            for n in 0..32 {
                let x = if along_rows {
                    input[line * 32 + n]
                } else {
                    input[n * 32 + line]
                };
                sum += x * cos[k * 32 + n];
            }
            let at = if along_rows {
                line * 32 + k
            } else {
                k * 32 + line
            };
            out[at] = 2.0 * sum;
        }
    }
    out
}

/// `imagehash.phash(img)`: 32x32, 2-D DCT, the 8x8 low frequencies above
/// their median.
pub fn dct_hash(l: &[u8], width: usize, height: usize) -> u64 {
    let small = resize_l(l, width, height, 32, 32, PillowFilter::Lanczos);
    let mut pixels = [0f64; 1024];
    for (p, &v) in pixels.iter_mut().zip(&small) {
        *p = f64::from(v);
    }
    // scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
    let mut dct = dct_32(&dct_32(&pixels, false), true);
    // scipy's FFT-based DCT gives exact zeros where the direct sum leaves
    // rounding noise (flat or symmetric images); the median of the 8x8 block
    // then sits on those zeros, so they must compare as scipy's do. Genuine
    // coefficients of 8-bit images are far larger than 1e-6.
    for v in dct.iter_mut() {
        if v.abs() < 1e-6 {
            *v = 0.0;
        }
    }
    let low: Vec<f64> = (0..8)
        .flat_map(|r| (0..8).map(move |c| (r, c)))
        .map(|(r, c)| dct[r * 32 + c])
        .collect();
    let mut sorted = low.clone();
    sorted.sort_by(f64::total_cmp);
    let median = (sorted[31] + sorted[32]) / 2.0;
    pack(low.iter().map(|&v| v > median))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_give_known_patterns() {
        // Brightness rising left to right: every dHash bit is set.
        let (w, h) = (64, 48);
        let l: Vec<u8> = (0..h).flat_map(|_| (0..w).map(|x| (x * 4) as u8)).collect();
        assert_eq!(difference_hash(&l, w, h), u64::MAX);
        // Right half brighter than the mean: aHash bits set in columns 4..8.
        assert_eq!(average_hash(&l, w, h), 0x0F0F_0F0F_0F0F_0F0F);
        // The DC coefficient of any non-black image is above the median.
        assert_eq!(dct_hash(&l, w, h) >> 63, 1);
    }
}
