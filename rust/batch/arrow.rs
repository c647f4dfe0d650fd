//! The Arrow layout of a decoded batch. Pixel bytes move into Arrow buffers
//! without copying (`Buffer::from_vec` takes the allocation over).

use std::sync::Arc;

use arrow_array::builder::{
    FixedSizeBinaryBuilder, Int32Builder, ListBuilder, StringBuilder, UInt8Builder,
};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, LargeBinaryArray, RecordBatch, RecordBatchOptions,
    UInt64Array, UInt8Array,
};

use crate::image::{DecodeError, HashRequest, ImageHashes};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema};

/// Pixel storage for a batch.
pub enum Pixels {
    /// Every record is `height` x `width` x 3 (three planes when
    /// `channels_first`); record i is `data[i*frame..]`.
    Fixed {
        data: Vec<u8>,
        height: u32,
        width: u32,
        channels_first: bool,
    },
    /// Record i is `data[offsets[i]..offsets[i+1]]`, row-major RGB.
    Variable { data: Vec<u8>, offsets: Vec<i64> },
    /// No pixel column (hashes and metadata only).
    Omitted,
}

/// Per-record facts that become the non-pixel columns.
#[derive(Clone, Debug, Default)]
pub struct RecordMeta {
    pub format: Option<&'static str>,
    /// (width, height) as displayed.
    pub source_size: Option<(u32, u32)>,
    pub orientation: Option<u8>,
    /// (width, height) of the output pixels; `None` when the record failed.
    pub output_size: Option<(u32, u32)>,
    /// Why the record failed; becomes the `error` text and `error_kind`.
    pub error: Option<DecodeError>,
    /// Damage the decoder recovered from; the `warnings` column (null when none).
    pub warnings: Vec<&'static str>,
    pub hashes: ImageHashes,
}

/// Canonical extension name pyarrow maps to `FixedShapeTensorType`.
pub const TENSOR_EXTENSION: &str = "arrow.fixed_shape_tensor";

fn pixel_column(pixels: Pixels, valid: NullBuffer) -> Option<(Field, ArrayRef)> {
    match pixels {
        Pixels::Fixed {
            data,
            height,
            width,
            channels_first,
        } => {
            let frame = height as i32 * width as i32 * 3;
            let item = Arc::new(Field::new("item", DataType::UInt8, false));
            let values = UInt8Array::new(ScalarBuffer::from(Buffer::from_vec(data)), None);
            let array = FixedSizeListArray::new(item.clone(), frame, Arc::new(values), Some(valid));
            let metadata = [
                (
                    "ARROW:extension:name".to_string(),
                    TENSOR_EXTENSION.to_string(),
                ),
                (
                    "ARROW:extension:metadata".to_string(),
                    if channels_first {
                        format!(
                            "{{\"shape\":[3,{height},{width}],\"dim_names\":[\"C\",\"H\",\"W\"]}}"
                        )
                    } else {
                        format!(
                            "{{\"shape\":[{height},{width},3],\"dim_names\":[\"H\",\"W\",\"C\"]}}"
                        )
                    },
                ),
            ];
            let field = Field::new("pixels", DataType::FixedSizeList(item, frame), true)
                .with_metadata(metadata.into_iter().collect());
            Some((field, Arc::new(array)))
        }
        Pixels::Omitted => None,
        Pixels::Variable { data, offsets } => {
            let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
            let array = LargeBinaryArray::new(offsets, Buffer::from_vec(data), Some(valid));
            Some((
                Field::new("pixels", DataType::LargeBinary, true),
                Arc::new(array),
            ))
        }
    }
}

fn fixed_binary<const N: usize>(values: impl Iterator<Item = Option<[u8; N]>>) -> ArrayRef {
    let mut b = FixedSizeBinaryBuilder::new(N as i32);
    for v in values {
        match v {
            Some(bytes) => b.append_value(bytes).expect("width matches"),
            None => b.append_null(),
        }
    }
    Arc::new(b.finish())
}

fn u64_column(values: impl Iterator<Item = Option<u64>>) -> ArrayRef {
    Arc::new(values.collect::<UInt64Array>())
}

/// Hash columns, in a fixed order, for the hashes that were asked for.
fn hash_columns(records: &[RecordMeta], request: &HashRequest) -> Vec<(Field, ArrayRef)> {
    let mut columns = Vec::new();
    let mut add = |name: &str, array: ArrayRef| {
        columns.push((Field::new(name, array.data_type().clone(), true), array));
    };
    let h = || records.iter().map(|r| &r.hashes);
    if request.xxh3 {
        add("xxh3_128", fixed_binary(h().map(|x| x.xxh3)));
    }
    if request.blake3 {
        add("blake3", fixed_binary(h().map(|x| x.blake3)));
    }
    if request.pixels {
        add("pixel_xxh3_128", fixed_binary(h().map(|x| x.pixels)));
    }
    if request.ahash {
        add("ahash", u64_column(h().map(|x| x.ahash)));
    }
    if request.dhash {
        add("dhash", u64_column(h().map(|x| x.dhash)));
    }
    if request.phash {
        add("phash", u64_column(h().map(|x| x.phash)));
    }
    if request.pdq {
        add(
            "pdq",
            fixed_binary(h().map(|x| x.pdq.map(|p| p.0.to_be_bytes()))),
        );
        add(
            "pdq_quality",
            Arc::new(h().map(|x| x.pdq.map(|p| p.1)).collect::<UInt8Array>()),
        );
    }
    if request.pdq_dihedral {
        let item = Arc::new(Field::new("item", DataType::FixedSizeBinary(32), true));
        let flat = fixed_binary(h().flat_map(|x| match x.pdq_dihedral {
            Some(all) => all.map(|p| Some(p.to_be_bytes())).to_vec(),
            None => vec![None; 8],
        }));
        let valid = NullBuffer::from_iter(h().map(|x| x.pdq_dihedral.is_some()));
        add(
            "pdq_dihedral",
            Arc::new(FixedSizeListArray::new(item, 8, flat, Some(valid))),
        );
    }
    if request.pdq_fast {
        add(
            "pdq_fast",
            fixed_binary(h().map(|x| x.pdq_fast.map(|p| p.0.to_be_bytes()))),
        );
        add(
            "pdq_fast_quality",
            Arc::new(h().map(|x| x.pdq_fast.map(|p| p.1)).collect::<UInt8Array>()),
        );
    }
    columns
}

pub fn build_record_batch(
    pixels: Pixels,
    records: Vec<RecordMeta>,
    hashes: &HashRequest,
) -> RecordBatch {
    let valid = NullBuffer::from_iter(records.iter().map(|r| r.error.is_none()));
    let int_column = |get: &dyn Fn(&RecordMeta) -> Option<u32>| {
        let mut b = Int32Builder::with_capacity(records.len());
        records
            .iter()
            .for_each(|r| b.append_option(get(r).map(|v| v as i32)));
        Arc::new(b.finish()) as ArrayRef
    };
    let mut format = StringBuilder::new();
    let mut error = StringBuilder::new();
    let mut error_kind = StringBuilder::new();
    let mut orientation = UInt8Builder::with_capacity(records.len());
    let mut warnings = ListBuilder::new(StringBuilder::new());
    for r in &records {
        format.append_option(r.format);
        error.append_option(r.error.as_ref().map(|e| e.to_string()));
        error_kind.append_option(r.error.as_ref().map(DecodeError::kind));
        orientation.append_option(r.orientation);
        if r.warnings.is_empty() {
            warnings.append_null();
        } else {
            warnings.append_value(r.warnings.iter().map(|w| Some(*w)));
        }
    }
    let mut columns: Vec<(Field, ArrayRef)> = Vec::new();
    let has_pixels = !matches!(pixels, Pixels::Omitted);
    columns.extend(pixel_column(pixels, valid));
    if has_pixels {
        columns.push((
            Field::new("height", DataType::Int32, true),
            int_column(&|r| r.output_size.map(|s| s.1)),
        ));
        columns.push((
            Field::new("width", DataType::Int32, true),
            int_column(&|r| r.output_size.map(|s| s.0)),
        ));
    }
    columns.extend([
        (
            Field::new("source_height", DataType::Int32, true),
            int_column(&|r| r.source_size.map(|s| s.1)),
        ),
        (
            Field::new("source_width", DataType::Int32, true),
            int_column(&|r| r.source_size.map(|s| s.0)),
        ),
        (
            Field::new("format", DataType::Utf8, true),
            Arc::new(format.finish()) as ArrayRef,
        ),
        (
            Field::new("orientation", DataType::UInt8, true),
            Arc::new(orientation.finish()),
        ),
        (
            Field::new("error", DataType::Utf8, true),
            Arc::new(error.finish()),
        ),
        (
            Field::new("error_kind", DataType::Utf8, true),
            Arc::new(error_kind.finish()),
        ),
        {
            let warnings = warnings.finish();
            (
                Field::new("warnings", warnings.data_type().clone(), true),
                Arc::new(warnings) as ArrayRef,
            )
        },
    ]);
    columns.extend(hash_columns(&records, hashes));
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
    let options = RecordBatchOptions::new().with_row_count(Some(records.len()));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
        .expect("columns are built consistently")
}
