//! Trust policy files (spec/POLICY.md): named keys with validity windows, revoked key ids,
//! per-key `run_id` patterns, threshold and minimum step, loaded strictly from TOML.
//!
//! The rules are evaluated by [`crate::verify`] in two steps, in the order of spec §7: key-level
//! rules (revocation, validity window) when signatures are counted, before the manifest is
//! parsed; `run_id` patterns once the authenticated manifest is available.

use crate::error::{KeyError, PolicyError};
use crate::keys::PublicKey;
use crate::verify::TrustPolicy;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

/// Largest policy file read, in bytes; a policy is a few keys, not a data set.
pub const MAX_POLICY_FILE: u64 = 1 << 20;
/// Most keys (and most revoked ids) a policy file may list.
pub const MAX_POLICY_KEYS: usize = 1024;
/// Most `run_id` patterns per key, and the longest pattern in bytes.
pub const MAX_RUN_ID_PATTERNS: usize = 256;
const MAX_PATTERN_LEN: usize = 256;

/// What a policy says about one trusted key, beyond trusting it.
///
/// # Example
/// ```
/// use tensorseal::{KeyRule, SecretKey, TrustPolicy};
/// let key = SecretKey::from_seed(&[1; 32]).public_key();
/// let rule = KeyRule::named("ci-2026").valid_until(1_800_000_000).run_ids(["nightly-*"]);
/// let policy = TrustPolicy::trusting(vec![key]).with_rule(&key, rule);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRule {
    pub(crate) name: Option<String>,
    pub(crate) not_before: Option<u64>,
    pub(crate) not_after: Option<u64>,
    pub(crate) run_ids: Option<Vec<String>>,
}

impl KeyRule {
    /// A rule with a display name and no restrictions yet.
    pub fn named(name: impl Into<String>) -> KeyRule {
        KeyRule {
            name: Some(name.into()),
            ..KeyRule::default()
        }
    }

    /// The key is trusted only from `unix_seconds` on (inclusive).
    pub fn valid_from(mut self, unix_seconds: u64) -> KeyRule {
        self.not_before = Some(unix_seconds);
        self
    }

    /// The key is trusted only until `unix_seconds` (inclusive).
    pub fn valid_until(mut self, unix_seconds: u64) -> KeyRule {
        self.not_after = Some(unix_seconds);
        self
    }

    /// The key's signature counts only for files whose signed `run_id` matches one of these
    /// glob patterns (`*` any run of characters, `?` one character, everything else literal).
    pub fn run_ids<S: Into<String>>(mut self, patterns: impl IntoIterator<Item = S>) -> KeyRule {
        self.run_ids = Some(patterns.into_iter().map(Into::into).collect());
        self
    }

    /// The display name, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

/// Why a signature from a key the policy lists did not count.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRefusal {
    /// The key id is on the policy's revocation list.
    Revoked,
    /// The verification time is after the key's `not_after`.
    Expired {
        /// End of the validity window, Unix seconds.
        not_after: u64,
        /// The verification time, Unix seconds.
        now: u64,
    },
    /// The verification time is before the key's `not_before`.
    NotYetValid {
        /// Start of the validity window, Unix seconds.
        not_before: u64,
        /// The verification time, Unix seconds.
        now: u64,
    },
    /// The file's signed `run_id` matches none of the key's patterns.
    RunIdNotAllowed {
        /// The signed `run_id`, if the file has one.
        run_id: Option<String>,
        /// The key's patterns.
        allowed: Vec<String>,
    },
}

impl KeyRefusal {
    /// The stable machine-readable kind: `revoked_key`, `key_expired`, `key_not_yet_valid` or
    /// `run_id_not_allowed`.
    pub fn kind(&self) -> &'static str {
        match self {
            KeyRefusal::Revoked => "revoked_key",
            KeyRefusal::Expired { .. } => "key_expired",
            KeyRefusal::NotYetValid { .. } => "key_not_yet_valid",
            KeyRefusal::RunIdNotAllowed { .. } => "run_id_not_allowed",
        }
    }
}

impl fmt::Display for KeyRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRefusal::Revoked => write!(f, "revoked"),
            KeyRefusal::Expired { not_after, now } => write!(
                f,
                "expired (not after {}, now {})",
                format_utc(*not_after),
                format_utc(*now)
            ),
            KeyRefusal::NotYetValid { not_before, now } => write!(
                f,
                "not yet valid (not before {}, now {})",
                format_utc(*not_before),
                format_utc(*now)
            ),
            KeyRefusal::RunIdNotAllowed { run_id, allowed } => match run_id {
                Some(r) => write!(
                    f,
                    "not allowed to sign run_id {r:?} (allowed: {})",
                    allowed.join(", ")
                ),
                None => write!(
                    f,
                    "allowed only for run_ids {} but the file has no signed run_id",
                    allowed.join(", ")
                ),
            },
        }
    }
}

/// Key-level rules at time `now`: revocation first, then the validity window.
pub(crate) fn key_refusal(policy: &TrustPolicy, key_id: &str, now: u64) -> Option<KeyRefusal> {
    if policy.revoked.contains(key_id) {
        return Some(KeyRefusal::Revoked);
    }
    let rule = policy.rules.get(key_id)?;
    if let Some(not_before) = rule.not_before
        && now < not_before
    {
        return Some(KeyRefusal::NotYetValid { not_before, now });
    }
    if let Some(not_after) = rule.not_after
        && now > not_after
    {
        return Some(KeyRefusal::Expired { not_after, now });
    }
    None
}

/// The `run_id` rule of `key_id` against the signed `run_id`.
pub(crate) fn run_id_refusal(
    policy: &TrustPolicy,
    key_id: &str,
    run_id: Option<&String>,
) -> Option<KeyRefusal> {
    let allowed = policy.rules.get(key_id)?.run_ids.as_ref()?;
    let ok = run_id.is_some_and(|r| allowed.iter().any(|p| glob_match(p, r)));
    (!ok).then(|| KeyRefusal::RunIdNotAllowed {
        run_id: run_id.cloned(),
        allowed: allowed.clone(),
    })
}

/// Glob match with `*` (any run, possibly empty) and `?` (one character); linear backtracking
/// on the last `*`, so no pattern takes more than `O(len(pattern) * len(text))` steps.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The current time in Unix seconds (0 if the clock is before 1970).
pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC) of Unix seconds.
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Unix seconds of a TOML offset date-time, or of a bare date (midnight UTC).
fn toml_time(dt: &toml::value::Datetime) -> Result<u64, String> {
    let date = dt.date.ok_or_else(|| {
        format!("{dt} has no date; give an RFC 3339 date-time such as 2026-01-01T00:00:00Z")
    })?;
    let (secs_of_day, offset_minutes) = match (dt.time, dt.offset) {
        (None, None) => (0, 0),
        (Some(t), Some(offset)) => {
            let minutes = match offset {
                toml::value::Offset::Z => 0,
                toml::value::Offset::Custom { minutes } => i64::from(minutes),
            };
            let s = i64::from(t.hour) * 3600
                + i64::from(t.minute) * 60
                + i64::from(t.second.unwrap_or(0));
            (s, minutes)
        }
        (Some(_), None) => {
            return Err(format!(
                "{dt} has no UTC offset; write it with Z or +HH:MM so it names one instant"
            ));
        }
        (None, Some(_)) => return Err(format!("{dt} is not a date-time")),
    };
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let secs = days * 86_400 + secs_of_day - offset_minutes * 60;
    u64::try_from(secs).map_err(|_| format!("{dt} is before 1970"))
}

/// The file's serde shape: every table refuses unknown fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: u32,
    threshold: Option<u64>,
    min_step: Option<u64>,
    #[serde(default)]
    revoked: Vec<String>,
    #[serde(default)]
    expect: BTreeMap<String, String>,
    #[serde(rename = "key", default)]
    keys: Vec<KeyEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    public_key: Option<String>,
    public_key_pem: Option<String>,
    key_id: Option<String>,
    not_before: Option<toml::value::Datetime>,
    not_after: Option<toml::value::Datetime>,
    run_ids: Option<Vec<String>>,
}

fn is_key_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl TrustPolicy {
    /// Reads a policy file (spec/POLICY.md). Key paths in it are relative to its directory.
    pub fn read_policy_file(path: &Path) -> Result<TrustPolicy, PolicyError> {
        use std::io::Read as _;
        let mut text = String::new();
        let file = std::fs::File::open(path)?;
        file.take(MAX_POLICY_FILE + 1).read_to_string(&mut text)?;
        if text.len() as u64 > MAX_POLICY_FILE {
            return Err(PolicyError::Invalid(format!(
                "larger than {MAX_POLICY_FILE} bytes"
            )));
        }
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        TrustPolicy::from_policy_toml(&text, base)
    }

    /// Parses a policy from TOML text; `base` is the directory `public_key` paths are relative to.
    pub fn from_policy_toml(text: &str, base: &Path) -> Result<TrustPolicy, PolicyError> {
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        if file.version != 1 {
            return Err(PolicyError::Invalid(format!(
                "version is {}, this tensorseal reads version 1",
                file.version
            )));
        }
        if file.keys.is_empty() {
            return Err(PolicyError::Invalid(
                "no [[key]] tables: a policy must trust at least one key".into(),
            ));
        }
        if file.keys.len() > MAX_POLICY_KEYS || file.revoked.len() > MAX_POLICY_KEYS {
            return Err(PolicyError::Invalid(format!(
                "more than {MAX_POLICY_KEYS} keys or revoked ids"
            )));
        }
        let mut revoked = BTreeSet::new();
        for id in &file.revoked {
            if !is_key_id(id) {
                return Err(PolicyError::Invalid(format!(
                    "revoked entry {id:?} is not a key id (64 lowercase hex digits, `tensorseal key id PUB`)"
                )));
            }
            revoked.insert(id.clone());
        }
        let mut keys = Vec::with_capacity(file.keys.len());
        let mut rules = BTreeMap::new();
        let mut names = BTreeSet::new();
        for (index, entry) in file.keys.into_iter().enumerate() {
            let err = |what: String| PolicyError::Key {
                index,
                name: entry.name.clone(),
                what,
            };
            if entry.name.is_empty() || !names.insert(entry.name.clone()) {
                return Err(err("name is empty or used by another key".into()));
            }
            let key = match (&entry.public_key, &entry.public_key_pem) {
                (Some(p), None) => {
                    let path = base.join(p);
                    std::fs::read(&path)
                        .map_err(KeyError::Io)
                        .and_then(|b| PublicKey::from_any(&b))
                        .map_err(|source| PolicyError::KeyFile {
                            index,
                            name: entry.name.clone(),
                            path: path.display().to_string(),
                            source,
                        })?
                }
                (None, Some(pem)) => {
                    PublicKey::from_pem(pem).map_err(|source| PolicyError::KeyFile {
                        index,
                        name: entry.name.clone(),
                        path: "public_key_pem".into(),
                        source,
                    })?
                }
                _ => {
                    return Err(err(
                        "give exactly one of public_key (a path) or public_key_pem".into(),
                    ));
                }
            };
            let key_id = key.key_id();
            if let Some(pinned) = &entry.key_id
                && *pinned != key_id
            {
                return Err(err(format!(
                    "key_id {pinned} does not match the key, whose id is {key_id}"
                )));
            }
            if rules.contains_key(&key_id) {
                return Err(err(format!("key {key_id} is listed twice")));
            }
            let not_before = entry.not_before.as_ref().map(toml_time).transpose();
            let not_after = entry.not_after.as_ref().map(toml_time).transpose();
            let (not_before, not_after) = (not_before.map_err(&err)?, not_after.map_err(&err)?);
            if let (Some(b), Some(a)) = (not_before, not_after)
                && b > a
            {
                return Err(err("not_before is after not_after".into()));
            }
            if let Some(patterns) = &entry.run_ids {
                if patterns.is_empty() || patterns.len() > MAX_RUN_ID_PATTERNS {
                    return Err(err(format!(
                        "run_ids must list 1 to {MAX_RUN_ID_PATTERNS} patterns (omit it to allow any run)"
                    )));
                }
                if let Some(p) = patterns
                    .iter()
                    .find(|p| p.is_empty() || p.len() > MAX_PATTERN_LEN)
                {
                    return Err(err(format!(
                        "run_ids pattern {p:?} is empty or longer than {MAX_PATTERN_LEN} bytes"
                    )));
                }
            }
            rules.insert(
                key_id,
                KeyRule {
                    name: Some(entry.name.clone()),
                    not_before,
                    not_after,
                    run_ids: entry.run_ids,
                },
            );
            keys.push(key);
        }
        let threshold = file.threshold.unwrap_or(1);
        if threshold == 0 || threshold > keys.len() as u64 {
            return Err(PolicyError::Invalid(format!(
                "threshold {threshold} must be between 1 and the number of keys ({})",
                keys.len()
            )));
        }
        let mut policy = TrustPolicy::trusting(keys).threshold(threshold as usize);
        policy.rules = rules;
        policy.revoked = revoked;
        for (k, v) in file.expect {
            policy = policy.expect(k, v);
        }
        if let Some(min) = file.min_step {
            policy = policy.min_step(min);
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("nightly-*", "nightly-2026-01-01"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*-rc*", "v1-rc2"));
        assert!(!glob_match("release-*", "nightly-1"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn utc_round_trip() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(days_from_civil(2026, 1, 1) * 86_400, 1_767_225_600);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        let dt: toml::value::Datetime = "2026-01-01T01:00:00+01:00".parse().unwrap();
        assert_eq!(toml_time(&dt).unwrap(), 1_767_225_600);
        let local: toml::value::Datetime = "2026-01-01T01:00:00".parse().unwrap();
        assert!(toml_time(&local).unwrap_err().contains("no UTC offset"));
    }
}
