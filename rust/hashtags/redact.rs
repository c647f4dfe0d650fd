//! Caption redaction: `@mentions`, e-mail addresses, phone numbers and URLs
//! replaced by placeholders (`@user`, `<email>`, `<phone>`, `<url>`), with
//! hashtags left exactly as they are.
//!
//! The rules, on bytes (invalid UTF-8 is copied through untouched):
//!
//! * **URLs**: the scanner's own URL rule ([`super::url`]: a `scheme://`, or a
//!   `domain.tld/` prefix not preceded by a letter, digit, `@`, `$` or `#`),
//!   plus `www.` hosts and bare `domain.tld` hosts whose TLD is a common one
//!   (the TLD list is short on purpose: `node.js` or `e.g.` are not hosts).
//!   A URL runs to the end of its whitespace-delimited token, less trailing
//!   punctuation (`.,;:!?)]}'"`).
//! * **Mentions**: twitter-text's `validMentionOrList` boundary (not after
//!   `[A-Za-z0-9_!#$%&*@＠]`, or after `RT`/`RT:`), `@` or `＠`, then a
//!   username, widened to Instagram's (letters, digits, `_` and `.`, up to 30;
//!   trailing dots are punctuation). A fediverse handle (`@alice@host.social`)
//!   is one mention.
//! * **E-mail**: `local@domain.tld` (local part `[A-Za-z0-9._%+-]`, a domain
//!   of at least two labels ending in an alphabetic TLD).
//! * **Phones**: an optional `+`, then digit groups, at most one separator
//!   (space, `-`, `.`, no-break space) between groups, optional `(..)` area
//!   code; 7-15 digits in all. Numbers that read as something else are kept:
//!   dates (`2024-01-15`, `15.01.2024`), year ranges (`2019-2023`), thousands
//!   (`1 000 000`, `1.234.567`), IPv4 addresses, and digit runs without a
//!   separator, a `+` or parentheses.
//!
//! Where spans overlap, URL beats mention beats e-mail beats phone; nothing
//! that overlaps a hashtag (its `#` included) is replaced.

use super::extract::extract_spans;
use super::url::url_spans;

pub const MENTION: &str = "@user";
pub const EMAIL: &str = "<email>";
pub const PHONE: &str = "<phone>";
pub const URL: &str = "<url>";

/// Which kinds to replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedactKinds {
    pub mentions: bool,
    pub emails: bool,
    pub phones: bool,
    pub urls: bool,
}

impl Default for RedactKinds {
    fn default() -> Self {
        RedactKinds {
            mentions: true,
            emails: true,
            phones: true,
            urls: true,
        }
    }
}

/// Replacements made, per kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedactCounts {
    pub mentions: u64,
    pub emails: u64,
    pub phones: u64,
    pub urls: u64,
    /// Captions with at least one replacement.
    pub captions: u64,
}

impl RedactCounts {
    pub fn merge(&mut self, other: &RedactCounts) {
        self.mentions += other.mentions;
        self.emails += other.emails;
        self.phones += other.phones;
        self.urls += other.urls;
        self.captions += other.captions;
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Url,
    Mention,
    Email,
    Phone,
}

const COMMON_TLDS: &[&str] = &[
    "com", "net", "org", "edu", "gov", "int", "mil", "io", "co", "uk", "de", "fr", "es", "it",
    "nl", "ru", "jp", "cn", "br", "in", "au", "ca", "us", "me", "ly", "be", "ch", "at", "se", "no",
    "dk", "fi", "pl", "pt", "ie", "nz", "mx", "ar", "kr", "tw", "hk", "sg", "za", "info", "biz",
    "tv", "app", "dev", "xyz", "ai", "gl", "gg", "eu", "shop", "site", "online", "link",
];

fn is_space(text: &[u8], pos: usize) -> (bool, usize) {
    let b = text[pos];
    if b < 0x80 {
        return ((b as char).is_whitespace(), 1);
    }
    let (c, len) = bstr::decode_utf8(&text[pos..]);
    (c.is_some_and(char::is_whitespace), len.max(1))
}

/// Whitespace-delimited tokens, as byte ranges.
fn tokens(text: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let (space, len) = is_space(text, pos);
        if space {
            pos += len;
            continue;
        }
        let start = pos;
        while pos < text.len() {
            let (space, len) = is_space(text, pos);
            if space {
                break;
            }
            pos += len;
        }
        out.push((start, pos));
    }
    out
}

fn trim_trailing_punctuation(text: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && b".,;:!?)]}'\"".contains(&text[end - 1]) {
        end -= 1;
    }
    end
}

/// A host (`labels.tld`) at `text[pos..]`: its end, and whether its TLD is
/// a letters-only label of at least two characters.
fn host_end(text: &[u8], pos: usize) -> Option<(usize, &[u8])> {
    let mut end = pos;
    let mut labels = 0;
    let mut last_label = (pos, pos);
    loop {
        let label_start = end;
        while end < text.len() && (text[end].is_ascii_alphanumeric() || text[end] == b'-') {
            end += 1;
        }
        if end == label_start {
            break; // an empty label: the host ended at the dot before it
        }
        labels += 1;
        last_label = (label_start, end);
        if end < text.len() && text[end] == b'.' {
            end += 1;
        } else {
            break;
        }
    }
    let tld = &text[last_label.0..last_label.1];
    (labels >= 2 && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic))
        .then_some((last_label.1, tld))
}

fn blocks_url_start(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'@' | b'$' | b'#' | b'.' | b'-' | b'_')
}

fn url_ranges(text: &[u8]) -> Vec<(usize, usize)> {
    let mut found = url_spans(text);
    for (start, end) in tokens(text) {
        if found.iter().any(|&(s, e)| s < end && start < e) {
            continue;
        }
        // A `www.` or common-TLD host with no scheme and no slash.
        let mut pos = start;
        while pos < end {
            if text[pos].is_ascii_alphanumeric()
                && (pos == start || !blocks_url_start(text[pos - 1]))
            {
                if let Some((host_stop, tld)) = host_end(&text[..end], pos) {
                    let www =
                        text[pos..].len() >= 4 && text[pos..pos + 4].eq_ignore_ascii_case(b"www.");
                    let common = COMMON_TLDS
                        .iter()
                        .any(|t| t.as_bytes().eq_ignore_ascii_case(tld));
                    let next = text.get(host_stop).copied();
                    let ends_host = !matches!(next, Some(b'@')) && host_stop <= end;
                    if (www || common) && ends_host {
                        found.push((pos, end));
                        break;
                    }
                    pos = host_stop;
                    continue;
                }
            }
            pos += 1;
        }
    }
    found
        .into_iter()
        .map(|(s, e)| (s, trim_trailing_punctuation(text, s, e)))
        .filter(|(s, e)| s < e)
        .collect()
}

fn is_username_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

fn at_sign(text: &[u8], pos: usize) -> usize {
    match text[pos] {
        b'@' => 1,
        0xEF if text[pos..].starts_with("＠".as_bytes()) => 3,
        _ => 0,
    }
}

fn mention_boundary(text: &[u8], at: usize) -> bool {
    if at == 0 {
        return true;
    }
    let prev = text[at - 1];
    let blocked = prev.is_ascii_alphanumeric()
        || b"_!#$%&*@".contains(&prev)
        || text[..at].ends_with("＠".as_bytes());
    if !blocked {
        return true;
    }
    // `RT@user`, `RT:@user`
    let mut end = at;
    if text[end - 1] == b':' {
        end -= 1;
    }
    if end >= 2 && text[end - 2..end].eq_ignore_ascii_case(b"rt") {
        let before = end - 2;
        return before == 0 || {
            let b = text[before - 1];
            !(b.is_ascii_alphanumeric() || b"_+~.-".contains(&b))
        };
    }
    false
}

fn mention_ranges(text: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let sign = at_sign(text, pos);
        if sign == 0 {
            pos += 1;
            continue;
        }
        let at = pos;
        pos += sign;
        if !mention_boundary(text, at) {
            continue;
        }
        let mut end = pos;
        while end < text.len() && is_username_char(text[end]) && end - pos < 30 {
            end += 1;
        }
        while end > pos && text[end - 1] == b'.' {
            end -= 1;
        }
        if end == pos || text[end..].starts_with(b"://") {
            continue;
        }
        // A fediverse handle: `@alice@mastodon.social`.
        if end < text.len() && text[end] == b'@' {
            if let Some((host_stop, _)) = host_end(text, end + 1) {
                end = host_stop;
            }
        }
        out.push((at, end));
        pos = end;
    }
    out
}

fn is_local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._%+-".contains(&b)
}

fn email_ranges(text: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for at in memchr::memchr_iter(b'@', text) {
        let mut start = at;
        while start > 0 && is_local_char(text[start - 1]) {
            start -= 1;
        }
        while start < at && text[start] == b'.' {
            start += 1;
        }
        if start == at || out.last().is_some_and(|&(_, e)| e > start) {
            continue;
        }
        if let Some((end, _)) = host_end(text, at + 1) {
            out.push((start, end));
        }
    }
    out
}

fn phone_ranges(text: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let b = text[pos];
        let starts = b.is_ascii_digit() || b == b'+' || b == b'(';
        let prev_ok = pos == 0 || {
            let p = text[pos - 1];
            !(p.is_ascii_alphanumeric()
                || b"#@$_+.,/:-(&".contains(&p)
                || p >= 0x80 && is_currency(text, pos))
        };
        if !(starts && prev_ok) {
            pos += 1;
            continue;
        }
        match phone_at(text, pos) {
            Some(end) => {
                out.push((pos, end));
                pos = end;
            }
            None => {
                // Skip the rest of this run of digits.
                pos += 1;
                while pos < text.len() && text[pos].is_ascii_digit() {
                    pos += 1;
                }
            }
        }
    }
    out
}

fn is_currency(text: &[u8], pos: usize) -> bool {
    let (c, _) = bstr::decode_last_utf8(&text[..pos]);
    matches!(c, Some('€' | '£' | '¥' | '₹' | '₩'))
}

/// The end of a phone number starting at `start`, if one does.
fn phone_at(text: &[u8], start: usize) -> Option<usize> {
    let mut pos = start;
    let plus = text[pos] == b'+';
    if plus {
        pos += 1;
    }
    let mut groups: Vec<usize> = Vec::new();
    let mut separators: Vec<u8> = Vec::new();
    let mut parens = false;
    let mut end = pos;
    loop {
        let open = pos < text.len() && text[pos] == b'(';
        let digits_from = pos + usize::from(open);
        let mut p = digits_from;
        while p < text.len() && text[p].is_ascii_digit() {
            p += 1;
        }
        if p == digits_from {
            break;
        }
        if open {
            if p >= text.len() || text[p] != b')' {
                break;
            }
            parens = true;
            p += 1;
        }
        groups.push(p - digits_from - usize::from(open));
        end = p;
        pos = p;
        // One separator (or none after a closing parenthesis) before the next group.
        let (sep, len) = if pos < text.len() && b" -.".contains(&text[pos]) {
            (text[pos], 1)
        } else if text[pos..].starts_with("\u{a0}".as_bytes()) {
            (b' ', 2)
        } else {
            (0, 0)
        };
        let next = pos + len;
        let continues = next < text.len()
            && (text[next].is_ascii_digit() || text[next] == b'(')
            && (len > 0 || (open && text[next].is_ascii_digit()));
        if !continues {
            break;
        }
        if len > 0 {
            separators.push(sep);
        }
        pos = next;
    }
    if groups.is_empty() {
        return None;
    }
    if end < text.len() && (text[end].is_ascii_alphanumeric() || text[end] == b'_') {
        return None;
    }
    let digits: usize = groups.iter().sum();
    if !(7..=15).contains(&digits) || (plus && digits < 8) {
        return None;
    }
    if plus || parens {
        return Some(end);
    }
    if separators.is_empty() {
        return None;
    }
    let all = |s: u8| separators.iter().all(|&x| x == s);
    let dateish = matches!(
        groups.as_slice(),
        [4, 2, 2] | [2, 2, 4] | [1, 2, 4] | [2, 1, 4]
    ) || matches!(groups.as_slice(), [4, 4]) && all(b'-');
    let thousands = digits < 10
        && groups[0] <= 3
        && groups[1..].iter().all(|&g| g == 3)
        && separators.iter().all(|s| b". ,".contains(s));
    let ipv4 = groups.len() == 4 && all(b'.') && groups.iter().all(|&g| g <= 3);
    (!(dateish || thousands || ipv4)).then_some(end)
}

/// A `#word` glued to the end of a span is no hashtag (its hash sign follows
/// a letter or digit); it goes with the span, so the placeholder's last
/// character cannot turn it into one.
fn swallow_glued_hashes(text: &[u8], mut end: usize) -> usize {
    while end < text.len() {
        let sign = match text[end] {
            b'#' => 1,
            0xEF if text[end..].starts_with("＃".as_bytes()) => 3,
            _ => break,
        };
        end += sign;
        while end < text.len() {
            let (c, len) = bstr::decode_utf8(&text[end..]);
            match c {
                Some(c) if super::chars::is_hashtag_char(c) => end += len,
                _ => break,
            }
        }
    }
    end
}

/// The same before a span: `#word` glued to its start (`#éhttp://x`) was no
/// hashtag either, and would become one if the span were replaced alone.
fn swallow_glued_before(text: &[u8], mut start: usize) -> usize {
    loop {
        let mut pos = start;
        while pos > 0 {
            let (c, len) = bstr::decode_last_utf8(&text[..pos]);
            match c {
                Some(c) if super::chars::is_hashtag_char(c) => pos -= len,
                _ => break,
            }
        }
        let sign = if pos > 0 && text[pos - 1] == b'#' {
            1
        } else if text[..pos].ends_with("＃".as_bytes()) {
            3
        } else {
            0
        };
        if sign == 0 || pos == start {
            return start;
        }
        start = pos - sign;
    }
}

/// The spans to replace, sorted and disjoint.
fn spans(text: &[u8], kinds: RedactKinds) -> Vec<(usize, usize, Kind)> {
    let mut protected: Vec<(usize, usize)> = Vec::new();
    extract_spans(text, |s, e| {
        let sign = if s >= 3 && text[..s].ends_with("＃".as_bytes()) {
            3
        } else {
            1
        };
        protected.push((s - sign, e));
    });
    let mut chosen: Vec<(usize, usize, Kind)> = Vec::new();
    let take = |ranges: Vec<(usize, usize)>, kind: Kind, chosen: &mut Vec<(usize, usize, Kind)>| {
        for (s, e) in ranges {
            let (s, e) = (swallow_glued_before(text, s), swallow_glued_hashes(text, e));
            let overlaps = |&(a, b): &(usize, usize)| a < e && s < b;
            if protected.iter().any(overlaps) || chosen.iter().any(|&(a, b, _)| overlaps(&(a, b))) {
                continue;
            }
            chosen.push((s, e, kind));
        }
    };
    let has = |b: u8| memchr::memchr(b, text).is_some();
    if kinds.urls && (has(b'.') || has(b'/')) {
        take(url_ranges(text), Kind::Url, &mut chosen);
    }
    if kinds.mentions && (has(b'@') || has(0xEF)) {
        take(mention_ranges(text), Kind::Mention, &mut chosen);
    }
    if kinds.emails && has(b'@') {
        take(email_ranges(text), Kind::Email, &mut chosen);
    }
    if kinds.phones && text.iter().filter(|b| b.is_ascii_digit()).nth(6).is_some() {
        take(phone_ranges(text), Kind::Phone, &mut chosen);
    }
    chosen.sort_unstable_by_key(|&(s, _, _)| s);
    chosen
}

fn hashtag_texts(text: &[u8]) -> Vec<(usize, usize)> {
    // Compared by content: the spans' offsets move with the placeholders.
    let mut out = Vec::new();
    extract_spans(text, |s, e| out.push((s, e)));
    out.iter()
        .map(|&(s, e)| (e - s, hash64(&text[s..e])))
        .collect()
}

fn hash64(bytes: &[u8]) -> usize {
    xxhash_rust::xxh3::xxh3_64(bytes) as usize
}

fn apply(text: &[u8], found: &[(usize, usize, Kind)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut last = 0;
    for &(s, e, kind) in found {
        out.extend_from_slice(&text[last..s]);
        out.extend_from_slice(placeholder(kind).as_bytes());
        last = e;
    }
    out.extend_from_slice(&text[last..]);
    out
}

fn placeholder(kind: Kind) -> &'static str {
    match kind {
        Kind::Url => URL,
        Kind::Mention => MENTION,
        Kind::Email => EMAIL,
        Kind::Phone => PHONE,
    }
}

/// Appends `text` with its redactions to `out`; adds what it replaced to
/// `counts`. Returns whether anything was replaced.
pub fn redact_into(
    text: &[u8],
    kinds: RedactKinds,
    out: &mut Vec<u8>,
    counts: &mut RedactCounts,
) -> bool {
    let mut found = spans(text, kinds);
    if !found.is_empty() {
        // Hashtags must read the same after redaction: a span whose
        // placeholder would change them is left as it is (none is known).
        let before: Vec<(usize, usize)> = hashtag_texts(text);
        while !found.is_empty() && hashtag_texts(&apply(text, &found)) != before {
            found.pop();
        }
    }
    let mut last = 0;
    for &(s, e, kind) in &found {
        out.extend_from_slice(&text[last..s]);
        let (placeholder, count) = match kind {
            Kind::Url => (URL, &mut counts.urls),
            Kind::Mention => (MENTION, &mut counts.mentions),
            Kind::Email => (EMAIL, &mut counts.emails),
            Kind::Phone => (PHONE, &mut counts.phones),
        };
        out.extend_from_slice(placeholder.as_bytes());
        *count += 1;
        last = e;
    }
    out.extend_from_slice(&text[last..]);
    if !found.is_empty() {
        counts.captions += 1;
    }
    !found.is_empty()
}

/// `text` with mentions, e-mails, phones and URLs replaced (all kinds).
pub fn redact(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    redact_into(
        text.as_bytes(),
        RedactKinds::default(),
        &mut out,
        &mut RedactCounts::default(),
    );
    String::from_utf8(out).expect("placeholders are ASCII and spans fall on char boundaries")
}

/// Redacts many captions in parallel (chunks of 1,024 on the crate's pool):
/// the redacted strings (null stays null; invalid UTF-8 becomes U+FFFD) and
/// the counts per kind over all of them.
pub fn redact_many(
    texts: &[Option<&[u8]>],
    kinds: RedactKinds,
    num_threads: Option<usize>,
) -> (arrow_array::StringArray, RedactCounts) {
    use rayon::prelude::*;
    crate::pool::run_in_pool(num_threads, || {
        let parts: Vec<(Vec<Option<String>>, RedactCounts)> = texts
            .par_chunks(1024)
            .map(|chunk| {
                let mut counts = RedactCounts::default();
                let mut buffer = Vec::new();
                let rows = chunk
                    .iter()
                    .map(|text| {
                        text.map(|text| {
                            buffer.clear();
                            redact_into(text, kinds, &mut buffer, &mut counts);
                            String::from_utf8_lossy(&buffer).into_owned()
                        })
                    })
                    .collect();
                (rows, counts)
            })
            .collect();
        let mut builder = arrow_array::builder::StringBuilder::new();
        let mut total = RedactCounts::default();
        for (rows, counts) in parts {
            total.merge(&counts);
            for row in rows {
                builder.append_option(row);
            }
        }
        (builder.finish(), total)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashtags::extract;

    #[test]
    fn mentions() {
        assert_eq!(redact("thanks @alice_b!"), "thanks @user!");
        assert_eq!(redact("@bob first"), "@user first");
        assert_eq!(redact("with @john.doe."), "with @user.");
        assert_eq!(redact("RT@carol: wow"), "RT@user: wow");
        assert_eq!(redact("東京＠dave さん"), "東京@user さん");
        assert_eq!(redact("hi @alice@mastodon.social ok"), "hi @user ok");
        assert_eq!(redact("a@b no, x!@y no"), "a@b no, x!@y no");
    }

    #[test]
    fn emails() {
        assert_eq!(
            redact("mail jo.doe+tag@mail.example.co.uk."),
            "mail <email>."
        );
        assert_eq!(redact("mailto:bob@x.org"), "mailto:<email>");
        assert_eq!(redact("a@b is not one"), "a@b is not one");
    }

    #[test]
    fn phones() {
        for phone in [
            "+1 (555) 123-4567",
            "555-123-4567",
            "555.123.4567",
            "(555) 123 4567",
            "+44 20 7946 0958",
            "020 7946 0958",
            "06 12 34 56 78",
            "+49-30-1234567",
            "+33612345678",
            "555-1234",
        ] {
            assert_eq!(
                redact(&format!("call {phone} now")),
                "call <phone> now",
                "{phone}"
            );
        }
        for kept in [
            "2024-01-15",
            "15.01.2024",
            "2019-2023",
            "1 000 000",
            "1.234.567",
            "192.168.1.1",
            "1234567890",
            "$1,234,567",
            "12:30",
            "€1.234.567",
        ] {
            let text = format!("on {kept} ok");
            assert_eq!(redact(&text), text, "{kept}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(redact("see https://x.org/a?b=1."), "see <url>.");
        assert_eq!(redact("(http://x.org/#frag)"), "(<url>)");
        assert_eq!(redact("at www.example.net today"), "at <url> today");
        assert_eq!(redact("at example.com, then"), "at <url>, then");
        assert_eq!(redact("bit.ly/abc"), "<url>");
        assert_eq!(
            redact("e.g. node.js and i.e. fine"),
            "e.g. node.js and i.e. fine"
        );
    }

    #[test]
    fn hashtags_are_untouched() {
        let text = "#nature @alice #café https://x.org #2024 #a1 +1 555 123 4567 #tag@x.com";
        let redacted = redact(text);
        assert_eq!(extract(&redacted), extract(text));
        assert!(redacted.starts_with("#nature @user #café <url> #2024 #a1 <phone>"));
    }

    #[test]
    fn kinds_switch_off_and_counts_add_up() {
        let text = b"@a b@c.io +1 555 123 4567 http://x.org";
        let mut out = Vec::new();
        let mut counts = RedactCounts::default();
        let kinds = RedactKinds {
            phones: false,
            ..RedactKinds::default()
        };
        assert!(redact_into(text, kinds, &mut out, &mut counts));
        assert_eq!(out, b"@user <email> +1 555 123 4567 <url>");
        assert_eq!(
            (counts.mentions, counts.emails, counts.phones, counts.urls),
            (1, 1, 0, 1)
        );
        assert_eq!(counts.captions, 1);
    }

    #[test]
    fn invalid_utf8_passes_through() {
        let mut out = Vec::new();
        let mut counts = RedactCounts::default();
        redact_into(
            b"\xff@bob \xc3",
            RedactKinds::default(),
            &mut out,
            &mut counts,
        );
        assert_eq!(out, b"\xff@user \xc3");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_keeps_hashtags(text in "([#＠@a-z0-9 .:/+()\u{a0}-]|http://|\u{00e9}|漢){0,60}") {
            let redacted = redact(&text);
            proptest::prop_assert_eq!(extract(&redacted), extract(&text));
        }

        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120)) {
            let mut out = Vec::new();
            redact_into(&bytes, RedactKinds::default(), &mut out, &mut RedactCounts::default());
        }
    }
}
