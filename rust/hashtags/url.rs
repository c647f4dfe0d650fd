//! Where URLs are, so hashtags inside them can be dropped: twitter-text drops
//! hashtags that overlap a URL entity (`twitter.com/#tag`, `http://x.org/#f`).
//!
//! Full URL extraction needs the TLD list; this covers what matters for
//! hashtags. In each whitespace-delimited token (Unicode whitespace, as
//! JavaScript's `\s`), a URL starts at a scheme (`letters://`) or at a
//! `domain.tld/` prefix, provided it is not itself preceded by a letter,
//! digit, `@`, `$` or `#` (twitter-text's rule for where a URL may start),
//! and runs to the end of the token. (twitter-text also ends URLs at some
//! trailing punctuation; here `(http://x.org)#tag` counts as inside.)
//! One linear pass per caption, and only for captions that contain `/`.

fn blocks_url_start(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'@' | b'$' | b'#')
}

/// Byte ranges of the URLs in `text`, in order.
pub fn url_spans(text: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    if memchr::memchr(b'/', text).is_none() {
        return spans;
    }
    let mut pos = 0;
    while pos < text.len() {
        // Skip whitespace, then take the token up to the next whitespace.
        let (start, end) = match next_token(text, pos) {
            Some(t) => t,
            None => break,
        };
        if let Some(url_start) = url_start(&text[start..end]) {
            spans.push((start + url_start, end));
        }
        pos = end;
    }
    spans
}

/// The next token at or after `pos`: (start, end) byte offsets.
fn next_token(text: &[u8], mut pos: usize) -> Option<(usize, usize)> {
    let is_space_at = |p: usize| -> (bool, usize) {
        let b = text[p];
        if b < 0x80 {
            return ((b as char).is_whitespace(), 1);
        }
        let (c, len) = bstr::decode_utf8(&text[p..]);
        (c.is_some_and(char::is_whitespace), len.max(1))
    };
    while pos < text.len() {
        let (space, len) = is_space_at(pos);
        if !space {
            break;
        }
        pos += len;
    }
    if pos >= text.len() {
        return None;
    }
    let start = pos;
    while pos < text.len() {
        let (space, len) = is_space_at(pos);
        if space {
            break;
        }
        pos += len;
    }
    Some((start, pos))
}

/// Offset in `token` where a URL begins, if it holds one.
fn url_start(token: &[u8]) -> Option<usize> {
    let first_slash = memchr::memchr(b'/', token)?;
    // `scheme://`: the first one whose scheme may start a URL.
    let mut from = 0;
    while let Some(i) = memchr::memmem::find(&token[from..], b"://") {
        let colon = from + i;
        let scheme_start = token[..colon]
            .iter()
            .rposition(|b| !b.is_ascii_alphabetic())
            .map_or(0, |p| p + 1);
        if scheme_start < colon && (scheme_start == 0 || !blocks_url_start(token[scheme_start - 1]))
        {
            return Some(scheme_start);
        }
        from = colon + 3;
    }
    // `domain.tld/` with no scheme, before the first slash.
    let host_start = token[..first_slash]
        .iter()
        .rposition(|&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
        .map_or(0, |p| p + 1);
    if host_start > 0 && blocks_url_start(token[host_start - 1]) {
        return None;
    }
    let host = &token[host_start..first_slash];
    let mut labels = host.split(|&b| b == b'.');
    let count = host.split(|&b| b == b'.').count();
    let tld_ok = host
        .rsplit(|&b| b == b'.')
        .next()
        .is_some_and(|tld| tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic));
    (count >= 2 && labels.all(|l| !l.is_empty()) && tld_ok).then_some(host_start)
}

/// Answers "is byte `at` inside a URL?" for increasing `at`, in amortised
/// constant time.
pub struct UrlCursor {
    spans: Vec<(usize, usize)>,
    next: usize,
}

impl UrlCursor {
    pub fn new(text: &[u8]) -> UrlCursor {
        UrlCursor {
            spans: url_spans(text),
            next: 0,
        }
    }

    pub fn contains(&mut self, at: usize) -> bool {
        while self.next < self.spans.len() && self.spans[self.next].1 <= at {
            self.next += 1;
        }
        self.spans
            .get(self.next)
            .is_some_and(|&(s, e)| s <= at && at < e)
    }
}

/// Whether byte `at` of `text` lies inside a URL (one-off form).
#[cfg(test)]
pub fn inside_url(text: &[u8], at: usize) -> bool {
    UrlCursor::new(text).contains(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> bool {
        inside_url(text.as_bytes(), text.rfind('#').unwrap())
    }

    #[test]
    fn urls() {
        assert!(check("http://twitter.com/#hashtag"));
        assert!(check("see twitter.com/#hashtag"));
        assert!(check("(https://a.b/c?d=1#frag"));
        assert!(!check("a/b #tag"));
        assert!(!check("and/or#tag"));
        assert!(!check("#paris.today/#tag"));
        assert!(!check("1/2#tag"));
        assert!(
            !check("http://x.com\u{3000}#tag"),
            "ideographic space ends the URL"
        );
        assert!(
            !check("http://x.com\u{0b}#tag"),
            "vertical tab ends the URL"
        );
    }

    #[test]
    fn cursor_walks_spans_in_order() {
        let text = b"a http://x.org/#f b twitter.com/#g c";
        let mut cursor = UrlCursor::new(text);
        assert!(!cursor.contains(0));
        assert!(cursor.contains(15));
        assert!(!cursor.contains(18));
        assert!(cursor.contains(32));
        assert!(!cursor.contains(35));
    }
}
