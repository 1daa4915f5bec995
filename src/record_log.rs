//! An append-only log of checksummed records: the byte format of the small
//! state files that must be durable after every change and cheap to change
//! (a cluster node's acceptor state, a space directory's root log).
//! Appending a record and one `fdatasync` replaces a whole-file replacement
//! (temporary file, fsync, rename, directory fsync).
//!
//! ```text
//! file:   magic (8 bytes, one per kind of log) | record*
//! record: u32 LE payload length | u32 LE CRC32C of the payload | payload
//! ```
//!
//! The payload is JSON. The log's value is its last valid record. A crash
//! in the middle of an append leaves a torn last record (cut short, a length
//! reaching the end of the file, zeros where the file had been extended or
//! preallocated, or a bad checksum on the last record): that record was
//! never acknowledged, so it is ignored. An invalid record with more
//! non-zero bytes after it is not a torn append but damage, and decoding
//! refuses the file rather than fall back to an older value.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bytes before each record's payload: its length and its CRC32C.
pub(crate) const RECORD_HEADER: usize = 8;

/// Largest payload a record may have (the states logged are well under a
/// kilobyte).
pub(crate) const MAX_RECORD_PAYLOAD: usize = 64 << 10;

/// One kind of log: its magic and what its errors call it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogKind {
    /// The file's first bytes.
    pub(crate) magic: &'static [u8; 8],
    /// What the log holds, for messages ("acceptor state").
    pub(crate) what: &'static str,
    /// Invalid bytes after the last valid record that still count as a
    /// torn record when only zeros follow them: 0 for a log appended at the
    /// end of its file; a record's largest size for a log written into
    /// zeros, where a crash may leave any part of the record (its header
    /// still zero, a later sector written).
    pub(crate) torn_span: usize,
}

/// One record holding `value`, ready to append.
pub(crate) fn encode_record<T: Serialize>(kind: LogKind, value: &T) -> Result<Vec<u8>, String> {
    let payload = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    if payload.len() > MAX_RECORD_PAYLOAD {
        return Err(format!(
            "{} of {} bytes exceeds {MAX_RECORD_PAYLOAD}",
            kind.what,
            payload.len()
        ));
    }
    let len = u32::try_from(payload.len()).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(RECORD_HEADER + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// A whole log holding only `record` (from [`encode_record`]).
pub(crate) fn log_of_record(kind: LogKind, record: &[u8]) -> Vec<u8> {
    [kind.magic.as_slice(), record].concat()
}

/// What a log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodedLog<T> {
    /// The value of the last valid record.
    pub(crate) last: T,
    /// Valid records read.
    pub(crate) records: usize,
    /// Bytes after the last valid record that were ignored (0: none): a
    /// torn record, or zeros.
    pub(crate) torn_bytes: usize,
}

/// Where a log's valid records are ([`walk_log`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Walked {
    /// Valid records.
    pub(crate) records: usize,
    /// Bytes after the last valid record that were ignored (0: none).
    pub(crate) torn_bytes: usize,
    /// Where the last valid record starts (0: there is none).
    pub(crate) last_at: usize,
    /// Where the last valid record ends (the next append's offset).
    pub(crate) end: usize,
}

/// Decodes a log of `kind`: the value of its last valid record, a torn last
/// record ignored, `each` called with every valid record in order. An error
/// says what is damaged and where.
pub(crate) fn decode_log<T: DeserializeOwned>(
    kind: LogKind,
    bytes: &[u8],
    mut each: impl FnMut(&T),
) -> Result<DecodedLog<T>, String> {
    let mut last = None;
    let walked = walk_log(kind, bytes, |payload| {
        let v = parse(payload)?;
        each(&v);
        last = Some(v);
        Ok(())
    })?;
    Ok(DecodedLog {
        last: last.ok_or_else(|| format!("{} log without a valid record", kind.what))?,
        records: walked.records,
        torn_bytes: walked.torn_bytes,
    })
}

/// Checks a log's framing and checksums, handing each record's payload to
/// `take` (whose error makes the record invalid); a log without a valid
/// record is refused.
pub(crate) fn walk_log(
    kind: LogKind,
    bytes: &[u8],
    mut take: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<Walked, String> {
    let Some(mut rest) = bytes.strip_prefix(kind.magic.as_slice()) else {
        return Err(format!("no {} log magic", kind.what));
    };
    let mut last_at = 0;
    let mut records = 0usize;
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        let framed = frame_record(rest)
            .and_then(|(payload, used)| take(payload).map(|()| used).map_err(Invalid::Damaged));
        match framed {
            Ok(used) => {
                last_at = offset;
                records += 1;
                rest = &rest[used..];
            }
            Err(Invalid::Torn) => break,
            Err(Invalid::Damaged(why)) => {
                // Zeros to the end (after at most `torn_span` bytes) are an
                // append cut short; anything else is damage.
                if rest[kind.torn_span.min(rest.len())..]
                    .iter()
                    .all(|b| *b == 0)
                {
                    break;
                }
                return Err(format!(
                    "{} log record at offset {offset}: {why}",
                    kind.what
                ));
            }
        }
    }
    // The first record is written with the file (a temporary file renamed
    // into place after its fsync), so a log without one is damaged.
    if records == 0 {
        return Err(format!("{} log without a valid record", kind.what));
    }
    Ok(Walked {
        records,
        torn_bytes: rest.len(),
        last_at,
        end: bytes.len() - rest.len(),
    })
}

/// Why the bytes at some offset are not a valid record.
#[derive(Debug)]
pub(crate) enum Invalid {
    /// Cut short by the end of the bytes.
    Torn,
    /// Wrong in a way a cut-short append does not explain by itself.
    Damaged(String),
}

fn parse<T: DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    serde_json::from_slice(payload).map_err(|e| format!("undecodable record: {e}"))
}

/// The record at the start of `bytes` and the bytes it used.
#[cfg_attr(not(feature = "fs"), allow(dead_code))]
pub(crate) fn decode_record<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), Invalid> {
    let (payload, used) = frame_record(bytes)?;
    Ok((parse(payload).map_err(Invalid::Damaged)?, used))
}

/// The payload of the record at the start of `bytes`, its checksum
/// checked, and the bytes the record used.
fn frame_record(bytes: &[u8]) -> Result<(&[u8], usize), Invalid> {
    let Some(header) = bytes.first_chunk::<RECORD_HEADER>() else {
        return Err(Invalid::Torn);
    };
    let len = payload_len(header).map_err(Invalid::Damaged)?;
    let Some(payload) = bytes.get(RECORD_HEADER..RECORD_HEADER + len) else {
        return Err(Invalid::Torn);
    };
    let used = RECORD_HEADER + len;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let computed = crc32c::crc32c(payload);
    if computed != crc {
        // The last record with a bad checksum (only zeros after it: the
        // end of the file, or of a preallocated file's data) is an append
        // whose data did not all reach the disk.
        return Err(if bytes[used..].iter().all(|b| *b == 0) {
            Invalid::Torn
        } else {
            Invalid::Damaged(format!("checksum {computed:#010x}, stored {crc:#010x}"))
        });
    }
    Ok((payload, used))
}

/// The payload length a record header announces, checked against the
/// limit (0 is never written).
pub(crate) fn payload_len(header: &[u8; RECORD_HEADER]) -> Result<usize, String> {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len == 0 || len > MAX_RECORD_PAYLOAD {
        return Err(format!("payload length {len}"));
    }
    Ok(len)
}
