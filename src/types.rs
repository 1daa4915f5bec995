//! The values the storage speaks: WAL ids, atom pointers, record formats and
//! the root record.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, FormatError};

/// Identifier of one write-ahead log: a UUID, written hyphenated as the WAL's
/// file name (or object key component).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WalId(pub Uuid);

impl WalId {
    /// A fresh random id.
    pub fn new_random() -> Self {
        WalId(Uuid::new_v4())
    }
}

impl fmt::Display for WalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for WalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WalId({self})")
    }
}

impl FromStr for WalId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Uuid::parse_str(s)
            .map(WalId)
            .map_err(|e| Error::invalid("WAL id", format!("{s:?}: {e}")))
    }
}

/// Where an atom lives: the WAL and the offset of the record's first byte.
///
/// Serialised with the reference keys, `{"transaction_id": …, "offset": …}`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AtomPointer {
    /// The WAL holding the record (the reference calls it `transaction_id`).
    #[serde(rename = "transaction_id")]
    pub wal_id: WalId,
    /// Offset of the record's first byte in the WAL.
    pub offset: u64,
}

impl AtomPointer {
    /// A pointer to `offset` in `wal_id`.
    pub fn new(wal_id: WalId, offset: u64) -> Self {
        AtomPointer { wal_id, offset }
    }
}

impl fmt::Display for AtomPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.wal_id, self.offset)
    }
}

impl fmt::Debug for AtomPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AtomPointer({self})")
    }
}

impl FromStr for AtomPointer {
    type Err = Error;
    /// Parses `<wal-uuid>:<offset>`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let (wal, off) = s.rsplit_once(':').ok_or_else(|| {
            Error::invalid("pointer", format!("{s:?} is not <wal-uuid>:<offset>"))
        })?;
        let offset = off
            .parse::<u64>()
            .map_err(|e| Error::invalid("pointer", format!("offset {off:?}: {e}")))?;
        Ok(AtomPointer::new(wal.parse()?, offset))
    }
}

/// The format byte of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Format {
    /// Opaque bytes.
    Raw = 0,
    /// A UTF-8 JSON document.
    Json = 1,
    /// A MessagePack value.
    MessagePack = 2,
}

impl Format {
    /// Parses a format byte.
    pub fn from_byte(b: u8) -> Result<Self, FormatError> {
        match b {
            0 => Ok(Format::Raw),
            1 => Ok(Format::Json),
            2 => Ok(Format::MessagePack),
            other => Err(FormatError::UnknownFormat(other)),
        }
    }
}

impl FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "raw" => Ok(Format::Raw),
            "json" => Ok(Format::Json),
            "msgpack" | "messagepack" => Ok(Format::MessagePack),
            other => Err(Error::invalid(
                "format",
                format!("{other:?} (raw|json|msgpack)"),
            )),
        }
    }
}

/// The one mutable value of a space: which atom is the current root.
///
/// Its JSON form keeps the reference keys (`transaction_id`, `offset`), so a
/// reference space's `space_root` parses (the other fields default to zero /
/// absent), and adds what this design needs: a monotonic `sequence`, the
/// fencing `term` under which it was written, the writer's id and a checksum.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRecord {
    /// The root atom.
    #[serde(flatten)]
    pub pointer: AtomPointer,
    /// Monotonic sequence: every published root is its predecessor's plus one.
    #[serde(default)]
    pub sequence: u64,
    /// Fencing term of the grant under which it was published.
    #[serde(default)]
    pub term: u64,
    /// Id of the node that published it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
    /// CRC32C of the other fields (absent in reference roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<u32>,
}

impl fmt::Debug for RootRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Root(#{} term {} -> {})",
            self.sequence, self.term, self.pointer
        )
    }
}

impl RootRecord {
    /// A root record with its checksum filled in.
    pub fn new(pointer: AtomPointer, sequence: u64, term: u64, writer: Option<String>) -> Self {
        let mut r = RootRecord {
            pointer,
            sequence,
            term,
            writer,
            checksum: None,
        };
        r.checksum = Some(r.compute_checksum());
        r
    }

    /// Whether this root is newer than `other`: the one order of roots,
    /// by `(term, sequence)`.
    ///
    /// A root published under a later grant (higher fencing term)
    /// supersedes any root of an earlier grant, whatever its sequence: a
    /// root of the earlier grant that was stored somewhere but never
    /// acknowledged must never win over the new holder's. Writers without
    /// fencing (a single node, term 0 grants) publish under the term of the
    /// root they build on, so their roots stay in this order too.
    pub fn is_newer_than(&self, other: &RootRecord) -> bool {
        self.order_key() > other.order_key()
    }

    /// The key roots are ordered by: `(term, sequence)`.
    pub fn order_key(&self) -> (u64, u64) {
        (self.term, self.sequence)
    }

    fn compute_checksum(&self) -> u32 {
        let canon = format!(
            "{}:{}:{}:{}:{}",
            self.pointer.wal_id,
            self.pointer.offset,
            self.sequence,
            self.term,
            self.writer.as_deref().unwrap_or("")
        );
        crc32c::crc32c(canon.as_bytes())
    }

    /// Serialises to the JSON written to `space_root`.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising this plain struct cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and validates a root document (reference or native).
    pub fn from_json(bytes: &[u8]) -> Result<Self, FormatError> {
        let r: RootRecord = serde_json::from_slice(bytes)
            .map_err(|e| FormatError::BadRoot(format!("not a root document: {e}")))?;
        r.verify_checksum()?;
        Ok(r)
    }

    /// Checks the checksum, when the root has one (reference roots have
    /// none).
    pub fn verify_checksum(&self) -> Result<(), FormatError> {
        if let Some(stored) = self.checksum {
            let computed = self.compute_checksum();
            if stored != computed {
                return Err(FormatError::BadCrc { stored, computed });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_parses_and_prints() {
        let p: AtomPointer = "8ee74877-149a-46a7-a291-f4a7a50ff71d:1292470"
            .parse()
            .unwrap();
        assert_eq!(p.offset, 1292470);
        assert_eq!(
            p.to_string(),
            "8ee74877-149a-46a7-a291-f4a7a50ff71d:1292470"
        );
        assert!("nope".parse::<AtomPointer>().is_err());
        assert!(
            "8ee74877-149a-46a7-a291-f4a7a50ff71d:x"
                .parse::<AtomPointer>()
                .is_err()
        );
        assert!("zz:1".parse::<AtomPointer>().is_err());
    }

    #[test]
    fn reference_root_parses() {
        let r = RootRecord::from_json(
            br#"{"transaction_id": "8ee74877-149a-46a7-a291-f4a7a50ff71d", "offset": 1292470}"#,
        )
        .unwrap();
        assert_eq!(r.pointer.offset, 1292470);
        assert_eq!(r.sequence, 0);
        assert_eq!(r.checksum, None);
    }

    #[test]
    fn native_root_round_trips_and_detects_tampering() {
        let r = RootRecord::new(
            AtomPointer::new(WalId::new_random(), 42),
            7,
            3,
            Some("n1".into()),
        );
        let json = r.to_json();
        assert_eq!(RootRecord::from_json(&json).unwrap(), r);
        let tampered = String::from_utf8(json)
            .unwrap()
            .replace("\"offset\":42", "\"offset\":43");
        assert!(matches!(
            RootRecord::from_json(tampered.as_bytes()),
            Err(FormatError::BadCrc { .. })
        ));
        assert!(RootRecord::from_json(b"{").is_err());
        assert!(RootRecord::from_json(b"").is_err());
    }
}
