"""A synthetic, deterministic Instagram-like caption corpus for the hashtag benchmarks.

::

    python benches/hashtag_corpus.py            # build (or load) and print a summary
    python benches/hashtag_corpus.py --force    # rebuild

The default corpus has 2,000,000 captions drawing on 20,000 distinct hashtag keys
with a Zipf distribution (exponent 1.0; a head of 40 real, very common tags). The
tags are 14,000 ASCII, 1,500 accented Latin, 1,500 Cyrillic, 1,500 CJK (Han,
kana with half-width variants, Hangul), 800 Arabic and 700 full-width (``＃ｔａｇ``)
keys; each appears in lower case, Capitalised or UPPER CASE (85/10/5 %). A caption
holds 0-15 hashtags (a quarter have none), ordinary words (Zipf over 5,000, some
non-Latin), emoji (some glued to the next token), @mentions and URLs, some
with ``#fragments``; about 0.5 % of captions are null.

The corpus is built to be *peer-clean*: every hashtag in it is extracted the same
way by twitter-text's rules and by the simplified regex ``(?:^|(?<=[^\\w&]))[#＃]
(\\w*[^\\W\\d_]\\w*)`` and its RE2/Rust-regex cousins, and ``lower(NFKC(tag))``
equals fastprep's ``casefold(NFKC(tag))`` for every tag. Hence: no hashtag glued
to a word or another hashtag, no ``&#``, URL fragments only right after a word
character (``/post123#comments``, which no rule reads as a hashtag), no combining
marks in tags (Python's ``\\w`` stops at them), no variation selector right before
a ``#`` (RE2 and Rust count marks as word characters), no ``ß``. The simplified
rules are therefore exact here, and the benchmark can check that all
implementations agree. Real captions break these assumptions; fastprep handles them.

Built with NumPy (seeded) and Arrow kernels, with no per-caption Python: about 10 s
for 2M captions. Cached as ``hashtags-v{VERSION}-n{N}-s{SEED}.parquet`` under
``$FASTPREP_BENCH_CORPUS`` (default ``benches/.corpus``, ignored by git).
"""

from __future__ import annotations

import argparse
import os
import re
import time
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

VERSION = 1
DEFAULT_CAPTIONS = 2_000_000
DEFAULT_SEED = 2018
DEFAULT_ROOT = Path(__file__).resolve().parent / ".corpus"

#: Distinct hashtag keys per script (20,000 in all).
TAG_MIX = {
    "ascii": 14_000,
    "latin": 1_500,
    "cyrillic": 1_500,
    "cjk": 1_500,
    "arabic": 800,
    "fullwidth": 700,
}
TAG_ZIPF = 1.0
WORD_ZIPF = 1.1
#: Share of the lower / Capitalised / UPPER variants of a tag.
VARIANT_P = (0.85, 0.10, 0.05)

#: The simplified rule the regex peers use (Python ``re`` flavour).
PEER_REGEX = r"(?:^|(?<=[^\w&]))[#＃](\w*[^\W\d_]\w*)"

HEAD_TAGS = (
    "love instagood photooftheday fashion beautiful happy cute tbt like4like followme "
    "picoftheday follow me selfie summer art instadaily friends repost nature girl fun "
    "style smile food instalike family travel fitness igers tagsforlikes nofilter life "
    "beauty amazing instagram photography photo vscocam sun music"
).split()

COMMON_WORDS = (
    "the a and to of in my with for this is so on it at be you all we our day just "
    "what love so much time today best new life good happy last night weekend more "
    "can't wait thank thanks everyone who came out here there with friends family "
    "little big one two first never ever always again back home work morning sunday "
    "monday beautiful sunset beach coffee dinner lunch breakfast party trip city look "
    "like feel feeling great amazing fun birthday year old throwback when your from "
    "about get got make made see saw go going went miss missing cute baby dog cat"
).split()
EMOJI = ["😍", "🔥", "✨", "📷", "🙌", "🌸", "💕", "😂", "🎉", "🌊", "❤️", "☀️"]
#: Emoji that may be glued to the next token: none ends with a variation selector.
GLUE_EMOJI = ["😍", "🔥", "✨", "📷", "🙌", "🌸", "💕", "🎉"]
#: Separators after a token (the last token of a caption has none).
SEPARATORS = [" ", "\n", ", ", ". ", "! ", " - ", ""]

_CONSONANTS = [*"bcdfghjklmnprstvwyz", "ch", "sh", "th", "st", "br", "tr", "gr", "pl"]
_VOWELS = [*"aeiou", "ai", "ee", "oo", "ou", "y"]
_ACCENTED = dict(zip("aeiounc", ["áàâäã", "éèêë", "íîï", "óôöõ", "úüû", "ñ", "ç"]))
_CYR_CONS = list("бвгджзклмнпрстфхцчшщ")
_CYR_VOW = list("аеёиоуыэюя")
_ARABIC = [chr(c) for c in range(0x0627, 0x063B)] + [chr(c) for c in range(0x0641, 0x064B)]
_HIRA = [chr(c) for c in range(0x3041, 0x3097)]
_KATA = [chr(c) for c in range(0x30A1, 0x30FB)]
#: Hangul syllables, and a few hundred common-ish Han characters.
_HANGUL = [chr(c) for c in range(0xAC00, 0xD7A4, 7)]
_HAN = [chr(c) for c in range(0x4E00, 0x9FA6, 37)]


def corpus_root() -> Path:
    return Path(os.environ.get("FASTPREP_BENCH_CORPUS", DEFAULT_ROOT))


#: Caption shapes: how many tokens of each kind a caption draws. ``long`` is
#: the 2M synthetic corpus as first built (137 B and 4.3 hashtags a caption on
#: average, a quarter with none); ``short`` follows the demo corpus
#: (``fastprep/sample_data/corpus``: 73 B and 3.6 hashtags on average, nearly
#: every caption tagged).
PROFILES = {
    "long": {
        "no_words": 0.15,
        "words": 7.0,
        "mentions": (0.12, 0.03),
        "emoji": 0.8,
        "urls": 0.06,
        "no_tags": 0.25,
        "tags": ("geometric", 0.15),
    },
    "short": {
        "no_words": 0.05,
        "words": 6.3,
        "mentions": (0.03, 0.0),
        "emoji": 0.4,
        "urls": 0.01,
        "no_tags": 0.06,
        "tags": ("poisson", 3.7),
    },
}
DEFAULT_PROFILE = "long"


def corpus_path(
    n_captions: int = DEFAULT_CAPTIONS, seed: int = DEFAULT_SEED, profile: str = DEFAULT_PROFILE
) -> Path:
    suffix = "" if profile == DEFAULT_PROFILE else f"-{profile}"
    return corpus_root() / f"hashtags-v{VERSION}-n{n_captions}-s{seed}{suffix}.parquet"


def key(tag: str) -> str:
    """fastprep's key, ``casefold(NFKC(tag))``."""
    return unicodedata.normalize("NFKC", tag).casefold()


def peer_key(tag: str) -> str:
    """The regex peers' key, ``lower(NFKC(tag))`` (what pyarrow and polars offer)."""
    return unicodedata.normalize("NFKC", tag).lower()


# --------------------------------------------------------------------------------------
# Vocabularies (tens of thousands of strings: plain Python is fine here)
# --------------------------------------------------------------------------------------


def _syllable_word(rng: np.random.Generator, lo: int = 1, hi: int = 4) -> str:
    n = int(rng.integers(lo, hi + 1))
    parts = []
    for _ in range(n):
        parts.append(_CONSONANTS[rng.integers(len(_CONSONANTS))])
        parts.append(_VOWELS[rng.integers(len(_VOWELS))])
        if rng.random() < 0.3:
            parts.append(_CONSONANTS[rng.integers(len(_CONSONANTS))][0])
    return "".join(parts)


def _ascii_tag(rng: np.random.Generator) -> str:
    word = _syllable_word(rng)
    r = rng.random()
    if r < 0.15:
        word += str(int(rng.choice([1, 2, 4, 7, 10, 365, 2019, 2023, 2024, 2025])))
    elif r < 0.25:
        word += "_" + _syllable_word(rng, 1, 2)
    elif r < 0.40:
        word += str(rng.choice(["life", "gram", "daily", "love", "style", "lover", "vibes"]))
    elif r < 0.45:
        word = str(int(rng.integers(1, 100))) + word
    return word


def _latin_tag(rng: np.random.Generator) -> str:
    chars = list(_syllable_word(rng, 2, 4))
    spots = [i for i, c in enumerate(chars) if c in _ACCENTED]
    if not spots:
        chars.append("e")
        spots = [len(chars) - 1]
    for i in rng.choice(spots, size=min(len(spots), int(rng.integers(1, 3))), replace=False):
        options = _ACCENTED[chars[i]]
        chars[i] = options[rng.integers(len(options))]
    return "".join(chars)


def _cyrillic_tag(rng: np.random.Generator) -> str:
    n = int(rng.integers(2, 5))
    return "".join(
        _CYR_CONS[rng.integers(len(_CYR_CONS))] + _CYR_VOW[rng.integers(len(_CYR_VOW))]
        for _ in range(n)
    )


def _cjk_tag(rng: np.random.Generator) -> str:
    r = rng.random()
    if r < 0.4:
        return "".join(_HAN[i] for i in rng.integers(len(_HAN), size=int(rng.integers(2, 5))))
    if r < 0.6:
        return "".join(_HIRA[i] for i in rng.integers(len(_HIRA), size=int(rng.integers(2, 6))))
    if r < 0.8:
        word = "".join(_KATA[i] for i in rng.integers(len(_KATA), size=int(rng.integers(2, 5))))
        return word + ("ー" if rng.random() < 0.3 else "")
    return "".join(_HANGUL[i] for i in rng.integers(len(_HANGUL), size=int(rng.integers(2, 4))))


def _arabic_tag(rng: np.random.Generator) -> str:
    return "".join(_ARABIC[i] for i in rng.integers(len(_ARABIC), size=int(rng.integers(3, 8))))


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _variants(tag: str, script: str) -> list[str]:
    """lower / Capitalised / UPPER spellings, with their hash sign."""
    if script == "fullwidth":
        return ["＃" + _fullwidth(v) for v in (tag, tag.capitalize(), tag.upper())]
    if script == "cjk":
        # No case; katakana tags get a half-width spelling (NFKC maps it back).
        return ["#" + tag, "#" + tag, "#" + (_to_halfwidth_katakana(tag) or tag)]
    return ["#" + v for v in (tag, tag.capitalize(), tag.upper())]


_HALFWIDTH = {
    unicodedata.normalize("NFKC", chr(c)): chr(c)
    for c in range(0xFF66, 0xFF9E)
    if len(unicodedata.normalize("NFKC", chr(c))) == 1
}


def _to_halfwidth_katakana(tag: str) -> str | None:
    if not all(c in _HALFWIDTH for c in tag):
        return None
    return "".join(_HALFWIDTH[c] for c in tag)


_PEER = re.compile(PEER_REGEX)


def _peer_clean(token: str) -> bool:
    """The simplified regex reads the whole token as one tag, with the same key."""
    found = _PEER.findall(token)
    return found == [token[1:]] and key(token[1:]) == peer_key(token[1:])


def tag_vocabulary(seed: int = DEFAULT_SEED) -> tuple[list[str], list[list[str]]]:
    """Tags in Zipf rank order (rank 0 most frequent) and their spelled variants."""
    rng = np.random.default_rng([seed, 1])
    makers = {
        "ascii": _ascii_tag,
        "latin": _latin_tag,
        "cyrillic": _cyrillic_tag,
        "cjk": _cjk_tag,
        "arabic": _arabic_tag,
        "fullwidth": _ascii_tag,
    }
    seen_keys: set[str] = set()
    by_script: dict[str, list[tuple[str, list[str]]]] = {}
    for script in ["ascii", "fullwidth", "latin", "cyrillic", "cjk", "arabic"]:
        rows: list[tuple[str, list[str]]] = []
        if script == "ascii":
            for tag in HEAD_TAGS:
                rows.append((tag, _variants(tag, script)))
                seen_keys.add(key(tag))
        while len(rows) < TAG_MIX[script]:
            tag = makers[script](rng)
            k = key(tag)
            if k in seen_keys or len(tag) < 3:
                continue
            if script == "fullwidth" and "_" in tag:
                continue  # "＿" (Pc) ends a hashtag; Rust regex's \w would keep it
            variants = _variants(tag, script)
            if not all(_peer_clean(v) and key(v[1:]) == k for v in variants):
                continue
            seen_keys.add(k)
            rows.append((tag, variants))
        by_script[script] = rows
    head = by_script["ascii"][: len(HEAD_TAGS)]
    rest = by_script["ascii"][len(HEAD_TAGS) :] + [
        row
        for script in ["latin", "cyrillic", "cjk", "arabic", "fullwidth"]
        for row in by_script[script]
    ]
    order = rng.permutation(len(rest))
    ranked = head + [rest[i] for i in order]
    return [tag for tag, _ in ranked], [variants for _, variants in ranked]


def word_vocabulary(seed: int = DEFAULT_SEED, n: int = 5_000) -> list[str]:
    rng = np.random.default_rng([seed, 2])
    words = list(dict.fromkeys(COMMON_WORDS))
    seen = set(words)
    while len(words) < n:
        r = rng.random()
        if r < 0.8:
            word = _syllable_word(rng, 1, 3)
        elif r < 0.88:
            word = _latin_tag(rng)
        elif r < 0.94:
            word = _cyrillic_tag(rng)
        else:
            word = _cjk_tag(rng)
        if rng.random() < 0.1:
            word = word.capitalize()
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def mention_vocabulary(seed: int = DEFAULT_SEED, n: int = 2_000) -> list[str]:
    rng = np.random.default_rng([seed, 3])
    out = set()
    while len(out) < n:
        name = _syllable_word(rng, 1, 3)
        if rng.random() < 0.4:
            name += "_" + _syllable_word(rng, 1, 2)
        if rng.random() < 0.3:
            name += str(int(rng.integers(1, 1000)))
        out.add("@" + name)
    return sorted(out)


def url_vocabulary(seed: int = DEFAULT_SEED, n: int = 3_000) -> list[str]:
    """URLs; a third carry a fragment, always right after a word character
    (``/p/abc123#comments``) or as a single-page-app route (``/#/feed``)."""
    rng = np.random.default_rng([seed, 4])
    out = set()
    tlds = ["com", "org", "net", "io", "co", "de", "fr", "ru", "jp", "app"]
    frags = ["comments", "top", "section2", "gallery", "reviews", "menu", "shop"]
    while len(out) < n:
        domain = _syllable_word(rng, 1, 3) + "." + tlds[rng.integers(len(tlds))]
        if rng.random() < 0.3:
            domain = "www." + domain
        path = "/".join(_syllable_word(rng, 1, 2) for _ in range(int(rng.integers(0, 3))))
        path += str(int(rng.integers(1, 99999))) if rng.random() < 0.5 else ""
        r = rng.random()
        if r < 0.2:
            url = f"https://{domain}/{path}#{frags[rng.integers(len(frags))]}"
            if path == "":
                continue
        elif r < 0.27:
            url = f"https://{domain}/#/{_syllable_word(rng, 1, 2)}"
        elif r < 0.35:
            url = f"https://{domain}/{path}?utm_source=ig&id={int(rng.integers(1, 10**6))}#top"
        elif r < 0.5:
            url = f"bit.ly/{_syllable_word(rng, 1, 2)}{int(rng.integers(100, 9999))}"
        else:
            url = f"{'https' if rng.random() < 0.8 else 'http'}://{domain}/{path}"
        out.add(url)
    return sorted(out)


# --------------------------------------------------------------------------------------
# Captions (vectorised)
# --------------------------------------------------------------------------------------


def _zipf_sample(rng: np.random.Generator, n_items: int, exponent: float, size: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, n_items + 1, dtype=np.float64) ** exponent
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), n_items - 1)


def build_captions(
    n_captions: int = DEFAULT_CAPTIONS, seed: int = DEFAULT_SEED, profile: str = DEFAULT_PROFILE
) -> pa.StringArray:
    """The corpus as one ``pa.StringArray`` (int32 offsets)."""
    shape = PROFILES[profile]
    tags, variants = tag_vocabulary(seed)
    words = word_vocabulary(seed)
    mentions = mention_vocabulary(seed)
    urls = url_vocabulary(seed)
    rng = np.random.default_rng([seed, 5])

    # Token table: words | mentions | emoji | urls | tag variants (3 per tag) | separators.
    pieces = words + mentions + EMOJI + urls + [v for vs in variants for v in vs] + SEPARATORS
    base = np.cumsum([0, len(words), len(mentions), len(EMOJI), len(urls), 3 * len(tags)])
    sep_base = base[-1]

    # How many tokens of each type each caption gets, in this order.
    n = n_captions
    counts = np.zeros((n, 5), dtype=np.int64)
    counts[:, 0] = np.where(rng.random(n) < shape["no_words"], 0, rng.poisson(shape["words"], n))
    one, two = shape["mentions"]
    counts[:, 1] = (rng.random(n) < one).astype(np.int64) + (rng.random(n) < two)  # @mentions
    counts[:, 2] = rng.poisson(shape["emoji"], n)
    counts[:, 3] = (rng.random(n) < shape["urls"]).astype(np.int64)
    law, parameter = shape["tags"]
    drawn = rng.geometric(parameter, n) if law == "geometric" else 1 + rng.poisson(parameter - 1, n)
    n_tags = np.minimum(drawn, 15)
    counts[:, 4] = np.where(rng.random(n) < shape["no_tags"], 0, n_tags)  # hashtags, 0-15
    per_caption = counts.sum(axis=1)
    types = np.repeat(np.tile(np.arange(5, dtype=np.int8), n), counts.ravel())
    slots = len(types)

    token = np.empty(slots, dtype=np.int64)
    for t, (size, exponent) in enumerate(
        [(len(words), WORD_ZIPF), (len(mentions), 1.0), (len(EMOJI), 0.8), (len(urls), 0.5)]
    ):
        mask = types == t
        token[mask] = base[t] + _zipf_sample(rng, size, exponent, int(mask.sum()))
    mask = types == 4
    rank = _zipf_sample(rng, len(tags), TAG_ZIPF, int(mask.sum()))
    variant = np.searchsorted(np.cumsum(VARIANT_P), rng.random(rank.size), side="right")
    token[mask] = base[4] + 3 * rank + np.minimum(variant, 2)

    # Separators: tags and words never glued to what follows; some emoji are.
    sep_p = {
        0: [0.88, 0.03, 0.04, 0.03, 0.02, 0.0, 0.0],
        1: [0.9, 0.05, 0.05, 0.0, 0.0, 0.0, 0.0],
        2: [0.5, 0.1, 0.0, 0.0, 0.0, 0.0, 0.4],
        3: [0.85, 0.15, 0.0, 0.0, 0.0, 0.0, 0.0],
        4: [0.80, 0.1, 0.04, 0.02, 0.02, 0.02, 0.0],
    }
    sep = np.empty(slots, dtype=np.int64)
    for t, p in sep_p.items():
        m = types == t
        sep[m] = np.searchsorted(np.cumsum(p), rng.random(int(m.sum())) * 0.999999, side="right")
    # Only emoji without a variation selector may be glued to the next token.
    glue_ok = np.isin(token, base[2] + np.array([EMOJI.index(e) for e in GLUE_EMOJI]))
    sep[(sep == len(SEPARATORS) - 1) & ~glue_ok] = 0
    ends = np.cumsum(per_caption) - 1
    sep[ends[per_caption > 0]] = len(SEPARATORS) - 1  # nothing after the last token

    piece_ids = np.empty(2 * slots, dtype=np.int64)
    piece_ids[0::2] = token
    piece_ids[1::2] = sep_base + sep
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(2 * per_caption, out=offsets[1:])
    table = pa.array(pieces, pa.string())
    lists = pa.ListArray.from_arrays(pa.array(offsets), table.take(pa.array(piece_ids)))
    captions = pc.binary_join(lists, "")
    null = rng.random(n) < 0.005
    captions = pc.if_else(pa.array(null), pa.scalar(None, pa.string()), captions)
    return captions.combine_chunks() if isinstance(captions, pa.ChunkedArray) else captions


def load_captions(
    n_captions: int = DEFAULT_CAPTIONS,
    seed: int = DEFAULT_SEED,
    force: bool = False,
    profile: str = DEFAULT_PROFILE,
) -> pa.StringArray:
    """The cached corpus (built on first use)."""
    path = corpus_path(n_captions, seed, profile)
    if path.exists() and not force:
        column = pq.read_table(path, columns=["caption"]).column("caption")
        return column.combine_chunks()
    captions = build_captions(n_captions, seed, profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.table({"caption": captions}), tmp, compression="zstd")
    os.replace(tmp, path)
    return captions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--captions", type=int, default=DEFAULT_CAPTIONS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument("--profile", choices=sorted(PROFILES), default=DEFAULT_PROFILE)
    args = parser.parse_args()
    start = time.perf_counter()
    captions = load_captions(args.captions, args.seed, force=args.force, profile=args.profile)
    elapsed = time.perf_counter() - start
    valid = captions.drop_null()
    tags = (
        pc.count_substring(valid, "#").to_numpy().sum()
        + pc.count_substring(valid, "＃").to_numpy().sum()
    )
    print(
        f"{corpus_path(args.captions, args.seed, args.profile)}: {len(captions):,} captions, "
        f"{captions.nbytes / 1e6:.0f} MB, {captions.null_count:,} null, {elapsed:.1f} s; "
        f"mean {pc.mean(pc.binary_length(valid)).as_py():.1f} B and "
        f"{tags / len(valid):.2f} '#' a caption"
    )
    for text in captions.slice(0, 8).to_pylist():
        print("  ", repr(text)[:160])


if __name__ == "__main__":
    main()
