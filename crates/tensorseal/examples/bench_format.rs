//! Measurements of the format's hot paths, driven by `bench/format.sh` (which also times `cp` and
//! `openssl dgst -sha256` on the same files). Build with `--release`; every command prints one
//! `key=value` line per figure (seconds are medians over `--runs`).
//!
//! ```text
//! bench_format write  OUT [--zstd] [--runs N]  1 GiB of float32 weights: 3 x 256 MiB, 60 x 4 MiB,
//!                                              4096 x 4 KiB, generated in memory before timing
//! bench_format verify FILE [--runs N]          open_verified (every digest, the signature)
//! bench_format many   OUT [--tensors N]        a state-dict-like file of N small tensors
//! bench_format open   FILE [--runs N]          Checkpoint::open (full structural validation),
//!                                              and open_verified
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use tensorseal::*;

/// The key the bench signs with and verifies against. Not a secret: a fixed seed.
fn key() -> SecretKey {
    SecretKey::from_seed(&[42; 32])
}

fn arg<T: std::str::FromStr>(args: &[String], flag: &str, default: T) -> T {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time (user + system, all threads) this process has used, from /proc/self/stat, in
/// seconds; 0 where that file does not exist. Less sensitive than wall time to other processes
/// sharing the machine.
fn cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    // Clock ticks: 100 per second on Linux.
    f.iter().sum::<f64>() / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Flushes dirty pages so that one run's write-back does not land in the next run's timing.
fn sync() {
    let _ = std::process::Command::new("sync").status();
}

/// Reads a file once so that it is in the page cache, as for the reference tools.
fn warm(path: &Path) {
    let _ = std::fs::read(path).map(|v| std::hint::black_box(v.len()));
}

/// Weights that look trained: roughly normal, standard deviation about 0.02 (xorshift, sum of
/// four uniforms), so that zstd finds what it finds in real checkpoints: the exponents.
fn weights(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(n * 4);
    for _ in 0..n {
        let mut s = 0.0f32;
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s += (x >> 40) as f32 / (1u64 << 24) as f32;
        }
        out.extend_from_slice(&((s - 2.0) * 0.035).to_le_bytes());
    }
    out
}

/// The 1 GiB layout: (name, shape) of every tensor.
fn layout() -> Vec<(String, Vec<u64>)> {
    let mut t = Vec::new();
    for i in 0..3 {
        t.push((format!("embed.{i}.weight"), vec![16384, 4096]));
    }
    for i in 0..60 {
        t.push((
            format!("layers.{}.mlp.{}.weight", i / 2, i % 2),
            vec![1024, 1024],
        ));
    }
    for i in 0..4096 {
        t.push((
            format!("layers.{}.norm.{}.weight", i / 16, i % 16),
            vec![1024],
        ));
    }
    t
}

fn write(out: &Path, compression: Compression, runs: usize) {
    let tensors = layout();
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .enumerate()
        .map(|(i, (_, shape))| weights(shape.iter().product::<u64>() as usize, i as u64))
        .collect();
    let total: usize = data.iter().map(Vec::len).sum();
    assert_eq!(total, 1 << 30);
    let key = key();
    let mut times = Vec::new();
    let mut finishes = Vec::new();
    let mut cpus = Vec::new();
    for _ in 0..runs {
        let _ = std::fs::remove_file(out);
        sync();
        let cpu = cpu_s();
        let start = Instant::now();
        let options = WriteOptions {
            compression,
            ..Default::default()
        };
        let mut w = Writer::create(out, options).unwrap();
        let mut root = Vec::new();
        for ((name, shape), bytes) in tensors.iter().zip(&data) {
            let b = w.write_blob(bytes, DType::F32).unwrap();
            let t = Tensor::new(DType::F32, shape.clone(), Some(b));
            root.push((Node::Str(name.clone()), Node::Tensor(Box::new(t))));
        }
        let mut meta = BTreeMap::new();
        meta.insert("producer".to_string(), "bench_format".to_string());
        let finish = Instant::now();
        w.finish(Node::Dict(root), meta, &[&key]).unwrap();
        finishes.push(finish.elapsed().as_secs_f64());
        times.push(start.elapsed().as_secs_f64());
        cpus.push(cpu_s() - cpu);
    }
    let len = std::fs::metadata(out).unwrap().len();
    let s = median(times);
    println!("write_s={s:.4}");
    println!("write_finish_s={:.4}", median(finishes));
    println!("write_cpu_s={:.2}", median(cpus));
    println!("write_bytes={len}");
    println!("logical_bytes={total}");
    println!("write_mb_s={:.0}", total as f64 / s / 1e6);
}

fn verify(path: &Path, runs: usize) {
    let policy = TrustPolicy::trusting(vec![key().public_key()]);
    let mut times = Vec::new();
    let mut cpus = Vec::new();
    let mut hashed = 0;
    for _ in 0..runs {
        warm(path);
        let cpu = cpu_s();
        let start = Instant::now();
        let (_, report) = Checkpoint::open_verified(path, &policy, &Limits::default()).unwrap();
        times.push(start.elapsed().as_secs_f64());
        cpus.push(cpu_s() - cpu);
        hashed = report.bytes_hashed;
    }
    let s = median(times);
    println!("verify_s={s:.4}");
    println!("verify_cpu_s={:.2}", median(cpus));
    println!("verify_bytes_hashed={hashed}");
    println!(
        "verify_mb_s={:.0}",
        std::fs::metadata(path).unwrap().len() as f64 / s / 1e6
    );
}

fn many(out: &Path, n: usize) {
    let _ = std::fs::remove_file(out);
    let mut w = Writer::create(out, WriteOptions::default()).unwrap();
    // A nested state dict: model.layers[i] -> {attn: {q,k,v,o}, mlp: {up,down}, norms...}.
    let per_layer = 10;
    let mut layers = Vec::new();
    let mut written = 0;
    let mut i = 0;
    while written < n {
        let mut entries = Vec::new();
        for j in 0..per_layer.min(n - written) {
            let shape = vec![8, 8];
            let b = w
                .write_blob(&weights(64, (i * 16 + j) as u64), DType::F32)
                .unwrap();
            let mut t = Tensor::new(DType::F32, shape, Some(b));
            t.kind = TensorKind::Parameter;
            t.requires_grad = true;
            entries.push((Node::Str(format!("p{j}")), Node::Tensor(Box::new(t))));
            written += 1;
        }
        layers.push((Node::Int((i as i64).into()), Node::Dict(entries)));
        i += 1;
    }
    let root = Node::Dict(vec![(
        Node::Str("model".into()),
        Node::Typed(Box::new(Typed::OrderedDict {
            items: layers,
            attrs: vec![],
        })),
    )]);
    w.finish(root, BTreeMap::new(), &[&key()]).unwrap();
    println!("many_tensors={n}");
    println!("many_bytes={}", std::fs::metadata(out).unwrap().len());
}

fn open(path: &Path, runs: usize) {
    warm(path);
    let policy = TrustPolicy::trusting(vec![key().public_key()]);
    let mut opens = Vec::new();
    let mut verified = Vec::new();
    let mut tensors = 0;
    let mut open_cpu = 0.0;
    for _ in 0..runs {
        let cpu = cpu_s();
        let start = Instant::now();
        let ckpt = Checkpoint::open(path, &Limits::default()).unwrap();
        opens.push(start.elapsed().as_secs_f64());
        open_cpu += cpu_s() - cpu;
        tensors = std::hint::black_box(ckpt.root().tensors().len());
        drop(ckpt);
        let start = Instant::now();
        let _ = Checkpoint::open_verified(path, &policy, &Limits::default()).unwrap();
        verified.push(start.elapsed().as_secs_f64());
    }
    println!("open_tensors={tensors}");
    println!("open_ms={:.2}", median(opens) * 1e3);
    // CPU ticks are 10 ms: the mean over all runs, not a median.
    println!("open_cpu_ms={:.1}", open_cpu / runs as f64 * 1e3);
    println!("open_verified_ms={:.2}", median(verified) * 1e3);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(cmd), Some(path)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: bench_format write|verify|many|open PATH [options]");
        std::process::exit(2);
    };
    let path = Path::new(path);
    let runs = arg(&args, "--runs", 3usize).max(1);
    match cmd.as_str() {
        "write" => {
            let compression = if args.iter().any(|a| a == "--zstd") {
                Compression::Zstd { level: 1 }
            } else {
                Compression::None
            };
            write(path, compression, runs);
        }
        "verify" => verify(path, runs),
        "many" => many(path, arg(&args, "--tensors", 10_000usize)),
        "open" => open(path, runs),
        other => {
            eprintln!("unknown command {other}");
            std::process::exit(2);
        }
    }
}
