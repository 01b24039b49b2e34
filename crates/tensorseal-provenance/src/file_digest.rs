//! SHA-256 of what a reader yields, in bounded pieces: files for the audit log, attestations and
//! model-signing bundles.

use sha2::{Digest as _, Sha256};
use std::io::{self, Read};

/// The SHA-256 of everything `r` yields to its end, and how many bytes that was.
pub(crate) fn sha256_to_end(mut r: impl Read) -> io::Result<([u8; 32], u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok((h.finalize().into(), total));
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
}
