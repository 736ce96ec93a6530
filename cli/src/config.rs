//! Where the server and the token come from: flags and environment first, then the credentials
//! file that `login` writes in the user's config directory (mode 0600).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::client::CliError;

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:3000";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Credentials {
    pub server: String,
    pub email: String,
    pub token: String,
}

/// `<config dir>/drishtiksha/credentials.json` (`$XDG_CONFIG_HOME` or `~/.config` on Linux).
pub fn credentials_path() -> Result<PathBuf, CliError> {
    dirs::config_dir()
        .map(|d| d.join("drishtiksha").join("credentials.json"))
        .ok_or_else(|| CliError::usage("no config directory for this user", "set HOME or XDG_CONFIG_HOME"))
}

pub fn load() -> Option<Credentials> {
    let path = credentials_path().ok()?;
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

pub fn save(c: &Credentials) -> Result<PathBuf, CliError> {
    let path = credentials_path()?;
    let fail =
        |e: std::io::Error| CliError::usage(format!("cannot write {}: {e}", path.display()), "check its permissions");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let body = serde_json::to_vec_pretty(c).map_err(|e| CliError::usage(e.to_string(), "report this as a bug"))?;
    write_private(&path, &body).map_err(fail)?;
    Ok(path)
}

/// Removes the credentials file; whether there was one.
pub fn remove() -> bool {
    credentials_path().is_ok_and(|p| std::fs::remove_file(p).is_ok())
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    // Created 0600; an older file with wider permissions is narrowed before the token goes in.
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(body)
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, body: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, body)
}

/// Parses a server URL the way users type it (`localhost:3000` gets `http://`).
pub fn parse_server(s: &str) -> Result<Url, CliError> {
    let s = s.trim();
    let with_scheme = if s.contains("://") { s.to_string() } else { format!("http://{s}") };
    let url = Url::parse(&with_scheme).map_err(|e| {
        CliError::usage(format!("invalid server URL {s:?}: {e}"), "e.g. --server http://127.0.0.1:3000")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CliError::usage(
            format!("invalid server URL {s:?}: not http or https"),
            "e.g. --server https://drishtiksha.example.org",
        ));
    }
    Ok(url)
}

/// Same server, whatever the trailing slash.
pub fn same_server(a: &str, b: &Url) -> bool {
    parse_server(a).is_ok_and(|a| a.as_str().trim_end_matches('/') == b.as_str().trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_without_a_scheme_is_http() {
        assert_eq!(parse_server("localhost:3000").expect("url").as_str(), "http://localhost:3000/");
        assert!(parse_server("ftp://x").is_err());
        assert!(same_server("http://localhost:3000/", &parse_server("localhost:3000").expect("url")));
    }
}
