//! Sequential validation of whole WALs (`inspect`, `verify`, recovery checks).
//!
//! A scan walks a WAL record by record from its first record. A record whose
//! checksum fails in the middle of the WAL is *corruption*; an incomplete or
//! invalid record at the end (a write cut short by a crash) is a *torn tail*
//! — expected after a crash, never reachable from a published root. A walk
//! that stops on an invalid length prefix is a torn tail only when the prefix
//! runs past the end or everything after it is zeros (what a crash leaves);
//! otherwise the rest of the WAL is unreadable and counts as corrupt. A skip
//! record (written where a durability barrier sealed a unit of an aligned
//! store early, see [`crate::record`]) moves the walk to the offset it
//! names; the gap behind it is never read.

use crate::error::{Error, FormatError, Result};
use crate::record::{self, WalKind};
use crate::types::WalId;
use crate::wal_store::WalStore;

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
    /// Gaps announced by skip records: `(start, end)` of bytes never
    /// written (the skip record itself excluded).
    pub gaps: Vec<(u64, u64)>,
    /// Invalid records followed by valid ones.
    pub corrupt: Vec<ScanProblem>,
    /// The invalid end of the WAL, if any.
    pub torn_tail: Option<ScanProblem>,
    /// Offset of the *close mark* that ends the WAL, if it has one: a skip
    /// record with no gap, left by a writer that closed a WAL it may
    /// continue later (see [`crate::wal_resume`]). Its 13 bytes are not
    /// data; a copy to an object store leaves them out.
    pub close_mark: Option<u64>,
}

impl WalReport {
    /// True when no record is corrupt (a torn tail is allowed unless `strict`).
    pub fn is_clean(&self, strict: bool) -> bool {
        self.corrupt.is_empty() && (!strict || self.torn_tail.is_none())
    }
}

/// Scans `wal`, calling `progress` with the bytes scanned so far.
pub async fn scan_wal(
    provider: &dyn WalStore,
    wal: WalId,
    limit: u64,
    progress: impl FnMut(u64) + Send,
) -> Result<WalReport> {
    Ok(scan_wal_from(provider, wal, 0, limit, true, progress)
        .await?
        .report)
}

/// A scan that may start after the first record.
pub(crate) struct PartialScan {
    /// What the scan found (`offsets` empty unless asked for).
    pub(crate) report: WalReport,
    /// Offset of the first valid record seen.
    pub(crate) first_valid: Option<u64>,
}

impl PartialScan {
    /// Offset of the first invalid record seen (corrupt or torn).
    pub(crate) fn first_problem(&self) -> Option<u64> {
        let r = &self.report;
        r.corrupt
            .iter()
            .map(|p| p.offset)
            .chain(r.torn_tail.as_ref().map(|p| p.offset))
            .min()
    }
}

/// Scans `wal` from `start` (a record boundary known from elsewhere, e.g. a
/// root's pointer; `0` or anything below the first record: from the first
/// record). The WAL's layout is still decided from its first bytes.
pub(crate) async fn scan_wal_from(
    provider: &dyn WalStore,
    wal: WalId,
    start: u64,
    limit: u64,
    keep_offsets: bool,
    mut progress: impl FnMut(u64) + Send,
) -> Result<PartialScan> {
    let mut first_valid = None;
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
        gaps: Vec::new(),
        corrupt: Vec::new(),
        torn_tail: None,
        close_mark: None,
    };
    let done = |report| PartialScan {
        report,
        first_valid: None,
    };
    if len == 0 {
        return Ok(done(report));
    }
    let head = provider.read(wal, 0, record::DETECT_LEN.min(len)).await?;
    let kind = match record::detect_wal_kind(wal, &head, Some(len), limit) {
        Ok(k) => k.unwrap_or(WalKind::Reference),
        // A header cut short is a crash's torn tail, and so is a WAL of
        // zeros only (a crash after the file grew, before its bytes were
        // written); a header that fails validation otherwise makes every
        // record behind it unreadable: corruption, never a reference WAL.
        Err(error @ FormatError::Truncated { .. }) => {
            report.torn_tail = Some(ScanProblem { offset: 0, error });
            return Ok(done(report));
        }
        Err(error) => {
            if all_zero(provider, wal, 0, len).await? {
                report.torn_tail = Some(ScanProblem { offset: 0, error });
            } else {
                report.corrupt.push(ScanProblem { offset: 0, error });
            }
            return Ok(done(report));
        }
    };
    report.kind = Some(kind);
    let mut pos = kind.first_record().max(start);
    // window holds bytes [win_start, win_start + window.len())
    let mut win_start = pos;
    let mut window = bytes::Bytes::new();
    while pos < len {
        let need_prefix = (record::RECORD_PREFIX_LEN).min(len - pos);
        if pos + need_prefix > win_start + window.len() as u64 {
            window = provider.read(wal, pos, SCAN_CHUNK.max(need_prefix)).await?;
            win_start = pos;
        }
        let mut at = (pos - win_start) as usize;
        if kind == WalKind::Native {
            if pos + record::SKIP_RECORD_LEN > win_start + window.len() as u64
                && pos + record::SKIP_RECORD_LEN <= len
            {
                window = provider.read(wal, pos, SCAN_CHUNK).await?;
                win_start = pos;
                at = 0;
            }
            match record::decode_skip(&window[at..]) {
                Ok(None) => {}
                Ok(Some(gap)) => {
                    let start = pos + record::SKIP_RECORD_LEN;
                    let Some(next) = start.checked_add(gap) else {
                        report.corrupt.push(ScanProblem {
                            offset: pos,
                            error: FormatError::LengthTooLarge {
                                length: gap,
                                limit: u64::MAX - start,
                            },
                        });
                        break;
                    };
                    if gap > 0 {
                        report.gaps.push((start, next));
                    } else if next == len {
                        report.close_mark = Some(pos);
                    }
                    pos = next;
                    window = bytes::Bytes::new();
                    win_start = pos;
                    progress(pos.min(len));
                    continue;
                }
                Err(error) => {
                    let problem = ScanProblem { offset: pos, error };
                    if pos + record::SKIP_RECORD_LEN >= len {
                        report.torn_tail = Some(problem);
                    } else {
                        report.corrupt.push(problem);
                    }
                    break;
                }
            }
        }
        let total = match record::record_total_len(kind, &window[at..], limit) {
            Ok(t) => t,
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
                if keep_offsets {
                    report.offsets.push(pos);
                }
                first_valid.get_or_insert(pos);
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
    Ok(PartialScan {
        report,
        first_valid,
    })
}

/// Whether `wal` holds only zero bytes in `from..to`.
async fn all_zero(provider: &dyn WalStore, wal: WalId, from: u64, to: u64) -> Result<bool> {
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
    use crate::backends::memory::MemoryBlockProvider;
    use crate::types::Format;

    /// A WAL in a memory store: header, a record, a skip record to offset
    /// 256 (the gap left as zeros, as a store that never wrote it reads
    /// back), a record, then `tail`.
    async fn wal_with_gap(tail: &[u8]) -> (MemoryBlockProvider, WalId) {
        let p = MemoryBlockProvider::new();
        let wal = p.create_wal().await.unwrap().id;
        let mut v = record::encode_header(wal).to_vec();
        record::encode_record(&mut v, Format::Raw, b"before the barrier");
        let at = v.len() as u64 + record::SKIP_RECORD_LEN;
        record::encode_skip(&mut v, 256 - at);
        v.resize(256, 0);
        record::encode_record(&mut v, Format::Raw, b"after the barrier");
        v.extend_from_slice(tail);
        p.append(wal, 0, bytes::Bytes::from(v)).await.unwrap();
        (p, wal)
    }

    #[tokio::test]
    async fn skip_records_are_followed() {
        let (p, wal) = wal_with_gap(&[]).await;
        let rep = scan_wal(&p, wal, 1 << 20, |_| {}).await.unwrap();
        assert_eq!(rep.offsets, vec![32, 256]);
        assert_eq!(rep.gaps, vec![(32 + 9 + 18 + 4 + 13, 256)]);
        assert!(rep.is_clean(true), "{rep:?}");
    }

    #[tokio::test]
    async fn zeros_without_a_skip_record_are_still_problems() {
        // Zeros at the end: a torn tail.
        let (p, wal) = wal_with_gap(&[0u8; 40]).await;
        let rep = scan_wal(&p, wal, 1 << 20, |_| {}).await.unwrap();
        assert_eq!(rep.records, 2);
        assert!(rep.is_clean(false) && !rep.is_clean(true), "{rep:?}");
        // Zeros followed by data: corruption.
        let (p, wal) = wal_with_gap(&[]).await;
        let len = p.list_wals().await.unwrap()[0].len;
        let mut junk = vec![0u8; 8];
        junk.extend_from_slice(b"garbage!");
        p.append(wal, len, bytes::Bytes::from(junk)).await.unwrap();
        let rep = scan_wal(&p, wal, 1 << 20, |_| {}).await.unwrap();
        assert_eq!(rep.records, 2);
        assert_eq!(rep.corrupt.len(), 1, "{rep:?}");
    }

    #[tokio::test]
    async fn a_damaged_skip_record_is_corruption() {
        let (p, wal) = wal_with_gap(&[]).await;
        // Flip a bit of the skip record's gap length.
        let skip_at = 32 + 9 + 18 + 4;
        let mut b = p.read(wal, skip_at, 1).await.unwrap().to_vec();
        b[0] ^= 1;
        p.append(wal, skip_at, bytes::Bytes::from(b)).await.unwrap();
        let rep = scan_wal(&p, wal, 1 << 20, |_| {}).await.unwrap();
        assert_eq!(rep.records, 1);
        assert_eq!(rep.corrupt.len(), 1, "{rep:?}");
        assert!(matches!(rep.corrupt[0].error, FormatError::BadCrc { .. }));
    }
}
