//! Meta's PDQ perceptual hash (256 bits plus a 0-100 quality), following the
//! reference C++ (`pdq/cpp/hashing`, `pdq/cpp/downscaling`) operation for
//! operation in single precision, so the same luma gives the same bits:
//! float luma, two passes of a Jarosz box filter, decimation to 64x64, the
//! gradient quality metric, a 16x16 DCT (coefficients 1..16 of a 64-point
//! DCT-II), and one bit per coefficient above the median. The eight dihedral
//! variants come from sign flips and transposes of the same 16x16 DCT.

use std::sync::OnceLock;

/// A 256-bit PDQ hash: bit k (row k/16, column k%16 of the DCT) is
/// `(words[k / 64] >> (k % 64)) & 1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Pdq256(pub [u64; 4]);

impl Pdq256 {
    /// Big-endian bytes: the hex of these is Meta's hex format.
    pub fn to_be_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, w) in self.0.iter().rev().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    pub fn to_hex(&self) -> String {
        self.to_be_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn from_hex(hex: &str) -> Option<Pdq256> {
        if hex.len() != 64 {
            return None;
        }
        let mut words = [0u64; 4];
        for (i, w) in words.iter_mut().enumerate() {
            let start = (3 - i) * 16;
            *w = u64::from_str_radix(hex.get(start..start + 16)?, 16).ok()?;
        }
        Some(Pdq256(words))
    }

    pub fn distance(&self, other: &Pdq256) -> u32 {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum()
    }
}

/// PDQ of an image and its dihedral variants.
#[derive(Clone, Debug, PartialEq)]
pub struct PdqResult {
    pub hash: Pdq256,
    pub quality: u8,
    dct: [[f32; 16]; 16],
}

/// The eight dihedral transforms, in Meta's order.
pub const DIHEDRAL: [&str; 8] = [
    "orig", "rot90", "rot180", "rot270", "flipx", "flipy", "flipp", "flipm",
];

const MIN_HASHABLE_DIM: usize = 5;

fn dct_matrix() -> &'static [f32; 16 * 64] {
    static MATRIX: OnceLock<[f32; 16 * 64]> = OnceLock::new();
    MATRIX.get_or_init(|| {
        // As the C++: a float scale factor times a double cosine, rounded.
        let scale = f64::from((2.0f64 / 64.0).sqrt() as f32);
        let mut m = [0f32; 16 * 64];
        for i in 0..16 {
            for j in 0..64 {
                let angle =
                    (std::f64::consts::PI / 2.0 / 64.0) * (i as f64 + 1.0) * (2.0 * j as f64 + 1.0);
                m[i * 64 + j] = (scale * angle.cos()) as f32;
            }
        }
        m
    })
}

/// Float luma as the `pdqhash` package (Meta's C++ core behind a Python
/// binding) computes it: in double precision, then rounded to single. The
/// C++ CLI's single-precision sum differs in the last bit for a few pixels;
/// both give the published reference hashes.
pub fn luma_from_rgb(rgb: &[u8]) -> Vec<f32> {
    let mut luma = vec![0f32; rgb.len() / 3];
    luma_into(rgb, &mut luma);
    luma
}

/// [`luma_from_rgb`] into `luma` (one value per pixel). Each product is the
/// double-precision `value * weight` the reference computes, summed in its
/// order; with AVX2 four pixels at a time (the same IEEE operations).
pub(super) fn luma_into(rgb: &[u8], luma: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA are present.
        return unsafe { luma_into_avx2(rgb, luma) };
    }
    luma_into_plain(rgb, luma)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn luma_into_avx2(rgb: &[u8], luma: &mut [f32]) {
    let done = super::pdq_strips::luma_avx2(rgb, luma);
    luma_into_plain(&rgb[3 * done..], &mut luma[done..])
}

#[inline(always)]
pub(super) fn luma_into_plain(rgb: &[u8], luma: &mut [f32]) {
    for (out, p) in luma.iter_mut().zip(rgb.chunks_exact(3)) {
        let (r, g, b) = (f64::from(p[0]), f64::from(p[1]), f64::from(p[2]));
        *out = (r * 0.299 + g * 0.587 + b * 0.114) as f32;
    }
}

thread_local! {
    /// Per-thread luma and filter buffers, reused from image to image: a
    /// fresh 750 KB buffer per 500x375 photo costs its page faults each time.
    static BUFFERS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

pub(super) fn window_size(old: usize, new: usize) -> usize {
    old.div_ceil(2 * new)
}

/// One box-filter pass along a strided vector (the reference's four phases).
#[cfg(test)]
fn box_1d(
    input: &[f32],
    output: &mut [f32],
    start: usize,
    len: usize,
    stride: usize,
    window: usize,
) {
    let half = (window + 2) / 2;
    let phase1 = half - 1;
    let phase2 = window - half + 1;
    let phase3 = len.saturating_sub(window);
    let phase4 = half - 1;
    let (mut li, mut ri, mut oi) = (start, start, start);
    let mut sum = 0f32;
    let mut current = 0i32;
    for _ in 0..phase1 {
        sum += input[ri];
        current += 1;
        ri += stride;
    }
    for _ in 0..phase2 {
        sum += input[ri];
        current += 1;
        output[oi] = sum / current as f32;
        ri += stride;
        oi += stride;
    }
    for _ in 0..phase3 {
        sum += input[ri];
        sum -= input[li];
        output[oi] = sum / current as f32;
        li += stride;
        ri += stride;
        oi += stride;
    }
    for _ in 0..phase4 {
        sum -= input[li];
        current -= 1;
        output[oi] = sum / current as f32;
        li += stride;
        oi += stride;
    }
}

#[cfg(test)]
fn jarosz(
    buf1: &mut [f32],
    buf2: &mut [f32],
    rows: usize,
    cols: usize,
    win_rows: usize,
    win_cols: usize,
) {
    for _ in 0..2 {
        for i in 0..rows {
            box_1d(buf1, buf2, i * cols, cols, 1, win_rows);
        }
        for j in 0..cols {
            box_1d(buf2, buf1, j, rows, cols, win_cols);
        }
    }
}

/// The four phases of [`box_1d`] as (read-ahead, window-size change) steps:
/// each step optionally adds the next input, optionally subtracts the oldest,
/// and (except in phase 1) writes one output.
#[derive(Clone, Copy)]
pub(super) struct BoxPlan {
    pub(super) window: usize,
    pub(super) len: usize,
}

impl BoxPlan {
    /// Calls `step(add, sub, write, count)` for each position, in order: `add`
    /// and `sub` are input indices along the axis, `write` the output index.
    #[inline(always)]
    pub(super) fn run(
        self,
        mut step: impl FnMut(Option<usize>, Option<usize>, Option<usize>, i32),
    ) {
        let half = (self.window + 2) / 2;
        let (mut li, mut ri, mut oi, mut current) = (0usize, 0usize, 0usize, 0i32);
        for _ in 0..half - 1 {
            current += 1;
            step(Some(ri), None, None, current);
            ri += 1;
        }
        for _ in 0..self.window - half + 1 {
            current += 1;
            step(Some(ri), None, Some(oi), current);
            ri += 1;
            oi += 1;
        }
        for _ in 0..self.len.saturating_sub(self.window) {
            step(Some(ri), Some(li), Some(oi), current);
            li += 1;
            ri += 1;
            oi += 1;
        }
        for _ in 0..half - 1 {
            current -= 1;
            step(None, Some(li), Some(oi), current);
            li += 1;
            oi += 1;
        }
    }
}

/// Box filter along every row, eight rows at a time. Each strip of eight
/// rows is first copied into a column-major buffer (in L1), so each step of
/// the running sums reads eight adjacent floats: one vector operation,
/// where the rows themselves would need eight strided loads. Each lane
/// performs the reference's exact scalar sequence, so results are
/// bit-identical. With `keep`, only those output columns are divided and
/// written.
#[inline(always)]
fn box_rows(
    input: &[f32],
    output: &mut [f32],
    rows: usize,
    cols: usize,
    window: usize,
    keep: Option<&[bool]>,
) {
    const L: usize = 8;
    let plan = BoxPlan { window, len: cols };
    let mut strip = vec![[0f32; L]; cols];
    let mut done = vec![[0f32; L]; cols];
    let mut r0 = 0;
    while r0 < rows {
        let lanes = L.min(rows - r0);
        for (l, row) in input[r0 * cols..(r0 + lanes) * cols]
            .chunks_exact(cols)
            .enumerate()
        {
            for (cell, &v) in strip.iter_mut().zip(row) {
                cell[l] = v;
            }
        }
        let mut sum = [0f32; L];
        plan.run(|add, sub, write, count| {
            if let Some(a) = add {
                let v = strip[a];
                for l in 0..L {
                    sum[l] += v[l];
                }
            }
            if let Some(s) = sub {
                let v = strip[s];
                for l in 0..L {
                    sum[l] -= v[l];
                }
            }
            if let Some(o) = write {
                if keep.is_none_or(|k| k[o]) {
                    let n = count as f32;
                    let cell = &mut done[o];
                    for l in 0..L {
                        cell[l] = sum[l] / n;
                    }
                }
            }
        });
        for (l, row) in output[r0 * cols..(r0 + lanes) * cols]
            .chunks_exact_mut(cols)
            .enumerate()
        {
            match keep {
                None => {
                    for (dst, cell) in row.iter_mut().zip(&done) {
                        *dst = cell[l];
                    }
                }
                Some(k) => {
                    for ((dst, cell), &kept) in row.iter_mut().zip(&done).zip(k) {
                        if kept {
                            *dst = cell[l];
                        }
                    }
                }
            }
        }
        r0 += L;
    }
}

/// Box filter down the columns listed in `columns` (all at once: the inner
/// loop runs along contiguous memory). With `keep`, only those output rows are
/// divided and written.
#[inline(always)]
fn box_cols(
    input: &[f32],
    output: &mut [f32],
    rows: usize,
    cols: usize,
    window: usize,
    columns: &[usize],
    keep: Option<&[bool]>,
) {
    let plan = BoxPlan { window, len: rows };
    let mut sum = vec![0f32; columns.len()];
    let contiguous = columns.len() == cols;
    plan.run(|add, sub, write, count| {
        if contiguous {
            if let Some(a) = add {
                for (s, v) in sum.iter_mut().zip(&input[a * cols..(a + 1) * cols]) {
                    *s += v;
                }
            }
            if let Some(b) = sub {
                for (s, v) in sum.iter_mut().zip(&input[b * cols..(b + 1) * cols]) {
                    *s -= v;
                }
            }
        } else {
            for (s, &c) in sum.iter_mut().zip(columns) {
                if let Some(a) = add {
                    *s += input[a * cols + c];
                }
                if let Some(b) = sub {
                    *s -= input[b * cols + c];
                }
            }
        }
        if let Some(o) = write {
            if keep.is_none_or(|k| k[o]) {
                let n = count as f32;
                if contiguous {
                    for (dst, s) in output[o * cols..(o + 1) * cols].iter_mut().zip(&sum) {
                        *dst = s / n;
                    }
                } else {
                    for (s, &c) in sum.iter().zip(columns) {
                        output[o * cols + c] = s / n;
                    }
                }
            }
        }
    });
}

/// The rows and columns decimation samples: the centres of 64 equal bands.
pub(super) fn sample_points(rows: usize, cols: usize) -> (Vec<usize>, Vec<usize>) {
    let centres = |len: usize| -> Vec<usize> {
        (0..64)
            .map(|i| (((i as f64 + 0.5) * len as f64) / 64.0) as usize)
            .collect()
    };
    (centres(rows), centres(cols))
}

/// The reference's two x/y passes, computing only what decimation reads:
/// the second row pass divides only at the 64 sampled columns, and the second
/// column pass runs only down those columns and divides only at the sampled
/// rows. Same floating-point operations in the same order as [`jarosz`]. The
/// portable path; with AVX2, [`super::pdq_avx2::decimate`] does the same
/// fused strip by strip.
fn jarosz_decimate(
    luma: &mut [f32],
    scratch: &mut Vec<f32>,
    rows: usize,
    cols: usize,
) -> [[f32; 64]; 64] {
    let (wr, wc) = (window_size(cols, 64), window_size(rows, 64));
    let (sample_rows, sample_cols) = sample_points(rows, cols);
    let mut keep_rows = vec![false; rows];
    sample_rows.iter().for_each(|&r| keep_rows[r] = true);
    let mut keep_cols = vec![false; cols];
    sample_cols.iter().for_each(|&c| keep_cols[c] = true);
    let all_cols: Vec<usize> = (0..cols).collect();
    // Every element is written by the first pass before it is read.
    scratch.resize(luma.len(), 0.0);
    let scratch = &mut scratch[..luma.len()];
    let mut distinct_cols = sample_cols.clone();
    distinct_cols.dedup();
    box_rows(luma, scratch, rows, cols, wr, None);
    box_cols(scratch, luma, rows, cols, wc, &all_cols, None);
    box_rows(luma, scratch, rows, cols, wr, Some(&keep_cols));
    box_cols(
        scratch,
        luma,
        rows,
        cols,
        wc,
        &distinct_cols,
        Some(&keep_rows),
    );
    let mut out = [[0f32; 64]; 64];
    for (oi, &r) in sample_rows.iter().enumerate() {
        for (oj, &c) in sample_cols.iter().enumerate() {
            out[oi][oj] = luma[r * cols + c];
        }
    }
    out
}

#[cfg(test)]
fn decimate(input: &[f32], rows: usize, cols: usize) -> [[f32; 64]; 64] {
    let mut out = [[0f32; 64]; 64];
    for (oi, row) in out.iter_mut().enumerate() {
        let ini = (((oi as f64 + 0.5) * rows as f64) / 64.0) as usize;
        for (oj, v) in row.iter_mut().enumerate() {
            let inj = (((oj as f64 + 0.5) * cols as f64) / 64.0) as usize;
            *v = input[ini * cols + inj];
        }
    }
    out
}

#[allow(clippy::needless_range_loop)] // the reference's loop order
fn quality(b: &[[f32; 64]; 64]) -> u8 {
    let mut gradient_sum: i32 = 0;
    for i in 0..63 {
        for j in 0..64 {
            let d = ((b[i][j] - b[i + 1][j]) * 100.0 / 255.0) as i32;
            gradient_sum += d.abs();
        }
    }
    for row in b.iter() {
        for j in 0..63 {
            let d = ((row[j] - row[j + 1]) * 100.0 / 255.0) as i32;
            gradient_sum += d.abs();
        }
    }
    (gradient_sum / 90).min(100) as u8
}

/// `D A D^T` with `D` the 16x64 DCT matrix. Each output is the reference's
/// sum over `k` in ascending order, one product added at a time; the loops
/// run `k` outside and the output index inside, so each step is one vector
/// operation over a row of outputs (the same IEEE operations per output).
fn dct_64_to_16(a: &[[f32; 64]; 64]) -> [[f32; 16]; 16] {
    let d = dct_matrix();
    let mut t = [[0f32; 64]; 16];
    for (i, row) in t.iter_mut().enumerate() {
        for (k, a_row) in a.iter().enumerate() {
            let dk = d[i * 64 + k];
            for (sum, &x) in row.iter_mut().zip(a_row) {
                *sum += dk * x;
            }
        }
    }
    let dt = dct_matrix_transposed();
    let mut b = [[0f32; 16]; 16];
    for (row, t_row) in b.iter_mut().zip(&t) {
        for (k, dt_row) in dt.iter().enumerate() {
            let tk = t_row[k];
            for (sum, &x) in row.iter_mut().zip(dt_row) {
                *sum += tk * x;
            }
        }
    }
    b
}

/// The DCT matrix transposed: `[k][j] = D[j][k]`.
fn dct_matrix_transposed() -> &'static [[f32; 16]; 64] {
    static MATRIX: OnceLock<[[f32; 16]; 64]> = OnceLock::new();
    MATRIX.get_or_init(|| {
        let d = dct_matrix();
        let mut m = [[0f32; 16]; 64];
        for (k, row) in m.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = d[j * 64 + k];
            }
        }
        m
    })
}

fn bits(dct: &[[f32; 16]; 16]) -> Pdq256 {
    // Torben's median of 256 values is the lower median: the 128th smallest.
    let mut sorted: Vec<f32> = dct.iter().flatten().copied().collect();
    sorted.sort_by(f32::total_cmp);
    let median = sorted[127];
    let mut words = [0u64; 4];
    for (k, &v) in dct.iter().flatten().enumerate() {
        if v > median {
            words[k / 64] |= 1 << (k % 64);
        }
    }
    Pdq256(words)
}

/// PDQ of a float luma image (`rows` x `cols`, row-major), consumed as scratch.
pub fn pdq_from_luma(mut luma: Vec<f32>, rows: usize, cols: usize) -> PdqResult {
    #[cfg(target_arch = "x86_64")]
    if let Some(small) = fused(super::pdq_avx2::Source::Luma(&luma), rows, cols) {
        return from_decimated(&small);
    }
    pdq_in(&mut luma, &mut Vec::new(), rows, cols)
}

/// The AVX2 decimation ([`super::pdq_avx2::decimate`]) where the CPU has it
/// and the image needs filtering.
#[cfg(target_arch = "x86_64")]
fn fused(source: super::pdq_avx2::Source, rows: usize, cols: usize) -> Option<[[f32; 64]; 64]> {
    let filtered = rows >= MIN_HASHABLE_DIM && cols >= MIN_HASHABLE_DIM && (rows, cols) != (64, 64);
    if !(filtered
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma"))
    {
        return None;
    }
    // SAFETY: AVX2 and FMA are present.
    Some(unsafe { super::pdq_avx2::decimate(source, rows, cols) })
}

fn from_decimated(small: &[[f32; 64]; 64]) -> PdqResult {
    let dct = dct_64_to_16(small);
    PdqResult {
        hash: bits(&dct),
        quality: quality(small),
        dct,
    }
}

fn pdq_in(luma: &mut [f32], scratch: &mut Vec<f32>, rows: usize, cols: usize) -> PdqResult {
    if rows < MIN_HASHABLE_DIM || cols < MIN_HASHABLE_DIM {
        return PdqResult {
            hash: Pdq256::default(),
            quality: 0,
            dct: [[0.0; 16]; 16],
        };
    }
    let small = if rows == 64 && cols == 64 {
        let mut b = [[0f32; 64]; 64];
        for (i, row) in b.iter_mut().enumerate() {
            row.copy_from_slice(&luma[i * 64..i * 64 + 64]);
        }
        b
    } else {
        jarosz_decimate(luma, scratch, rows, cols)
    };
    from_decimated(&small)
}

/// PDQ of an RGB8 image: with AVX2, strip by strip from the bytes; else
/// from a float luma image (buffers reused per thread).
pub fn pdq_from_rgb(rgb: &[u8], width: usize, height: usize) -> PdqResult {
    #[cfg(target_arch = "x86_64")]
    if let Some(small) = fused(super::pdq_avx2::Source::Rgb(rgb), height, width) {
        return from_decimated(&small);
    }
    /// Larger images get buffers of their own, freed after (a thread keeps
    /// at most 2 x 16 MB).
    const KEPT_PIXELS: usize = 1 << 22;
    if width * height > KEPT_PIXELS {
        return pdq_from_luma(luma_from_rgb(rgb), height, width);
    }
    BUFFERS.with(|buffers| {
        let Ok(mut buffers) = buffers.try_borrow_mut() else {
            // Re-entered on this thread (not expected): fresh buffers.
            return pdq_from_luma(luma_from_rgb(rgb), height, width);
        };
        let (luma, scratch) = &mut *buffers;
        let n = width * height;
        luma.resize(n, 0.0);
        luma_into(rgb, &mut luma[..n]);
        pdq_in(&mut luma[..n], scratch, height, width)
    })
}

impl PdqResult {
    /// The hashes of the eight dihedral variants ([`DIHEDRAL`] order),
    /// derived from this image's DCT without recomputing it.
    pub fn dihedral(&self) -> [Pdq256; 8] {
        let a = &self.dct;
        let variant = |transpose: bool, sign: &dyn Fn(usize, usize) -> bool| {
            let mut b = [[0f32; 16]; 16];
            for i in 0..16 {
                for j in 0..16 {
                    let v = if sign(i, j) { -a[i][j] } else { a[i][j] };
                    if transpose {
                        b[j][i] = v;
                    } else {
                        b[i][j] = v;
                    }
                }
            }
            bits(&b)
        };
        [
            self.hash,
            variant(true, &|_, j| j & 1 == 0),
            variant(false, &|i, j| (i + j) & 1 == 1),
            variant(true, &|i, _| i & 1 == 0),
            variant(false, &|i, _| i & 1 == 0),
            variant(false, &|_, j| j & 1 == 0),
            variant(true, &|_, _| false),
            variant(true, &|i, j| (i + j) & 1 == 1),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_distance() {
        let h = Pdq256([1, 0, 0, 1 << 63]);
        assert_eq!(&h.to_hex()[..2], "80");
        assert!(h.to_hex().ends_with("01"));
        assert_eq!(Pdq256::from_hex(&h.to_hex()), Some(h));
        assert_eq!(h.distance(&Pdq256::default()), 2);
    }

    #[test]
    fn box_filter_phases_match_the_reference_example() {
        // The reference's worked example: window 7 over 0..15 gives these sums.
        let input: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let mut out = vec![0f32; 16];
        box_1d(&input, &mut out, 0, 16, 1, 7);
        let sums = [
            6, 10, 15, 21, 28, 35, 42, 49, 56, 63, 70, 77, 84, 75, 65, 54,
        ];
        let windows = [4, 5, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 5, 4];
        for i in 0..16 {
            assert_eq!(out[i], sums[i] as f32 / windows[i] as f32, "index {i}");
        }
    }

    /// The reference's four full passes, then decimation.
    fn reference_decimation(luma: &[f32], rows: usize, cols: usize) -> [[f32; 64]; 64] {
        let mut filtered = luma.to_vec();
        let mut scratch = vec![0f32; luma.len()];
        jarosz(
            &mut filtered,
            &mut scratch,
            rows,
            cols,
            window_size(cols, 64),
            window_size(rows, 64),
        );
        decimate(&filtered, rows, cols)
    }

    fn assert_same_bits(got: &[[f32; 64]; 64], want: &[[f32; 64]; 64], what: &str) {
        for i in 0..64 {
            for j in 0..64 {
                assert_eq!(
                    got[i][j].to_bits(),
                    want[i][j].to_bits(),
                    "{what} at {i},{j}"
                );
            }
        }
    }

    /// Common and odd shapes; the last has a window over 128 (no corrected
    /// division).
    const SIZES: [(usize, usize); 9] = [
        (375, 500),
        (64, 65),
        (1004, 1600),
        (42, 34),
        (130, 7),
        (5, 300),
        (97, 33),
        (333, 257),
        (6, 17_000),
    ];

    #[test]
    fn fast_filters_are_bit_identical_to_the_reference() {
        for (rows, cols) in SIZES {
            let mut x = 12345u32;
            let luma: Vec<f32> = (0..rows * cols)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as f32 % 256.0 * 0.7
                })
                .collect();
            let expected = reference_decimation(&luma, rows, cols);
            let what = format!("{rows}x{cols}");
            let portable = jarosz_decimate(&mut luma.clone(), &mut Vec::new(), rows, cols);
            assert_same_bits(&portable, &expected, &what);
            #[cfg(target_arch = "x86_64")]
            if let Some(got) = fused(super::super::pdq_avx2::Source::Luma(&luma), rows, cols) {
                assert_same_bits(&got, &expected, &what);
            }
        }
    }

    /// From bytes, the fused filters divide by a corrected reciprocal.
    #[test]
    fn fused_filters_from_bytes_are_bit_identical_to_the_reference() {
        for (rows, cols) in SIZES {
            let mut x = 777u32;
            let rgb: Vec<u8> = (0..rows * cols * 3)
                .map(|i| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    // Smooth ramps with noise, flat black runs and saturation.
                    match (i / 3 / cols) % 7 {
                        0 => 0,
                        1 => 255,
                        _ => ((i / 3 % cols) as u32 / 3 + (x >> 27)) as u8,
                    }
                })
                .collect();
            let luma = luma_from_rgb(&rgb);
            let expected = reference_decimation(&luma, rows, cols);
            #[cfg(target_arch = "x86_64")]
            if let Some(got) = fused(super::super::pdq_avx2::Source::Rgb(&rgb), rows, cols) {
                assert_same_bits(&got, &expected, &format!("{rows}x{cols}"));
            }
            let whole = pdq_from_rgb(&rgb, cols, rows);
            assert_eq!(whole, from_decimated(&expected), "{rows}x{cols}");
        }
    }

    #[test]
    fn vector_luma_is_the_scalar_luma_bit_for_bit() {
        for n in [0usize, 1, 4, 5, 6, 7, 8, 13, 1000, 187_500] {
            let rgb: Vec<u8> = (0..3 * n).map(|i| (i * 7919 % 256) as u8).collect();
            let mut want = vec![0f32; n];
            luma_into_plain(&rgb, &mut want);
            let mut got = vec![f32::NAN; n];
            luma_into(&rgb, &mut got);
            assert!(
                want.iter()
                    .zip(&got)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{n} pixels"
            );
        }
        // every byte value in every channel
        let rgb: Vec<u8> = (0..=255u8).flat_map(|v| [v, 255 - v, v / 2]).collect();
        let mut want = vec![0f32; 256];
        luma_into_plain(&rgb, &mut want);
        let mut got = vec![0f32; 256];
        luma_into(&rgb, &mut got);
        assert_eq!(want, got);
    }

    #[test]
    fn tiny_images_hash_to_zero_with_quality_zero() {
        let r = pdq_from_rgb(&[0; 4 * 4 * 3], 4, 4);
        assert_eq!((r.hash, r.quality), (Pdq256::default(), 0));
    }
}
