//! EXIF orientation: how stored pixels map to the displayed picture.
//!
//! Resizing happens in stored coordinates and only the small output is
//! re-oriented, so a rotated 12 MP photo costs one 224x224 transpose, not a
//! 12 MP one. This module maps boxes between the two spaces and re-orients.

use super::geometry::CropBox;
use super::pixels::RgbImage;

/// EXIF orientation tag value, 1..=8. Missing or invalid values (0, 9+) mean 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Orientation(u8);

impl Orientation {
    pub const IDENTITY: Orientation = Orientation(1);

    pub fn from_exif(value: u16) -> Orientation {
        match value {
            1..=8 => Orientation(value as u8),
            _ => Orientation::IDENTITY,
        }
    }

    /// Reads the orientation tag from a raw EXIF (TIFF) block.
    pub fn from_exif_block(tiff: &[u8]) -> Orientation {
        image::metadata::Orientation::from_exif_chunk(tiff)
            .map(|o| Orientation(o.to_exif()))
            .unwrap_or(Orientation::IDENTITY)
    }

    pub fn value(self) -> u8 {
        self.0
    }

    /// True for the four orientations that swap width and height (5..=8).
    pub fn swaps_axes(self) -> bool {
        self.0 >= 5
    }

    /// Displayed (width, height) of a stored image.
    pub fn display_size(self, stored_width: u32, stored_height: u32) -> (u32, u32) {
        if self.swaps_axes() {
            (stored_height, stored_width)
        } else {
            (stored_width, stored_height)
        }
    }

    /// Maps a point in continuous display coordinates to stored coordinates.
    fn display_to_stored(self, x: f64, y: f64, sw: f64, sh: f64) -> (f64, f64) {
        match self.0 {
            2 => (sw - x, y),
            3 => (sw - x, sh - y),
            4 => (x, sh - y),
            5 => (y, x),
            6 => (y, sh - x),
            7 => (sw - y, sh - x),
            8 => (sw - y, x),
            _ => (x, y),
        }
    }

    /// The stored-space box covering a display-space box.
    pub fn box_to_stored(self, b: CropBox, stored_width: u32, stored_height: u32) -> CropBox {
        let (sw, sh) = (f64::from(stored_width), f64::from(stored_height));
        let (x0, y0) = self.display_to_stored(b.left, b.top, sw, sh);
        let (x1, y1) = self.display_to_stored(b.left + b.width, b.top + b.height, sw, sh);
        CropBox {
            left: x0.min(x1),
            top: y0.min(y1),
            width: (x1 - x0).abs(),
            height: (y1 - y0).abs(),
        }
    }

    /// Like [`Orientation::apply`], without a copy when there is nothing to do.
    pub fn apply_owned(self, src: RgbImage) -> RgbImage {
        if self.0 == 1 {
            src
        } else {
            self.apply(&src)
        }
    }

    /// Turns a stored-orientation image into the displayed picture.
    pub fn apply(self, src: &RgbImage) -> RgbImage {
        if self.0 == 1 {
            return src.clone();
        }
        let (sw, sh) = (src.width as usize, src.height as usize);
        let (dw, dh) = self.display_size(src.width, src.height);
        let (dw, dh) = (dw as usize, dh as usize);
        let mut out = vec![0u8; dw * dh * 3];
        for y in 0..dh {
            for x in 0..dw {
                // Stored pixel shown at display (x, y); the continuous mapping
                // above applied to pixel centres.
                let (sx, sy) = match self.0 {
                    2 => (sw - 1 - x, y),
                    3 => (sw - 1 - x, sh - 1 - y),
                    4 => (x, sh - 1 - y),
                    5 => (y, x),
                    6 => (y, sh - 1 - x),
                    7 => (sw - 1 - y, sh - 1 - x),
                    8 => (sw - 1 - y, x),
                    _ => (x, y),
                };
                let s = (sy * sw + sx) * 3;
                let d = (y * dw + x) * 3;
                out[d..d + 3].copy_from_slice(&src.data[s..s + 3]);
            }
        }
        RgbImage::new(dw as u32, dh as u32, out)
    }
}

/// Mirrors an image left-right in place.
pub fn flip_horizontal(img: &mut RgbImage) {
    flip_rows(&mut img.data, img.width);
}

/// Mirrors each row of interleaved RGB pixels, `width` pixels a row.
pub fn flip_rows(data: &mut [u8], width: u32) {
    let row_len = width as usize * 3;
    if row_len == 0 {
        return;
    }
    let half = width as usize / 2 * 3;
    for row in data.chunks_exact_mut(row_len) {
        // Whole pixels swapped end for end (no per-byte bounds checks).
        let (left, rest) = row.split_at_mut(half);
        let right = &mut rest[row_len - 2 * half..];
        for (a, b) in left
            .chunks_exact_mut(3)
            .zip(right.chunks_exact_mut(3).rev())
        {
            let pixel = [a[0], a[1], a[2]];
            a.copy_from_slice(b);
            b.copy_from_slice(&pixel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3x2 image whose pixel values encode their stored coordinates.
    fn sample() -> RgbImage {
        let mut data = Vec::new();
        for y in 0..2u8 {
            for x in 0..3u8 {
                data.extend_from_slice(&[x, y, 0]);
            }
        }
        RgbImage::new(3, 2, data)
    }

    fn at(img: &RgbImage, x: usize, y: usize) -> (u8, u8) {
        let i = (y * img.width as usize + x) * 3;
        (img.data[i], img.data[i + 1])
    }

    #[test]
    fn rotate_90_clockwise_for_6() {
        let out = Orientation::from_exif(6).apply(&sample());
        assert_eq!((out.width, out.height), (2, 3));
        // The stored bottom-left pixel is shown top-left.
        assert_eq!(at(&out, 0, 0), (0, 1));
        assert_eq!(at(&out, 1, 0), (0, 0));
        assert_eq!(at(&out, 1, 2), (2, 0));
    }

    #[test]
    fn every_orientation_matches_its_box_mapping() {
        let img = sample();
        for v in 1..=8u16 {
            let o = Orientation::from_exif(v);
            let out = o.apply(&img);
            for y in 0..out.height as usize {
                for x in 0..out.width as usize {
                    let unit = CropBox {
                        left: x as f64,
                        top: y as f64,
                        width: 1.0,
                        height: 1.0,
                    };
                    let s = o.box_to_stored(unit, img.width, img.height);
                    let expected = (s.left as u8, s.top as u8);
                    assert_eq!(at(&out, x, y), expected, "orientation {v} at ({x},{y})");
                }
            }
        }
    }

    #[test]
    fn invalid_values_are_identity() {
        assert_eq!(Orientation::from_exif(0), Orientation::IDENTITY);
        assert_eq!(Orientation::from_exif(9), Orientation::IDENTITY);
    }

    #[test]
    fn flips_rows() {
        let mut img = sample();
        flip_horizontal(&mut img);
        assert_eq!(at(&img, 0, 0), (2, 0));
        assert_eq!(at(&img, 2, 1), (0, 1));
    }
}
