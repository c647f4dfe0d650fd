//! Exact hashes: of the encoded bytes (xxh3-128 for speed, BLAKE3 for
//! provenance) and of the decoded pixels (the same picture in another
//! container or with other metadata hashes the same).

use xxhash_rust::xxh3::xxh3_128;

/// xxh3-128 in its canonical (big-endian) byte order.
pub fn xxh3_128_bytes(data: &[u8]) -> [u8; 16] {
    xxh3_128(data).to_be_bytes()
}

pub fn blake3_bytes(data: &[u8]) -> [u8; 32] {
    *blake3::hash(data).as_bytes()
}

/// xxh3-128 of `width`, `height` (little-endian u32) and the RGB8 pixels.
pub fn pixel_hash(width: u32, height: u32, rgb: &[u8]) -> [u8; 16] {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&width.to_le_bytes());
    hasher.update(&height.to_le_bytes());
    hasher.update(rgb);
    hasher.digest128().to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // BLAKE3 of the empty input (from the BLAKE3 spec test vectors).
        let empty: String = blake3_bytes(b"")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            empty,
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_ne!(xxh3_128_bytes(b"a"), xxh3_128_bytes(b"b"));
        assert_ne!(
            pixel_hash(1, 2, &[0; 6]),
            pixel_hash(2, 1, &[0; 6]),
            "size is part of the hash"
        );
    }
}
