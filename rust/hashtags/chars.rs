//! Character classes of twitter-text's hashtag grammar.

use unicode_general_category::{get_general_category, GeneralCategory as G};

/// Joiners and punctuation twitter-text allows inside a hashtag: underscore,
/// ZWNJ/ZWJ, Cyrillic kavyka, Hebrew maqaf/geresh/gershayim, wave dashes,
/// kana voicing marks, katakana double hyphen/middle dot, ditto mark, Tibetan
/// tsheg, middle dot.
const SPECIAL: [char; 17] = [
    '_', '\u{200c}', '\u{200d}', '\u{a67e}', '\u{05be}', '\u{05f3}', '\u{05f4}', '\u{ff5e}',
    '\u{301c}', '\u{309b}', '\u{309c}', '\u{30a0}', '\u{30fb}', '\u{3003}', '\u{0f0b}', '\u{0f0c}',
    '\u{00b7}',
];

/// Unicode letters (L*) and marks (M*): a hashtag needs at least one.
#[inline]
pub fn is_letter_or_mark(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    matches!(
        get_general_category(c),
        G::UppercaseLetter
            | G::LowercaseLetter
            | G::TitlecaseLetter
            | G::ModifierLetter
            | G::OtherLetter
            | G::NonspacingMark
            | G::SpacingMark
            | G::EnclosingMark
    )
}

/// Anything that may appear in a hashtag: letters, marks, decimal digits and
/// the special joiners.
#[inline]
pub fn is_hashtag_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    is_letter_or_mark(c) || get_general_category(c) == G::DecimalNumber || SPECIAL.contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert!(is_letter_or_mark('a') && is_letter_or_mark('ñ') && is_letter_or_mark('漢'));
        assert!(is_letter_or_mark('\u{0301}'), "combining acute is a mark");
        assert!(!is_letter_or_mark('1') && !is_letter_or_mark('_') && !is_letter_or_mark('〃'));
        assert!(is_hashtag_char('١') && is_hashtag_char('〃') && is_hashtag_char('\u{200d}'));
        assert!(
            !is_hashtag_char('.')
                && !is_hashtag_char('。')
                && !is_hashtag_char('#')
                && !is_hashtag_char(' ')
        );
    }
}
