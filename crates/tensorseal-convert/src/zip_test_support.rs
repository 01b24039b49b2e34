//! A tiny zip writer for tests, examples and fuzz seeds. Not part of the supported API.
//!
//! It writes exactly what it is told, including inconsistent archives, so that tests can build
//! each container trick on its own.

use miniz_oxide::deflate::compress_to_vec;

/// One member as the builder will write it; tests edit the fields to build broken archives.
#[derive(Debug, Clone)]
pub struct EntrySpec {
    /// Central directory name.
    pub name: String,
    /// The bytes written as the member's data (compressed for deflate).
    pub data: Vec<u8>,
    /// Declared uncompressed size.
    pub size: u64,
    /// Declared CRC-32.
    pub crc: u32,
    /// Compression method (0 stored, 8 deflate).
    pub method: u16,
    /// General-purpose flags (central, and local unless `local_flags`).
    pub flags: u16,
    /// Name written in the local header, if different.
    pub local_name: Option<String>,
    /// Flags written in the local header, if different.
    pub local_flags: Option<u16>,
    /// Write torch-style: flag bit 3, zero CRC/sizes locally, a 16-byte descriptor after
    /// non-empty data.
    pub descriptor: bool,
    /// How the entry uses ZIP64 extra fields.
    pub zip64: Zip64Entry,
}

/// ZIP64 layouts of one entry (sizes here are small; the fields are saturated anyway, as
/// writers may do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zip64Entry {
    /// No ZIP64 extra fields.
    #[default]
    No,
    /// Sizes and offset saturated in the central record with a 24-byte extra; sizes saturated
    /// in the local header with a 16-byte extra (size, then compressed size or 0 with a
    /// descriptor); 24-byte descriptor.
    Full,
    /// What torch (miniz) writes for a record beyond 4 GiB: the local extra holds only the
    /// 8-byte header offset, local sizes 0, the central record saturates only the offset;
    /// 24-byte descriptor.
    TorchOffsetOnly,
}

/// Builds zip archives byte by byte.
#[derive(Debug, Default, Clone)]
pub struct ZipBuilder {
    entries: Vec<EntrySpec>,
    comment: Vec<u8>,
    zip64: bool,
    junk_before_cd: usize,
    zip64_entries: Option<u64>,
}

/// A stored zip of `(name, data)` members with correct CRCs.
pub fn stored_zip(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = ZipBuilder::new();
    for (name, data) in members {
        b = b.stored(name, data);
    }
    b.build()
}

impl ZipBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a stored member.
    pub fn stored(self, name: &str, data: &[u8]) -> Self {
        self.stored_with(name, data, |_| {})
    }

    /// Adds a stored member, letting `edit` change its fields.
    pub fn stored_with(
        mut self,
        name: &str,
        data: &[u8],
        edit: impl FnOnce(&mut EntrySpec),
    ) -> Self {
        let mut e = EntrySpec {
            name: name.into(),
            data: data.to_vec(),
            size: data.len() as u64,
            crc: crc32fast::hash(data),
            method: 0,
            flags: 0,
            local_name: None,
            local_flags: None,
            descriptor: false,
            zip64: Zip64Entry::No,
        };
        edit(&mut e);
        self.entries.push(e);
        self
    }

    /// Adds a deflated member.
    pub fn deflated(self, name: &str, data: &[u8]) -> Self {
        self.deflated_with(name, data, |_| {})
    }

    /// Adds a deflated member, letting `edit` change its fields.
    pub fn deflated_with(
        mut self,
        name: &str,
        data: &[u8],
        edit: impl FnOnce(&mut EntrySpec),
    ) -> Self {
        let mut e = EntrySpec {
            name: name.into(),
            data: compress_to_vec(data, 6),
            size: data.len() as u64,
            crc: crc32fast::hash(data),
            method: 8,
            flags: 0,
            local_name: None,
            local_flags: None,
            descriptor: false,
            zip64: Zip64Entry::No,
        };
        edit(&mut e);
        self.entries.push(e);
        self
    }

    /// Sets the archive comment.
    pub fn comment(mut self, comment: &[u8]) -> Self {
        self.comment = comment.to_vec();
        self
    }

    /// Ends the archive with ZIP64 end records (as torch always does).
    pub fn zip64_end(mut self) -> Self {
        self.zip64 = true;
        self
    }

    /// Writes `n` zero bytes between the last member and the central directory.
    pub fn junk_before_cd(mut self, n: usize) -> Self {
        self.junk_before_cd = n;
        self
    }

    /// Writes this entry count in the ZIP64 record instead of the real one.
    pub fn tamper_zip64_entries(mut self, n: u64) -> Self {
        self.zip64_entries = Some(n);
        self
    }

    /// Writes the archive.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut offsets = Vec::new();
        for e in &self.entries {
            offsets.push(out.len() as u32);
            let flags = e.flags | if e.descriptor { 0x8 } else { 0 };
            let local_name = e.local_name.as_deref().unwrap_or(&e.name);
            out.extend_from_slice(b"PK\x03\x04");
            out.extend_from_slice(&20u16.to_le_bytes());
            out.extend_from_slice(&e.local_flags.unwrap_or(flags).to_le_bytes());
            out.extend_from_slice(&e.method.to_le_bytes());
            out.extend_from_slice(&[0, 0, 0x21, 0]); // time, date (1980-01-01)
            let (crc, mut cs, mut us) = if e.descriptor {
                (0, 0, 0)
            } else {
                (e.crc, e.data.len() as u32, e.size as u32)
            };
            let offset = *offsets.last().expect("pushed above");
            let mut extra = Vec::new();
            match e.zip64 {
                Zip64Entry::No => {}
                Zip64Entry::Full => {
                    (cs, us) = (u32::MAX, u32::MAX);
                    extra.extend_from_slice(&1u16.to_le_bytes());
                    extra.extend_from_slice(&16u16.to_le_bytes());
                    extra.extend_from_slice(&e.size.to_le_bytes());
                    let csize = if e.descriptor { 0 } else { e.data.len() as u64 };
                    extra.extend_from_slice(&csize.to_le_bytes());
                }
                Zip64Entry::TorchOffsetOnly => {
                    extra.extend_from_slice(&1u16.to_le_bytes());
                    extra.extend_from_slice(&8u16.to_le_bytes());
                    extra.extend_from_slice(&u64::from(offset).to_le_bytes());
                }
            }
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&cs.to_le_bytes());
            out.extend_from_slice(&us.to_le_bytes());
            out.extend_from_slice(&(local_name.len() as u16).to_le_bytes());
            out.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            out.extend_from_slice(local_name.as_bytes());
            out.extend_from_slice(&extra);
            out.extend_from_slice(&e.data);
            if e.descriptor && !e.data.is_empty() {
                out.extend_from_slice(b"PK\x07\x08");
                out.extend_from_slice(&e.crc.to_le_bytes());
                if e.zip64 == Zip64Entry::No {
                    out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
                    out.extend_from_slice(&(e.size as u32).to_le_bytes());
                } else {
                    out.extend_from_slice(&(e.data.len() as u64).to_le_bytes());
                    out.extend_from_slice(&e.size.to_le_bytes());
                }
            }
        }
        out.extend(std::iter::repeat_n(0u8, self.junk_before_cd));
        let cd_offset = out.len() as u32;
        for (e, off) in self.entries.iter().zip(&offsets) {
            let flags = e.flags | if e.descriptor { 0x8 } else { 0 };
            out.extend_from_slice(b"PK\x01\x02");
            out.extend_from_slice(&20u16.to_le_bytes());
            out.extend_from_slice(&20u16.to_le_bytes());
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(&e.method.to_le_bytes());
            out.extend_from_slice(&[0, 0, 0x21, 0]);
            let (mut cs, mut us, mut lho) = (e.data.len() as u32, e.size as u32, *off);
            let mut extra = Vec::new();
            match e.zip64 {
                Zip64Entry::No => {}
                Zip64Entry::Full => {
                    (cs, us, lho) = (u32::MAX, u32::MAX, u32::MAX);
                    extra.extend_from_slice(&1u16.to_le_bytes());
                    extra.extend_from_slice(&24u16.to_le_bytes());
                    extra.extend_from_slice(&e.size.to_le_bytes());
                    extra.extend_from_slice(&(e.data.len() as u64).to_le_bytes());
                    extra.extend_from_slice(&u64::from(*off).to_le_bytes());
                }
                Zip64Entry::TorchOffsetOnly => {
                    lho = u32::MAX;
                    extra.extend_from_slice(&1u16.to_le_bytes());
                    extra.extend_from_slice(&8u16.to_le_bytes());
                    extra.extend_from_slice(&u64::from(*off).to_le_bytes());
                }
            }
            out.extend_from_slice(&e.crc.to_le_bytes());
            out.extend_from_slice(&cs.to_le_bytes());
            out.extend_from_slice(&us.to_le_bytes());
            out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            out.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            out.extend_from_slice(&[0; 6]); // comment, disk, internal attributes
            out.extend_from_slice(&[0; 4]); // external attributes
            out.extend_from_slice(&lho.to_le_bytes());
            out.extend_from_slice(e.name.as_bytes());
            out.extend_from_slice(&extra);
        }
        let cd_size = out.len() as u32 - cd_offset;
        let n = self.entries.len() as u16;
        if self.zip64 {
            let rec = out.len() as u64;
            out.extend_from_slice(b"PK\x06\x06");
            out.extend_from_slice(&44u64.to_le_bytes());
            out.extend_from_slice(&[45, 0, 45, 0]);
            out.extend_from_slice(&[0; 8]);
            let entries = self.zip64_entries.unwrap_or(u64::from(n));
            out.extend_from_slice(&entries.to_le_bytes());
            out.extend_from_slice(&entries.to_le_bytes());
            out.extend_from_slice(&u64::from(cd_size).to_le_bytes());
            out.extend_from_slice(&u64::from(cd_offset).to_le_bytes());
            out.extend_from_slice(b"PK\x06\x07");
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&rec.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
        }
        out.extend_from_slice(b"PK\x05\x06");
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&cd_size.to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&(self.comment.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.comment);
        out
    }
}
