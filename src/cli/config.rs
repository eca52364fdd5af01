//! The config file: YAML whose keys are `skiff server` flag names (`data-dir: /x`,
//! `disable-agent: true`, lists for repeatable flags). Values from the file come first on
//! the command line, so flags given by hand win, as in k3s.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG: &str = "/etc/skiff/config.yaml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
}

/// Insert the config file's settings after `skiff server` in `argv`.
pub fn merge_config_file(argv: Vec<OsString>) -> Result<Vec<OsString>, ConfigError> {
    if argv.get(1).and_then(|a| a.to_str()) != Some("server") {
        return Ok(argv);
    }
    let explicit = find_config_flag(&argv)
        .or_else(|| std::env::var_os("SKIFF_CONFIG_FILE").map(PathBuf::from));
    let path = explicit
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
            return Ok(argv)
        }
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let from_file = config_args(&path, &text)?;
    let mut out = argv[..2].to_vec();
    out.extend(from_file);
    out.extend(argv[2..].iter().cloned());
    Ok(out)
}

fn find_config_flag(argv: &[OsString]) -> Option<PathBuf> {
    let mut it = argv.iter().skip(2);
    while let Some(a) = it.next() {
        let s = a.to_str()?;
        if s == "--config" || s == "-c" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = s.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    None
}

/// Turn the YAML mapping into `--flag value` arguments.
pub fn config_args(path: &Path, text: &str) -> Result<Vec<OsString>, ConfigError> {
    let bad = |reason: String| ConfigError::Parse {
        path: path.to_path_buf(),
        reason,
    };
    let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let map = match doc {
        serde_yaml::Value::Null => return Ok(Vec::new()),
        serde_yaml::Value::Mapping(m) => m,
        _ => {
            return Err(bad(
                "the top level must be a mapping of flag names to values".into(),
            ))
        }
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let key = k
            .as_str()
            .ok_or_else(|| bad("keys must be flag names (strings)".into()))?
            .to_string();
        if key == "config" {
            continue;
        }
        let flag = format!("--{key}");
        let scalar = |v: &serde_yaml::Value| -> Result<String, ConfigError> {
            match v {
                serde_yaml::Value::String(s) => Ok(s.clone()),
                serde_yaml::Value::Number(n) => Ok(n.to_string()),
                serde_yaml::Value::Bool(b) => Ok(b.to_string()),
                _ => Err(bad(format!("{key}: expected a scalar value"))),
            }
        };
        match &v {
            serde_yaml::Value::Bool(true) => out.push(OsString::from(flag)),
            serde_yaml::Value::Bool(false) => {}
            serde_yaml::Value::Sequence(items) => {
                for item in items {
                    out.push(OsString::from(format!("{flag}={}", scalar(item)?)));
                }
            }
            other => out.push(OsString::from(format!("{flag}={}", scalar(other)?))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_keys_become_flags() {
        let args = config_args(
            Path::new("c.yaml"),
            "data-dir: /tmp/x\ndisable-agent: true\nhttps-listen-port: 7443\nwrite-kubeconfig-mode: \"0644\"\n",
        )
        .unwrap();
        let args: Vec<String> = args.into_iter().map(|a| a.into_string().unwrap()).collect();
        assert_eq!(
            args,
            vec![
                "--data-dir=/tmp/x",
                "--disable-agent",
                "--https-listen-port=7443",
                "--write-kubeconfig-mode=0644"
            ]
        );
    }

    #[test]
    fn not_a_mapping_is_an_error() {
        assert!(config_args(Path::new("c.yaml"), "- a\n- b\n").is_err());
    }
}
