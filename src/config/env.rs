//! Environment overrides: `PROTOBASE_<SECTION>__<KEY>[__<KEY>...]=value`
//! replaces (or adds) one key of the node description before it is read,
//! so secrets need not live in the file:
//!
//! ```text
//! PROTOBASE_TRANSPORT__PSK=...                              [transport] psk
//! PROTOBASE_CLUSTER__LEASE_MS=9000                          [cluster] lease_ms
//! PROTOBASE_BACKEND__STORE_OPTIONS__ACCESS_KEY_ID=...       [backend.store_options] access_key_id
//! PROTOBASE_BACKEND__STORE_OPTIONS__SECRET_ACCESS_KEY=...   [backend.store_options] secret_access_key
//! ```
//!
//! Path segments are lower-cased. The first segment names a section
//! (`cluster`, `transport`, `backend`...): a variable for a section the file
//! lacks is skipped, so one environment can serve a standalone node and a
//! cluster node alike. Below it, keys and tables may be new. A value is
//! typed by the field it sets, whether the file has the key or not:
//! `PROTOBASE_CLUSTER__LEASE_MS=9000` sets a number, `..._PSK=12345` a
//! string; a value the field cannot take is an error naming the variable
//! (`environment variable PROTOBASE_CLUSTER__LEASE_MS: expected an unsigned
//! integer, got "soon"`). Variables without `__` (such as
//! `PROTOBASE_SKIP_S3`) are not overrides.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde_json::Value;

use super::error::{ConfigError, Source};

/// Prefix of override variables.
pub const ENV_PREFIX: &str = "PROTOBASE_";

/// Key of the object an override is kept in until the tree is read.
const MARK: &str = "$protobase_env";

/// Applies the overrides found in `vars` to `tree`; returns the names of the
/// variables applied (sorted), for logging (values are never logged).
/// Variables whose section the file lacks are skipped.
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
        let set = set(tree, &path, &name, value).map_err(|message| ConfigError::Key {
            file: source,
            key,
            message,
        })?;
        if set {
            applied.push(name);
        } else {
            tracing::debug!(variable = %name, "no such section in the file: override skipped");
        }
    }
    Ok(applied)
}

/// Sets `path` to the override `raw` of variable `var`; `Ok(false)` when
/// the section (first segment) is missing. Tables below it are created.
fn set(tree: &mut Value, path: &[String], var: &str, raw: String) -> Result<bool, String> {
    let (last, parents) = path.split_last().ok_or("empty path")?;
    let Value::Object(root) = tree else {
        return Err("the configuration is not a table".into());
    };
    if !root.contains_key(&path[0]) {
        return Ok(false);
    }
    let mut node = tree;
    for (i, seg) in parents.iter().enumerate() {
        let Value::Object(map) = node else {
            return Err(format!("`{}` is not a table", parents[..i].join(".")));
        };
        let next = map
            .entry(seg.clone())
            .or_insert_with(|| Value::Object(Default::default()));
        if is_override(next) {
            return Err(format!("`{}` is not a table", parents[..=i].join(".")));
        }
        node = next;
    }
    let Value::Object(map) = node else {
        return Err(format!("`{}` is not a table", parents.join(".")));
    };
    map.insert(last.clone(), override_value(var, raw));
    Ok(true)
}

/// An override as kept in the tree: `{"$protobase_env": [variable, value]}`,
/// read as whatever type the field asks for ([`Tree`]).
fn override_value(var: &str, raw: String) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(MARK.into(), Value::Array(vec![var.into(), raw.into()]));
    Value::Object(m)
}

fn is_override(v: &Value) -> bool {
    as_override(v).is_some()
}

fn as_override(v: &Value) -> Option<(&str, &str)> {
    let Value::Object(m) = v else { return None };
    if m.len() != 1 {
        return None;
    }
    match m.get(MARK)? {
        Value::Array(a) if a.len() == 2 => Some((a[0].as_str()?, a[1].as_str()?)),
        _ => None,
    }
}

/// The marker ending an error message about an override.
pub(crate) fn override_error(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix("environment variable ")?;
    rest.split_once(": ")
}

/// A configuration tree with overrides in it, as a serde [`Deserializer`]:
/// an override is parsed as the type its field asks for; a table yields
/// its `type` key first, so `type`-tagged sections (typetag) are read field
/// by field (and typed) rather than buffered.
pub(crate) struct Tree<'a>(pub(crate) &'a Value);

struct EnvScalar<'a> {
    var: &'a str,
    raw: &'a str,
}

impl EnvScalar<'_> {
    fn bad(&self, expected: &str) -> serde_json::Error {
        de::Error::custom(format!(
            "environment variable {}: expected {expected}, got {:?}",
            self.var, self.raw
        ))
    }

    fn parse<T: std::str::FromStr>(&self, expected: &str) -> Result<T, serde_json::Error> {
        self.raw.trim().parse().map_err(|_| self.bad(expected))
    }
}

macro_rules! scalar {
    ($($method:ident => $visit:ident : $ty:ty, $what:expr;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            let v: $ty = self.parse($what)?;
            visitor.$visit(v)
        }
    )*};
}

impl<'de> Deserializer<'de> for EnvScalar<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_str(self.raw)
    }

    scalar! {
        deserialize_bool => visit_bool: bool, "true or false";
        deserialize_i8 => visit_i8: i8, "an integer";
        deserialize_i16 => visit_i16: i16, "an integer";
        deserialize_i32 => visit_i32: i32, "an integer";
        deserialize_i64 => visit_i64: i64, "an integer";
        deserialize_i128 => visit_i128: i128, "an integer";
        deserialize_u8 => visit_u8: u8, "an unsigned integer";
        deserialize_u16 => visit_u16: u16, "an unsigned integer";
        deserialize_u32 => visit_u32: u32, "an unsigned integer";
        deserialize_u64 => visit_u64: u64, "an unsigned integer";
        deserialize_u128 => visit_u128: u128, "an unsigned integer";
        deserialize_f32 => visit_f32: f32, "a number";
        deserialize_f64 => visit_f64: f64, "a number";
        deserialize_char => visit_char: char, "one character";
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_enum(self.raw.into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        str string bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

/// A table's entries, `type` first.
struct TreeMap<'a> {
    entries: Vec<(&'a String, &'a Value)>,
    next: usize,
}

impl<'a> TreeMap<'a> {
    fn new(m: &'a serde_json::Map<String, Value>) -> Self {
        let mut entries: Vec<_> = m.iter().collect();
        entries.sort_by_key(|(k, _)| k.as_str() != "type");
        TreeMap { entries, next: 0 }
    }
}

impl<'de> MapAccess<'de> for TreeMap<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.entries.get(self.next) {
            Some((k, _)) => seed.deserialize(k.as_str().into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let (_, v) = self.entries[self.next];
        self.next += 1;
        seed.deserialize(Tree(v))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len() - self.next)
    }
}

macro_rules! tree_forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Self::Error> {
            if let Some((var, raw)) = as_override(self.0) {
                return EnvScalar { var, raw }.$method($($arg,)* visitor);
            }
            match self.0 {
                Value::Object(m) => visitor.visit_map(TreeMap::new(m)),
                v => v.$method($($arg,)* visitor),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for Tree<'de> {
    type Error = serde_json::Error;

    tree_forward! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        if let Some((var, raw)) = as_override(self.0) {
            return EnvScalar { var, raw }.deserialize_enum(name, variants, visitor);
        }
        self.0.deserialize_enum(name, variants, visitor)
    }
}

impl fmt::Debug for Tree<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tree")
    }
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
        assert_eq!(
            as_override(&tree["cluster"]["port"]),
            Some(("PROTOBASE_CLUSTER__PORT", "9000"))
        );
        assert_eq!(
            as_override(&tree["transport"]["psk"]).map(|o| o.1),
            Some("s3cret")
        );
        assert!(tree.get("backend").is_none(), "no section is created");
        assert!(tree.get("skip_s3").is_none());
    }

    #[test]
    fn overrides_are_typed_by_the_field_and_bad_values_name_the_variable() {
        #[derive(serde::Deserialize, Debug)]
        struct C {
            port: u16,
            psk: String,
            on: Option<bool>,
        }
        let mut tree = serde_json::json!({"cluster": {"psk": "x"}});
        apply(
            &mut tree,
            vars(&[
                ("PROTOBASE_CLUSTER__PORT", "9000"),
                ("PROTOBASE_CLUSTER__PSK", "12345"),
                ("PROTOBASE_CLUSTER__ON", "true"),
            ]),
        )
        .unwrap();
        let c: C = serde::Deserialize::deserialize(Tree(&tree["cluster"])).unwrap();
        assert_eq!((c.port, c.psk.as_str(), c.on), (9000, "12345", Some(true)));
        let mut tree = serde_json::json!({"cluster": {}});
        apply(&mut tree, vars(&[("PROTOBASE_CLUSTER__PORT", "high")])).unwrap();
        let e = <C as serde::Deserialize>::deserialize(Tree(&tree["cluster"])).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("environment variable PROTOBASE_CLUSTER__PORT"),
            "{msg}"
        );
        assert!(msg.contains("\"high\""), "{msg}");
        let mut tree = serde_json::json!({"cluster": {"port": 1}});
        let e = apply(&mut tree, vars(&[("PROTOBASE_CLUSTER__PORT__X", "1")])).unwrap_err();
        assert!(e.to_string().contains("not a table"), "{e}");
        assert!(e.to_string().contains("PROTOBASE_CLUSTER__PORT__X"), "{e}");
    }
}
