//! Prints the scan report of a pickle file:
//! `cargo run -p tensorseal-pickle --example scan FILE [OFFSET]`.

use std::io::Write;

use tensorseal_pickle::{DeclaredStorages, Options, scan};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: scan FILE [OFFSET]");
    let offset = args.next().map_or(0, |o| o.parse().expect("offset"));
    let data = std::fs::read(&path).expect("read");
    let report = scan(&data, offset, &Options::default(), &mut DeclaredStorages);
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = write!(std::io::stdout(), "{report}");
}
