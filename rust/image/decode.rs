//! One image from encoded bytes to output pixels: sniff, read the header,
//! check the pixel limit, plan the geometry, decode (scaled or partially when
//! possible), hash, resample, then orient, flip and pad the small result.

use super::codecs::{self, Opened};
use super::error::{check_pixel_limit, DecodeError};
use super::format::{describe_unknown, sniff, Format};
use super::geometry::{plan, CropBox, Plan};
use super::hashes::{hash_bytes, hash_pixels, hash_reduced, ImageHashes, PDQ_FAST_MIN_SIDE};
use super::jpeg::{self, JpegHeader};
use super::options::{Filter, Geometry, ImageOptions};
use super::orientation::{flip_horizontal, flip_rows, Orientation};
use super::pixels::{RgbImage, RgbView};
use super::resize::resize_into;

/// What is known about one record, whether or not its pixels decoded.
#[derive(Debug)]
pub struct Decoded<T> {
    pub format: Option<Format>,
    /// (width, height) as displayed, once the header was read.
    pub source_size: Option<(u32, u32)>,
    /// The orientation that was applied (identity when switched off).
    pub orientation: Orientation,
    /// The hashes asked for (byte hashes even when decoding failed).
    pub hashes: ImageHashes,
    /// Damage the decoder recovered from (libjpeg's warnings, named by
    /// [`jpeg::warning_name`]): the pixels exist but may be partly wrong.
    pub warnings: Vec<&'static str>,
    pub result: Result<T, DecodeError>,
}

impl<T> Decoded<T> {
    fn failed(format: Option<Format>, error: DecodeError) -> Decoded<T> {
        Decoded {
            format,
            source_size: None,
            orientation: Orientation::IDENTITY,
            hashes: ImageHashes::default(),
            warnings: Vec::new(),
            result: Err(error),
        }
    }
}

/// A source whose header has been read.
enum Header<'a> {
    Jpeg(JpegHeader, &'a [u8]),
    Other(Opened<'a>),
}

impl Header<'_> {
    fn stored_size(&self) -> (u32, u32) {
        match self {
            Header::Jpeg(h, _) => (h.width, h.height),
            Header::Other(o) => (o.width, o.height),
        }
    }

    fn orientation(&self) -> Orientation {
        match self {
            Header::Jpeg(h, _) => h.orientation,
            Header::Other(o) => o.orientation,
        }
    }

    fn warnings(&self) -> Vec<&'static str> {
        match self {
            Header::Jpeg(h, _) => h.warning.into_iter().collect(),
            Header::Other(_) => Vec::new(),
        }
    }
}

/// Why a record could not be opened, with what was learnt before that.
struct Refusal {
    format: Option<Format>,
    /// Displayed size, when the header was read.
    size: Option<(u32, u32)>,
    error: DecodeError,
}

impl Refusal {
    fn into_decoded<T>(self, hashes: ImageHashes) -> Decoded<T> {
        Decoded {
            source_size: self.size,
            hashes,
            ..Decoded::failed(self.format, self.error)
        }
    }
}

fn open<'a>(data: &'a [u8], options: &ImageOptions) -> Result<(Format, Header<'a>), Refusal> {
    let refuse = |format, error| Refusal {
        format,
        size: None,
        error,
    };
    if data.is_empty() {
        return Err(refuse(None, DecodeError::Empty));
    }
    let format = sniff(data)
        .ok_or_else(|| refuse(None, DecodeError::UnsupportedFormat(describe_unknown(data))))?;
    let header = match format {
        Format::Jpeg => {
            let mut h = jpeg::read_header(data).map_err(|e| refuse(Some(format), e))?;
            check_pixel_limit(h.width, h.height, options.max_pixels)
                .map_err(|e| refuse(Some(format), e))?;
            if let Some(error) = h.damage.take() {
                let o = if options.apply_orientation {
                    h.orientation
                } else {
                    Orientation::IDENTITY
                };
                return Err(Refusal {
                    format: Some(format),
                    size: Some(o.display_size(h.width, h.height)),
                    error,
                });
            }
            Header::Jpeg(h, data)
        }
        _ => Header::Other(
            codecs::open(data, format, options.max_pixels).map_err(|e| refuse(Some(format), e))?,
        ),
    };
    Ok((format, header))
}

/// Header-only look at an image: format, displayed size, orientation.
pub fn probe(data: &[u8], options: &ImageOptions) -> Decoded<()> {
    match open(data, options) {
        Err(refusal) => refusal.into_decoded(ImageHashes::default()),
        Ok((format, header)) => {
            let orientation = effective_orientation(&header, options);
            let (w, h) = header.stored_size();
            Decoded {
                format: Some(format),
                source_size: Some(orientation.display_size(w, h)),
                orientation,
                hashes: ImageHashes::default(),
                warnings: header.warnings(),
                result: Ok(()),
            }
        }
    }
}

fn effective_orientation(header: &Header, options: &ImageOptions) -> Orientation {
    if options.apply_orientation {
        header.orientation()
    } else {
        Orientation::IDENTITY
    }
}

/// Decodes into a newly allocated image of the planned size.
pub fn decode(data: &[u8], options: &ImageOptions, record_index: u64) -> Decoded<RgbImage> {
    run(data, options, record_index, None)
}

/// Decodes into `out`, which must hold exactly the geometry's fixed size
/// (or be empty when `options.output_pixels` is off).
pub fn decode_into(
    data: &[u8],
    options: &ImageOptions,
    record_index: u64,
    out: &mut [u8],
) -> Decoded<()> {
    let d = run(data, options, record_index, Some(out));
    Decoded {
        format: d.format,
        source_size: d.source_size,
        orientation: d.orientation,
        hashes: d.hashes,
        warnings: d.warnings,
        result: d.result.map(|_| ()),
    }
}

fn run(
    data: &[u8],
    options: &ImageOptions,
    record_index: u64,
    out: Option<&mut [u8]>,
) -> Decoded<RgbImage> {
    let mut hashes = ImageHashes::default();
    hash_bytes(data, &options.hashes, &mut hashes);
    let (format, header) = match open(data, options) {
        Ok(opened) => opened,
        Err(refusal) => return refusal.into_decoded(hashes),
    };
    let orientation = effective_orientation(&header, options);
    let (sw, sh) = header.stored_size();
    let (dw, dh) = orientation.display_size(sw, sh);
    let plan = plan(&options.geometry, dw, dh, record_index);
    let mut warnings = header.warnings();
    let result = render(
        header,
        orientation,
        &plan,
        options,
        out,
        &mut hashes,
        &mut warnings,
    );
    Decoded {
        format: Some(format),
        source_size: Some((dw, dh)),
        orientation,
        hashes,
        warnings,
        result,
    }
}

/// Adds a warning once (libjpeg repeats a header's warning while decoding).
fn note(warnings: &mut Vec<&'static str>, warning: Option<&'static str>) {
    if let Some(w) = warning.filter(|w| !warnings.contains(w)) {
        warnings.push(w);
    }
}

fn empty() -> RgbImage {
    RgbImage::new(0, 0, Vec::new())
}

/// Decodes, hashes and resamples per the plan. With `out`, writes there and
/// returns an empty image; without, returns the pixels.
fn render(
    header: Header,
    orientation: Orientation,
    plan: &Plan,
    options: &ImageOptions,
    mut out: Option<&mut [u8]>,
    hashes: &mut ImageHashes,
    warnings: &mut Vec<&'static str>,
) -> Result<RgbImage, DecodeError> {
    let (sw, sh) = header.stored_size();
    // `pdq_fast` of a JPEG comes from a decode at a reduced scale of its own,
    // so its value does not depend on what else this decode produces.
    let mut fast_pdq_done = false;
    if let (true, Header::Jpeg(h, data)) = (options.hashes.pdq_fast, &header) {
        let side = (PDQ_FAST_MIN_SIDE, PDQ_FAST_MIN_SIDE);
        let denominator = jpeg::pick_reduction((f64::from(sw), f64::from(sh)), side);
        if denominator > 1 {
            let request = jpeg::Request {
                denominator,
                region: None,
                fast: false,
            };
            let (img, warning) = jpeg::decode(data, h, request)?;
            note(warnings, warning);
            hash_reduced(&orientation.apply_owned(img), hashes);
            fast_pdq_done = true;
        }
    }
    // Perceptual hashes need every pixel of the displayed picture, so hashing
    // turns off reduced and partial decoding for the record.
    let hashing = options.hashes.needs_pixels() || (options.hashes.pdq_fast && !fast_pdq_done);
    if fast_pdq_done && !hashing && !options.output_pixels {
        return Ok(empty());
    }
    let mut crop = orientation.box_to_stored(plan.crop, sw, sh);
    // Resample in stored orientation; only the small result is re-oriented.
    let resized = if orientation.swaps_axes() {
        (plan.resized.1, plan.resized.0)
    } else {
        plan.resized
    };
    let untouched =
        orientation == Orientation::IDENTITY && !plan.flip && plan.canvas == plan.resized;

    let (source, pillow_rgb) = match header {
        Header::Jpeg(h, data) => {
            let reduce =
                !hashing && options.reduced_decode && options.geometry != Geometry::Original;
            let denominator = if reduce {
                jpeg::pick_reduction((crop.width, crop.height), resized)
            } else {
                1
            };
            let (iw, ih) = jpeg::scaled_size(&h, denominator);
            crop = crop.scaled(f64::from(iw) / f64::from(sw), f64::from(ih) / f64::from(sh));
            let region = if hashing {
                None
            } else {
                jpeg::crop_alignment(&h, denominator).and_then(|align| {
                    let reach = Reach {
                        filter: options.filter,
                        to_end: options.read_to_end,
                    };
                    decode_region(crop, resized, reach, (iw, ih), align)
                })
            };
            let request = jpeg::Request {
                denominator,
                region,
                fast: reduce,
            };
            let as_is = region.is_none() && crop == CropBox::full(iw, ih) && (iw, ih) == resized;
            if let (true, true, false, false, Some(out)) =
                (untouched, as_is, h.is_cmyk(), hashing, out.as_deref_mut())
            {
                // Nothing else touches these pixels: decode straight into place.
                note(warnings, jpeg::decode_into(data, &h, request, out)?);
                return Ok(empty());
            }
            let (img, warning) = jpeg::decode(data, &h, request)?;
            note(warnings, warning);
            if let Some(r) = region {
                crop = CropBox {
                    left: crop.left - f64::from(r.x),
                    top: crop.top - f64::from(r.y),
                    ..crop
                };
            }
            (img, None)
        }
        Header::Other(opened) => {
            if let Some(raw) = opened
                .raw_rgb()
                .filter(|_| !hashing && options.output_pixels)
            {
                // Raw 8-bit RGB (a raw-pixel store): resampled from the bytes in place.
                return finish(raw, crop, resized, plan, orientation, options, out);
            }
            let (composited, dropped) =
                opened.decode(options.background, hashing || options.drop_alpha)?;
            match dropped {
                // Pillow's pixels are the output too: one image serves both.
                Some(dropped) if options.drop_alpha => (dropped, None),
                dropped => (composited, dropped),
            }
        }
    };

    if hashing {
        // Hash the displayed picture. Only an oriented copy is made: the
        // pixels are still resampled in stored orientation, exactly as
        // without hashing.
        let view = pillow_rgb.as_ref().unwrap_or(&source);
        if orientation == Orientation::IDENTITY {
            hash_pixels(view, &options.hashes, hashes);
        } else {
            hash_pixels(&orientation.apply(view), &options.hashes, hashes);
        }
    }
    if !options.output_pixels {
        return Ok(empty());
    }

    if untouched
        && out.is_none()
        && crop == CropBox::full(source.width, source.height)
        && (source.width, source.height) == resized
    {
        return Ok(source); // nothing to do: hand over the decoded buffer
    }
    finish(
        source.view(),
        crop,
        resized,
        plan,
        orientation,
        options,
        out,
    )
}

/// Resamples `crop` of the decoded `source` to `resized`, then orients,
/// flips and pads per the plan: into `out` when given (the result is then
/// empty), else into the returned image.
fn finish(
    source: RgbView,
    crop: CropBox,
    resized: (u32, u32),
    plan: &Plan,
    orientation: Orientation,
    options: &ImageOptions,
    out: Option<&mut [u8]>,
) -> Result<RgbImage, DecodeError> {
    if orientation == Orientation::IDENTITY && plan.canvas == plan.resized {
        if let Some(out) = out {
            // The output is the resampled image itself: written in place,
            // mirrored there.
            resize_into(source, crop, out, resized.0, resized.1, options.filter)?;
            if plan.flip {
                flip_rows(out, resized.0);
            }
            return Ok(empty());
        }
    }
    let mut small = RgbImage::new(
        resized.0,
        resized.1,
        vec![0; resized.0 as usize * resized.1 as usize * 3],
    );
    resize_into(
        source,
        crop,
        &mut small.data,
        resized.0,
        resized.1,
        options.filter,
    )?;
    let mut small = orientation.apply_owned(small);
    if plan.flip {
        flip_horizontal(&mut small);
    }
    let finished = if plan.canvas == plan.resized {
        small
    } else {
        pad(&small, plan, options.background)
    };
    match out {
        Some(out) => {
            out.copy_from_slice(&finished.data);
            Ok(empty())
        }
        None => Ok(finished),
    }
}

/// How far a partial decode reaches beyond its crop.
#[derive(Clone, Copy)]
struct Reach {
    /// Resampling filter: its support widens the box.
    filter: Filter,
    /// Rows run to the bottom of the image (see [`ImageOptions::read_to_end`]).
    to_end: bool,
}

/// The part of a (scaled) JPEG worth decoding for `crop`: the box plus the
/// filter's reach, so resampling sees exactly the pixels it would in the whole
/// image (down to the last row when `reach.to_end`). `None` when that is most
/// of the image anyway.
fn decode_region(
    crop: CropBox,
    resized: (u32, u32),
    reach: Reach,
    (width, height): (u32, u32),
    align: u32,
) -> Option<jpeg::Region> {
    let support = match reach.filter {
        Filter::Nearest | Filter::Box => 0.5,
        Filter::Bilinear | Filter::Hamming => 1.0,
        Filter::Bicubic => 2.0,
        Filter::Lanczos => 3.0,
    };
    // Two extra pixels keep libjpeg's edge handling of upsampled chroma away.
    let reach_x = support * (crop.width / f64::from(resized.0)).max(1.0) + 2.0;
    let reach_y = support * (crop.height / f64::from(resized.1)).max(1.0) + 2.0;
    let x0 = ((crop.left - reach_x).floor().max(0.0) as u32) / align * align;
    let y0 = (crop.top - reach_y).floor().max(0.0) as u32;
    let x1 = ((crop.left + crop.width + reach_x).ceil() as u32).min(width);
    // Rows run to the bottom by default: libjpeg stops reading the file
    // after the last row asked for, so damage below a crop would go unseen
    // there while a full decode flags it. Reading on (entropy decoding, which
    // dominates, is needed to see it at all) keeps one rule for every output
    // size; callers that know a file is intact may stop early.
    let y1 = if reach.to_end {
        height
    } else {
        ((crop.top + crop.height + reach_y).ceil() as u32).min(height)
    };
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    let kept = f64::from(x1 - x0) * f64::from(y1 - y0);
    if kept > 0.85 * f64::from(width) * f64::from(height) {
        return None;
    }
    Some(jpeg::Region {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
    })
}

/// Places the resampled image on a background canvas (letterbox).
fn pad(small: &RgbImage, plan: &Plan, background: [u8; 3]) -> RgbImage {
    let mut canvas = RgbImage::filled(plan.canvas.0, plan.canvas.1, background);
    let row = small.width as usize * 3;
    let (ox, oy) = (plan.offset.0 as usize, plan.offset.1 as usize);
    for (y, src_row) in small.data.chunks_exact(row).enumerate() {
        let start = ((oy + y) * plan.canvas.0 as usize + ox) * 3;
        canvas.data[start..start + row].copy_from_slice(src_row);
    }
    canvas
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::Pdq256;
    use crate::image::HashRequest;

    const PHOTO: &[u8] = include_bytes!("../../tests/fixtures/exif-orientation/Landscape_1.jpg");

    fn options(geometry: Geometry) -> ImageOptions {
        ImageOptions {
            geometry,
            reduced_decode: false,
            ..Default::default()
        }
    }

    #[test]
    fn partial_jpeg_decode_matches_full_decode() {
        // The centre crop decodes only a region; resampling the full decode
        // with the same box must give the very same bytes.
        let full = decode(PHOTO, &options(Geometry::Original), 0)
            .result
            .unwrap();
        assert_eq!((full.width, full.height), (1800, 1200));
        for filter in [Filter::Bilinear, Filter::Lanczos, Filter::Box] {
            let geometry = Geometry::CenterCrop {
                height: 224,
                width: 160,
                shorter: 600,
            };
            let opts = ImageOptions {
                filter,
                ..options(geometry)
            };
            let partial = decode(PHOTO, &opts, 0).result.unwrap();
            let p = plan(&geometry, 1800, 1200, 0);
            let mut expected = vec![0; 160 * 224 * 3];
            resize_into(full.view(), p.crop, &mut expected, 160, 224, filter).unwrap();
            assert_eq!(partial.data, expected, "{filter:?}");
        }
    }

    fn fast_and_exact_pdq(data: &[u8], geometry: Geometry, pixels: bool) -> (Pdq256, Pdq256) {
        let opts = ImageOptions {
            hashes: HashRequest::from_names(["pdq", "pdq_fast"]).unwrap(),
            output_pixels: pixels,
            reduced_decode: true,
            ..options(geometry)
        };
        let decoded = decode(data, &opts, 0);
        assert!(decoded.result.is_ok());
        let h = decoded.hashes;
        (h.pdq_fast.unwrap().0, h.pdq.unwrap().0)
    }

    #[test]
    fn pdq_fast_is_the_pdq_of_a_reduced_decode() {
        // 1800x1200: 1/4 scale keeps both sides at least 256 (1/8 would not).
        let h = jpeg::read_header(PHOTO).unwrap();
        let request = jpeg::Request {
            denominator: 4,
            region: None,
            fast: false,
        };
        let (reduced, _) = jpeg::decode(PHOTO, &h, request).unwrap();
        assert_eq!((reduced.width, reduced.height), (450, 300));
        let want = crate::hashing::pdq_from_rgb(&reduced.data, 450, 300).hash;
        let (fast, exact) = fast_and_exact_pdq(PHOTO, Geometry::Original, false);
        assert_eq!(fast, want);
        assert_ne!(fast, exact);
        assert!(fast.distance(&exact) <= 31, "{}", fast.distance(&exact));
        // The same whatever else the decode produces.
        let crop = Geometry::CenterCrop {
            height: 224,
            width: 224,
            shorter: 256,
        };
        assert_eq!(fast_and_exact_pdq(PHOTO, crop, true), (fast, exact));
    }

    #[test]
    fn pdq_fast_is_the_exact_pdq_where_no_scale_keeps_256_pixels() {
        let (w, h) = (300u32, 200u32);
        let rgb: Vec<u8> = (0..w * h * 3)
            .map(|i| (i % 251) as u8 ^ (i / 900) as u8)
            .collect();
        let small = crate::image::encode::encode_jpeg(&rgb, w, h, 90).unwrap();
        let png = crate::image::encode::encode_png(&rgb, w, h).unwrap();
        for data in [small, png] {
            let (fast, exact) = fast_and_exact_pdq(&data, Geometry::Original, false);
            assert_eq!(fast, exact);
        }
    }

    #[test]
    fn reduced_decode_stays_close_to_full_decode() {
        let geometry = Geometry::Resize {
            height: 150,
            width: 200,
        };
        let exact = decode(PHOTO, &options(geometry), 0).result.unwrap();
        let reduced = decode(
            PHOTO,
            &ImageOptions {
                reduced_decode: true,
                ..options(geometry)
            },
            0,
        )
        .result
        .unwrap();
        assert_ne!(exact.data, reduced.data, "1/8 scale decoding was used");
        let mse = exact
            .data
            .iter()
            .zip(&reduced.data)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum::<f64>()
            / exact.data.len() as f64;
        let psnr = 10.0 * (255.0f64.powi(2) / mse).log10();
        assert!(psnr > 32.0, "PSNR {psnr}");
    }

    #[test]
    fn header_problems_keep_what_is_known() {
        let d = probe(&PHOTO[..200], &ImageOptions::default());
        assert_eq!(d.format, Some(Format::Jpeg));
        let truncated = decode(&PHOTO[..PHOTO.len() / 2], &options(Geometry::Original), 0);
        assert_eq!(
            truncated.result.unwrap_err(),
            DecodeError::Truncated("JPEG")
        );
        assert_eq!(truncated.source_size, Some((1800, 1200)));
        let limited = ImageOptions {
            max_pixels: 1000,
            ..Default::default()
        };
        let too_large = decode(PHOTO, &limited, 0).result.unwrap_err();
        assert_eq!(
            too_large.to_string(),
            "image too large: 1800x1200 (2160000 pixels, limit 1000)"
        );
    }

    /// A 61x47 photo-like RGB image (smooth gradients plus texture).
    fn pixels() -> Vec<u8> {
        (0..47u32)
            .flat_map(|y| {
                (0..61u32).flat_map(move |x| {
                    [
                        (x * 4 + y) as u8,
                        (y * 5 + (x * x) % 7) as u8,
                        ((x ^ y) * 3) as u8,
                    ]
                })
            })
            .collect()
    }

    #[test]
    fn raw_ppm_is_resampled_in_place_as_its_decode_would_be() {
        use crate::image::encode::{encode_png, encode_ppm};
        let rgb = pixels();
        let ppm = encode_ppm(&rgb, 61, 47).unwrap();
        let png = encode_png(&rgb, 61, 47).unwrap();
        let mut flipped = 0;
        for seed in 0..16 {
            let geometry = Geometry::RandomResizedCrop {
                height: 24,
                width: 32,
                scale: (0.08, 1.0),
                ratio: (0.75, 4.0 / 3.0),
                flip_p: 0.5,
                seed,
            };
            flipped += usize::from(plan(&geometry, 61, 47, 3).flip);
            let opts = options(geometry);
            // The PNG goes through the decoder; the PPM is read in place.
            let decoded = decode(&png, &opts, 3).result.unwrap().data;
            let owned = decode(&ppm, &opts, 3).result.unwrap().data;
            let mut out = vec![0u8; 24 * 32 * 3];
            decode_into(&ppm, &opts, 3, &mut out).result.unwrap();
            assert_eq!(owned, decoded, "seed {seed}");
            assert_eq!(out, decoded, "seed {seed}, into a batch slot");
        }
        assert!(
            flipped > 2 && flipped < 14,
            "both flipped and unflipped crops ({flipped})"
        );
    }

    #[test]
    fn only_exact_8_bit_binary_ppm_is_read_in_place() {
        use crate::image::codecs::open as open_other;
        let raw = |bytes: &[u8]| {
            open_other(bytes, Format::Pnm, u64::MAX)
                .ok()
                .and_then(|o| o.raw_rgb().map(|v| v.data.to_vec()))
        };
        let body = [1u8, 2, 3, 4, 5, 6];
        let with = |header: &[u8], tail: &[u8]| [header, &body[..], tail].concat();
        assert_eq!(raw(&with(b"P6\n2 1\n255\n", b"")), Some(body.to_vec()));
        assert_eq!(
            raw(&with(b"P6 # a comment\n2\t1 # more\n255 ", b"")),
            Some(body.to_vec())
        );
        assert_eq!(raw(&with(b"P6\n2 1\n255\n", b"\n")), None, "trailing bytes");
        assert_eq!(raw(&with(b"P6\n2 1\n254\n", b"")), None, "maxval 254");
        assert_eq!(
            raw(&[&b"P6\n2 1\n65535\n"[..], &[0u8; 12]].concat()),
            None,
            "16-bit"
        );
        assert_eq!(
            raw(b"P3\n2 1\n255\n1 2 3 4 5 6\n"),
            None,
            "plain (ASCII) PPM"
        );
    }
}
