//! Reading the configuration: `config.yaml` (a missing default file means all defaults), then
//! `WEBHOOKD_*` environment overrides folded into the same tree, then validation.

use std::path::Path;

use serde_json::Value;

use crate::config::error::{key_err, ConfigError};
use crate::config::model::Config;

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &[
    "http.admin_tokens",
    "delivery.allowed_cidrs",
    "retry.schedule",
    "signing.previous_encryption_keys",
];
/// Top-level scalar keys that `WEBHOOKD_<KEY>` may set.
const TOP_LEVEL_ENV_KEYS: &[&str] = &["shutdown_grace"];
/// Top-level keys only a config file can set; `WEBHOOKD_<KEY>` for one is refused, not ignored.
const FILE_ONLY_KEYS: &[&str] = &["event_types", "endpoints"];
/// `WEBHOOKD_*` variables that are not config keys.
const NOT_CONFIG_ENV: &[&str] = &["WEBHOOKD_CONFIG"];

impl Config {
    /// Loads a file (a missing default `config.yaml` means all defaults), applies the
    /// environment, and validates.
    pub fn load(path: &Path, must_exist: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        Self::from_yaml_and_env(&text, &path.display().to_string(), std::env::vars())
    }

    pub fn from_yaml_and_env(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut tree: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Yaml {
                path: origin.to_string(),
                // The first line says what and where; the rest is a source snippet.
                message: e
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("error: ")
                    .to_string(),
            })?
        };
        if tree.is_null() {
            tree = Value::Object(Default::default());
        }
        if !tree.is_object() {
            return Err(ConfigError::Yaml {
                path: origin.to_string(),
                message: "the top level must be a mapping of sections".into(),
            });
        }
        apply_env(&mut tree, env)?;
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let key = e.path().to_string();
            key_err(&key, e.inner().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }
}

/// Folds `WEBHOOKD_<SECTION>__<KEY>` and `WEBHOOKD_<KEY>` variables into the YAML tree.
fn apply_env(
    tree: &mut Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("WEBHOOKD_") && !NOT_CONFIG_ENV.contains(&k.as_str()))
        .collect();
    vars.sort();
    for (var, raw) in vars {
        let rest = var["WEBHOOKD_".len()..].to_ascii_lowercase();
        let path: Vec<&str> = rest.split("__").collect();
        match path.as_slice() {
            [section, key] => {
                let dotted = format!("{section}.{key}");
                let value = env_value(&raw, LIST_KEYS.contains(&dotted.as_str()));
                let root = tree.as_object_mut().expect("checked object");
                let sect = root
                    .entry(section.to_string())
                    .or_insert_with(|| Value::Object(Default::default()));
                let Some(map) = sect.as_object_mut() else {
                    return Err(ConfigError::Env {
                        var,
                        message: format!("`{section}` is not a section"),
                    });
                };
                map.insert(key.to_string(), value);
            }
            [key] if TOP_LEVEL_ENV_KEYS.contains(key) => {
                let root = tree.as_object_mut().expect("checked object");
                root.insert(key.to_string(), env_value(&raw, false));
            }
            [key] if FILE_ONLY_KEYS.contains(key) => {
                return Err(ConfigError::Env {
                    var,
                    message: format!("`{key}` is a list of mappings: set it in the config file"),
                });
            }
            // Kubernetes' service links (`WEBHOOKD_PORT_8080_TCP`, …) have no `__`.
            [_, _, _, ..] => {
                return Err(ConfigError::Env {
                    var,
                    message: format!(
                        "`{}` is not a config key: the environment sets `WEBHOOKD_<SECTION>__<KEY>`",
                        path.join(".")
                    ),
                });
            }
            // Other WEBHOOKD_* names (e.g. Kubernetes service links) are not ours.
            _ => {}
        }
    }
    Ok(())
}

/// An environment string as the YAML scalar it stands for.
fn env_value(raw: &str, list: bool) -> Value {
    if list {
        return Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        );
    }
    match raw {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => match raw.parse::<u64>() {
            Ok(n) => Value::from(n),
            Err(_) => match raw.parse::<f64>() {
                Ok(f) if raw.contains('.') => Value::from(f),
                _ => Value::String(raw.to_string()),
            },
        },
    }
}
