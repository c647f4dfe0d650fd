//! The RGB8 image type and conversions into it (alpha, 16-bit, grey, CMYK).

/// Interleaved 8-bit RGB, row-major, no padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbImage {
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> RgbImage {
        debug_assert_eq!(data.len(), width as usize * height as usize * 3);
        RgbImage {
            width,
            height,
            data,
        }
    }

    /// The pixels, borrowed.
    pub fn view(&self) -> RgbView<'_> {
        RgbView {
            width: self.width,
            height: self.height,
            data: &self.data,
        }
    }

    pub fn filled(width: u32, height: u32, colour: [u8; 3]) -> RgbImage {
        let data = colour.repeat(width as usize * height as usize);
        RgbImage {
            width,
            height,
            data,
        }
    }
}

/// Interleaved RGB pixels held elsewhere (an [`RgbImage`], or a raw PPM's
/// bytes read in place).
#[derive(Clone, Copy)]
pub struct RgbView<'a> {
    pub width: u32,
    pub height: u32,
    pub data: &'a [u8],
}

/// `round(a * b / 255)` for bytes, exactly as Pillow's `MULDIV255`.
#[inline]
pub fn mul_div_255(a: u8, b: u8) -> u8 {
    let t = u32::from(a) * u32::from(b) + 128;
    (((t >> 8) + t) >> 8) as u8
}

/// Composites a value with straight alpha onto a background value.
#[inline]
fn over(value: u8, alpha: u8, background: u8) -> u8 {
    mul_div_255(value, alpha) + mul_div_255(background, 255 - alpha)
}

/// 16-bit sample to 8-bit, rounding to nearest.
#[inline]
fn to_8bit(value: u16) -> u8 {
    ((u32::from(value) * 255 + 32767) / 65535) as u8
}

/// Interleaved samples of any 8-bit layout into RGB.
pub fn rgb_from_8bit(src: &[u8], channels: usize, background: [u8; 3]) -> Vec<u8> {
    let pixels = src.len() / channels;
    let mut out = Vec::with_capacity(pixels * 3);
    match channels {
        1 => src.iter().for_each(|&g| out.extend_from_slice(&[g, g, g])),
        2 => src.chunks_exact(2).for_each(|p| {
            let (g, a) = (p[0], p[1]);
            out.extend((0..3).map(|c| over(g, a, background[c])));
        }),
        3 => out.extend_from_slice(src),
        4 => src.chunks_exact(4).for_each(|p| {
            let a = p[3];
            if a == 255 {
                out.extend_from_slice(&p[..3]);
            } else {
                out.extend((0..3).map(|c| over(p[c], a, background[c])));
            }
        }),
        _ => unreachable!("channel count is 1 to 4"),
    }
    out
}

/// Interleaved 16-bit samples of any layout into RGB8.
pub fn rgb_from_16bit(src: &[u16], channels: usize, background: [u8; 3]) -> Vec<u8> {
    let reduced: Vec<u8> = src.iter().map(|&v| to_8bit(v)).collect();
    rgb_from_8bit(&reduced, channels, background)
}

/// Pillow's `convert("RGB")` of 8-bit samples: alpha is dropped, not
/// composited (what `imagehash` and `pdqhash` hash).
pub fn rgb_dropping_alpha(src: &[u8], channels: usize) -> Vec<u8> {
    match channels {
        2 => src
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        4 => src
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        _ => rgb_from_8bit(src, channels, [0; 3]),
    }
}

/// Pillow's view of 16-bit samples: colour keeps the high byte; 16-bit grey
/// ("I;16") converts to 8 bits by clamping at 255.
pub fn pillow_rgb_from_16bit(src: &[u16], channels: usize) -> Vec<u8> {
    let grey = channels <= 2;
    let reduced: Vec<u8> = src
        .iter()
        .map(|&v| {
            if grey {
                v.min(255) as u8
            } else {
                (v >> 8) as u8
            }
        })
        .collect();
    rgb_dropping_alpha(&reduced, channels)
}

/// CMYK as libjpeg returns it into RGB. Adobe applications store CMYK inverted
/// (0 = full ink), which `inverted` undoes; the conversion is Pillow's.
pub fn rgb_from_cmyk(src: &[u8], inverted: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    for p in src.chunks_exact(4) {
        let ink = |v: u8| if inverted { 255 - v } else { v };
        let not_k = 255 - ink(p[3]);
        for &c in &p[..3] {
            out.push(not_k - mul_div_255(ink(c), not_k));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mul_div_255_rounds() {
        assert_eq!(mul_div_255(255, 255), 255);
        assert_eq!(mul_div_255(255, 0), 0);
        assert_eq!(mul_div_255(128, 255), 128);
        assert_eq!(mul_div_255(100, 128), 50);
    }

    #[test]
    fn alpha_composites_onto_background() {
        let rgba = [10, 20, 30, 255, 10, 20, 30, 0, 200, 100, 0, 128];
        let rgb = rgb_from_8bit(&rgba, 4, [255, 255, 255]);
        assert_eq!(&rgb[0..3], &[10, 20, 30]);
        assert_eq!(&rgb[3..6], &[255, 255, 255]);
        assert_eq!(&rgb[6..9], &[227, 177, 127]);
        let grey_alpha = rgb_from_8bit(&[0, 0], 2, [1, 2, 3]);
        assert_eq!(grey_alpha, vec![1, 2, 3]);
    }

    #[test]
    fn sixteen_bit_rounds_to_nearest() {
        assert_eq!(
            rgb_from_16bit(&[0, 65535, 32896], 3, [0; 3]),
            vec![0, 255, 128]
        );
    }

    #[test]
    fn cmyk_inverted_and_plain() {
        // No ink is white; full black ink is black, either storage convention.
        assert_eq!(rgb_from_cmyk(&[0, 0, 0, 0], false), vec![255, 255, 255]);
        assert_eq!(
            rgb_from_cmyk(&[255, 255, 255, 255], true),
            vec![255, 255, 255]
        );
        assert_eq!(rgb_from_cmyk(&[0, 0, 0, 255], false), vec![0, 0, 0]);
        // Inverted storage: only magenta ink.
        assert_eq!(rgb_from_cmyk(&[255, 0, 255, 255], true), vec![255, 0, 255]);
    }
}
