//! Byte order of stored array data.

/// The byte order tensor data is stored in. tensorseal stores little-endian; big-endian input
/// is swapped per element ([`tensorseal::DType::swap_width`]) by the converter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// Least significant byte first (also used for one-byte types, where order does not apply).
    Little,
    /// Most significant byte first.
    Big,
}
