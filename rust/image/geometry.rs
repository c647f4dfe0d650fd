//! Output geometry planning in display coordinates: which region of the
//! source is resampled to which size, following torchvision's rules exactly.

use super::options::Geometry;

/// A rectangle in continuous pixel coordinates (edges, not centres).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CropBox {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

impl CropBox {
    pub fn full(width: u32, height: u32) -> CropBox {
        CropBox {
            left: 0.0,
            top: 0.0,
            width: f64::from(width),
            height: f64::from(height),
        }
    }

    pub fn scaled(self, sx: f64, sy: f64) -> CropBox {
        CropBox {
            left: self.left * sx,
            top: self.top * sy,
            width: self.width * sx,
            height: self.height * sy,
        }
    }
}

/// Where the pixels of one output come from and where they go.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plan {
    /// Region of the displayed source that is resampled.
    pub crop: CropBox,
    /// (width, height) the region is resampled to.
    pub resized: (u32, u32),
    /// (width, height) of the output; larger than `resized` only when letterboxing.
    pub canvas: (u32, u32),
    /// Top-left (x, y) of the resampled region in the output.
    pub offset: (u32, u32),
    /// Mirror the output left-right (random flip).
    pub flip: bool,
}

/// Plans the output for a displayed source of `width` x `height`.
pub fn plan(geometry: &Geometry, width: u32, height: u32, record_index: u64) -> Plan {
    let full = CropBox::full(width, height);
    let simple = |crop: CropBox, w: u32, h: u32, flip: bool| Plan {
        crop,
        resized: (w, h),
        canvas: (w, h),
        offset: (0, 0),
        flip,
    };
    match *geometry {
        Geometry::Original => simple(full, width, height, false),
        Geometry::KeepAspect { shorter, longer } => {
            let (w, h) = keep_aspect_size(width, height, shorter, longer);
            simple(full, w, h, false)
        }
        Geometry::Resize {
            height: oh,
            width: ow,
        } => simple(full, ow, oh, false),
        Geometry::CenterCrop {
            height: ch,
            width: cw,
            shorter,
        } => {
            let (rw, rh) = shorter_side_size(width, height, shorter);
            let left = round_half_even((f64::from(rw) - f64::from(cw)) / 2.0);
            let top = round_half_even((f64::from(rh) - f64::from(ch)) / 2.0);
            let crop = CropBox {
                left,
                top,
                width: f64::from(cw),
                height: f64::from(ch),
            }
            .scaled(
                f64::from(width) / f64::from(rw),
                f64::from(height) / f64::from(rh),
            );
            simple(crop, cw, ch, false)
        }
        Geometry::Letterbox {
            height: oh,
            width: ow,
        } => {
            let s = (f64::from(ow) / f64::from(width)).min(f64::from(oh) / f64::from(height));
            let rw = ((f64::from(width) * s).round() as u32).clamp(1, ow);
            let rh = ((f64::from(height) * s).round() as u32).clamp(1, oh);
            Plan {
                crop: full,
                resized: (rw, rh),
                canvas: (ow, oh),
                offset: ((ow - rw) / 2, (oh - rh) / 2),
                flip: false,
            }
        }
        Geometry::RandomResizedCrop {
            height: oh,
            width: ow,
            scale,
            ratio,
            flip_p,
            seed,
        } => {
            let mut rng = SplitMix64::for_record(seed, record_index);
            let crop = random_resized_crop_box(width, height, scale, ratio, &mut rng);
            let flip = rng.next_f64() < flip_p;
            simple(crop, ow, oh, flip)
        }
    }
}

/// A keep-aspect output size (width, height): the shorter side becomes
/// `shorter` when that shrinks it, the longer side then `int(shorter * long /
/// short)` (torchvision's `Resize` rounding); a longer side over `longer` is
/// capped to it, the shorter becoming `int(longer * short / long)` (as
/// torchvision's `max_size`). Never upscales; never below 1 pixel.
pub fn keep_aspect_size(
    width: u32,
    height: u32,
    shorter: Option<u32>,
    longer: Option<u32>,
) -> (u32, u32) {
    let (short, long) = (u64::from(width.min(height)), u64::from(width.max(height)));
    let (mut s, mut l) = (short, long);
    if let Some(target) = shorter.map(u64::from).filter(|&t| t < short) {
        (s, l) = (target, target * long / short);
    }
    if let Some(cap) = longer.map(u64::from).filter(|&c| c < l) {
        (s, l) = (cap * s / l, cap);
    }
    let (s, l) = (s.max(1) as u32, l.max(1) as u32);
    if width <= height {
        (s, l)
    } else {
        (l, s)
    }
}

/// torchvision `Resize(shorter)`: the short side becomes `shorter`, the long
/// side `int(shorter * long / short)`. Returns (width, height).
pub fn shorter_side_size(width: u32, height: u32, shorter: u32) -> (u32, u32) {
    let long = |l: u32, s: u32| ((u64::from(shorter) * u64::from(l)) / u64::from(s)).max(1) as u32;
    if width <= height {
        (shorter, long(height, width))
    } else {
        (long(width, height), shorter)
    }
}

/// Python's `round()` (ties to even), which torchvision's crop offsets use.
fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

/// torchvision `RandomResizedCrop.get_params`, with our generator.
pub fn random_resized_crop_box(
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut SplitMix64,
) -> CropBox {
    let (w_f, h_f) = (f64::from(width), f64::from(height));
    let area = w_f * h_f;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * rng.uniform(scale.0, scale.1);
        let aspect = rng.uniform(log_lo, log_hi).exp();
        let w = (target_area * aspect).sqrt().round();
        let h = (target_area / aspect).sqrt().round();
        if w > 0.0 && w <= w_f && h > 0.0 && h <= h_f {
            let top = rng.below((h_f - h) as u64 + 1) as f64;
            let left = rng.below((w_f - w) as u64 + 1) as f64;
            return CropBox {
                left,
                top,
                width: w,
                height: h,
            };
        }
    }
    // Fallback: the central crop with the ratio clamped into range.
    let in_ratio = w_f / h_f;
    let (w, h) = if in_ratio < ratio.0.min(ratio.1) {
        (w_f, (w_f / ratio.0.min(ratio.1)).round())
    } else if in_ratio > ratio.0.max(ratio.1) {
        ((h_f * ratio.0.max(ratio.1)).round(), h_f)
    } else {
        (w_f, h_f)
    };
    CropBox {
        left: ((w_f - w) / 2.0).floor(),
        top: ((h_f - h) / 2.0).floor(),
        width: w,
        height: h,
    }
}

/// Small, fast, well-mixed generator; one stream per record so results do not
/// depend on thread scheduling.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn for_record(seed: u64, record_index: u64) -> SplitMix64 {
        let mut mixer = SplitMix64(seed ^ 0x6a09_e667_f3bc_c909);
        let base = mixer.next_u64();
        SplitMix64(base ^ record_index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Uniform integer in [0, n); n > 0.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::keep_aspect_size;

    #[test]
    fn keep_aspect_follows_torchvision_and_never_upscales() {
        // Resize(256) of 500x375: 341x256 (int() of 341.33).
        assert_eq!(keep_aspect_size(500, 375, Some(256), None), (341, 256));
        assert_eq!(keep_aspect_size(375, 500, Some(256), None), (256, 341));
        // Already small enough: unchanged.
        assert_eq!(keep_aspect_size(200, 150, Some(256), None), (200, 150));
        // max_size: 1000x100 to short 256 would be 2560 long; capped at 512.
        assert_eq!(keep_aspect_size(1000, 100, Some(256), Some(512)), (512, 51));
        // Only a cap (FFCV's max_resolution).
        assert_eq!(keep_aspect_size(1080, 1350, None, Some(512)), (409, 512));
        assert_eq!(keep_aspect_size(300, 200, None, Some(512)), (300, 200));
        // Extreme aspect: never below one pixel.
        assert_eq!(keep_aspect_size(10_000, 1, None, Some(100)), (100, 1));
    }
    use super::*;

    #[test]
    fn center_crop_follows_torchvision() {
        // 500x375 -> Resize(256) gives 341x256; CenterCrop(224) starts at
        // left round(58.5) = 58 (ties to even), top 16.
        let g = Geometry::CenterCrop {
            height: 224,
            width: 224,
            shorter: 256,
        };
        let p = plan(&g, 500, 375, 0);
        assert_eq!(shorter_side_size(500, 375, 256), (341, 256));
        assert_eq!(p.resized, (224, 224));
        let sx = 500.0 / 341.0;
        let sy = 375.0 / 256.0;
        assert!((p.crop.left - 58.0 * sx).abs() < 1e-9);
        assert!((p.crop.top - 16.0 * sy).abs() < 1e-9);
        assert!((p.crop.width - 224.0 * sx).abs() < 1e-9);
    }

    #[test]
    fn letterbox_centres_and_keeps_aspect() {
        let g = Geometry::Letterbox {
            height: 100,
            width: 100,
        };
        let p = plan(&g, 400, 200, 0);
        assert_eq!(p.resized, (100, 50));
        assert_eq!(p.canvas, (100, 100));
        assert_eq!(p.offset, (0, 25));
    }

    #[test]
    fn random_resized_crop_is_seeded_and_in_bounds() {
        let g = Geometry::RandomResizedCrop {
            height: 224,
            width: 224,
            scale: (0.08, 1.0),
            ratio: (0.75, 4.0 / 3.0),
            flip_p: 0.5,
            seed: 7,
        };
        let mut flips = 0;
        for i in 0..200 {
            let p = plan(&g, 640, 480, i);
            assert_eq!(p, plan(&g, 640, 480, i), "same seed and index, same crop");
            let c = p.crop;
            assert!(c.left >= 0.0 && c.top >= 0.0);
            assert!(c.left + c.width <= 640.0 && c.top + c.height <= 480.0);
            let area = c.width * c.height / (640.0 * 480.0);
            assert!((0.07..=1.0).contains(&area), "area fraction {area}");
            flips += p.flip as u32;
        }
        assert!((60..140).contains(&flips), "about half flipped: {flips}");
        assert_ne!(plan(&g, 640, 480, 1).crop, plan(&g, 640, 480, 2).crop);
    }

    #[test]
    fn generator_is_uniform_enough() {
        let mut rng = SplitMix64::new(1);
        let mean = (0..10_000).map(|_| rng.next_f64()).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02);
        assert!((0..1000).all(|_| rng.below(3) < 3));
    }
}
