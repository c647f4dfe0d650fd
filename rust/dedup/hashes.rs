//! A column of fixed-width binary hashes (64 or 256 bits), as u64 words.

use crate::error::CoreError;

/// `n` hashes of `words` u64 each, stored contiguously. Bit order is the
/// hash's big-endian byte order (word 0 holds the first eight bytes), which
/// keeps Hamming distances and 16-bit slots consistent for any width.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashSet {
    pub words: usize,
    pub data: Vec<u64>,
}

impl HashSet {
    pub fn from_u64(values: &[u64]) -> HashSet {
        HashSet {
            words: 1,
            data: values.to_vec(),
        }
    }

    /// From concatenated big-endian hashes of `bytes_per_hash` bytes (8 or 32).
    pub fn from_bytes(bytes: &[u8], bytes_per_hash: usize) -> Result<HashSet, CoreError> {
        if bytes_per_hash == 0 || bytes_per_hash % 8 != 0 {
            return Err(CoreError::InvalidArgument(format!(
                "hash width must be a multiple of 8 bytes, got {bytes_per_hash}"
            )));
        }
        if bytes.len() % bytes_per_hash != 0 {
            return Err(CoreError::InvalidData(
                "hash data is not a whole number of hashes".into(),
            ));
        }
        let data = bytes
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()))
            .collect();
        Ok(HashSet {
            words: bytes_per_hash / 8,
            data,
        })
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.words.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    #[inline]
    pub fn get(&self, i: usize) -> &[u64] {
        &self.data[i * self.words..(i + 1) * self.words]
    }

    pub fn bits(&self) -> u32 {
        self.words as u32 * 64
    }

    /// `n` pseudo-random hashes of `words` words (an LCG from `seed`), for tests.
    #[cfg(test)]
    pub fn random(n: usize, words: usize, seed: u64) -> HashSet {
        let mut x = seed;
        let data = (0..n * words)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                x ^ (x >> 29)
            })
            .collect();
        HashSet { words, data }
    }

    /// The 16-bit slot `s` of hash `i` (slot 0 is the top 16 bits of word 0).
    #[inline]
    pub fn slot(&self, i: usize, s: usize) -> u16 {
        let word = self.data[i * self.words + s / 4];
        (word >> (48 - 16 * (s % 4))) as u16
    }
}

#[inline]
pub fn distance(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}
