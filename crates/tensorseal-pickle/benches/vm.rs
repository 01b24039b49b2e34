//! Benchmark of the interpreter (written in a later commit).
fn main() {}
