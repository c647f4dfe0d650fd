//! The result type every search returns (its own module so the brute-force
//! and multi-index searches share it without depending on each other).

/// A match: `a` and `b` index the inputs; `distance` is the Hamming distance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pair {
    pub a: u32,
    pub b: u32,
    pub distance: u32,
}
