//! `convert` with an `s3://` input or output. The conversion itself runs as it does for local
//! files, in a child `tensorseal convert` on local copies (so it locks itself down as usual);
//! this process, which the sandbox never restricts, downloads the source before (range GETs
//! pinned to one object, whose URL, ETag and version id become signed metadata beside
//! `source_sha256`) and uploads the result after, in one multipart upload completed only after
//! its last part: nothing appears under the key before, and a failure leaves an existing
//! object untouched.

use super::{ConvertArgs, attestation_input};
use crate::failure::Failure;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tensorseal_store::{ObjectVersion, StoreOptions};

const INVALID: u8 = 1;

fn store_failure(e: &tensorseal_store::StoreError) -> Failure {
    use tensorseal::Classify as _;
    Failure::new(e.class().exit_code(), e.to_string()).with_kind(e.kind())
}

fn object_json(v: &ObjectVersion) -> Value {
    json!({"url": v.url, "length": v.length, "etag": v.etag, "version": v.version})
}

/// The last path segment of a URL, for the local copy's name.
fn file_name(url: &str) -> String {
    url.rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("object")
        .to_string()
}

fn temp_dir() -> Result<tempfile::TempDir, Failure> {
    tempfile::Builder::new()
        .prefix("tensorseal-s3-")
        .tempdir()
        .map_err(|e| Failure::new(INVALID, format!("cannot create a temporary folder: {e}")))
}

/// Downloads the object at `url` into the new file `path`, every range GET pinned to the
/// object first seen; which object it was.
fn download(url: &str, path: &Path) -> Result<ObjectVersion, Failure> {
    let file = std::fs::File::create(path)
        .map_err(|e| Failure::new(INVALID, format!("{}: {e}", path.display())))?;
    tensorseal_store::download_file(
        url,
        &file,
        &path.display().to_string(),
        &StoreOptions::default(),
    )
    .map_err(|e| store_failure(&e))
}

/// A command's input as a local file: the path itself, or for an `s3://` URL a local copy in a
/// temporary folder that lives as long as this value. What `scan` and `export` read.
pub(super) struct LocalInput {
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl LocalInput {
    pub(super) fn of(arg: &Path) -> Result<LocalInput, Failure> {
        let Some(url) = crate::remote::url_of(arg) else {
            return Ok(LocalInput {
                path: arg.to_path_buf(),
                _temp: None,
            });
        };
        let temp = temp_dir()?;
        let path = temp.path().join(file_name(url));
        download(url, &path)?;
        Ok(LocalInput {
            path,
            _temp: Some(temp),
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

/// Runs `convert` for `args`, whose input or output (or both) is a URL.
pub(super) fn convert(args: &ConvertArgs) -> Result<(), Failure> {
    let in_url = crate::remote::url_of(&args.input).map(str::to_string);
    let out_url = crate::remote::url_of(&args.output).map(str::to_string);
    let set_output = out_url.is_some() && tensorseal_convert::is_folder_output(&args.output);
    if let Some(url) = out_url.as_deref().filter(|_| set_output) {
        // Fail before converting: a prefix that already holds shards would mix two sets.
        let present: Vec<String> = tensorseal_store::list_folder(url, &StoreOptions::default())
            .map_err(|e| store_failure(&e))?
            .into_iter()
            .map(|(name, _)| name)
            .filter(|n| n.ends_with(".tseal"))
            .collect();
        if !present.is_empty() {
            return Err(Failure::new(
                INVALID,
                format!(
                    "{url}: the prefix already holds {}: write each shard set to a fresh prefix",
                    present[..present.len().min(4)].join(", ")
                ),
            ));
        }
        if args.attest.is_some() {
            return Err(Failure::new(
                2,
                "--attest with a shard set in a bucket is not supported yet: write the set to a \
                 local folder, attest it, then upload",
            ));
        }
    }
    // An fd: key can be read only once, and both the conversion (in the child) and the
    // attestation (here) need it: read it here and hand it to the child on its standard input.
    let fd_keys: Vec<usize> = (0..args.sign.len())
        .filter(|&i| args.sign[i].to_string_lossy().starts_with("fd:"))
        .collect();
    let handed = match &fd_keys[..] {
        [] => None,
        [i] if args.attest.is_some() => Some((*i, crate::keysource::secret_key(&args.sign[*i])?)),
        [..] if args.attest.is_none() => None,
        _ => {
            return Err(Failure::new(
                2,
                "--attest with an s3:// input or output takes at most one fd: key (it is handed \
                 to the conversion on its standard input); give the others as paths or env:VAR",
            ));
        }
    };
    let temp = temp_dir()?;
    let mut meta = args.meta.clone();
    let (local_in, source) = match &in_url {
        Some(url) => {
            let path = temp.path().join(format!("in-{}", file_name(url)));
            let got = download(url, &path)?;
            for (k, v) in [
                ("source_url", Some(url.clone())),
                (
                    "source_etag",
                    got.etag.as_ref().map(|e| e.trim_matches('"').to_string()),
                ),
                ("source_version", got.version.clone()),
            ] {
                if let Some(v) = v
                    && !meta.iter().any(|(mk, _)| mk == k)
                {
                    meta.push((k.to_string(), v));
                }
            }
            (path, Some(got))
        }
        None => (args.input.clone(), None),
    };
    let local_out = match &out_url {
        // A trailing `/` keeps the child's folder-output rule: it writes a shard set there.
        Some(_) if set_output => {
            PathBuf::from(format!("{}/", temp.path().join("out-set").display()))
        }
        // The object's own name: an attestation names its subject by the file's name.
        Some(url) => temp.path().join(file_name(url)),
        None => args.output.clone(),
    };
    let mut report = run_child(args, &local_in, &local_out, &meta, handed.as_ref())?;
    let code = report["exit_code"].as_u64().unwrap_or(u64::from(INVALID)) as u8;
    let rename = |v: &mut Value| {
        v["input"] = json!(args.input.display().to_string());
        v["output"] = json!(args.output.display().to_string());
    };
    if code != 0 {
        rename(&mut report);
        let kind = report["error"]["kind"].as_str().unwrap_or("io").to_string();
        let message = report["error"]["message"]
            .as_str()
            .unwrap_or("conversion failed")
            .replace(
                &local_in.display().to_string(),
                &args.input.display().to_string(),
            )
            .replace(
                &local_out.display().to_string(),
                &args.output.display().to_string(),
            );
        report["error"]["message"] = json!(message);
        if args.json {
            crate::output::json(&report);
        }
        return Err(Failure::new(code, message).with_kind(static_kind(&kind)));
    }
    if let (Some(out), Some(spec)) = (&args.attest, args.sign.first()) {
        let read;
        let key = match &handed {
            Some((0, key)) => key,
            _ => {
                read = crate::keysource::secret_key(spec)?;
                &read
            }
        };
        let inert: Vec<String> = report["inert_objects"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let input = attestation_input(
            args,
            report["source_format"].as_str().unwrap_or(""),
            report["source_sha256"].as_str().unwrap_or(""),
            &inert,
        );
        crate::attest::write(&local_out, key, &input, out)?;
    }
    let uploaded = match &out_url {
        Some(url) if set_output => upload_set(&local_out, url)?,
        Some(url) => vec![
            tensorseal_store::upload_file(&local_out, url, &StoreOptions::default())
                .map_err(|e| store_failure(&e))?,
        ],
        None => Vec::new(),
    };
    rename(&mut report);
    if let Some(s) = &source {
        report["source_object"] = object_json(s);
    }
    match &uploaded[..] {
        [u] if !set_output => report["object"] = object_json(u),
        [] => {}
        all => report["objects"] = json!(all.iter().map(object_json).collect::<Vec<_>>()),
    }
    if args.json {
        crate::output::json(&report);
    } else if !args.quiet {
        eprintln!(
            "converted {} ({}) -> {}: {} tensors, {} blobs, {} bytes{}",
            args.input.display(),
            report["source_format"].as_str().unwrap_or("?"),
            args.output.display(),
            report["tensors"],
            report["blobs"],
            report["bytes"],
            if args.sign.is_empty() {
                ", unsigned".to_string()
            } else {
                format!(", signed by {} key(s)", args.sign.len())
            },
        );
    }
    Ok(())
}

/// Uploads the shard set in the local folder `set` to the prefix `url`: every shard, then the
/// index last, each in one multipart upload completed after its last part, so the prefix holds
/// a set that verifies only once its index is there. A failure after some shards leaves them
/// without an index, which no reader accepts (a fresh prefix is needed to try again).
fn upload_set(set: &Path, url: &str) -> Result<Vec<ObjectVersion>, Failure> {
    let index = tensorseal::SHARD_INDEX_FILE;
    let mut names: Vec<String> = std::fs::read_dir(set)
        .map_err(|e| Failure::new(INVALID, format!("{}: {e}", set.display())))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".tseal") && n != index)
        .collect();
    names.sort();
    names.push(index.to_string());
    let prefix = url.trim_end_matches('/');
    names
        .iter()
        .map(|name| {
            tensorseal_store::upload_file(
                &set.join(name),
                &format!("{prefix}/{name}"),
                &StoreOptions::default(),
            )
            .map_err(|e| store_failure(&e))
        })
        .collect()
}

/// The `--json` kinds a child may report, as the static strings [`Failure`] keeps.
fn static_kind(kind: &str) -> &'static str {
    const KINDS: &[&str] = &[
        "io",
        "invalid",
        "malformed",
        "unsupported",
        "unsafe",
        "unknown_objects",
        "sandbox",
        "name_collision",
        "usage",
    ];
    KINDS
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("invalid")
}

/// `tensorseal convert LOCAL_IN LOCAL_OUT` with the caller's options, in a child process; its
/// `--json` report. Its standard error (sandbox warnings) is the caller's. `handed`: the
/// `--sign` argument at that index already read here, given to the child as `fd:0`.
fn run_child(
    args: &ConvertArgs,
    input: &Path,
    output: &Path,
    meta: &[(String, String)],
    handed: Option<&(usize, tensorseal::SecretKey)>,
) -> Result<Value, Failure> {
    let exe: PathBuf = std::env::current_exe()
        .map_err(|e| Failure::new(INVALID, format!("cannot find this program to re-run: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("convert")
        .arg(input)
        .arg(output)
        .args(["--json", "--quiet"]);
    for (i, s) in args.sign.iter().enumerate() {
        match handed {
            Some((h, _)) if *h == i => cmd.arg("--sign").arg("fd:0"),
            _ => cmd.arg("--sign").arg(s),
        };
    }
    if let Some(c) = &args.compress {
        cmd.arg("--compress").arg(c.to_string());
    }
    if args.allow_objects {
        cmd.arg("--allow-objects");
    }
    for (k, v) in meta {
        cmd.arg("--meta").arg(format!("{k}={v}"));
    }
    if args.sandbox.require_sandbox {
        cmd.arg("--require-sandbox");
    }
    if args.sandbox.no_sandbox {
        cmd.arg("--no-sandbox");
    }
    let cannot =
        |e: std::io::Error| Failure::new(INVALID, format!("cannot run the conversion: {e}"));
    let out = match handed {
        None => cmd
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(cannot)?,
        Some((_, key)) => {
            let pem = key
                .to_pem()
                .map_err(|e| Failure::new(INVALID, format!("cannot hand the key on: {e}")))?;
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(cannot)?;
            // The child reads its key before anything else; dropping the pipe ends its input.
            let written = child
                .stdin
                .take()
                .map(|mut stdin| std::io::Write::write_all(&mut stdin, pem.as_bytes()));
            let out = child.wait_with_output().map_err(cannot)?;
            if let Some(Err(e)) = written {
                return Err(cannot(e));
            }
            out
        }
    };
    serde_json::from_slice(&out.stdout).map_err(|e| {
        Failure::new(
            INVALID,
            format!(
                "the conversion exited with {} without a report: {e}",
                out.status
            ),
        )
    })
}
