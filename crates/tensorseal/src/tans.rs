//! Table-based asymmetric numeral system (tANS) coding of one byte plane (spec §4.5), the
//! entropy coder of the plane codec.
//!
//! Why tANS and why by hand: the exponent plane of trained weights is skewed (one value in five
//! or so), where Huffman's whole-bit codes waste about 2% over the entropy bound (measured on
//! resemblyzer: 2.85 against 2.80 bits a symbol), enough to fall short of ZipNN; tANS codes
//! fractional bits at the same speed. No maintained Rust crate offers byte tANS with a
//! bounded, table-per-block stream at GB/s, and zstd's FSE is not part of its public API.
//!
//! Shape of the code, chosen for decode speed and local adaptation: the plane is cut into
//! blocks of [`BLOCK`] symbols, each with its own probability table (exponent statistics move
//! between tensors and layers); a block's symbols are cut into four streams decoded in one
//! interleaved loop, so that four independent table lookups are in flight; bits are read least
//! significant first from 64-bit little-endian words, four symbols per refill.

/// log2 of the number of states.
const TABLE_LOG: u32 = 12;
const L: usize = 1 << TABLE_LOG;
/// Symbols per block, each block coded with its own table.
pub(crate) const BLOCK: usize = 1 << 17;
const STREAMS: usize = 4;
/// Symbols decoded per refill of a 64-bit buffer holding at least 56 valid bits.
const PER_REFILL: usize = 4;
/// Spreads each symbol's states across the table; odd, so it visits every slot once.
const STEP: usize = (L >> 1) + (L >> 3) + 3;

/// Normalized counts of one block: each present symbol gets at least 1, and they sum to `L`.
type Counts = [u16; 256];

/// How [`encode`] will code a plane, and about how large the result is.
pub(crate) struct Plan {
    blocks: Vec<Counts>,
    estimate: u64,
}

impl Plan {
    /// Counts symbols block by block.
    pub(crate) fn new(plane: &[u8]) -> Plan {
        let mut estimate = 0u64;
        let blocks = plane
            .chunks(BLOCK)
            .map(|block| {
                let freq = histogram(block);
                let counts = normalize(&freq, block.len() as u64);
                let bits: f64 = freq
                    .iter()
                    .zip(&counts)
                    .filter(|(f, _)| **f > 0)
                    .map(|(&f, &c)| f as f64 * (f64::from(TABLE_LOG) - f64::from(c).log2()))
                    .sum();
                estimate += header_len(&counts) as u64 + (bits / 8.0) as u64 + 2 * STREAMS as u64;
                counts
            })
            .collect();
        Plan { blocks, estimate }
    }

    /// Body size to within a few bytes a block, without encoding.
    pub(crate) fn estimate(&self) -> u64 {
        self.estimate
    }
}

/// Whether a sample of `plane` (8 windows of 2 Ki symbols, spread evenly) is so close to
/// uniform, at least 7.95 bits a symbol by its order-0 entropy, that coding the plane cannot save
/// 1%: low mantissa planes are, and counting all their bytes was a quarter of the encode time
/// (measured on FP16). Planes under 1 MiB are always counted in full.
pub(crate) fn looks_random(plane: &[u8]) -> bool {
    const WINDOW: usize = 2048;
    const WINDOWS: usize = 8;
    if plane.len() < 1 << 20 {
        return false;
    }
    let mut freq = [0u64; 256];
    let stride = plane.len() / WINDOWS;
    for w in 0..WINDOWS {
        for (f, n) in freq
            .iter_mut()
            .zip(histogram(&plane[w * stride..w * stride + WINDOW]))
        {
            *f += n;
        }
    }
    let n = (WINDOW * WINDOWS) as f64;
    let bits: f64 = freq
        .iter()
        .filter(|&&f| f > 0)
        .map(|&f| {
            let p = f as f64 / n;
            -p * p.log2()
        })
        .sum();
    bits >= 7.95
}

/// Counts of each byte value; four interleaved tables so that runs of one value do not
/// serialize on a single counter.
fn histogram(bytes: &[u8]) -> [u64; 256] {
    let mut t = [[0u32; 256]; 4];
    let mut it = bytes.chunks_exact(4);
    for c in &mut it {
        t[0][usize::from(c[0])] += 1;
        t[1][usize::from(c[1])] += 1;
        t[2][usize::from(c[2])] += 1;
        t[3][usize::from(c[3])] += 1;
    }
    for &b in it.remainder() {
        t[0][usize::from(b)] += 1;
    }
    let mut out = [0u64; 256];
    for (s, o) in out.iter_mut().enumerate() {
        *o = t.iter().map(|row| u64::from(row[s])).sum();
    }
    out
}

/// Scales `freq` (summing to `total > 0`) to counts summing to `L`, every present symbol at
/// least 1. The rounding excess or shortfall is settled on the largest counts, where it costs
/// least.
fn normalize(freq: &[u64; 256], total: u64) -> Counts {
    let mut c = [0u16; 256];
    let mut sum = 0i64;
    for (n, &f) in c.iter_mut().zip(freq) {
        if f > 0 {
            *n = ((f * L as u64 + total / 2) / total).clamp(1, L as u64) as u16;
            sum += i64::from(*n);
        }
    }
    let mut diff = L as i64 - sum;
    while diff != 0 {
        let big = (0..256).max_by_key(|&s| (c[s], s)).unwrap_or(0);
        if diff > 0 {
            c[big] += diff as u16;
            diff = 0;
        } else {
            // Every count is at least 1 and there are at most 256 of them, so the largest is
            // at least 16 and the loop takes at least one from it each time.
            let take = (-diff).min(i64::from(c[big] / 4).max(1));
            c[big] -= take as u16;
            diff += take;
        }
    }
    c
}

fn header_len(counts: &Counts) -> usize {
    let last = last_symbol(counts);
    1 + counts[..=last]
        .iter()
        .map(|&n| if n < 0x80 { 1 } else { 2 })
        .sum::<usize>()
        + 4 * STREAMS
}

fn last_symbol(counts: &Counts) -> usize {
    (0..256).rev().find(|&s| counts[s] > 0).unwrap_or(0)
}

/// Encodes `plane` as planned, appending the body to `out`.
///
/// # Panics
/// If `plan` was made for another plane.
pub(crate) fn encode(plane: &[u8], plan: &Plan, out: &mut Vec<u8>) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("bmi2") {
        // SAFETY: the one requirement of calling a function compiled with BMI2 enabled is a CPU
        // that has it, checked just above.
        return unsafe { encode_bmi2(plane, plan, out) };
    }
    encode_portable(plane, plan, out);
}

/// [`encode`] with BMI2's variable shifts (measured: 8% faster).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "bmi2")]
fn encode_bmi2(plane: &[u8], plan: &Plan, out: &mut Vec<u8>) {
    encode_portable(plane, plan, out);
}

#[inline(always)]
fn encode_portable(plane: &[u8], plan: &Plan, out: &mut Vec<u8>) {
    let mut emitted: Vec<u32> = Vec::new();
    for (block, counts) in plane.chunks(BLOCK).zip(&plan.blocks) {
        let last = last_symbol(counts);
        out.push(last as u8);
        for &n in &counts[..=last] {
            if n < 0x80 {
                out.push(n as u8);
            } else {
                out.push(0x80 | (n & 0x7f) as u8);
                out.push((n >> 7) as u8);
            }
        }
        let lens_at = out.len();
        out.extend_from_slice(&[0u8; 4 * STREAMS]);
        let table = EncodeTable::new(counts);
        let q = block.len().div_ceil(STREAMS);
        let mut segments = block.chunks(q);
        let segments: [&[u8]; STREAMS] =
            std::array::from_fn(|_| segments.next().unwrap_or_default());
        let finals = table.encode_streams(&segments, q, &mut emitted);
        for k in 0..STREAMS {
            let start = out.len();
            if !segments[k].is_empty() {
                let mut w = BitWriter::default();
                w.put(finals[k] - L as u32, TABLE_LOG, out);
                for &e in &emitted[k * q..k * q + segments[k].len()] {
                    w.put(e & 0xffff, e >> 16, out);
                }
                w.flush(out);
            }
            let len = (out.len() - start) as u32;
            out[lens_at + 4 * k..lens_at + 4 * k + 4].copy_from_slice(&len.to_le_bytes());
        }
    }
}

struct EncodeTable {
    /// Per symbol: `(nb_hi << 16) - (count << nb_hi)`, so that `(x + delta) >> 16` is the number
    /// of bits to shed from state `x` (FSE's formulation).
    delta_bits: [u32; 256],
    /// Per symbol: the start of its states in `next`, minus its count.
    delta_state: [i32; 256],
    /// Encoder states `L + u` of each symbol's slots `u`, symbol by symbol in slot order.
    next: Vec<u16>,
}

impl EncodeTable {
    fn new(counts: &Counts) -> Self {
        let spread = spread(counts);
        let mut start = [0usize; 256];
        let mut acc = 0;
        for s in 0..256 {
            start[s] = acc;
            acc += usize::from(counts[s]);
        }
        let mut next = vec![0u16; L];
        let mut fill = start;
        for (u, &s) in spread.iter().enumerate() {
            next[fill[usize::from(s)]] = (L + u) as u16;
            fill[usize::from(s)] += 1;
        }
        let mut delta_bits = [0u32; 256];
        let mut delta_state = [0i32; 256];
        for s in 0..256 {
            let n = u32::from(counts[s]);
            if n > 0 {
                let nb_hi = TABLE_LOG - n.ilog2();
                delta_bits[s] = (nb_hi << 16).wrapping_sub(n << nb_hi);
                delta_state[s] = start[s] as i32 - n as i32;
            }
        }
        EncodeTable {
            delta_bits,
            delta_state,
            next,
        }
    }

    /// Codes the four segments backwards from state `L`, interleaved so that their four
    /// dependency chains (state to table to state) overlap; the bits each symbol emits go to
    /// `emitted[k * q + i]` as `value | bits << 16`. Returns the final states, which the
    /// decoder reads first.
    #[inline(always)]
    fn encode_streams(
        &self,
        segments: &[&[u8]; STREAMS],
        q: usize,
        emitted: &mut Vec<u32>,
    ) -> [u32; STREAMS] {
        emitted.clear();
        emitted.resize(STREAMS * q, 0);
        let mut x = [L as u32; STREAMS];
        for i in (0..q).rev() {
            for k in 0..STREAMS {
                // Only the last segments can be shorter, so this is predictable.
                let Some(&s) = segments[k].get(i) else {
                    continue;
                };
                let s = usize::from(s);
                let nb = x[k].wrapping_add(self.delta_bits[s]) >> 16;
                emitted[k * q + i] = (x[k] & ((1 << nb) - 1)) | (nb << 16);
                let y = (x[k] >> nb) as i32;
                x[k] = u32::from(self.next[(y + self.delta_state[s]) as usize]);
            }
        }
        x
    }
}

/// Slot `u` of the table holds the symbol whose state it is.
fn spread(counts: &Counts) -> [u8; L] {
    let mut t = [0u8; L];
    let mut pos = 0;
    for (s, &n) in counts.iter().enumerate() {
        for _ in 0..n {
            t[pos] = s as u8;
            pos = (pos + STEP) & (L - 1);
        }
    }
    t
}

#[derive(Default)]
struct BitWriter {
    acc: u64,
    n: u32,
}

impl BitWriter {
    #[inline(always)]
    fn put(&mut self, value: u32, bits: u32, out: &mut Vec<u8>) {
        self.acc |= u64::from(value) << self.n;
        self.n += bits;
        if self.n >= 32 {
            out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.n -= 32;
        }
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.acc.to_le_bytes()[..self.n.div_ceil(8) as usize]);
    }
}

/// Decodes a body into `out`, whose length (the plane's symbol count) comes from the manifest.
///
/// # Errors
/// A message naming the offset in `body` where it is malformed: a table that is truncated, has
/// a count over `L` or does not sum to `L`, stream lengths past the body, a stream that ends
/// before its symbols do, has bytes or nonzero padding after them, or does not end in the
/// encoder's initial state; trailing bytes after the last block.
pub(crate) fn decode(body: &[u8], out: &mut [u8]) -> Result<(), String> {
    let mut at = 0;
    let mut table = Box::new([Entry::default(); L]);
    for block in out.chunks_mut(BLOCK) {
        at = decode_block(body, at, &mut table, block)?;
    }
    if at != body.len() {
        return Err(format!(
            "offset {at}: {} bytes after the last block",
            body.len() - at
        ));
    }
    Ok(())
}

fn decode_block(
    body: &[u8],
    mut at: usize,
    table: &mut [Entry; L],
    out: &mut [u8],
) -> Result<usize, String> {
    let block_at = at;
    let truncated = |at: usize| format!("offset {at}: block table truncated");
    let last = usize::from(*body.get(at).ok_or_else(|| truncated(at))?);
    at += 1;
    let mut counts = [0u16; 256];
    let mut sum = 0u32;
    for c in counts.iter_mut().take(last + 1) {
        let b0 = *body.get(at).ok_or_else(|| truncated(at))?;
        let n = if b0 < 0x80 {
            at += 1;
            u16::from(b0)
        } else {
            let b1 = *body.get(at + 1).ok_or_else(|| truncated(at + 1))?;
            let n = u16::from(b0 & 0x7f) | (u16::from(b1) << 7);
            if b1 == 0 || n as usize > L {
                return Err(format!(
                    "offset {at}: count {n} is over {L} or not in its shortest form"
                ));
            }
            at += 2;
            n
        };
        *c = n;
        sum += u32::from(n);
    }
    if sum != L as u32 || counts[last] == 0 {
        return Err(format!(
            "offset {block_at}: counts sum to {sum}, not {L}, or the last symbol ({last}) has none"
        ));
    }
    let mut lens = [0usize; STREAMS];
    for (k, len) in lens.iter_mut().enumerate() {
        let b = body
            .get(at + 4 * k..at + 4 * k + 4)
            .ok_or_else(|| truncated(at + 4 * k))?;
        *len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    }
    at += 4 * STREAMS;
    build_decode_table(&counts, table);
    let table: &[Entry; L] = table;
    let mut streams: [&[u8]; STREAMS] = [&[]; STREAMS];
    let mut starts = [0usize; STREAMS];
    for k in 0..STREAMS {
        starts[k] = at;
        streams[k] = body.get(at..at.saturating_add(lens[k])).ok_or(format!(
            "offset {at}: stream {k} of {} bytes runs past the body",
            lens[k]
        ))?;
        at += lens[k];
    }
    let q = out.len().div_ceil(STREAMS);
    let mut segments: Vec<&mut [u8]> = out.chunks_mut(q).collect();
    segments.resize_with(STREAMS, Default::default);
    let mut readers = streams.map(StreamDecoder::new);
    for (k, (r, seg)) in readers.iter_mut().zip(&segments).enumerate() {
        if seg.is_empty() {
            if !r.data.is_empty() {
                return Err(format!(
                    "offset {}: stream {k} codes no symbols but has bytes",
                    starts[k]
                ));
            }
        } else {
            r.refill_slow();
            r.state = r.take(TABLE_LOG) as usize;
        }
    }
    let done = fast_loop(table, &mut readers, &mut segments);
    for (k, (r, seg)) in readers.iter_mut().zip(segments.iter_mut()).enumerate() {
        for b in seg[done..].iter_mut() {
            r.refill_slow();
            *b = r.decode(table);
        }
        if !seg.is_empty() {
            r.finish()
                .map_err(|what| format!("offset {}: stream {k}: {what}", starts[k]))?;
        }
    }
    Ok(at)
}

/// One decoder state's row. The mask is stored rather than computed from `nb` because that
/// saves three instructions a symbol on x86-64 without BMI2 (measured: 10% of decode time).
#[derive(Clone, Copy, Default)]
#[repr(C, align(8))]
struct Entry {
    /// The next state, before the bits read are added.
    base: u16,
    /// `2^nb - 1`.
    mask: u16,
    /// Bits to read.
    nb: u8,
    symbol: u8,
}

/// Row `u` of the decoding table, for each state `u`.
fn build_decode_table(counts: &Counts, table: &mut [Entry; L]) {
    let spread = spread(counts);
    let mut next = [0u32; 256];
    for s in 0..256 {
        next[s] = u32::from(counts[s]);
    }
    for (u, &s) in spread.iter().enumerate() {
        let x = next[usize::from(s)];
        next[usize::from(s)] += 1;
        let nb = TABLE_LOG - x.ilog2();
        let base = (x << nb) - L as u32;
        table[u] = Entry {
            base: base as u16,
            mask: ((1u32 << nb) - 1) as u16,
            nb: nb as u8,
            symbol: s,
        };
    }
}

/// Decodes `PER_REFILL` symbols per stream per round while every stream has that many left and
/// 8 readable bytes; returns how many symbols of each segment it wrote.
fn fast_loop(
    table: &[Entry; L],
    r: &mut [StreamDecoder<'_>; STREAMS],
    segments: &mut [&mut [u8]],
) -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("bmi2") {
        // SAFETY: the one requirement of calling a function compiled with BMI2 enabled is a CPU
        // that has it, checked just above.
        return unsafe { fast_loop_bmi2(table, r, segments) };
    }
    fast_loop_portable(table, r, segments)
}

/// [`fast_loop`] with BMI2's flag-free variable shifts, one instruction each instead of three
/// (measured: 12% faster decoding on x86-64, which the format's decode target needs).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "bmi2")]
fn fast_loop_bmi2(
    table: &[Entry; L],
    r: &mut [StreamDecoder<'_>; STREAMS],
    segments: &mut [&mut [u8]],
) -> usize {
    fast_loop_portable(table, r, segments)
}

#[inline(always)]
fn fast_loop_portable(
    table: &[Entry; L],
    r: &mut [StreamDecoder<'_>; STREAMS],
    segments: &mut [&mut [u8]],
) -> usize {
    // The last segment is the shortest: its length bounds the rounds of all four.
    let n = segments.iter().map(|s| s.len()).min().unwrap_or(0);
    let [s0, s1, s2, s3] = segments else {
        return 0;
    };
    let mut i = 0;
    loop {
        // A round loads at most 7 new bytes per stream, so this many rounds stay in bounds
        // without a check each round.
        let safe = r.iter().map(StreamDecoder::fast_rounds).min().unwrap_or(0);
        let rounds = safe.min((n - i) / PER_REFILL);
        if rounds == 0 {
            return i;
        }
        for _ in 0..rounds {
            for x in r.iter_mut() {
                x.refill_fast();
            }
            let (o0, o1, o2, o3) = (
                &mut s0[i..i + PER_REFILL],
                &mut s1[i..i + PER_REFILL],
                &mut s2[i..i + PER_REFILL],
                &mut s3[i..i + PER_REFILL],
            );
            for j in 0..PER_REFILL {
                o0[j] = r[0].decode(table);
                o1[j] = r[1].decode(table);
                o2[j] = r[2].decode(table);
                o3[j] = r[3].decode(table);
            }
            i += PER_REFILL;
        }
    }
}

/// One stream: a least-significant-bit-first reader and the decoder's state.
struct StreamDecoder<'a> {
    data: &'a [u8],
    /// Next byte to load; may run past `data` in the slow path, which loads zeros there.
    pos: usize,
    bits: u64,
    /// Valid bits in `bits`.
    count: u32,
    state: usize,
}

impl<'a> StreamDecoder<'a> {
    fn new(data: &'a [u8]) -> Self {
        StreamDecoder {
            data,
            pos: 0,
            bits: 0,
            count: 0,
            state: 0,
        }
    }

    /// How many fast refills in a row stay within the data.
    fn fast_rounds(&self) -> usize {
        match self.data.len().checked_sub(self.pos + 8) {
            Some(spare) => spare / 7 + 1,
            None => 0,
        }
    }

    /// Tops the buffer up to at least 56 valid bits with one unaligned load.
    #[inline(always)]
    fn refill_fast(&mut self) {
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.data[self.pos..self.pos + 8]);
        self.bits |= u64::from_le_bytes(w) << self.count;
        self.pos += ((63 - self.count) >> 3) as usize;
        self.count |= 56;
    }

    /// Tops the buffer up byte by byte, with zeros past the end (caught by [`Self::finish`]).
    fn refill_slow(&mut self) {
        while self.count <= 56 {
            let b = self.data.get(self.pos).copied().unwrap_or(0);
            self.bits |= u64::from(b) << self.count;
            self.pos += 1;
            self.count += 8;
        }
    }

    #[inline(always)]
    fn take(&mut self, nb: u32) -> u64 {
        let v = self.bits & ((1u64 << nb) - 1);
        self.bits >>= nb;
        self.count -= nb;
        v
    }

    /// One symbol; the buffer must hold at least `TABLE_LOG` valid bits.
    #[inline(always)]
    fn decode(&mut self, table: &[Entry; L]) -> u8 {
        let e = table[self.state & (L - 1)];
        self.state = usize::from(e.base) + (self.bits as usize & usize::from(e.mask));
        self.bits >>= e.nb;
        self.count -= u32::from(e.nb);
        e.symbol
    }

    /// Checks that the stream ended in the encoder's initial state, its symbols used exactly
    /// its bytes, and the padding bits are zero.
    fn finish(&self) -> Result<(), String> {
        if self.state != 0 {
            return Err(format!("ends in state {}, not 0", self.state));
        }
        let consumed = (self.pos * 8) as u64 - u64::from(self.count);
        let have = self.data.len() as u64 * 8;
        if consumed > have {
            return Err(format!(
                "ends {} bits before its symbols do",
                consumed - have
            ));
        }
        if consumed.div_ceil(8) != self.data.len() as u64 {
            return Err(format!(
                "{} bytes after its last symbol",
                self.data.len() as u64 - consumed.div_ceil(8)
            ));
        }
        if self.bits & ((1u64 << (have - consumed)) - 1) != 0 {
            return Err("nonzero padding bits".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(plane: &[u8]) -> Vec<u8> {
        let plan = Plan::new(plane);
        let mut body = Vec::new();
        encode(plane, &plan, &mut body);
        let mut out = vec![0u8; plane.len()];
        decode(&body, &mut out).unwrap();
        assert_eq!(out, plane);
        assert!(
            body.len() as u64 <= plan.estimate() + 64 * plan.blocks.len() as u64,
            "{} against an estimate of {}",
            body.len(),
            plan.estimate()
        );
        body
    }

    fn geometric(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                120u8.wrapping_add((x.trailing_zeros() % 64) as u8)
            })
            .collect()
    }

    #[test]
    fn skewed_planes_code_near_their_entropy() {
        // Entropy of this source is 2 bits a symbol; Huffman would also reach it (powers of two),
        // so a second source has probabilities 0.6 / 0.3 / 0.1 (entropy 1.295 bits).
        let plane = geometric(300_007, 0x2545_f491_4f6c_dd1d);
        let body = round_trip(&plane);
        assert!(
            body.len() < plane.len() / 4 + plane.len() / 200,
            "{}",
            body.len()
        );
        let plane: Vec<u8> = (0..200_000u32)
            .map(|i| match i.wrapping_mul(2_654_435_761) % 10 {
                0..=5 => 7,
                6..=8 => 8,
                _ => 9,
            })
            .collect();
        let body = round_trip(&plane);
        let bound = plane.len() as f64 * 1.2955 / 8.0;
        assert!(
            (body.len() as f64) < bound * 1.01,
            "{} against {bound}",
            body.len()
        );
    }

    #[test]
    fn one_symbol_blocks_cost_almost_nothing() {
        let body = round_trip(&[9; 300_000]);
        assert!(body.len() < 40 * 3, "{}", body.len());
    }

    #[test]
    fn short_and_odd_planes_round_trip() {
        assert!(round_trip(&[]).is_empty());
        for n in 1..40 {
            let plane: Vec<u8> = (0..n).map(|i| (i * 37 % 5) as u8 + 250).collect();
            round_trip(&plane);
        }
        let all: Vec<u8> = (0..=255).collect();
        round_trip(&all);
        round_trip(&geometric(BLOCK * 2 + 3, 7));
    }

    #[test]
    fn hostile_bodies_are_refused() {
        let plane = geometric(5000, 99);
        let body = round_trip(&plane);
        let mut out = vec![0u8; plane.len()];
        let err = |b: &[u8], out: &mut [u8]| decode(b, out).unwrap_err();
        assert!(err(&[], &mut out).contains("truncated"));
        assert!(err(&body[..5], &mut out).contains("truncated"));
        let mut sum = body.clone();
        sum[1 + 120] ^= 1;
        assert!(err(&sum, &mut out).contains("sum to"));
        assert!(err(&body[..body.len() - 1], &mut out).contains("stream"));
        let mut longer = body.clone();
        longer.push(0);
        assert!(err(&longer, &mut out).contains("after the last block"));
        let mut fewer = vec![0u8; plane.len() - 40];
        assert!(decode(&body, &mut fewer).is_err());
        let mut more = vec![0u8; plane.len() + 40];
        assert!(decode(&body, &mut more).is_err());
        for i in 0..body.len() {
            for flip in [0x01, 0x80] {
                let mut bad = body.clone();
                bad[i] ^= flip;
                if decode(&bad, &mut out).is_ok() {
                    // A bit flip that still decodes must at least change the output: the
                    // stream's end state and exact length pin most of it.
                    assert_ne!(out, plane, "flip {flip:#x} at {i} decoded to the original");
                }
            }
        }
    }

    #[test]
    fn only_near_uniform_planes_look_random() {
        let mut x = 0x1234_5678_9abc_def1u64;
        let uniform: Vec<u8> = (0..1 << 21)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        assert!(looks_random(&uniform));
        assert!(
            !looks_random(&uniform[..1 << 19]),
            "small planes are counted in full"
        );
        assert!(!looks_random(&geometric(1 << 21, 5)));
        // Seven bits of noise and a constant top bit: 7 bits a symbol, worth coding.
        let seven: Vec<u8> = uniform.iter().map(|b| b & 0x7f).collect();
        assert!(!looks_random(&seven));
    }

    #[test]
    fn normalized_counts_sum_to_the_table_size() {
        let mut freq = [1u64; 256];
        freq[3] = 1 << 40;
        let c = normalize(&freq, freq.iter().sum());
        assert_eq!(c.iter().map(|&n| u32::from(n)).sum::<u32>(), L as u32);
        assert!(c.iter().all(|&n| n >= 1));
        let freq = [7u64; 256];
        let c = normalize(&freq, 7 * 256);
        assert!(c.iter().all(|&n| n == 16));
    }

    /// The test vector of spec §4.5.
    #[test]
    fn spec_vector() {
        let plane = [5u8, 5, 5, 7, 5, 5, 5, 7];
        let body = round_trip(&plane);
        let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "07000000000080180080080200000002000000020000000200000073\
             0c6e05730c6e05"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_plane_round_trips(plane in proptest::collection::vec(0u8..20, 0..3000)) {
            round_trip(&plane);
        }

        #[test]
        fn any_bytes_round_trip(plane in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            round_trip(&plane);
        }
    }
}
