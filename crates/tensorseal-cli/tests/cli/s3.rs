//! `s3://` URLs against a real S3 server on the loopback interface: moto's, started by
//! tools/s3-server.py through the project's Python venv (tools/python-env.sh installs it).
//!
//! `.ci/run` sets `TENSORSEAL_S3_TESTS=1`: then a server that cannot start fails these tests.
//! Without it (a plain `cargo test` on a machine without the venv) they say so on stderr and
//! return, so that the Rust tests do not require Python.

use super::{code, stderr, vectors};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

const BUCKET: &str = "tensorseal-test";
const VERSIONED: &str = "tensorseal-test-versioned";

/// The running server: its environment, and the process (kept so its stdin stays open; the
/// server exits when this test binary does and the pipe closes).
struct Server {
    env: Vec<(String, String)>,
    /// The fault proxy's `host:port` (tools/s3-server.py).
    proxy: String,
    python: PathBuf,
    _child: Child,
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TENSORSEAL_S3_PYTHON") {
        return p.into();
    }
    let venv = std::env::var_os("TENSORSEAL_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tensorseal/venv"))
        });
    venv.map(|v| v.join("bin/python"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "python3".into())
}

fn start() -> Result<Server, String> {
    let python = python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/s3-server.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .args([BUCKET, VERSIONED])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let mut env = Vec::new();
    let mut proxy = String::new();
    let mut lines = BufReader::new(child.stdout.take().expect("piped"));
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err(format!(
                "{} {} exited before it was ready",
                python.display(),
                script.display()
            ));
        }
        let line = line.trim_end();
        if line == "ready" {
            break;
        }
        if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
            if k == "TENSORSEAL_TEST_FAULT_PROXY" {
                proxy = v.trim_start_matches("http://").to_string();
            } else {
                env.push((k.to_string(), v.to_string()));
            }
        }
    }
    Ok(Server {
        env,
        proxy,
        python,
        _child: child,
    })
}

/// The shared server, or `None` (with a note) when it cannot start and the tests were not
/// required.
fn server() -> Option<&'static Server> {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    match SERVER.get_or_init(start) {
        Ok(s) => Some(s),
        Err(e) if std::env::var_os("TENSORSEAL_S3_TESTS").is_some_and(|v| v == "1") => {
            panic!("TENSORSEAL_S3_TESTS=1 but the local S3 server did not start: {e}")
        }
        Err(e) => {
            eprintln!("s3 tests not run (set TENSORSEAL_S3_TESTS=1 to require them): {e}");
            None
        }
    }
}

impl Server {
    fn tensorseal(&self, args: &[&str]) -> Output {
        run_with(args, self.env.iter().cloned())
    }

    /// Uploads `body` with boto3, the client users would upload with.
    fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        let mut child = Command::new(&self.python)
            .args([
                "-c",
                "import boto3, sys; boto3.client('s3').put_object(Bucket=sys.argv[1], Key=sys.argv[2], Body=sys.stdin.buffer.read())",
                bucket,
                key,
            ])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .spawn()
            .expect("run python");
        child.stdin.take().unwrap().write_all(body).unwrap();
        assert!(child.wait().unwrap().success(), "upload of {key}");
    }
}

/// The CLI with `args` and only `PATH` and `env` in its environment.
fn run_with(args: &[&str], env: impl IntoIterator<Item = (String, String)>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tensorseal"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env)
        .output()
        .expect("run tensorseal")
}

fn simple() -> Vec<u8> {
    std::fs::read(vectors().join("simple.tseal")).unwrap()
}

fn key() -> String {
    vectors().join("test-key.pub").to_str().unwrap().to_string()
}

/// Offset of blob 0 of simple.tseal, from the local file's inspect --json.
fn first_blob_offset() -> usize {
    let o = super::run(
        &[
            "inspect",
            "--json",
            vectors().join("simple.tseal").to_str().unwrap(),
        ],
        &vectors(),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["blobs"][0]["offset"].as_u64().unwrap() as usize
}

#[test]
fn s3_verify_accepts_the_vector_and_refuses_tampered_truncated_and_missing() {
    let Some(s) = server() else { return };
    let key = key();
    let bytes = simple();
    s.put(BUCKET, "ok/simple.tseal", &bytes);
    let url = format!("s3://{BUCKET}/ok/simple.tseal");
    let o = s.tensorseal(&["verify", &url, "--trust", &key, "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["file"], url.as_str());
    assert_eq!(report["file_length"], bytes.len());
    assert_eq!(report["blobs"], 1);

    // One bit of tensor data flipped: the chunk's digest no longer matches.
    let mut tampered = bytes.clone();
    tampered[first_blob_offset() + 3] ^= 1;
    s.put(BUCKET, "bad/tampered.tseal", &tampered);
    let o = s.tensorseal(&[
        "verify",
        &format!("s3://{BUCKET}/bad/tampered.tseal"),
        "--trust",
        &key,
    ]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("does not match its SHA-256"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("tensor weight"), "{}", stderr(&o));

    // Truncated (an interrupted upload by another tool): the footer is gone.
    s.put(BUCKET, "bad/truncated.tseal", &bytes[..bytes.len() - 10]);
    let o = s.tensorseal(&[
        "verify",
        &format!("s3://{BUCKET}/bad/truncated.tseal"),
        "--trust",
        &key,
    ]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));

    for missing in [
        format!("s3://{BUCKET}/no/such.tseal"),
        "s3://tensorseal-no-such-bucket/m.tseal".to_string(),
    ] {
        let o = s.tensorseal(&["verify", &missing, "--trust", &key]);
        assert_eq!(code(&o), 1, "{}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("{missing}: no such object")),
            "{}",
            stderr(&o)
        );
    }

    // Several arguments, files and URLs mixed: the worst exit code wins.
    let local = vectors().join("simple.tseal");
    let o = s.tensorseal(&[
        "verify",
        local.to_str().unwrap(),
        &url,
        &format!("s3://{BUCKET}/bad/tampered.tseal"),
        "--trust",
        &key,
    ]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("1 of 3 files failed"), "{}", stderr(&o));
}

#[test]
fn s3_inspect_shows_what_the_local_file_shows() {
    let Some(s) = server() else { return };
    s.put(BUCKET, "inspect/simple.tseal", &simple());
    let url = format!("s3://{BUCKET}/inspect/simple.tseal");
    let local = vectors().join("simple.tseal");
    for hash in [false, true] {
        let mut args = vec!["inspect", "--json"];
        if hash {
            args.push("--hash");
        }
        let remote = s.tensorseal(&[args.as_slice(), &[url.as_str()]].concat());
        assert_eq!(code(&remote), 0, "{}", stderr(&remote));
        let local = super::run(
            &[args.as_slice(), &[local.to_str().unwrap()]].concat(),
            &vectors(),
        );
        let mut remote: serde_json::Value = serde_json::from_slice(&remote.stdout).unwrap();
        let mut local: serde_json::Value = serde_json::from_slice(&local.stdout).unwrap();
        assert_eq!(remote["file"], url.as_str());
        remote["file"] = serde_json::Value::Null;
        local["file"] = serde_json::Value::Null;
        assert_eq!(remote, local);
    }
}

#[test]
fn s3_reads_are_pinned_to_the_object_first_seen() {
    let Some(s) = server() else { return };
    use tensorseal::ReadAt;
    use tensorseal_store::{ObjectReader, StoreError, StoreOptions};
    let options = StoreOptions {
        config: s.env.clone(),
        ..StoreOptions::default()
    };
    // Unversioned bucket: the ETag pins the object; a replaced object fails the read.
    let bytes = simple();
    s.put(BUCKET, "pinned.tseal", &bytes);
    let object = ObjectReader::open(BUCKET, "pinned.tseal", &options).unwrap();
    assert_eq!(object.length(), bytes.len() as u64);
    assert_eq!(object.read_range(0, 8).unwrap(), &bytes[..8]);
    let mut changed = bytes.clone();
    changed[100] ^= 1;
    s.put(BUCKET, "pinned.tseal", &changed);
    let e = object.read_range(0, 8).unwrap_err();
    assert!(matches!(e, StoreError::Changed { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("s3://{BUCKET}/pinned.tseal: the object changed")),
        "{e}"
    );
    // Through the loader, a changed source is a verification failure, not an I/O error.
    let mut buf = [0u8; 8];
    let io = object.read_exact_at(&mut buf, 0).unwrap_err();
    assert!(
        io.get_ref()
            .is_some_and(|i| i.is::<tensorseal::SourceChanged>())
    );

    // Versioned bucket: the version id pins it; reads keep serving the version first seen.
    s.put(VERSIONED, "pinned.tseal", &bytes);
    let object = ObjectReader::open(VERSIONED, "pinned.tseal", &options).unwrap();
    s.put(VERSIONED, "pinned.tseal", &changed);
    assert_eq!(object.read_range(96, 8).unwrap(), &bytes[96..104]);
    let fresh = ObjectReader::open(VERSIONED, "pinned.tseal", &options).unwrap();
    assert_eq!(fresh.read_range(96, 8).unwrap(), &changed[96..104]);
}

/// Refused before any request, so no server is needed.
#[test]
fn s3_urls_that_are_refused_before_any_request() {
    let run = |args: &[&str], endpoint: &str| {
        Command::new(env!("CARGO_BIN_EXE_tensorseal"))
            .args(args)
            .env_clear()
            .env("AWS_ENDPOINT_URL", endpoint)
            .output()
            .expect("run tensorseal")
    };
    let o = run(&["inspect", "s3://b/m.tseal"], "http://192.0.2.1:9000");
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("s3://b/m.tseal: AWS_ENDPOINT_URL http://192.0.2.1:9000 is plain http:// to another machine"),
        "{}",
        stderr(&o)
    );
    for (url, what) in [
        ("gs://b/m.tseal", "unsupported URL scheme"),
        ("s3://b/dir/", "must name one object, not a prefix"),
        ("s3://b", "needs a key after the bucket"),
    ] {
        let o = run(&["verify", url, "--digests-only"], "http://127.0.0.1:9");
        assert_eq!(code(&o), 1, "{}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("{url}: ")) && stderr(&o).contains(what),
            "{}",
            stderr(&o)
        );
    }
}

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
}

#[test]
fn s3_convert_downloads_pinned_and_uploads_only_a_complete_signed_file() {
    let Some(s) = server() else { return };
    let real = std::fs::read(fixture("real/lpips_alex_v0.1.pth")).unwrap();
    s.put(BUCKET, "legacy/lpips.pth", &real);
    let src = format!("s3://{BUCKET}/legacy/lpips.pth");
    let out = format!("s3://{BUCKET}/sealed/lpips.tseal");
    let sign = vectors().join("test-key.key");
    let o = s.tensorseal(&[
        "convert",
        &src,
        &out,
        "--sign",
        sign.to_str().unwrap(),
        "--meta",
        "step=4",
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["input"].as_str(), v["output"].as_str()),
        (Some(&*src), Some(&*out))
    );
    assert_eq!(v["object"]["url"], out.as_str());
    let etag = v["source_object"]["etag"]
        .as_str()
        .unwrap()
        .trim_matches('"')
        .to_string();
    // Signed, verifiable in place, with the source object's URL and ETag in its metadata.
    let o = s.tensorseal(&["verify", &out, "--trust", &key(), "--min-step", "4"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = s.tensorseal(&["inspect", &out, "--json"]);
    let meta: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(meta["metadata"]["source_url"], src.as_str(), "{meta}");
    assert_eq!(meta["metadata"]["source_etag"], etag.as_str());
    assert_eq!(meta["metadata"]["source_format"], "torch-legacy");
    // The same bytes as a local conversion with that metadata: nothing lost on the way.
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("lpips.tseal");
    let o = super::run(
        &[
            "convert",
            fixture("real/lpips_alex_v0.1.pth").to_str().unwrap(),
            local.to_str().unwrap(),
            "--sign",
            sign.to_str().unwrap(),
            "--meta",
            "step=4",
            "--meta",
            &format!("source_url={src}"),
            "--meta",
            &format!("source_etag={etag}"),
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = s.tensorseal(&["inspect", &out, "--json", "--hash"]);
    let remote: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        remote["manifest_sha256"],
        serde_json::from_slice::<serde_json::Value>(
            &super::run(&["inspect", local.to_str().unwrap(), "--json"], dir.path()).stdout
        )
        .unwrap()["manifest_sha256"]
    );

    // A hostile source: exit 4 as for a local file, and the existing object stays as it was.
    let hostile = std::fs::read(fixture("hostile/l_payload_in_4th_pickle.pt")).unwrap();
    s.put(BUCKET, "legacy/hostile.pt", &hostile);
    let o = s.tensorseal(&[
        "convert",
        &format!("s3://{BUCKET}/legacy/hostile.pt"),
        &out,
        "--json",
    ]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("s3://{BUCKET}/legacy/hostile.pt: ")),
        "{v}"
    );
    let o = s.tensorseal(&["verify", &out, "--trust", &key(), "--min-step", "4"]);
    assert_eq!(
        code(&o),
        0,
        "the earlier object was replaced: {}",
        stderr(&o)
    );
    // A missing source: exit 1 naming it, and nothing written.
    let o = s.tensorseal(&[
        "convert",
        &format!("s3://{BUCKET}/legacy/absent.pt"),
        &format!("s3://{BUCKET}/sealed/absent.tseal"),
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("legacy/absent.pt: no such object"),
        "{}",
        stderr(&o)
    );
    let o = s.tensorseal(&["inspect", &format!("s3://{BUCKET}/sealed/absent.tseal")]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
}

#[test]
fn s3_scan_and_export_read_a_pinned_copy_of_the_object() {
    let Some(s) = server() else { return };
    s.put(
        BUCKET,
        "scan/real.pth",
        &std::fs::read(fixture("real/lpips_alex_v0.1.pth")).unwrap(),
    );
    s.put(
        BUCKET,
        "scan/hostile.pt",
        &std::fs::read(fixture("hostile/l_payload_in_4th_pickle.pt")).unwrap(),
    );
    let real = format!("s3://{BUCKET}/scan/real.pth");
    let o = s.tensorseal(&["scan", &real, "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["input"].as_str(), v["verdict"].as_str()),
        (Some(&*real), Some("safe")),
        "{v}"
    );
    let o = s.tensorseal(&["scan", &format!("s3://{BUCKET}/scan/hostile.pt")]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let o = s.tensorseal(&["scan", &format!("s3://{BUCKET}/scan/absent.pt")]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("no such object"), "{}", stderr(&o));

    s.put(BUCKET, "export/simple.tseal", &simple());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("simple.safetensors");
    let url = format!("s3://{BUCKET}/export/simple.tseal");
    let o = s.tensorseal(&["export", &url, out.to_str().unwrap(), "--trust", &key()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let bytes = std::fs::read(&out).unwrap();
    assert!(safetensors::SafeTensors::deserialize(&bytes).is_ok());
    let mut tampered = simple();
    tampered[first_blob_offset() + 3] ^= 1;
    s.put(BUCKET, "export/tampered.tseal", &tampered);
    let bad = dir.path().join("bad.safetensors");
    let o = s.tensorseal(&[
        "export",
        &format!("s3://{BUCKET}/export/tampered.tseal"),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(!bad.exists());
}

/// Held by each test that arms the fault proxy's faults, which all its clients share.
static PROXY_FAULTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Server {
    /// The server's environment with the fault proxy as the endpoint.
    fn proxied_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .env
            .iter()
            .filter(|(k, _)| k != "AWS_ENDPOINT_URL")
            .cloned()
            .collect();
        env.push(("AWS_ENDPOINT_URL".into(), format!("http://{}", self.proxy)));
        env
    }

    /// Sends one control request to the fault proxy and returns its JSON answer (the faults
    /// armed, how many requests each has hit, and the access key id last seen).
    fn faults(&self, method: &str, query: &str) -> serde_json::Value {
        use std::io::Read;
        let mut c = std::net::TcpStream::connect(&self.proxy).expect("fault proxy");
        write!(
            c,
            "{method} /__fault__?{query} HTTP/1.1\r\nHost: proxy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        let body = answer.split_once("\r\n\r\n").expect("an HTTP answer").1;
        serde_json::from_str(body).expect("JSON from the fault proxy")
    }

    fn tensorseal_proxied(&self, args: &[&str]) -> Output {
        run_with(args, self.proxied_env())
    }
}

/// Issue 10, item 4: through a proxy that injects faults in front of the real server, transient
/// 5xx answers and connections dropped mid-body are retried to a correct result; persistent 5xx
/// fail within the retry bound, a stalled server within the request timeout, a 403 at once with
/// exit 1 naming the URL. Serialized: the proxy's faults are shared.
#[test]
fn s3_faults_are_retried_bounded_and_reported() {
    let Some(s) = server() else { return };
    let _serial = PROXY_FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    use std::time::{Duration, Instant};
    use tensorseal_store::{ObjectReader, StoreOptions};
    let bytes = std::fs::read(vectors().join("planes.tseal")).unwrap();
    s.put(BUCKET, "faults/planes.tseal", &bytes);
    let url = format!("s3://{BUCKET}/faults/planes.tseal");
    let options = StoreOptions {
        config: s.proxied_env(),
        request_timeout: Duration::from_secs(2),
        max_retries: 3,
        retry_budget: Duration::from_secs(20),
        ..StoreOptions::default()
    };
    s.faults("DELETE", "");

    // Two 503s, then a good answer: the read succeeds, and both faults were met.
    s.faults("POST", "kind=status&status=503&count=2&method=GET");
    let object = ObjectReader::open(BUCKET, "faults/planes.tseal", &options).unwrap();
    assert_eq!(object.read_range(64, 4096).unwrap(), &bytes[64..4160]);
    assert_eq!(s.faults("GET", "")["faults"][0]["hits"], 2);

    // Two connections dropped halfway through the body: retried to the exact bytes.
    s.faults("DELETE", "");
    s.faults("POST", "kind=drop&count=2&method=GET");
    let got = object.read_range(0, bytes.len() as u64).unwrap();
    assert!(got == bytes, "a retried read returns the object's bytes");
    assert_eq!(s.faults("GET", "")["faults"][0]["hits"], 2);

    // A server that keeps failing: an error naming the URL, after the retries, in bounded time.
    s.faults("DELETE", "");
    s.faults("POST", "kind=status&status=500&count=1000&method=GET");
    let t = Instant::now();
    let e = object.read_range(0, 64).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(25), "{:?}", t.elapsed());
    assert!(e.to_string().starts_with(&url), "{e}");
    let hits = s.faults("GET", "")["faults"][0]["hits"].as_u64().unwrap();
    assert_eq!(hits, 4, "one request and 3 retries");

    // A stalled server: the request timeout ends each try.
    s.faults("DELETE", "");
    s.faults("POST", "kind=stall&seconds=6&count=1000&method=GET");
    let t = Instant::now();
    assert!(object.read_range(0, 64).is_err());
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    s.faults("DELETE", "");

    // The CLI through the proxy: transient faults of every kind still verify (exit 0)...
    let key = key();
    s.faults("POST", "kind=status&status=503&count=2");
    s.faults("POST", "kind=drop&count=2&method=GET");
    let o = s.tensorseal_proxied(&["verify", &url, "--trust", &key]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = s.tensorseal_proxied(&["inspect", &url]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // ...and access denied is exit 1, naming the URL, without retries.
    s.faults("DELETE", "");
    s.faults("POST", "kind=status&status=403&count=1000");
    let o = s.tensorseal_proxied(&["verify", &url, "--trust", &key]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains(&url), "{}", stderr(&o));
    assert_eq!(
        s.faults("GET", "")["faults"][0]["hits"],
        1,
        "a 403 is not retried"
    );
    s.faults("DELETE", "");
}

/// Issue 10, item 1: credentials, region and endpoint from a named profile in the AWS shared
/// files, as the AWS CLI reads them, when the environment gives none; the environment wins over
/// the profile; a missing or unsupported profile is exit 1 naming it.
#[test]
fn s3_profiles_from_the_aws_shared_files() {
    let Some(s) = server() else { return };
    let _serial = PROXY_FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    let bytes = simple();
    s.put(BUCKET, "profile/simple.tseal", &bytes);
    let url = format!("s3://{BUCKET}/profile/simple.tseal");
    let dir = tempfile::tempdir().unwrap();
    let (credentials, config) = (dir.path().join("credentials"), dir.path().join("config"));
    std::fs::write(
        &credentials,
        "[ci]\naws_access_key_id = AKIAPROFILECI\naws_secret_access_key = secret-ci\n",
    )
    .unwrap();
    std::fs::write(
        &config,
        format!(
            "[profile ci]\nregion = us-east-1\nendpoint_url = http://{}\n[profile sso]\nsso_session = corp\n",
            s.proxy
        ),
    )
    .unwrap();
    let run = |profile: &str, extra: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_tensorseal"))
            .args(["verify", &url, "--trust", &key()])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("AWS_PROFILE", profile)
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env("AWS_CONFIG_FILE", &config)
            .envs(extra.iter().copied())
            .output()
            .expect("run tensorseal")
    };
    s.faults("DELETE", "");
    let o = run("ci", &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(s.faults("GET", "")["access_key"], "AKIAPROFILECI");
    // Keys in the environment win over the profile's; its endpoint still applies.
    let o = run(
        "ci",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAFROMENV"),
            ("AWS_SECRET_ACCESS_KEY", "secret-env"),
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(s.faults("GET", "")["access_key"], "AKIAFROMENV");
    for (profile, says) in [("nope", "\"nope\" is in neither"), ("sso", "sso_session")] {
        let o = run(profile, &[]);
        assert_eq!(code(&o), 1, "{}", stderr(&o));
        assert!(
            stderr(&o).contains(&url) && stderr(&o).contains(says),
            "{}",
            stderr(&o)
        );
    }
}

/// `tensorseal convert DCP_DIR s3://BUCKET/PREFIX/`: the shard set is converted locally under
/// the sandbox, then every shard and the index (last) are uploaded whole; a prefix that already
/// holds a set is refused before converting.
#[test]
fn s3_convert_a_dcp_folder_to_a_shard_set_in_a_bucket() {
    let Some(s) = server() else { return };
    let dcp = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tensorseal-convert/tests/data/dcp/two_rank");
    let signer = vectors().join("test-key.key");
    let url = format!("s3://{BUCKET}/sets/run-1/");
    let o = s.tensorseal(&[
        "convert",
        dcp.to_str().unwrap(),
        &url,
        "--sign",
        signer.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let uploaded: Vec<&str> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        uploaded.last(),
        Some(&&*format!("{url}index.tseal")),
        "index last"
    );
    let options = tensorseal_store::StoreOptions {
        config: s.env.clone(),
        ..Default::default()
    };
    let listed = tensorseal_store::list_folder(&url, &options).unwrap();
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["__0_0.tseal", "__1_0.tseal", "index.tseal"]);
    for name in names {
        let o = s.tensorseal(&["verify", &format!("{url}{name}"), "--trust", &key()]);
        assert_eq!(code(&o), 0, "{name}: {}", stderr(&o));
    }
    let o = s.tensorseal(&["convert", dcp.to_str().unwrap(), &url]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("already holds __0_0.tseal"),
        "{}",
        stderr(&o)
    );
}

/// `convert ... s3://... --sign fd:N --attest OUT`: the one-shot key is read once by the parent
/// and handed to the conversion, and the attestation names and digests the uploaded object.
#[test]
fn s3_convert_with_an_fd_key_and_an_attestation() {
    let Some(s) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let att = dir.path().join("x.intoto.jsonl");
    let url = format!("s3://{BUCKET}/attested/x.tseal");
    let key_file = vectors().join("test-key.key");
    // Process substitution: fd 3 is a pipe, readable exactly once.
    let script = format!(
        "exec 3< <(cat '{}'); exec '{}' convert '{}' '{url}' --sign fd:3 --attest '{}' --json",
        key_file.display(),
        env!("CARGO_BIN_EXE_tensorseal"),
        fixture("numpy/be_i4.npy").display(),
        att.display()
    );
    let o = Command::new("bash")
        .args(["-c", &script])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(s.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let options = tensorseal_store::StoreOptions {
        config: s.env.clone(),
        ..Default::default()
    };
    let object =
        tensorseal_store::ObjectReader::open(BUCKET, "attested/x.tseal", &options).unwrap();
    let bytes = object.read_range(0, object.length()).unwrap();
    let envelope: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&att).unwrap()).unwrap();
    use base64ct::Encoding as _;
    let payload = base64ct::Base64::decode_vec(envelope["payload"].as_str().unwrap()).unwrap();
    let statement: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(statement["subject"][0]["name"], "x.tseal");
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        hex::encode(tensorseal::sha256(&bytes)).as_str()
    );
    let o = s.tensorseal(&["verify", &url, "--trust", &key()]);
    assert_eq!(code(&o), 0, "signed with the fd key: {}", stderr(&o));
}
