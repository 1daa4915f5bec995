//! Environment overrides: `PROTOBASE_<SECTION>__<KEY>[__<KEY>...]=value`
//! replaces (or adds) one key of the node description before it is read,
//! so secrets need not live in the file:
//!
//! ```text
//! PROTOBASE_TRANSPORT__PSK=...                      [transport] psk
//! PROTOBASE_BACKEND__STORE__ACCESS_KEY_ID=...       [backend.store] access_key_id
//! PROTOBASE_BACKEND__STORE__SECRET_ACCESS_KEY=...   [backend.store] secret_access_key
//! PROTOBASE_TRANSPORT__KEY_PATH=/etc/pb/node.key    a TLS key path (QUIC transport)
//! ```
//!
//! Path segments are lower-cased. An override sets a key of a table the
//! file has (the key itself may be new); a variable for a section the file
//! lacks is skipped, so one environment can serve a standalone node and a
//! cluster node alike. A value replacing a number or a boolean in the file
//! is parsed as one; anything else is a string. Variables without `__`
//! (such as `PROTOBASE_SKIP_S3`) are not overrides.

use serde_json::Value;

use super::error::{ConfigError, Source};

/// Prefix of override variables.
pub const ENV_PREFIX: &str = "PROTOBASE_";

/// Applies the overrides found in `vars` to `tree`; returns the names of the
/// variables applied (sorted), for logging (values are never logged).
/// Variables whose table the file lacks are skipped.
pub(crate) fn apply(
    tree: &mut Value,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<String>, ConfigError> {
    let mut overrides: Vec<(String, Vec<String>, String)> = vars
        .into_iter()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix(ENV_PREFIX)?;
            if !rest.contains("__") {
                return None;
            }
            let path = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            Some((name, path, value))
        })
        .collect();
    overrides.sort_by(|a, b| a.0.cmp(&b.0));
    let mut applied = Vec::new();
    for (name, path, value) in overrides {
        let source = Source(format!("environment variable {name}"));
        let key = path.join(".");
        if path.iter().any(|s| s.is_empty()) {
            return Err(ConfigError::Key {
                file: source,
                key,
                message: "empty path segment".into(),
            });
        }
        let set = set(tree, &path, value).map_err(|message| ConfigError::Key {
            file: source,
            key,
            message,
        })?;
        if set {
            applied.push(name);
        } else {
            tracing::debug!(variable = %name, "no such table in the file: override skipped");
        }
    }
    Ok(applied)
}

/// Sets `path` to `raw`; `Ok(false)` when a parent table is missing.
fn set(tree: &mut Value, path: &[String], raw: String) -> Result<bool, String> {
    let mut node = tree;
    let (last, parents) = path.split_last().ok_or("empty path")?;
    for (i, seg) in parents.iter().enumerate() {
        let Value::Object(map) = node else {
            return Err(format!("`{}` is not a table", parents[..i].join(".")));
        };
        match map.get_mut(seg) {
            Some(next) => node = next,
            None => return Ok(false),
        }
    }
    let Value::Object(map) = node else {
        return Err(format!("`{}` is not a table", parents.join(".")));
    };
    let value = match map.get(last) {
        Some(Value::Bool(_)) => Value::Bool(
            raw.parse()
                .map_err(|_| format!("expected true or false, got {raw:?}"))?,
        ),
        Some(Value::Number(_)) => serde_json::from_str::<serde_json::Number>(&raw)
            .map(Value::Number)
            .map_err(|_| format!("expected a number, got {raw:?}"))?,
        _ => Value::String(raw),
    };
    map.insert(last.clone(), value);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn overrides_nested_keys_keeping_types() {
        let mut tree = serde_json::json!({"cluster": {"port": 1}, "transport": {"type": "tcp"}});
        let applied = apply(
            &mut tree,
            vars(&[
                ("PROTOBASE_CLUSTER__PORT", "9000"),
                ("PROTOBASE_TRANSPORT__PSK", "s3cret"),
                ("PROTOBASE_BACKEND__STORE__SECRET_ACCESS_KEY", "x"),
                ("PROTOBASE_SKIP_S3", "1"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(
            applied,
            ["PROTOBASE_CLUSTER__PORT", "PROTOBASE_TRANSPORT__PSK"]
        );
        assert_eq!(tree["cluster"]["port"], 9000);
        assert_eq!(tree["transport"]["psk"], "s3cret");
        assert!(tree.get("backend").is_none(), "no section is created");
        assert!(tree.get("skip_s3").is_none());
    }

    #[test]
    fn bad_override_names_the_variable_and_key() {
        let mut tree = serde_json::json!({"cluster": {"port": 1}});
        let e = apply(&mut tree, vars(&[("PROTOBASE_CLUSTER__PORT", "high")])).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("PROTOBASE_CLUSTER__PORT"), "{msg}");
        assert_eq!(e.key(), Some("cluster.port"));
        let e = apply(&mut tree, vars(&[("PROTOBASE_CLUSTER__PORT__X", "1")])).unwrap_err();
        assert!(e.to_string().contains("not a table"), "{e}");
    }
}
