//! The `backends` section: backends under names of their own, each an
//! engine's section or a layer over other backends (docs/layers.md).

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::{Config, Named};
use crate::error::{Error, Result};

/// The longest backend name: names become file names in the outbox.
const MAX_NAME_BYTES: usize = 64;

/// Parses the `backends` section entry by entry, so that an error names
/// the backend it is about.
pub(super) fn backends<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, Named>, D::Error> {
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    let mut backends = BTreeMap::new();
    for (name, section) in raw {
        check_name(&name).map_err(D::Error::custom)?;
        match section.get("engine") {
            Some(serde_json::Value::String(_)) => {}
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "backends.{name}.engine must be an engine's name, not {other}"
                )))
            }
            None => {
                return Err(D::Error::custom(format!(
                    "backends.{name} has no \"engine\" key (which engine or layer it is)"
                )))
            }
        }
        let named = serde_json::from_value::<Named>(section)
            .map_err(|e| D::Error::custom(format!("backends.{name}: {e}")))?;
        backends.insert(name, named);
    }
    Ok(backends)
}

/// Backend names are what calls pass, and also file names in the outbox:
/// letters, digits, `_` and `-`.
fn check_name(name: &str) -> std::result::Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || name.len() > MAX_NAME_BYTES || !name.chars().all(allowed) {
        return Err(format!(
            "backends: {name:?} is not a backend name (1 to {MAX_NAME_BYTES} letters, digits, \
             '_' or '-')"
        ));
    }
    Ok(())
}

/// Checks what parsing cannot: each engine section's values, that a name
/// is taken once, that layers name configured backends, and that no layer
/// is (through others) over itself.
pub(super) fn validate(config: &Config) -> Result<()> {
    let top_level: Vec<&str> = config.sections_present().iter().map(|s| s.name()).collect();
    for (name, named) in &config.backends {
        if top_level.contains(&name.as_str()) {
            return Err(Error::Config(format!(
                "backends.{name}: the name is taken by the top-level {name} section"
            )));
        }
        if let Some(section) = named.section() {
            section
                .validate()
                .map_err(|e| Error::Config(format!("backends.{name}: {}", unwrap_config(e))))?;
        }
        let members = named.members();
        if named.section().is_none() && members.is_empty() {
            return Err(Error::Config(format!(
                "backends.{name}: a {} layer needs at least one backend",
                named.engine()
            )));
        }
        for member in members {
            if !top_level.contains(&member) && !config.backends.contains_key(member) {
                return Err(Error::Config(format!(
                    "backends.{name}: no backend is named {member:?} (configured: {})",
                    config.backend_names().join(", ")
                )));
            }
        }
    }
    for name in config.backends.keys() {
        if let Some(cycle) = cycle_from(config, name, &mut Vec::new()) {
            return Err(Error::Config(format!(
                "backends.{name}: a layer over itself: {}",
                cycle.join(" -> ")
            )));
        }
    }
    Ok(())
}

/// The path back to a backend already on `path`, when `name`'s layers lead
/// there.
fn cycle_from<'a>(
    config: &'a Config,
    name: &'a str,
    path: &mut Vec<&'a str>,
) -> Option<Vec<&'a str>> {
    if let Some(at) = path.iter().position(|n| *n == name) {
        let mut cycle = path[at..].to_vec();
        cycle.push(name);
        return Some(cycle);
    }
    let named = config.backends.get(name)?;
    path.push(name);
    for member in named.members() {
        if let Some(cycle) = cycle_from(config, member, path) {
            return Some(cycle);
        }
    }
    path.pop();
    None
}

/// An engine section's configuration error without its "configuration: "
/// label, which the wrapping error adds again.
fn unwrap_config(error: Error) -> String {
    match error {
        Error::Config(message) => message,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(json: &str) -> String {
        match Config::from_json(Some(json)) {
            Err(e @ Error::Config(_)) => e.to_string(),
            other => panic!("{json}: {other:?}"),
        }
    }

    #[test]
    fn named_backends_and_layers_load() {
        let config = Config::from_json(Some(
            r#"{
              "default_backend": "docs",
              "backends": {
                "cache":   {"engine": "local", "filepath": "cache"},
                "primary": {"engine": "etcd", "endpoints": ["127.0.0.1:2379"]},
                "replica": {"engine": "etcd", "endpoints": ["127.0.0.1:2380"]},
                "docs":    {"engine": "tiered", "layers": ["cache", "spread"]},
                "spread":  {"engine": "random", "of": ["primary", "archive"]},
                "archive": {"engine": "read_only", "of": "replica"},
                "inbox":   {"engine": "write_only", "of": "primary"}
              }
            }"#,
        ))
        .unwrap();
        assert_eq!(
            config.backend_names(),
            ["archive", "cache", "docs", "inbox", "primary", "replica", "spread"]
        );
        assert_eq!(config.default_backend_name().unwrap(), "docs");
    }

    #[test]
    fn top_level_sections_and_named_backends_mix() {
        let config = Config::from_json(Some(
            r#"{"local": {"filepath": "a"},
                "backends": {"mirror": {"engine": "local", "filepath": "b"}}}"#,
        ))
        .unwrap();
        assert_eq!(config.backend_names(), ["local", "mirror"]);
        assert_eq!(config.default_backend_name().unwrap(), "local");
    }

    #[test]
    fn mistakes_are_config_errors_that_name_the_backend() {
        for (json, named) in [
            (
                r#"{"backends": {"cache": {"engine": "redix"}}}"#,
                "backends.cache",
            ),
            (
                r#"{"backends": {"cache": {"filepath": "x"}}}"#,
                "backends.cache",
            ),
            (
                r#"{"backends": {"cache": {"engine": 3}}}"#,
                "backends.cache.engine",
            ),
            (
                r#"{"backends": {"c": {"engine": "local", "filepth": "x"}}}"#,
                "filepth",
            ),
            (
                r#"{"backends": {"c": {"engine": "local", "filepath": ""}}}"#,
                "backends.c",
            ),
            (r#"{"backends": {"a/b": {"engine": "local"}}}"#, "\"a/b\""),
            (r#"{"backends": {"": {"engine": "local"}}}"#, "\"\""),
            (
                r#"{"local": {}, "backends": {"local": {"engine": "local"}}}"#,
                "backends.local",
            ),
            (
                r#"{"backends": {"t": {"engine": "tiered", "layers": []}}}"#,
                "backends.t",
            ),
            (
                r#"{"backends": {"t": {"engine": "tiered", "layers": ["nope"]}}}"#,
                "\"nope\"",
            ),
            (
                r#"{"backends": {"r": {"engine": "read_only", "of": "r"}}}"#,
                "r -> r",
            ),
            (
                r#"{"backends": {"a": {"engine": "tiered", "layers": ["b"]},
                                 "b": {"engine": "random", "of": ["c"]},
                                 "c": {"engine": "write_only", "of": "a"}}}"#,
                "a -> b -> c -> a",
            ),
            (
                r#"{"backends": {"r": {"engine": "read_only", "of": "x", "layers": []}}}"#,
                "layers",
            ),
        ] {
            let message = error(json);
            assert!(
                message.contains(named),
                "{json}: {message} does not name {named}"
            );
        }
    }
}
