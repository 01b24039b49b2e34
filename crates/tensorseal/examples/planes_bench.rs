//! Measures the plane codec (spec §4.4) against the format's byte-grouped zstd on one raw
//! little-endian tensor file, 16 MiB chunk by 16 MiB chunk as the format codes them:
//! `planes_bench FILE bf16|f32|bytesN`. Used by bench/compress.sh; figures go to BENCHMARKS.md.
//!
//! Speeds are MiB/s of logical bytes, best of three runs. "1 core" codes the chunks one after
//! another on this thread; "all cores" decodes them in parallel on rayon's pool, as verification
//! does, over the file tiled to 16 chunks (tANS codes each chunk alone, so tiling cannot help it).
//! Decoding writes into a reused buffer, as a loader decodes into a tensor's memory; every
//! result is compared with the input afterwards.

use rayon::prelude::*;
use std::time::Instant;
use tensorseal::planes::{PlaneLayout, decode_chunk, decode_chunk_into, encode_chunk};

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::MAX;
    let mut out = None;
    for _ in 0..runs {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64());
        out = Some(r);
    }
    (best, out.expect("at least one run"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, kind] = &args[..] else {
        return Err("usage: planes_bench FILE bf16|f32|bytesN".into());
    };
    let layout = match kind.as_str() {
        "bf16" => PlaneLayout::Bf16,
        "f32" => PlaneLayout::F32,
        k => PlaneLayout::Bytes(k.trim_start_matches("bytes").parse()?),
    };
    let w = layout.width();
    let raw = std::fs::read(path)?;
    let chunk = tensorseal::CHUNK as usize;
    let mib = raw.len() as f64 / (1 << 20) as f64;
    let chunks: Vec<&[u8]> = raw.chunks(chunk).collect();

    let (enc, streams) = best_of(3, || {
        chunks
            .iter()
            .map(|c| encode_chunk(c, layout, 1))
            .collect::<Result<Vec<_>, _>>()
    });
    let streams = streams?;
    let mut buf = vec![0u8; chunk.min(raw.len())];
    let (dec, ok) = best_of(3, || {
        streams
            .iter()
            .zip(&chunks)
            .try_for_each(|(s, c)| decode_chunk_into(s, &mut buf[..c.len()]))
    });
    ok?;
    for (s, c) in streams.iter().zip(&chunks) {
        assert_eq!(&decode_chunk(s, c.len())?, c, "round trip");
    }
    let size: usize = streams.iter().map(Vec::len).sum();

    // All cores: the file tiled to 16 whole chunks of whole elements.
    let tile: Vec<u8> = raw.iter().copied().cycle().take(16 * chunk).collect();
    let tiled: Vec<Vec<u8>> = tile
        .par_chunks(chunk)
        .map(|c| encode_chunk(c, layout, 1))
        .collect::<Result<_, _>>()?;
    let (par, ok) = best_of(3, || {
        tiled.par_iter().try_for_each(|s| {
            let mut out = vec![0u8; chunk];
            decode_chunk_into(s, &mut out)
        })
    });
    ok?;
    println!(
        "planes            : ratio {:.3}  compress {:>4.0} MiB/s  decode {:>4.0} MiB/s 1 core, {:>4.0} MiB/s all {} cores",
        raw.len() as f64 / size as f64,
        mib / enc,
        mib / dec,
        16.0 * chunk as f64 / (1 << 20) as f64 / par,
        rayon::current_num_threads()
    );

    for level in [1, 3, 19] {
        let runs = if level == 19 { 1 } else { 3 };
        let (enc, frames) = best_of(runs, || {
            chunks
                .iter()
                .map(|c| {
                    let mut g = vec![0u8; c.len()];
                    tensorseal::group(c, w, &mut g);
                    zstd::bulk::compress(&g, level)
                })
                .collect::<Result<Vec<_>, _>>()
        });
        let frames = frames?;
        let mut g = vec![0u8; chunk.min(raw.len())];
        let (dec, ok) = best_of(3, || {
            frames.iter().zip(&chunks).try_for_each(|(f, c)| {
                let n = zstd::bulk::decompress_to_buffer(f, &mut g[..c.len()])?;
                tensorseal::ungroup(&g[..n], w, &mut buf[..n]);
                std::io::Result::Ok(())
            })
        });
        ok?;
        let size: usize = frames.iter().map(Vec::len).sum();
        println!(
            "grouped zstd {level:>2}   : ratio {:.3}  compress {:>4.0} MiB/s  decode {:>4.0} MiB/s 1 core",
            raw.len() as f64 / size as f64,
            mib / enc,
            mib / dec
        );
    }
    Ok(())
}
