//! Per-caption labels: vocabulary ids of a caption's hashtags, and bounded
//! co-occurrence counts of label pairs.

use hashbrown::HashMap;
use rayon::prelude::*;

use super::extract::extract_spans;
use super::normalize::normalize_tag;
use super::vocab::Vocabulary;

/// Labels of a batch of captions as an Arrow-style list layout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels {
    /// Caption i's ids are `values[offsets[i]..offsets[i+1]]`: distinct, in
    /// order of first appearance.
    pub offsets: Vec<i32>,
    pub values: Vec<i32>,
    /// Whether caption i was null.
    pub null: Vec<bool>,
}

impl Labels {
    pub fn len(&self) -> usize {
        self.null.len()
    }

    pub fn is_empty(&self) -> bool {
        self.null.is_empty()
    }

    pub fn of(&self, i: usize) -> &[i32] {
        &self.values[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

/// Counts of label-id pairs, bounded to about `max_pairs` entries.
///
/// Exact while the number of distinct pairs stays under the bound. Past it,
/// the least frequent half is dropped (lossy counting) and `error_bound` says
/// by how much any surviving count may fall short: pairs counted more than
/// that are reported in the right order.
#[derive(Clone, Debug, Default)]
pub struct PairCounts {
    pairs: HashMap<u64, u64>,
    max_pairs: usize,
    pub error_bound: u64,
}

impl PairCounts {
    pub fn new(max_pairs: usize) -> PairCounts {
        PairCounts {
            pairs: HashMap::new(),
            max_pairs: max_pairs.max(16),
            error_bound: 0,
        }
    }

    fn add(&mut self, a: i32, b: i32) {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        *self
            .pairs
            .entry(((lo as u64) << 32) | hi as u64)
            .or_insert(0) += 1;
        if self.pairs.len() > self.max_pairs {
            self.prune();
        }
    }

    fn prune(&mut self) {
        let mut counts: Vec<u64> = self.pairs.values().copied().collect();
        let middle = counts.len() / 2;
        let (_, &mut threshold, _) = counts.select_nth_unstable(middle);
        self.pairs.retain(|_, c| *c > threshold);
        // A pair may be pruned repeatedly, losing up to `threshold` each time.
        self.error_bound += threshold;
    }

    pub fn merge(&mut self, other: PairCounts) {
        for (k, c) in other.pairs {
            *self.pairs.entry(k).or_insert(0) += c;
        }
        self.error_bound += other.error_bound;
        self.max_pairs = self.max_pairs.max(other.max_pairs);
        while self.pairs.len() > self.max_pairs {
            self.prune();
        }
    }

    /// The `k` most frequent pairs `(a, b, count)` with `a < b`, ties by ids.
    pub fn top(&self, k: usize) -> Vec<(i32, i32, u64)> {
        let mut rows: Vec<(i32, i32, u64)> = self
            .pairs
            .iter()
            .map(|(&key, &c)| ((key >> 32) as i32, key as u32 as i32, c))
            .collect();
        rows.sort_unstable_by(|x, y| y.2.cmp(&x.2).then((x.0, x.1).cmp(&(y.0, y.1))));
        rows.truncate(k);
        rows
    }
}

/// Labels `captions` against `vocab` on the current rayon pool; with
/// `pairs`, also counts co-occurring label pairs (first 64 labels of a caption).
pub fn label_parallel(
    captions: &[Option<&[u8]>],
    vocab: &Vocabulary,
    pairs: Option<usize>,
) -> (Labels, Option<PairCounts>) {
    const CHUNK: usize = 4096;
    let parts: Vec<(Labels, Option<PairCounts>)> = captions
        .par_chunks(CHUNK)
        // One spelling -> id cache per thread: normalise each spelling once.
        .map_init(HashMap::<Vec<u8>, i32>::new, |cache, chunk| {
            let mut labels = Labels {
                offsets: vec![0],
                ..Default::default()
            };
            let mut pair_counts = pairs.map(PairCounts::new);
            let mut scratch = String::new();
            for text in chunk {
                let start = labels.values.len();
                labels.null.push(text.is_none());
                if let Some(text) = text {
                    extract_spans(text, |s, e| {
                        let raw = &text[s..e];
                        let id = *cache.entry_ref(raw).or_insert_with(|| {
                            normalize_tag(
                                std::str::from_utf8(raw).unwrap_or_default(),
                                &mut scratch,
                            );
                            vocab
                                .normalizer
                                .resolve(&scratch)
                                .and_then(|key| vocab.id(key))
                                .map_or(-1, |id| id as i32)
                        });
                        if id >= 0 && !labels.values[start..].contains(&id) {
                            labels.values.push(id);
                        }
                    });
                }
                if let Some(pc) = pair_counts.as_mut() {
                    let ids = &labels.values[start..labels.values.len().min(start + 64)];
                    for (i, &a) in ids.iter().enumerate() {
                        for &b in &ids[i + 1..] {
                            pc.add(a, b);
                        }
                    }
                }
                labels.offsets.push(labels.values.len() as i32);
            }
            (labels, pair_counts)
        })
        .collect();
    let mut out = Labels {
        offsets: vec![0],
        ..Default::default()
    };
    let mut all_pairs = pairs.map(PairCounts::new);
    for (part, pc) in parts {
        let base = out.values.len() as i32;
        out.offsets
            .extend(part.offsets[1..].iter().map(|o| o + base));
        out.values.extend(part.values);
        out.null.extend(part.null);
        if let (Some(all), Some(pc)) = (all_pairs.as_mut(), pc) {
            all.merge(pc);
        }
    }
    (out, all_pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashtags::{count_parallel, Normalizer};

    #[test]
    fn labels_dedupe_merge_synonyms_and_skip_unknown() {
        let texts: Vec<Option<&[u8]>> = vec![
            Some(b"#dog #puppy #cat #Dog".as_slice()),
            Some(b"#unknown only"),
            None,
            Some(b"#instagood #cat"),
        ];
        let normalizer = Normalizer::new([("puppy", "dog")], ["instagood"]);
        let counts = count_parallel(&texts, &normalizer, false);
        let vocab = Vocabulary::from_counts(&counts, Some(2), 1, normalizer);
        assert_eq!(
            vocab.tags,
            vec!["cat", "dog"],
            "unknown is cut by top_k (fewer occurrences than dog)"
        );
        let (labels, pairs) = label_parallel(&texts, &vocab, Some(100));
        assert_eq!(labels.of(0), &[1, 0]);
        assert!(labels.of(1).is_empty() && labels.of(2).is_empty());
        assert_eq!(labels.of(3), &[0]);
        assert_eq!(labels.null, vec![false, false, true, false]);
        assert_eq!(pairs.unwrap().top(5), vec![(0, 1, 1)]);
    }

    #[test]
    fn pair_counts_stay_bounded() {
        let mut pc = PairCounts::new(16);
        for i in 0..1000 {
            pc.add(0, 1);
            pc.add(i, i + 1000);
        }
        assert!(pc.pairs.len() <= 16);
        assert_eq!(pc.top(1)[0], (0, 1, 1000));
        assert!(pc.error_bound >= 1);
    }
}
