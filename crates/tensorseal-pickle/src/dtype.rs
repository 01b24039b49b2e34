//! Element types: torch dtypes (by their pickled names) and numpy type strings.

use std::fmt;

macro_rules! dtypes {
    ($( $(#[$doc:meta])* $name:ident = $torch:literal, $size:expr, $supported:literal; )*) => {
        /// A tensor element type, named as torch pickles it (`torch.<name>`).
        ///
        /// Every dtype torch 2.x can serialize is listed, so nothing is mis-sized; the ones a
        /// converter can write are those with [`Dtype::is_supported`] (bool, the ints, the floats,
        /// complex64/128 and the five float8 formats).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Dtype {
            $( $(#[$doc])* $name, )*
        }

        impl Dtype {
            /// The attribute name in the `torch` module (`float32`, `bfloat16`, ...).
            pub fn torch_name(self) -> &'static str {
                match self { $( Dtype::$name => $torch, )* }
            }

            /// Looks a dtype up by its `torch` attribute name, exactly.
            pub fn from_torch_name(name: &str) -> Option<Dtype> {
                match name { $( $torch => Some(Dtype::$name), )* _ => None }
            }

            /// Bytes per element; `None` for sub-byte dtypes (uint1..7, int1..7), which torch
            /// packs and cannot serialize as ordinary storages.
            pub fn itemsize(self) -> Option<u64> {
                match self { $( Dtype::$name => $size, )* }
            }

            /// True for the dtypes a converter can write bit-exactly (no quantization parameters,
            /// no packing, no complex32).
            pub fn is_supported(self) -> bool {
                match self { $( Dtype::$name => $supported, )* }
            }

            /// Every dtype.
            pub const ALL: &'static [Dtype] = &[ $( Dtype::$name, )* ];
        }
    };
}

dtypes! {
    /// `torch.bool`.
    Bool = "bool", Some(1), true;
    /// `torch.uint8`.
    U8 = "uint8", Some(1), true;
    /// `torch.int8`.
    I8 = "int8", Some(1), true;
    /// `torch.int16`.
    I16 = "int16", Some(2), true;
    /// `torch.int32`.
    I32 = "int32", Some(4), true;
    /// `torch.int64`.
    I64 = "int64", Some(8), true;
    /// `torch.uint16`.
    U16 = "uint16", Some(2), true;
    /// `torch.uint32`.
    U32 = "uint32", Some(4), true;
    /// `torch.uint64`.
    U64 = "uint64", Some(8), true;
    /// `torch.float16`.
    F16 = "float16", Some(2), true;
    /// `torch.bfloat16`.
    BF16 = "bfloat16", Some(2), true;
    /// `torch.float32`.
    F32 = "float32", Some(4), true;
    /// `torch.float64`.
    F64 = "float64", Some(8), true;
    /// `torch.complex64`.
    C64 = "complex64", Some(8), true;
    /// `torch.complex128`.
    C128 = "complex128", Some(16), true;
    /// `torch.float8_e4m3fn`.
    F8E4M3FN = "float8_e4m3fn", Some(1), true;
    /// `torch.float8_e5m2`.
    F8E5M2 = "float8_e5m2", Some(1), true;
    /// `torch.float8_e4m3fnuz`.
    F8E4M3FNUZ = "float8_e4m3fnuz", Some(1), true;
    /// `torch.float8_e5m2fnuz`.
    F8E5M2FNUZ = "float8_e5m2fnuz", Some(1), true;
    /// `torch.float8_e8m0fnu`.
    F8E8M0FNU = "float8_e8m0fnu", Some(1), true;
    /// `torch.complex32` (chalf): no converter format holds it.
    C32 = "complex32", Some(4), false;
    /// `torch.bcomplex32`.
    BC32 = "bcomplex32", Some(4), false;
    /// `torch.float4_e2m1fn_x2`: two fp4 values per byte.
    F4E2M1FNX2 = "float4_e2m1fn_x2", Some(1), false;
    /// `torch.qint8` (quantized).
    QInt8 = "qint8", Some(1), false;
    /// `torch.quint8` (quantized).
    QUInt8 = "quint8", Some(1), false;
    /// `torch.qint32` (quantized).
    QInt32 = "qint32", Some(4), false;
    /// `torch.quint4x2` (quantized, packed).
    QUInt4x2 = "quint4x2", Some(1), false;
    /// `torch.quint2x4` (quantized, packed).
    QUInt2x4 = "quint2x4", Some(1), false;
    /// `torch.bits8` (opaque).
    Bits8 = "bits8", Some(1), false;
    /// `torch.bits16` (opaque).
    Bits16 = "bits16", Some(2), false;
    /// `torch.bits1x8` (opaque).
    Bits1x8 = "bits1x8", Some(1), false;
    /// `torch.bits2x4` (opaque).
    Bits2x4 = "bits2x4", Some(1), false;
    /// `torch.bits4x2` (opaque).
    Bits4x2 = "bits4x2", Some(1), false;
    /// `torch.uint1` (shell dtype).
    UInt1 = "uint1", None, false;
    /// `torch.uint2` (shell dtype).
    UInt2 = "uint2", None, false;
    /// `torch.uint3` (shell dtype).
    UInt3 = "uint3", None, false;
    /// `torch.uint4` (shell dtype).
    UInt4 = "uint4", None, false;
    /// `torch.uint5` (shell dtype).
    UInt5 = "uint5", None, false;
    /// `torch.uint6` (shell dtype).
    UInt6 = "uint6", None, false;
    /// `torch.uint7` (shell dtype).
    UInt7 = "uint7", None, false;
    /// `torch.int1` (shell dtype).
    Int1 = "int1", None, false;
    /// `torch.int2` (shell dtype).
    Int2 = "int2", None, false;
    /// `torch.int3` (shell dtype).
    Int3 = "int3", None, false;
    /// `torch.int4` (shell dtype).
    Int4 = "int4", None, false;
    /// `torch.int5` (shell dtype).
    Int5 = "int5", None, false;
    /// `torch.int6` (shell dtype).
    Int6 = "int6", None, false;
    /// `torch.int7` (shell dtype).
    Int7 = "int7", None, false;
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "torch.{}", self.torch_name())
    }
}

/// Legacy typed storage classes (`torch.FloatStorage`, ...) and their element dtype
/// (torch 2.x `storage.py::_dtype_to_storage_type_map`).
pub(crate) fn legacy_storage_dtype(class_name: &str) -> Option<Dtype> {
    Some(match class_name {
        "DoubleStorage" => Dtype::F64,
        "FloatStorage" => Dtype::F32,
        "HalfStorage" => Dtype::F16,
        "BFloat16Storage" => Dtype::BF16,
        "LongStorage" => Dtype::I64,
        "IntStorage" => Dtype::I32,
        "ShortStorage" => Dtype::I16,
        "CharStorage" => Dtype::I8,
        "ByteStorage" => Dtype::U8,
        "BoolStorage" => Dtype::Bool,
        "ComplexFloatStorage" => Dtype::C64,
        "ComplexDoubleStorage" => Dtype::C128,
        "QInt8Storage" => Dtype::QInt8,
        "QInt32Storage" => Dtype::QInt32,
        "QUInt8Storage" => Dtype::QUInt8,
        "QUInt4x2Storage" => Dtype::QUInt4x2,
        "QUInt2x4Storage" => Dtype::QUInt2x4,
        _ => return None,
    })
}

/// Byte order of a numpy dtype, from its pickled state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// `<`.
    Little,
    /// `>`.
    Big,
    /// `|`: single-byte or order-free types.
    NotApplicable,
}

/// The element type of a numpy dtype.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NumpyElement {
    /// A plain numeric type with a tensor equivalent.
    Numeric(Dtype),
    /// A type a tensor cannot hold: object (`O`), bytes/str (`S`, `U`), void/structured (`V`),
    /// datetime (`M`, `m`), long double (`f16`, `c32`), or a user type. The type string is kept
    /// for the error message.
    Unsupported(Box<str>),
}

/// A numpy dtype as a pickle describes it: type string and byte order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NumpyDtype {
    pub(crate) element: NumpyElement,
    pub(crate) type_string: Box<str>,
    pub(crate) itemsize: u64,
    pub(crate) byte_order: ByteOrder,
    pub(crate) built: bool,
}

impl NumpyDtype {
    /// From the first argument of `numpy.dtype(...)` (e.g. `f4`, `i8`, `b1`, `c16`, `U5`).
    pub(crate) fn from_type_string(s: &str) -> Option<NumpyDtype> {
        let kind = s.chars().next()?;
        let size_text = &s[kind.len_utf8()..];
        let size: u64 = if size_text.is_empty() {
            0
        } else {
            if !size_text.bytes().all(|b| b.is_ascii_digit()) || size_text.len() > 12 {
                return None;
            }
            size_text.parse().ok()?
        };
        let numeric = match (kind, size) {
            ('b', 1) => Some(Dtype::Bool),
            ('i', 1) => Some(Dtype::I8),
            ('i', 2) => Some(Dtype::I16),
            ('i', 4) => Some(Dtype::I32),
            ('i', 8) => Some(Dtype::I64),
            ('u', 1) => Some(Dtype::U8),
            ('u', 2) => Some(Dtype::U16),
            ('u', 4) => Some(Dtype::U32),
            ('u', 8) => Some(Dtype::U64),
            ('f', 2) => Some(Dtype::F16),
            ('f', 4) => Some(Dtype::F32),
            ('f', 8) => Some(Dtype::F64),
            ('c', 8) => Some(Dtype::C64),
            ('c', 16) => Some(Dtype::C128),
            _ => None,
        };
        // For `U` the pickled count is characters (4 bytes each).
        let itemsize = if kind == 'U' {
            size.checked_mul(4)?
        } else {
            size
        };
        if !matches!(
            kind,
            'b' | 'i' | 'u' | 'f' | 'c' | 'O' | 'S' | 'U' | 'V' | 'M' | 'm'
        ) {
            return None;
        }
        let single = itemsize <= 1 || matches!(kind, 'S' | 'V' | 'O' | 'b');
        Some(NumpyDtype {
            element: match numeric {
                Some(d) => NumpyElement::Numeric(d),
                None => NumpyElement::Unsupported(s.into()),
            },
            type_string: s.into(),
            itemsize,
            // Before BUILD a dtype is native; numpy always writes a BUILD with an explicit
            // order, and the value is replaced then.
            byte_order: if single {
                ByteOrder::NotApplicable
            } else {
                ByteOrder::Little
            },
            built: false,
        })
    }

    /// The element type.
    pub fn element(&self) -> &NumpyElement {
        &self.element
    }

    /// The tensor dtype, if the element type has one.
    pub fn dtype(&self) -> Option<Dtype> {
        match self.element {
            NumpyElement::Numeric(d) => Some(d),
            NumpyElement::Unsupported(_) => None,
        }
    }

    /// The numpy type string as pickled (`f4`, `i8`, ...).
    pub fn type_string(&self) -> &str {
        &self.type_string
    }

    /// Bytes per element.
    pub fn itemsize(&self) -> u64 {
        self.itemsize
    }

    /// Byte order of the data (`>` data must be byte-swapped per element, per component for
    /// complex types).
    pub fn byte_order(&self) -> ByteOrder {
        self.byte_order
    }
}

impl fmt::Display for NumpyDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let order = match self.byte_order {
            ByteOrder::Little => "<",
            ByteOrder::Big => ">",
            ByteOrder::NotApplicable => "|",
        };
        write!(f, "{order}{}", self.type_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for &d in Dtype::ALL {
            assert_eq!(Dtype::from_torch_name(d.torch_name()), Some(d));
        }
        assert_eq!(Dtype::from_torch_name("float"), None);
    }

    #[test]
    fn numpy_type_strings() {
        let d = NumpyDtype::from_type_string("f4").unwrap();
        assert_eq!(d.dtype(), Some(Dtype::F32));
        assert_eq!(d.itemsize(), 4);
        let u = NumpyDtype::from_type_string("U3").unwrap();
        assert_eq!(u.itemsize(), 12);
        assert!(u.dtype().is_none());
        assert!(NumpyDtype::from_type_string("q8").is_none());
        assert!(NumpyDtype::from_type_string("f4x").is_none());
    }
}
