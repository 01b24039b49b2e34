//! Named profiles from the AWS shared files (`~/.aws/credentials`, `~/.aws/config`), the way the
//! AWS CLI reads them, for the settings the `object_store` crate takes only from the environment.
//!
//! Why by hand: `object_store` does not read profiles, and the crate that does (`aws-config`)
//! brings its own HTTP stack and runtime for features (SSO, assumed roles, credential processes)
//! this reader refuses anyway. What is read: static credentials (`aws_access_key_id`,
//! `aws_secret_access_key`, `aws_session_token`), `region` and `endpoint_url`. A profile that
//! relies on anything else for its credentials is an error naming the key, not a silent fallback.

use std::path::PathBuf;

/// Largest shared file read, in bytes: real ones are a few KiB.
pub const MAX_PROFILE_FILE: u64 = 1 << 20;

/// Settings of a profile, named as the environment names them (`AWS_ACCESS_KEY_ID`, ...).
pub(crate) type Settings = Vec<(String, String)>;

/// Keys that make credentials come from somewhere this reader does not go.
const UNSUPPORTED: [&str; 6] = [
    "role_arn",
    "source_profile",
    "credential_process",
    "sso_session",
    "sso_start_url",
    "web_identity_token_file",
];

/// The settings of the selected profile that the environment does not already give.
///
/// `get` reads a setting from the caller's configuration or the environment. The profile is
/// `AWS_PROFILE`, else `default`; files are `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE`,
/// else under `~/.aws`. Credentials in the environment win over the profile's, as with the AWS
/// CLI. A profile named in `AWS_PROFILE` must exist; `default` may be absent.
///
/// # Errors
/// A message naming the file or profile: a file that cannot be read or is over
/// [`MAX_PROFILE_FILE`], a named profile found in neither file, or one whose credentials need an
/// unsupported key.
pub(crate) fn settings(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
    let named = get("AWS_PROFILE").filter(|p| !p.is_empty());
    let profile = named.clone().unwrap_or_else(|| "default".to_string());
    let home = get("HOME").map(PathBuf::from);
    let file = |var: &str, name: &str| {
        get(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
    };
    let credentials_file = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_file = file("AWS_CONFIG_FILE", "config");
    let config_section = if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    };
    let mut found = false;
    let mut values: Vec<(String, String)> = Vec::new();
    // The credentials file first: its keys win over the config file's for the same profile.
    for (path, section) in [
        (credentials_file.as_ref(), profile.as_str()),
        (config_file.as_ref(), config_section.as_str()),
    ] {
        let Some(path) = path else { continue };
        let Some(text) = read(path)? else { continue };
        if let Some(entries) = section_of(&text, section) {
            found = true;
            for (k, v) in entries {
                if !values.iter().any(|(have, _)| *have == k) {
                    values.push((k, v));
                }
            }
        }
    }
    if !found {
        return match named {
            Some(p) => Err(format!(
                "AWS profile {p:?} is in neither {} nor {}",
                shown(credentials_file.as_ref()),
                shown(config_file.as_ref())
            )),
            None => Ok(Vec::new()),
        };
    }
    let value = |k: &str| {
        values
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let mut out = Settings::new();
    if get("AWS_ACCESS_KEY_ID").is_none() {
        match (value("aws_access_key_id"), value("aws_secret_access_key")) {
            (Some(id), Some(secret)) => {
                out.push(("AWS_ACCESS_KEY_ID".into(), id));
                out.push(("AWS_SECRET_ACCESS_KEY".into(), secret));
                if let Some(token) = value("aws_session_token") {
                    out.push(("AWS_SESSION_TOKEN".into(), token));
                }
            }
            _ => {
                if let Some(k) = UNSUPPORTED.iter().find(|k| value(k).is_some()) {
                    return Err(format!(
                        "AWS profile {profile:?} gets its credentials through {k}, which tensorseal does not support: give static keys in the profile or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
                    ));
                }
            }
        }
    }
    for (key, var) in [
        ("region", "AWS_REGION"),
        ("endpoint_url", "AWS_ENDPOINT_URL"),
    ] {
        if get(var).is_none()
            && (var != "AWS_REGION" || get("AWS_DEFAULT_REGION").is_none())
            && let Some(v) = value(key)
        {
            out.push((var.into(), v));
        }
    }
    Ok(out)
}

fn shown(path: Option<&PathBuf>) -> String {
    path.map_or_else(|| "(no HOME)".into(), |p| p.display().to_string())
}

/// The file's text, or `None` if it does not exist.
fn read(path: &PathBuf) -> Result<Option<String>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if meta.len() > MAX_PROFILE_FILE {
        return Err(format!(
            "{}: {} bytes, more than an AWS shared file may have ({MAX_PROFILE_FILE})",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The `key = value` entries of `[section]`, keys lowercased; `None` if there is no such section.
/// Comments (`#`, `;`) and indented sub-settings (`s3 =` blocks) are skipped; a section that
/// appears twice is read in order, later keys not overriding earlier ones' first occurrence.
fn section_of(text: &str, section: &str) -> Option<Vec<(String, String)>> {
    let mut inside = false;
    let mut found = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.split_whitespace().collect::<Vec<_>>().join(" ") == section;
            found |= inside;
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if !v.is_empty() && !out.iter().any(|(have, _): &(String, String)| *have == k) {
                out.push((k, v));
            }
        }
    }
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(credentials: &str, config: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (c, f) = (dir.path().join("credentials"), dir.path().join("config"));
        std::fs::write(&c, credentials).unwrap();
        std::fs::write(&f, config).unwrap();
        (dir, c, f)
    }

    fn env<'a>(vars: &'a [(&'a str, String)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        }
    }

    const CREDENTIALS: &str = "# shared credentials\n[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = s0\n\n[ci]\naws_access_key_id=AKIACI\naws_secret_access_key = s1\naws_session_token = t1\n";
    const CONFIG: &str = "[default]\nregion = eu-west-1\n[profile ci]\nregion = us-west-2\nendpoint_url = http://127.0.0.1:9000\ns3 =\n  addressing_style = path\n[profile sso]\nsso_session = corp\nregion = us-east-2\n";

    #[test]
    fn a_named_profile_gives_credentials_region_and_endpoint() {
        let (_d, c, f) = files(CREDENTIALS, CONFIG);
        let vars = [
            ("AWS_PROFILE", "ci".to_string()),
            ("AWS_SHARED_CREDENTIALS_FILE", c.display().to_string()),
            ("AWS_CONFIG_FILE", f.display().to_string()),
        ];
        let got = settings(env(&vars)).unwrap();
        let want: Vec<(String, String)> = [
            ("AWS_ACCESS_KEY_ID", "AKIACI"),
            ("AWS_SECRET_ACCESS_KEY", "s1"),
            ("AWS_SESSION_TOKEN", "t1"),
            ("AWS_REGION", "us-west-2"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_environment_wins_and_default_may_be_absent() {
        let (_d, c, f) = files(CREDENTIALS, CONFIG);
        let vars = [
            ("AWS_SHARED_CREDENTIALS_FILE", c.display().to_string()),
            ("AWS_CONFIG_FILE", f.display().to_string()),
            ("AWS_ACCESS_KEY_ID", "FROMENV".to_string()),
            ("AWS_REGION", "ap-south-1".to_string()),
        ];
        assert!(settings(env(&vars)).unwrap().is_empty());
        let (_d, c, f) = files("", "");
        let vars = [
            ("AWS_SHARED_CREDENTIALS_FILE", c.display().to_string()),
            ("AWS_CONFIG_FILE", f.display().to_string()),
        ];
        assert!(settings(env(&vars)).unwrap().is_empty());
        assert!(settings(env(&[])).unwrap().is_empty(), "no HOME, no files");
    }

    #[test]
    fn missing_and_unsupported_profiles_are_errors_naming_them() {
        let (_d, c, f) = files(CREDENTIALS, CONFIG);
        let with = |p: &str| {
            vec![
                ("AWS_PROFILE", p.to_string()),
                ("AWS_SHARED_CREDENTIALS_FILE", c.display().to_string()),
                ("AWS_CONFIG_FILE", f.display().to_string()),
            ]
        };
        let e = settings(env(&with("nope"))).unwrap_err();
        assert!(
            e.contains("\"nope\" is in neither") && e.contains("credentials"),
            "{e}"
        );
        let e = settings(env(&with("sso"))).unwrap_err();
        assert!(
            e.contains("sso_session") && e.contains("not support"),
            "{e}"
        );
        let big = "x".repeat(MAX_PROFILE_FILE as usize + 1);
        std::fs::write(&c, big).unwrap();
        assert!(
            settings(env(&with("ci")))
                .unwrap_err()
                .contains("more than")
        );
    }
}
