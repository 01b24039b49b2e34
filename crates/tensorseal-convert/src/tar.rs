//! A strict reader for the POSIX tar archives torch's pre-0.1.10 checkpoints are: the members
//! `torch_tar` then reads.

use crate::error::ConvertError;

/// One regular-file member of a tar archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TarMember<'a> {
    pub(crate) name: String,
    pub(crate) offset: u64,
    pub(crate) data: &'a [u8],
}

fn invalid(offset: usize, what: impl Into<String>) -> ConvertError {
    ConvertError::Invalid {
        member: "tar archive".into(),
        path: format!("offset {offset}"),
        what: what.into(),
    }
}

fn octal(field: &[u8], offset: usize, what: &str) -> Result<u64, ConvertError> {
    // Numeric fields are octal ASCII padded with spaces or NULs on either side.
    let text = std::str::from_utf8(field)
        .map_err(|_| invalid(offset, format!("{what} is not ASCII")))?
        .trim_matches(|c| c == '\0' || c == ' ');
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8)
        .map_err(|_| invalid(offset, format!("{what} {text:?} is not an octal number")))
}

/// Checks a PAX extended header's `"<len> <key>=<value>\n"` records: well formed, and none of
/// the keys that change which bytes a member is or what it is called.
fn pax_records(data: &[u8], offset: usize) -> Result<(), ConvertError> {
    let mut at = 0usize;
    while at < data.len() {
        let rest = &data[at..];
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| invalid(offset + at, "malformed PAX record"))?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|t| t.parse().ok())
            .filter(|&l| l > space + 1 && l <= rest.len())
            .ok_or_else(|| invalid(offset + at, "malformed PAX record length"))?;
        let record = &rest[space + 1..len];
        let (Some(b'\n'), Some(eq)) = (record.last(), record.iter().position(|&b| b == b'='))
        else {
            return Err(invalid(offset + at, "malformed PAX record"));
        };
        let key = String::from_utf8_lossy(&record[..eq]);
        if matches!(key.as_ref(), "path" | "linkpath" | "size") || key.starts_with("GNU.sparse") {
            return Err(invalid(
                offset + at,
                format!("PAX record {key:?} is refused (it would change what a member is)"),
            ));
        }
        at += len;
    }
    Ok(())
}

/// The members of a POSIX (ustar) archive: regular files and PAX headers only, checksums valid,
/// names without traversal, the archive ending with its zero blocks and nothing after them but
/// zero padding.
pub(crate) fn members(bytes: &[u8]) -> Result<Vec<TarMember<'_>>, ConvertError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    loop {
        let header = bytes
            .get(at..at + 512)
            .ok_or_else(|| invalid(at, "truncated header"))?;
        if header.iter().all(|&b| b == 0) {
            // End of archive: the rest must be zero blocks.
            if let Some(i) = bytes[at..].iter().position(|&b| b != 0) {
                return Err(invalid(at + i, "data after the end of the archive"));
            }
            return Ok(out);
        }
        let stored = octal(&header[148..156], at + 148, "checksum")?;
        let sum: u64 = header
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        if stored != sum {
            return Err(invalid(
                at,
                format!("header checksum {stored} does not match {sum}"),
            ));
        }
        let name_end = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = std::str::from_utf8(&header[..name_end])
            .map_err(|_| invalid(at, "member name is not UTF-8"))?;
        if name.is_empty()
            || name.starts_with('/')
            || name.split('/').any(|s| s == "..")
            || name.contains('\\')
        {
            return Err(invalid(at, format!("member name {name:?} is refused")));
        }
        let size = octal(&header[124..136], at + 124, "size")?;
        let kind = header[156];
        let data_start = at + 512;
        let data_end = usize::try_from(size)
            .ok()
            .and_then(|s| data_start.checked_add(s))
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| {
                invalid(
                    at,
                    format!("member {name:?} of {size} bytes runs past the end"),
                )
            })?;
        match kind {
            b'0' | 0 => out.push(TarMember {
                name: name.to_string(),
                offset: data_start as u64,
                data: &bytes[data_start..data_end],
            }),
            // PAX extended headers: metadata only. Records that would rename a member or change
            // its size are refused, as Python's tarfile (torch's reader) would obey them and
            // see other members than this reader does.
            b'x' | b'g' => pax_records(&bytes[data_start..data_end], data_start)?,
            other => {
                return Err(invalid(
                    at,
                    format!("member {name:?} has unsupported type {:?}", other as char),
                ));
            }
        }
        let padded = data_end.div_ceil(512) * 512;
        if padded > bytes.len() {
            return Err(invalid(data_end, "truncated member padding"));
        }
        at = padded;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: usize, kind: u8) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[148..156].fill(b' ');
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h
    }

    fn archive(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut v = Vec::new();
        for (name, data) in members {
            v.extend(header(name, data.len(), b'0'));
            v.extend_from_slice(data);
            v.resize(v.len().div_ceil(512) * 512, 0);
        }
        v.extend([0u8; 1024]);
        v
    }

    #[test]
    fn reads_members_and_refuses_tricks() {
        let a = archive(&[("pickle", b"abc"), ("tensors", b"")]);
        let m = members(&a).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].data, b"abc");
        let mut bad = a.clone();
        bad[0] = b'X';
        assert!(members(&bad).unwrap_err().to_string().contains("checksum"));
        let mut trailing = a.clone();
        trailing.push(1);
        assert!(
            members(&trailing)
                .unwrap_err()
                .to_string()
                .contains("after the end")
        );
        assert!(members(&archive(&[("../x", b"")])).is_err());
        // PAX metadata is fine; renaming or resizing a member through PAX is not.
        let pax = |rec: &[u8]| {
            let mut v = header("././@PaxHeader", rec.len(), b'x');
            v.extend_from_slice(rec);
            v.resize(1024, 0);
            v.extend(archive(&[("pickle", b"abc")]));
            v
        };
        assert_eq!(members(&pax(b"11 mtime=0\n")).unwrap().len(), 1);
        for rec in [
            &b"16 path=tensors\n"[..],
            b"11 size=99\n",
            b"9 mtime=0",
            b"99 x=1\n",
        ] {
            assert!(members(&pax(rec)).is_err(), "{rec:?}");
        }
        assert!(members(&a[..600]).is_err());
    }
}
