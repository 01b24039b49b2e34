//! Blob encodings (spec §4): SHA-256 chunk digests, byte grouping and bounded zstd frames.

use crate::limits::CHUNK;
use crate::manifest::Digest;
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

/// SHA-256 of a byte slice.
pub fn sha256(bytes: &[u8]) -> Digest {
    Sha256::digest(bytes).into()
}

/// SHA-256 of each [`CHUNK`]-sized piece of `bytes`, computed in parallel.
pub fn chunk_digests(bytes: &[u8]) -> Vec<Digest> {
    bytes.par_chunks(CHUNK as usize).map(sha256).collect()
}

/// Byte-groups `input` with width `w` into `out` (spec §4.2): all first bytes of each element,
/// then all second bytes, and so on.
///
/// # Panics
/// If `input.len()` is not a multiple of `w` or `out` has a different length.
pub fn group(input: &[u8], w: usize, out: &mut [u8]) {
    assert_eq!(input.len(), out.len());
    assert_eq!(input.len() % w, 0);
    match w {
        1 => out.copy_from_slice(input),
        2 => group_by::<2>(input, out),
        4 => group_by::<4>(input, out),
        8 => group_by::<8>(input, out),
        16 => group_tiles::<16>(input, out),
        _ => {
            let m = input.len() / w;
            for (j, plane) in out.chunks_exact_mut(m.max(1)).enumerate().take(w) {
                for (i, b) in plane.iter_mut().enumerate() {
                    *b = input[i * w + j];
                }
            }
        }
    }
}

/// Inverts [`group`].
///
/// # Panics
/// If `input.len()` is not a multiple of `w` or `out` has a different length.
pub fn ungroup(input: &[u8], w: usize, out: &mut [u8]) {
    assert_eq!(input.len(), out.len());
    assert_eq!(input.len() % w, 0);
    match w {
        1 => out.copy_from_slice(input),
        2 => ungroup_by::<2>(input, out),
        4 => ungroup_by::<4>(input, out),
        8 => ungroup_by::<8>(input, out),
        16 => ungroup_tiles::<16>(input, out),
        _ => {
            let m = input.len() / w;
            for (j, plane) in input.chunks_exact(m.max(1)).enumerate().take(w) {
                for (i, &b) in plane.iter().enumerate() {
                    out[i * w + j] = b;
                }
            }
        }
    }
}

/// The `W` planes of a grouped buffer of `W × m` bytes.
fn planes_mut<const W: usize>(out: &mut [u8], m: usize) -> [&mut [u8]; W] {
    let mut rest = out;
    std::array::from_fn(|_| {
        let (plane, tail) = std::mem::take(&mut rest).split_at_mut(m);
        rest = tail;
        plane
    })
}

fn planes<const W: usize>(input: &[u8], m: usize) -> [&[u8]; W] {
    let mut rest = input;
    std::array::from_fn(|_| {
        let (plane, tail) = rest.split_at(m);
        rest = tail;
        plane
    })
}

// Element by element with the width a constant: the compiler turns the inner loop into shuffles
// of whole vectors (about twice the speed of a byte loop with a run-time width, measured on
// 16 MiB chunks). For width 16, whose inner loop does not vectorize that way, tiles of elements
// are transposed through a small buffer instead.

fn group_by<const W: usize>(input: &[u8], out: &mut [u8]) {
    let mut planes = planes_mut::<W>(out, input.len() / W);
    for (i, element) in input.chunks_exact(W).enumerate() {
        for (plane, &b) in planes.iter_mut().zip(element) {
            plane[i] = b;
        }
    }
}

fn ungroup_by<const W: usize>(input: &[u8], out: &mut [u8]) {
    let planes = planes::<W>(input, input.len() / W);
    for (i, element) in out.chunks_exact_mut(W).enumerate() {
        for (b, plane) in element.iter_mut().zip(&planes) {
            *b = plane[i];
        }
    }
}

/// Elements per tile in [`group_tiles`] and [`ungroup_tiles`].
const TILE: usize = 16;

fn group_tiles<const W: usize>(input: &[u8], out: &mut [u8]) {
    let m = input.len() / W;
    let mut planes = planes_mut::<W>(out, m);
    let tiles = m / TILE;
    for (t, tile) in input.chunks_exact(W * TILE).take(tiles).enumerate() {
        let mut rows = [[0u8; TILE]; W];
        for (i, element) in tile.chunks_exact(W).enumerate() {
            for (row, &b) in rows.iter_mut().zip(element) {
                row[i] = b;
            }
        }
        for (plane, row) in planes.iter_mut().zip(&rows) {
            plane[t * TILE..(t + 1) * TILE].copy_from_slice(row);
        }
    }
    for i in tiles * TILE..m {
        for (j, plane) in planes.iter_mut().enumerate() {
            plane[i] = input[i * W + j];
        }
    }
}

fn ungroup_tiles<const W: usize>(input: &[u8], out: &mut [u8]) {
    let m = input.len() / W;
    let planes = planes::<W>(input, m);
    let tiles = m / TILE;
    for (t, tile) in out.chunks_exact_mut(W * TILE).take(tiles).enumerate() {
        let mut rows = [[0u8; TILE]; W];
        for (row, plane) in rows.iter_mut().zip(&planes) {
            row.copy_from_slice(&plane[t * TILE..(t + 1) * TILE]);
        }
        for (i, element) in tile.chunks_exact_mut(W).enumerate() {
            for (b, row) in element.iter_mut().zip(&rows) {
                *b = row[i];
            }
        }
    }
    for i in tiles * TILE..m {
        for (j, plane) in planes.iter().enumerate() {
            out[i * W + j] = plane[i];
        }
    }
}

/// Groups one logical chunk and compresses it into one zstd frame that declares its content size.
pub(crate) fn compress_chunk(raw: &[u8], w: usize, level: i32) -> std::io::Result<Vec<u8>> {
    let mut grouped = vec![0u8; raw.len()];
    group(raw, w, &mut grouped);
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true))?;
    c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(false))?;
    c.compress(&grouped)
}

/// Decodes one frame into exactly `expected_len` logical bytes (spec §4.3).
///
/// The frame must be a single frame declaring `expected_len` as its content size; the output
/// buffer is allocated from the manifest's length, never from the frame's claims.
pub(crate) fn decompress_chunk(
    frame: &[u8],
    expected_len: usize,
    w: usize,
) -> Result<Vec<u8>, String> {
    match zstd::zstd_safe::find_frame_compressed_size(frame) {
        Ok(n) if n == frame.len() => {}
        Ok(n) => return Err(format!("frame is {n} bytes but {} are stored", frame.len())),
        Err(code) => {
            return Err(format!(
                "not a zstd frame: {}",
                zstd::zstd_safe::get_error_name(code)
            ));
        }
    }
    match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(n)) if n == expected_len as u64 => {}
        Ok(Some(n)) => {
            return Err(format!(
                "frame declares {n} bytes, the manifest {expected_len}"
            ));
        }
        Ok(None) => return Err("frame does not declare its content size".into()),
        Err(_) => return Err("frame header is invalid".into()),
    }
    let mut grouped = vec![0u8; expected_len];
    let mut d = zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?;
    let n = d
        .decompress_to_buffer(frame, &mut grouped[..])
        .map_err(|e| format!("zstd: {e}"))?;
    if n != expected_len {
        return Err(format!(
            "frame decoded to {n} bytes, expected {expected_len}"
        ));
    }
    if w == 1 {
        return Ok(grouped);
    }
    let mut out = vec![0u8; expected_len];
    ungroup(&grouped, w, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_matches_the_spec() {
        let input = [0u8, 1, 2, 3, 10, 11, 12, 13];
        let mut out = [0u8; 8];
        group(&input, 4, &mut out);
        assert_eq!(out, [0, 10, 1, 11, 2, 12, 3, 13]);
        let mut back = [0u8; 8];
        ungroup(&out, 4, &mut back);
        assert_eq!(back, input);
    }

    #[test]
    fn every_width_matches_the_definition() {
        // out[j·m + i] = in[i·w + j], for the fast widths, others, and lengths that are not a
        // whole number of tiles.
        for w in [1usize, 2, 3, 4, 8, 16, 5] {
            for elements in [0usize, 1, 7, 15, 16, 17, 33, 1000] {
                let n = elements * w;
                let input: Vec<u8> = (0..n).map(|i| (i * 37 + w) as u8).collect();
                let mut out = vec![0u8; n];
                group(&input, w, &mut out);
                for i in 0..elements {
                    for j in 0..w {
                        assert_eq!(out[j * elements + i], input[i * w + j], "w={w} n={n}");
                    }
                }
                let mut back = vec![0u8; n];
                ungroup(&out, w, &mut back);
                assert_eq!(back, input, "w={w} n={n}");
            }
        }
    }

    #[test]
    fn frames_round_trip_and_are_bounded() {
        let raw: Vec<u8> = (0..4096u32)
            .flat_map(|i| (i as f32 * 0.01).to_le_bytes())
            .collect();
        let frame = compress_chunk(&raw, 4, 1).unwrap();
        assert_eq!(decompress_chunk(&frame, raw.len(), 4).unwrap(), raw);
        assert!(
            decompress_chunk(&frame, raw.len() - 4, 4)
                .unwrap_err()
                .contains("declares")
        );
        let mut two = frame.clone();
        two.extend_from_slice(&frame);
        assert!(
            decompress_chunk(&two, raw.len(), 4)
                .unwrap_err()
                .contains("stored")
        );
        assert!(decompress_chunk(b"not zstd at all", 16, 1).is_err());
    }
}
