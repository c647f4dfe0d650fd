//! The hashtag engine: extraction (twitter-text rules), normalisation,
//! mergeable parallel counts, vocabularies and per-caption labels.

mod chars;
mod counts;
mod extract;
mod labels;
mod lists;
mod normalize;
mod url;
mod vocab;

pub use counts::{count_parallel, TagCount, TagCounts};
pub use extract::{extract, extract_spans};
pub use labels::{label_parallel, Labels, PairCounts};
pub use lists::extract_lists;
pub use normalize::{normalize_tag, Normalizer};
pub use vocab::Vocabulary;
