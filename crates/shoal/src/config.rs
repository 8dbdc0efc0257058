//! Settings with the usual precedence: a flag, then a `SHOAL_*` environment variable, then the
//! TOML file `config.toml` in the state directory, then the default. Every value remembers where
//! it came from, which `shoal config` prints.
//!
//! The state directory itself comes from `--state`, `SHOAL_STATE` or the platform's data
//! directory (the file that could name it lives inside it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Flag,
    Env,
    File,
    Default,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Flag => "flag",
            Origin::Env => "environment",
            Origin::File => "config file",
            Origin::Default => "default",
        })
    }
}

/// One setting as shown by `shoal config`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Setting {
    pub key: &'static str,
    pub value: Option<String>,
    pub origin: Origin,
    /// The environment variable or file that gave it.
    pub from: Option<String>,
}

/// The settings file of a state directory, parsed.
pub struct Layers {
    pub state: PathBuf,
    pub state_origin: Origin,
    file: BTreeMap<String, toml::Value>,
    file_path: PathBuf,
    env: BTreeMap<String, String>,
}

/// The keys a config file may hold, with their environment variables.
pub const KEYS: &[(&str, &str, &str)] = &[
    ("dir", "SHOAL_DIR", "the shared directory"),
    ("listen", "SHOAL_LISTEN", "address and port to listen on"),
    ("url", "SHOAL_URL", "the URL other nodes reach this node at"),
    (
        "peers",
        "SHOAL_PEERS",
        "peers to know from the start (comma-separated in the environment)",
    ),
    ("peers_file", "SHOAL_PEERS_FILE", "a file of peer URLs"),
    ("secret", "SHOAL_SECRET", "the owner's secret"),
    (
        "download_dir",
        "SHOAL_DOWNLOAD_DIR",
        "where the owner's downloads may go besides the share",
    ),
    ("max_upload_rate", "SHOAL_MAX_UPLOAD_RATE", "cap on the rate file data is served at"),
    ("max_download_rate", "SHOAL_MAX_DOWNLOAD_RATE", "cap on the download rate"),
    ("node", "SHOAL_NODE", "the node that commands talk to"),
];

/// Built-in defaults.
pub fn default_of(key: &str) -> Option<&'static str> {
    match key {
        "dir" => Some("./shared"),
        "listen" => Some("0.0.0.0:4242"),
        _ => None,
    }
}

/// The default state directory: the platform's data directory, then `shoal`.
pub fn default_state() -> PathBuf {
    dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("shoal")
}

/// Warns, on standard error, when other users may read or change the file at `path`, which
/// holds a secret (`why` says so). The file is the user's to fix; it is not changed here.
pub fn warn_if_others_read(path: &Path, why: &str) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else { return };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        eprintln!(
            "warning: {} is open to other users of this machine (mode {mode:03o}), and {why}; \
             make it yours alone: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
}

impl Layers {
    /// Reads the environment and the state directory's `config.toml` (missing is fine).
    pub fn load(state_flag: Option<&Path>) -> anyhow::Result<Layers> {
        let env: BTreeMap<String, String> = std::env::vars().filter(|(k, v)| k.starts_with("SHOAL_") && !v.is_empty()).collect();
        let (state, state_origin) = match (state_flag, env.get("SHOAL_STATE")) {
            (Some(path), _) => (path.to_path_buf(), Origin::Flag),
            (None, Some(path)) => (PathBuf::from(path), Origin::Env),
            (None, None) => (default_state(), Origin::Default),
        };
        let file_path = state.join("config.toml");
        let file = match std::fs::read_to_string(&file_path) {
            Ok(text) => {
                let table: toml::Table = text.parse().with_context(|| format!("reading {}", file_path.display()))?;
                for key in table.keys() {
                    if !KEYS.iter().any(|(k, _, _)| k == key) {
                        anyhow::bail!(
                            "{}: unknown key {key:?} (known: {})",
                            file_path.display(),
                            KEYS.iter().map(|(k, _, _)| *k).collect::<Vec<_>>().join(", ")
                        );
                    }
                }
                if table.contains_key("secret") {
                    static WARNED: std::sync::Once = std::sync::Once::new();
                    WARNED.call_once(|| warn_if_others_read(&file_path, "it holds the owner's secret"));
                }
                table.into_iter().collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", file_path.display())),
        };
        Ok(Layers {
            state,
            state_origin,
            file,
            file_path,
            env,
        })
    }

    /// A single-valued setting: the flag if given, else the environment, the file, the default.
    pub fn get(&self, key: &'static str, flag: Option<String>) -> Setting {
        let env_key = KEYS.iter().find(|(k, _, _)| *k == key).map(|(_, e, _)| *e).unwrap_or_default();
        if let Some(value) = flag {
            return Setting {
                key,
                value: Some(value),
                origin: Origin::Flag,
                from: None,
            };
        }
        if let Some(value) = self.env.get(env_key) {
            return Setting {
                key,
                value: Some(value.clone()),
                origin: Origin::Env,
                from: Some(env_key.to_string()),
            };
        }
        if let Some(value) = self.file.get(key) {
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map(String::from).unwrap_or_else(|| i.to_string()))
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            return Setting {
                key,
                value: Some(text),
                origin: Origin::File,
                from: Some(self.file_path.display().to_string()),
            };
        }
        Setting {
            key,
            value: default_of(key).map(String::from),
            origin: Origin::Default,
            from: None,
        }
    }

    /// A list setting (peers): flags if any were given, else the environment (comma-separated),
    /// the file, nothing.
    pub fn list(&self, key: &'static str, flags: &[String]) -> (Vec<String>, Setting) {
        let flag = (!flags.is_empty()).then(|| flags.join(","));
        let setting = self.get(key, flag);
        let items = setting
            .value
            .as_deref()
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
            .unwrap_or_default();
        (items, setting)
    }

    /// The state directory as a setting.
    pub fn state_setting(&self) -> Setting {
        Setting {
            key: "state",
            value: Some(self.state.display().to_string()),
            origin: self.state_origin.clone(),
            from: (self.state_origin == Origin::Env).then(|| "SHOAL_STATE".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(file: &str, env: &[(&str, &str)]) -> Layers {
        let file: toml::Table = file.parse().unwrap();
        Layers {
            state: PathBuf::from("/s"),
            state_origin: Origin::Flag,
            file: file.into_iter().collect(),
            file_path: PathBuf::from("/s/config.toml"),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let l = layers(
            "dir = \"/from-file\"\nlisten = \"127.0.0.1:1\"\nurl = \"http://f:1\"",
            &[("SHOAL_LISTEN", "127.0.0.1:2"), ("SHOAL_URL", "http://e:1")],
        );
        assert_eq!(l.get("url", Some("http://flag:1".into())).origin, Origin::Flag);
        let listen = l.get("listen", None);
        assert_eq!((listen.value.as_deref(), listen.origin), (Some("127.0.0.1:2"), Origin::Env));
        let dir = l.get("dir", None);
        assert_eq!((dir.value.as_deref(), dir.origin), (Some("/from-file"), Origin::File));
        let empty = layers("", &[]);
        let dir = empty.get("dir", None);
        assert_eq!((dir.value.as_deref(), dir.origin), (Some("./shared"), Origin::Default));
    }

    #[test]
    fn lists_come_from_one_layer() {
        let l = layers("peers = [\"http://a:1\", \"http://b:1\"]", &[]);
        assert_eq!(l.list("peers", &[]).0, vec!["http://a:1", "http://b:1"]);
        assert_eq!(l.list("peers", &["http://c:1".into()]).0, vec!["http://c:1"]);
        let l = layers("", &[("SHOAL_PEERS", "http://x:1, http://y:1")]);
        assert_eq!(l.list("peers", &[]).0, vec!["http://x:1", "http://y:1"]);
    }
}
