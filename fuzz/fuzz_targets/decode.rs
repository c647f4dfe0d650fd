//! Any bytes through the whole image path: sniffing, every decoder, the
//! EXIF/XMP/PNG-text orientation readers, the plausibility checks, geometry
//! and hashing. The first byte picks the request, so one corpus covers full
//! decodes, crops (partial JPEG decoding) and hashing. Every outcome is fine
//! except a panic, a hang or a sanitizer report.
#![no_main]

use fastprep::image::{decode, probe, Geometry, HashRequest, ImageOptions};
use libfuzzer_sys::fuzz_target;

/// Small enough that a fuzzer-made header cannot ask for gigabytes.
const MAX_PIXELS: u64 = 4_000_000;

fn options(selector: u8) -> ImageOptions {
    let geometry = match selector % 4 {
        0 => Geometry::Original,
        1 => Geometry::CenterCrop {
            height: 32,
            width: 32,
            shorter: 36,
        },
        2 => Geometry::Resize {
            height: 24,
            width: 40,
        },
        _ => Geometry::RandomResizedCrop {
            height: 16,
            width: 16,
            scale: (0.08, 1.0),
            ratio: (0.75, 4.0 / 3.0),
            flip_p: 0.5,
            seed: u64::from(selector),
        },
    };
    let hashes = if selector & 0x10 != 0 {
        HashRequest::from_names(["xxh3", "pdq", "phash", "dhash"].iter().copied())
            .expect("known hash names")
    } else {
        HashRequest::default()
    };
    ImageOptions {
        geometry,
        hashes,
        apply_orientation: selector & 0x20 == 0,
        reduced_decode: selector & 0x40 == 0,
        max_pixels: MAX_PIXELS,
        ..Default::default()
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, data)) = input.split_first() else {
        return;
    };
    let options = options(selector);
    let probed = probe(data, &options);
    let decoded = decode(data, &options, 0);
    // What the header promised is what the pixels are.
    if let (Ok(()), Ok(img)) = (&probed.result, &decoded.result) {
        if let Some((h, w)) = options.geometry.fixed_size() {
            assert_eq!((img.width, img.height), (w, h));
        } else {
            assert_eq!(Some((img.width, img.height)), probed.source_size);
        }
        assert_eq!(img.data.len(), img.width as usize * img.height as usize * 3);
    }
});
