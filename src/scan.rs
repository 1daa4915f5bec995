//! Sequential validation of whole WALs (`inspect`, `verify`, recovery checks).
//!
//! A scan walks a WAL record by record from its first record. A record whose
//! checksum fails in the middle of the WAL is *corruption*; an incomplete or
//! invalid record at the end (a write cut short by a crash) is a *torn tail*
//! — expected after a crash, never reachable from a published root. A walk
//! that stops on an invalid length prefix is a torn tail only when the prefix
//! runs past the end or everything after it is zeros (what a crash leaves);
//! otherwise the rest of the WAL is unreadable and counts as corrupt. Zeros
//! that end exactly where the provider resumes writing after a durability
//! barrier ([`BlockProvider::next_offset_after_barrier`]) are a gap, and the
//! walk continues behind them.

use crate::block_provider::BlockProvider;
use crate::error::{Error, FormatError, Result};
use crate::record::{self, WalKind};
use crate::types::WalId;

/// Bytes read per provider call while scanning.
const SCAN_CHUNK: u64 = 4 << 20;

/// A record that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanProblem {
    /// Offset of the record.
    pub offset: u64,
    /// What is wrong.
    pub error: FormatError,
}

/// What a scan of one WAL found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalReport {
    /// The WAL.
    pub wal: WalId,
    /// Its layout (`None`: empty).
    pub kind: Option<WalKind>,
    /// Its length in bytes.
    pub len: u64,
    /// Valid records.
    pub records: u64,
    /// Payload bytes of valid records.
    pub payload_bytes: u64,
    /// Offsets of valid records, in order.
    pub offsets: Vec<u64>,
    /// Invalid records followed by valid ones.
    pub corrupt: Vec<ScanProblem>,
    /// The invalid end of the WAL, if any.
    pub torn_tail: Option<ScanProblem>,
}

impl WalReport {
    /// True when no record is corrupt (a torn tail is allowed unless `strict`).
    pub fn is_clean(&self, strict: bool) -> bool {
        self.corrupt.is_empty() && (!strict || self.torn_tail.is_none())
    }
}

/// Scans `wal`, calling `progress` with the bytes scanned so far.
pub async fn scan_wal(
    provider: &dyn BlockProvider,
    wal: WalId,
    limit: u64,
    mut progress: impl FnMut(u64) + Send,
) -> Result<WalReport> {
    let len = provider
        .list_wals()
        .await?
        .into_iter()
        .find(|w| w.id == wal)
        .ok_or(Error::WalNotFound { wal })?
        .len;
    let mut report = WalReport {
        wal,
        kind: None,
        len,
        records: 0,
        payload_bytes: 0,
        offsets: Vec::new(),
        corrupt: Vec::new(),
        torn_tail: None,
    };
    if len == 0 {
        return Ok(report);
    }
    let head = provider
        .read(wal, 0, record::WAL_HEADER_LEN.min(len))
        .await?;
    let kind = match record::detect_kind(&head) {
        Ok(k) => k.unwrap_or(WalKind::Reference),
        // A header cut short is a crash's torn tail; a complete header that
        // fails validation makes every record behind it unreadable.
        Err(error @ FormatError::Truncated { .. }) => {
            report.torn_tail = Some(ScanProblem { offset: 0, error });
            return Ok(report);
        }
        Err(error) => {
            report.corrupt.push(ScanProblem { offset: 0, error });
            return Ok(report);
        }
    };
    report.kind = Some(kind);
    let mut pos = kind.first_record();
    // window holds bytes [win_start, win_start + window.len())
    let mut win_start = pos;
    let mut window = bytes::Bytes::new();
    while pos < len {
        let need_prefix = (record::RECORD_PREFIX_LEN).min(len - pos);
        if pos + need_prefix > win_start + window.len() as u64 {
            window = provider.read(wal, pos, SCAN_CHUNK.max(need_prefix)).await?;
            win_start = pos;
        }
        let at = (pos - win_start) as usize;
        let total = match record::record_total_len(kind, &window[at..], limit) {
            Ok(t) => t,
            Err(FormatError::ZeroLength) if kind == WalKind::Native => {
                // A durability barrier may have sealed the writer's storage
                // unit early (slot-based object stores): the writer then went
                // on at `next_offset_after_barrier`, leaving zeros between.
                let next = provider.next_offset_after_barrier(pos);
                if next > pos && next < len && all_zero(provider, wal, pos, next).await? {
                    pos = next;
                    window = bytes::Bytes::new();
                    win_start = pos;
                    continue;
                }
                let torn = all_zero(provider, wal, pos, len).await?;
                let problem = ScanProblem {
                    offset: pos,
                    error: FormatError::ZeroLength,
                };
                if torn {
                    report.torn_tail = Some(problem);
                } else {
                    report.corrupt.push(problem);
                }
                break;
            }
            Err(error) => {
                // The walk cannot go on. A crash leaves zeros (or a short
                // prefix) at the end; anything else is corruption.
                let problem = ScanProblem { offset: pos, error };
                let torn = match &problem.error {
                    FormatError::Truncated { .. } => true,
                    FormatError::ZeroLength => all_zero(provider, wal, pos, len).await?,
                    _ => false,
                };
                if torn {
                    report.torn_tail = Some(problem);
                } else {
                    report.corrupt.push(problem);
                }
                break;
            }
        };
        if total > len - pos {
            report.torn_tail = Some(ScanProblem {
                offset: pos,
                error: FormatError::Truncated {
                    needed: total,
                    available: len - pos,
                },
            });
            break;
        }
        if pos + total > win_start + window.len() as u64 {
            window = provider.read(wal, pos, SCAN_CHUNK.max(total)).await?;
            win_start = pos;
        }
        let at = (pos - win_start) as usize;
        let rec = window.slice(at..at + total as usize);
        match record::decode_record(kind, &rec, limit) {
            Ok((_, payload, _)) => {
                report.records += 1;
                report.payload_bytes += payload.len() as u64;
                report.offsets.push(pos);
            }
            Err(error) => {
                let problem = ScanProblem { offset: pos, error };
                if pos + total == len {
                    report.torn_tail = Some(problem);
                } else {
                    report.corrupt.push(problem);
                }
            }
        }
        pos += total;
        progress(pos);
    }
    Ok(report)
}

/// Whether `wal` holds only zero bytes in `from..to`.
async fn all_zero(provider: &dyn BlockProvider, wal: WalId, from: u64, to: u64) -> Result<bool> {
    let mut pos = from;
    while pos < to {
        let chunk = provider.read(wal, pos, SCAN_CHUNK.min(to - pos)).await?;
        if chunk.is_empty() {
            break;
        }
        if chunk.iter().any(|b| *b != 0) {
            return Ok(false);
        }
        pos += chunk.len() as u64;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_provider::{MockBlockProvider, WalInfo};
    use crate::types::Format;
    use bytes::Bytes;

    /// A provider whose barrier jumps to the next 256-byte boundary, over
    /// the given WAL bytes.
    fn slotted(wal: WalId, data: Vec<u8>) -> MockBlockProvider {
        let len = data.len() as u64;
        let data = Bytes::from(data);
        let mut p = MockBlockProvider::new();
        p.expect_list_wals()
            .returning(move || Ok(vec![WalInfo { id: wal, len }]));
        p.expect_next_offset_after_barrier()
            .returning(|end| end.div_ceil(256) * 256);
        p.expect_read().returning(move |_, offset, n| {
            let end = (offset + n).min(len) as usize;
            Ok(data.slice(offset as usize..end))
        });
        p
    }

    fn wal_with_gap(tail: &[u8]) -> (WalId, Vec<u8>) {
        let wal = WalId::new_random();
        let mut v = record::encode_header(wal).to_vec();
        record::encode_record(&mut v, Format::Raw, b"before the barrier");
        v.resize(256, 0); // sealed early: zeros up to the slot boundary
        record::encode_record(&mut v, Format::Raw, b"after the barrier");
        v.extend_from_slice(tail);
        (wal, v)
    }

    #[tokio::test]
    async fn barrier_gaps_are_skipped() {
        let (wal, data) = wal_with_gap(&[]);
        let rep = scan_wal(&slotted(wal, data), wal, 1 << 20, |_| {})
            .await
            .unwrap();
        assert_eq!(rep.offsets, vec![32, 256]);
        assert!(rep.is_clean(true), "{rep:?}");
    }

    #[tokio::test]
    async fn zeros_that_do_not_end_at_a_barrier_are_still_problems() {
        // Zeros at the end: a torn tail.
        let (wal, data) = wal_with_gap(&[0u8; 40]);
        let rep = scan_wal(&slotted(wal, data), wal, 1 << 20, |_| {})
            .await
            .unwrap();
        assert_eq!(rep.records, 2);
        assert!(rep.is_clean(false) && !rep.is_clean(true), "{rep:?}");
        // Zeros followed by data that is not at a barrier: corruption.
        let (wal, mut data) = wal_with_gap(&[]);
        data.extend_from_slice(&[0u8; 8]);
        data.extend_from_slice(b"garbage!");
        let rep = scan_wal(&slotted(wal, data), wal, 1 << 20, |_| {})
            .await
            .unwrap();
        assert_eq!(rep.records, 2);
        assert_eq!(rep.corrupt.len(), 1, "{rep:?}");
    }
}
