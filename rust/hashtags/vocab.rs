//! Label vocabularies: the top-K keys by image frequency, with stable ids.

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use super::counts::TagCounts;
use super::normalize::Normalizer;
use crate::error::CoreError;

/// A label vocabulary. Ids are positions in `tags`; the normaliser travels
/// with it so training and preprocessing label captions the same way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vocabulary {
    /// Format marker for saved files.
    pub format: String,
    pub tags: Vec<String>,
    /// Captions (images) per tag in the counts it was built from.
    pub images: Vec<u64>,
    pub occurrences: Vec<u64>,
    pub normalizer: Normalizer,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

pub const VOCAB_FORMAT: &str = "fastprep.vocabulary.v1";

impl Vocabulary {
    /// The `top_k` keys with at least `min_count` images, ordered by images,
    /// then occurrences (both descending), then key bytes.
    pub fn from_counts(
        counts: &TagCounts,
        top_k: Option<usize>,
        min_count: u64,
        normalizer: Normalizer,
    ) -> Vocabulary {
        let rows: Vec<_> = counts
            .sorted()
            .into_iter()
            .filter(|(_, c)| c.images >= min_count)
            .take(top_k.unwrap_or(usize::MAX))
            .collect();
        let mut vocab = Vocabulary {
            format: VOCAB_FORMAT.into(),
            tags: rows.iter().map(|(t, _)| t.to_string()).collect(),
            images: rows.iter().map(|(_, c)| c.images).collect(),
            occurrences: rows.iter().map(|(_, c)| c.occurrences).collect(),
            normalizer,
            index: HashMap::new(),
        };
        vocab.rebuild_index();
        vocab
    }

    fn rebuild_index(&mut self) {
        self.index = self
            .tags
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
    }

    pub fn len(&self) -> usize {
        self.tags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// Id of a normalised, canonical key.
    #[inline]
    pub fn id(&self, key: &str) -> Option<u32> {
        self.index.get(key).copied()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Vocabulary, CoreError> {
        let bad = |text: String| CoreError::InvalidData(text);
        let mut vocab: Vocabulary =
            serde_json::from_str(text).map_err(|e| bad(format!("invalid vocabulary: {e}")))?;
        if vocab.format != VOCAB_FORMAT {
            return Err(bad(format!(
                "unsupported vocabulary format {:?}",
                vocab.format
            )));
        }
        if vocab.images.len() != vocab.tags.len() || vocab.occurrences.len() != vocab.tags.len() {
            return Err(bad("vocabulary columns differ in length".into()));
        }
        vocab.rebuild_index();
        if vocab.index.len() != vocab.tags.len() {
            return Err(bad("vocabulary has duplicate tags".into()));
        }
        Ok(vocab)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashtags::TagCount;

    #[test]
    fn top_k_min_count_and_ties() {
        let mut counts = TagCounts::new();
        for (tag, images) in [("b", 5), ("a", 5), ("c", 9), ("d", 1)] {
            counts.insert(
                tag,
                TagCount {
                    occurrences: images,
                    images,
                },
            );
        }
        let v = Vocabulary::from_counts(&counts, Some(3), 2, Normalizer::default());
        assert_eq!(v.tags, vec!["c", "a", "b"]);
        assert_eq!(v.id("b"), Some(2));
        assert_eq!(v.id("d"), None);
        let back = Vocabulary::from_json(&v.to_json()).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.id("a"), Some(1));
    }
}
