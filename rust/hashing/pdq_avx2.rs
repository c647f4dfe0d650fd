//! PDQ's box filters with AVX2, bit-identical to the scalar ones.
//!
//! Down the columns, one step of the running sums is a vector add, subtract
//! and divide over a whole row ([`box_cols_avx2`]). Along the rows, a
//! running sum is one long dependency chain, so rows are
//! filtered sixteen at a time: each step of the chain then works on two
//! vectors (two independent chains, which hides the adds' latency). The
//! strip of sixteen rows is turned column-major by 8x8 register transposes
//! on the way in and back on the way out, where the plain version moves one
//! float at a time. Every lane performs the reference's exact scalar
//! sequence of IEEE adds, subtracts and divides, so results are the same
//! bits as [`super::pdq`]'s plain filter.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::pdq::BoxPlan;

const L: usize = 16;

/// Box filter along every row of `input` (`rows` x `cols`, row-major) into
/// `output`; with `keep`, only those output columns are written.
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn box_rows_avx2(
    input: &[f32],
    output: &mut [f32],
    rows: usize,
    cols: usize,
    window: usize,
    keep: Option<&[usize]>,
) {
    assert!(input.len() >= rows * cols && output.len() >= rows * cols);
    let plan = BoxPlan { window, len: cols };
    let mut strip = vec![[0f32; L]; cols];
    let mut done = vec![[0f32; L]; cols];
    let mut r0 = 0;
    while r0 < rows {
        let lanes = L.min(rows - r0);
        for half in 0..L / 8 {
            let first = 8 * half;
            if first >= lanes {
                break;
            }
            // SAFETY: rows r0 + first .. + 8 exist when the block is whole.
            unsafe { load_block_rows(input, cols, r0 + first, lanes - first, first, &mut strip) };
        }
        // Two vectors of eight lanes: two independent chains of adds.
        let (mut low, mut high) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let column = strip.as_ptr().cast::<f32>();
        let out = done.as_mut_ptr().cast::<f32>();
        plan.run(|add, sub, write, count| {
            // SAFETY: the plan's indices are below `cols`, the length of both
            // column-major buffers (L floats per column).
            unsafe {
                if let Some(a) = add {
                    let p = column.add(a * L);
                    low = _mm256_add_ps(low, _mm256_loadu_ps(p));
                    high = _mm256_add_ps(high, _mm256_loadu_ps(p.add(8)));
                }
                if let Some(b) = sub {
                    let p = column.add(b * L);
                    low = _mm256_sub_ps(low, _mm256_loadu_ps(p));
                    high = _mm256_sub_ps(high, _mm256_loadu_ps(p.add(8)));
                }
                if let Some(o) = write {
                    let n = _mm256_set1_ps(count as f32);
                    let q = out.add(o * L);
                    _mm256_storeu_ps(q, _mm256_div_ps(low, n));
                    _mm256_storeu_ps(q.add(8), _mm256_div_ps(high, n));
                }
            }
        });
        match keep {
            None => {
                for half in 0..L / 8 {
                    let first = 8 * half;
                    if first >= lanes {
                        break;
                    }
                    // SAFETY: as for the loads.
                    unsafe {
                        store_block_rows(output, cols, r0 + first, lanes - first, first, &done)
                    };
                }
            }
            Some(columns) => {
                for l in 0..lanes {
                    let row = &mut output[(r0 + l) * cols..(r0 + l + 1) * cols];
                    for &c in columns {
                        row[c] = done[c][l];
                    }
                }
            }
        }
        r0 += L;
    }
}

/// Float luma of the leading pixels of `rgb` into `luma`, four pixels per
/// vector: each channel's bytes are spread to 32-bit lanes by one shuffle,
/// widened to double precision, and weighted and summed in the reference's
/// order (`r * 0.299 + g * 0.587`, then `+ b * 0.114`, then rounded to
/// single), so each value is the scalar one's bits. Returns how many pixels
/// it did (the rest: a few at the end, where a 16-byte load would read past
/// the buffer).
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn luma_avx2(rgb: &[u8], luma: &mut [f32]) -> usize {
    let pixels = luma.len().min(rgb.len() / 3);
    // Groups of four pixels whose 16-byte load stays inside `rgb`.
    let groups = if rgb.len() >= 16 {
        ((rgb.len() - 16) / 12 + 1).min(pixels / 4)
    } else {
        0
    };
    let spread = |c: i8| {
        _mm_setr_epi8(
            c,
            -1,
            -1,
            -1,
            c + 3,
            -1,
            -1,
            -1,
            c + 6,
            -1,
            -1,
            -1,
            c + 9,
            -1,
            -1,
            -1,
        )
    };
    let (red, green, blue) = (spread(0), spread(1), spread(2));
    let (wr, wg, wb) = (
        _mm256_set1_pd(0.299),
        _mm256_set1_pd(0.587),
        _mm256_set1_pd(0.114),
    );
    let source = rgb.as_ptr();
    let target = luma.as_mut_ptr();
    for group in 0..groups {
        // SAFETY: 12 * group + 16 <= rgb.len() and 4 * group + 4 <= luma.len().
        let bytes = _mm_loadu_si128(source.add(12 * group).cast());
        let r = _mm256_cvtepi32_pd(_mm_shuffle_epi8(bytes, red));
        let g = _mm256_cvtepi32_pd(_mm_shuffle_epi8(bytes, green));
        let b = _mm256_cvtepi32_pd(_mm_shuffle_epi8(bytes, blue));
        let sum = _mm256_add_pd(
            _mm256_add_pd(_mm256_mul_pd(r, wr), _mm256_mul_pd(g, wg)),
            _mm256_mul_pd(b, wb),
        );
        _mm_storeu_ps(target.add(4 * group), _mm256_cvtpd_ps(sum));
    }
    4 * groups
}

/// Box filter down every column of `input` (`rows` x `cols`, row-major) into
/// `output`: each step adds one input row to the running sums, subtracts
/// another and divides, eight columns per vector operation.
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn box_cols_avx2(
    input: &[f32],
    output: &mut [f32],
    rows: usize,
    cols: usize,
    window: usize,
) {
    assert!(input.len() >= rows * cols && output.len() >= rows * cols);
    let plan = BoxPlan { window, len: rows };
    let mut sum = vec![0f32; cols];
    let whole = cols / 8 * 8;
    plan.run(|add, sub, write, count| {
        let a = add.map(|a| &input[a * cols..(a + 1) * cols]);
        let b = sub.map(|b| &input[b * cols..(b + 1) * cols]);
        let n = count as f32;
        // SAFETY: every offset is below `whole` <= `cols`, the length of
        // `sum`, of each input row and of the output row.
        unsafe {
            let s = sum.as_mut_ptr();
            let vn = _mm256_set1_ps(n);
            let o = write.map(|o| output.as_mut_ptr().add(o * cols));
            let mut c = 0;
            while c < whole {
                let mut v = _mm256_loadu_ps(s.add(c));
                if let Some(a) = a {
                    v = _mm256_add_ps(v, _mm256_loadu_ps(a.as_ptr().add(c)));
                }
                if let Some(b) = b {
                    v = _mm256_sub_ps(v, _mm256_loadu_ps(b.as_ptr().add(c)));
                }
                _mm256_storeu_ps(s.add(c), v);
                if let Some(o) = o {
                    _mm256_storeu_ps(o.add(c), _mm256_div_ps(v, vn));
                }
                c += 8;
            }
        }
        for c in whole..cols {
            if let Some(a) = a {
                sum[c] += a[c];
            }
            if let Some(b) = b {
                sum[c] -= b[c];
            }
            if let Some(o) = write {
                output[o * cols + c] = sum[c] / n;
            }
        }
    });
}

/// Rows `row .. row + min(8, count)` of `input` into lanes `lane ..` of the
/// column-major `strip`.
#[target_feature(enable = "avx2")]
unsafe fn load_block_rows(
    input: &[f32],
    cols: usize,
    row: usize,
    count: usize,
    lane: usize,
    strip: &mut [[f32; L]],
) {
    let whole = if count >= 8 { cols / 8 * 8 } else { 0 };
    let base = input.as_ptr().add(row * cols);
    let mut c = 0;
    while c < whole {
        let block = [
            _mm256_loadu_ps(base.add(c)),
            _mm256_loadu_ps(base.add(cols + c)),
            _mm256_loadu_ps(base.add(2 * cols + c)),
            _mm256_loadu_ps(base.add(3 * cols + c)),
            _mm256_loadu_ps(base.add(4 * cols + c)),
            _mm256_loadu_ps(base.add(5 * cols + c)),
            _mm256_loadu_ps(base.add(6 * cols + c)),
            _mm256_loadu_ps(base.add(7 * cols + c)),
        ];
        let columns = transpose8(block);
        for (j, v) in columns.iter().enumerate() {
            _mm256_storeu_ps(strip[c + j].as_mut_ptr().add(lane), *v);
        }
        c += 8;
    }
    for l in 0..count.min(8) {
        let source = &input[(row + l) * cols..(row + l + 1) * cols];
        for (cell, &v) in strip[c..].iter_mut().zip(&source[c..]) {
            cell[lane + l] = v;
        }
    }
}

/// Lanes `lane .. lane + min(8, count)` of `done` back into rows `row ..`.
#[target_feature(enable = "avx2")]
unsafe fn store_block_rows(
    output: &mut [f32],
    cols: usize,
    row: usize,
    count: usize,
    lane: usize,
    done: &[[f32; L]],
) {
    let whole = if count >= 8 { cols / 8 * 8 } else { 0 };
    let base = output.as_mut_ptr().add(row * cols);
    let mut c = 0;
    while c < whole {
        let block = [
            _mm256_loadu_ps(done[c].as_ptr().add(lane)),
            _mm256_loadu_ps(done[c + 1].as_ptr().add(lane)),
            _mm256_loadu_ps(done[c + 2].as_ptr().add(lane)),
            _mm256_loadu_ps(done[c + 3].as_ptr().add(lane)),
            _mm256_loadu_ps(done[c + 4].as_ptr().add(lane)),
            _mm256_loadu_ps(done[c + 5].as_ptr().add(lane)),
            _mm256_loadu_ps(done[c + 6].as_ptr().add(lane)),
            _mm256_loadu_ps(done[c + 7].as_ptr().add(lane)),
        ];
        let rows = transpose8(block);
        for (k, v) in rows.iter().enumerate() {
            _mm256_storeu_ps(base.add(k * cols + c), *v);
        }
        c += 8;
    }
    for l in 0..count.min(8) {
        let target = &mut output[(row + l) * cols..(row + l + 1) * cols];
        for (dst, cell) in target[c..].iter_mut().zip(&done[c..]) {
            *dst = cell[lane + l];
        }
    }
}

/// The transpose of an 8x8 block held as eight row vectors.
#[inline(always)]
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
