//! Times two kernels that no Python benchmark isolates: PDQ's own stage on a
//! decoded 500x375 photo, and a query against the growing PDQ index that
//! single-pass prep searches. The fastest of several rounds is printed (this
//! project's VM is noisy); the Python benchmarks in `benches/` measure whole
//! tasks against peers.
//!
//!     cargo run --release --example kernel_timing

use std::hint::black_box;
use std::time::Instant;

use fastprep::dedup::{GrowingIndex, HashSet};
use fastprep::hashing::{luma_from_rgb, pdq_from_rgb};

/// Microseconds per call of `f`, the fastest of `rounds` rounds of `calls`.
fn best(rounds: usize, calls: usize, mut f: impl FnMut()) -> f64 {
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..calls {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / calls as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// Pseudo-random 64-bit words (an LCG).
fn words(n: usize, seed: u64) -> Vec<u64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            x ^ (x >> 29)
        })
        .collect()
}

fn main() {
    // A smooth ramp with noise, as a photo's luma varies.
    let (w, h) = (500usize, 375usize);
    let noise = words(w * h * 3 / 8 + 1, 1);
    let rgb: Vec<u8> = (0..w * h * 3)
        .map(|i| ((i / 3 % w) / 2) as u8 ^ (noise[i / 8] >> (i % 8 * 8)) as u8 & 15)
        .collect();
    let luma = best(30, 100, || {
        black_box(luma_from_rgb(&rgb));
    });
    let pdq = best(30, 100, || {
        black_box(pdq_from_rgb(&rgb, w, h));
    });
    println!("PDQ of a 500x375 RGB image: {pdq:.1} us (luma alone, allocating: {luma:.1} us)");

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let queries = HashSet {
        words: 4,
        data: words(2_000 * 4, 99),
    };
    for n in [80_000usize, 400_000] {
        let mut index = GrowingIndex::new(4).unwrap();
        let hashes = HashSet {
            words: 4,
            data: words(n * 4, 7),
        };
        index.add(&hashes).unwrap();
        let per_query = best(5, 1, || {
            pool.install(|| black_box(index.query(&queries, 31).unwrap()));
        }) / 2_000.0;
        println!(
            "growing index of {n} PDQ hashes, radius 31, one thread: {per_query:.1} us a query"
        );
    }
}
