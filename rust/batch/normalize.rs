//! uint8 images to normalised float32, as torchvision computes them.
//!
//! `ConvertImageDtype(float)` (or `ToTensor`) then `Normalize(mean, std)` is
//! `((x / 255) - mean[c]) / std[c]`, each operation rounded to float32 in
//! that order. Doing exactly those operations here gives the same bits in
//! one pass over the pixels, in parallel, into memory that is faulted in as
//! huge pages, where the torch version makes four passes over a fresh batch.

use rayon::prelude::*;

use super::memory::advise_huge_pages;

/// How the channels of each image are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[3, H, W]`: three planes.
    Planes,
    /// `[H, W, 3]`: interleaved.
    Interleaved,
}

/// Per-channel `(mean, std)`; `None` for the scaling alone.
pub type Stats = Option<([f32; 3], [f32; 3])>;

/// How uint8 becomes [0, 1]: torchvision's v1 (`ConvertImageDtype`,
/// `ToTensor`) divides by 255; v2's `ToDtype(scale=True)` multiplies by the
/// float32 nearest to 1/255. The two differ in the last bit for some values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Divide,
    Multiply,
}

#[inline(always)]
fn scaled(x: u8, scale: Scale) -> f32 {
    match scale {
        Scale::Divide => f32::from(x) / 255.0,
        // torch casts the Python float 1.0 / 255 to the tensor's float32.
        Scale::Multiply => f32::from(x) * (1.0f64 / 255.0) as f32,
    }
}

/// `pixels` (whole frames of `frame` bytes, 3 channels) as float32 in [0, 1],
/// then normalised by `stats`; same layout as the input.
pub fn normalize_frames(
    pixels: &[u8],
    frame: usize,
    layout: Layout,
    scale: Scale,
    stats: Stats,
) -> Vec<f32> {
    let mut out = vec![0f32; pixels.len()];
    advise_huge_pages(bytemuck_f32(&out));
    if frame == 0 {
        return out;
    }
    out.par_chunks_mut(frame)
        .zip(pixels.par_chunks(frame))
        .for_each(|(dst, src)| match layout {
            Layout::Planes => {
                let plane = frame / 3;
                for c in 0..3 {
                    let range = c * plane..(c + 1) * plane;
                    let channel = stats.map(|(m, s)| (m[c], s[c]));
                    convert(&src[range.clone()], &mut dst[range], scale, channel);
                }
            }
            Layout::Interleaved => convert_interleaved(src, dst, scale, stats),
        });
    out
}

/// Each of `frames` (equal lengths, 3 channels in `layout`) as float32 in
/// [0, 1], normalised by `stats`, written as three planes (`[3, H, W]`)
/// into its share of `out` (`frames.len()` frames of the same length): the
/// caller's memory, e.g. a shared batch buffer, so nothing is allocated.
pub fn normalize_frames_into_planes(
    frames: &[&[u8]],
    layout: Layout,
    out: &mut [f32],
    scale: Scale,
    stats: Stats,
) {
    let Some(frame) = frames.first().map(|f| f.len()) else {
        return;
    };
    if frame == 0 {
        return;
    }
    assert!(frame % 3 == 0 && out.len() == frame * frames.len());
    assert!(frames.iter().all(|f| f.len() == frame));
    out.par_chunks_mut(frame)
        .zip(frames.par_iter())
        .for_each(|(dst, src)| {
            let plane = frame / 3;
            for c in 0..3 {
                let range = c * plane..(c + 1) * plane;
                let channel = stats.map(|(m, s)| (m[c], s[c]));
                match layout {
                    Layout::Planes => convert(&src[range.clone()], &mut dst[range], scale, channel),
                    Layout::Interleaved => convert_channel(src, c, &mut dst[range], scale, channel),
                }
            }
        });
}

/// Channel `c` of interleaved RGB `src` into one plane.
fn convert_channel(src: &[u8], c: usize, dst: &mut [f32], scale: Scale, stats: Option<(f32, f32)>) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(3)) {
        let x = scaled(s[c], scale);
        *d = match stats {
            None => x,
            Some((mean, std)) => (x - mean) / std,
        };
    }
}

fn bytemuck_f32(values: &[f32]) -> &[u8] {
    // SAFETY: any f32 memory is valid bytes; same allocation, 4x the length.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), std::mem::size_of_val(values)) }
}

/// One channel's values; dispatches to an AVX2 build of the same loop.
fn convert(src: &[u8], dst: &mut [f32], scale: Scale, stats: Option<(f32, f32)>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present.
        return unsafe { convert_avx2(src, dst, scale, stats) };
    }
    convert_plain(src, dst, scale, stats)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn convert_avx2(src: &[u8], dst: &mut [f32], scale: Scale, stats: Option<(f32, f32)>) {
    convert_plain(src, dst, scale, stats)
}

/// Plain IEEE division and subtraction (no reciprocal, no fused multiply-add),
/// so the compiler's vector code rounds exactly as torch's kernels do.
#[inline(always)]
fn convert_plain(src: &[u8], dst: &mut [f32], scale: Scale, stats: Option<(f32, f32)>) {
    // One loop per case, so each vectorises without branches inside.
    match (scale, stats) {
        (Scale::Divide, None) => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = scaled(s, Scale::Divide);
            }
        }
        (Scale::Multiply, None) => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = scaled(s, Scale::Multiply);
            }
        }
        (Scale::Divide, Some((mean, std))) => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = (scaled(s, Scale::Divide) - mean) / std;
            }
        }
        (Scale::Multiply, Some((mean, std))) => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = (scaled(s, Scale::Multiply) - mean) / std;
            }
        }
    }
}

fn convert_interleaved(src: &[u8], dst: &mut [f32], scale: Scale, stats: Stats) {
    for (d, s) in dst.chunks_exact_mut(3).zip(src.chunks_exact(3)) {
        for c in 0..3 {
            let x = scaled(s[c], scale);
            d[c] = match stats {
                None => x,
                Some((mean, std)) => (x - mean[c]) / std[c],
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_and_interleaved_agree_with_the_formula() {
        let (w, h) = (5, 4);
        let frame = w * h * 3;
        let planes: Vec<u8> = (0..2 * frame).map(|i| (i * 37 % 256) as u8).collect();
        let stats = Some(([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]));
        let out = normalize_frames(&planes, frame, Layout::Planes, Scale::Divide, stats);
        for (i, &x) in planes.iter().enumerate() {
            let c = (i % frame) / (w * h);
            let want = (f32::from(x) / 255.0 - [0.485, 0.456, 0.406][c]) / [0.229, 0.224, 0.225][c];
            assert_eq!(out[i].to_bits(), want.to_bits());
        }
        let interleaved =
            normalize_frames(&planes, frame, Layout::Interleaved, Scale::Divide, stats);
        for (i, &x) in planes.iter().enumerate() {
            let c = i % 3;
            let want = (f32::from(x) / 255.0 - [0.485, 0.456, 0.406][c]) / [0.229, 0.224, 0.225][c];
            assert_eq!(interleaved[i].to_bits(), want.to_bits());
        }
        let scaled = normalize_frames(&planes, frame, Layout::Planes, Scale::Divide, None);
        assert_eq!(scaled[7], f32::from(planes[7]) / 255.0);
    }

    #[test]
    fn into_planes_matches_the_allocating_version_for_both_layouts() {
        let (w, h) = (6, 5);
        let frame = w * h * 3;
        let bytes: Vec<u8> = (0..3 * frame).map(|i| (i * 53 % 256) as u8).collect();
        let frames: Vec<&[u8]> = bytes.chunks(frame).collect();
        let stats = Some(([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]));
        for scale in [Scale::Divide, Scale::Multiply] {
            let planes = normalize_frames(&bytes, frame, Layout::Planes, scale, stats);
            let mut out = vec![f32::NAN; bytes.len()];
            normalize_frames_into_planes(&frames, Layout::Planes, &mut out, scale, stats);
            assert_eq!(out, planes);
            // Interleaved input: each value lands in its channel's plane.
            let interleaved = normalize_frames(&bytes, frame, Layout::Interleaved, scale, stats);
            normalize_frames_into_planes(&frames, Layout::Interleaved, &mut out, scale, stats);
            let plane = w * h;
            for f in 0..3 {
                for i in 0..plane {
                    for c in 0..3 {
                        assert_eq!(
                            out[f * frame + c * plane + i].to_bits(),
                            interleaved[f * frame + 3 * i + c].to_bits()
                        );
                    }
                }
            }
        }
    }
}
