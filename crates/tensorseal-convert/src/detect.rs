//! Recognising the input format from its content, never from its file name (scanner research
//! C1, C8: a pickle renamed `.safetensors` or `.bin` must be treated as a pickle).

use crate::error::DetectError;
use crate::json_strict::{self, JsonValue};
use crate::limits::Limits;
use crate::zip::ZipArchive;

/// What a file is, judged from its first bytes (and, for JSON, its parsed content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A zip archive (`PK\x03\x04` at offset 0): a torch checkpoint, TorchScript or `.npz`;
    /// parse it with [`ZipArchive::new`] and decide with [`zip_kind`].
    Zip,
    /// A numpy `.npy` array (`\x93NUMPY`).
    Npy,
    /// A safetensors file: an 8-byte little-endian header length that fits the file, then `{`.
    Safetensors,
    /// torch's legacy format (`_use_new_zipfile_serialization=False`): the protocol-2 pickle of
    /// the magic number `0x1950a86a20f9469cfc6c`, then four more pickles and the storages.
    TorchLegacy,
    /// A pickle stream (`PROTO n` or a protocol 0/1 opcode first). torch legacy files saved with
    /// another `pickle_protocol` also start this way: the pickle layer decides by reading the
    /// first pickle's value.
    Pickle {
        /// The `PROTO` argument, `None` for protocol 0/1 streams (no `PROTO` opcode).
        protocol: Option<u8>,
    },
    /// A Hugging Face sharded-checkpoint index: a JSON object with a `weight_map`.
    HfIndex,
    /// torch's pre-0.1.10 tar format (POSIX `ustar` at offset 257).
    TorchTar,
    /// Already a tensorseal file.
    Tensorseal,
    /// A `torch.distributed.checkpoint` folder (`FileSystemWriter`): `.metadata` and `*.distcp`
    /// files. Recognised from the folder, never from a file's bytes.
    Dcp,
}

impl Format {
    /// Short name, as used for the `source_format` metadata where it applies (spec §5).
    pub fn name(self) -> &'static str {
        match self {
            Format::Zip => "zip",
            Format::Npy => "npy",
            Format::Safetensors => "safetensors",
            Format::TorchLegacy => "torch-legacy",
            Format::Pickle { .. } => "pickle",
            Format::HfIndex => "hf-index",
            Format::TorchTar => "torch-tar",
            Format::Tensorseal => "tensorseal",
            Format::Dcp => "dcp",
        }
    }
}

/// What a zip archive holds, decided by its member names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZipKind {
    /// A `torch.save` archive (`<prefix>/data.pkl`); read it with
    /// [`TorchZip::new`](crate::TorchZip::new), which applies the strict layout rules.
    TorchZip,
    /// A `torch.jit.save` archive (`constants.pkl`, `code/`): refused by the converter.
    TorchScript,
    /// A numpy `.npz` archive of `.npy` members.
    Npz,
}

impl ZipKind {
    /// Short name, as used for the `source_format` metadata (spec §5).
    pub fn name(self) -> &'static str {
        match self {
            ZipKind::TorchZip => "torch-zip",
            ZipKind::TorchScript => "torchscript",
            ZipKind::Npz => "npz",
        }
    }
}

/// The 15 bytes of torch's legacy magic-number pickle: `PROTO 2`, `LONG1` of 10 bytes, `STOP`.
pub const TORCH_LEGACY_MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
];

const COMPRESSED: &[(&[u8], &str)] = &[
    (b"\x1f\x8b", "gzip"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"Rar!\x1a\x07", "rar"),
];

/// First opcodes of a protocol 0/1 pickle that pushes a value: MARK, EMPTY_DICT/LIST/TUPLE,
/// NONE, the int/long/float/string opcodes, GLOBAL, PERSID.
const PICKLE_OPENERS: &[u8] = b"(}])NIJKLMFGSTUVXcP";

/// Recognises the format of `bytes` from its content.
///
/// JSON is parsed (up to [`Limits::max_index_size`] bytes) to tell an HF index from other JSON;
/// everything else is decided by magic numbers and, for safetensors, the header length.
///
/// # Errors
/// * [`DetectError::Empty`] for an empty file;
/// * [`DetectError::Compressed`] for gzip, bzip2, xz, zstd, lz4, 7z and rar ("decompress it
///   first", never done automatically);
/// * [`DetectError::PrependedZip`] when a zip archive ends the file but does not start it;
/// * [`DetectError::UnknownJson`] for JSON that is not an HF index;
/// * [`DetectError::Unknown`] otherwise, with the first bytes.
pub fn detect(bytes: &[u8], limits: &Limits) -> Result<Format, DetectError> {
    if bytes.is_empty() {
        return Err(DetectError::Empty);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return Ok(Format::Zip);
    }
    if bytes.starts_with(b"\x93NUMPY") {
        return Ok(Format::Npy);
    }
    if bytes.starts_with(&tensorseal::MAGIC) {
        return Ok(Format::Tensorseal);
    }
    for (magic, kind) in COMPRESSED {
        if bytes.starts_with(magic) {
            return Err(DetectError::Compressed { kind });
        }
    }
    if bytes.len() >= 4 && &bytes[..3] == b"BZh" && (b'1'..=b'9').contains(&bytes[3]) {
        return Err(DetectError::Compressed { kind: "bzip2" });
    }
    if bytes.starts_with(&TORCH_LEGACY_MAGIC) {
        return Ok(Format::TorchLegacy);
    }
    if bytes[0] == 0x80 && bytes.len() >= 2 && bytes[1] <= 5 {
        return Ok(Format::Pickle {
            protocol: Some(bytes[1]),
        });
    }
    if bytes.get(257..262) == Some(b"ustar") {
        return Ok(Format::TorchTar);
    }
    if looks_like_safetensors(bytes) {
        return Ok(Format::Safetensors);
    }
    let text = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if text.trim_ascii_start().starts_with(b"{") {
        return detect_json(text, limits);
    }
    // Before the protocol 0/1 guess, whose opener bytes are also common in text and junk.
    if let Some(prefix_len) = prepended_zip(bytes) {
        return Err(DetectError::PrependedZip { prefix_len });
    }
    if PICKLE_OPENERS.contains(&bytes[0]) {
        return Ok(Format::Pickle { protocol: None });
    }
    Err(DetectError::Unknown {
        head: bytes[..bytes.len().min(16)].to_vec(),
    })
}

/// Whether the first 8 bytes are a header length that fits the file and the header starts
/// with `{`.
pub(crate) fn looks_like_safetensors(bytes: &[u8]) -> bool {
    let Some(head) = bytes.get(..8) else {
        return false;
    };
    let n = u64::from_le_bytes(head.try_into().expect("8 bytes"));
    n >= 2 && n <= bytes.len() as u64 - 8 && bytes[8] == b'{'
}

fn detect_json(text: &[u8], limits: &Limits) -> Result<Format, DetectError> {
    let unknown = |what: String| DetectError::UnknownJson { what };
    if text.len() as u64 > limits.max_index_size {
        return Err(unknown(format!(
            "{} bytes, over the index limit of {}",
            text.len(),
            limits.max_index_size
        )));
    }
    let text = std::str::from_utf8(text).map_err(|e| unknown(format!("not UTF-8: {e}")))?;
    match json_strict::parse(text, limits.max_json_depth) {
        Ok(JsonValue::Object(members)) if members.iter().any(|(k, _)| k == "weight_map") => {
            Ok(Format::HfIndex)
        }
        Ok(_) => Err(unknown("no \"weight_map\" member".into())),
        Err(e) => Err(unknown(format!("invalid JSON: {e:?}"))),
    }
}

/// Where the zip archive that ends `bytes` starts, if one does and it does not start at 0.
fn prepended_zip(bytes: &[u8]) -> Option<u64> {
    if !crate::zip::ends_like_zip(bytes) {
        return None;
    }
    let first = bytes
        .windows(4)
        .position(|w| w == b"PK\x03\x04")
        .unwrap_or(bytes.len());
    Some(first as u64)
}

/// Decides what a parsed zip archive holds from its member names.
///
/// # Errors
/// [`DetectError::UnknownZip`] when it has neither a `data.pkl` nor `.npy` members.
pub fn zip_kind(zip: &ZipArchive<'_>) -> Result<ZipKind, DetectError> {
    let names = || zip.entries().iter().map(|e| e.name());
    let under_folder = |name: &str| name.split_once('/').map(|(_, rest)| rest.to_owned());
    if names().any(|n| {
        under_folder(n)
            .is_some_and(|r| r == "constants.pkl" || r == "bytecode.pkl" || r.starts_with("code/"))
    }) {
        return Ok(ZipKind::TorchScript);
    }
    if names().any(|n| n == "data.pkl" || n.ends_with("/data.pkl")) {
        return Ok(ZipKind::TorchZip);
    }
    if names().any(|n| n.ends_with(".npy")) {
        return Ok(ZipKind::Npz);
    }
    let some: Vec<&str> = names().take(5).collect();
    Err(DetectError::UnknownZip {
        what: format!("no data.pkl and no .npy member (members: {some:?}...)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(bytes: &[u8]) -> Result<Format, DetectError> {
        detect(bytes, &Limits::default())
    }

    #[test]
    fn magic_numbers() {
        assert_eq!(d(b"PK\x03\x04rest").unwrap(), Format::Zip);
        assert_eq!(d(b"\x93NUMPY\x01\x00").unwrap(), Format::Npy);
        assert_eq!(d(&TORCH_LEGACY_MAGIC).unwrap(), Format::TorchLegacy);
        assert_eq!(
            d(b"\x80\x04\x95").unwrap(),
            Format::Pickle { protocol: Some(4) }
        );
        assert_eq!(d(b"(dp0\n.").unwrap(), Format::Pickle { protocol: None });
        assert!(matches!(d(b""), Err(DetectError::Empty)));
        for (bytes, kind) in [
            (&b"\x1f\x8b\x08\x00"[..], "gzip"),
            (b"7z\xbc\xaf\x27\x1c\x00\x04", "7z"),
            (b"BZh91AY", "bzip2"),
            (b"\xfd7zXZ\x00\x00", "xz"),
            (b"\x28\xb5\x2f\xfd\x00", "zstd"),
        ] {
            let e = d(bytes).unwrap_err();
            assert!(
                matches!(e, DetectError::Compressed { kind: k } if k == kind),
                "{e}"
            );
            assert!(e.to_string().contains("decompress it first"));
        }
        assert!(matches!(d(b"hello"), Err(DetectError::Unknown { .. })));
    }

    #[test]
    fn safetensors_and_json() {
        let mut st = 4u64.to_le_bytes().to_vec();
        st.extend_from_slice(b"{}  ");
        assert_eq!(d(&st).unwrap(), Format::Safetensors);
        assert_eq!(
            d(b" {\"metadata\": {}, \"weight_map\": {}}").unwrap(),
            Format::HfIndex
        );
        assert!(matches!(
            d(b"{\"a\": 1}"),
            Err(DetectError::UnknownJson { .. })
        ));
        assert!(matches!(
            d(b"{\"weight_map\": 1, \"weight_map\": 2}"),
            Err(DetectError::UnknownJson { .. })
        ));
    }
}
