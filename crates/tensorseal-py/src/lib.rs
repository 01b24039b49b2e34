#![doc = include_str!("../README.md")]
//! ## The extension module
//!
//! `tensorseal._native` is the Rust half of the package: it opens, verifies and reads files
//! (`open`, `Loader.read_into`, `verify`), writes them (`save`), and converts and scans legacy
//! checkpoints (`convert`, `scan`, see `convert.rs`), exchanging trees with the Python half in a
//! plain-Python form (see `ir.rs`). The Python half (`python/tensorseal/`)
//! turns that form into torch and numpy objects and back; nothing in either half imports or
//! calls anything named in a file.

mod audit;
mod buffer;
mod convert;
mod errors;
mod ir;
mod keys;
mod load;
mod save;
mod transfer;

use pyo3::prelude::*;

/// Every Rust allocation of the extension (trees, manifests, names) goes to mimalloc, not to
/// the C library's malloc: opening a 124-tensor checkpoint allocates and frees several hundred
/// small objects, and mimalloc's thread-local free lists make that about twice as cheap.
/// Python's own objects are unaffected (the interpreter has its own allocator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Parses the `compress=` argument of `save` and `convert` with the library's one parser (the
/// CLI's `--compress` uses the same), `None` meaning raw.
fn compression(py: Python<'_>, text: Option<&str>) -> PyResult<tensorseal::Compression> {
    text.map_or(Ok(tensorseal::Compression::None), |t| {
        t.parse()
            .map_err(|e| errors::invalid(py, format!("compress must be None, or {e}")))
    })
}

/// Checks a `compress=` argument before any work starts, and returns its canonical spelling.
#[pyfunction]
fn canonical_compression(py: Python<'_>, text: &str) -> PyResult<String> {
    Ok(compression(py, Some(text))?.to_string())
}

/// The `tensorseal._native` extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "DTYPES",
        tensorseal::DType::ALL
            .iter()
            .map(|d| (d.name(), d.itemsize()))
            .collect::<Vec<_>>(),
    )?;
    m.add(
        "TORCH_DTYPE_EXTRA_NAMES",
        tensorseal::TORCH_DTYPE_EXTRA_NAMES.to_vec(),
    )?;
    m.add_class::<load::PyLoader>()?;
    m.add_function(wrap_pyfunction!(canonical_compression, m)?)?;
    m.add_function(wrap_pyfunction!(load::open, m)?)?;
    m.add_function(wrap_pyfunction!(load::verify, m)?)?;
    m.add_function(wrap_pyfunction!(transfer::upload, m)?)?;
    m.add_function(wrap_pyfunction!(transfer::download, m)?)?;
    m.add_function(wrap_pyfunction!(transfer::list_folder, m)?)?;
    m.add_function(wrap_pyfunction!(save::save, m)?)?;
    m.add_function(wrap_pyfunction!(convert::convert, m)?)?;
    m.add_function(wrap_pyfunction!(convert::scan, m)?)?;
    m.add_function(wrap_pyfunction!(keys::generate_key, m)?)?;
    m.add_function(wrap_pyfunction!(keys::key_id, m)?)?;
    m.add_function(wrap_pyfunction!(keys::check_secret_key, m)?)?;
    m.add_function(wrap_pyfunction!(audit::audit_append, m)?)?;
    Ok(())
}
