//! A hand-written hashtag scanner following twitter-text's `validHashtag`:
//!
//! ```text
//! boundary  (#|＃)  not VS16/keycap  run-of-hashtag-chars-with-a-letter  not followed by # ＃ ://
//! ```
//!
//! where the boundary is the start of the text, a variation selector
//! (U+FE0E/U+FE0F), or any character that is neither a hashtag character nor
//! `&`; hashtags inside URLs are dropped. It works on bytes: invalid UTF-8 is
//! read as U+FFFD (a boundary), so any input is safe and valid parts still
//! yield their hashtags.

use bstr::{decode_last_utf8, decode_utf8};

use super::chars::{is_hashtag_char, is_letter_or_mark};
use super::url::UrlCursor;

const FULLWIDTH_HASH: &[u8] = "＃".as_bytes();

/// Length of the hash sign at `pos`, if there is one.
#[inline]
fn hash_sign(text: &[u8], pos: usize) -> Option<usize> {
    match text[pos] {
        b'#' => Some(1),
        0xEF if text[pos..].starts_with(FULLWIDTH_HASH) => Some(3),
        _ => None,
    }
}

#[inline]
fn char_at(text: &[u8], pos: usize) -> Option<(char, usize)> {
    if pos >= text.len() {
        return None;
    }
    let b = text[pos];
    if b < 0x80 {
        return Some((b as char, 1));
    }
    let (c, len) = decode_utf8(&text[pos..]);
    Some((c.unwrap_or('\u{FFFD}'), len.max(1)))
}

#[inline]
fn boundary_before(text: &[u8], pos: usize) -> bool {
    if pos == 0 {
        return true;
    }
    let prev = text[pos - 1];
    if prev < 0x80 {
        let c = prev as char;
        return !(c.is_ascii_alphanumeric() || c == '_' || c == '&');
    }
    let (c, _) = decode_last_utf8(&text[..pos]);
    match c {
        None => true, // invalid UTF-8 reads as U+FFFD, not a hashtag character
        Some('\u{FE0E}' | '\u{FE0F}') => true,
        Some(c) => !is_hashtag_char(c),
    }
}

/// ASCII bytes by their part in a hashtag: not one of its characters,
/// a digit or `_`, or a letter. (Bytes >= 0x80 start a multi-byte character.)
const NOT_IN_TAG: u8 = 0;
const DIGIT_OR_UNDERSCORE: u8 = 1;
const LETTER: u8 = 2;
const NON_ASCII: u8 = 3;
const ASCII_CLASS: [u8; 256] = {
    let mut table = [NOT_IN_TAG; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = if c >= 0x80 {
            NON_ASCII
        } else if c.is_ascii_alphabetic() {
            LETTER
        } else if c.is_ascii_digit() || c == b'_' {
            DIGIT_OR_UNDERSCORE
        } else {
            NOT_IN_TAG
        };
        b += 1;
    }
    table
};

/// End of the run of hashtag characters from `start`, and whether it holds a
/// letter. ASCII (most tags) takes one table lookup a byte; other characters
/// are decoded and classified.
#[inline]
fn hashtag_run(text: &[u8], start: usize) -> (usize, bool) {
    let mut end = start;
    let mut has_letter = false;
    while end < text.len() {
        match ASCII_CLASS[usize::from(text[end])] {
            LETTER => {
                has_letter = true;
                end += 1;
            }
            DIGIT_OR_UNDERSCORE => end += 1,
            NOT_IN_TAG => break,
            _ => {
                let Some((c, len)) = char_at(text, end) else {
                    break;
                };
                if !is_hashtag_char(c) {
                    break;
                }
                has_letter |= is_letter_or_mark(c);
                end += len;
            }
        }
    }
    (end, has_letter)
}

/// Calls `emit(start, end)` with the byte span of each hashtag's text (after
/// the hash sign), in order.
pub fn extract_spans(text: &[u8], mut emit: impl FnMut(usize, usize)) {
    let mut pos = 0;
    // End of the last regex match (a run with a letter, accepted or not): the
    // regex consumed its characters, so none of them can be the boundary of a
    // hash sign right after it (`#a<VS16>#b` gives nothing).
    let mut matched_until = usize::MAX;
    // Built on the first hashtag that needs it: most captions never pay.
    let mut urls: Option<UrlCursor> = None;
    while pos < text.len() {
        let Some(found) = memchr::memchr2(b'#', 0xEF, &text[pos..]) else {
            break;
        };
        let at = pos + found;
        let Some(sign) = hash_sign(text, at) else {
            pos = at + 1;
            continue;
        };
        let start = at + sign;
        pos = start;
        if at == matched_until || !boundary_before(text, at) {
            continue;
        }
        if matches!(char_at(text, start), Some(('\u{FE0F}' | '\u{20E3}', _))) {
            continue;
        }
        let (end, has_letter) = hashtag_run(text, start);
        if end == start {
            continue;
        }
        pos = end;
        if has_letter {
            matched_until = end;
        }
        let rest = &text[end..];
        let followed_badly =
            rest.starts_with(b"#") || rest.starts_with(FULLWIDTH_HASH) || rest.starts_with(b"://");
        if has_letter
            && !followed_badly
            && !urls
                .get_or_insert_with(|| UrlCursor::new(text))
                .contains(at)
        {
            emit(start, end);
        }
    }
}

/// The hashtags of `text` (without the hash sign), in order, duplicates kept.
pub fn extract(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    // Spans fall on character boundaries of valid UTF-8.
    extract_spans(text.as_bytes(), |s, e| out.push(&text[s..e]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_rules() {
        assert_eq!(extract("a #hashtag here"), vec!["hashtag"]);
        assert_eq!(extract("#1st #122 #_ #1_2"), vec!["1st"]);
        assert_eq!(extract("abc#def"), Vec::<&str>::new());
        assert_eq!(extract("#abc#def"), Vec::<&str>::new());
        assert_eq!(extract("a ✌\u{FE0F}#tag"), vec!["tag"]);
        assert_eq!(
            extract("＃ｈａｓｈｔａｇ１２３"),
            vec!["ｈａｓｈｔａｇ１２３"]
        );
        assert_eq!(extract("#http://twitter.com"), Vec::<&str>::new());
        assert_eq!(extract("&#tag #ok."), vec!["ok"]);
        assert_eq!(extract("#\u{FE0F}tag #\u{20E3}"), Vec::<&str>::new());
        assert_eq!(
            extract("#a\u{FE0F}#b"),
            Vec::<&str>::new(),
            "VS16 consumed by the previous match"
        );
    }

    #[test]
    fn invalid_utf8_is_a_boundary_not_a_crash() {
        let mut spans = Vec::new();
        extract_spans(b"\xff#good \xc3#also\xff tail #", |s, e| spans.push((s, e)));
        assert_eq!(spans, vec![(2, 6), (9, 13)]);
        extract_spans(b"#\xef\xbc", |_, _| panic!("no tag"));
        extract_spans(b"\xef", |_, _| panic!("no tag"));
    }
}

#[cfg(test)]
mod conformance {
    use super::*;

    const CASES: &str =
        include_str!("../../tests/fixtures/hashtags/twitter-text-extract-hashtags.json");
    const VALIDATE: &str =
        include_str!("../../tests/fixtures/hashtags/twitter-text-validate-hashtags.json");

    #[test]
    fn every_twitter_text_extraction_case_passes() {
        let cases: Vec<serde_json::Value> = serde_json::from_str(CASES).unwrap();
        assert_eq!(cases.len(), 76);
        for case in &cases {
            let text = case["text"].as_str().unwrap();
            let mut got: Vec<(String, usize, usize)> = Vec::new();
            extract_spans(text.as_bytes(), |s, e| {
                // twitter-text indices count code points, from the hash sign.
                let start = text[..s].chars().count() - 1;
                let end = text[..e].chars().count();
                got.push((text[s..e].to_string(), start, end));
            });
            let expected = case["expected"].as_array().unwrap();
            if case["section"] == "hashtags_with_indices" {
                let want: Vec<(String, usize, usize)> = expected
                    .iter()
                    .map(|e| {
                        let idx = e["indices"].as_array().unwrap();
                        let (s, t) = (
                            idx[0].as_u64().unwrap() as usize,
                            idx[1].as_u64().unwrap() as usize,
                        );
                        (e["hashtag"].as_str().unwrap().to_string(), s, t)
                    })
                    .collect();
                assert_eq!(got, want, "{}", case["description"]);
            } else {
                let want: Vec<&str> = expected.iter().map(|e| e.as_str().unwrap()).collect();
                let tags: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
                assert_eq!(tags, want, "{}: {text:?}", case["description"]);
            }
        }
    }

    #[test]
    fn every_twitter_text_validation_case_passes() {
        let cases: Vec<serde_json::Value> = serde_json::from_str(VALIDATE).unwrap();
        for case in &cases {
            let text = case["text"].as_str().unwrap();
            let tags = extract(text);
            let valid = tags.len() == 1 && tags[0].len() + 1 == text.len();
            assert_eq!(
                valid,
                case["expected"].as_bool().unwrap(),
                "{}",
                case["description"]
            );
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// The same grammar, written as plainly as possible over decoded chars.
    fn reference(text: &str) -> Vec<String> {
        use crate::hashtags::chars::{is_hashtag_char, is_letter_or_mark};
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        let mut matched_until = usize::MAX;
        while i < chars.len() {
            let c = chars[i];
            let boundary = i == 0
                || i != matched_until && {
                    let p = chars[i - 1];
                    p == '\u{FE0E}' || p == '\u{FE0F}' || !(is_hashtag_char(p) || p == '&')
                };
            if (c == '#' || c == '＃')
                && boundary
                && !matches!(chars.get(i + 1), Some('\u{FE0F}' | '\u{20E3}'))
            {
                let mut j = i + 1;
                while j < chars.len() && is_hashtag_char(chars[j]) {
                    j += 1;
                }
                if j > i + 1 {
                    let tag: String = chars[i + 1..j].iter().collect();
                    if tag.chars().any(is_letter_or_mark) {
                        matched_until = j;
                    }
                    let rest: String = chars[j..].iter().take(3).collect();
                    let byte_at: usize = chars[..i].iter().map(|c| c.len_utf8()).sum();
                    if tag.chars().any(is_letter_or_mark)
                        && !(rest.starts_with('#')
                            || rest.starts_with('＃')
                            || rest.starts_with("://"))
                        && !crate::hashtags::url::inside_url(text.as_bytes(), byte_at)
                    {
                        out.push(tag);
                    }
                    i = j;
                    continue;
                }
            }
            i += 1;
        }
        out
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut n = 0;
            extract_spans(&bytes, |s, e| { assert!(s < e && e <= bytes.len()); n += 1; });
            prop_assert!(n <= bytes.len());
        }

        #[test]
        fn matches_the_reference(text in "([#＃a-zA-Zé1_ .:/&\u{FE0F}\u{3002}漢-]|http://|\u{200d}){0,40}") {
            let got: Vec<String> = extract(&text).into_iter().map(String::from).collect();
            prop_assert_eq!(got, reference(&text));
        }
    }
}
