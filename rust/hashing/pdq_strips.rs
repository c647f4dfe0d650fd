//! PDQ strips (see [`super::pdq_avx2`]) in and out: rows of a row-major
//! image become column-major blocks of lanes, one lane per row, by 8x8
//! register transposes (with each pixel's luma computed on the way in from
//! RGB), and filtered blocks go back to rows.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

/// Rows per strip: four chains of eight lanes hide the running sums' latency.
pub(super) const L: usize = 32;

/// Eight columns of a strip, column-major: `[column][lane]`, a lane per row.
pub(super) type Block = [[f32; L]; 8];

/// Columns `c .. c + 8` (those below `cols`) of rows `row .. row + lanes` of
/// the row-major `input` into `block` (lane k = row `row + k`).
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn load_rows_block(
    input: &[f32],
    row: usize,
    cols: usize,
    lanes: usize,
    c: usize,
    block: &mut Block,
) {
    assert!(lanes <= L && input.len() >= (row + lanes) * cols && c < cols);
    let width = 8.min(cols - c);
    for first in (0..lanes).step_by(8) {
        if width == 8 && lanes - first >= 8 {
            let base = input.as_ptr().add((row + first) * cols + c);
            // SAFETY: rows `row + first ..+ 8` and columns `c ..+ 8` exist.
            let mut lines = [_mm256_setzero_ps(); 8];
            for (k, line) in lines.iter_mut().enumerate() {
                *line = _mm256_loadu_ps(base.add(k * cols));
            }
            for (column, v) in block.iter_mut().zip(transpose8(lines)) {
                _mm256_storeu_ps(column.as_mut_ptr().add(first), v);
            }
        } else {
            for k in first..lanes.min(first + 8) {
                let line = &input[(row + k) * cols + c..(row + k) * cols + c + width];
                for (column, &v) in block.iter_mut().zip(line) {
                    column[k] = v;
                }
            }
        }
    }
}

/// As [`load_rows_block`], the luma of RGB8 pixels: eight pixels of a row
/// are two groups of four (one 16-byte load each), weighted in double
/// precision as [`luma_avx2`] does.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn load_rgb_block(
    rgb: &[u8],
    row: usize,
    cols: usize,
    lanes: usize,
    c: usize,
    block: &mut Block,
) {
    assert!(lanes <= L && rgb.len() >= 3 * (row + lanes) * cols && c < cols);
    let width = 8.min(cols - c);
    let weights = Weights::new();
    for first in (0..lanes).step_by(8) {
        let last_byte = 3 * ((row + first + 7) * cols + c) + 28;
        if width == 8 && lanes - first >= 8 && last_byte <= rgb.len() {
            let base = rgb.as_ptr().add(3 * ((row + first) * cols + c));
            // SAFETY: the second group of the eighth row reads bytes up to
            // `last_byte` <= rgb.len().
            let mut lines = [_mm256_setzero_ps(); 8];
            for (k, line) in lines.iter_mut().enumerate() {
                let p = base.add(3 * k * cols);
                *line = _mm256_set_m128(weights.luma4(p.add(12)), weights.luma4(p));
            }
            for (column, v) in block.iter_mut().zip(transpose8(lines)) {
                _mm256_storeu_ps(column.as_mut_ptr().add(first), v);
            }
        } else {
            let mut luma = [0f32; 8];
            for k in first..lanes.min(first + 8) {
                let start = 3 * ((row + k) * cols + c);
                super::pdq::luma_into_plain(&rgb[start..start + 3 * width], &mut luma[..width]);
                for (column, &v) in block.iter_mut().zip(&luma[..width]) {
                    column[k] = v;
                }
            }
        }
    }
}

/// Byte shuffles, the conversion constant and weights for four pixels' luma.
struct Weights {
    channels: [__m256i; 3],
    weights: [__m256d; 3],
}

/// 2^52 as a double: with a byte in the low bits of its mantissa it is
/// 2^52 + that byte, exactly.
const TWO_52: f64 = 4_503_599_627_370_496.0;

impl Weights {
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn new() -> Weights {
        // Channel c of pixel k (bytes 3k + c of the 16 loaded, copied to
        // both halves) to the low byte of 64-bit lane k; -1 zeroes a byte.
        let spread = |c: i8| {
            #[rustfmt::skip]
            let mask = _mm256_setr_epi8(
                c, -1, -1, -1, -1, -1, -1, -1, c + 3, -1, -1, -1, -1, -1, -1, -1,
                c + 6, -1, -1, -1, -1, -1, -1, -1, c + 9, -1, -1, -1, -1, -1, -1, -1,
            );
            mask
        };
        Weights {
            channels: [spread(0), spread(1), spread(2)],
            weights: [
                _mm256_set1_pd(0.299),
                _mm256_set1_pd(0.587),
                _mm256_set1_pd(0.114),
            ],
        }
    }

    /// The luma of the four pixels at `p` (reads 16 bytes): each channel's
    /// bytes spread into the mantissas of 2^52 by one shuffle, less 2^52 (an
    /// exact conversion to double that keeps the converter port free), then
    /// weighted and summed in the reference's order (`r * 0.299 + g *
    /// 0.587`, then `+ b * 0.114`, then rounded to single).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn luma4(&self, p: *const u8) -> __m128 {
        let bytes = _mm256_broadcastsi128_si256(_mm_loadu_si128(p.cast()));
        let magic = _mm256_set1_pd(TWO_52);
        let [r, g, b] = [
            channel(bytes, self.channels[0], magic),
            channel(bytes, self.channels[1], magic),
            channel(bytes, self.channels[2], magic),
        ];
        let [wr, wg, wb] = self.weights;
        let sum = _mm256_add_pd(
            _mm256_add_pd(_mm256_mul_pd(r, wr), _mm256_mul_pd(g, wg)),
            _mm256_mul_pd(b, wb),
        );
        _mm256_cvtpd_ps(sum)
    }
}

/// One channel of four pixels as doubles: its bytes shuffled into the low
/// mantissa bits of `magic` (2^52), less 2^52.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn channel(bytes: __m256i, shuffle: __m256i, magic: __m256d) -> __m256d {
    let biased = _mm256_or_si256(
        _mm256_shuffle_epi8(bytes, shuffle),
        _mm256_castpd_si256(magic),
    );
    _mm256_sub_pd(_mm256_castsi256_pd(biased), magic)
}

/// Columns `o .. o + width` of `out` (lanes as rows) into the row-major
/// `rows` (`cols` wide), as many rows as it holds (at most L).
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn store_block(
    out: &Block,
    rows: &mut [f32],
    cols: usize,
    o: usize,
    width: usize,
) {
    let lanes = rows.len() / cols;
    assert!(lanes <= L && o + width <= cols && width <= 8);
    for first in (0..lanes).step_by(8) {
        if width == 8 && lanes - first >= 8 {
            let base = rows.as_mut_ptr().add(first * cols + o);
            let mut lines = [_mm256_setzero_ps(); 8];
            for (line, column) in lines.iter_mut().zip(out) {
                *line = _mm256_loadu_ps(column.as_ptr().add(first));
            }
            for (k, v) in transpose8(lines).into_iter().enumerate() {
                // SAFETY: rows `first ..+ 8` and columns `o ..+ 8` exist.
                _mm256_storeu_ps(base.add(k * cols), v);
            }
        } else {
            for k in first..lanes.min(first + 8) {
                let line = &mut rows[k * cols + o..k * cols + o + width];
                for (dst, column) in line.iter_mut().zip(out) {
                    *dst = column[k];
                }
            }
        }
    }
}

/// Lanes `0 .. count` of the column-major `kept` (`m` columns) into the
/// first `count` rows of the row-major `output` (`m` wide).
pub(super) fn store_kept(kept: &[[f32; L]], output: &mut [f32], m: usize, count: usize) {
    for (k, line) in output[..count * m].chunks_exact_mut(m).enumerate() {
        for (dst, column) in line.iter_mut().zip(kept) {
            *dst = column[k];
        }
    }
}

/// The transpose of an 8x8 block held as eight row vectors.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(s0, s4),
        _mm256_permute2f128_ps::<0x20>(s1, s5),
        _mm256_permute2f128_ps::<0x20>(s2, s6),
        _mm256_permute2f128_ps::<0x20>(s3, s7),
        _mm256_permute2f128_ps::<0x31>(s0, s4),
        _mm256_permute2f128_ps::<0x31>(s1, s5),
        _mm256_permute2f128_ps::<0x31>(s2, s6),
        _mm256_permute2f128_ps::<0x31>(s3, s7),
    ]
}

/// Float luma of the leading pixels of `rgb` into `luma`, four pixels at a
/// time ([`Weights::luma4`]), each value the scalar one's bits. Returns how
/// many pixels it did (the rest: a few at the end, where a 16-byte load
/// would read past the buffer).
///
/// # Safety
/// AVX2 and FMA must be available.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn luma_avx2(rgb: &[u8], luma: &mut [f32]) -> usize {
    let pixels = luma.len().min(rgb.len() / 3);
    // Groups of four pixels whose 16-byte load stays inside `rgb`.
    let groups = if rgb.len() >= 16 {
        ((rgb.len() - 16) / 12 + 1).min(pixels / 4)
    } else {
        0
    };
    let weights = Weights::new();
    let (source, target) = (rgb.as_ptr(), luma.as_mut_ptr());
    for group in 0..groups {
        // SAFETY: 12 * group + 16 <= rgb.len() and 4 * group + 4 <= luma.len().
        _mm_storeu_ps(target.add(4 * group), weights.luma4(source.add(12 * group)));
    }
    4 * groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_of_an_8x8_block() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let values: Vec<f32> = (0..64).map(|v| v as f32).collect();
        let mut out = [[0f32; 8]; 8];
        // SAFETY: AVX2 checked above.
        unsafe {
            let rows: [__m256; 8] =
                std::array::from_fn(|i| _mm256_loadu_ps(values.as_ptr().add(8 * i)));
            for (row, v) in out.iter_mut().zip(transpose8(rows)) {
                _mm256_storeu_ps(row.as_mut_ptr(), v);
            }
        }
        for (i, row) in out.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                assert_eq!(v, (8 * j + i) as f32);
            }
        }
    }
}
