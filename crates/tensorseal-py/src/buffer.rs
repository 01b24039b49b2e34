//! Memory shared with Python through the buffer protocol, both ways: the memory behind Python
//! buffers (numpy arrays, torch tensors viewed as numpy) that blobs are copied into, and
//! verified blobs of a private file mapping exported to Python as writable buffers
//! ([`MappedBlob`]).
//!
//! This is the crate's only unsafe code. Everything else goes through pyo3's safe API.

use crate::errors;
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use std::ffi::c_int;
use std::sync::Arc;
use tensorseal::MappedLoader;

/// A writable, C-contiguous byte buffer acquired from a Python object.
///
/// # Invariants
/// The view is writable, C-contiguous and `len` bytes long; holding it keeps the exporter's
/// memory alive and in place (PEP 3118).
pub(crate) struct WritableBuffer {
    view: PyBuffer<u8>,
}

/// A C-contiguous byte buffer acquired from a Python object, read-only to us.
pub(crate) struct ReadableBuffer {
    view: PyBuffer<u8>,
}

fn acquire(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<PyBuffer<u8>> {
    let py = obj.py();
    let view = PyBuffer::<u8>::get(obj).map_err(|e| {
        errors::invalid(
            py,
            format!("{what}: not a buffer of bytes (uint8, C-contiguous): {e}"),
        )
    })?;
    if !view.is_c_contiguous() {
        return Err(errors::invalid(py, format!("{what}: not C-contiguous")));
    }
    Ok(view)
}

impl WritableBuffer {
    /// Acquires a writable view of `obj`; `what` names it in errors.
    pub(crate) fn get(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<WritableBuffer> {
        let view = acquire(obj, what)?;
        if view.readonly() {
            return Err(errors::invalid(
                obj.py(),
                format!("{what}: buffer is read-only"),
            ));
        }
        Ok(WritableBuffer { view })
    }

    pub(crate) fn len(&self) -> usize {
        self.view.len_bytes()
    }

    fn range(&self) -> (usize, usize) {
        let start = self.view.buf_ptr() as usize;
        (start, start + self.len())
    }

    /// Mutable slices over every buffer, refusing buffers whose memory overlaps, so no byte is
    /// reachable through two `&mut`.
    pub(crate) fn slices(buffers: &mut [WritableBuffer]) -> Result<Vec<&mut [u8]>, String> {
        let mut ranges: Vec<(usize, usize, usize)> = buffers
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() > 0)
            .map(|(i, b)| {
                let (s, e) = b.range();
                (s, e, i)
            })
            .collect();
        ranges.sort_unstable();
        if let Some(w) = ranges.windows(2).find(|w| w[1].0 < w[0].1) {
            return Err(format!(
                "destination buffers {} and {} overlap",
                w[0].2, w[1].2
            ));
        }
        Ok(buffers
            .iter_mut()
            .map(|b| {
                let len = b.len();
                if len == 0 {
                    return <&mut [u8]>::default();
                }
                let ptr = b.view.buf_ptr().cast::<u8>();
                // SAFETY: the view is writable and C-contiguous (checked in `get`), so `ptr` points
                // to `len` bytes the exporter keeps valid and in place while `b.view` is held; the
                // slice borrows `b` mutably, so it cannot outlive the view. No two slices overlap
                // (checked above), and this crate creates no other reference to the memory. Python
                // code running concurrently (the GIL is released while the slices are written) could
                // touch the same bytes only through an object it shares with the caller, exactly as
                // with numpy's own GIL-free operations: bytes are plain data, any value is valid.
                unsafe { std::slice::from_raw_parts_mut(ptr, len) }
            })
            .collect())
    }
}

impl ReadableBuffer {
    /// Acquires a view of `obj`; `what` names it in errors.
    pub(crate) fn get(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<ReadableBuffer> {
        Ok(ReadableBuffer {
            view: acquire(obj, what)?,
        })
    }

    /// The bytes. The caller must not let Python code mutate the object meanwhile.
    pub(crate) fn bytes(&self) -> &[u8] {
        let len = self.view.len_bytes();
        if len == 0 {
            return &[];
        }
        // SAFETY: the view is C-contiguous (checked in `get`), so the exporter keeps `len` bytes
        // valid and in place at `buf_ptr` while `self.view` is held, and the slice borrows `self`.
        // Writers running concurrently in other Python threads could change the bytes, but not
        // invalidate them: a tensor is plain data, and the file records whatever was read.
        unsafe { std::slice::from_raw_parts(self.view.buf_ptr().cast::<u8>(), len) }
    }
}

/// A verified raw blob of a [`MappedLoader`]'s private mapping, exported to Python as a
/// writable, one-dimensional buffer of bytes: `torch.frombuffer` and `numpy.frombuffer` view it
/// without a copy. Writes go to the process's private copy of each page, never to the file.
///
/// # Invariants
/// `blob` is a raw blob that `loader` has verified (checked by `MappedBlob::new`), so
/// `loader.blob_memory(blob)` is `Some` for as long as the object lives.
///
/// Lifetime: the object owns a reference to the loader, which owns the mapping; every buffer
/// view holds a reference to the object (`Py_buffer.obj`), and torch and numpy keep that
/// reference (or the object itself) for as long as a tensor or array uses the memory. So the
/// mapping is unmapped only after the last view is gone, whatever happens to the loader's
/// Python handle; the object has no method that frees or closes anything.
#[pyclass(module = "tensorseal._native", name = "MappedBlob", frozen, weakref)]
pub(crate) struct MappedBlob {
    loader: Arc<MappedLoader>,
    blob: usize,
    len: usize,
}

impl MappedBlob {
    /// The exporter of `blob`, or `None` if it is not a verified raw blob of `loader`.
    pub(crate) fn new(loader: &Arc<MappedLoader>, blob: usize) -> Option<MappedBlob> {
        let len = loader.blob_memory(blob)?.len();
        Some(MappedBlob {
            loader: Arc::clone(loader),
            blob,
            len,
        })
    }
}

#[pymethods]
impl MappedBlob {
    /// Fills `view` with this blob's memory: writable, `len` bytes, format `B`.
    ///
    /// # Safety
    /// Called by the interpreter with a valid `view` to fill (the buffer protocol's contract).
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let memory = this
            .loader
            .blob_memory(this.blob)
            .ok_or_else(|| errors::invalid(py, format!("blob {} is not verified", this.blob)))?;
        let len = isize::try_from(memory.len()).map_err(|e| errors::invalid(py, e.to_string()))?;
        // SAFETY: `view` is the interpreter's to fill (caller contract). `memory` is a verified
        // raw blob's range of the loader's private mapping, readable and writable for
        // `memory.len()` bytes while the loader lives (`MappedLoader::blob_memory`), and the
        // loader never reads or writes that range again, so Python may write it. The loader
        // lives at least as long as `slf` (it holds an `Arc`), and `PyBuffer_FillInfo` stores a
        // new reference to `slf` in `view.obj`, released only when the view is: the memory
        // outlives every view. Writable (`readonly = 0`) is what the mapping allows; writes
        // change private pages, never the file. Concurrent writers are Python's to order, as
        // for any writable buffer.
        let rc = unsafe {
            pyo3::ffi::PyBuffer_FillInfo(view, slf.as_ptr(), memory.as_ptr().cast(), len, 0, flags)
        };
        if rc != 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(())
    }

    /// Length in bytes.
    fn __len__(&self) -> usize {
        self.len
    }

    fn __repr__(&self) -> String {
        format!("<tensorseal MappedBlob {} ({} bytes)>", self.blob, self.len)
    }
}
