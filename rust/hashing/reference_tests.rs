//! PDQ against Meta's published expected values (tests/fixtures/pdq).

use super::{pdq_from_rgb, Pdq256};
use crate::image::{decode, Geometry, HashRequest, ImageOptions};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pdq");

fn expected(source: &str) -> Vec<(String, String, Option<u8>, Option<String>)> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/expected/pdq-expected.json")).unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    rows.iter()
        .filter(|r| r["source"] == source && r.get("preprocess").is_none_or(|p| p.is_null()))
        .map(|r| {
            (
                r["file"].as_str().unwrap().to_string(),
                r["hash"].as_str().unwrap().to_string(),
                r["quality"].as_u64().map(|q| q as u8),
                r.get("xform").and_then(|x| x.as_str()).map(String::from),
            )
        })
        .collect()
}

fn exact_options() -> ImageOptions {
    ImageOptions {
        geometry: Geometry::Original,
        reduced_decode: false,
        apply_orientation: false,
        ..Default::default()
    }
}

/// The C++ CLI's pre-step: images over 512 px squashed to 512x512, nearest.
fn squash_512(rgb: &[u8], w: usize, h: usize) -> (Vec<u8>, usize, usize) {
    if w <= 512 && h <= 512 {
        return (rgb.to_vec(), w, h);
    }
    let mut out = Vec::with_capacity(512 * 512 * 3);
    for y in 0..512 {
        let sy = y * h / 512;
        for x in 0..512 {
            let sx = x * w / 512;
            out.extend_from_slice(&rgb[(sy * w + sx) * 3..(sy * w + sx) * 3 + 3]);
        }
    }
    (out, 512, 512)
}

#[test]
fn matches_the_cpp_reference_pipeline() {
    let rows = expected("cpp-regtest");
    assert_eq!(rows.len(), 8);
    for (file, hash, quality, _) in rows {
        let data = std::fs::read(format!("{FIXTURES}/{file}")).unwrap();
        let img = decode(&data, &exact_options(), 0).result.unwrap();
        let (rgb, w, h) = squash_512(&img.data, img.width as usize, img.height as usize);
        let got = pdq_from_rgb(&rgb, w, h);
        assert_eq!(got.hash.to_hex(), hash, "{file}");
        assert_eq!(Some(got.quality), quality, "{file}");
    }
}

#[test]
fn dihedral_variants_match_the_cpp_reference() {
    let rows = expected("cpp-regtest-dihedral");
    let data = std::fs::read(format!("{FIXTURES}/images/dih/bridge-1-original.jpg")).unwrap();
    let img = decode(&data, &exact_options(), 0).result.unwrap();
    let (rgb, w, h) = squash_512(&img.data, img.width as usize, img.height as usize);
    let variants = pdq_from_rgb(&rgb, w, h).dihedral();
    for (_, hash, _, xform) in rows {
        let index = super::DIHEDRAL
            .iter()
            .position(|&n| Some(n) == xform.as_deref())
            .unwrap();
        assert_eq!(variants[index].to_hex(), hash, "{xform:?}");
    }
}

#[test]
fn matches_pdqhash_on_full_size_pillow_rgb() {
    // python-threatexchange feeds Pillow's convert("RGB") of the whole image
    // to the pdqhash package (Meta's C++ core): exact equality upstream.
    let options = ImageOptions {
        hashes: HashRequest {
            pdq: true,
            ..Default::default()
        },
        output_pixels: false,
        ..exact_options()
    };
    let rows = expected("python-threatexchange");
    assert!(rows.len() >= 3);
    for (file, hash, quality, _) in rows {
        let data = std::fs::read(format!("{FIXTURES}/{file}")).unwrap();
        let decoded = decode(&data, &options, 0);
        let (got, q) = decoded
            .hashes
            .pdq
            .unwrap_or_else(|| panic!("{file}: {:?}", decoded.result));
        let distance = got.distance(&Pdq256::from_hex(&hash).unwrap());
        assert_eq!(got.to_hex(), hash, "{file}: distance {distance}");
        if let Some(quality) = quality {
            assert_eq!(q, quality, "{file}");
        }
    }
}
