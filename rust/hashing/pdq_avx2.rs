//! PDQ's luma and Jarosz filters with AVX2 and FMA, fused into one walk down
//! the image and bit-identical to the plain ones in [`super::pdq`].
//!
//! The reference makes four full-image passes (rows, columns, rows, columns)
//! over a float image that does not fit in L2. Here strips of 32 rows flow
//! through all four while they are in cache:
//!
//! 1. luma of the strip's pixels, turned column-major by 8x8 register
//!    transposes;
//! 2. the first row filter: a running sum along a row is one long dependency
//!    chain, so 32 rows advance together as four independent 8-lane chains;
//! 3. the first column filter, one step per row as soon as the rows its
//!    window reaches exist (a ring of the first filter's rows feeds it), eight
//!    columns per vector;
//! 4. the second row filter on each 32 finished rows, dividing only at the
//!    64 sampled columns (their sums still need every column);
//! 5. the second column filter, down those columns only, dividing only at
//!    the sampled rows.
//!
//! Every lane performs the reference's scalar sequence of IEEE adds and
//! subtracts in the same order. Divisions by the window count are either
//! `_mm256_div_ps` or, from RGB, a reciprocal multiply corrected by two FMAs
//! (Markstein's division), which equals the correctly rounded quotient unless
//! the remainder underflows: checked for zero and for every float from 2^-90
//! to 65280 with every count up to 128 (`markstein_division_is_exact`, run
//! with `--ignored`; it is off for some quotients below 2^-121). Luma from
//! bytes is 0 or at least 0.114, a multiple of 2^-27, so a running sum of
//! the first three filters is 0 or at least 2^-87 (each division by at most
//! 128 keeps values on a grid 2^-30 finer). The last filter divides exactly.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::pdq::{sample_points, BoxPlan};

/// Rows per strip: four chains of eight lanes hide the adds' latency.
const L: usize = 32;
/// The largest window count the corrected division was checked for.
const MAX_FAST_COUNT: usize = 128;
const NOT_KEPT: u32 = u32::MAX;
/// Buffers larger than this (floats, 16 MB) are freed after their image.
const KEPT_FLOATS: usize = 1 << 22;

/// What the filters start from.
pub(super) enum Source<'a> {
    /// RGB8 pixels, row-major: luma is computed strip by strip.
    Rgb(&'a [u8]),
    /// Float luma, row-major (any values: divisions are exact).
    Luma(&'a [f32]),
}

/// Working memory, reused from image to image on each thread: a strip of
/// rows, rings and sums, never a whole float image.
#[derive(Default)]
struct Buffers {
    /// The last columns a row filter read, column-major (one `[f32; L]` per
    /// column), a ring of a power-of-two length.
    columns: Vec<[f32; L]>,
    /// The first row filter's output rows, a ring of `ring_rows` rows.
    ring: Vec<f32>,
    /// The first column filter's output rows for the strip being filled.
    rows_out: Vec<f32>,
    /// The second row filter at the sampled columns, column-major.
    kept: Vec<[f32; L]>,
    /// The second row filter at the sampled columns for every row, then the
    /// last filter's output.
    sampled: Vec<f32>,
    filtered: Vec<f32>,
    /// The column filter's running sums.
    sums: Vec<f32>,
    /// A row of zeros (added or subtracted where a step has no row: the
    /// same bits, as no running sum is ever -0) and a row for averages
    /// nobody reads.
    zeros: Vec<f32>,
    discard: Vec<f32>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// The 64x64 decimation PDQ hashes, from `rows` x `cols` pixels (both at
/// least 5).
///
/// # Safety
/// AVX2 and FMA must be available.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn decimate(source: Source, rows: usize, cols: usize) -> [[f32; 64]; 64] {
    let fast = matches!(source, Source::Rgb(_))
        && super::pdq::window_size(rows, 64).max(super::pdq::window_size(cols, 64))
            <= MAX_FAST_COUNT;
    BUFFERS.with(|cell| {
        let mut fresh = Buffers::default();
        let mut held = cell.try_borrow_mut();
        // Re-entered on this thread (not expected): buffers of its own.
        let buffers = match held.as_deref_mut() {
            Ok(b) => b,
            Err(_) => &mut fresh,
        };
        // SAFETY: the caller guarantees AVX2 and FMA.
        let out = unsafe {
            if fast {
                decimate_in::<true>(buffers, &source, rows, cols)
            } else {
                decimate_in::<false>(buffers, &source, rows, cols)
            }
        };
        // A huge image's buffers are not kept for the thread's lifetime.
        if buffers.ring.capacity() + buffers.sampled.capacity() > KEPT_FLOATS {
            *buffers = Buffers::default();
        }
        out
    })
}

/// One step of a box filter's plan (see [`BoxPlan::run`]).
#[derive(Clone, Copy)]
struct Step {
    add: Option<usize>,
    sub: Option<usize>,
    write: Option<usize>,
    count: i32,
}

#[target_feature(enable = "avx2,fma")]
unsafe fn decimate_in<const FAST: bool>(
    b: &mut Buffers,
    source: &Source,
    rows: usize,
    cols: usize,
) -> [[f32; 64]; 64] {
    let (wr, wc) = (
        super::pdq::window_size(cols, 64),
        super::pdq::window_size(rows, 64),
    );
    let (sample_rows, sample_cols) = sample_points(rows, cols);
    let mut distinct = sample_cols.clone();
    distinct.dedup();
    let m = distinct.len();
    let mut slot = vec![NOT_KEPT; cols];
    for (k, &c) in distinct.iter().enumerate() {
        slot[c] = k as u32;
    }
    // Rows of the ring still read: the column filter's window behind the
    // newest strip, plus that strip.
    let ring_rows = (wc + 2 + L).div_ceil(L) * L + L;
    let Buffers {
        columns,
        ring,
        rows_out,
        kept,
        sampled,
        filtered,
        sums,
        zeros,
        discard,
    } = b;
    columns.resize((wr.max(wc) + 8).next_power_of_two(), [0.0; L]);
    ring.resize(ring_rows * cols, 0.0);
    rows_out.resize(L * cols, 0.0);
    kept.resize(m, [0.0; L]);
    sampled.resize(rows * m, 0.0);
    filtered.resize(rows * m, 0.0);
    sums.clear();
    sums.resize(cols, 0.0);
    zeros.clear();
    zeros.resize(cols, 0.0);
    discard.resize(cols, 0.0);

    let mut column_steps = Vec::with_capacity(rows + wc);
    BoxPlan {
        window: wc,
        len: rows,
    }
    .run(|add, sub, write, count| {
        column_steps.push(Step {
            add,
            sub,
            write,
            count,
        })
    });
    let mut next_step = 0;
    let mut r0 = 0;
    while r0 < rows {
        let lanes = L.min(rows - r0);
        let first_slot = r0 % ring_rows;
        let strip_rows = &mut ring[first_slot * cols..(first_slot + lanes) * cols];
        let output = RowOutput::Rows(strip_rows);
        match source {
            Source::Rgb(rgb) => {
                let load = |c: usize, block: &mut Block| unsafe {
                    load_rgb_block(rgb, r0, cols, lanes, c, block)
                };
                filter_rows::<FAST>(load, cols, wr, columns, output);
            }
            Source::Luma(values) => {
                let load = |c: usize, block: &mut Block| unsafe {
                    load_rows_block(values, r0, cols, lanes, c, block)
                };
                filter_rows::<FAST>(load, cols, wr, columns, output);
            }
        }
        let available = r0 + lanes;
        while let Some(&step) = column_steps.get(next_step) {
            if step.add.is_some_and(|a| a >= available) {
                break;
            }
            let ring_row = |r: Option<usize>| match r {
                Some(r) => &ring[(r % ring_rows) * cols..(r % ring_rows + 1) * cols],
                None => &zeros[..],
            };
            let output = match step.write {
                Some(o) => &mut rows_out[(o % L) * cols..(o % L + 1) * cols],
                None => &mut discard[..],
            };
            column_step::<FAST>(
                sums,
                ring_row(step.add),
                ring_row(step.sub),
                Some(output),
                step.count,
            );
            if let Some(o) = step.write {
                if o % L == L - 1 || o == rows - 1 {
                    // A strip of the first column filter is complete: the
                    // second row filter, kept at the sampled columns.
                    let first = o - o % L;
                    let count = o + 1 - first;
                    let finished: &[f32] = rows_out;
                    let load = |c: usize, block: &mut Block| unsafe {
                        load_rows_block(finished, 0, cols, count, c, block)
                    };
                    let output = RowOutput::Kept { slot: &slot, kept };
                    filter_rows::<FAST>(load, cols, wr, columns, output);
                    store_kept(kept, &mut sampled[first * m..], m, count);
                }
            }
            next_step += 1;
        }
        r0 += L;
    }
    // The last column filter, down the sampled columns only, dividing
    // (exactly) only at the sampled rows.
    let mut keep_rows = vec![false; rows];
    sample_rows.iter().for_each(|&r| keep_rows[r] = true);
    let (sums, zeros) = (&mut sums[..m], &zeros[..m]);
    sums.fill(0.0);
    let row = |r: Option<usize>| match r {
        Some(r) => &sampled[r * m..(r + 1) * m],
        None => zeros,
    };
    for step in &column_steps {
        let output = match step.write {
            Some(o) if keep_rows[o] => Some(&mut filtered[o * m..(o + 1) * m]),
            _ => None,
        };
        column_step::<false>(sums, row(step.add), row(step.sub), output, step.count);
    }
    let mut out = [[0f32; 64]; 64];
    for (oi, &r) in sample_rows.iter().enumerate() {
        for (oj, &c) in sample_cols.iter().enumerate() {
            out[oi][oj] = filtered[r * m + slot[c] as usize];
        }
    }
    out
}

/// `x / n` for the lanes of `x`: exact division, or (`FAST`) the reciprocal
/// `inv` = RN(1 / n) times `x`, corrected once with the FMA-exact remainder.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn divide<const FAST: bool>(x: __m256, n: __m256, inv: __m256) -> __m256 {
    if FAST {
        let q = _mm256_mul_ps(x, inv);
        let remainder = _mm256_fnmadd_ps(q, n, x);
        _mm256_fmadd_ps(remainder, inv, q)
    } else {
        _mm256_div_ps(x, n)
    }
}

/// Eight columns of a strip, column-major: `[column][lane]`, a lane per row.
type Block = [[f32; L]; 8];

/// Where a row filter's averages go.
enum RowOutput<'a> {
    /// Every column, into the strip's rows (row-major, `cols` wide).
    Rows(&'a mut [f32]),
    /// Only the kept columns, column-major into `kept[slot[column]]`.
    Kept {
        slot: &'a [u32],
        kept: &'a mut [[f32; L]],
    },
}

/// The box filter (window `window`) along the rows of a strip, `cols` long,
/// all lanes at once. `load(c, block)` fills columns `c .. c + 8` (those
/// that exist) as they are reached; `columns` keeps the ones the window
/// still subtracts. The reference's four phases in one loop: step `t` adds
/// column `t`, subtracts column `t - window` and writes column
/// `t - (half - 1)`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn filter_rows<const FAST: bool>(
    mut load: impl FnMut(usize, &mut Block),
    cols: usize,
    window: usize,
    columns: &mut [[f32; L]],
    mut output: RowOutput,
) {
    let mask = columns.len() - 1;
    // A block's slots are never the ones still to be subtracted.
    assert!(columns.len().is_power_of_two() && columns.len() >= window + 8);
    assert!(window >= 1 && window <= cols);
    if let RowOutput::Kept { slot, .. } = &output {
        assert!(slot.len() >= cols);
    }
    let lag = (window + 2) / 2 - 1;
    let mut sum = [_mm256_setzero_ps(); L / 8];
    // Output columns, a ring of two blocks: the steady loop below fills one
    // while the other waits to be stored.
    let mut out = [[0f32; L]; 16];
    // The average of output column `o` (divided by a count `n`, reciprocal
    // `inv`) to where `output` wants it.
    macro_rules! emit {
        ($sum:expr, $o:expr, $n:expr, $inv:expr) => {{
            let o: usize = $o;
            let target = match &mut output {
                RowOutput::Rows(_) => Some(out[o % 16].as_mut_ptr()),
                RowOutput::Kept { slot, kept } => match slot[o] {
                    NOT_KEPT => None,
                    k => Some(kept[k as usize].as_mut_ptr()),
                },
            };
            if let Some(target) = target {
                for (k, s) in $sum.iter().enumerate() {
                    _mm256_storeu_ps(target.add(8 * k), divide::<FAST>(*s, $n, $inv));
                }
            }
        }};
    }
    // Stores the block of output columns that holds `o`, through `o`.
    macro_rules! store {
        ($o:expr) => {{
            let o: usize = $o;
            if let RowOutput::Rows(rows) = &mut output {
                let first = o - o % 8;
                let block: &Block = (&out[first % 16..first % 16 + 8]).try_into().unwrap();
                store_block(block, rows, cols, first, o % 8 + 1);
            }
        }};
    }
    macro_rules! add {
        ($column:expr) => {{
            let p = columns[$column & mask].as_ptr();
            for (k, s) in sum.iter_mut().enumerate() {
                *s = _mm256_add_ps(*s, _mm256_loadu_ps(p.add(8 * k)));
            }
        }};
    }
    macro_rules! sub {
        ($column:expr) => {{
            let p = columns[$column & mask].as_ptr();
            for (k, s) in sum.iter_mut().enumerate() {
                *s = _mm256_sub_ps(*s, _mm256_loadu_ps(p.add(8 * k)));
            }
        }};
    }
    macro_rules! load {
        ($t:expr) => {{
            let first = $t & mask;
            let block: &mut Block = (&mut columns[first..first + 8]).try_into().unwrap();
            load($t, block);
        }};
    }
    // Whole blocks of eight steps that add, subtract and write with the
    // full window: no branch but the output's.
    let steady = window.next_multiple_of(8)..cols / 8 * 8;
    let (full, full_inverse) = (
        _mm256_set1_ps(window as f32),
        _mm256_set1_ps(1.0 / window as f32),
    );
    let mut t = 0;
    while t < cols + lag {
        if steady.contains(&t) {
            load!(t);
            // Locals, not the array: no call inside this loop, so the sums
            // stay in registers.
            let mut s = sum;
            for t in t..t + 8 {
                let (a, b) = (
                    columns[t & mask].as_ptr(),
                    columns[(t - window) & mask].as_ptr(),
                );
                for (k, v) in s.iter_mut().enumerate() {
                    *v = _mm256_add_ps(*v, _mm256_loadu_ps(a.add(8 * k)));
                    *v = _mm256_sub_ps(*v, _mm256_loadu_ps(b.add(8 * k)));
                }
                emit!(s, t - lag, full, full_inverse);
            }
            sum = s;
            // Eight consecutive outputs complete exactly one block.
            let last = t + 7 - lag;
            store!(last - (last + 1) % 8);
            t += 8;
            continue;
        }
        if t < cols {
            if t % 8 == 0 {
                load!(t);
            }
            add!(t);
        }
        if t >= window {
            sub!(t - window);
        }
        if t >= lag {
            let o = t - lag;
            // Columns added so far, less those subtracted.
            let count = (t.min(cols - 1) + 1 - (t + 1).saturating_sub(window)) as f32;
            emit!(sum, o, _mm256_set1_ps(count), _mm256_set1_ps(1.0 / count));
            if o % 8 == 7 || o == cols - 1 {
                store!(o);
            }
        }
        t += 1;
    }
}

/// One step of the box filter down every column: add row `add`, subtract
/// row `sub`, and write the averages to `out` (if given).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn column_step<const FAST: bool>(
    sums: &mut [f32],
    add: &[f32],
    sub: &[f32],
    out: Option<&mut [f32]>,
    count: i32,
) {
    let cols = sums.len();
    assert!(add.len() == cols && sub.len() == cols);
    let whole = cols / 8 * 8;
    let (s, a, b) = (sums.as_mut_ptr(), add.as_ptr(), sub.as_ptr());
    // SAFETY (both loops): every offset is below `whole` <= `cols`, the
    // length of each slice (checked above and below).
    let step = |c: usize| unsafe {
        let v = _mm256_add_ps(_mm256_loadu_ps(s.add(c)), _mm256_loadu_ps(a.add(c)));
        let v = _mm256_sub_ps(v, _mm256_loadu_ps(b.add(c)));
        _mm256_storeu_ps(s.add(c), v);
        v
    };
    let n = count as f32;
    match out {
        None => {
            for c in (0..whole).step_by(8) {
                step(c);
            }
            for c in whole..cols {
                sums[c] = sums[c] + add[c] - sub[c];
            }
        }
        Some(out) => {
            assert_eq!(out.len(), cols);
            let (vn, inv) = (_mm256_set1_ps(n), _mm256_set1_ps(1.0 / n));
            let o = out.as_mut_ptr();
            for c in (0..whole).step_by(8) {
                _mm256_storeu_ps(o.add(c), divide::<FAST>(step(c), vn, inv));
            }
            for c in whole..cols {
                sums[c] = sums[c] + add[c] - sub[c];
                // The correctly rounded quotient: what the vector lanes give.
                out[c] = sums[c] / n;
            }
        }
    }
}

/// Columns `c .. c + 8` (those below `cols`) of rows `row .. row + lanes` of
/// the row-major `input` into `block` (lane k = row `row + k`).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn load_rows_block(
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
            let lines: [__m256; 8] =
                std::array::from_fn(|k| unsafe { _mm256_loadu_ps(base.add(k * cols)) });
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
unsafe fn load_rgb_block(
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
            let lines: [__m256; 8] = std::array::from_fn(|k| unsafe {
                let p = base.add(3 * k * cols);
                _mm256_set_m128(weights.luma4(p.add(12)), weights.luma4(p))
            });
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
        let [r, g, b] = self.channels.map(|c| {
            let biased = _mm256_or_si256(_mm256_shuffle_epi8(bytes, c), _mm256_castpd_si256(magic));
            _mm256_sub_pd(_mm256_castsi256_pd(biased), magic)
        });
        let [wr, wg, wb] = self.weights;
        let sum = _mm256_add_pd(
            _mm256_add_pd(_mm256_mul_pd(r, wr), _mm256_mul_pd(g, wg)),
            _mm256_mul_pd(b, wb),
        );
        _mm256_cvtpd_ps(sum)
    }
}

/// Columns `o .. o + width` of `out` (lanes as rows) into the row-major
/// `rows` (`cols` wide), as many rows as it holds (at most L).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store_block(out: &Block, rows: &mut [f32], cols: usize, o: usize, width: usize) {
    let lanes = rows.len() / cols;
    assert!(lanes <= L && o + width <= cols && width <= 8);
    for first in (0..lanes).step_by(8) {
        if width == 8 && lanes - first >= 8 {
            let base = rows.as_mut_ptr().add(first * cols + o);
            let lines: [__m256; 8] =
                std::array::from_fn(|j| unsafe { _mm256_loadu_ps(out[j].as_ptr().add(first)) });
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
fn store_kept(kept: &[[f32; L]], output: &mut [f32], m: usize, count: usize) {
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

    fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    #[test]
    fn transpose_of_an_8x8_block() {
        if !available() {
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

    /// Markstein's corrected division against `_mm256_div_ps` for `floats`
    /// consecutive bit patterns from `first`, dividing by every `n` in
    /// `counts`; returns the first disagreement.
    fn corrected_division_disagreement(
        first: u32,
        floats: u32,
        counts: std::ops::RangeInclusive<u32>,
    ) -> Option<(f32, u32)> {
        for n in counts {
            // SAFETY: callers check AVX2 and FMA.
            unsafe {
                let (vn, inv) = (_mm256_set1_ps(n as f32), _mm256_set1_ps(1.0 / n as f32));
                let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                let mut bits = first;
                while bits < first.saturating_add(floats) {
                    let x = _mm256_castsi256_ps(_mm256_add_epi32(
                        _mm256_set1_epi32(bits as i32),
                        lanes,
                    ));
                    let want = _mm256_div_ps(x, vn);
                    let got = divide::<true>(x, vn, inv);
                    let same = _mm256_castps_si256(want);
                    let equal = _mm256_cmpeq_epi32(same, _mm256_castps_si256(got));
                    let mask = _mm256_movemask_ps(_mm256_castsi256_ps(equal));
                    if mask != 0xff {
                        let lane = (!mask).trailing_zeros();
                        return Some((f32::from_bits(bits + lane), n));
                    }
                    bits += 8;
                }
            }
        }
        None
    }

    /// Every float from 2^-90 (below any nonzero running sum from byte luma)
    /// to 65280 (above any sum of 128 luma values) divided by every count up
    /// to 128. About 5 minutes on two cores in release: `cargo test --release
    /// markstein -- --ignored`.
    #[test]
    #[ignore]
    fn markstein_division_is_exact() {
        if !available() {
            return;
        }
        let (bottom, top) = ((2f32).powi(-90).to_bits(), (255.0f32 * 256.0).to_bits());
        let counts: Vec<u32> = (1..=MAX_FAST_COUNT as u32).collect();
        let halves: Vec<_> = counts
            .chunks(counts.len() / 2)
            .map(|c| {
                let (lo, hi) = (c[0], c[c.len() - 1]);
                std::thread::spawn(move || {
                    corrected_division_disagreement(bottom, top - bottom, lo..=hi)
                })
            })
            .collect();
        for half in halves {
            assert_eq!(half.join().unwrap(), None);
        }
    }

    #[test]
    fn markstein_division_is_exact_on_samples() {
        if !available() {
            return;
        }
        // Around 2^-90 (the smallest running sum from byte luma), 1, and
        // the largest sums, for the counts of common image sizes.
        for first in [
            (2f32).powi(-90).to_bits(),
            1f32.to_bits() - 50_000,
            (255.0f32 * 64.0).to_bits() - 100_000,
        ] {
            assert_eq!(
                corrected_division_disagreement(first, 100_000, 1..=12),
                None
            );
        }
        // Zero stays +0.
        // SAFETY: AVX2 and FMA checked above.
        let zero = unsafe {
            let (n, inv) = (_mm256_set1_ps(3.0), _mm256_set1_ps(1.0 / 3.0));
            _mm256_cvtss_f32(divide::<true>(_mm256_setzero_ps(), n, inv))
        };
        assert_eq!(zero.to_bits(), 0);
        // The same check finds where the correction fails: tiny quotients.
        assert!(corrected_division_disagreement(1, 1 << 20, 6..=6).is_some());
    }
}
