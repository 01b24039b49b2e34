//! The audit log: JSON lines in a hash chain, sealed by signed checkpoints (spec/AUDIT.md).
//!
//! Appending takes an exclusive `flock(2)` on the log, reads its last line, and writes the new
//! line with one `write(2)` on an `O_APPEND` descriptor followed by `fsync`, all under the lock:
//! concurrent writers (threads or processes) therefore never interleave partial lines and the
//! chain stays linear. The lock is advisory: a writer that does not take it (an editor, `echo
//! >>`) is not excluded, but whatever it writes breaks the chain and is reported.

use crate::error::AuditError;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;
use tensorseal::{PublicKey, SecretKey};

/// The `prev` of the first line: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Prefix of the message a checkpoint signs, followed by the checkpoint's `seq` (8 bytes, big
/// endian) and the 32-byte SHA-256 of the line before it.
pub const CHECKPOINT_DOMAIN: &[u8] = b"tensorseal-audit-checkpoint-v1\0";
/// Longest line written or read, in bytes (without the newline).
pub const MAX_LINE: usize = 1 << 20;

/// Members the log itself sets on every line; a record may not contain them.
const RESERVED: [&str; 3] = ["seq", "prev", "type"];

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The message a checkpoint at `seq` over a log whose previous line hashes to `prev` signs.
fn checkpoint_message(seq: u64, prev: &[u8; 32]) -> Vec<u8> {
    let mut m = CHECKPOINT_DOMAIN.to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(prev);
    m
}

fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    tensorseal::format_utc(secs)
}

/// The host name and the user (`$USER`, else `uid:N`) for records.
pub fn host_and_user() -> (String, String) {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid:{}", rustix::process::getuid().as_raw()));
    (host, user)
}

/// `{"path", "length", "sha256"}` of a file; the SHA-256 only if the file is at most
/// `hash_limit` bytes (hashing a multi-gigabyte checkpoint only for the log is not cheap), else
/// null. A file that cannot be read gives `{"path", "error"}`.
pub fn file_facts(path: &Path, hash_limit: u64) -> Value {
    let result = (|| -> std::io::Result<Value> {
        let mut f = File::open(path)?;
        let length = f.metadata()?.len();
        let sha256 = if length <= hash_limit {
            Value::String(hex::encode(crate::file_digest::sha256_to_end(&mut f)?.0))
        } else {
            Value::Null
        };
        Ok(json!({"path": path.display().to_string(), "length": length, "sha256": sha256}))
    })();
    result.unwrap_or_else(|e| json!({"path": path.display().to_string(), "error": e.to_string()}))
}

/// An audit log open for appending.
///
/// With a key, [`AuditLog::append`] writes a signed checkpoint after every
/// [`checkpoint_every`](AuditLog::checkpoint_every) records of this writer, and
/// [`AuditLog::seal`] (call it before exiting) writes one if any record of this writer is not
/// yet covered. The log is not sealed on drop, so that a crash is visible as an unsealed tail.
pub struct AuditLog<'k> {
    file: File,
    key: Option<&'k SecretKey>,
    every: u64,
    unsealed: u64,
}

/// Holds the log's exclusive advisory lock; released when dropped (and when the process dies).
struct Locked<'f>(&'f File);

impl<'f> Locked<'f> {
    fn new(file: &'f File) -> std::io::Result<Locked<'f>> {
        rustix::fs::flock(file, rustix::fs::FlockOperation::LockExclusive)?;
        Ok(Locked(file))
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(self.0, rustix::fs::FlockOperation::Unlock);
    }
}

impl<'k> AuditLog<'k> {
    /// Opens (creating, mode 0600) the log at `path` for appending; `key` signs checkpoints.
    pub fn open(path: &Path, key: Option<&'k SecretKey>) -> Result<AuditLog<'k>, AuditError> {
        let mut opts = OpenOptions::new();
        opts.read(true).append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        Ok(AuditLog {
            file: opts.open(path)?,
            key,
            every: 100,
            unsealed: 0,
        })
    }

    /// Writes a checkpoint after every `n` records of this writer (default 100; 0 means only
    /// at [`AuditLog::seal`]).
    pub fn checkpoint_every(mut self, n: u64) -> AuditLog<'k> {
        self.every = n;
        self
    }

    /// The `seq` of the last line and the SHA-256 of its bytes, read under the lock.
    fn head(&mut self) -> Result<(u64, [u8; 32]), AuditError> {
        let len = self.file.seek(SeekFrom::End(0))?;
        if len == 0 {
            return Ok((0, [0; 32]));
        }
        let window = len.min(MAX_LINE as u64 + 2);
        let mut tail = vec![0u8; window as usize];
        self.file.seek(SeekFrom::Start(len - window))?;
        self.file.read_exact(&mut tail)?;
        if tail.last() != Some(&b'\n') {
            return Err(AuditError::Record(
                "the log ends in a partial line (a writer crashed mid-write, or it was edited); \
                 run `tensorseal audit verify` on it and start a new log"
                    .into(),
            ));
        }
        let body = &tail[..tail.len() - 1];
        let start = match body.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if window == len => 0,
            None => {
                return Err(AuditError::Record(format!(
                    "the last line is longer than {MAX_LINE} bytes"
                )));
            }
        };
        let last = &body[start..];
        let seq = serde_json::from_slice::<Value>(last)
            .ok()
            .and_then(|v| v.get("seq").and_then(Value::as_u64))
            .ok_or_else(|| {
                AuditError::Record(
                    "the last line is not an audit record with a seq; run `tensorseal audit verify`"
                        .into(),
                )
            })?;
        Ok((seq, Sha256::digest(last).into()))
    }

    /// Writes one line: `fields` plus `seq` and `prev`, in one `write(2)`, then `fsync`.
    fn write_line(
        &mut self,
        mut fields: Map<String, Value>,
        seq: u64,
        prev: &[u8; 32],
    ) -> Result<[u8; 32], AuditError> {
        fields.insert("seq".into(), seq.into());
        let prev_hex = if seq == 1 {
            GENESIS.to_string()
        } else {
            hex::encode(prev)
        };
        fields.insert("prev".into(), prev_hex.into());
        let mut line = serde_json::to_vec(&Value::Object(fields)).expect("JSON values serialize");
        if line.len() > MAX_LINE {
            return Err(AuditError::Record(format!(
                "record of {} bytes is longer than {MAX_LINE}",
                line.len()
            )));
        }
        let digest: [u8; 32] = Sha256::digest(&line).into();
        line.push(b'\n');
        // O_APPEND: the kernel positions each write at the end, atomically with the write.
        let n = self.file.write(&line)?;
        if n != line.len() {
            return Err(AuditError::Io(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write to the audit log: {n} of {} bytes", line.len()),
            )));
        }
        self.file.sync_data()?;
        Ok(digest)
    }

    fn checkpoint_fields(key: &SecretKey, seq: u64, prev: &[u8; 32]) -> Map<String, Value> {
        let public = key.public_key();
        let signature = key.sign_message(&checkpoint_message(seq, prev));
        let mut m = Map::new();
        m.insert("type".into(), "checkpoint".into());
        m.insert("time".into(), now_utc().into());
        m.insert("key_id".into(), public.key_id().into());
        m.insert("public_key".into(), hex::encode(public.to_bytes()).into());
        m.insert("signature".into(), hex::encode(signature).into());
        m
    }

    /// Appends `record` (a JSON object; `time` is added if absent) and returns its line number.
    pub fn append(&mut self, record: Value) -> Result<u64, AuditError> {
        let Value::Object(mut fields) = record else {
            return Err(AuditError::Record("a record must be a JSON object".into()));
        };
        if let Some(k) = RESERVED.iter().find(|k| fields.contains_key(**k)) {
            return Err(AuditError::Record(format!(
                "a record may not set {k:?}: the log sets it"
            )));
        }
        fields.insert("type".into(), "record".into());
        fields
            .entry("time")
            .or_insert_with(|| Value::String(now_utc()));
        let file = self.file.try_clone()?;
        let _lock = Locked::new(&file)?;
        let (seq, prev) = self.head()?;
        let digest = self.write_line(fields, seq + 1, &prev)?;
        self.unsealed += 1;
        if let Some(key) = self.key
            && self.every > 0
            && self.unsealed >= self.every
        {
            self.write_line(
                Self::checkpoint_fields(key, seq + 2, &digest),
                seq + 2,
                &digest,
            )?;
            self.unsealed = 0;
        }
        Ok(seq + 1)
    }

    /// Writes a signed checkpoint if this writer has a key and appended records since its last
    /// one.
    pub fn seal(&mut self) -> Result<(), AuditError> {
        let Some(key) = self.key else { return Ok(()) };
        if self.unsealed == 0 {
            return Ok(());
        }
        let file = self.file.try_clone()?;
        let _lock = Locked::new(&file)?;
        let (seq, prev) = self.head()?;
        self.write_line(Self::checkpoint_fields(key, seq + 1, &prev), seq + 1, &prev)?;
        self.unsealed = 0;
        Ok(())
    }
}

/// What [`verify_log`] established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReport {
    /// Lines in the log.
    pub lines: u64,
    /// Record lines.
    pub records: u64,
    /// Checkpoint lines (each signature valid).
    pub checkpoints: u64,
    /// SHA-256 of the last line: keep it elsewhere to detect a later truncation to a checkpoint.
    pub head: String,
    /// Key ids that signed checkpoints.
    pub checkpoint_keys: Vec<String>,
}

/// Checks the chain of the log at `path`: every line is a JSON object whose `seq` is its line
/// number and whose `prev` is the SHA-256 of the line before (or [`GENESIS`]); every checkpoint's
/// signature is valid. With `keys`, every checkpoint must be signed by one of them and the log
/// must end with a checkpoint, so a truncated tail is detected.
pub fn verify_log(path: &Path, keys: &[PublicKey]) -> Result<LogReport, AuditError> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut prev = GENESIS.to_string();
    let mut report = LogReport {
        lines: 0,
        records: 0,
        checkpoints: 0,
        head: GENESIS.to_string(),
        checkpoint_keys: Vec::new(),
    };
    let mut last_checkpoint = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        let line = report.lines + 1;
        let broken = |what: String| AuditError::Broken { line, what };
        if buf.last() != Some(&b'\n') {
            return Err(broken(if n > MAX_LINE {
                format!("longer than {MAX_LINE} bytes")
            } else {
                "partial last line (no newline): torn by a crash or truncated".into()
            }));
        }
        let bytes = &buf[..buf.len() - 1];
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| broken(format!("not a JSON record: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| broken("not a JSON object".into()))?;
        let seq = obj.get("seq").and_then(Value::as_u64);
        if seq != Some(line) {
            return Err(broken(format!(
                "seq is {}, expected {line}: lines were deleted, inserted or reordered",
                obj.get("seq")
                    .map_or("missing".to_string(), Value::to_string)
            )));
        }
        if obj.get("prev").and_then(Value::as_str) != Some(prev.as_str()) {
            return Err(broken(if line == 1 {
                "prev is not the genesis value: lines before it were removed".to_string()
            } else {
                format!(
                    "prev does not match the SHA-256 of line {}: that line was edited, or lines \
                     were deleted or reordered",
                    line - 1
                )
            }));
        }
        match obj.get("type").and_then(Value::as_str) {
            Some("record") => report.records += 1,
            Some("checkpoint") => {
                let key_id = check_checkpoint(obj, line, &prev, keys).map_err(broken)?;
                if !report.checkpoint_keys.contains(&key_id) {
                    report.checkpoint_keys.push(key_id);
                }
                report.checkpoints += 1;
                last_checkpoint = line;
            }
            other => return Err(broken(format!("unknown line type {other:?}"))),
        }
        prev = sha256_hex(bytes);
        report.lines = line;
    }
    report.head = prev;
    if !keys.is_empty() && last_checkpoint != report.lines {
        return Err(AuditError::Unsealed {
            what: if last_checkpoint == 0 {
                format!(
                    "no signed checkpoint in {} line(s): the log was not sealed by a trusted key",
                    report.lines
                )
            } else {
                format!(
                    "lines {}..={} come after the last signed checkpoint (line {last_checkpoint}): \
                     unsealed tail (a writer died before sealing, or the log was tampered with)",
                    last_checkpoint + 1,
                    report.lines
                )
            },
        });
    }
    Ok(report)
}

/// Checks one checkpoint line; returns its key id.
fn check_checkpoint(
    obj: &Map<String, Value>,
    seq: u64,
    prev_hex: &str,
    keys: &[PublicKey],
) -> Result<String, String> {
    let field = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("checkpoint without {k}"))
    };
    let public: [u8; 32] = hex::decode(field("public_key")?)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("checkpoint public_key is not 32 hex bytes")?;
    let key = PublicKey::from_bytes(&public).map_err(|e| format!("checkpoint key: {e}"))?;
    if field("key_id")? != key.key_id() {
        return Err("checkpoint key_id does not match its public_key".into());
    }
    let signature: [u8; 64] = hex::decode(field("signature")?)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("checkpoint signature is not 64 hex bytes")?;
    let prev: [u8; 32] = if seq == 1 {
        [0; 32]
    } else {
        hex::decode(prev_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("prev is not a SHA-256")?
    };
    if !key.verify_message(&checkpoint_message(seq, &prev), &signature) {
        return Err(format!(
            "checkpoint signature by key {} is invalid",
            key.short_id()
        ));
    }
    if !keys.is_empty() && !keys.contains(&key) {
        return Err(format!(
            "checkpoint signed by key {}, which is not a trusted audit key",
            key.short_id()
        ));
    }
    Ok(key.key_id())
}
