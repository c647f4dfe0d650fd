//! JPEG through libjpeg-turbo's TJ3 API: header, DCT-domain scaled decoding,
//! CMYK/YCCK, and libjpeg warnings turned into per-record outcomes.

use std::ffi::CStr;

use turbojpeg_sys as tj;

use super::error::DecodeError;
use super::metadata::{exif_orientation, xmp_orientation};
use super::orientation::Orientation;
use super::pixels::{rgb_from_cmyk, RgbImage};
use super::plausible::check_jpeg_data;

/// What the markers before the first scan tell us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JpegHeader {
    pub width: u32,
    pub height: u32,
    cmyk: bool,
    /// Chroma subsampling (TJSAMP_*), which fixes the crop alignment.
    subsamp: i32,
    /// An Adobe APP14 marker: CMYK samples are stored inverted.
    adobe: bool,
    pub orientation: Orientation,
    /// A libjpeg warning met while reading the header (see [`warning_name`]).
    pub warning: Option<&'static str>,
    /// Why the data cannot be decoded although the header could be read
    /// (cut short, or too small for the size it claims): checked by callers
    /// once the size is known, before any pixel memory is allocated.
    pub damage: Option<DecodeError>,
}

/// A TurboJPEG decompressor. A fresh one per call: libjpeg keeps tables and
/// frame data between images on one decompressor, so reusing it would let one
/// file's leftovers decode another (a truncated file "succeeding" with the
/// previous image's header). Creating one costs about 0.1 us.
struct Handle(tj::tjhandle);

impl Handle {
    fn new() -> Result<Handle, DecodeError> {
        // SAFETY: plain constructor; null means out of memory.
        let handle = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as i32) };
        if handle.is_null() {
            return Err(DecodeError::Internal(
                "cannot create a JPEG decompressor".into(),
            ));
        }
        Ok(Handle(handle))
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

fn with_handle<T>(
    f: impl FnOnce(tj::tjhandle) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let handle = Handle::new()?;
    f(handle.0)
}

fn error_text(handle: tj::tjhandle) -> String {
    // SAFETY: tj3GetErrorStr returns a NUL-terminated string owned by the handle.
    unsafe { CStr::from_ptr(tj::tj3GetErrorStr(handle)) }
        .to_string_lossy()
        .into_owned()
}

/// A libjpeg warning as the short, stable name the `warnings` column holds.
pub fn warning_name(message: &str) -> &'static str {
    let lower = message.to_ascii_lowercase();
    if lower.contains("extraneous bytes") {
        "extraneous bytes before marker"
    } else if lower.contains("premature end of jpeg file") {
        "premature end of data"
    } else if lower.contains("icc") {
        "bad ICC marker"
    } else if lower.contains("corrupt jpeg data")
        || lower.contains("huffman")
        || lower.contains("progression")
        || lower.contains("sos parameters")
    {
        "corrupt entropy data"
    } else {
        "decoder warning"
    }
}

/// A warning met while decoding the scans: stray bytes before a marker
/// there mean the entropy-coded data did not decode as it was laid out.
fn scan_warning_name(message: &str) -> &'static str {
    match warning_name(message) {
        "extraneous bytes before marker" => "corrupt entropy data",
        name => name,
    }
}

/// Whether the last failed call on `handle` was only a warning.
fn only_warned(handle: tj::tjhandle) -> bool {
    // SAFETY: reads the code of the call that just returned.
    let code = unsafe { tj::tj3GetErrorCode(handle) };
    code == tj::TJERR_TJERR_WARNING as i32
}

/// Maps libjpeg's message to our reason: running out of data is "truncated".
fn failure(message: String) -> DecodeError {
    if message.contains("Premature end") || message.contains("premature end of data") {
        DecodeError::Truncated("JPEG")
    } else {
        DecodeError::Corrupt {
            format: "JPEG",
            detail: message,
        }
    }
}

/// What the marker segments before the first scan say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Markers {
    orientation: Orientation,
    adobe: bool,
    /// Arithmetic-coded frame (SOF9-SOF15): no bits-per-block floor.
    arithmetic: bool,
    /// Offset of the first SOS marker, when the walk reached one.
    first_scan: Option<usize>,
}

/// Walks the marker segments before the first scan for EXIF (else XMP)
/// orientation, Adobe APP14 and the frame's coding.
fn scan_markers(data: &[u8]) -> Markers {
    let mut exif = None;
    let mut xmp = None;
    let mut markers = Markers {
        orientation: Orientation::IDENTITY,
        adobe: false,
        arithmetic: false,
        first_scan: None,
    };
    let mut pos = 2;
    while pos + 4 <= data.len() {
        if data[pos] != 0xFF {
            // Stray bytes between segments (libjpeg warns and resynchronises).
            match memchr::memchr(0xFF, &data[pos..]) {
                Some(skip) => {
                    pos += skip;
                    continue;
                }
                None => break,
            }
        }
        let marker = data[pos + 1];
        if marker == 0xFF {
            pos += 1; // fill byte
            continue;
        }
        if marker == 0xDA {
            markers.first_scan = Some(pos);
            break;
        }
        if marker == 0xD9 {
            break;
        }
        if marker == 0x01 || (0xD0..=0xD8).contains(&marker) {
            pos += 2;
            continue;
        }
        let length = usize::from(u16::from_be_bytes([data[pos + 2], data[pos + 3]]));
        let end = (pos + 2 + length).min(data.len());
        let body = &data[(pos + 4).min(end)..end];
        if marker == 0xE1 && body.starts_with(b"Exif\0\0") {
            exif = exif.or_else(|| exif_orientation(&body[6..]));
        } else if marker == 0xE1 && body.starts_with(b"http://ns.adobe.com/xap/1.0/\0") {
            xmp = xmp.or_else(|| xmp_orientation(body));
        } else if marker == 0xEE && body.starts_with(b"Adobe") {
            markers.adobe = true;
        } else if matches!(marker, 0xC9..=0xCB | 0xCD..=0xCF) {
            markers.arithmetic = true;
        }
        pos += 2 + length;
    }
    // EXIF wins; XMP's tiff:Orientation counts only without it (as in Pillow).
    markers.orientation = exif.or(xmp).unwrap_or(Orientation::IDENTITY);
    markers
}

/// Whether the entropy-coded data ends: an EOI marker after the first scan
/// (0xFF is always stuffed inside scan data, so it cannot appear there by
/// chance). A file without one was cut short, whatever part a crop reads.
fn has_end_marker(data: &[u8], first_scan: usize) -> bool {
    let scans = &data[first_scan..];
    scans.ends_with(&[0xFF, 0xD9]) || memchr::memmem::rfind(scans, &[0xFF, 0xD9]).is_some()
}

pub fn read_header(data: &[u8]) -> Result<JpegHeader, DecodeError> {
    let markers = scan_markers(data);
    with_handle(|handle| {
        // SAFETY: the buffer is valid for its length; the handle is live.
        let rc = unsafe { tj::tj3DecompressHeader(handle, data.as_ptr(), data.len() as _) };
        // A warning (stray bytes between markers, an odd APP length, a bad
        // ICC marker) still leaves a usable header, as in libjpeg and Pillow.
        let mut warning = None;
        if rc != 0 {
            let message = error_text(handle);
            if !only_warned(handle) {
                return Err(failure(message));
            }
            warning = Some(warning_name(&message));
        }
        let get = |param: tj::TJPARAM| unsafe { tj::tj3Get(handle, param as i32) };
        let precision = get(tj::TJPARAM_TJPARAM_PRECISION);
        if precision != 8 {
            return Err(DecodeError::Unsupported {
                format: "JPEG",
                detail: format!("{precision}-bit precision"),
            });
        }
        let (width, height) = (
            get(tj::TJPARAM_TJPARAM_JPEGWIDTH),
            get(tj::TJPARAM_TJPARAM_JPEGHEIGHT),
        );
        if width <= 0 || height <= 0 {
            return Err(DecodeError::Corrupt {
                format: "JPEG",
                detail: "no frame header".into(),
            });
        }
        let (width, height) = (width as u32, height as u32);
        // One rule for every output size: a file whose scans never end is
        // truncated, even where a crop would read only its first rows.
        let damage = match markers.first_scan {
            Some(scan) if has_end_marker(data, scan) => None,
            _ => Some(DecodeError::Truncated("JPEG")),
        };
        let damage = damage.or_else(|| {
            (!markers.arithmetic)
                .then(|| check_jpeg_data(width, height, data.len()).err())
                .flatten()
        });
        let colorspace = get(tj::TJPARAM_TJPARAM_COLORSPACE);
        let cmyk =
            colorspace == tj::TJCS_TJCS_CMYK as i32 || colorspace == tj::TJCS_TJCS_YCCK as i32;
        Ok(JpegHeader {
            width,
            height,
            cmyk,
            subsamp: get(tj::TJPARAM_TJPARAM_SUBSAMP),
            adobe: markers.adobe,
            orientation: markers.orientation,
            warning,
            damage,
        })
    })
}

/// Size of the image decoded at 1/`denominator` scale (libjpeg rounds up).
pub fn scaled_size(header: &JpegHeader, denominator: u32) -> (u32, u32) {
    (
        header.width.div_ceil(denominator),
        header.height.div_ceil(denominator),
    )
}

/// The largest DCT-domain reduction (1/2, 1/4, 1/8) that keeps the region
/// `region` (stored pixels) at least `needed` (width, height) after scaling.
pub fn pick_reduction(region: (f64, f64), needed: (u32, u32)) -> u32 {
    [8, 4, 2]
        .into_iter()
        .find(|&d| {
            region.0 / f64::from(d) >= f64::from(needed.0)
                && region.1 / f64::from(d) >= f64::from(needed.1)
        })
        .unwrap_or(1)
}

/// A rectangle of the scaled image to decode, in whole pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// Left edges of a partial decode must fall on an iMCU boundary; this is the
/// iMCU width at 1/`denominator` scale, or `None` when cropping is unavailable.
pub fn crop_alignment(header: &JpegHeader, denominator: u32) -> Option<u32> {
    let mcu_width = match header.subsamp {
        s if s == tj::TJSAMP_TJSAMP_444
            || s == tj::TJSAMP_TJSAMP_GRAY
            || s == tj::TJSAMP_TJSAMP_440 =>
        {
            8
        }
        s if s == tj::TJSAMP_TJSAMP_422 || s == tj::TJSAMP_TJSAMP_420 => 16,
        s if s == tj::TJSAMP_TJSAMP_411 || s == tj::TJSAMP_TJSAMP_441 => 32,
        _ => return None,
    };
    Some((mcu_width / denominator).max(1))
}

/// How to decode: scale, region and speed shortcuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Decode at 1/`denominator` scale in the DCT domain (1, 2, 4 or 8).
    pub denominator: u32,
    /// Only this part of the scaled image: libjpeg-turbo then skips the
    /// inverse DCT, upsampling and colour conversion outside it, and stops
    /// reading after its last row.
    pub region: Option<Region>,
    /// libjpeg's fast integer IDCT and plain chroma upsampling: a few percent
    /// faster, about one grey level less exact.
    pub fast: bool,
}

impl Request {
    #[cfg(test)]
    pub fn whole() -> Request {
        Request {
            denominator: 1,
            region: None,
            fast: false,
        }
    }

    /// Output (width, height) of this request.
    pub fn output_size(&self, header: &JpegHeader) -> (u32, u32) {
        self.region
            .map_or(scaled_size(header, self.denominator), |r| {
                (r.width, r.height)
            })
    }
}

impl JpegHeader {
    /// CMYK/YCCK images decode through a CMYK buffer, not straight to RGB.
    pub fn is_cmyk(&self) -> bool {
        self.cmyk
    }
}

/// Decodes into a new RGB image; also returns a warning libjpeg gave while
/// decoding (corrupt entropy data decodes, but is flagged).
pub fn decode(
    data: &[u8],
    header: &JpegHeader,
    request: Request,
) -> Result<(RgbImage, Option<&'static str>), DecodeError> {
    let (width, height) = request.output_size(header);
    let pixels = width as usize * height as usize;
    let (data, warning) = if header.cmyk {
        let mut cmyk = vec![0u8; pixels * 4];
        let warning = decompress(data, request, tj::TJPF_TJPF_CMYK, &mut cmyk)?;
        (rgb_from_cmyk(&cmyk, header.adobe), warning)
    } else {
        let mut rgb = vec![0u8; pixels * 3];
        let warning = decompress(data, request, tj::TJPF_TJPF_RGB, &mut rgb)?;
        (rgb, warning)
    };
    Ok((RgbImage::new(width, height, data), warning))
}

/// Decodes a non-CMYK image straight into `out` (exactly the output size x 3).
pub fn decode_into(
    data: &[u8],
    header: &JpegHeader,
    request: Request,
    out: &mut [u8],
) -> Result<Option<&'static str>, DecodeError> {
    debug_assert!(!header.cmyk);
    let (width, height) = request.output_size(header);
    if out.len() != width as usize * height as usize * 3 {
        return Err(DecodeError::Internal(
            "output slot has the wrong size".into(),
        ));
    }
    decompress(data, request, tj::TJPF_TJPF_RGB, out)
}

fn decompress(
    data: &[u8],
    request: Request,
    format: tj::TJPF,
    out: &mut [u8],
) -> Result<Option<&'static str>, DecodeError> {
    with_handle(|handle| {
        let mut header_warning = None;
        // SAFETY: handle live; buffers valid; `out` holds exactly the output
        // size in the requested pixel format (pitch 0 = packed rows).
        let rc = unsafe {
            // Header warnings were judged by `read_header`.
            if tj::tj3DecompressHeader(handle, data.as_ptr(), data.len() as _) != 0 {
                if !only_warned(handle) {
                    return Err(failure(error_text(handle)));
                }
                header_warning = Some(error_text(handle));
            }
            let factor = tj::tjscalingfactor {
                num: 1,
                denom: request.denominator as i32,
            };
            let fast = i32::from(request.fast);
            let setup_failed = tj::tj3SetScalingFactor(handle, factor) != 0
                || tj::tj3Set(handle, tj::TJPARAM_TJPARAM_FASTDCT as i32, fast) != 0
                || tj::tj3Set(handle, tj::TJPARAM_TJPARAM_FASTUPSAMPLE as i32, fast) != 0;
            // The handle is reused: always set the region, "uncropped" included.
            let r = request.region.map_or(
                tj::tjregion {
                    x: 0,
                    y: 0,
                    w: 0,
                    h: 0,
                },
                |r| tj::tjregion {
                    x: r.x as i32,
                    y: r.y as i32,
                    w: r.width as i32,
                    h: r.height as i32,
                },
            );
            if setup_failed || tj::tj3SetCroppingRegion(handle, r) != 0 {
                return Err(DecodeError::Internal(error_text(handle)));
            }
            tj::tj3Decompress8(
                handle,
                data.as_ptr(),
                data.len() as _,
                out.as_mut_ptr(),
                0,
                format,
            )
        };
        if rc != 0 {
            let message = error_text(handle);
            let reason = failure(message.clone());
            // Pillow also accepts libjpeg's recoverable warnings (extraneous
            // bytes, bad Huffman codes) but not running out of data; we keep
            // the pixels and name the warning, so damage is never silent.
            if !only_warned(handle) {
                return Err(reason);
            }
            // The end marker is there (`read_header` checked), so running out
            // of data mid-scan means the scan data is corrupt, not cut short:
            // Pillow decodes such files, and so do we, flagged.
            if matches!(reason, DecodeError::Truncated(_)) {
                return Ok(Some("corrupt entropy data"));
            }
            // libjpeg keeps the last warning only: the header's again, or one
            // from the scans.
            if header_warning.as_deref() == Some(message.as_str()) {
                return Ok(Some(warning_name(&message)));
            }
            return Ok(Some(scan_warning_name(&message)));
        }
        Ok(None)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduction_keeps_at_least_the_needed_size() {
        assert_eq!(pick_reduction((4000.0, 3000.0), (224, 224)), 8);
        assert_eq!(pick_reduction((1000.0, 1000.0), (224, 224)), 4);
        assert_eq!(pick_reduction((500.0, 375.0), (224, 224)), 1);
        assert_eq!(pick_reduction((500.0, 460.0), (224, 224)), 2);
    }

    #[test]
    fn markers_give_orientation_and_adobe() {
        let tiff_be = [
            b'M', b'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0,
        ];
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE1];
        jpeg.extend_from_slice(&((2 + 6 + tiff_be.len()) as u16).to_be_bytes());
        jpeg.extend_from_slice(b"Exif\0\0");
        jpeg.extend_from_slice(&tiff_be);
        jpeg.extend_from_slice(&[0xFF, 0xEE, 0, 7]);
        jpeg.extend_from_slice(b"Adobe");
        let scan = jpeg.len();
        jpeg.extend_from_slice(&[0xFF, 0xDA, 0, 2]);
        let markers = scan_markers(&jpeg);
        assert_eq!(markers.orientation, Orientation::from_exif(6));
        assert!(markers.adobe && !markers.arithmetic);
        assert_eq!(markers.first_scan, Some(scan));
        let cut = scan_markers(&jpeg[..10]);
        assert_eq!(
            (cut.orientation, cut.adobe, cut.first_scan),
            (Orientation::IDENTITY, false, None)
        );
    }

    #[test]
    fn rejects_garbage() {
        let err = read_header(&[0xFF, 0xD8, 0xFF, 0x00, 1, 2, 3]).unwrap_err();
        assert!(
            matches!(err, DecodeError::Corrupt { .. } | DecodeError::Truncated(_)),
            "{err}"
        );
    }
}

#[cfg(test)]
mod poison_tests {
    use super::*;

    const PHOTO: &[u8] = include_bytes!("../../tests/fixtures/exif-orientation/Landscape_1.jpg");

    #[test]
    fn a_corrupt_file_does_not_break_the_next_one() {
        let mut bad = PHOTO.to_vec();
        let dqt = bad.windows(2).position(|w| w == [0xFF, 0xDB]).unwrap();
        bad[dqt + 4] = 4; // quantisation table id out of range
        let header = read_header(PHOTO).unwrap();
        let eighth = Request {
            denominator: 8,
            ..Request::whole()
        };
        assert!(read_header(&bad)
            .and_then(|h| decode(&bad, &h, eighth))
            .is_err());
        assert!(decode(PHOTO, &header, eighth).is_ok_and(|(_, w)| w.is_none()));
        assert!(read_header(PHOTO).is_ok());
    }
}
