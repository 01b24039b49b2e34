//! Measures the plane codec against byte-grouped zstd on one raw little-endian tensor file,
//! one 16 MiB chunk at a time on one core: `planes_bench FILE bf16|f32|bytesN [LEVEL]`.
//! Used by bench/compress.sh; figures go to BENCHMARKS.md.

use std::time::Instant;
use tensorseal::planes::{PlaneLayout, decode_chunk, decode_chunk_into, encode_chunk};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, kind, rest @ ..] = &args[..] else {
        return Err("usage: planes_bench FILE bf16|f32|bytesN [LEVEL]".into());
    };
    let level: i32 = rest.first().map_or(Ok(1), |l| l.parse())?;
    let layout = match kind.as_str() {
        "bf16" => PlaneLayout::Bf16,
        "f32" => PlaneLayout::F32,
        k => PlaneLayout::Bytes(k.trim_start_matches("bytes").parse()?),
    };
    let w = match layout {
        PlaneLayout::Bf16 => 2,
        PlaneLayout::F32 => 4,
        PlaneLayout::Bytes(w) => usize::from(w),
    };
    let raw = std::fs::read(path)?;
    let chunk = tensorseal::CHUNK as usize / w * w;
    let mib = raw.len() as f64 / (1 << 20) as f64;

    // Best of three runs, one 16 MiB chunk at a time; decoding writes into a buffer reused
    // across chunks, as a loader decodes into a tensor's memory. Checked for equality after.
    let mut streams = Vec::new();
    let mut enc = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        streams = raw
            .chunks(chunk)
            .map(|c| encode_chunk(c, layout, level))
            .collect::<Result<Vec<_>, _>>()?;
        enc = enc.min(t.elapsed().as_secs_f64());
    }
    let mut buf = vec![0u8; chunk.min(raw.len())];
    let mut dec = f64::MAX;
    let repeats: usize =
        std::env::var("PLANES_BENCH_REPEATS").map_or(3, |r| r.parse().unwrap_or(3));
    for _ in 0..repeats {
        let t = Instant::now();
        for (s, c) in streams.iter().zip(raw.chunks(chunk)) {
            decode_chunk_into(s, &mut buf[..c.len()])?;
        }
        dec = dec.min(t.elapsed().as_secs_f64());
    }
    for (s, c) in streams.iter().zip(raw.chunks(chunk)) {
        assert_eq!(decode_chunk(s, c.len())?, c, "round trip");
    }
    let size: usize = streams.iter().map(Vec::len).sum();
    println!(
        "planes    level {level:>2}: ratio {:.3}  compress {:.0} MiB/s  decode {:.0} MiB/s (1 core)",
        raw.len() as f64 / size as f64,
        mib / enc,
        mib / dec
    );

    let t = Instant::now();
    let mut grouped_size = 0;
    let mut frames = Vec::new();
    for c in raw.chunks(chunk) {
        let mut g = vec![0u8; c.len()];
        tensorseal::group(c, w, &mut g);
        let f = zstd::bulk::compress(&g, level)?;
        grouped_size += f.len();
        frames.push(f);
    }
    let enc = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for (f, c) in frames.iter().zip(raw.chunks(chunk)) {
        let g = zstd::bulk::decompress(f, c.len())?;
        let mut out = vec![0u8; c.len()];
        tensorseal::ungroup(&g, w, &mut out);
        assert_eq!(out, c, "round trip");
    }
    let dec = t.elapsed().as_secs_f64();
    println!(
        "grouped   level {level:>2}: ratio {:.3}  compress {:.0} MiB/s  decode {:.0} MiB/s (1 core, incl. compare)",
        raw.len() as f64 / grouped_size as f64,
        mib / enc,
        mib / dec
    );
    Ok(())
}
