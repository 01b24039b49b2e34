//! Tensor element types (spec §2).

use std::fmt;

/// The element type of a tensor. Data is little-endian on disk.
///
/// Names are torch's (`float32`, `bfloat16`, `float8_e4m3fn`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DType {
    /// `bool`: one byte, 0 or 1.
    Bool,
    /// `uint8`.
    U8,
    /// `uint16`.
    U16,
    /// `uint32`.
    U32,
    /// `uint64`.
    U64,
    /// `int8`.
    I8,
    /// `int16`.
    I16,
    /// `int32`.
    I32,
    /// `int64`.
    I64,
    /// `float16` (IEEE binary16).
    F16,
    /// `bfloat16`.
    BF16,
    /// `float32`.
    F32,
    /// `float64`.
    F64,
    /// `complex64`: two float32.
    C64,
    /// `complex128`: two float64.
    C128,
    /// `float8_e4m3fn`.
    F8E4M3Fn,
    /// `float8_e5m2`.
    F8E5M2,
    /// `float8_e4m3fnuz`.
    F8E4M3Fnuz,
    /// `float8_e5m2fnuz`.
    F8E5M2Fnuz,
    /// `float8_e8m0fnu`.
    F8E8M0Fnu,
}

impl DType {
    /// Every dtype of format version 1, in spec order.
    pub const ALL: [DType; 20] = [
        DType::Bool,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
        DType::C64,
        DType::C128,
        DType::F8E4M3Fn,
        DType::F8E5M2,
        DType::F8E4M3Fnuz,
        DType::F8E5M2Fnuz,
        DType::F8E8M0Fnu,
    ];

    /// The spec name, e.g. `"bfloat16"`.
    pub const fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::C64 => "complex64",
            DType::C128 => "complex128",
            DType::F8E4M3Fn => "float8_e4m3fn",
            DType::F8E5M2 => "float8_e5m2",
            DType::F8E4M3Fnuz => "float8_e4m3fnuz",
            DType::F8E5M2Fnuz => "float8_e5m2fnuz",
            DType::F8E8M0Fnu => "float8_e8m0fnu",
        }
    }

    /// Bytes per element.
    pub const fn itemsize(self) -> u64 {
        match self {
            DType::Bool
            | DType::U8
            | DType::I8
            | DType::F8E4M3Fn
            | DType::F8E5M2
            | DType::F8E4M3Fnuz
            | DType::F8E5M2Fnuz
            | DType::F8E8M0Fnu => 1,
            DType::U16 | DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::U64 | DType::I64 | DType::F64 | DType::C64 => 8,
            DType::C128 => 16,
        }
    }

    /// Size in bytes of the scalar components byte order applies to: the itemsize, except for
    /// complex types, whose real and imaginary parts are swapped separately.
    pub const fn swap_width(self) -> u64 {
        match self {
            DType::C64 => 4,
            DType::C128 => 8,
            other => other.itemsize(),
        }
    }

    /// Looks a dtype up by its spec name.
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Whether numpy has a native dtype of this name (bfloat16 and the float8 types need
    /// extension packages).
    pub const fn numpy_native(self) -> bool {
        !matches!(
            self,
            DType::BF16
                | DType::F8E4M3Fn
                | DType::F8E5M2
                | DType::F8E4M3Fnuz
                | DType::F8E5M2Fnuz
                | DType::F8E8M0Fnu
        )
    }

    /// Byte size of a tensor of this dtype and shape, or `None` if it overflows or exceeds the
    /// format's limit of 2^62 bytes.
    pub fn byte_size(self, shape: &[u64]) -> Option<u64> {
        shape
            .iter()
            .try_fold(self.itemsize(), |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= crate::limits::MAX_SIZE)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Names a `torch.dtype` typed value may hold (spec §3.7.1): every [`DType`] name plus the
/// torch dtypes that have no tensor encoding in version 1.
pub const TORCH_DTYPE_EXTRA_NAMES: &[&str] = &[
    "complex32",
    "bcomplex32",
    "qint8",
    "qint32",
    "quint8",
    "quint4x2",
    "quint2x4",
    "bits1x8",
    "bits2x4",
    "bits4x2",
    "bits8",
    "bits16",
    "float4_e2m1fn_x2",
    "uint1",
    "uint2",
    "uint3",
    "uint4",
    "uint5",
    "uint6",
    "uint7",
    "int1",
    "int2",
    "int3",
    "int4",
    "int5",
    "int6",
    "int7",
];

/// Whether `name` is a torch dtype name a `torch.dtype` typed value may hold.
pub fn is_torch_dtype_name(name: &str) -> bool {
    DType::from_name(name).is_some() || TORCH_DTYPE_EXTRA_NAMES.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::from_name(d.name()), Some(d));
        }
        assert_eq!(DType::from_name("float"), None);
    }

    #[test]
    fn byte_size_is_checked() {
        assert_eq!(DType::F32.byte_size(&[2, 3]), Some(24));
        assert_eq!(DType::F32.byte_size(&[]), Some(4));
        assert_eq!(DType::F32.byte_size(&[0, 1 << 62]), Some(0));
        assert_eq!(DType::F32.byte_size(&[1 << 61]), None);
        assert_eq!(DType::U8.byte_size(&[u64::MAX, 2]), None);
    }
}
