//! Parallel encoding of a batch of same-size RGB frames.

use rayon::prelude::*;

use crate::image::{encode, encode_jpeg_sampled, EncodeFormat};

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

/// One frame of a variable-size batch: packed RGB8 and its (width, height).
pub type Frame<'a> = Option<(&'a [u8], u32, u32)>;

/// Encodes frames of differing sizes (a keep-aspect store) on the current
/// rayon pool, in input order; `full_chroma` makes JPEGs 4:4:4. A null or
/// rejected frame gives `None`.
pub fn encode_frames(
    frames: &[Frame],
    format: EncodeFormat,
    quality: u8,
    full_chroma: bool,
) -> Vec<Option<Vec<u8>>> {
    frames
        .par_iter()
        .map(|frame| {
            let (rgb, width, height) = (*frame)?;
            match format {
                EncodeFormat::Jpeg => encode_jpeg_sampled(rgb, width, height, quality, full_chroma),
                _ => encode(rgb, width, height, format, quality),
            }
            .ok()
        })
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
    fn frames_of_any_size() {
        let a = [10u8; 3 * 2 * 3];
        let b = [200u8; 5 * 4 * 3];
        let frames = [
            Some((&a[..], 3, 2)),
            None,
            Some((&b[..], 5, 4)),
            Some((&a[..], 9, 9)),
        ];
        let out = run_in_pool(Some(2), || {
            encode_frames(&frames, EncodeFormat::Jpeg, 90, true)
        });
        let present: Vec<bool> = out.iter().map(Option::is_some).collect();
        assert_eq!(
            present,
            [true, false, true, false],
            "a wrong size is refused"
        );
        let decoded = crate::image::decode(out[2].as_ref().unwrap(), &Default::default(), 0);
        let img = decoded.result.unwrap();
        assert_eq!((img.width, img.height), (5, 4));
    }

    #[test]
    fn format_names() {
        assert_eq!(EncodeFormat::from_name("webp"), Ok(EncodeFormat::Webp));
        assert!(EncodeFormat::from_name("gif").is_err());
    }
}
