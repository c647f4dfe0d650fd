//! Per-caption hashtag lists for a whole column, in parallel.

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::ListArray;
use rayon::prelude::*;

use super::extract::extract_spans;
use super::normalize::{normalize_tag, Normalizer};

/// Captions per rayon task: large enough to amortise the task, small enough
/// to balance uneven caption lengths.
const CHUNK: usize = 4096;

fn tags_of(text: &[u8], normalizer: Option<&Normalizer>, scratch: &mut String) -> Vec<String> {
    let mut tags = Vec::new();
    extract_spans(text, |s, e| {
        let tag = std::str::from_utf8(&text[s..e]).unwrap_or_default();
        match normalizer {
            None => tags.push(tag.to_string()),
            Some(n) => {
                normalize_tag(tag, scratch);
                if let Some(key) = n.resolve(scratch) {
                    tags.push(key.to_string());
                }
            }
        }
    });
    tags
}

/// The hashtags of each caption as `list<string>`, on the current rayon pool:
/// raw spellings, or with a normaliser their label keys (stop-listed tags
/// dropped). A null caption gives a null list; order is input order.
pub fn extract_lists(captions: &[Option<&[u8]>], normalizer: Option<&Normalizer>) -> ListArray {
    let parts: Vec<Vec<Option<Vec<String>>>> = captions
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut scratch = String::new();
            chunk
                .iter()
                .map(|text| text.map(|text| tags_of(text, normalizer, &mut scratch)))
                .collect()
        })
        .collect();
    let mut builder = ListBuilder::new(StringBuilder::new());
    for row in parts.into_iter().flatten() {
        match row {
            Some(tags) => {
                tags.iter().for_each(|t| builder.values().append_value(t));
                builder.append(true);
            }
            None => builder.append(false),
        }
    }
    builder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::run_in_pool;
    use arrow_array::cast::AsArray;
    use arrow_array::Array;

    fn lists(array: &ListArray) -> Vec<Option<Vec<String>>> {
        (0..array.len())
            .map(|i| {
                array.is_valid(i).then(|| {
                    let values = array.value(i);
                    let strings = values.as_string::<i32>();
                    strings
                        .iter()
                        .map(|s| s.unwrap_or_default().to_string())
                        .collect()
                })
            })
            .collect()
    }

    #[test]
    fn raw_and_normalised_lists_keep_nulls_and_order() {
        let captions: Vec<Option<&[u8]>> = vec![
            Some("Sunset #Beach #NoFilter"),
            None,
            Some("no tags"),
            Some("#ｂｅａｃｈ again"),
        ]
        .into_iter()
        .map(|c| c.map(str::as_bytes))
        .collect();
        let raw = run_in_pool(Some(2), || extract_lists(&captions, None));
        let strings = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            lists(&raw),
            [
                strings(&["Beach", "NoFilter"]),
                None,
                strings(&[]),
                strings(&["ｂｅａｃｈ"])
            ]
        );
        let normalizer = Normalizer::new([], ["nofilter"]);
        let keys = run_in_pool(Some(2), || extract_lists(&captions, Some(&normalizer)));
        assert_eq!(
            lists(&keys),
            [strings(&["beach"]), None, strings(&[]), strings(&["beach"])]
        );
    }

    #[test]
    fn many_chunks_keep_input_order() {
        let texts: Vec<String> = (0..10_000).map(|i| format!("#t{i}")).collect();
        let captions: Vec<Option<&[u8]>> = texts.iter().map(|t| Some(t.as_bytes())).collect();
        let out = run_in_pool(Some(2), || extract_lists(&captions, None));
        let got = lists(&out);
        assert_eq!(got.len(), 10_000);
        assert_eq!(got[9_999], Some(vec!["t9999".to_string()]));
    }
}
