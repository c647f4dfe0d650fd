//! Parallel decoding of a batch: every record yields pixels or a reason.

use std::panic::{catch_unwind, AssertUnwindSafe};

use arrow_array::RecordBatch;
use rayon::prelude::*;

use super::arrow::{build_record_batch, Pixels, RecordMeta};
use super::memory::pixel_buffer;
use super::source::RecordSource;
use crate::image::{decode_into, probe, DecodeError, Decoded, HashRequest, ImageOptions};

/// The decoded batch before it becomes Arrow.
pub struct DecodedBatch {
    pub pixels: Pixels,
    pub records: Vec<RecordMeta>,
    /// Which hash columns to emit.
    pub hashes: HashRequest,
}

impl DecodedBatch {
    pub fn into_record_batch(self) -> RecordBatch {
        build_record_batch(self.pixels, self.records, &self.hashes)
    }
}

fn panic_reason(payload: Box<dyn std::any::Any + Send>) -> DecodeError {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into());
    DecodeError::Internal(format!("panic: {text}"))
}

fn meta<T>(decoded: &Decoded<T>, output: Option<(u32, u32)>) -> RecordMeta {
    RecordMeta {
        format: decoded.format.map(|f| f.name()),
        source_size: decoded.source_size,
        orientation: decoded.source_size.map(|_| decoded.orientation.value()),
        output_size: decoded.result.as_ref().ok().and(output),
        error: decoded.result.as_ref().err().cloned(),
        warnings: decoded.warnings.clone(),
        hashes: decoded.hashes.clone(),
    }
}

fn failure<T>(error: DecodeError) -> Decoded<T> {
    Decoded {
        format: None,
        source_size: None,
        orientation: crate::image::Orientation::IDENTITY,
        hashes: Default::default(),
        warnings: Vec::new(),
        result: Err(error),
    }
}

/// Decodes record `i` into `slot` (empty when no pixels are wanted); a panic
/// becomes the record's error, and a failed record's slot is zeroed.
fn decode_record(
    source: &impl RecordSource,
    i: usize,
    options: &ImageOptions,
    slot: &mut [u8],
) -> Decoded<()> {
    let decoded = source.with_bytes(i, |bytes| match bytes {
        Err(e) => failure(e),
        Ok(bytes) => catch_unwind(AssertUnwindSafe(|| {
            decode_into(bytes, options, i as u64, &mut *slot)
        }))
        .unwrap_or_else(|p| failure(panic_reason(p))),
    });
    if decoded.result.is_err() {
        slot.fill(0);
    }
    decoded
}

/// Interleaved RGB (`[H, W, 3]`) to three planes (`[3, H, W]`).
fn to_planes(interleaved: &[u8], planes: &mut [u8]) {
    let n = interleaved.len() / 3;
    let (red, rest) = planes.split_at_mut(n);
    let (green, blue) = rest.split_at_mut(n);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("ssse3") {
        // SAFETY: SSSE3 is present; the function only touches in-bounds data.
        done = unsafe { to_planes_ssse3(interleaved, red, green, blue) };
    }
    for (i, px) in interleaved.chunks_exact(3).enumerate().skip(done) {
        red[i] = px[0];
        green[i] = px[1];
        blue[i] = px[2];
    }
}

/// 16 pixels per step with byte shuffles; returns the pixels done.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
unsafe fn to_planes_ssse3(
    interleaved: &[u8],
    red: &mut [u8],
    green: &mut [u8],
    blue: &mut [u8],
) -> usize {
    use std::arch::x86_64::*;
    // For each plane and each 16-byte third of the 48 input bytes: which byte
    // of that third lands in each output lane (-1: none).
    const Z: i8 = -1;
    let pick = |m: [i8; 16]| _mm_loadu_si128(m.as_ptr().cast());
    let masks = [
        [
            pick([0, 3, 6, 9, 12, 15, Z, Z, Z, Z, Z, Z, Z, Z, Z, Z]),
            pick([Z, Z, Z, Z, Z, Z, 2, 5, 8, 11, 14, Z, Z, Z, Z, Z]),
            pick([Z, Z, Z, Z, Z, Z, Z, Z, Z, Z, Z, 1, 4, 7, 10, 13]),
        ],
        [
            pick([1, 4, 7, 10, 13, Z, Z, Z, Z, Z, Z, Z, Z, Z, Z, Z]),
            pick([Z, Z, Z, Z, Z, 0, 3, 6, 9, 12, 15, Z, Z, Z, Z, Z]),
            pick([Z, Z, Z, Z, Z, Z, Z, Z, Z, Z, Z, 2, 5, 8, 11, 14]),
        ],
        [
            pick([2, 5, 8, 11, 14, Z, Z, Z, Z, Z, Z, Z, Z, Z, Z, Z]),
            pick([Z, Z, Z, Z, Z, 1, 4, 7, 10, 13, Z, Z, Z, Z, Z, Z]),
            pick([Z, Z, Z, Z, Z, Z, Z, Z, Z, Z, 0, 3, 6, 9, 12, 15]),
        ],
    ];
    let steps = interleaved.len() / 48;
    let planes = [red.as_mut_ptr(), green.as_mut_ptr(), blue.as_mut_ptr()];
    for step in 0..steps {
        let src = interleaved.as_ptr().add(step * 48);
        let thirds = [
            _mm_loadu_si128(src.cast()),
            _mm_loadu_si128(src.add(16).cast()),
            _mm_loadu_si128(src.add(32).cast()),
        ];
        for (plane, m) in planes.iter().zip(&masks) {
            let lanes = _mm_or_si128(
                _mm_or_si128(
                    _mm_shuffle_epi8(thirds[0], m[0]),
                    _mm_shuffle_epi8(thirds[1], m[1]),
                ),
                _mm_shuffle_epi8(thirds[2], m[2]),
            );
            _mm_storeu_si128(plane.add(step * 16).cast(), lanes);
        }
    }
    steps * 16
}

/// Decodes every record of `source` on the current rayon pool (see
/// [`crate::pool::run_in_pool`]). Output order is input order, and results do not
/// depend on the number of threads.
pub fn decode_batch(source: &impl RecordSource, options: &ImageOptions) -> DecodedBatch {
    let n = source.len();
    if !options.output_pixels {
        let records = (0..n)
            .into_par_iter()
            .map(|i| {
                let decoded = decode_record(source, i, options, &mut []);
                meta(&decoded, None)
            })
            .collect();
        return DecodedBatch {
            pixels: Pixels::Omitted,
            records,
            hashes: options.hashes,
        };
    }
    match options.geometry.fixed_size() {
        Some((height, width)) => {
            let frame = height as usize * width as usize * 3;
            // One allocation for the whole batch; each worker writes its slot.
            let mut pixels = pixel_buffer(n * frame);
            let records = pixels
                .par_chunks_mut(frame)
                .enumerate()
                .map_init(Vec::new, |interleaved, (i, slot)| {
                    let decoded = if options.channels_first {
                        // Decoded while the frame is hot in cache, then split:
                        // far cheaper than a strided copy of the whole batch later.
                        interleaved.resize(frame, 0);
                        let decoded = decode_record(source, i, options, interleaved);
                        to_planes(interleaved, slot);
                        decoded
                    } else {
                        decode_record(source, i, options, slot)
                    };
                    meta(&decoded, Some((width, height)))
                })
                .collect();
            DecodedBatch {
                pixels: Pixels::Fixed {
                    data: pixels,
                    height,
                    width,
                    channels_first: options.channels_first,
                },
                records,
                hashes: options.hashes,
            }
        }
        None => {
            // Sizes differ per record: read every header first, then decode
            // each image straight into its place in one allocation.
            let probed: Vec<Decoded<()>> = (0..n)
                .into_par_iter()
                .map(|i| {
                    source.with_bytes(i, |bytes| match bytes {
                        Err(e) => failure(e),
                        Ok(bytes) => catch_unwind(AssertUnwindSafe(|| probe(bytes, options)))
                            .unwrap_or_else(|p| failure(panic_reason(p))),
                    })
                })
                .collect();
            let mut offsets = Vec::with_capacity(n + 1);
            offsets.push(0i64);
            let size_of = |d: &Decoded<()>| {
                let (w, h) = d.result.as_ref().ok().and(d.source_size)?;
                Some(options.geometry.output_size(w, h))
            };
            for d in &probed {
                let (w, h) = size_of(d).unwrap_or((0, 0));
                offsets.push(offsets[offsets.len() - 1] + i64::from(w) * i64::from(h) * 3);
            }
            let mut data = pixel_buffer(offsets[n] as usize);
            let mut slots = Vec::with_capacity(n);
            let mut rest = data.as_mut_slice();
            for w in offsets.windows(2) {
                let (slot, tail) = rest.split_at_mut((w[1] - w[0]) as usize);
                slots.push(slot);
                rest = tail;
            }
            let records = slots
                .into_par_iter()
                .zip(probed)
                .enumerate()
                .map(|(i, (slot, probed))| {
                    if probed.result.is_err() {
                        return meta(&probed, None);
                    }
                    let size = size_of(&probed);
                    let decoded = decode_record(source, i, options, slot);
                    meta(&decoded, size)
                })
                .collect();
            DecodedBatch {
                pixels: Pixels::Variable { data, offsets },
                records,
                hashes: options.hashes,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BytesSource;
    use crate::image::Geometry;
    use crate::pool::run_in_pool;

    /// A valid 1x1 BMP (24-bit, white).
    fn white_bmp() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"BM");
        b.extend_from_slice(&(58u32).to_le_bytes());
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(&(54u32).to_le_bytes());
        b.extend_from_slice(&(40u32).to_le_bytes());
        b.extend_from_slice(&(1i32).to_le_bytes());
        b.extend_from_slice(&(1i32).to_le_bytes());
        b.extend_from_slice(&(1u16).to_le_bytes());
        b.extend_from_slice(&(24u16).to_le_bytes());
        b.extend_from_slice(&[0; 24]);
        b.extend_from_slice(&[255, 255, 255, 0]);
        b
    }

    #[test]
    fn planes_split_every_pixel() {
        for pixels in [0usize, 1, 15, 16, 17, 100, 224 * 224] {
            let interleaved: Vec<u8> = (0..pixels * 3).map(|i| (i * 7 % 251) as u8).collect();
            let mut planes = vec![0u8; pixels * 3];
            to_planes(&interleaved, &mut planes);
            for i in 0..pixels {
                for c in 0..3 {
                    assert_eq!(
                        planes[c * pixels + i],
                        interleaved[i * 3 + c],
                        "{pixels}: {i},{c}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_record_is_accounted_for() {
        let bmp = white_bmp();
        let garbage = b"not an image".to_vec();
        let source = BytesSource(vec![
            Some(&bmp),
            None,
            Some(&garbage),
            Some(&[]),
            Some(&bmp),
        ]);
        let options = ImageOptions {
            geometry: Geometry::Resize {
                height: 2,
                width: 2,
            },
            ..Default::default()
        };
        let batch = run_in_pool(Some(2), || decode_batch(&source, &options));
        let errors: Vec<_> = batch
            .records
            .iter()
            .map(|r| r.error.as_ref().map(|e| e.to_string()))
            .collect();
        let kinds: Vec<_> = batch
            .records
            .iter()
            .map(|r| r.error.as_ref().map(DecodeError::kind))
            .collect();
        assert_eq!(
            kinds,
            [
                None,
                Some("empty"),
                Some("unsupported_format"),
                Some("empty"),
                None
            ]
        );
        assert_eq!(errors[0], None);
        assert_eq!(errors[1].as_deref(), Some("null input"));
        assert_eq!(
            errors[2].as_deref(),
            Some("unsupported format: text starting \"not an image\"")
        );
        assert_eq!(errors[3].as_deref(), Some("empty input"));
        assert_eq!(errors[4], None);
        match batch.pixels {
            Pixels::Fixed { data, .. } => {
                assert_eq!(data.len(), 5 * 12);
                assert!(data[..12].iter().all(|&v| v == 255));
                assert!(data[12..48].iter().all(|&v| v == 0));
            }
            _ => panic!("fixed size expected"),
        }
    }

    #[test]
    fn variable_size_keeps_each_image() {
        let bmp = white_bmp();
        let source = BytesSource(vec![Some(&bmp), Some(b"x")]);
        let batch = run_in_pool(Some(1), || decode_batch(&source, &ImageOptions::default()));
        match batch.pixels {
            Pixels::Variable { data, offsets } => {
                assert_eq!(offsets, vec![0, 3, 3]);
                assert_eq!(data, vec![255, 255, 255]);
            }
            _ => panic!("variable size expected"),
        }
        assert_eq!(batch.records[0].output_size, Some((1, 1)));
        assert_eq!(batch.records[1].output_size, None);
    }
}
