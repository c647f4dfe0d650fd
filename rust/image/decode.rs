//! One image from encoded bytes to output pixels: sniff, read the header,
//! check the pixel limit, plan the geometry, decode (scaled when possible),
//! resample, then orient, flip and pad the small result.

use super::codecs::{self, Opened};
use super::error::{check_pixel_limit, DecodeError};
use super::format::{sniff, Format};
use super::geometry::{plan, CropBox, Plan};
use super::jpeg::{self, JpegHeader};
use super::options::{Geometry, ImageOptions};
use super::orientation::{flip_horizontal, Orientation};
use super::pixels::RgbImage;
use super::resize::resize_into;

/// What is known about one record, whether or not its pixels decoded.
#[derive(Debug)]
pub struct Decoded<T> {
    pub format: Option<Format>,
    /// (width, height) as displayed, once the header was read.
    pub source_size: Option<(u32, u32)>,
    /// The orientation that was applied (identity when switched off).
    pub orientation: Orientation,
    pub result: Result<T, DecodeError>,
}

impl<T> Decoded<T> {
    fn failed(format: Option<Format>, error: DecodeError) -> Decoded<T> {
        Decoded {
            format,
            source_size: None,
            orientation: Orientation::IDENTITY,
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
}

fn open<'a>(
    data: &'a [u8],
    options: &ImageOptions,
) -> Result<(Format, Header<'a>), (Option<Format>, DecodeError)> {
    if data.is_empty() {
        return Err((None, DecodeError::Empty));
    }
    let format = sniff(data).ok_or((None, DecodeError::UnsupportedFormat))?;
    let header = match format {
        Format::Jpeg => {
            let h = jpeg::read_header(data).map_err(|e| (Some(format), e))?;
            check_pixel_limit(h.width, h.height, options.max_pixels)
                .map_err(|e| (Some(format), e))?;
            Header::Jpeg(h, data)
        }
        _ => Header::Other(
            codecs::open(data, format, options.max_pixels).map_err(|e| (Some(format), e))?,
        ),
    };
    Ok((format, header))
}

/// Header-only look at an image: format, displayed size, orientation.
pub fn probe(data: &[u8], options: &ImageOptions) -> Decoded<()> {
    match open(data, options) {
        Err((format, e)) => Decoded::failed(format, e),
        Ok((format, header)) => {
            let orientation = effective_orientation(&header, options);
            let (w, h) = header.stored_size();
            Decoded {
                format: Some(format),
                source_size: Some(orientation.display_size(w, h)),
                orientation,
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

/// Decodes into `out`, which must hold exactly the geometry's fixed size.
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
        result: d.result.map(|_| ()),
    }
}

fn run(
    data: &[u8],
    options: &ImageOptions,
    record_index: u64,
    out: Option<&mut [u8]>,
) -> Decoded<RgbImage> {
    let (format, header) = match open(data, options) {
        Ok(opened) => opened,
        Err((format, e)) => return Decoded::failed(format, e),
    };
    let orientation = effective_orientation(&header, options);
    let (sw, sh) = header.stored_size();
    let (dw, dh) = orientation.display_size(sw, sh);
    let plan = plan(&options.geometry, dw, dh, record_index);
    let result = render(header, orientation, &plan, options, out);
    Decoded {
        format: Some(format),
        source_size: Some((dw, dh)),
        orientation,
        result,
    }
}

/// Decodes and resamples per the plan. With `out`, writes there and returns an
/// empty image; without, returns the pixels.
fn render(
    header: Header,
    orientation: Orientation,
    plan: &Plan,
    options: &ImageOptions,
    out: Option<&mut [u8]>,
) -> Result<RgbImage, DecodeError> {
    let (sw, sh) = header.stored_size();
    let crop = orientation.box_to_stored(plan.crop, sw, sh);
    // Resample in stored orientation; only the small result is re-oriented.
    let resized = if orientation.swaps_axes() {
        (plan.resized.1, plan.resized.0)
    } else {
        plan.resized
    };

    let (source, crop) = match header {
        Header::Jpeg(h, data) => {
            let reduce = options.reduced_decode && options.geometry != Geometry::Original;
            let denominator = if reduce {
                jpeg::pick_reduction((crop.width, crop.height), resized)
            } else {
                1
            };
            let img = jpeg::decode(data, &h, denominator)?;
            let scale = (
                f64::from(img.width) / f64::from(sw),
                f64::from(img.height) / f64::from(sh),
            );
            (img, crop.scaled(scale.0, scale.1))
        }
        Header::Other(opened) => (opened.decode(options.background)?, crop),
    };

    let untouched =
        orientation == Orientation::IDENTITY && !plan.flip && plan.canvas == plan.resized;
    if untouched {
        if let Some(out) = out {
            resize_into(&source, crop, out, resized.0, resized.1, options.filter)?;
            return Ok(RgbImage::new(0, 0, Vec::new()));
        }
        if crop == CropBox::full(source.width, source.height)
            && (source.width, source.height) == resized
        {
            return Ok(source); // nothing to do: hand over the decoded buffer
        }
    }
    let mut small = RgbImage::new(
        resized.0,
        resized.1,
        vec![0; resized.0 as usize * resized.1 as usize * 3],
    );
    resize_into(
        &source,
        crop,
        &mut small.data,
        resized.0,
        resized.1,
        options.filter,
    )?;
    drop(source);
    let mut small = if orientation == Orientation::IDENTITY {
        small
    } else {
        orientation.apply(&small)
    };
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
            Ok(RgbImage::new(0, 0, Vec::new()))
        }
        None => Ok(finished),
    }
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
