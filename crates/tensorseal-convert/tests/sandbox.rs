//! Proves the sandbox: a child process (this binary, re-executed) opens its input and its
//! output's temporary file, locks down, then tries what a compromised parser would try.
//! Locked down, exec, new processes, TCP sockets and paths outside the policy all fail, while
//! reading the input, writing and renaming in the output directory, threads and rayon work.
//! Unlocked (`--no-sandbox`), the same probes succeed, so the checks are not vacuous.

use rayon::prelude::*;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use tensorseal::{AtomicFile, FileBytes, MapMode};
use tensorseal_convert::{SandboxMode, SandboxPolicy};

const CHILD_ENV: &str = "TENSORSEAL_SANDBOX_TEST_DIR";
const MODE_ENV: &str = "TENSORSEAL_SANDBOX_TEST_MODE";

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let mode = std::env::var(MODE_ENV).unwrap_or_default();
        if mode == "threaded" {
            std::process::exit(threaded_child(Path::new(&dir)));
        }
        std::process::exit(child(Path::new(&dir), mode == "required"));
    }
    let mut failed = 0;
    for (name, case) in [
        (
            "locked_down_child_is_confined",
            locked_down as fn() -> Result<(), String>,
        ),
        (
            "unlocked_child_can_do_everything",
            unlocked as fn() -> Result<(), String>,
        ),
        (
            "disabled_policy_applies_nothing",
            disabled as fn() -> Result<(), String>,
        ),
        (
            "threads_before_lock_down_are_covered_or_refused",
            threaded as fn() -> Result<(), String>,
        ),
    ] {
        match case() {
            Ok(()) => println!("test {name} ... ok"),
            Err(e) => {
                println!("test {name} ... FAILED\n{e}");
                failed += 1;
            }
        }
    }
    println!("{} passed, {failed} failed", 4 - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    std::fs::write(root.join("input.bin"), b"checkpoint bytes").unwrap();
    std::fs::write(root.join("secret.txt"), b"not for the converter").unwrap();
    std::fs::create_dir(root.join("out")).unwrap();
    Fixture { _tmp: tmp, root }
}

fn run_child(root: &Path, mode: &str) -> Result<String, String> {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, root)
        .env(MODE_ENV, mode)
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stdout.contains("\ndone\n") || stdout.contains("FAIL") {
        return Err(format!(
            "child ({mode}) exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        ));
    }
    Ok(stdout)
}

fn locked_down() -> Result<(), String> {
    let f = fixture();
    let stdout = run_child(&f.root, "required")?;
    if !f.root.join("out/result.bin").exists() {
        return Err("the committed output is missing".into());
    }
    if f.root.join("escape.txt").exists() {
        return Err("the child wrote outside its output directory".into());
    }
    if !stdout.contains("landlock: Enforced") {
        return Err(format!("Landlock not fully enforced:\n{stdout}"));
    }
    Ok(())
}

fn unlocked() -> Result<(), String> {
    let f = fixture();
    run_child(&f.root, "off").map(|_| ())
}

fn disabled() -> Result<(), String> {
    let report = SandboxPolicy::new(SandboxMode::Disabled)
        .read("/nonexistent")
        .apply()
        .map_err(|e| e.to_string())?;
    if report.seccomp || report.fully_enforced() {
        return Err(format!("{report:?}"));
    }
    Ok(())
}

fn threaded() -> Result<(), String> {
    let f = fixture();
    let stdout = run_child(&f.root, "threaded")?;
    // Kernels with Landlock ABI 8 cover the running threads (TSYNC); older ones must refuse a
    // required sandbox instead of leaving a thread unconfined.
    if stdout.contains("threaded: refused") || stdout.contains("threaded: all threads covered") {
        Ok(())
    } else {
        Err(stdout)
    }
}

/// A thread already runs when the child locks down with the sandbox required.
fn threaded_child(root: &Path) -> i32 {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::spawn(move || rx.recv().ok());
    let result = SandboxPolicy::new(SandboxMode::Required)
        .read(root.join("input.bin"))
        .write_dir(root.join("out"))
        .apply();
    match result {
        Err(e) if e.to_string().contains("threads") => println!("threaded: refused ({e})"),
        Ok(r) if r.landlock_all_threads && r.threads >= 2 => {
            println!("threaded: all threads covered")
        }
        other => println!("FAIL threaded: {other:?}"),
    }
    tx.send(()).unwrap();
    worker.join().unwrap();
    println!("\ndone");
    0
}

/// Runs in the child. Returns the exit code: 0 when every probe gave the expected answer.
fn child(root: &Path, locked: bool) -> i32 {
    let input = root.join("input.bin");
    let out_dir = root.join("out");
    // What the converter does first: map the input, create the output's temporary file.
    let mapped = FileBytes::open(&input, MapMode::Map).unwrap();
    let mut output = AtomicFile::create(&out_dir.join("result.bin")).unwrap();

    let mode = if locked {
        SandboxMode::Required
    } else {
        SandboxMode::Disabled
    };
    let report = match SandboxPolicy::new(mode)
        .read(&input)
        .write_dir(&out_dir)
        .apply()
    {
        Ok(r) => r,
        Err(e) => {
            println!("FAIL apply: {e}");
            return 1;
        }
    };
    println!("landlock: {:?}", report.landlock);
    println!("seccomp: {} threads: {}", report.seccomp, report.threads);
    for w in &report.warnings {
        println!("warning: {w}");
    }

    let mut failures = 0;
    let mut expect =
        |name: &str, allowed: bool, result: Result<(), std::io::Error>| match (allowed, result) {
            (true, Ok(())) => println!("ok {name}: allowed"),
            (false, Err(e)) => println!("ok {name}: refused ({e})"),
            (true, Err(e)) => {
                println!("FAIL {name}: should work, got {e}");
                failures += 1;
            }
            (false, Ok(())) => {
                println!("FAIL {name}: should have been refused");
                failures += 1;
            }
        };
    let free = !locked;

    // Refused when locked down.
    expect(
        "spawn /bin/true",
        free,
        Command::new("/bin/true").status().map(|_| ()),
    );
    expect(
        "TCP listen on 127.0.0.1",
        free,
        std::net::TcpListener::bind("127.0.0.1:0").map(|_| ()),
    );
    expect(
        "UDP socket",
        free,
        std::net::UdpSocket::bind("127.0.0.1:0").map(|_| ()),
    );
    expect(
        "open a file outside the policy",
        free,
        std::fs::read(root.join("secret.txt")).map(|_| ()),
    );
    expect(
        "open /etc/passwd",
        free,
        std::fs::File::open("/etc/passwd").map(|_| ()),
    );
    expect(
        "create a file outside the output directory",
        free,
        std::fs::write(root.join("escape.txt"), b"x").map(|_| ()),
    );
    if free {
        let _ = std::fs::remove_file(root.join("escape.txt"));
    }
    expect(
        "a thread started after lock-down opens /etc/passwd",
        free,
        std::thread::spawn(|| std::fs::File::open("/etc/passwd").map(|_| ()))
            .join()
            .unwrap(),
    );

    // Allowed either way.
    expect("read the mapped input", true, {
        if &*mapped == b"checkpoint bytes" {
            Ok(())
        } else {
            Err(std::io::Error::other("mapped bytes differ"))
        }
    });
    expect("open and read the input again", true, {
        let mut s = Vec::new();
        std::fs::File::open(&input).and_then(|mut f| f.read_to_end(&mut s).map(|_| ()))
    });
    expect(
        "create, write and remove a file in the output directory",
        true,
        std::fs::write(out_dir.join("scratch"), b"x")
            .and_then(|()| std::fs::remove_file(out_dir.join("scratch"))),
    );
    expect("spawn a thread", true, {
        let v = std::thread::spawn(|| 6 * 7).join().unwrap();
        if v == 42 {
            Ok(())
        } else {
            Err(std::io::Error::other("wrong"))
        }
    });
    expect("rayon parallel work", true, {
        let sum: u64 = (0..100_000u64).into_par_iter().map(|x| x % 7).sum();
        let threads = rayon::current_num_threads();
        println!("rayon threads: {threads}");
        if sum == (0..100_000u64).map(|x| x % 7).sum::<u64>() {
            Ok(())
        } else {
            Err(std::io::Error::other("wrong sum"))
        }
    });
    expect(
        "write the temporary output and rename it into place",
        true,
        output
            .write_all(b"converted")
            .and_then(|()| output.commit().map(|_| ())),
    );
    // Last: if exec were allowed, this process would become /bin/true and never print "done".
    if locked {
        let err = Command::new("/bin/true").exec();
        println!("ok execve /bin/true: refused ({err})");
    }
    println!("\ndone");
    i32::from(failures > 0)
}
