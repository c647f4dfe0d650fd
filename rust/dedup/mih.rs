//! Exact radius search by multi-index hashing (Norouzi et al.; Meta's PDQ
//! index uses the same 16-bit slots). Every slot's table is probed for all
//! values within `t` bits ([`super::pigeonhole`]); each candidate is then
//! checked on the full hash, and reported only from the first slot within
//! `t` bits, so results are exact and never duplicated. When probing would
//! cost more than comparing everything, the brute-force path runs instead.

use rayon::prelude::*;

use super::brute::{brute_pairs, brute_query};
use super::hashes::{distance, HashSet};
use super::pair::Pair;
use super::pigeonhole::SlotPlan;
use crate::error::CoreError;

/// Ids grouped by 16-bit slot value, one table per slot: what a search
/// probes, whether built once ([`Index`]) or grown ([`super::growing`]).
pub(super) trait Buckets: Sync {
    fn slots(&self) -> usize;
    fn bucket(&self, slot: usize, value: u16) -> &[u32];
    /// Starts loading what [`Buckets::bucket`] reads first for this value.
    fn prefetch(&self, slot: usize, value: u16);
}

/// A hint that `p` is read soon (no effect where unsupported).
#[inline(always)]
pub(super) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// One table per 16-bit slot: ids grouped by slot value (CSR layout).
struct Index {
    slots: usize,
    offsets: Vec<Vec<u32>>,
    ids: Vec<Vec<u32>>,
}

impl Index {
    fn build(set: &HashSet) -> Index {
        let slots = set.words * 4;
        let n = set.len();
        let (offsets, ids) = (0..slots)
            .into_par_iter()
            .map(|s| {
                let mut counts = vec![0u32; 65_537];
                for i in 0..n {
                    counts[set.slot(i, s) as usize + 1] += 1;
                }
                for v in 0..65_536 {
                    counts[v + 1] += counts[v];
                }
                let mut cursor = counts.clone();
                // Fresh zero pages: huge ones (where allowed) spare the
                // random reads of a query most of their TLB misses.
                let mut ids = vec![0u32; n];
                crate::batch::advise_huge_pages(&ids);
                for i in 0..n {
                    let v = set.slot(i, s) as usize;
                    ids[cursor[v] as usize] = i as u32;
                    cursor[v] += 1;
                }
                (counts, ids)
            })
            .unzip();
        Index {
            slots,
            offsets,
            ids,
        }
    }
}

impl Buckets for Index {
    fn slots(&self) -> usize {
        self.slots
    }

    #[inline]
    fn bucket(&self, slot: usize, value: u16) -> &[u32] {
        let o = &self.offsets[slot];
        &self.ids[slot][o[value as usize] as usize..o[value as usize + 1] as usize]
    }

    #[inline]
    fn prefetch(&self, slot: usize, value: u16) {
        prefetch(&self.offsets[slot][value as usize]);
    }
}

/// The 16-bit probe masks of `plan`.
pub(super) fn masks16(plan: &SlotPlan) -> Vec<u16> {
    // 16-bit slots never exceed the mask limit (2^16 masks at most); all
    // masks would still be a correct, if slower, probe set.
    plan.masks()
        .map(|m| m.into_iter().map(|m| m as u16).collect())
        .unwrap_or_else(|_| (0..=u16::MAX).collect())
}

/// Whether multi-index probing beats brute force for these sizes.
pub(super) fn probing_pays(queries: usize, reference: usize, slots: usize, masks: usize) -> bool {
    let per_query = slots as f64 * masks as f64 * (1.0 + reference as f64 / 65_536.0);
    per_query * 4.0 < reference as f64 && queries.saturating_mul(reference) > 1_000_000
}

struct Search<'a, B: Buckets> {
    index: &'a B,
    reference: &'a HashSet,
    masks: &'a [u16],
    plan: SlotPlan,
    radius: u32,
}

/// How many candidates ahead of its check a candidate's hash is fetched.
const PREFETCH_AHEAD: usize = 16;

/// One thread's working lists for a query, reused from query to query.
#[derive(Default)]
struct Scratch {
    /// (slot, value) of each nonempty bucket probed.
    buckets: Vec<(usize, u16)>,
    /// Candidate (slot, id) pairs.
    candidates: Vec<(usize, u32)>,
}

impl<B: Buckets> Search<'_, B> {
    /// A query's buckets and candidates are random reads in tables and
    /// hashes far larger than the caches. Reads are asked for (prefetched)
    /// before they are used, so the misses overlap instead of following one
    /// another: every bucket head first, then every bucket's ids, then each
    /// candidate's hash a fixed distance ahead of its check.
    #[inline(always)]
    fn query_body(
        &self,
        query: &HashSet,
        q: usize,
        only_after: Option<usize>,
        scratch: &mut Scratch,
        out: &mut Vec<Pair>,
    ) {
        let qh = query.get(q);
        let slots = self.index.slots();
        for s in 0..slots {
            let v = query.slot(q, s);
            for &mask in self.masks {
                self.index.prefetch(s, v ^ mask);
            }
        }
        scratch.buckets.clear();
        for s in 0..slots {
            let v = query.slot(q, s);
            for &mask in self.masks {
                if let Some(first) = self.index.bucket(s, v ^ mask).first() {
                    prefetch(first);
                    scratch.buckets.push((s, v ^ mask));
                }
            }
        }
        scratch.candidates.clear();
        for &(s, value) in &scratch.buckets {
            for &j in self.index.bucket(s, value) {
                if only_after.is_some_and(|a| j as usize <= a) {
                    continue;
                }
                scratch.candidates.push((s, j));
            }
        }
        // The candidates' hashes, a fixed distance ahead of their checks (all
        // at once would overflow L1 on a large index).
        let ahead = |k: usize| {
            if let Some(&(_, j)) = scratch.candidates.get(k + PREFETCH_AHEAD) {
                prefetch(self.reference.get(j as usize).as_ptr());
            }
        };
        for &(_, j) in scratch.candidates.iter().take(PREFETCH_AHEAD) {
            prefetch(self.reference.get(j as usize).as_ptr());
        }
        for (k, &(s, j)) in scratch.candidates.iter().enumerate() {
            ahead(k);
            let j = j as usize;
            // Nearly every candidate is far: the full distance (a few
            // popcounts) rejects it before the per-slot first-report rule.
            let d = distance(qh, self.reference.get(j));
            if d > self.radius {
                continue;
            }
            let first = self.plan.reports_at(s, |e| {
                (query.slot(q, e) ^ self.reference.slot(j, e)).count_ones()
            });
            if first {
                out.push(Pair {
                    a: q as u32,
                    b: j as u32,
                    distance: d,
                });
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt")]
    unsafe fn query_popcnt(
        &self,
        query: &HashSet,
        q: usize,
        only_after: Option<usize>,
        scratch: &mut Scratch,
        out: &mut Vec<Pair>,
    ) {
        self.query_body(query, q, only_after, scratch, out)
    }

    fn query(
        &self,
        query: &HashSet,
        q: usize,
        only_after: Option<usize>,
        scratch: &mut Scratch,
        out: &mut Vec<Pair>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU supports POPCNT (checked just above).
            return unsafe { self.query_popcnt(query, q, only_after, scratch, out) };
        }
        self.query_body(query, q, only_after, scratch, out)
    }

    /// Every pair between `queries` and the reference within the radius,
    /// sorted, found on the current rayon pool. With `self_join` the
    /// queries are the reference, each paired with later ids only.
    fn pairs(&self, queries: &HashSet, self_join: bool) -> Vec<Pair> {
        let mut pairs: Vec<Pair> = (0..queries.len())
            .into_par_iter()
            .fold(
                || (Scratch::default(), Vec::new()),
                |(mut scratch, mut out), q| {
                    let after = self_join.then_some(q);
                    self.query(queries, q, after, &mut scratch, &mut out);
                    (scratch, out)
                },
            )
            .map(|(_, out)| out)
            .flatten()
            .collect();
        pairs.par_sort_unstable();
        pairs
    }
}

pub(super) fn check_widths(a: &HashSet, b: &HashSet) -> Result<(), CoreError> {
    if a.words != b.words {
        return Err(CoreError::InvalidArgument(format!(
            "hash widths differ: {} and {} bits",
            a.bits(),
            b.bits()
        )));
    }
    Ok(())
}

/// All pairs `a < b` of `set` within `radius`, sorted.
pub fn search_pairs(set: &HashSet, radius: u32) -> Vec<Pair> {
    let plan = SlotPlan::sixteen(set.words, radius);
    let masks = masks16(&plan);
    if !probing_pays(set.len(), set.len() / 2, plan.slots, masks.len()) {
        return brute_pairs(set, radius);
    }
    let index = Index::build(set);
    let search = Search {
        index: &index,
        reference: set,
        masks: &masks,
        plan,
        radius,
    };
    search.pairs(set, true)
}

/// Every (query, reference) pair within `radius`, sorted.
pub fn search_query(
    queries: &HashSet,
    reference: &HashSet,
    radius: u32,
) -> Result<Vec<Pair>, CoreError> {
    check_widths(queries, reference)?;
    let plan = SlotPlan::sixteen(reference.words, radius);
    let masks = masks16(&plan);
    if !probing_pays(queries.len(), reference.len(), plan.slots, masks.len()) {
        return Ok(brute_query(queries, reference, radius));
    }
    let index = Index::build(reference);
    Ok(probe_queries(&index, queries, reference, radius))
}

/// Every (query, reference) pair within `radius`, sorted, by probing the
/// reference's slot tables `index`.
pub(super) fn probe_queries<B: Buckets>(
    index: &B,
    queries: &HashSet,
    reference: &HashSet,
    radius: u32,
) -> Vec<Pair> {
    let plan = SlotPlan::sixteen(reference.words, radius);
    let masks = masks16(&plan);
    let search = Search {
        index,
        reference,
        masks: &masks,
        plan,
        radius,
    };
    search.pairs(queries, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copies of some hashes with a few bits flipped, appended to the set.
    fn plant(set: &mut HashSet, copies: usize, flips: u32) {
        let words = set.words;
        for c in 0..copies {
            let mut h = set.get(c * 7 % set.len()).to_vec();
            for f in 0..flips {
                let bit = (c as u32 * 13 + f * 29) % (words as u32 * 64);
                h[(bit / 64) as usize] ^= 1 << (bit % 64);
            }
            set.data.extend(h);
        }
    }

    #[test]
    fn mih_equals_brute_force_on_256_bit_hashes() {
        let mut set = HashSet::random(20_000, 4, 1);
        plant(&mut set, 300, 20);
        let fast = search_pairs(&set, 31);
        assert_eq!(fast, brute_pairs(&set, 31));
        assert!(fast.len() >= 300, "planted pairs found: {}", fast.len());
    }

    #[test]
    fn mih_equals_brute_force_on_64_bit_hashes_and_queries() {
        let mut set = HashSet::random(30_000, 1, 2);
        plant(&mut set, 200, 6);
        assert_eq!(search_pairs(&set, 8), brute_pairs(&set, 8));
        let queries = HashSet {
            words: 1,
            data: set.data[30_000..].to_vec(),
        };
        let reference = HashSet {
            words: 1,
            data: set.data[..30_000].to_vec(),
        };
        let fast = search_query(&queries, &reference, 8).unwrap();
        assert_eq!(fast, brute_query(&queries, &reference, 8));
        assert!(fast.len() >= 200);
    }

    #[test]
    fn widths_must_match() {
        assert!(search_query(&HashSet::random(2, 1, 3), &HashSet::random(2, 4, 3), 4).is_err());
    }
}
