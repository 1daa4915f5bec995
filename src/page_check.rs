//! Checks on bytes read below the page cache, before anything trusts them.
//!
//! Every read a [`Storage`](crate::Storage) makes below its page cache
//! carries a [`ReadCheck`]. A read tier
//! ([`ReadTier::read_checked`](crate::ReadTier::read_checked)) and
//! [`TieredWalStore`](crate::TieredWalStore) apply it to each source's answer *before* returning
//! it: an answer that fails is not used, not cached and not served on; the
//! read goes on to the next source (the next peer in
//! [`PeerTier`](crate::cluster::PeerTier), the next tier, e.g. the object
//! store) and only when no source passes does the read fail, with the first
//! source's error ([`Error::Corrupt`], [`Error::OffsetOutOfRange`]...).
//!
//! # What is checked
//!
//! - **The envelope** (any source, [`check_answer`]): no more bytes than
//!   asked for. A peer's answer must also name the WAL and offset asked for,
//!   and bytes a peer sends for offset 0 must be a native header naming the
//!   requested WAL ([`record::check_native_header`]).
//! - **The layout** ([`HeaderCheck`]): decided by [`record::detect_wal_kind`],
//!   which refuses a header that names another WAL. A peer can never make a
//!   WAL *reference* (unchecked) format: reference WALs have no checksums
//!   and no header, so nothing a peer sends for them can be verified; they
//!   are read from the node's own storage or the object store only.
//! - **The records** ([`RecordCheck`]), CRC by CRC. A page starts at an
//!   arbitrary offset, usually inside a record, so the check starts where a
//!   record is known to start: the pointer being read (the *anchor*); a read
//!   at offset 0 must also start with this WAL's header. The anchor's
//!   record must be whole in the answer and pass its CRC (unless it runs past
//!   the end of a full-length answer: the reader then reads it whole, checked
//!   again); otherwise the answer is refused. The records after it are
//!   checked one by one (skip records followed) up to the end of the answer;
//!   at the first that fails — corruption, or a crashed writer's torn tail,
//!   which cannot be told apart here — the answer is *cut*: the bytes before
//!   it are used and cached, the bytes from it on are dropped. A later read
//!   of a record there anchors on that record and checks it again (the cut
//!   page is short, which the reader treats as "read again").
//!
//! # Why this design
//!
//! The alternatives were a checksum the holder computes over the bytes it
//! sends (it proves only that the bytes crossed the link intact: a peer with
//! a damaged disk or cache, or a hostile one, checksums its bad bytes) and
//! whole-record answers (the holder does not know where records start any
//! better than the reader: WALs have no record index). Record CRCs are the
//! end-to-end check the writer put in the bytes, so the reader verifies them
//! itself, starting from the one place it knows a record starts.
//!
//! # Limits
//!
//! - Bytes of a page *before* the anchor are not checked when the page is
//!   cached: where records start there is not known (and on page 0, a bad
//!   record before the anchor must not make the good records after it
//!   unreadable). They are checked when used: the reader CRC-checks every record it
//!   takes from a cached page and evicts a page that fails, then reads it
//!   again from another source; records that straddle a page boundary are
//!   always read whole, checked. A node's cache-aware handler may serve
//!   such unchecked bytes on to a peer, which checks them the same way.
//! - CRCs do not bind a record to its WAL or offset: a peer answering with
//!   another WAL's page whose records happen to line up under the right
//!   envelope is caught at offset 0 (the header names its WAL) but not
//!   elsewhere. Peers are authenticated members (DESIGN.md §6); these checks
//!   stop a member's broken disk, cache or code from spreading bad bytes.

use std::fmt;

use bytes::Bytes;

use crate::error::{Error, FormatError, Result};
use crate::record::{self, SKIP_RECORD_LEN, WalKind};
use crate::types::WalId;

/// A check of the bytes a source answered to a read, applied before they
/// are used; see the [module docs](self).
pub trait ReadCheck: Send + Sync + fmt::Debug {
    /// Checks `bytes`, answered for `len` bytes of `wal` at `offset` (never
    /// more than `len`: [`check_answer`] refuses longer answers first).
    /// `Ok(n)`: the first `n` bytes may be trusted and the rest must be
    /// dropped; `Err`: none of it may be used.
    fn check(&self, wal: WalId, offset: u64, len: u64, bytes: &Bytes) -> Result<usize>;
}

/// Whether a check failed only because the answer was short: it ends before
/// the record asked for, or inside it. A source whose copy of a WAL is
/// still growing answers so honestly, so this is not held against it (no
/// warning, no `protobase_pages_rejected_total`), though the answer is still
/// not used.
pub fn is_short_answer(error: &Error) -> bool {
    match error {
        Error::OffsetOutOfRange { .. }
        | Error::Corrupt {
            source: FormatError::Truncated { .. },
            ..
        } => true,
        Error::Rejected { source, .. } => is_short_answer(source),
        _ => false,
    }
}

/// Accepts every answer (after the envelope checks of [`check_answer`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCheck;

impl ReadCheck for NoCheck {
    fn check(&self, _: WalId, _: u64, _: u64, bytes: &Bytes) -> Result<usize> {
        Ok(bytes.len())
    }
}

/// Checks `bytes` answered for `len` bytes of `wal` at `offset`: no longer
/// than asked, then `check`. Returns the trusted part.
pub fn check_answer(
    check: &dyn ReadCheck,
    wal: WalId,
    offset: u64,
    len: u64,
    bytes: Bytes,
) -> Result<Bytes> {
    let got = bytes.len() as u64;
    if got > len {
        return Err(Error::Corrupt {
            wal,
            offset,
            source: FormatError::Mismatch(format!("{got} bytes answered for a read of {len}")),
        });
    }
    let n = check.check(wal, offset, len, &bytes)?;
    Ok(if n < bytes.len() {
        bytes.slice(..n)
    } else {
        bytes
    })
}

/// The check of a read of a WAL's first bytes, from which its layout is
/// decided ([`record::detect_wal_kind`]): a damaged header, or one naming
/// another WAL, is refused.
#[derive(Debug, Clone, Copy)]
pub struct HeaderCheck {
    /// Payload limit (`blob_max_size`).
    pub limit: u64,
}

impl ReadCheck for HeaderCheck {
    fn check(&self, wal: WalId, offset: u64, _len: u64, bytes: &Bytes) -> Result<usize> {
        if offset != 0 {
            return Ok(bytes.len());
        }
        record::detect_wal_kind(wal, bytes, None, self.limit).map_err(|source| Error::Corrupt {
            wal,
            offset: 0,
            source,
        })?;
        Ok(bytes.len())
    }
}

/// The check of a read made for the record at `anchor` (see the [module
/// docs](self#what-is-checked)).
#[derive(Debug, Clone, Copy)]
pub struct RecordCheck {
    /// The WAL's layout.
    pub kind: WalKind,
    /// Payload limit (`blob_max_size`).
    pub limit: u64,
    /// Offset of a record start within the read (the pointer being read).
    pub anchor: u64,
    /// Only the anchor's record will be used (a read that is not cached):
    /// the answer is cut right after it, and the records after it are not
    /// checked.
    pub anchor_only: bool,
}

impl RecordCheck {
    fn corrupt(wal: WalId, offset: u64, source: FormatError) -> Error {
        Error::Corrupt {
            wal,
            offset,
            source,
        }
    }
}

impl ReadCheck for RecordCheck {
    fn check(&self, wal: WalId, offset: u64, len: u64, bytes: &Bytes) -> Result<usize> {
        let got = bytes.len() as u64;
        let full = got >= len;
        let end = offset.checked_add(got).ok_or_else(|| {
            Self::corrupt(
                wal,
                offset,
                FormatError::Mismatch(format!("{got} bytes at offset {offset} overflow")),
            )
        })?;
        let Some(rel_anchor) = self.anchor.checked_sub(offset) else {
            // Not a read for this anchor: nothing known to check from.
            return Ok(bytes.len());
        };
        if rel_anchor >= got {
            // The source says the WAL ends before the record.
            return Err(Error::OffsetOutOfRange {
                wal,
                offset: self.anchor,
                len: end,
            });
        }
        let mut pos = rel_anchor;
        if offset == 0 && self.kind == WalKind::Native {
            // The header must be this WAL's.
            record::detect_wal_kind(wal, bytes, None, self.limit)
                .map_err(|e| Self::corrupt(wal, 0, e))?;
        }
        loop {
            // `pos <= got`, which fits a usize.
            let at = usize::try_from(pos).unwrap_or(usize::MAX);
            let Some(rest) = bytes.get(at..) else {
                return Ok(bytes.len());
            };
            if rest.is_empty() {
                return Ok(bytes.len());
            }
            let strict = pos <= rel_anchor;
            let record_at = offset.saturating_add(pos);
            let failed = move |e: FormatError| -> Result<usize> {
                if strict {
                    Err(Self::corrupt(wal, record_at, e))
                } else {
                    tracing::debug!(%wal, offset, at = record_at, error = %e,
                        "answer cut before a record that fails its check");
                    Ok(at)
                }
            };
            if self.kind == WalKind::Native && pos != rel_anchor {
                match record::decode_skip(rest) {
                    Ok(Some(gap)) => {
                        match pos
                            .checked_add(SKIP_RECORD_LEN)
                            .and_then(|p| p.checked_add(gap))
                        {
                            Some(next) => {
                                pos = next;
                                continue;
                            }
                            None => {
                                return failed(FormatError::LengthTooLarge {
                                    length: gap,
                                    limit: u64::MAX - pos,
                                });
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(FormatError::Truncated { .. }) => return Ok(bytes.len()),
                    Err(e) => return failed(e),
                }
            }
            let rest_len = rest.len() as u64;
            let total = match record::record_total_len(self.kind, rest, self.limit) {
                Ok(t) => t,
                Err(FormatError::Truncated { needed, available }) => {
                    // A prefix cut by the end of the answer.
                    if pos == rel_anchor && !full {
                        return Err(Self::corrupt(
                            wal,
                            self.anchor,
                            FormatError::Truncated { needed, available },
                        ));
                    }
                    return Ok(bytes.len());
                }
                Err(e) => return failed(e),
            };
            if total > rest_len {
                // Runs past the answer: whole in a full answer's next read,
                // torn in a short one.
                if pos == rel_anchor && !full {
                    return Err(Self::corrupt(
                        wal,
                        self.anchor,
                        FormatError::Truncated {
                            needed: total,
                            available: rest_len,
                        },
                    ));
                }
                return Ok(bytes.len());
            }
            let record = bytes.slice(at..);
            if let Err(e) = record::decode_record(self.kind, &record, self.limit) {
                return failed(e);
            }
            if self.anchor_only && pos == rel_anchor {
                // `total <= rest_len`: the record ends inside the answer.
                return Ok(at.saturating_add(usize::try_from(total).unwrap_or(usize::MAX)));
            }
            let next = pos.saturating_add(total);
            pos = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Format;

    fn wal_with(id: WalId, payloads: &[&[u8]]) -> (Vec<u8>, Vec<u64>) {
        let mut v = record::encode_header(id).to_vec();
        let mut starts = Vec::new();
        for p in payloads {
            starts.push(v.len() as u64);
            record::encode_record(&mut v, Format::Raw, p);
        }
        (v, starts)
    }

    fn check(anchor: u64) -> RecordCheck {
        RecordCheck {
            kind: WalKind::Native,
            limit: 1 << 20,
            anchor,
            anchor_only: false,
        }
    }

    #[test]
    fn a_good_page_passes_whole() {
        let id = WalId::new_random();
        let (v, starts) = wal_with(id, &[b"one", b"two two", b"three three three"]);
        let b = Bytes::from(v.clone());
        for &s in &starts {
            assert_eq!(check(s).check(id, 0, 4096, &b).unwrap(), v.len());
            // A page starting inside the first record, anchored later.
            let page = b.slice(36..);
            if s >= 36 {
                assert_eq!(check(s).check(id, 36, 4096, &page).unwrap(), page.len());
            }
        }
    }

    #[test]
    fn an_anchor_only_read_is_cut_after_its_record_and_checks_nothing_else() {
        let id = WalId::new_random();
        let (v, starts) = wal_with(id, &[b"one", b"two two", b"three three three"]);
        let mut bad = v.clone();
        bad[starts[2] as usize + 10] ^= 1;
        let b = Bytes::from(bad);
        let only = |anchor| RecordCheck {
            anchor_only: true,
            ..check(anchor)
        };
        // The damaged record after the anchor's is neither checked nor
        // returned: the answer ends where the anchor's record ends.
        let n = only(starts[0]).check(id, 0, 4096, &b).unwrap() as u64;
        assert_eq!(n, starts[1]);
        let page = b.slice(starts[1] as usize..);
        let n = only(starts[1]).check(id, starts[1], 4096, &page).unwrap() as u64;
        assert_eq!(n, starts[2] - starts[1]);
        // The anchor's own record is still checked.
        assert!(matches!(
            only(starts[2]).check(id, 0, 4096, &b),
            Err(Error::Corrupt { offset, .. }) if offset == starts[2]
        ));
        // Without `anchor_only` the same answer is cut at the damage.
        assert_eq!(
            check(starts[0]).check(id, 0, 4096, &b).unwrap() as u64,
            starts[2]
        );
    }

    #[test]
    fn a_bad_anchor_is_refused_and_a_bad_later_record_cuts() {
        let id = WalId::new_random();
        let (v, starts) = wal_with(id, &[b"one", b"two two", b"three three three"]);
        let mut bad = v.clone();
        bad[starts[1] as usize + 10] ^= 1;
        let b = Bytes::from(bad);
        // Anchored on the damaged record: refused.
        assert!(matches!(
            check(starts[1]).check(id, 0, 4096, &b),
            Err(Error::Corrupt { offset, .. }) if offset == starts[1]
        ));
        // A damaged record before the anchor does not refuse the anchor's
        // (it is checked when read).
        assert!(check(starts[2]).check(id, 0, 4096, &b).is_ok());
        // Anchored before it (page not at 0): cut there.
        let page = b.slice(1..);
        assert_eq!(
            check(starts[0]).check(id, 1, 4096, &page).unwrap() as u64,
            starts[1] - 1
        );
    }

    #[test]
    fn short_long_and_foreign_answers_are_refused() {
        let id = WalId::new_random();
        let (v, starts) = wal_with(id, &[b"one", b"two two"]);
        let b = Bytes::from(v.clone());
        // Cut inside the anchor's record, in a short answer.
        let short = b.slice(..starts[1] as usize + 5);
        assert!(check(starts[1]).check(id, 0, 4096, &short).is_err());
        // Ends before the anchor.
        assert!(matches!(
            check(starts[1]).check(id, 0, 4096, &b.slice(..starts[1] as usize)),
            Err(Error::OffsetOutOfRange { .. })
        ));
        // The same cut in a full-length answer is a record running past it.
        assert!(check(starts[1]).check(id, 0, starts[1] + 5, &short).is_ok());
        // Longer than asked.
        assert!(check_answer(&check(starts[0]), id, 0, 10, b.clone()).is_err());
        // Another WAL's header.
        assert!(
            check(starts[0])
                .check(WalId::new_random(), 0, 4096, &b)
                .is_err()
        );
        assert!(
            HeaderCheck { limit: 1 << 20 }
                .check(WalId::new_random(), 0, 4096, &b)
                .is_err()
        );
    }

    #[test]
    fn skip_records_are_followed() {
        let id = WalId::new_random();
        let mut v = record::encode_header(id).to_vec();
        record::encode_record(&mut v, Format::Raw, b"before");
        let after_first = v.len() as u64;
        record::encode_skip(&mut v, 7);
        v.extend_from_slice(&[0xEE; 7]);
        let next = v.len() as u64;
        record::encode_record(&mut v, Format::Raw, b"after the gap");
        let b = Bytes::from(v.clone());
        assert_eq!(check(32).check(id, 0, 4096, &b).unwrap(), v.len());
        assert_eq!(check(next).check(id, 0, 4096, &b).unwrap(), v.len());
        let _ = after_first;
    }
}
