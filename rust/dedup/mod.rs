//! Near-duplicate search over perceptual hashes and dedup decisions.

mod brute;
mod clusters;
mod growing;
mod hashes;
mod mih;
mod pair;
mod pigeonhole;
pub mod sharded;

pub use brute::{brute_pairs, brute_query};
pub use clusters::{clusters, keepers, Clusters};
pub use growing::GrowingIndex;
pub use hashes::HashSet;
pub use mih::{search_pairs, search_query};
pub use pair::Pair;
pub use pigeonhole::{probe_masks, SlotPlan};
