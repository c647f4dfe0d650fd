//! Is a hash sign part of a URL? twitter-text drops hashtags that overlap a
//! URL entity (`twitter.com/#tag`, `http://x.org/#frag`). Full URL extraction
//! needs the TLD list; this check covers what matters for hashtags: the
//! whitespace-delimited token before the sign holds a scheme (`letters://`)
//! or a `domain.tld/` prefix, not itself preceded by a letter, digit, `@`,
//! `$` or `#` (twitter-text's rule for where a URL may start).

fn blocks_url_start(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'@' | b'$' | b'#')
}

/// Whether the hash sign at byte `at` lies inside a URL.
pub fn inside_url(text: &[u8], at: usize) -> bool {
    let token_start = text[..at]
        .iter()
        .rposition(|b| b.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    let token = &text[token_start..at];
    if !token.contains(&b'/') {
        return false; // cheap exit for almost every hashtag
    }
    // `scheme://` anywhere in the token.
    let mut from = 0;
    while let Some(i) = memchr::memmem::find(&token[from..], b"://") {
        let colon = from + i;
        let scheme_start = token[..colon]
            .iter()
            .rposition(|b| !b.is_ascii_alphabetic())
            .map_or(0, |p| p + 1);
        if scheme_start < colon && (scheme_start == 0 || !blocks_url_start(token[scheme_start - 1]))
        {
            return true;
        }
        from = colon + 3;
    }
    // `domain.tld/` with no scheme.
    let slash = token.iter().position(|&b| b == b'/').unwrap_or(token.len());
    let host_start = token[..slash]
        .iter()
        .rposition(|&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
        .map_or(0, |p| p + 1);
    if host_start > 0 && blocks_url_start(token[host_start - 1]) {
        return false;
    }
    let host = &token[host_start..slash];
    let labels: Vec<&[u8]> = host.split(|&b| b == b'.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty())
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic))
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
    }
}
