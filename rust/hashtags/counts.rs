//! Mergeable hashtag counts: occurrences and distinct captions per key.
//!
//! Memory is one entry per distinct key, whatever the number of captions, and
//! partial counts from threads, batches or machines merge by addition.

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use rayon::prelude::*;
use std::hash::BuildHasher;

use super::extract::extract_spans;
use super::normalize::{normalize_tag, Normalizer};
use crate::error::CoreError;

/// Counts for one key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TagCount {
    /// Times the tag appears (a caption repeating a tag counts each time).
    pub occurrences: u64,
    /// Captions (images) it appears in.
    pub images: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    count: TagCount,
    /// The last caption that counted towards `images` (dedupes repeats
    /// within a caption without a per-caption set).
    last_caption: u64,
}

impl Entry {
    const NEW: Entry = Entry {
        count: TagCount {
            occurrences: 0,
            images: 0,
        },
        last_caption: u64::MAX,
    };
}

/// Slot of each raw spelling seen by one counting thread: normalising
/// (NFKC, case folding, synonyms) then runs once per distinct spelling,
/// not once per occurrence. `u32::MAX` marks stop-listed spellings.
///
/// Looking spellings up is most of counting's time, and it is bound by
/// memory latency: a spelling of up to [`INLINE`] bytes (nearly all) is
/// stored inside its 32-byte table entry, so a lookup reads one cache line
/// and compares fixed-size arrays, where a `HashMap<Box<[u8]>, _>` reads the
/// entry, then the boxed key elsewhere, through a `memcmp` call.
#[derive(Default)]
pub struct SpellingCache {
    short: HashTable<Spelling>,
    long: HashMap<Box<[u8]>, u32>,
    hasher: DefaultHashBuilder,
}

/// Longest spelling kept inline.
const INLINE: usize = 27;

#[derive(Clone, Copy)]
struct Spelling {
    /// The spelling's bytes, zero-padded.
    bytes: [u8; INLINE],
    len: u8,
    slot: u32,
}

impl SpellingCache {
    pub fn new() -> SpellingCache {
        SpellingCache::default()
    }

    /// The slot of `raw`, from `make` the first time it is seen.
    #[inline]
    fn slot_of(&mut self, raw: &[u8], make: impl FnOnce() -> u32) -> u32 {
        if raw.len() > INLINE {
            if let Some(&slot) = self.long.get(raw) {
                return slot;
            }
            let slot = make();
            self.long.insert(raw.into(), slot);
            return slot;
        }
        let mut bytes = [0u8; INLINE];
        bytes[..raw.len()].copy_from_slice(raw);
        let len = raw.len() as u8;
        let hash = self.hasher.hash_one(raw);
        let found = self
            .short
            .find(hash, |s| s.len == len && s.bytes == bytes)
            .map(|s| s.slot);
        if let Some(slot) = found {
            return slot;
        }
        let slot = make();
        let hasher = &self.hasher;
        self.short
            .insert_unique(hash, Spelling { bytes, len, slot }, |s| {
                hasher.hash_one(&s.bytes[..usize::from(s.len)])
            });
        slot
    }
}

const STOPPED: u32 = u32::MAX;

#[derive(Clone, Debug, Default)]
pub struct TagCounts {
    /// Keys by slot; `index` finds a key's slot.
    keys: Vec<String>,
    entries: Vec<Entry>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Captions seen (null ones included).
    pub captions: u64,
    /// Captions with at least one counted tag.
    pub captions_with_tags: u64,
    /// Captions that were null.
    pub null_captions: u64,
    /// Captions that were not valid UTF-8 (scanned leniently anyway).
    pub invalid_utf8: u64,
}

impl TagCounts {
    pub fn new() -> TagCounts {
        TagCounts::default()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn find(&self, key: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |&slot| self.keys[slot as usize] == key)
            .copied()
    }

    /// The slot of `key`, created empty if new.
    fn slot(&mut self, key: &str) -> u32 {
        let hash = self.hasher.hash_one(key);
        if let Some(&slot) = self
            .index
            .find(hash, |&slot| self.keys[slot as usize] == key)
        {
            return slot;
        }
        let slot = self.keys.len() as u32;
        self.keys.push(key.to_string());
        self.entries.push(Entry::NEW);
        let (keys, hasher) = (&self.keys, &self.hasher);
        self.index
            .insert_unique(hash, slot, |&s| hasher.hash_one(keys[s as usize].as_str()));
        slot
    }

    pub fn get(&self, key: &str) -> Option<TagCount> {
        self.find(key).map(|slot| self.entries[slot as usize].count)
    }

    pub fn total_occurrences(&self) -> u64 {
        self.entries.iter().map(|e| e.count.occurrences).sum()
    }

    /// Counts one caption; `caption_id` must be unique within this counter.
    /// `valid_utf8`: the caller knows the text is UTF-8 (an Arrow string
    /// column), so it is not checked again.
    pub fn add_caption(
        &mut self,
        text: Option<&[u8]>,
        caption_id: u64,
        normalizer: &Normalizer,
        cache: &mut SpellingCache,
        scratch: &mut String,
        valid_utf8: bool,
    ) {
        self.captions += 1;
        let Some(text) = text else {
            self.null_captions += 1;
            return;
        };
        if !valid_utf8 && !text.is_ascii() && std::str::from_utf8(text).is_err() {
            self.invalid_utf8 += 1;
        }
        let mut counted = false;
        extract_spans(text, |start, end| {
            let raw = &text[start..end];
            let slot = cache.slot_of(raw, || {
                // Spans are valid UTF-8: they only contain decoded characters.
                normalize_tag(std::str::from_utf8(raw).unwrap_or_default(), scratch);
                match normalizer.resolve(scratch) {
                    Some(key) => {
                        let key = key.to_string();
                        self.slot(&key)
                    }
                    None => STOPPED,
                }
            });
            if slot == STOPPED {
                return;
            }
            let entry = &mut self.entries[slot as usize];
            entry.count.occurrences += 1;
            if entry.last_caption != caption_id {
                entry.last_caption = caption_id;
                entry.count.images += 1;
            }
            counted = true;
        });
        self.captions_with_tags += u64::from(counted);
    }

    /// Adds another partial count into this one.
    pub fn merge(&mut self, other: TagCounts) {
        let (mut big, small) = if self.len() >= other.len() {
            (std::mem::take(self), other)
        } else {
            (other, std::mem::take(self))
        };
        big.captions += small.captions;
        big.captions_with_tags += small.captions_with_tags;
        big.null_captions += small.null_captions;
        big.invalid_utf8 += small.invalid_utf8;
        for entry in &mut big.entries {
            entry.last_caption = u64::MAX;
        }
        for (key, entry) in small.keys.iter().zip(&small.entries) {
            let slot = big.slot(key) as usize;
            big.entries[slot].count.occurrences += entry.count.occurrences;
            big.entries[slot].count.images += entry.count.images;
        }
        *self = big;
    }

    /// Adds one key's counts directly (deserialising, tests).
    pub fn insert(&mut self, key: &str, count: TagCount) {
        let slot = self.slot(key) as usize;
        self.entries[slot].count.occurrences += count.occurrences;
        self.entries[slot].count.images += count.images;
    }

    /// Keys with counts, most images first, then most occurrences, then key
    /// (byte order): a total order, so ties never depend on hashing.
    pub fn sorted(&self) -> Vec<(&str, TagCount)> {
        let mut rows: Vec<(&str, TagCount)> = self
            .keys
            .iter()
            .zip(&self.entries)
            .map(|(k, e)| (k.as_str(), e.count))
            .collect();
        rows.par_sort_unstable_by(|a, b| {
            b.1.images
                .cmp(&a.1.images)
                .then(b.1.occurrences.cmp(&a.1.occurrences))
                .then(a.0.cmp(b.0))
        });
        rows
    }

    /// A compact, versioned binary form (for shipping partial counts).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.len() * 32);
        out.extend_from_slice(MAGIC);
        for v in [
            self.captions,
            self.captions_with_tags,
            self.null_captions,
            self.invalid_utf8,
            self.len() as u64,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (key, entry) in self.keys.iter().zip(&self.entries) {
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(&entry.count.occurrences.to_le_bytes());
            out.extend_from_slice(&entry.count.images.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(data: &[u8]) -> Result<TagCounts, CoreError> {
        let mut reader = Reader { data, pos: 0 };
        if reader.take(MAGIC.len())? != MAGIC {
            return Err(CoreError::InvalidData(
                "not a fastprep hashtag-count blob (bad magic or version)".into(),
            ));
        }
        let mut counts = TagCounts {
            captions: reader.u64()?,
            captions_with_tags: reader.u64()?,
            null_captions: reader.u64()?,
            invalid_utf8: reader.u64()?,
            ..Default::default()
        };
        let n = reader.u64()?;
        // Each entry takes at least 20 bytes: never reserve more than the blob holds.
        let plausible = (data.len() / 20) as u64;
        counts.keys.reserve(n.min(plausible) as usize);
        for _ in 0..n {
            let len = u32::from_le_bytes(reader.take(4)?.try_into().unwrap_or_default()) as usize;
            let key = std::str::from_utf8(reader.take(len)?)
                .map_err(|e| CoreError::InvalidData(format!("bad key: {e}")))?;
            let occurrences = reader.u64()?;
            let images = reader.u64()?;
            counts.insert(
                key,
                TagCount {
                    occurrences,
                    images,
                },
            );
        }
        if reader.pos != data.len() {
            return Err(CoreError::InvalidData(
                "trailing bytes after hashtag counts".into(),
            ));
        }
        Ok(counts)
    }
}

const MAGIC: &[u8] = b"FPHASHTAGCOUNTS1";

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CoreError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| CoreError::InvalidData("truncated hashtag counts".into()))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u64(&mut self) -> Result<u64, CoreError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
}

/// Counts `captions` on the current rayon pool. The result does not depend on
/// the number of threads: partial counts are sums. `valid_utf8`: see
/// [`TagCounts::add_caption`].
pub fn count_parallel(
    captions: &[Option<&[u8]>],
    normalizer: &Normalizer,
    valid_utf8: bool,
) -> TagCounts {
    // One contiguous share per thread: each keeps one spelling cache and one
    // table for its whole share (rayon's adaptive splitting would start
    // fresh ones, normalising the same spellings again and merging more).
    let parts = rayon::current_num_threads().max(1);
    let share = captions.len().div_ceil(parts).max(1);
    captions
        .par_chunks(share)
        .enumerate()
        .map(|(part, chunk)| {
            let (mut counts, mut cache, mut scratch) =
                (TagCounts::new(), SpellingCache::new(), String::new());
            for (i, text) in chunk.iter().enumerate() {
                let id = (part * share + i) as u64;
                counts.add_caption(*text, id, normalizer, &mut cache, &mut scratch, valid_utf8);
            }
            counts
        })
        .reduce(TagCounts::new, |mut a, b| {
            a.merge(b);
            a
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captions(texts: &[&'static str]) -> Vec<Option<&'static [u8]>> {
        texts.iter().map(|t| Some(t.as_bytes())).collect()
    }

    #[test]
    fn occurrences_and_images() {
        let c = captions(&["#Dog #dog #cat", "＃ＤＯＧ on a walk", "no tags", "#cat"]);
        let counts = count_parallel(&c, &Normalizer::default(), true);
        assert_eq!(
            counts.get("dog"),
            Some(TagCount {
                occurrences: 3,
                images: 2
            })
        );
        assert_eq!(
            counts.get("cat"),
            Some(TagCount {
                occurrences: 2,
                images: 2
            })
        );
        assert_eq!((counts.captions, counts.captions_with_tags), (4, 3));
        assert_eq!(
            counts.sorted()[0].0,
            "dog",
            "tie on images broken by occurrences"
        );
    }

    #[test]
    fn merge_equals_whole_and_bytes_round_trip() {
        let all = captions(&["#a #b", "#b #b #c", "#c", "#a #d", "x"]);
        let whole = count_parallel(&all, &Normalizer::default(), true);
        let mut left = count_parallel(&all[..2], &Normalizer::default(), true);
        left.merge(count_parallel(&all[2..], &Normalizer::default(), true));
        assert_eq!(left.sorted(), whole.sorted());
        assert_eq!(left.captions, whole.captions);
        let back = TagCounts::from_bytes(&whole.to_bytes()).unwrap();
        assert_eq!(back.sorted(), whole.sorted());
        assert!(TagCounts::from_bytes(&whole.to_bytes()[..20]).is_err());
    }
}
