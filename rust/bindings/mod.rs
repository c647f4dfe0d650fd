//! The PyO3 layer: converts Python arguments to core types, releases the GIL
//! while Rust works, maps errors to exceptions and returns Arrow data through
//! the PyCapsule interface. No image or hashtag logic lives here.

mod arrow_input;
mod dedup;
mod error;
mod hashtags;
mod images;
mod options;
mod sharded;

use pyo3::prelude::*;

/// Default number of Rust threads (`$FASTPREP_NUM_THREADS` or usable CPUs).
#[pyfunction]
fn default_num_threads() -> usize {
    crate::pool::default_threads()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(default_num_threads, m)?)?;
    images::register(m)?;
    hashtags::register(m)?;
    dedup::register(m)?;
    sharded::register(m)?;
    Ok(())
}
