//! Any bytes through the hashtag engine: twitter-text extraction (invalid
//! UTF-8 included), normalisation, counting and caption redaction, with the
//! invariants the Python layer relies on.
#![no_main]

use fastprep::hashtags::{extract_lists, extract_spans, redact_into, Normalizer, RedactCounts,
                         RedactKinds};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &[u8]| {
    let mut spans = Vec::new();
    extract_spans(text, |s, e| spans.push((s, e)));
    for &(s, e) in &spans {
        assert!(s < e && e <= text.len(), "span {s}..{e} of {}", text.len());
    }
    assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "spans overlap");

    let normalizer = Normalizer::new([("cat", "kitty")], ["the"]);
    let lists = extract_lists(&[Some(text), None], Some(&normalizer));
    assert_eq!(lists.value_offsets().len(), 3, "one list per caption");

    let mut out = Vec::new();
    let mut counts = RedactCounts::default();
    redact_into(text, RedactKinds::default(), &mut out, &mut counts);
    if let Ok(original) = std::str::from_utf8(text) {
        // Redaction never touches the hashtags.
        let tags = |t: &str| fastprep::hashtags::extract(t).iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let redacted = String::from_utf8(out).expect("redacting UTF-8 keeps it UTF-8");
        assert_eq!(tags(original), tags(&redacted));
    }
});
