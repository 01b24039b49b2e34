//! Standard output. A reader that closes the pipe early (`tensorseal inspect f | head`) ends the
//! process quietly, as other command-line tools do, instead of a panic from `println!`.

use std::io::Write;

/// Writes text to stdout.
pub(crate) fn write(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("tensorseal: error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// A `--json` report on stdout: pretty-printed, one trailing newline.
pub(crate) fn json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialize");
    write(format_args!("{text}\n"));
}

/// `println!` to stdout through [`write`].
macro_rules! outln {
    () => { $crate::output::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` to stdout through [`write`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write(format_args!($($arg)*)) };
}
