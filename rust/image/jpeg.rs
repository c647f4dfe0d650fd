//! JPEG through libjpeg-turbo's TJ3 API: header, DCT-domain scaled decoding,
//! CMYK/YCCK, and libjpeg warnings turned into per-record outcomes.

use std::ffi::CStr;

use turbojpeg_sys as tj;

use super::error::DecodeError;
use super::orientation::Orientation;
use super::pixels::{rgb_from_cmyk, RgbImage};

/// What the markers before the first scan tell us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JpegHeader {
    pub width: u32,
    pub height: u32,
    cmyk: bool,
    /// Chroma subsampling (TJSAMP_*), which fixes the crop alignment.
    subsamp: i32,
    /// An Adobe APP14 marker: CMYK samples are stored inverted.
    adobe: bool,
    pub orientation: Orientation,
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

/// Walks the marker segments before the first scan for EXIF and Adobe APP14.
fn scan_markers(data: &[u8]) -> (Orientation, bool) {
    let mut orientation = Orientation::IDENTITY;
    let mut adobe = false;
    let mut pos = 2;
    while pos + 4 <= data.len() {
        if data[pos] != 0xFF {
            break;
        }
        let marker = data[pos + 1];
        if marker == 0xFF {
            pos += 1; // fill byte
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            break; // start of scan / end of image: no more metadata
        }
        if marker == 0x01 || (0xD0..=0xD8).contains(&marker) {
            pos += 2;
            continue;
        }
        let length = usize::from(u16::from_be_bytes([data[pos + 2], data[pos + 3]]));
        let end = (pos + 2 + length).min(data.len());
        let body = &data[(pos + 4).min(end)..end];
        if marker == 0xE1 && body.starts_with(b"Exif\0\0") {
            orientation = Orientation::from_exif_block(&body[6..]);
        } else if marker == 0xEE && body.starts_with(b"Adobe") {
            adobe = true;
        }
        pos += 2 + length;
    }
    (orientation, adobe)
}

pub fn read_header(data: &[u8]) -> Result<JpegHeader, DecodeError> {
    let (orientation, adobe) = scan_markers(data);
    with_handle(|handle| {
        // SAFETY: the buffer is valid for its length; the handle is live.
        let rc = unsafe { tj::tj3DecompressHeader(handle, data.as_ptr(), data.len() as _) };
        if rc != 0 {
            return Err(failure(error_text(handle)));
        }
        let get = |param: tj::TJPARAM| unsafe { tj::tj3Get(handle, param as i32) };
        let precision = get(tj::TJPARAM_TJPARAM_PRECISION);
        if precision != 8 {
            return Err(DecodeError::Unsupported {
                format: "JPEG",
                detail: format!("unsupported {precision}-bit sample precision"),
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
        let colorspace = get(tj::TJPARAM_TJPARAM_COLORSPACE);
        let cmyk =
            colorspace == tj::TJCS_TJCS_CMYK as i32 || colorspace == tj::TJCS_TJCS_YCCK as i32;
        Ok(JpegHeader {
            width: width as u32,
            height: height as u32,
            cmyk,
            subsamp: get(tj::TJPARAM_TJPARAM_SUBSAMP),
            adobe,
            orientation,
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

/// Decodes into a new RGB image.
pub fn decode(data: &[u8], header: &JpegHeader, request: Request) -> Result<RgbImage, DecodeError> {
    let (width, height) = request.output_size(header);
    let pixels = width as usize * height as usize;
    let data = if header.cmyk {
        let mut cmyk = vec![0u8; pixels * 4];
        decompress(data, request, tj::TJPF_TJPF_CMYK, &mut cmyk)?;
        rgb_from_cmyk(&cmyk, header.adobe)
    } else {
        let mut rgb = vec![0u8; pixels * 3];
        decompress(data, request, tj::TJPF_TJPF_RGB, &mut rgb)?;
        rgb
    };
    Ok(RgbImage::new(width, height, data))
}

/// Decodes a non-CMYK image straight into `out` (exactly the output size x 3).
pub fn decode_into(
    data: &[u8],
    header: &JpegHeader,
    request: Request,
    out: &mut [u8],
) -> Result<(), DecodeError> {
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
) -> Result<(), DecodeError> {
    with_handle(|handle| {
        // SAFETY: handle live; buffers valid; `out` holds exactly the output
        // size in the requested pixel format (pitch 0 = packed rows).
        let rc = unsafe {
            if tj::tj3DecompressHeader(handle, data.as_ptr(), data.len() as _) != 0 {
                return Err(failure(error_text(handle)));
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
            // SAFETY: reads the code of the call that just failed.
            let fatal = unsafe { tj::tj3GetErrorCode(handle) } == tj::TJERR_TJERR_FATAL as i32;
            let reason = failure(message);
            // Pillow also accepts libjpeg's recoverable warnings (extraneous
            // bytes, bad Huffman codes) but not running out of data.
            if fatal || matches!(reason, DecodeError::Truncated(_)) {
                return Err(reason);
            }
        }
        Ok(())
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
        jpeg.extend_from_slice(&[0xFF, 0xDA, 0, 2]);
        assert_eq!(scan_markers(&jpeg), (Orientation::from_exif(6), true));
        assert_eq!(scan_markers(&jpeg[..10]), (Orientation::IDENTITY, false));
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
        assert!(decode(PHOTO, &header, eighth).is_ok());
        assert!(read_header(PHOTO).is_ok());
    }
}
