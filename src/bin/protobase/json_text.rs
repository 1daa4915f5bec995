//! Validation at the door for `put --format json|msgpack`, and the exact
//! JSON form `get --json` prints.
//!
//! - A JSON input is exactly one complete value (whitespace around it
//!   allowed, nothing else), and every number in it round-trips: integers
//!   fit in 64 bits (signed or unsigned), other numbers are finite doubles
//!   that do not underflow to zero. `12345678901234567890123` and `1e400`
//!   are refused (store such values as strings).
//! - A MessagePack input is exactly one complete value with no trailing
//!   bytes, whose floats are finite and whose map keys are strings (so that
//!   `get --json` can print it); binary and extension values are refused.
//! - `get --json` prints a JSON record's own text with the whitespace
//!   outside strings removed, so every number keeps its digits (a reference
//!   writer's big integers included); a MessagePack record is decoded with
//!   64-bit integers kept exact.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Checks the numbers of a JSON text already known to be valid JSON.
pub(crate) fn check_json_numbers(text: &[u8]) -> Result<(), String> {
    let mut i = 0;
    let mut in_string = false;
    while i < text.len() {
        let b = text[i];
        if in_string {
            match b {
                b'\\' => i += 2,
                b'"' => {
                    in_string = false;
                    i += 1;
                }
                _ => i += 1,
            }
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < text.len()
                && matches!(text[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
            {
                i += 1;
            }
            let token = std::str::from_utf8(&text[start..i]).map_err(|e| e.to_string())?;
            check_number(token)?;
            continue;
        }
        i += 1;
    }
    Ok(())
}

fn check_number(token: &str) -> Result<(), String> {
    let integer = !token.contains(['.', 'e', 'E']);
    if integer {
        if token.parse::<i64>().is_ok() || token.parse::<u64>().is_ok() {
            return Ok(());
        }
        return Err(format!(
            "the integer {token} does not fit in 64 bits: it cannot round-trip (store it as a \
             string)"
        ));
    }
    let value: f64 = token
        .parse()
        .map_err(|e| format!("the number {token}: {e}"))?;
    if !value.is_finite() {
        return Err(format!(
            "the number {token} overflows a 64-bit float: it cannot round-trip (store it as a \
             string)"
        ));
    }
    let mantissa = token.split(['e', 'E']).next().unwrap_or("");
    if value == 0.0 && mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        return Err(format!(
            "the number {token} underflows to 0: it cannot round-trip (store it as a string)"
        ));
    }
    Ok(())
}

/// Validates a JSON input: one complete value, numbers that round-trip.
pub(crate) fn validate_json(input: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<de::IgnoredAny>(input)
        .map_err(|e| format!("not JSON (exactly one complete value): {e}"))?;
    check_json_numbers(input)
}

/// The payload to store for `put --format msgpack`: JSON input converted
/// to MessagePack, or MessagePack input as given. Either must be exactly
/// one complete value.
pub(crate) fn msgpack_payload(input: &[u8]) -> Result<Vec<u8>, String> {
    if let Ok(value) = serde_json::from_slice::<Value>(input) {
        check_json_numbers(input)?;
        return rmp_serde::to_vec_named(&value).map_err(|e| e.to_string());
    }
    decode_msgpack(input)
        .map_err(|e| format!("neither JSON nor exactly one MessagePack value: {e}"))?;
    Ok(input.to_vec())
}

/// Decodes exactly one MessagePack value (no trailing bytes) into JSON.
pub(crate) fn decode_msgpack(input: &[u8]) -> Result<Value, String> {
    let mut cursor = std::io::Cursor::new(input);
    let value = {
        let mut de = rmp_serde::Deserializer::new(&mut cursor);
        Checked::deserialize(&mut de).map_err(|e| e.to_string())?.0
    };
    let used = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
    if used != input.len() {
        return Err(format!(
            "{} trailing bytes after the first value (which ends at byte {used})",
            input.len().saturating_sub(used)
        ));
    }
    Ok(value)
}

/// A JSON record's text without whitespace outside strings (numbers keep
/// their digits). The record must be one valid JSON value.
pub(crate) fn compact_json(payload: &[u8]) -> Result<Vec<u8>, String> {
    serde_json::from_slice::<de::IgnoredAny>(payload)
        .map_err(|e| format!("the record is not valid JSON: {e}"))?;
    let mut out = Vec::with_capacity(payload.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in payload {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'"' => {
                in_string = true;
                out.push(b);
            }
            _ => out.push(b),
        }
    }
    Ok(out)
}

/// A JSON value decoded from MessagePack, refusing what JSON cannot hold
/// exactly (non-finite floats, binary, extension types, non-string keys).
struct Checked(Value);

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckedVisitor).map(Checked)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value JSON can hold")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("the float {v} has no JSON form")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_bytes<E: de::Error>(self, _v: &[u8]) -> Result<Value, E> {
        Err(E::custom("binary values have no JSON form"))
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Checked::deserialize(d).map(|c| c.0)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Checked::deserialize(d).map(|c| c.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Checked(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<Checked>()? {
            let Value::String(key) = key.0 else {
                return Err(de::Error::custom(
                    "map keys must be strings to have a JSON form",
                ));
            };
            let Checked(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_inputs_are_one_value_with_round_tripping_numbers() {
        assert!(validate_json(br#" {"a": [1, -2, 3.5, 1e10, 18446744073709551615]} "#).is_ok());
        assert!(validate_json(b"{\"a\":1}garbage").is_err());
        assert!(validate_json(b"1 2").is_err());
        assert!(validate_json(b"12345678901234567890123").is_err());
        assert!(validate_json(b"-9223372036854775809").is_err());
        assert!(validate_json(b"1e400").is_err());
        assert!(validate_json(b"1e-400").is_err());
        assert!(validate_json(b"0.0e-400").is_ok());
        assert!(validate_json(br#"["12345678901234567890123 in a string \" 1e400"]"#).is_ok());
    }

    #[test]
    fn msgpack_inputs_are_one_value_without_trailing_bytes() {
        assert!(msgpack_payload(b"hello world").is_err());
        assert!(msgpack_payload(b"{\"a\":1}garbage").is_err());
        let packed = rmp_serde::to_vec_named(&serde_json::json!({"a": [1, "x"]})).unwrap();
        assert_eq!(msgpack_payload(&packed).unwrap(), packed);
        let mut trailing = packed.clone();
        trailing.push(0xc0);
        assert!(msgpack_payload(&trailing).is_err());
        let nan = rmp_serde::to_vec(&f64::NAN).unwrap();
        assert!(decode_msgpack(&nan).is_err());
        let big = rmp_serde::to_vec(&u64::MAX).unwrap();
        assert_eq!(decode_msgpack(&big).unwrap(), serde_json::json!(u64::MAX));
    }

    #[test]
    fn compact_json_keeps_every_digit() {
        let text = b"{ \"n\" : 12345678901234567890123,\n \"s\": \"a  b\\\" c\" }";
        assert_eq!(
            compact_json(text).unwrap(),
            b"{\"n\":12345678901234567890123,\"s\":\"a  b\\\" c\"}"
        );
    }
}
