//! Normalised hashtag keys and the user's synonym map and stop-list.
//!
//! The key of a tag is `casefold(NFKC(tag))` (Unicode default case folding
//! after compatibility composition), so `Dog`, `DOG` and `ｄｏｇ` are one key.
//! Synonyms map a key to its canonical key; stop-listed keys (before or after
//! that mapping) are ignored.

use std::collections::{BTreeMap, BTreeSet};

use hashbrown::{HashMap, HashSet};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// Writes the normalised key of `tag` into `out` (cleared first).
pub fn normalize_tag(tag: &str, out: &mut String) {
    out.clear();
    if tag.is_ascii() {
        // NFKC leaves ASCII alone and folding ASCII is lower-casing.
        out.push_str(tag);
        out.make_ascii_lowercase();
    } else {
        let composed: String = tag.nfkc().collect();
        out.push_str(&caseless::default_case_fold_str(&composed));
    }
}

/// The key of a tag, owned.
pub fn normalized(tag: &str) -> String {
    let mut out = String::new();
    normalize_tag(tag, &mut out);
    out
}

/// Synonym merging and stop-listing on top of [`normalize_tag`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SortedNormalizer", into = "SortedNormalizer")]
pub struct Normalizer {
    /// key -> canonical key (both normalised).
    canonical: HashMap<String, String>,
    stoplist: HashSet<String>,
}

/// The saved form: sorted, so a saved vocabulary is byte-for-byte reproducible.
#[derive(Clone, Serialize, Deserialize)]
struct SortedNormalizer {
    canonical: BTreeMap<String, String>,
    stoplist: BTreeSet<String>,
}

impl From<SortedNormalizer> for Normalizer {
    fn from(s: SortedNormalizer) -> Normalizer {
        Normalizer {
            canonical: s.canonical.into_iter().collect(),
            stoplist: s.stoplist.into_iter().collect(),
        }
    }
}

impl From<Normalizer> for SortedNormalizer {
    fn from(n: Normalizer) -> SortedNormalizer {
        SortedNormalizer {
            canonical: n.canonical.into_iter().collect(),
            stoplist: n.stoplist.into_iter().collect(),
        }
    }
}

impl Normalizer {
    /// Builds a normaliser; keys and values are normalised here, so users can
    /// write `BrownBear -> ursusarctos` in any case or width.
    pub fn new<'a>(
        canonical: impl IntoIterator<Item = (&'a str, &'a str)>,
        stoplist: impl IntoIterator<Item = &'a str>,
    ) -> Normalizer {
        let strip = |t: &str| normalized(t.trim_start_matches(['#', '＃']));
        let direct: HashMap<String, String> = canonical
            .into_iter()
            .map(|(k, v)| (strip(k), strip(v)))
            .filter(|(k, v)| k != v)
            .collect();
        // Follow chains (a -> b -> c gives a -> c) so lookups take one step;
        // a cycle stops at the last tag before it repeats.
        let resolved = direct
            .keys()
            .map(|start| {
                let mut seen = HashSet::new();
                let mut current = start;
                seen.insert(current.as_str());
                while let Some(next) = direct.get(current) {
                    if !seen.insert(next.as_str()) {
                        break;
                    }
                    current = next;
                }
                (start.clone(), current.clone())
            })
            .filter(|(k, v)| k != v)
            .collect();
        Normalizer {
            canonical: resolved,
            stoplist: stoplist.into_iter().map(strip).collect(),
        }
    }

    pub fn is_identity(&self) -> bool {
        self.canonical.is_empty() && self.stoplist.is_empty()
    }

    /// The label key for a normalised tag, or `None` when it is stop-listed.
    #[inline]
    pub fn resolve<'a>(&'a self, key: &'a str) -> Option<&'a str> {
        if self.is_identity() {
            return Some(key);
        }
        if self.stoplist.contains(key) {
            return None;
        }
        let canonical = self.canonical.get(key).map_or(key, String::as_str);
        (!self.stoplist.contains(canonical)).then_some(canonical)
    }

    pub fn canonical_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.canonical.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn stoplist(&self) -> impl Iterator<Item = &str> {
        self.stoplist.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_case_and_width() {
        assert_eq!(normalized("Dog"), "dog");
        assert_eq!(normalized("DOG"), "dog");
        assert_eq!(normalized("ｄｏｇ"), "dog");
        assert_eq!(normalized("Straße"), "strasse");
        assert_eq!(normalized("ＣＡＦÉ"), "café");
        assert_eq!(normalized("Café"), normalized("Cafe\u{301}"));
    }

    #[test]
    fn synonyms_and_stoplist() {
        let n = Normalizer::new([("#BrownBear", "UrsusArctos")], ["#InstaGood", "tbt"]);
        assert_eq!(n.resolve("brownbear"), Some("ursusarctos"));
        assert_eq!(n.resolve("dog"), Some("dog"));
        assert_eq!(n.resolve("instagood"), None);
        let chain = Normalizer::new([("a", "b"), ("b", "c"), ("x", "y"), ("y", "x")], []);
        assert_eq!(chain.resolve("a"), Some("c"), "chains resolve fully");
        assert!(
            matches!(chain.resolve("x"), Some("x" | "y")),
            "cycles terminate"
        );
        let n = Normalizer::new([("spam1", "spam")], ["spam"]);
        assert_eq!(
            n.resolve("spam1"),
            None,
            "stop-list applies after merging too"
        );
    }
}
