//! A near-duplicate index that grows: hashes are added batch after batch,
//! and a query sees every hash added before it. Single-pass dedup asks each
//! batch about the keepers of all earlier batches without rebuilding an
//! index over the whole corpus each time.

use super::brute::brute_query;
use super::hashes::HashSet;
use super::mih::{check_widths, masks16, probe_queries, probing_pays, Buckets};
use super::pair::Pair;
use super::pigeonhole::SlotPlan;
use crate::error::CoreError;

/// Hashes in the order added (ids 0, 1, ...), with one table of ids per
/// 16-bit slot, made when the index first grows past brute-force size.
pub struct GrowingIndex {
    set: HashSet,
    tables: Vec<Vec<Vec<u32>>>,
}

/// Below this many hashes a query scans them all (no tables are kept).
const TABLES_FROM: usize = 1_024;

impl GrowingIndex {
    /// An empty index of `words`-word hashes (1 for 64-bit, 4 for PDQ).
    pub fn new(words: usize) -> Result<GrowingIndex, CoreError> {
        if words == 0 {
            return Err(CoreError::InvalidArgument(
                "hashes must have at least one 64-bit word".into(),
            ));
        }
        Ok(GrowingIndex {
            set: HashSet {
                words,
                data: Vec::new(),
            },
            tables: Vec::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub fn words(&self) -> usize {
        self.set.words
    }

    /// Adds `hashes`; they get the next ids, in order.
    pub fn add(&mut self, hashes: &HashSet) -> Result<(), CoreError> {
        check_widths(hashes, &self.set)?;
        let first = self.set.len();
        self.set.data.extend_from_slice(&hashes.data);
        if self.tables.is_empty() && self.set.len() >= TABLES_FROM {
            let slots = self.set.words * 4;
            self.tables = vec![vec![Vec::new(); 1 << 16]; slots];
            self.file(0);
        } else if !self.tables.is_empty() {
            self.file(first);
        }
        Ok(())
    }

    /// Puts ids `from..` into every slot's table.
    fn file(&mut self, from: usize) {
        for (s, table) in self.tables.iter_mut().enumerate() {
            for i in from..self.set.len() {
                table[self.set.slot(i, s) as usize].push(i as u32);
            }
        }
    }

    /// Every (query, id) pair within `radius`, sorted.
    pub fn query(&self, queries: &HashSet, radius: u32) -> Result<Vec<Pair>, CoreError> {
        check_widths(queries, &self.set)?;
        let plan = SlotPlan::sixteen(self.set.words, radius);
        let masks = masks16(&plan).len();
        let n = self.set.len();
        if self.tables.is_empty() || !probing_pays(queries.len(), n, plan.slots, masks) {
            return Ok(brute_query(queries, &self.set, radius));
        }
        Ok(probe_queries(self, queries, &self.set, radius))
    }
}

impl Buckets for GrowingIndex {
    fn slots(&self) -> usize {
        self.tables.len()
    }

    #[inline]
    fn bucket(&self, slot: usize, value: u16) -> &[u32] {
        &self.tables[slot][value as usize]
    }

    #[inline]
    fn prefetch(&self, slot: usize, value: u16) {
        super::mih::prefetch(&self.tables[slot][value as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::search_query;

    fn slice(set: &HashSet, from: usize, to: usize) -> HashSet {
        HashSet {
            words: set.words,
            data: set.data[from * set.words..to * set.words].to_vec(),
        }
    }

    #[test]
    fn grown_in_batches_answers_as_one_index_built_at_once() {
        let mut all = HashSet::random(6_000, 4, 7);
        // Near copies (a few bits flipped) of earlier hashes.
        for c in 0..400 {
            let mut h = all.get(c * 11 % 5_000).to_vec();
            h[c % 4] ^= 0b1011 << (c % 60);
            all.data.extend(h);
        }
        let queries = slice(&all, 5_000, 6_400);
        let mut index = GrowingIndex::new(4).unwrap();
        for start in (0..5_000).step_by(700) {
            index
                .add(&slice(&all, start, (start + 700).min(5_000)))
                .unwrap();
        }
        assert_eq!(index.len(), 5_000);
        let reference = slice(&all, 0, 5_000);
        let found = index.query(&queries, 31).unwrap();
        assert_eq!(found, search_query(&queries, &reference, 31).unwrap());
        assert_eq!(found, brute_query(&queries, &reference, 31));
        assert!(found.len() >= 400, "planted copies found: {}", found.len());
    }

    #[test]
    fn small_and_empty_indexes_scan() {
        let set = HashSet::random(10, 1, 3);
        let mut index = GrowingIndex::new(1).unwrap();
        assert!(index.query(&set, 8).unwrap().is_empty());
        index.add(&set).unwrap();
        let found = index.query(&set, 0).unwrap();
        assert_eq!(found.len(), 10);
        assert!(found.iter().all(|p| p.a == p.b && p.distance == 0));
    }

    #[test]
    fn widths_must_match() {
        let mut index = GrowingIndex::new(4).unwrap();
        assert!(index.add(&HashSet::random(2, 1, 1)).is_err());
        assert!(index.query(&HashSet::random(2, 1, 1), 4).is_err());
        assert!(GrowingIndex::new(0).is_err());
    }
}
