//! Parallel encoding of a batch of same-size RGB frames.

use rayon::prelude::*;

use crate::image::{encode, EncodeFormat};

/// Encodes every frame (packed RGB8, `width` x `height`) on the current rayon
/// pool, in input order. A null frame, or one the encoder rejects, gives
/// `None`: a shard writer stores a null rather than losing the whole batch.
pub fn encode_batch(
    frames: &[Option<&[u8]>],
    width: u32,
    height: u32,
    format: EncodeFormat,
    quality: u8,
) -> Vec<Option<Vec<u8>>> {
    frames
        .par_iter()
        .map(|frame| frame.and_then(|rgb| encode(rgb, width, height, format, quality).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::run_in_pool;

    #[test]
    fn nulls_and_bad_frames_stay_in_place() {
        let good = [200u8; 4 * 2 * 3];
        let short = [0u8; 5];
        let frames = [Some(&good[..]), None, Some(&short[..]), Some(&good[..])];
        let out = run_in_pool(Some(2), || {
            encode_batch(&frames, 4, 2, EncodeFormat::Png, 90)
        });
        let present: Vec<bool> = out.iter().map(Option::is_some).collect();
        assert_eq!(present, [true, false, false, true]);
        assert_eq!(out[0], out[3]);
        assert!(out[0]
            .as_ref()
            .is_some_and(|png| png.starts_with(b"\x89PNG")));
    }

    #[test]
    fn format_names() {
        assert_eq!(EncodeFormat::from_name("webp"), Ok(EncodeFormat::Webp));
        assert!(EncodeFormat::from_name("gif").is_err());
    }
}
