//! The Arrow layout of a decoded batch. Pixel bytes move into Arrow buffers
//! without copying (`Buffer::from_vec` takes the allocation over).

use std::sync::Arc;

use arrow_array::builder::{Int32Builder, StringBuilder, UInt8Builder};
use arrow_array::{ArrayRef, FixedSizeListArray, LargeBinaryArray, RecordBatch, UInt8Array};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema};

/// Pixel storage for a batch.
pub enum Pixels {
    /// Every record is `height` x `width` x 3; record i is `data[i*frame..]`.
    Fixed {
        data: Vec<u8>,
        height: u32,
        width: u32,
    },
    /// Record i is `data[offsets[i]..offsets[i+1]]`, row-major RGB.
    Variable { data: Vec<u8>, offsets: Vec<i64> },
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
    pub error: Option<String>,
}

/// Canonical extension name pyarrow maps to `FixedShapeTensorType`.
pub const TENSOR_EXTENSION: &str = "arrow.fixed_shape_tensor";

fn pixel_column(pixels: Pixels, valid: NullBuffer) -> (Field, ArrayRef) {
    match pixels {
        Pixels::Fixed {
            data,
            height,
            width,
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
                    format!("{{\"shape\":[{height},{width},3],\"dim_names\":[\"H\",\"W\",\"C\"]}}"),
                ),
            ];
            let field = Field::new("pixels", DataType::FixedSizeList(item, frame), true)
                .with_metadata(metadata.into_iter().collect());
            (field, Arc::new(array))
        }
        Pixels::Variable { data, offsets } => {
            let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
            let array = LargeBinaryArray::new(offsets, Buffer::from_vec(data), Some(valid));
            (
                Field::new("pixels", DataType::LargeBinary, true),
                Arc::new(array),
            )
        }
    }
}

pub fn build_record_batch(pixels: Pixels, records: Vec<RecordMeta>) -> RecordBatch {
    let valid = NullBuffer::from_iter(records.iter().map(|r| r.error.is_none()));
    let (pixel_field, pixel_array) = pixel_column(pixels, valid);
    let int_column = |get: &dyn Fn(&RecordMeta) -> Option<u32>| {
        let mut b = Int32Builder::with_capacity(records.len());
        records
            .iter()
            .for_each(|r| b.append_option(get(r).map(|v| v as i32)));
        Arc::new(b.finish()) as ArrayRef
    };
    let mut format = StringBuilder::new();
    let mut error = StringBuilder::new();
    let mut orientation = UInt8Builder::with_capacity(records.len());
    for r in &records {
        format.append_option(r.format);
        error.append_option(r.error.as_deref());
        orientation.append_option(r.orientation);
    }
    let columns: Vec<(Field, ArrayRef)> = vec![
        (pixel_field, pixel_array),
        (
            Field::new("height", DataType::Int32, true),
            int_column(&|r| r.output_size.map(|s| s.1)),
        ),
        (
            Field::new("width", DataType::Int32, true),
            int_column(&|r| r.output_size.map(|s| s.0)),
        ),
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
            Arc::new(format.finish()),
        ),
        (
            Field::new("orientation", DataType::UInt8, true),
            Arc::new(orientation.finish()),
        ),
        (
            Field::new("error", DataType::Utf8, true),
            Arc::new(error.finish()),
        ),
    ];
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .expect("columns are built consistently")
}
