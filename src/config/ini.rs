//! The reference implementation's INI `space.config` in a space directory:
//!
//! ```ini
//! [cluster]
//! server_id = server_1
//! host = 127.0.0.1
//! port = 8765
//! vote_timeout_ms = 5000
//! read_timeout_ms = 2000
//! retry_interval_ms = 1000
//! max_retries = 3
//!
//! [servers]
//! server_1 = 127.0.0.1:8765
//! server_2 = 127.0.0.1:8766
//! ```
//!
//! It becomes the node's `[cluster]` section; keys of the node's own file
//! take precedence. A `[servers]` entry whose address is this node's
//! `host:port` is this node. Other sections are left to their owners;
//! unknown keys in these two are errors naming `space.config`.

use serde_json::{Map, Value};

use super::error::{ConfigError, Source};

/// File name of the space configuration in a space directory.
pub const SPACE_CONFIG: &str = "space.config";

const NUMBER_KEYS: &[&str] = &[
    "read_timeout_ms",
    "vote_timeout_ms",
    "retry_interval_ms",
    "max_retries",
    "lease_ms",
    "heartbeat_ms",
];

/// `(section, key, value, line)` entries of an INI text.
fn entries(text: &str, file: &Source) -> Result<Vec<(String, String, String, usize)>, ConfigError> {
    let mut section = String::new();
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let name = name.strip_suffix(']').ok_or_else(|| ConfigError::Syntax {
                file: file.clone(),
                message: format!("line {}: unterminated section header", i + 1),
            })?;
            section = name.trim().to_ascii_lowercase();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .or_else(|| line.split_once(':'))
            .ok_or_else(|| ConfigError::Syntax {
                file: file.clone(),
                message: format!("line {}: expected `key = value`", i + 1),
            })?;
        out.push((
            section.clone(),
            k.trim().to_string(),
            v.trim().to_string(),
            i + 1,
        ));
    }
    Ok(out)
}

/// The `[cluster]` section described by a `space.config` text, or `None`
/// when it has neither `[cluster]` nor `[servers]`.
pub(crate) fn cluster_value(text: &str, file: &Source) -> Result<Option<Value>, ConfigError> {
    let bad = |key: String, line: usize, message: String| ConfigError::Key {
        file: file.clone(),
        key,
        message: format!("line {line}: {message}"),
    };
    let mut cluster = Map::new();
    let mut servers: Vec<(String, String)> = Vec::new();
    let mut seen = false;
    for (section, key, value, line) in entries(text, file)? {
        match section.as_str() {
            "cluster" => {
                seen = true;
                let v = match key.as_str() {
                    "server_id" | "host" => Value::String(value),
                    "port" => Value::from(value.parse::<u16>().map_err(|_| {
                        bad(
                            format!("cluster.{key}"),
                            line,
                            format!("expected a port, got {value:?}"),
                        )
                    })?),
                    k if NUMBER_KEYS.contains(&k) => {
                        Value::from(value.parse::<u64>().map_err(|_| {
                            bad(
                                format!("cluster.{key}"),
                                line,
                                format!("expected a whole number, got {value:?}"),
                            )
                        })?)
                    }
                    _ => {
                        return Err(bad(format!("cluster.{key}"), line, "unknown key".into()));
                    }
                };
                cluster.insert(key, v);
            }
            "servers" => {
                seen = true;
                let ok = value
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !ok {
                    return Err(bad(
                        format!("servers.{key}"),
                        line,
                        format!("expected host:port, got {value:?}"),
                    ));
                }
                servers.push((key, value));
            }
            _ => {}
        }
    }
    if !seen {
        return Ok(None);
    }
    let host = cluster
        .get("host")
        .and_then(Value::as_str)
        .unwrap_or("127.0.0.1");
    let me = cluster
        .get("port")
        .and_then(Value::as_u64)
        .map(|p| format!("{host}:{p}"));
    let server_id = cluster
        .get("server_id")
        .and_then(Value::as_str)
        .map(String::from);
    let mut self_id = None;
    let list: Vec<Value> = servers
        .into_iter()
        .map(|(key, address)| {
            let id = match (&server_id, &me) {
                (Some(sid), Some(me)) if *me == address => sid.clone(),
                (None, Some(me)) if *me == address => {
                    self_id = Some(key.clone());
                    key
                }
                _ => key,
            };
            serde_json::json!({"id": id, "address": address})
        })
        .collect();
    if let (None, Some(id)) = (&server_id, self_id) {
        cluster.insert("server_id".into(), Value::String(id));
    }
    if !list.is_empty() {
        cluster.insert("servers".into(), Value::Array(list));
    }
    Ok(Some(Value::Object(cluster)))
}

/// `over` laid over `base`: tables merge key by key, anything else replaces.
pub(crate) fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> Source {
        Source("space.config".into())
    }

    #[test]
    fn reference_layout_becomes_a_cluster_section() {
        let text = "# reference\n[cluster]\nserver_id = a\nhost = 127.0.0.1\nport = 7001\n\
                    vote_timeout_ms = 300\n\n[servers]\nserver_1 = 127.0.0.1:7001\nserver_2 = 127.0.0.1:7002\n";
        let v = cluster_value(text, &src()).unwrap().unwrap();
        assert_eq!(v["server_id"], "a");
        assert_eq!(v["port"], 7001);
        assert_eq!(v["vote_timeout_ms"], 300);
        assert_eq!(
            v["servers"][0]["id"], "a",
            "the entry at host:port is this node"
        );
        assert_eq!(v["servers"][1]["id"], "server_2");
    }

    #[test]
    fn errors_name_key_file_and_line() {
        let e = cluster_value("[cluster]\nport = high\n", &src()).unwrap_err();
        assert_eq!(e.key(), Some("cluster.port"));
        assert!(e.to_string().contains("space.config") && e.to_string().contains("line 2"));
        let e = cluster_value("[cluster]\ncolour = red\n", &src()).unwrap_err();
        assert_eq!(e.key(), Some("cluster.colour"));
        let e = cluster_value("[servers]\nserver_1 = nowhere\n", &src()).unwrap_err();
        assert_eq!(e.key(), Some("servers.server_1"));
        assert!(cluster_value("[other]\nx = 1\n", &src()).unwrap().is_none());
        assert!(matches!(
            cluster_value("[cluster\n", &src()),
            Err(ConfigError::Syntax { .. })
        ));
    }
}
