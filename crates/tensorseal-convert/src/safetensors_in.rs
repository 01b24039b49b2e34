//! safetensors files as converter input.
//!
//! The `safetensors` crate does the validation it is known for (offsets contiguous from 0,
//! sizes matching shapes, no trailing bytes). Before it, a strict pass over the JSON header
//! refuses what the crate lets through: a key that appears twice (serde keeps one silently, so
//! two readers could see different tensors; formats brief §1.3), unknown fields in a tensor
//! entry, nesting beyond a bound. A file whose content is another format (a pickle renamed
//! `.safetensors`) is refused as such.

use crate::detect;
use crate::error::SafetensorsError;
use crate::json_strict::{self, JsonValue, StrictJsonError};
use crate::limits::{self, Limits};
use safetensors::{Dtype, SafeTensors};
use tensorseal::DType;

/// A safetensors file checked by the strict pre-pass and by the `safetensors` crate.
#[derive(Debug)]
pub struct SafetensorsFile<'a> {
    tensors: Vec<SafetensorsTensor<'a>>,
    metadata: Option<Vec<(String, String)>>,
    header_len: u64,
}

/// One tensor of a [`SafetensorsFile`].
#[derive(Debug, Clone)]
pub struct SafetensorsTensor<'a> {
    name: String,
    dtype: DType,
    shape: Vec<u64>,
    data: &'a [u8],
    data_offset: u64,
}

impl<'a> SafetensorsTensor<'a> {
    /// The tensor's name (the JSON key).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Shape, outermost first.
    pub fn shape(&self) -> &[u64] {
        &self.shape
    }

    /// The tensor's bytes (C order, little-endian), a zero-copy slice of the input.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Absolute offset of the data in the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }
}

/// The tensorseal dtype of a safetensors dtype; `None` for sub-byte types (F4, F6_*).
pub fn dtype_from_safetensors(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::BOOL => DType::Bool,
        Dtype::U8 => DType::U8,
        Dtype::I8 => DType::I8,
        Dtype::F8_E5M2 => DType::F8E5M2,
        Dtype::F8_E4M3 => DType::F8E4M3Fn,
        Dtype::F8_E8M0 => DType::F8E8M0Fnu,
        Dtype::F8_E4M3FNUZ => DType::F8E4M3Fnuz,
        Dtype::F8_E5M2FNUZ => DType::F8E5M2Fnuz,
        Dtype::I16 => DType::I16,
        Dtype::U16 => DType::U16,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::I32 => DType::I32,
        Dtype::U32 => DType::U32,
        Dtype::F32 => DType::F32,
        Dtype::C64 => DType::C64,
        Dtype::F64 => DType::F64,
        Dtype::I64 => DType::I64,
        Dtype::U64 => DType::U64,
        _ => return None,
    })
}

/// The safetensors dtype of a tensorseal dtype; `None` for complex128, which safetensors lacks.
pub fn dtype_to_safetensors(d: DType) -> Option<Dtype> {
    Some(match d {
        DType::Bool => Dtype::BOOL,
        DType::U8 => Dtype::U8,
        DType::I8 => Dtype::I8,
        DType::F8E5M2 => Dtype::F8_E5M2,
        DType::F8E4M3Fn => Dtype::F8_E4M3,
        DType::F8E8M0Fnu => Dtype::F8_E8M0,
        DType::F8E4M3Fnuz => Dtype::F8_E4M3FNUZ,
        DType::F8E5M2Fnuz => Dtype::F8_E5M2FNUZ,
        DType::I16 => Dtype::I16,
        DType::U16 => Dtype::U16,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I32 => Dtype::I32,
        DType::U32 => Dtype::U32,
        DType::F32 => Dtype::F32,
        DType::C64 => Dtype::C64,
        DType::F64 => Dtype::F64,
        DType::I64 => Dtype::I64,
        DType::U64 => Dtype::U64,
        _ => return None,
    })
}

/// The dtype names of the safetensors JSON header, with the tensorseal dtype (or `None` for
/// types tensorseal cannot hold).
fn dtype_by_name(name: &str) -> Option<Option<DType>> {
    const SUB_BYTE: &[&str] = &["F4", "F6_E2M3", "F6_E3M2"];
    if SUB_BYTE.contains(&name) {
        return Some(None);
    }
    let d = match name {
        "BOOL" => Dtype::BOOL,
        "U8" => Dtype::U8,
        "I8" => Dtype::I8,
        "F8_E5M2" => Dtype::F8_E5M2,
        "F8_E4M3" => Dtype::F8_E4M3,
        "F8_E8M0" => Dtype::F8_E8M0,
        "F8_E4M3FNUZ" => Dtype::F8_E4M3FNUZ,
        "F8_E5M2FNUZ" => Dtype::F8_E5M2FNUZ,
        "I16" => Dtype::I16,
        "U16" => Dtype::U16,
        "F16" => Dtype::F16,
        "BF16" => Dtype::BF16,
        "I32" => Dtype::I32,
        "U32" => Dtype::U32,
        "F32" => Dtype::F32,
        "C64" => Dtype::C64,
        "F64" => Dtype::F64,
        "I64" => Dtype::I64,
        "U64" => Dtype::U64,
        _ => return None,
    };
    Some(dtype_from_safetensors(d))
}

/// What the strict pass learned about one tensor entry.
struct Declared {
    name: String,
    dtype: DType,
    shape: Vec<u64>,
}

impl<'a> SafetensorsFile<'a> {
    /// Parses and validates a whole safetensors file.
    ///
    /// # Errors
    /// * [`SafetensorsError::NotSafetensors`]: the content is another format (detected from
    ///   the bytes, e.g. a pickle);
    /// * [`SafetensorsError::HeaderLength`]: the 8-byte length (offset 0) does not fit;
    /// * [`SafetensorsError::Limit`]: the header is over [`Limits::max_safetensors_header`],
    ///   too deep, has too many tensors or dimensions;
    /// * [`SafetensorsError::Header`]: not UTF-8 JSON, not an object, a tensor entry with
    ///   missing, mistyped or unknown fields, an unknown dtype (with the offset in the file);
    /// * [`SafetensorsError::DuplicateKey`]: a key twice in one JSON object;
    /// * [`SafetensorsError::UnsupportedDtype`]: F4, F6_E2M3, F6_E3M2;
    /// * [`SafetensorsError::Invalid`]: what the `safetensors` crate refuses (offsets that
    ///   overlap, leave holes, do not match the shape, or do not end the file).
    pub fn parse(
        bytes: &'a [u8],
        limits: &Limits,
    ) -> Result<SafetensorsFile<'a>, SafetensorsError> {
        let file_len = bytes.len() as u64;
        if !detect::looks_like_safetensors(bytes) {
            if let Ok(other) = detect::detect(bytes, limits)
                && other != detect::Format::Safetensors
            {
                return Err(SafetensorsError::NotSafetensors {
                    found: other.name().to_owned(),
                });
            }
            let len = bytes
                .get(..8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
            if len >= 2 && len <= file_len.saturating_sub(8) {
                return Err(SafetensorsError::Header {
                    key: None,
                    offset: 8,
                    what: "the header does not start with '{'".into(),
                });
            }
            return Err(SafetensorsError::HeaderLength { len, file_len });
        }
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        limits::check(
            "max_safetensors_header",
            n,
            limits.max_safetensors_header,
            0,
        )?;
        let header = &bytes[8..8 + n as usize];
        let text = std::str::from_utf8(header).map_err(|e| SafetensorsError::Header {
            key: None,
            offset: 8 + e.valid_up_to() as u64,
            what: "the header is not UTF-8".into(),
        })?;
        let value = json_strict::parse(text, limits.max_json_depth).map_err(|e| match e {
            StrictJsonError::Duplicate { key, offset } => SafetensorsError::DuplicateKey {
                key,
                offset: 8 + offset,
            },
            StrictJsonError::Depth { offset, limit } => {
                SafetensorsError::Limit(crate::LimitExceeded {
                    what: "max_json_depth",
                    value: limit + 1,
                    limit,
                    offset: 8 + offset,
                })
            }
            StrictJsonError::Syntax { offset, what } => SafetensorsError::Header {
                key: None,
                offset: 8 + offset,
                what,
            },
        })?;
        let (declared, metadata) = check_schema(value, limits)?;

        let (crate_n, meta) =
            SafeTensors::read_metadata(bytes).map_err(SafetensorsError::Invalid)?;
        let data_start = 8 + crate_n as u64;
        let mut tensors = Vec::with_capacity(declared.len());
        for d in declared {
            let info = meta.info(&d.name).ok_or_else(|| {
                SafetensorsError::Invalid(safetensors::SafeTensorError::TensorNotFound(
                    d.name.clone(),
                ))
            })?;
            // The crate checked shape, dtype and offsets; both readings must agree.
            let shape: Vec<u64> = info.shape.iter().map(|&x| x as u64).collect();
            if shape != d.shape || dtype_from_safetensors(info.dtype) != Some(d.dtype) {
                return Err(SafetensorsError::Header {
                    key: Some(d.name),
                    offset: 8,
                    what: "the safetensors crate read this entry differently".into(),
                });
            }
            let (start, end) = info.data_offsets;
            let data_offset = data_start + start as u64;
            let data: &'a [u8] = &bytes[data_offset as usize..data_start as usize + end];
            tensors.push(SafetensorsTensor {
                name: d.name,
                dtype: d.dtype,
                shape,
                data,
                data_offset,
            });
        }
        Ok(SafetensorsFile {
            tensors,
            metadata,
            header_len: n,
        })
    }

    /// The tensors, in header (JSON) order.
    pub fn tensors(&self) -> &[SafetensorsTensor<'a>] {
        &self.tensors
    }

    /// The `__metadata__` map in header order, if the file has one.
    pub fn metadata(&self) -> Option<&[(String, String)]> {
        self.metadata.as_deref()
    }

    /// Length of the JSON header (the data starts at `8 + header_len`).
    pub fn header_len(&self) -> u64 {
        self.header_len
    }
}

type Schema = (Vec<Declared>, Option<Vec<(String, String)>>);

/// Checks the header's shape: an object of tensor entries `{dtype, shape, data_offsets}` and
/// an optional `__metadata__` object of strings. Offsets here are approximate (the header).
fn check_schema(value: JsonValue, limits: &Limits) -> Result<Schema, SafetensorsError> {
    let bad = |key: Option<&str>, what: String| SafetensorsError::Header {
        key: key.map(str::to_owned),
        offset: 8,
        what,
    };
    let JsonValue::Object(members) = value else {
        return Err(bad(
            None,
            format!("the header is {}, not an object", value.kind()),
        ));
    };
    limits::check("max_tensors", members.len() as u64, limits.max_tensors, 8)?;
    let mut declared = Vec::with_capacity(members.len());
    let mut metadata = None;
    for (key, v) in members {
        if key == "__metadata__" {
            let JsonValue::Object(entries) = v else {
                return Err(bad(Some(&key), format!("__metadata__ is {}", v.kind())));
            };
            let mut m = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let JsonValue::String(s) = v else {
                    return Err(bad(
                        Some(&k),
                        format!(
                            "__metadata__ values must be strings, this one is {}",
                            v.kind()
                        ),
                    ));
                };
                m.push((k, s));
            }
            metadata = Some(m);
            continue;
        }
        let JsonValue::Object(fields) = v else {
            return Err(bad(
                Some(&key),
                format!("the entry is {}, not an object", v.kind()),
            ));
        };
        let (mut dtype, mut shape, mut offsets) = (None, None, None);
        for (f, fv) in fields {
            match f.as_str() {
                "dtype" => dtype = Some(fv),
                "shape" => shape = Some(fv),
                "data_offsets" => offsets = Some(fv),
                other => {
                    return Err(bad(
                        Some(&key),
                        format!("unknown field {other:?} in a tensor entry"),
                    ));
                }
            }
        }
        let Some(JsonValue::String(dtype_name)) = dtype else {
            return Err(bad(Some(&key), "missing or non-string \"dtype\"".into()));
        };
        let dtype = match dtype_by_name(&dtype_name) {
            Some(Some(d)) => d,
            Some(None) => {
                return Err(SafetensorsError::UnsupportedDtype {
                    name: key,
                    dtype: dtype_name,
                });
            }
            None => return Err(bad(Some(&key), format!("unknown dtype {dtype_name:?}"))),
        };
        let Some(JsonValue::Array(dims)) = shape else {
            return Err(bad(Some(&key), "missing or non-array \"shape\"".into()));
        };
        limits::check("max_rank", dims.len() as u64, limits.max_rank, 8)?;
        let shape = dims
            .iter()
            .map(JsonValue::as_u64)
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(|| {
                bad(
                    Some(&key),
                    "a dimension is not a non-negative integer".into(),
                )
            })?;
        match offsets {
            Some(JsonValue::Array(o)) if o.len() == 2 && o.iter().all(|x| x.as_u64().is_some()) => {
            }
            _ => {
                return Err(bad(
                    Some(&key),
                    "\"data_offsets\" is not a pair of non-negative integers".into(),
                ));
            }
        }
        declared.push(Declared {
            name: key,
            dtype,
            shape,
        });
    }
    Ok((declared, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn parse(header: &str, data: &[u8]) -> Result<usize, SafetensorsError> {
        let bytes = file(header, data);
        SafetensorsFile::parse(&bytes, &Limits::default()).map(|f| f.tensors().len())
    }

    #[test]
    fn strict_header() {
        assert_eq!(
            parse(
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                &[0; 8]
            )
            .unwrap(),
            1
        );
        let e = parse(
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            &[0; 8],
        )
        .unwrap_err();
        assert!(
            matches!(e, SafetensorsError::DuplicateKey { ref key, .. } if key == "a"),
            "{e}"
        );
        let e = parse(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}"#,
            &[0; 8],
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = parse(
            r#"{"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}"#,
            &[0; 1],
        )
        .unwrap_err();
        assert!(
            matches!(e, SafetensorsError::UnsupportedDtype { .. }),
            "{e}"
        );
        let e = parse(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            &[0; 9],
        )
        .unwrap_err();
        assert!(matches!(e, SafetensorsError::Invalid(_)), "{e}");
        let e = parse(r#"{"__metadata__":{"k":1}}"#, &[]).unwrap_err();
        assert!(e.to_string().contains("strings"), "{e}");
    }

    #[test]
    fn dtype_tables_agree() {
        for d in DType::ALL {
            if let Some(s) = dtype_to_safetensors(d) {
                assert_eq!(dtype_from_safetensors(s), Some(d));
                assert_eq!(dtype_by_name(&s.to_string()), Some(Some(d)));
            } else {
                assert_eq!(d, DType::C128);
            }
        }
    }
}
