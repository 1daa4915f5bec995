//! The byte format of a node's acceptor state file (`cluster_acceptor`): an
//! append-only log, so that recording a promise or an accepted root costs one
//! append and one `fdatasync` instead of a whole-file replacement (temporary
//! file, fsync, rename, directory fsync).
//!
//! The format is [`crate::record_log`]'s with the magic `PBACLOG1`; each
//! payload is the JSON of an [`AcceptorState`]; the state is the last
//! valid record. A crash in the middle of an append leaves a torn last
//! record (cut short, or a length reaching the end of the file, or zeros
//! where the kernel had extended the file but not written the data): that
//! record was never acknowledged, so it is ignored. An invalid record with
//! more bytes after it is not a torn append but damage, and decoding
//! refuses the file rather than fall back to an older state (which could
//! forget a promise). Files written before the log existed (a JSON object
//! with a CRC) do not start with the magic and are decoded by the caller.

use crate::cluster::acceptor_store::AcceptorState;
use crate::record_log::{self, LogKind};
#[cfg(test)]
use crate::record_log::{MAX_RECORD_PAYLOAD, RECORD_HEADER};

/// First bytes of an acceptor log.
pub(crate) const ACCEPTOR_LOG_MAGIC: &[u8; 8] = b"PBACLOG1";

const KIND: LogKind = LogKind {
    magic: ACCEPTOR_LOG_MAGIC,
    what: "acceptor state",
    torn_span: 0,
};

/// One record holding `state`, ready to append.
pub(crate) fn encode_record(state: &AcceptorState) -> Result<Vec<u8>, String> {
    record_log::encode_record(KIND, state)
}

/// A whole log holding only `state`.
pub(crate) fn encode_log(state: &AcceptorState) -> Result<Vec<u8>, String> {
    Ok(log_of_record(&encode_record(state)?))
}

/// A whole log holding only `record` (from [`encode_record`]).
pub(crate) fn log_of_record(record: &[u8]) -> Vec<u8> {
    record_log::log_of_record(KIND, record)
}

/// What a log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodedLog {
    /// The state of the last valid record.
    pub(crate) state: AcceptorState,
    /// Valid records read.
    pub(crate) records: usize,
    /// Bytes of a torn last record that were ignored (0: none).
    pub(crate) torn_bytes: usize,
}

/// Decodes a log (`bytes` starting with [`ACCEPTOR_LOG_MAGIC`]): the state
/// of its last valid record, a torn last record ignored. An error says what
/// is damaged and where.
pub(crate) fn decode_log(bytes: &[u8]) -> Result<DecodedLog, String> {
    let d = record_log::decode_log(KIND, bytes, |_: &AcceptorState| {})?;
    Ok(DecodedLog {
        state: d.last,
        records: d.records,
        torn_bytes: d.torn_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::AcceptedRoot;
    use crate::types::{AtomPointer, RootRecord, WalId};

    fn state(ceiling: u64) -> AcceptorState {
        AcceptorState {
            ceiling,
            accepted: Some(AcceptedRoot {
                ballot: ceiling / 2,
                root: RootRecord::new(
                    AtomPointer::new(WalId(uuid::Uuid::from_u128(u128::from(ceiling))), 40),
                    ceiling,
                    ceiling / 2,
                    Some("n1".into()),
                ),
            }),
        }
    }

    fn log_of(states: &[AcceptorState]) -> Vec<u8> {
        let mut out = encode_log(&states[0]).unwrap();
        for s in &states[1..] {
            out.extend_from_slice(&encode_record(s).unwrap());
        }
        out
    }

    #[test]
    fn the_last_record_is_the_state() {
        let states: Vec<_> = (1..=5).map(state).collect();
        let d = decode_log(&log_of(&states)).unwrap();
        assert_eq!(
            (d.state, d.records, d.torn_bytes),
            (states[4].clone(), 5, 0)
        );
    }

    #[test]
    fn an_append_cut_anywhere_leaves_the_state_before_it() {
        let states: Vec<_> = (1..=3).map(state).collect();
        let whole = log_of(&states);
        let before = log_of(&states[..2]).len();
        for cut in before..whole.len() {
            let d = decode_log(&whole[..cut]).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(d.state, states[1], "cut at {cut}");
            assert_eq!(d.torn_bytes, cut - before);
        }
    }

    #[test]
    fn a_last_record_of_zeros_or_with_a_bad_checksum_is_torn() {
        let states: Vec<_> = (1..=3).map(state).collect();
        let mut zeros = log_of(&states[..2]);
        zeros.extend_from_slice(&[0u8; 300]);
        assert_eq!(decode_log(&zeros).unwrap().state, states[1]);
        let mut flipped = log_of(&states);
        let last = flipped.len() - 3;
        flipped[last] ^= 0x20;
        let d = decode_log(&flipped).unwrap();
        assert_eq!(d.state, states[1]);
        assert!(d.torn_bytes > 0);
    }

    #[test]
    fn damage_before_the_last_record_is_refused_not_skipped() {
        let states: Vec<_> = (1..=3).map(state).collect();
        let whole = log_of(&states);
        let second = log_of(&states[..1]).len();
        // A flipped payload byte of the second record.
        let mut bad = whole.clone();
        bad[second + RECORD_HEADER + 2] ^= 1;
        let e = decode_log(&bad).unwrap_err();
        assert!(e.contains(&format!("offset {second}")), "{e}");
        // A length of zero or beyond the limit in the middle.
        for len in [0u32, u32::MAX, (MAX_RECORD_PAYLOAD + 1) as u32] {
            let mut bad = whole.clone();
            bad[second..second + 4].copy_from_slice(&len.to_le_bytes());
            assert!(decode_log(&bad).is_err(), "length {len}");
        }
    }

    proptest::proptest! {
        /// Whatever the bytes, decoding returns a state or an error.
        #[test]
        fn any_bytes_decode_without_panicking(tail in proptest::collection::vec(0u8..=255, 0..600)) {
            let mut bytes = ACCEPTOR_LOG_MAGIC.to_vec();
            bytes.extend_from_slice(&tail);
            let _ = decode_log(&bytes);
            let mut valid = log_of(&[state(1)]);
            valid.extend_from_slice(&tail);
            let d = decode_log(&valid);
            // A valid first record is never lost to what follows it.
            if let Ok(d) = d {
                proptest::prop_assert!(d.records >= 1);
            }
        }
    }

    #[test]
    fn a_log_without_magic_or_without_a_record_is_refused() {
        assert!(decode_log(b"").is_err());
        assert!(decode_log(b"{\"state\":{}}").is_err());
        assert!(decode_log(ACCEPTOR_LOG_MAGIC).is_err());
        let first = encode_log(&state(1)).unwrap();
        assert!(decode_log(&first[..first.len() - 1]).is_err());
    }
}
