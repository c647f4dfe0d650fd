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
//! Rows go in and out of the column-major strips through
//! [`super::pdq_strips`].
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
use super::pdq_strips::{load_rgb_block, load_rows_block, store_block, store_kept, Block, L};
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

#[cfg(test)]
mod tests {
    use super::*;

    fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
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
