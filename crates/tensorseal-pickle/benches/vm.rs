//! Throughput of the interpreter on generated inputs shaped like real files:
//!
//! * a torch `state_dict()` pickle with 100,000 tensors, written with the exact opcodes
//!   torch.save emits at its default protocol 2 (memoized globals, LONG_BINPUT/LONG_BINGET past
//!   256 memo entries, SETITEMS batches of 1,000);
//! * 64 MiB of numpy arrays, both as protocol 5 writes them (`_frombuffer` + BYTEARRAY8,
//!   zero-copy) and as protocol 2 writes them (`_reconstruct` + BUILD with the data as
//!   `_codecs.encode(str, 'latin1')`, which must be decoded and re-encoded).
//!
//! Run: `cargo bench -p tensorseal-pickle --bench vm`.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use tensorseal_pickle::{DeclaredStorages, Graph, Options, load};

/// A writer with a memo, like CPython's pickler.
struct Writer {
    out: Vec<u8>,
    memo: HashMap<String, u32>,
    next: u32,
}

impl Writer {
    fn new(proto: u8) -> Writer {
        Writer {
            out: vec![0x80, proto],
            memo: HashMap::new(),
            next: 0,
        }
    }

    fn put(&mut self) {
        if self.next < 256 {
            self.out.extend([b'q', self.next as u8]);
        } else {
            self.out.push(b'r');
            self.out.extend(self.next.to_le_bytes());
        }
        self.next += 1;
    }

    fn get(&mut self, idx: u32) {
        if idx < 256 {
            self.out.extend([b'h', idx as u8]);
        } else {
            self.out.push(b'j');
            self.out.extend(idx.to_le_bytes());
        }
    }

    /// Memoized item: written once, fetched afterwards.
    fn memoized(&mut self, key: &str, write: impl FnOnce(&mut Writer)) {
        if let Some(&idx) = self.memo.get(key) {
            self.get(idx);
        } else {
            write(self);
            let idx = self.next;
            self.put();
            self.memo.insert(key.to_owned(), idx);
        }
    }

    fn global(&mut self, module: &str, name: &str) {
        let key = format!("{module}.{name}");
        self.memoized(&key, |w| {
            w.out.extend(format!("c{module}\n{name}\n").as_bytes())
        });
    }

    fn unicode(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend((s.len() as u32).to_le_bytes());
        self.out.extend(s.as_bytes());
        self.put();
    }

    fn int(&mut self, v: u32) {
        if v < 256 {
            self.out.extend([b'K', v as u8]);
        } else if v < 65536 {
            self.out.push(b'M');
            self.out.extend((v as u16).to_le_bytes());
        } else {
            self.out.push(b'J');
            self.out.extend(v.to_le_bytes());
        }
    }
}

fn state_dict(tensors: u32) -> Vec<u8> {
    let mut w = Writer::new(2);
    w.global("collections", "OrderedDict");
    w.out.extend(b")R");
    w.put();
    for i in 0..tensors {
        if i % 1000 == 0 {
            w.out.push(b'(');
        }
        w.unicode(&format!("model.layers.{}.mlp.weight", i));
        w.global("torch._utils", "_rebuild_tensor_v2");
        w.out.extend(b"((");
        w.memoized("storage", |w| w.unicode("storage"));
        w.global("torch", "FloatStorage");
        w.unicode(&i.to_string());
        w.memoized("cpu", |w| w.unicode("cpu"));
        w.int(4096);
        w.out.push(b't');
        w.put();
        w.out.push(b'Q');
        w.int(0);
        w.int(64);
        w.int(64);
        w.out.push(0x86);
        w.put();
        w.int(64);
        w.int(1);
        w.out.push(0x86);
        w.put();
        w.out.push(0x89);
        w.global("collections", "OrderedDict");
        w.out.extend(b")R");
        w.put();
        w.out.push(b't');
        w.put();
        w.out.push(b'R');
        w.put();
        if i % 1000 == 999 || i + 1 == tensors {
            w.out.push(b'u');
        }
    }
    w.out.push(b'.');
    w.out
}

/// Deterministic pseudo-random bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn numpy_p5(total: usize, per_array: usize) -> Vec<u8> {
    let mut w = Writer::new(5);
    w.out.extend(b"](");
    for i in 0..total / per_array {
        w.global("numpy._core.numeric", "_frombuffer");
        w.out.extend(b"(");
        w.out.push(0x96);
        w.out.extend((per_array as u64).to_le_bytes());
        w.out.extend(noise(per_array, i as u64));
        w.put();
        w.global("numpy", "dtype");
        w.memoized("f4", |w| w.unicode("f4"));
        w.out.extend(b"\x89\x88\x87R");
        w.put();
        w.out.extend(b"(K\x03");
        w.memoized("<", |w| w.unicode("<"));
        w.out
            .extend(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb");
        w.int((per_array / 4) as u32);
        w.out.push(0x85);
        w.memoized("C", |w| w.unicode("C"));
        w.out.extend(b"tR");
        w.put();
    }
    w.out.extend(b"e.");
    w.out
}

fn numpy_p2(total: usize, per_array: usize) -> Vec<u8> {
    let mut w = Writer::new(2);
    w.out.extend(b"](");
    for i in 0..total / per_array {
        w.global("numpy.core.multiarray", "_reconstruct");
        w.global("numpy", "ndarray");
        w.out.extend(b"K\x00\x85");
        w.global("_codecs", "encode");
        w.memoized("b", |w| w.unicode("b"));
        w.memoized("latin1", |w| w.unicode("latin1"));
        w.out.extend(b"\x86R\x87R");
        w.put();
        w.out.extend(b"(K\x01");
        w.int((per_array / 4) as u32);
        w.out.push(0x85);
        w.global("numpy", "dtype");
        w.memoized("f4", |w| w.unicode("f4"));
        w.out.extend(b"\x89\x88\x87R(K\x03");
        w.memoized("<", |w| w.unicode("<"));
        w.out
            .extend(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89");
        w.global("_codecs", "encode");
        let text: String = noise(per_array, i as u64)
            .into_iter()
            .map(char::from)
            .collect();
        w.unicode(&text);
        w.memoized("latin1", |w| w.unicode("latin1"));
        w.out.extend(b"\x86Rtb");
    }
    w.out.extend(b"e.");
    w.out
}

/// CPU time of the current thread in ns (Linux `schedstat`), if available.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn bench(name: &str, data: &[u8], check: impl Fn(&Graph<'_>)) {
    // `BENCH_FILTER=numpy cargo bench ...` runs the matching benchmarks only.
    if std::env::var("BENCH_FILTER").is_ok_and(|f| !name.contains(&f)) {
        return;
    }
    let options = Options::default();
    let mut times = Vec::new();
    let mut cpu_times = Vec::new();
    let mut opcodes = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while times.len() < 5 || (Instant::now() < deadline && times.len() < 50) {
        let (start, cpu_start) = (Instant::now(), thread_cpu_ns());
        let graph = load(black_box(data), 0, &options, &mut DeclaredStorages).expect(name);
        times.push(start.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (cpu_start, thread_cpu_ns()) {
            cpu_times.push((b - a) as f64 / 1e9);
        }
        opcodes = graph.report().opcodes();
        check(&graph);
        drop(black_box(graph));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let wall = median(&mut times);
    // On a shared machine wall time includes waiting for a core; CPU time of this thread does
    // not, so both are printed and the CPU figure is the one to compare.
    // schedstat is updated at scheduler events: too coarse for sub-millisecond runs.
    let cpu = if cpu_times.is_empty() || wall < 0.005 {
        wall
    } else {
        median(&mut cpu_times)
    };
    println!(
        "{name}: {:.1} MiB, {} opcodes, {} runs; median CPU {:.1} ms: {:.0} MB/s, {:.3} M opcodes/s (wall {:.1} ms: {:.0} MB/s)",
        data.len() as f64 / (1 << 20) as f64,
        opcodes,
        times.len(),
        cpu * 1e3,
        data.len() as f64 / cpu / 1e6,
        opcodes as f64 / cpu / 1e6,
        wall * 1e3,
        data.len() as f64 / wall / 1e6,
    );
}

fn main() {
    let sd = state_dict(100_000);
    bench("state_dict, 100,000 tensors (protocol 2)", &sd, |g| {
        assert_eq!(
            g.iter()
                .filter(|(_, n)| matches!(n, tensorseal_pickle::Node::Tensor(_)))
                .count(),
            100_000
        );
    });
    let p5 = numpy_p5(64 << 20, 1 << 20);
    bench(
        "numpy, 64 MiB of arrays (protocol 5, _frombuffer)",
        &p5,
        |_| {},
    );
    let p2 = numpy_p2(64 << 20, 1 << 20);
    bench(
        "numpy, 64 MiB of arrays (protocol 2, _reconstruct + _codecs.encode)",
        &p2,
        |_| {},
    );
}
