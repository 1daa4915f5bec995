//! The on-disk record format (DESIGN.md §5).
//!
//! ```text
//! native WAL:    header (32 bytes) | record | record | …
//! header:        b"PROTOWAL" | u16 LE version | u16 LE flags | 16-byte WAL uuid | u32 LE CRC32C of the first 28 bytes
//! record:        u64 LE payload length | u8 format | payload | u32 LE CRC32C(format byte + payload)
//! skip record:  u64 LE gap length | u8 0xFF | u32 LE CRC32C(length bytes + 0xFF)
//! reference WAL: record without the CRC trailer, no header
//! ```
//!
//! A *skip record* ends a unit of storage that a durability barrier sealed
//! early (a fixed-size object of an object store, see
//! [`NewWal::barrier_alignment`](crate::wal_store::NewWal::barrier_alignment)):
//! the next record starts `gap length` bytes after the skip record's end, and
//! the bytes between are never written. A writer continuing a WAL after a
//! crash also writes one at the end of the valid records to fence the torn
//! tail behind it (see [`crate::wal_resume`]): there the gap holds what the
//! crash left, never read by a scan. No pointer ever names a skip record;
//! scans (`inspect`, `verify`, `copy`) follow it.
//!
//! The magic read as a little-endian `u64` is about 5.8·10¹⁸, far above any
//! record length, so a reference WAL (whose first 8 bytes are the length of
//! its first record) can never be mistaken for a native one.
//!
//! # Detection cannot be downgraded
//!
//! The other direction matters more: a native WAL whose header was damaged
//! must never be read as a reference WAL, which has no checksums (a tampered
//! payload would then be returned as valid). [`detect_wal_kind`], which the
//! reader and the scanner use, therefore calls a WAL *reference* only when
//! its first bytes are positively a reference record, and reports anything
//! else as a damaged header ([`FormatError::BadHeader`]):
//!
//! 1. the magic, then a header with a valid checksum and version that names
//!    the WAL being read (bytes 12..28): native;
//! 2. the magic with a bad checksum or version, or naming another WAL: a
//!    damaged (or misplaced) native header;
//! 3. bytes 12..28 holding the WAL's own id (where a native header keeps
//!    it): a native WAL whose magic or checksum was damaged;
//! 4. a plausible reference record: length prefix in `1..=limit`, format
//!    byte 0, 1 or 2, and, when the detection window holds it, the next
//!    record's prefix plausible too (or the WAL ending right there);
//! 5. anything else (a zeroed header, random bytes): a damaged header.
//!
//! A zeroed 32-byte header fails rule 4 (length 0), so it is corruption, and
//! `get` refuses the WAL instead of returning unchecked bytes.

use bytes::{BufMut, Bytes};

use crate::error::FormatError;
use crate::types::{Format, WalId};

/// First 8 bytes of every native WAL.
pub const WAL_MAGIC: [u8; 8] = *b"PROTOWAL";
/// Native WAL format version written by this crate.
pub const WAL_VERSION: u16 = 1;
/// Size of the native WAL header; the first record starts here.
pub const WAL_HEADER_LEN: u64 = 32;
/// Length prefix plus format byte.
pub const RECORD_PREFIX_LEN: u64 = 9;
/// CRC32C trailer of native records.
pub const CRC_LEN: u64 = 4;
/// Format byte of a skip record (never a data format).
pub const SKIP_FORMAT: u8 = 0xFF;
/// Length of a skip record (the gap after it not included).
pub const SKIP_RECORD_LEN: u64 = RECORD_PREFIX_LEN + CRC_LEN;
/// Largest `blob_max_size` (the payload limit readers and writers apply)
/// a storage accepts: 1 TiB, far above any record a process can hold in
/// memory, and far enough below `u64::MAX` that offsets plus record lengths
/// never overflow.
pub const MAX_BLOB_MAX_SIZE: u64 = 1 << 40;

/// Which record layout a WAL uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalKind {
    /// Written by this crate: header, CRC trailer on every record.
    Native,
    /// Written by the reference (Python) implementation: no header, no CRC.
    Reference,
}

impl WalKind {
    /// Offset of the first record.
    pub fn first_record(self) -> u64 {
        match self {
            WalKind::Native => WAL_HEADER_LEN,
            WalKind::Reference => 0,
        }
    }

    /// Bytes a record with `payload_len` bytes of payload occupies
    /// (saturating at `u64::MAX`; see [`checked_record_len`](Self::checked_record_len)).
    pub fn record_len(self, payload_len: u64) -> u64 {
        self.checked_record_len(payload_len).unwrap_or(u64::MAX)
    }

    /// Bytes a record with `payload_len` bytes of payload occupies, or
    /// `None` when that does not fit in a `u64`.
    pub fn checked_record_len(self, payload_len: u64) -> Option<u64> {
        let overhead = match self {
            WalKind::Native => RECORD_PREFIX_LEN + CRC_LEN,
            WalKind::Reference => RECORD_PREFIX_LEN,
        };
        payload_len.checked_add(overhead)
    }
}

/// Header flag (bits of the u16 at bytes 10..12, formerly reserved and
/// zero): the WAL's writer held it exclusively (a per-WAL lock of the
/// store), so once no writer holds it another process may continue it (see
/// [`crate::wal_resume`]). WALs without it (written by earlier versions,
/// which did not lock their WALs) are never continued. Readers ignore the
/// flags.
pub const HEADER_FLAG_CONTINUABLE: u16 = 1;

/// The header of a new native WAL.
pub fn encode_header(wal: WalId) -> [u8; WAL_HEADER_LEN as usize] {
    encode_header_with_flags(wal, 0)
}

/// The header of a new native WAL with header `flags` (see
/// [`HEADER_FLAG_CONTINUABLE`]).
pub fn encode_header_with_flags(wal: WalId, flags: u16) -> [u8; WAL_HEADER_LEN as usize] {
    let mut h = [0u8; WAL_HEADER_LEN as usize];
    h[..8].copy_from_slice(&WAL_MAGIC);
    h[8..10].copy_from_slice(&WAL_VERSION.to_le_bytes());
    h[10..12].copy_from_slice(&flags.to_le_bytes());
    h[12..28].copy_from_slice(wal.0.as_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The flags of a valid native header of `wal` (the WAL's own id in it),
/// `None` for anything else.
pub fn native_header_flags(wal: WalId, first: &[u8]) -> Option<u16> {
    let h = first.get(..WAL_HEADER_LEN as usize)?;
    if !matches!(detect_kind(h), Ok(Some(WalKind::Native))) || h[12..28] != *wal.0.as_bytes() {
        return None;
    }
    Some(u16::from_le_bytes([h[10], h[11]]))
}

/// Decides the layout of a WAL from its first bytes (at least 8, or the whole
/// WAL when shorter). Returns `None` for an empty WAL.
pub fn detect_kind(first: &[u8]) -> Result<Option<WalKind>, FormatError> {
    if first.is_empty() {
        return Ok(None);
    }
    if first.len() >= 8 && first[..8] == WAL_MAGIC {
        if first.len() < WAL_HEADER_LEN as usize {
            return Err(FormatError::Truncated {
                needed: WAL_HEADER_LEN,
                available: first.len() as u64,
            });
        }
        let stored = u32::from_le_bytes([first[28], first[29], first[30], first[31]]);
        let computed = crc32c::crc32c(&first[..28]);
        if stored != computed {
            return Err(FormatError::BadCrc { stored, computed });
        }
        let version = u16::from_le_bytes([first[8], first[9]]);
        if version != WAL_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        return Ok(Some(WalKind::Native));
    }
    Ok(Some(WalKind::Reference))
}

/// Checks that the native header at the start of `first` (whose magic,
/// version and checksum [`detect_kind`] accepted) names `wal`: a header is
/// the writer's own statement of which WAL the bytes belong to, so bytes of
/// another WAL (a peer answering the wrong page, a misnamed file) are not
/// read as this one.
fn check_header_names(wal: WalId, first: &[u8]) -> Result<(), FormatError> {
    let Some(id) = first.get(12..28) else {
        return Err(FormatError::Truncated {
            needed: WAL_HEADER_LEN,
            available: first.len() as u64,
        });
    };
    if id != wal.0.as_bytes() {
        let mut named = [0u8; 16];
        named.copy_from_slice(id);
        return Err(FormatError::BadHeader(format!(
            "the header names WAL {}, not {wal}",
            WalId(uuid::Uuid::from_bytes(named))
        )));
    }
    Ok(())
}

/// Checks that `first` starts with a valid native header (magic, version,
/// checksum) naming `wal`. Bytes a peer sends for the start of a WAL must
/// pass this: the layout of a WAL is never taken from a peer's say-so
/// (reference WALs carry no checksums, so a peer claiming one would turn
/// every later check off).
pub fn check_native_header(wal: WalId, first: &[u8]) -> Result<(), FormatError> {
    if first.len() < WAL_HEADER_LEN as usize {
        return Err(FormatError::Truncated {
            needed: WAL_HEADER_LEN,
            available: first.len() as u64,
        });
    }
    if first[..8] != WAL_MAGIC {
        return Err(FormatError::BadHeader(
            "no native magic where a native header must be".into(),
        ));
    }
    detect_kind(first)?;
    check_header_names(wal, first)
}

/// Bytes the reader and the scanner read from the start of a WAL to decide
/// its layout with [`detect_wal_kind`].
pub const DETECT_LEN: u64 = 4096;

/// Whether `prefix` (at least [`RECORD_PREFIX_LEN`] bytes) starts a
/// plausible reference record: a length in `1..=limit` and a known format.
fn plausible_reference_prefix(prefix: &[u8], limit: u64) -> Result<u64, FormatError> {
    let mut len = [0u8; 8];
    len.copy_from_slice(&prefix[..8]);
    let len = u64::from_le_bytes(len);
    if len == 0 {
        return Err(FormatError::ZeroLength);
    }
    if len > limit {
        return Err(FormatError::LengthTooLarge { length: len, limit });
    }
    Format::from_byte(prefix[8])?;
    Ok(len)
}

/// Decides the layout of `wal` from its first bytes `first` (up to
/// [`DETECT_LEN`], or the whole WAL when shorter; `wal_len` is the WAL's
/// length when known). Unlike [`detect_kind`], a WAL is *reference* only
/// when its first bytes positively are a reference record (see the [module
/// docs](self#detection-cannot-be-downgraded)); a damaged native header is
/// an error, never a downgrade to unchecked reads. `None`: the WAL is empty.
pub fn detect_wal_kind(
    wal: WalId,
    first: &[u8],
    wal_len: Option<u64>,
    limit: u64,
) -> Result<Option<WalKind>, FormatError> {
    if first.is_empty() {
        return Ok(None);
    }
    let magic_prefix = first.len().min(8);
    if first[..magic_prefix] == WAL_MAGIC[..magic_prefix] {
        if first.len() < 8 {
            return Err(FormatError::Truncated {
                needed: WAL_HEADER_LEN,
                available: first.len() as u64,
            });
        }
        let kind = detect_kind(first)?;
        check_header_names(wal, first)?;
        return Ok(kind);
    }
    if first.len() >= 28 && first[12..28] == *wal.0.as_bytes() {
        return Err(FormatError::BadHeader(format!(
            "bytes 12..28 hold this WAL's id {wal}, as a native header does, but its magic is \
             damaged: a native WAL, not a reference one"
        )));
    }
    if first.len() < RECORD_PREFIX_LEN as usize {
        // Too short to judge (a torn first record of a reference WAL).
        return Ok(Some(WalKind::Reference));
    }
    let damaged = |why: String| {
        FormatError::BadHeader(format!(
            "neither a native header nor a reference record ({why})"
        ))
    };
    let len = plausible_reference_prefix(first, limit).map_err(|e| damaged(e.to_string()))?;
    // The next record, when the window holds its prefix.
    let next = RECORD_PREFIX_LEN.saturating_add(len);
    if let Some(total) = wal_len
        && next > total
        && total > first.len() as u64
    {
        // The first record runs past the end: a torn reference WAL; the
        // scan reports the torn tail.
        return Ok(Some(WalKind::Reference));
    }
    if let Ok(at) = usize::try_from(next)
        && let Some(rest) = first.get(at..)
        && rest.len() >= RECORD_PREFIX_LEN as usize
        && wal_len.is_none_or(|total| next < total)
    {
        // A zero length here is a torn (zero-filled) tail, which a
        // reference WAL may have; anything else must be a record.
        if rest[..8] != [0u8; 8] {
            plausible_reference_prefix(rest, limit)
                .map_err(|e| damaged(format!("second record at {next}: {e}")))?;
        }
    }
    Ok(Some(WalKind::Reference))
}

/// Appends one native record to `out`.
pub fn encode_record(out: &mut impl BufMut, format: Format, payload: &[u8]) {
    out.put_u64_le(payload.len() as u64);
    out.put_u8(format as u8);
    out.put_slice(payload);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&[format as u8]), payload);
    out.put_u32_le(crc);
}

/// Appends a skip record announcing that the next record starts `gap` bytes
/// after the skip record's end.
pub fn encode_skip(out: &mut impl BufMut, gap: u64) {
    let len = gap.to_le_bytes();
    out.put_slice(&len);
    out.put_u8(SKIP_FORMAT);
    out.put_u32_le(crc32c::crc32c_append(crc32c::crc32c(&len), &[SKIP_FORMAT]));
}

/// The skip record at the start of `bytes` of a native WAL: `Ok(Some(gap))`
/// when it is one (checksum verified), `Ok(None)` when the bytes start a
/// data record.
pub fn decode_skip(bytes: &[u8]) -> Result<Option<u64>, FormatError> {
    if bytes.len() < RECORD_PREFIX_LEN as usize || bytes[8] != SKIP_FORMAT {
        return Ok(None);
    }
    if bytes.len() < SKIP_RECORD_LEN as usize {
        return Err(FormatError::Truncated {
            needed: SKIP_RECORD_LEN,
            available: bytes.len() as u64,
        });
    }
    let stored = u32::from_le_bytes([bytes[9], bytes[10], bytes[11], bytes[12]]);
    let computed = crc32c::crc32c_append(crc32c::crc32c(&bytes[..8]), &[SKIP_FORMAT]);
    if stored != computed {
        return Err(FormatError::BadCrc { stored, computed });
    }
    let mut gap = [0u8; 8];
    gap.copy_from_slice(&bytes[..8]);
    Ok(Some(u64::from_le_bytes(gap)))
}

/// Reads the length prefix of a record starting at `bytes[0]`, validating it
/// against `limit`. Returns the total record length.
pub fn record_total_len(kind: WalKind, bytes: &[u8], limit: u64) -> Result<u64, FormatError> {
    if (bytes.len() as u64) < RECORD_PREFIX_LEN {
        return Err(FormatError::Truncated {
            needed: RECORD_PREFIX_LEN,
            available: bytes.len() as u64,
        });
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[..8]);
    let len = u64::from_le_bytes(len);
    if len == 0 {
        return Err(FormatError::ZeroLength);
    }
    if len > limit {
        return Err(FormatError::LengthTooLarge { length: len, limit });
    }
    // A limit near u64::MAX admits lengths whose record length overflows.
    kind.checked_record_len(len)
        .ok_or(FormatError::LengthTooLarge {
            length: len,
            limit: u64::MAX - kind.record_len(0),
        })
}

/// Decodes the record at the start of `bytes` (which may hold more after it).
/// Returns the format, the payload (a zero-copy slice) and the record length.
pub fn decode_record(
    kind: WalKind,
    bytes: &Bytes,
    limit: u64,
) -> Result<(Format, Bytes, u64), FormatError> {
    let total = record_total_len(kind, bytes, limit)?;
    if (bytes.len() as u64) < total {
        return Err(FormatError::Truncated {
            needed: total,
            available: bytes.len() as u64,
        });
    }
    // `total <= bytes.len()`, so it fits a usize.
    let total_usize = bytes
        .len()
        .min(usize::try_from(total).unwrap_or(usize::MAX));
    let payload_end = match kind {
        WalKind::Native => total_usize - CRC_LEN as usize,
        WalKind::Reference => total_usize,
    };
    if kind == WalKind::Native {
        let t = &bytes[payload_end..total_usize];
        let stored = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let computed = crc32c::crc32c(&bytes[8..payload_end]);
        if stored != computed {
            return Err(FormatError::BadCrc { stored, computed });
        }
    }
    let format = Format::from_byte(bytes[8])?;
    Ok((
        format,
        bytes.slice(RECORD_PREFIX_LEN as usize..payload_end),
        total,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(payload: &[u8]) -> Bytes {
        let mut v = Vec::new();
        encode_record(&mut v, Format::Json, payload);
        Bytes::from(v)
    }

    #[test]
    fn round_trip() {
        let b = native(b"{\"a\":1}");
        let (f, p, n) = decode_record(WalKind::Native, &b, 1 << 20).unwrap();
        assert_eq!(
            (f, &p[..], n),
            (Format::Json, &b"{\"a\":1}"[..], b.len() as u64)
        );
    }

    #[test]
    fn every_byte_flip_is_detected() {
        let b = native(b"hello world");
        for i in 8..b.len() {
            let mut v = b.to_vec();
            v[i] ^= 0x40;
            let r = decode_record(WalKind::Native, &Bytes::from(v), 1 << 20);
            assert!(r.is_err(), "flip at {i} undetected");
        }
    }

    #[test]
    fn validation_errors() {
        let b = native(b"hello");
        assert!(matches!(
            decode_record(WalKind::Native, &b.slice(..b.len() - 1), 1 << 20),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            decode_record(WalKind::Native, &b.slice(..4), 1 << 20),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            decode_record(WalKind::Native, &b, 3),
            Err(FormatError::LengthTooLarge {
                length: 5,
                limit: 3
            })
        ));
        assert!(matches!(
            decode_record(WalKind::Native, &Bytes::from(vec![0u8; 32]), 1 << 20),
            Err(FormatError::ZeroLength)
        ));
        let mut r = vec![3u8, 0, 0, 0, 0, 0, 0, 0, 9];
        r.extend_from_slice(b"abc");
        assert_eq!(
            decode_record(WalKind::Reference, &Bytes::from(r), 1 << 20),
            Err(FormatError::UnknownFormat(9))
        );
    }

    #[test]
    fn header_detection() {
        let id = WalId::new_random();
        let h = encode_header(id);
        assert_eq!(detect_kind(&h).unwrap(), Some(WalKind::Native));
        assert_eq!(detect_kind(&[]).unwrap(), None);
        assert_eq!(
            detect_kind(&[131, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap(),
            Some(WalKind::Reference)
        );
        let mut bad = h;
        bad[20] ^= 1;
        assert!(detect_kind(&bad).is_err());
        assert!(detect_kind(&h[..12]).is_err());
        assert!(u64::from_le_bytes(WAL_MAGIC) > 1 << 60);
    }

    /// A native WAL: header then two records.
    fn native_wal(id: WalId) -> Vec<u8> {
        let mut v = encode_header(id).to_vec();
        encode_record(&mut v, Format::Json, b"{\"a\":1}");
        encode_record(&mut v, Format::Raw, b"second");
        v
    }

    #[test]
    fn a_damaged_native_header_is_never_a_reference_wal() {
        let id = WalId::new_random();
        let good = native_wal(id);
        let len = Some(good.len() as u64);
        assert_eq!(
            detect_wal_kind(id, &good, len, 1 << 20),
            Ok(Some(WalKind::Native))
        );
        // The whole header zeroed.
        let mut zeroed = good.clone();
        zeroed[..32].fill(0);
        assert!(matches!(
            detect_wal_kind(id, &zeroed, len, 1 << 20),
            Err(FormatError::BadHeader(_))
        ));
        // Only the magic damaged: the WAL's id is still where a header keeps it.
        let mut magic = good.clone();
        magic[..8].copy_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0]);
        magic[8] = 0;
        let err = detect_wal_kind(id, &magic, len, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("native"), "{err}");
        // Random bytes: no plausible reference record.
        let mut random = good.clone();
        for (i, b) in random[..32].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(201);
        }
        assert!(detect_wal_kind(id, &random, len, 1 << 20).is_err());
        // A truncated magic is a torn native header.
        assert!(matches!(
            detect_wal_kind(id, b"PROTO", Some(5), 1 << 20),
            Err(FormatError::Truncated { .. })
        ));
    }

    /// Issue 17: a valid header of another WAL is not this WAL's header.
    #[test]
    fn a_header_naming_another_wal_is_refused() {
        let id = WalId::new_random();
        let other = native_wal(WalId::new_random());
        let err = detect_wal_kind(id, &other, Some(other.len() as u64), 1 << 20).unwrap_err();
        assert!(
            matches!(err, FormatError::BadHeader(ref m) if m.contains("names WAL")),
            "{err}"
        );
        assert!(check_native_header(id, &other).is_err());
        let own = native_wal(id);
        assert_eq!(check_native_header(id, &own), Ok(()));
        assert!(check_native_header(id, &own[..31]).is_err());
        // A reference-looking start is no native header.
        let mut r = 23u64.to_le_bytes().to_vec();
        r.resize(40, 0);
        assert!(matches!(
            check_native_header(id, &r),
            Err(FormatError::BadHeader(_))
        ));
    }

    #[test]
    fn reference_wals_are_still_recognised() {
        let id = WalId::new_random();
        let mut v = Vec::new();
        for payload in [&b"{\"x\":1}"[..], b"abc", b"[1,2,3]"] {
            v.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            v.push(1);
            v.extend_from_slice(payload);
        }
        let len = Some(v.len() as u64);
        assert_eq!(
            detect_wal_kind(id, &v, len, 1 << 20),
            Ok(Some(WalKind::Reference))
        );
        // Torn after the first record, or zero-filled after it.
        assert_eq!(
            detect_wal_kind(id, &v[..12], Some(12), 1 << 20),
            Ok(Some(WalKind::Reference))
        );
        let mut zeros = v[..16].to_vec();
        zeros.resize(64, 0);
        assert_eq!(
            detect_wal_kind(id, &zeros, Some(64), 1 << 20),
            Ok(Some(WalKind::Reference))
        );
        // A first record followed by garbage is not a reference WAL.
        let mut garbage = v[..16].to_vec();
        garbage.extend_from_slice(&[0xEE; 16]);
        assert!(detect_wal_kind(id, &garbage, Some(32), 1 << 20).is_err());
        assert_eq!(detect_wal_kind(id, &[], Some(0), 1 << 20), Ok(None));
    }

    #[test]
    fn skip_records_round_trip_and_are_never_data() {
        let mut v = Vec::new();
        encode_skip(&mut v, 4096);
        assert_eq!(v.len() as u64, SKIP_RECORD_LEN);
        assert_eq!(decode_skip(&v), Ok(Some(4096)));
        // A pointer at a skip record is not an atom.
        assert!(decode_record(WalKind::Native, &Bytes::from(v.clone()), 1 << 20).is_err());
        // Every flipped bit is detected.
        for i in 0..v.len() {
            for bit in 0..8 {
                let mut w = v.clone();
                w[i] ^= 1 << bit;
                let got = decode_skip(&w);
                assert!(
                    got != Ok(Some(4096)),
                    "flip at {i}.{bit} undetected: {got:?}"
                );
            }
        }
        // Data records are not skips.
        assert_eq!(decode_skip(&native(b"x")), Ok(None));
        assert!(matches!(
            decode_skip(&v[..10]),
            Err(FormatError::Truncated { .. })
        ));
    }

    /// Issue 17: with a limit near `u64::MAX`, a length prefix near it made
    /// the record length overflow (a panic, or a wrapped length and a slice
    /// panic in `decode_record`).
    #[test]
    fn lengths_near_u64_max_are_refused_not_overflowed() {
        for kind in [WalKind::Native, WalKind::Reference] {
            for len in [u64::MAX, u64::MAX - 3, u64::MAX - 8, u64::MAX - 12] {
                let mut v = len.to_le_bytes().to_vec();
                v.extend_from_slice(&[1, b'{', b'}', 0, 0, 0, 0]);
                let b = Bytes::from(v);
                let total = record_total_len(kind, &b, u64::MAX);
                let decoded = decode_record(kind, &b, u64::MAX);
                match (total, decoded) {
                    (Ok(t), Err(FormatError::Truncated { needed, .. })) => assert_eq!(t, needed),
                    (Err(FormatError::LengthTooLarge { length, limit }), Err(e)) => {
                        assert_eq!(length, len);
                        assert!(limit < length);
                        assert!(matches!(e, FormatError::LengthTooLarge { .. }));
                    }
                    other => panic!("{kind:?} {len}: {other:?}"),
                }
            }
        }
        assert_eq!(WalKind::Native.record_len(u64::MAX), u64::MAX);
        assert_eq!(
            WalKind::Native.checked_record_len(u64::MAX - 13),
            Some(u64::MAX)
        );
        assert_eq!(WalKind::Reference.checked_record_len(u64::MAX - 8), None);
    }
}
