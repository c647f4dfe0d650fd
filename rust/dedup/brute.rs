//! Exhaustive Hamming search: the exactness reference, and the faster path
//! for small sets. Uses the POPCNT instruction when the CPU has it.

use rayon::prelude::*;

use super::hashes::{distance, HashSet};
use super::pair::Pair;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn scan_popcnt(
    set: &HashSet,
    query: &[u64],
    from: usize,
    radius: u32,
    out: &mut Vec<(u32, u32)>,
) {
    scan_portable(set, query, from, radius, out)
}

#[inline(always)]
fn scan_portable(
    set: &HashSet,
    query: &[u64],
    from: usize,
    radius: u32,
    out: &mut Vec<(u32, u32)>,
) {
    let w = set.words;
    for (j, h) in set.data.chunks_exact(w).enumerate().skip(from) {
        let d = distance(query, h);
        if d <= radius {
            out.push((j as u32, d));
        }
    }
}

fn scan(set: &HashSet, query: &[u64], from: usize, radius: u32, out: &mut Vec<(u32, u32)>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: the CPU supports POPCNT (checked just above).
        return unsafe { scan_popcnt(set, query, from, radius, out) };
    }
    scan_portable(set, query, from, radius, out)
}

/// All pairs `a < b` within `radius` in one set.
pub fn brute_pairs(set: &HashSet, radius: u32) -> Vec<Pair> {
    let mut pairs: Vec<Pair> = (0..set.len())
        .into_par_iter()
        .flat_map_iter(|a| {
            let mut hits = Vec::new();
            scan(set, set.get(a), a + 1, radius, &mut hits);
            hits.into_iter().map(move |(b, d)| Pair {
                a: a as u32,
                b,
                distance: d,
            })
        })
        .collect();
    pairs.sort_unstable();
    pairs
}

/// Every (query, reference) pair within `radius`.
pub fn brute_query(queries: &HashSet, reference: &HashSet, radius: u32) -> Vec<Pair> {
    let mut pairs: Vec<Pair> = (0..queries.len())
        .into_par_iter()
        .flat_map_iter(|q| {
            let mut hits = Vec::new();
            scan(reference, queries.get(q), 0, radius, &mut hits);
            hits.into_iter().map(move |(r, d)| Pair {
                a: q as u32,
                b: r,
                distance: d,
            })
        })
        .collect();
    pairs.sort_unstable();
    pairs
}
