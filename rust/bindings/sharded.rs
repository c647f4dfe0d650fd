//! The sharded multi-index join (`fastprep.distributed`): Arrow columns in
//! and out; the planning and verification live in `crate::dedup::sharded`.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{ArrowPrimitiveType, Int16Type, Int64Type, Int8Type};
use arrow_array::{
    Array, ArrayRef, BinaryArray, Int16Array, Int32Array, Int64Array, Int8Array, RecordBatch,
    UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3_arrow::{PyArray, PyChunkedArray, PyRecordBatch};

use crate::dedup::sharded::{self, ByteHashes, Role, ShardEntries};
use crate::dedup::{probe_masks as core_probe_masks, SlotPlan};
use crate::pool::run_in_pool;

/// The values of a primitive column of exactly type `T` (nulls not allowed).
fn values<T: ArrowPrimitiveType>(array: &PyChunkedArray, name: &str) -> PyResult<Vec<T::Native>> {
    let mut out = Vec::new();
    for chunk in array.chunks() {
        let typed = chunk
            .as_primitive_opt::<T>()
            .filter(|c| c.null_count() == 0);
        let typed = typed.ok_or_else(|| {
            PyTypeError::new_err(format!("{name} must be {} without nulls", T::DATA_TYPE))
        })?;
        out.extend_from_slice(typed.values());
    }
    Ok(out)
}

/// Hash bytes of a `fixed_size_binary` column without nulls: (width, bytes).
fn hash_bytes(array: &PyChunkedArray) -> PyResult<(usize, Vec<u8>)> {
    let width = match array.data_type() {
        DataType::FixedSizeBinary(w) if *w > 0 => *w as usize,
        other => {
            return Err(PyTypeError::new_err(format!(
                "hashes must be fixed_size_binary, got {other}"
            )))
        }
    };
    let mut bytes = Vec::new();
    for chunk in array.chunks() {
        let fsb = chunk.as_fixed_size_binary();
        if fsb.null_count() > 0 {
            return Err(PyValueError::new_err("hash columns must not contain nulls"));
        }
        (0..fsb.len()).for_each(|i| bytes.extend_from_slice(fsb.value(i)));
    }
    Ok((width, bytes))
}

fn field(name: &str, data_type: DataType) -> Field {
    Field::new(name, data_type, true)
}

/// `(slots, t)` for `bits`-bit hashes in `slot_bits`-bit slots.
#[pyfunction]
fn slot_plan(radius: i64, bits: u32, slot_bits: u32) -> PyResult<(usize, u32)> {
    let plan = SlotPlan::new(radius, bits, slot_bits)?;
    Ok((plan.slots, plan.t))
}

/// Every `slot_bits`-bit mask with at most `t` bits set, 0 first.
#[pyfunction]
fn probe_masks(slot_bits: u32, t: u32) -> PyResult<Vec<u64>> {
    Ok(core_probe_masks(slot_bits, t)?)
}

/// Slot values of every hash, row-major (`[n * slots]` uint64).
#[pyfunction]
fn slot_values<'py>(
    py: Python<'py>,
    hashes: PyChunkedArray,
    slot_bits: u32,
) -> PyResult<Bound<'py, PyAny>> {
    let (width, bytes) = hash_bytes(&hashes)?;
    let plan = SlotPlan::new(0, (width * 8) as u32, slot_bits)?;
    let set = ByteHashes::new(width, &bytes)?;
    let flat: UInt64Array = (0..set.len())
        .flat_map(|i| (0..plan.slots).map(move |s| set.slot(i, s, slot_bits)))
        .collect();
    let exported = PyArray::from_array_ref(Arc::new(flat)).into_pyobject(py)?;
    py.import("pyarrow")?.getattr("array")?.call1((exported,))
}

/// The index entries of one block (`fastprep.distributed.ENTRY_SCHEMA`).
#[pyfunction]
#[pyo3(signature = (ids, hashes, radius, num_shards, slot_bits=16, role="both"))]
fn slot_entries<'py>(
    py: Python<'py>,
    ids: PyChunkedArray,
    hashes: PyChunkedArray,
    radius: i64,
    num_shards: u32,
    slot_bits: u32,
    role: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let role = Role::from_name(role)?;
    let ids = values::<Int64Type>(&ids, "ids")?;
    let (width, bytes) = hash_bytes(&hashes)?;
    let set = ByteHashes::new(width, &bytes)?;
    if ids.len() != set.len() {
        return Err(PyValueError::new_err("one id per hash is needed"));
    }
    let (e, id, hash) = py.detach(|| -> PyResult<_> {
        let e = sharded::slot_entries(&set, radius, num_shards, slot_bits, role)?;
        let id: Int64Array = e.record.iter().map(|&r| ids[r as usize]).collect();
        let hash = BinaryArray::from_iter_values(e.record.iter().map(|&r| set.get(r as usize)));
        Ok((e, id, hash))
    })?;
    let schema = Schema::new(vec![
        field("shard", DataType::Int32),
        field("slot", DataType::Int16),
        field("key", DataType::Int64),
        field("role", DataType::Int8),
        field("id", DataType::Int64),
        field("hash", DataType::Binary),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from(e.shard)),
        Arc::new(Int16Array::from(e.slot)),
        Arc::new(Int64Array::from(e.key)),
        Arc::new(Int8Array::from(e.role)),
        Arc::new(id),
        Arc::new(hash),
    ];
    let batch = RecordBatch::try_new(Arc::new(schema), columns)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    PyRecordBatch::new(batch).into_pyarrow(py)
}

/// The pairs one shard reports (`a`, `b` int64 ids, `distance` int32), sorted.
#[pyfunction]
#[pyo3(signature = (slot, key, role, id, hashes, radius, slot_bits=16, self_join=true, index_min=1 << 18, num_threads=None))]
#[allow(clippy::too_many_arguments)]
fn verify_entries<'py>(
    py: Python<'py>,
    slot: PyChunkedArray,
    key: PyChunkedArray,
    role: PyChunkedArray,
    id: PyChunkedArray,
    hashes: PyChunkedArray,
    radius: i64,
    slot_bits: u32,
    self_join: bool,
    index_min: u64,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let slot = values::<Int16Type>(&slot, "slot")?;
    let key = values::<Int64Type>(&key, "key")?;
    let role = values::<Int8Type>(&role, "role")?;
    let id = values::<Int64Type>(&id, "id")?;
    let (width, bytes) = hash_bytes(&hashes)?;
    let entries = ShardEntries {
        slot: &slot,
        key: &key,
        role: &role,
        id: &id,
        hashes: ByteHashes::new(width, &bytes)?,
    };
    let pairs = py.detach(|| {
        run_in_pool(num_threads, || {
            sharded::verify_entries(&entries, radius, slot_bits, self_join, index_min)
        })
    })?;
    let schema = Schema::new(vec![
        field("a", DataType::Int64),
        field("b", DataType::Int64),
        field("distance", DataType::Int32),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(pairs.iter().map(|p| p.0).collect::<Int64Array>()),
        Arc::new(pairs.iter().map(|p| p.1).collect::<Int64Array>()),
        Arc::new(pairs.iter().map(|p| p.2 as i32).collect::<Int32Array>()),
    ];
    let batch = RecordBatch::try_new(Arc::new(schema), columns)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    PyRecordBatch::new(batch).into_pyarrow(py)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(slot_plan, m)?)?;
    m.add_function(wrap_pyfunction!(probe_masks, m)?)?;
    m.add_function(wrap_pyfunction!(slot_values, m)?)?;
    m.add_function(wrap_pyfunction!(slot_entries, m)?)?;
    m.add_function(wrap_pyfunction!(verify_entries, m)?)?;
    Ok(())
}
