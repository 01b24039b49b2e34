//! Laying out a tensor view (storage, offset, shape, strides) as C-contiguous little-endian bytes,
//! piece by piece, so a view of any size is written with bounded memory.

use std::io;
use tensorseal::{BlobSource, DType};

/// A strided view of a storage record, with the transformations torch stores lazily.
///
/// # Invariants
/// Every element the view addresses lies inside `storage` (checked with checked arithmetic by
/// [`View::new`]); the byte size fits the format's limit; `conj`/`neg` are only set for dtypes
/// where they are defined.
#[derive(Debug, Clone)]
pub(crate) struct View<'a> {
    storage: &'a [u8],
    dtype: DType,
    offset: u64,
    shape: Vec<u64>,
    strides: Vec<u64>,
    big_endian: bool,
    conj: bool,
    neg: bool,
    byte_len: u64,
}

/// Why a view cannot be materialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ViewError {
    /// Shape and strides have different ranks.
    Rank { shape: usize, strides: usize },
    /// The byte size overflows or exceeds 2^62.
    TooLarge,
    /// An element lies outside the storage.
    OutOfBounds { last_byte: u64, storage: u64 },
    /// conj/neg on a dtype where torch never sets them.
    Transform { what: &'static str, dtype: DType },
}

impl std::fmt::Display for ViewError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ViewError::Rank { shape, strides } => {
                write!(f, "shape has {shape} dimensions but stride has {strides}")
            }
            ViewError::TooLarge => write!(f, "tensor byte size exceeds 2^62"),
            ViewError::OutOfBounds { last_byte, storage } => write!(
                f,
                "view reaches byte {last_byte} of a storage of {storage} bytes"
            ),
            ViewError::Transform { what, dtype } => {
                write!(f, "{what} bit set on a {dtype} tensor")
            }
        }
    }
}

impl<'a> View<'a> {
    /// Checks a view against its storage. `offset` and `strides` are in elements of `dtype`.
    pub(crate) fn new(
        storage: &'a [u8],
        dtype: DType,
        offset: u64,
        shape: Vec<u64>,
        strides: Vec<u64>,
    ) -> Result<View<'a>, ViewError> {
        if shape.len() != strides.len() {
            return Err(ViewError::Rank {
                shape: shape.len(),
                strides: strides.len(),
            });
        }
        let byte_len = dtype.byte_size(&shape).ok_or(ViewError::TooLarge)?;
        if byte_len > 0 {
            // Largest element index the view touches, then its last byte.
            let last = shape
                .iter()
                .zip(&strides)
                .try_fold(offset, |acc, (&size, &stride)| {
                    (size - 1)
                        .checked_mul(stride)
                        .and_then(|d| acc.checked_add(d))
                })
                .and_then(|e| e.checked_add(1))
                .and_then(|end| end.checked_mul(dtype.itemsize()));
            match last {
                Some(end) if end <= storage.len() as u64 => {}
                Some(end) => {
                    return Err(ViewError::OutOfBounds {
                        last_byte: end - 1,
                        storage: storage.len() as u64,
                    });
                }
                None => return Err(ViewError::TooLarge),
            }
        }
        Ok(View {
            storage,
            dtype,
            offset,
            shape,
            strides,
            big_endian: false,
            conj: false,
            neg: false,
            byte_len,
        })
    }

    /// The storage holds big-endian elements that must be swapped.
    pub(crate) fn big_endian(mut self, big: bool) -> Self {
        self.big_endian = big && self.dtype.swap_width() > 1;
        self
    }

    /// Applies torch's lazy conjugate bit (complex only; a no-op on real dtypes, as in torch).
    pub(crate) fn conj(mut self, conj: bool) -> Result<Self, ViewError> {
        self.conj = conj && matches!(self.dtype, DType::C64 | DType::C128);
        Ok(self)
    }

    /// Applies torch's lazy negation bit (signed and floating dtypes).
    pub(crate) fn neg(mut self, neg: bool) -> Result<Self, ViewError> {
        if neg && negation(self.dtype).is_none() {
            return Err(ViewError::Transform {
                what: "neg",
                dtype: self.dtype,
            });
        }
        self.neg = neg;
        Ok(self)
    }

    /// Size of the materialized bytes.
    pub(crate) fn byte_len(&self) -> u64 {
        self.byte_len
    }

    /// The bytes as they already are in the storage, when the view is C-contiguous and needs no
    /// transformation: such views are written without a copy.
    pub(crate) fn contiguous_slice(&self) -> Option<&'a [u8]> {
        if self.big_endian || self.conj || self.neg {
            return None;
        }
        let mut expected = 1u64;
        for (&size, &stride) in self.shape.iter().zip(&self.strides).rev() {
            if size > 1 && stride != expected {
                return None;
            }
            expected = expected.saturating_mul(size);
        }
        let start = (self.offset * self.dtype.itemsize()) as usize;
        Some(&self.storage[start..start + self.byte_len as usize])
    }

    /// Writes the view's elements `first .. first + out.len() / itemsize` (in C order) into
    /// `out`, in storage byte order.
    fn gather(&self, first: u64, out: &mut [u8]) {
        let item = self.dtype.itemsize() as usize;
        let count = (out.len() / item) as u64;
        if count == 0 {
            return;
        }
        let rank = self.shape.len();
        // Multi-index of the first element (C order: last dimension fastest).
        let mut index = vec![0u64; rank];
        let mut rest = first;
        for d in (0..rank).rev() {
            index[d] = rest % self.shape[d];
            rest /= self.shape[d];
        }
        let mut written = 0u64;
        while written < count {
            let src_elem = self.offset
                + index
                    .iter()
                    .zip(&self.strides)
                    .map(|(i, s)| i * s)
                    .sum::<u64>();
            // Run along the last dimension.
            let (run, stride) = match rank {
                0 => (1, 1),
                _ => (
                    (self.shape[rank - 1] - index[rank - 1]).min(count - written),
                    self.strides[rank - 1],
                ),
            };
            let dst = &mut out[(written as usize) * item..((written + run) as usize) * item];
            let src = (src_elem as usize) * item;
            if stride == 1 {
                dst.copy_from_slice(&self.storage[src..src + dst.len()]);
            } else {
                for (k, chunk) in dst.chunks_exact_mut(item).enumerate() {
                    let at = src + k * (stride as usize) * item;
                    chunk.copy_from_slice(&self.storage[at..at + item]);
                }
            }
            written += run;
            // Advance the odometer past the run.
            if rank > 0 {
                index[rank - 1] += run;
                for d in (1..rank).rev() {
                    if index[d] < self.shape[d] {
                        break;
                    }
                    index[d] = 0;
                    index[d - 1] += 1;
                }
            }
        }
    }

    fn transform(&self, out: &mut [u8]) {
        if self.big_endian {
            for component in out.chunks_exact_mut(self.dtype.swap_width() as usize) {
                component.reverse();
            }
        }
        if self.conj {
            // Imaginary parts are the second half of each element; flip their sign bit.
            let item = self.dtype.itemsize() as usize;
            for element in out.chunks_exact_mut(item) {
                element[item - 1] ^= 0x80;
            }
        }
        if self.neg
            && let Some(negate) = negation(self.dtype)
        {
            negate(out, self.dtype);
        }
    }
}

type Negate = fn(&mut [u8], DType);

/// How to negate elements of a dtype in little-endian byte form, if torch can set its neg bit.
fn negation(dtype: DType) -> Option<Negate> {
    match dtype {
        DType::F16
        | DType::BF16
        | DType::F32
        | DType::F64
        | DType::C64
        | DType::C128
        | DType::F8E4M3Fn
        | DType::F8E5M2 => {
            Some(|out, dtype| {
                // IEEE-style formats: flip the sign bit of every component.
                for c in out.chunks_exact_mut(dtype.swap_width() as usize) {
                    let last = c.len() - 1;
                    c[last] ^= 0x80;
                }
            })
        }
        DType::I8 | DType::I16 | DType::I32 | DType::I64 => Some(|out, dtype| {
            for c in out.chunks_exact_mut(dtype.itemsize() as usize) {
                // Two's complement negation, wrapping like torch: invert and add one.
                let mut carry = true;
                for b in c.iter_mut() {
                    let (v, c2) = (!*b).overflowing_add(u8::from(carry));
                    *b = v;
                    carry = c2;
                }
            }
        }),
        _ => None,
    }
}

impl BlobSource for View<'_> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let item = self.dtype.itemsize();
        let end = offset.checked_add(buf.len() as u64);
        if !offset.is_multiple_of(item)
            || !(buf.len() as u64).is_multiple_of(item)
            || end.is_none_or(|e| e > self.byte_len)
        {
            return Err(io::Error::other(
                "view read outside the tensor or not on element boundaries",
            ));
        }
        self.gather(offset / item, buf);
        self.transform(buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn all(view: &mut View<'_>) -> Vec<u8> {
        let mut out = vec![0u8; view.byte_len() as usize];
        view.read_at(0, &mut out).unwrap();
        out
    }

    #[test]
    fn contiguous_views_are_zero_copy() {
        let storage = f32s(&[0., 1., 2., 3., 4., 5., 6.]);
        let v = View::new(&storage, DType::F32, 1, vec![2, 3], vec![3, 1]).unwrap();
        assert_eq!(v.contiguous_slice().unwrap(), &storage[4..28]);
        // Dimensions of size 1 may have any stride.
        let v = View::new(&storage, DType::F32, 0, vec![1, 3], vec![99, 1]).unwrap();
        assert!(v.contiguous_slice().is_some());
    }

    #[test]
    fn transposes_slices_and_expands() {
        let storage = f32s(&[0., 1., 2., 3., 4., 5.]);
        // [[0,1,2],[3,4,5]].T
        let mut t = View::new(&storage, DType::F32, 0, vec![3, 2], vec![1, 3]).unwrap();
        assert!(t.contiguous_slice().is_none());
        assert_eq!(all(&mut t), f32s(&[0., 3., 1., 4., 2., 5.]));
        // Column 1.
        let mut c = View::new(&storage, DType::F32, 1, vec![2], vec![3]).unwrap();
        assert_eq!(all(&mut c), f32s(&[1., 4.]));
        // Stride 0: element 2 expanded to [2, 3].
        let mut e = View::new(&storage, DType::F32, 2, vec![2, 3], vec![0, 0]).unwrap();
        assert_eq!(all(&mut e), f32s(&[2.; 6]));
        // 0-d.
        let mut s = View::new(&storage, DType::F32, 5, vec![], vec![]).unwrap();
        assert_eq!(all(&mut s), f32s(&[5.]));
    }

    #[test]
    fn reads_in_pieces_match_one_read() {
        let storage: Vec<u8> = (0..=255).collect();
        let mut v = View::new(&storage, DType::U8, 3, vec![4, 5, 6], vec![1, 24, 4])
            .unwrap_or_else(|e| panic!("{e}"));
        let whole = all(&mut v);
        let mut pieces = vec![0u8; whole.len()];
        for (i, chunk) in pieces.chunks_mut(7).enumerate() {
            v.read_at(i as u64 * 7, chunk).unwrap();
        }
        assert_eq!(pieces, whole);
        assert_eq!(whole[0], 3);
        assert_eq!(whole[1], 3 + 4); // last dimension has stride 4
    }

    #[test]
    fn out_of_bounds_views_are_refused() {
        let storage = f32s(&[0.; 4]);
        assert!(matches!(
            View::new(&storage, DType::F32, 1, vec![4], vec![1]),
            Err(ViewError::OutOfBounds { .. })
        ));
        assert!(matches!(
            View::new(&storage, DType::F32, 0, vec![2, 2], vec![3, 1]),
            Err(ViewError::OutOfBounds { .. })
        ));
        assert!(matches!(
            View::new(&storage, DType::F32, u64::MAX, vec![1], vec![1]),
            Err(ViewError::TooLarge)
        ));
        assert!(matches!(
            View::new(&storage, DType::F32, 0, vec![1 << 40, 1 << 40], vec![0, 0]),
            Err(ViewError::TooLarge)
        ));
        // Zero-size views touch nothing, wherever they point.
        assert_eq!(
            View::new(&storage, DType::F32, 1000, vec![0, 3], vec![3, 1])
                .unwrap()
                .byte_len(),
            0
        );
    }

    #[test]
    fn byte_swap_conj_and_neg() {
        let be: Vec<u8> = [1i32, -2].iter().flat_map(|x| x.to_be_bytes()).collect();
        let mut v = View::new(&be, DType::I32, 0, vec![2], vec![1])
            .unwrap()
            .big_endian(true);
        assert_eq!(
            all(&mut v),
            [1i32, -2]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<_>>()
        );
        let c: Vec<u8> = [1.0f32, 2.0, 3.0, -4.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let mut conj = View::new(&c, DType::C64, 0, vec![2], vec![1])
            .unwrap()
            .conj(true)
            .unwrap();
        assert_eq!(all(&mut conj), f32s(&[1.0, -2.0, 3.0, 4.0]));
        let mut neg = View::new(&c, DType::C64, 0, vec![2], vec![1])
            .unwrap()
            .neg(true)
            .unwrap();
        assert_eq!(all(&mut neg), f32s(&[-1.0, -2.0, -3.0, 4.0]));
        let ints: Vec<u8> = [5i16, i16::MIN]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let mut n = View::new(&ints, DType::I16, 0, vec![2], vec![1])
            .unwrap()
            .neg(true)
            .unwrap();
        assert_eq!(
            all(&mut n),
            [-5i16, i16::MIN]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<_>>()
        );
        assert!(
            View::new(&ints, DType::U16, 0, vec![1], vec![1])
                .unwrap()
                .neg(true)
                .is_err()
        );
        // Big-endian complex128 swaps each 8-byte component.
        let cbe: Vec<u8> = [1.5f64, -0.5]
            .iter()
            .flat_map(|x| x.to_be_bytes())
            .collect();
        let mut v = View::new(&cbe, DType::C128, 0, vec![], vec![])
            .unwrap()
            .big_endian(true);
        assert_eq!(
            all(&mut v),
            [1.5f64, -0.5]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<_>>()
        );
    }
}
