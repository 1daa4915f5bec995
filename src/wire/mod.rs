//! Wire format: length-prefixed frames carrying an [`Envelope`] (DESIGN.md §5).
//!
//! ```text
//! u32 LE body length | u16 LE protocol version | body
//! ```
//!
//! The body is the MessagePack encoding (`rmp-serde`, structs as maps with
//! field names, so fields can be added with `#[serde(default)]` without a new
//! protocol version) of [`Envelope { version, request_id, message }`](Envelope).
//! The body length excludes the 6-byte header.
//!
//! # Limits and errors
//!
//! Every reader has a hard maximum body size (`max_frame_bytes`, default
//! [`DEFAULT_MAX_FRAME_BYTES`] = 32 MiB). The length prefix and the version are
//! checked as soon as the 6 header bytes are in, *before* any buffer for the
//! body is allocated, so a peer cannot make a reader allocate more than the
//! limit. Writers check the same limit before sending. Everything that can be
//! wrong with a frame is a typed [`WireError`]; decoding never panics, whatever
//! the bytes (a property test feeds it random input).
//!
//! ```
//! use protobase::protocol::{Envelope, Message, PROTOCOL_VERSION};
//! use protobase::wire::{decode_frame, encode_frame, DEFAULT_MAX_FRAME_BYTES};
//!
//! let envelope = Envelope { version: PROTOCOL_VERSION, request_id: 7, message: Message::Ack };
//! let frame = encode_frame(&envelope, DEFAULT_MAX_FRAME_BYTES)?;
//! let (decoded, used) = decode_frame(&frame, DEFAULT_MAX_FRAME_BYTES)?;
//! assert_eq!((decoded, used), (envelope, frame.len()));
//! # Ok::<_, protobase::wire::WireError>(())
//! ```

use std::io;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::{Envelope, PROTOCOL_VERSION};

mod extent;
pub(crate) mod shared;

/// Default largest frame body accepted or sent: 32 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 32 * 1024 * 1024;

/// Bytes of the frame header: `u32` body length and `u16` version.
pub const FRAME_HEADER_LEN: usize = 6;

/// Room reserved for an envelope's fields beside its payload when encoding.
const ENVELOPE_FIELDS: usize = 512;

/// Deepest MessagePack nesting a frame body may have. An [`Envelope`]
/// nests about five levels; the decoder's default (1024) lets a peer make it
/// recurse (through skipped unknown fields) deep enough to overflow a
/// 2 MiB task stack in debug builds.
const MAX_NESTING: usize = 32;

/// What was wrong with a frame, or with reading or writing one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The body length exceeds the limit (checked before allocating).
    #[error("frame body of {length} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Body length announced by the prefix (or produced by the encoder).
        length: u64,
        /// Largest body accepted.
        limit: usize,
    },
    /// The frame (or the envelope inside it) carries another protocol version.
    #[error("unsupported protocol version {found} (this build speaks {expected})")]
    Version {
        /// Version found.
        found: u16,
        /// Version this build speaks ([`PROTOCOL_VERSION`]).
        expected: u16,
    },
    /// The input ends inside a frame.
    #[error("truncated frame: needs {needed} bytes, only {available} available")]
    Truncated {
        /// Bytes the frame needs (header included).
        needed: u64,
        /// Bytes that were available.
        available: u64,
    },
    /// The body is not a valid MessagePack [`Envelope`].
    #[error("undecodable frame body: {reason}")]
    Decode {
        /// The decoder's complaint.
        reason: String,
    },
    /// The envelope does not fill the body: bytes are left over.
    #[error("frame body has {extra} trailing bytes after the envelope")]
    TrailingBytes {
        /// Bytes left after the envelope.
        extra: u64,
    },
    /// The envelope could not be encoded.
    #[error("cannot encode envelope: {reason}")]
    Encode {
        /// The encoder's complaint.
        reason: String,
    },
    /// The stream ended cleanly between two frames.
    #[error("connection closed")]
    Closed,
    /// Reading or writing the stream failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl WireError {
    /// Whether the peer sent something invalid (as opposed to the stream
    /// closing or failing, or the local side producing an oversized frame).
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            WireError::TooLarge { .. }
                | WireError::Version { .. }
                | WireError::Truncated { .. }
                | WireError::Decode { .. }
                | WireError::TrailingBytes { .. }
        )
    }
}

/// Parses a frame header, checking the version and the body length against
/// `max_frame_bytes`; returns the body length.
pub fn decode_header(
    header: &[u8; FRAME_HEADER_LEN],
    max_frame_bytes: usize,
) -> Result<usize, WireError> {
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let version = u16::from_le_bytes([header[4], header[5]]);
    // usize is at least 32 bits on every target tokio supports.
    let length_usize = usize::try_from(length).unwrap_or(usize::MAX);
    if length_usize > max_frame_bytes {
        return Err(WireError::TooLarge {
            length: u64::from(length),
            limit: max_frame_bytes,
        });
    }
    if version != PROTOCOL_VERSION {
        return Err(WireError::Version {
            found: version,
            expected: PROTOCOL_VERSION,
        });
    }
    Ok(length_usize)
}

/// Encodes `envelope` as one frame (header and body), refusing a body larger
/// than `max_frame_bytes`.
///
/// The header's version is `envelope.version`, so a peer speaking another
/// version is refused by the reader's header check.
pub fn encode_frame(envelope: &Envelope, max_frame_bytes: usize) -> Result<Vec<u8>, WireError> {
    // Room for the fields and the payload: a page is written once, not
    // copied through a dozen doublings.
    let mut frame = Vec::with_capacity(
        FRAME_HEADER_LEN
            .saturating_add(ENVELOPE_FIELDS)
            .saturating_add(envelope.message.payload_len()),
    );
    frame.resize(FRAME_HEADER_LEN, 0);
    rmp_serde::encode::write_named(&mut frame, envelope).map_err(|e| WireError::Encode {
        reason: e.to_string(),
    })?;
    let body_len = frame.len() - FRAME_HEADER_LEN;
    let length = match u32::try_from(body_len) {
        Ok(length) if body_len <= max_frame_bytes => length,
        _ => {
            return Err(WireError::TooLarge {
                length: body_len as u64,
                limit: max_frame_bytes,
            });
        }
    };
    frame[..4].copy_from_slice(&length.to_le_bytes());
    frame[4..FRAME_HEADER_LEN].copy_from_slice(&envelope.version.to_le_bytes());
    Ok(frame)
}

/// Decodes a frame body (the bytes after the header) into an [`Envelope`],
/// checking that it speaks [`PROTOCOL_VERSION`] and fills the body exactly.
/// Byte fields are copied out of `body`; [`decode_body_shared`] shares them.
pub fn decode_body(body: &[u8]) -> Result<Envelope, WireError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(body);
    de.set_max_depth(MAX_NESTING);
    let envelope = Envelope::deserialize(&mut de).map_err(|e| WireError::Decode {
        reason: e.to_string(),
    })?;
    // The borrowing reader reports no position: where the value ends is
    // measured on its markers.
    let used = extent::value_len(body).ok_or_else(|| WireError::Decode {
        reason: "the body is not one whole MessagePack value".into(),
    })?;
    let extra = body.len().saturating_sub(used) as u64;
    if extra > 0 {
        return Err(WireError::TrailingBytes { extra });
    }
    if envelope.version != PROTOCOL_VERSION {
        return Err(WireError::Version {
            found: envelope.version,
            expected: PROTOCOL_VERSION,
        });
    }
    Ok(envelope)
}

/// [`decode_body`], with a page (or any byte field that is most of the body)
/// sharing `body`'s buffer instead of being copied out of it.
pub fn decode_body_shared(body: &bytes::Bytes) -> Result<Envelope, WireError> {
    shared::with_source(body, || decode_body(body))
}

/// Decodes the frame at the start of `input`, returning the envelope and the
/// number of bytes the frame used (header included).
pub fn decode_frame(input: &[u8], max_frame_bytes: usize) -> Result<(Envelope, usize), WireError> {
    let Some(header) = input.first_chunk::<FRAME_HEADER_LEN>() else {
        return Err(WireError::Truncated {
            needed: FRAME_HEADER_LEN as u64,
            available: input.len() as u64,
        });
    };
    let length = decode_header(header, max_frame_bytes)?;
    let total = FRAME_HEADER_LEN + length;
    let Some(body) = input.get(FRAME_HEADER_LEN..total) else {
        return Err(WireError::Truncated {
            needed: total as u64,
            available: input.len() as u64,
        });
    };
    Ok((decode_body(body)?, total))
}

/// Reads one frame from `reader`.
///
/// Returns [`WireError::Closed`] when the stream ends cleanly before the
/// first header byte, [`WireError::Truncated`] when it ends inside a frame.
/// The body buffer is allocated only after the header passed
/// [`decode_header`]. Not cancel safe: dropping the future mid-frame loses
/// the bytes read so far.
pub async fn read_frame<R>(reader: &mut R, max_frame_bytes: usize) -> Result<Envelope, WireError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut header = [0u8; FRAME_HEADER_LEN];
    let mut filled = 0;
    while filled < FRAME_HEADER_LEN {
        let n = reader.read(&mut header[filled..]).await?;
        if n == 0 {
            return Err(if filled == 0 {
                WireError::Closed
            } else {
                WireError::Truncated {
                    needed: FRAME_HEADER_LEN as u64,
                    available: filled as u64,
                }
            });
        }
        filled += n;
    }
    let length = decode_header(&header, max_frame_bytes)?;
    // Filled by the reads without zeroing it first.
    let mut body = bytes::BytesMut::with_capacity(length);
    while body.len() < length {
        let want = (length - body.len()) as u64;
        let n = (&mut *reader).take(want).read_buf(&mut body).await?;
        if n == 0 {
            return Err(WireError::Truncated {
                needed: (FRAME_HEADER_LEN + length) as u64,
                available: (FRAME_HEADER_LEN + body.len()) as u64,
            });
        }
    }
    decode_body_shared(&body.freeze())
}

/// Encodes `envelope` and writes it to `writer` as one frame (not flushed).
///
/// An oversized envelope is refused with [`WireError::TooLarge`] before any
/// byte is written.
pub async fn write_frame<W>(
    writer: &mut W,
    envelope: &Envelope,
    max_frame_bytes: usize,
) -> Result<(), WireError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let frame = encode_frame(envelope, max_frame_bytes)?;
    writer.write_all(&frame).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::protocol::Message;
    use crate::protocol::{AcceptedRoot, Promise};
    use crate::types::{AtomPointer, RootRecord, WalId};

    const MAX: usize = 1024 * 1024;

    fn envelope(request_id: u64, message: Message) -> Envelope {
        Envelope {
            version: PROTOCOL_VERSION,
            request_id,
            message,
        }
    }

    fn root() -> RootRecord {
        RootRecord {
            pointer: AtomPointer::new(WalId::new_random(), 4242),
            sequence: 9,
            term: 3,
            writer: Some("n2".into()),
            checksum: Some(0xdead_beef),
        }
    }

    fn every_message() -> Vec<Message> {
        let wal = WalId::new_random();
        let mut all = crate::fuzzing::sample_messages(wal, &root());
        all.extend([
            Message::Promise(Promise {
                granted: false,
                promised: 6,
                accepted: None,
                lease_ms: 0,
            }),
            Message::AcceptedValue(Some(AcceptedRoot {
                ballot: u64::MAX,
                root: root(),
            })),
            Message::PageResponse {
                wal,
                offset: 7,
                data: Some(Bytes::from(vec![0xab; 70_000])),
            },
        ]);
        all
    }

    #[test]
    fn every_message_round_trips() {
        for (i, message) in every_message().into_iter().enumerate() {
            let env = envelope(i as u64 + u64::MAX / 2, message);
            let frame = encode_frame(&env, MAX).unwrap();
            let (decoded, used) = decode_frame(&frame, MAX).unwrap();
            assert_eq!(decoded, env);
            assert_eq!(used, frame.len());
        }
    }

    #[test]
    fn a_page_shares_the_frame_body_small_fields_are_copied() {
        let body = |message| {
            let frame = encode_frame(&envelope(3, message), MAX).unwrap();
            Bytes::copy_from_slice(&frame[FRAME_HEADER_LEN..])
        };
        let inside = |body: &Bytes, data: &Bytes| body.as_ptr_range().contains(&data.as_ptr());
        let page = Bytes::from(vec![0xab; 70_000]);
        let wal = WalId::new_random();
        let big = body(Message::PageResponse {
            wal,
            offset: 7,
            data: Some(page.clone()),
        });
        let Message::PageResponse { data: Some(d), .. } = decode_body_shared(&big).unwrap().message
        else {
            panic!("not a page");
        };
        assert_eq!(d, page);
        assert!(inside(&big, &d), "the page was copied");
        // The same body decoded from a plain slice is copied.
        let Message::PageResponse { data: Some(d), .. } = decode_body(&big).unwrap().message else {
            panic!("not a page");
        };
        assert!(!inside(&big, &d));
        // A field that is a small part of its body is copied: it must not
        // pin the frame.
        let small = body(Message::ClientRecord {
            format: crate::types::Format::Raw,
            data: Bytes::from_static(b"tiny"),
        });
        let Message::ClientRecord { data, .. } = decode_body_shared(&small).unwrap().message else {
            panic!("not a record");
        };
        assert_eq!(&data[..], b"tiny");
        assert!(!inside(&small, &data));
        // Shared decoding checks bodies like the other: padding is refused.
        let mut padded = big.to_vec();
        padded.extend_from_slice(&[0xc0, 0xc0]);
        assert!(matches!(
            decode_body_shared(&Bytes::from(padded)),
            Err(WireError::TrailingBytes { extra: 2 })
        ));
    }

    #[test]
    fn header_is_length_then_version() {
        let frame = encode_frame(&envelope(1, Message::Ack), MAX).unwrap();
        let body_len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(body_len, frame.len() - FRAME_HEADER_LEN);
        assert_eq!(
            u16::from_le_bytes(frame[4..6].try_into().unwrap()),
            PROTOCOL_VERSION
        );
    }

    #[test]
    fn decode_frame_reports_bytes_used_with_trailing_input() {
        let mut input = encode_frame(&envelope(1, Message::Ack), MAX).unwrap();
        let len = input.len();
        input.extend_from_slice(&encode_frame(&envelope(2, Message::Ack), MAX).unwrap());
        let (first, used) = decode_frame(&input, MAX).unwrap();
        assert_eq!((first.request_id, used), (1, len));
        let (second, _) = decode_frame(&input[used..], MAX).unwrap();
        assert_eq!(second.request_id, 2);
    }

    #[test]
    fn oversized_prefix_is_refused_before_the_body() {
        // Only the header: the limit is checked without needing the body.
        let mut header = [0u8; FRAME_HEADER_LEN];
        header[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        header[4..].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        match decode_frame(&header, MAX) {
            Err(WireError::TooLarge { length, limit }) => {
                assert_eq!((length, limit), (u64::from(u32::MAX), MAX));
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let err = decode_header(&header, MAX).unwrap_err();
        assert!(err.is_malformed());
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
    }

    #[test]
    fn encoder_refuses_oversized_bodies() {
        let big = Message::PageResponse {
            wal: WalId::new_random(),
            offset: 0,
            data: Some(Bytes::from(vec![1u8; 2048])),
        };
        match encode_frame(&envelope(1, big.clone()), 1024) {
            Err(WireError::TooLarge { length, limit }) => {
                assert!(length > 2048);
                assert_eq!(limit, 1024);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(encode_frame(&envelope(1, big), 4096).is_ok());
    }

    #[test]
    fn wrong_version_in_header_is_refused() {
        let mut frame = encode_frame(&envelope(1, Message::Ack), MAX).unwrap();
        frame[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
        match decode_frame(&frame, MAX) {
            Err(WireError::Version { found, expected }) => {
                assert_eq!((found, expected), (PROTOCOL_VERSION + 1, PROTOCOL_VERSION));
            }
            other => panic!("expected Version, got {other:?}"),
        }
    }

    #[test]
    fn wrong_version_in_envelope_is_refused() {
        let mut env = envelope(1, Message::Ack);
        env.version = PROTOCOL_VERSION + 1;
        let mut frame = encode_frame(&env, MAX).unwrap();
        // A header that claims the right version does not smuggle it through.
        frame[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        assert!(matches!(
            decode_frame(&frame, MAX),
            Err(WireError::Version { found, .. }) if found == PROTOCOL_VERSION + 1
        ));
    }

    #[test]
    fn truncated_frames_are_refused() {
        let frame = encode_frame(&envelope(3, Message::Ack), MAX).unwrap();
        for cut in 0..frame.len() {
            match decode_frame(&frame[..cut], MAX) {
                Err(WireError::Truncated { needed, available }) => {
                    assert_eq!(available, cut as u64);
                    assert!(needed > available);
                }
                other => panic!("cut at {cut}: expected Truncated, got {other:?}"),
            }
        }
    }

    #[test]
    fn undecodable_and_padded_bodies_are_refused() {
        let garbage = [0xc1u8, 0xff, 0x00, 0x13]; // 0xc1 is never used by MessagePack
        let mut frame = (garbage.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        frame.extend_from_slice(&garbage);
        assert!(matches!(
            decode_frame(&frame, MAX),
            Err(WireError::Decode { .. })
        ));

        // A valid envelope followed by padding inside the body.
        let mut body = rmp_serde::to_vec_named(&envelope(1, Message::Ack)).unwrap();
        body.extend_from_slice(&[0, 0, 0]);
        let mut frame = (body.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        frame.extend_from_slice(&body);
        assert!(matches!(
            decode_frame(&frame, MAX),
            Err(WireError::TrailingBytes { extra: 3 })
        ));
    }

    /// Found by the `wire` fuzz target: an unknown field holding thousands
    /// of nested arrays made the decoder recurse until the stack overflowed
    /// (debug build, 2 MiB thread).
    #[test]
    fn deep_nesting_is_refused_not_recursed_into() {
        let body = rmp_serde::to_vec_named(&envelope(1, Message::Ack)).unwrap();
        assert_eq!(body[0], 0x83, "a map of three fields");
        for depth in [MAX_NESTING / 2, 100_000] {
            let mut deep = body.clone();
            deep[0] = 0x84;
            deep.extend_from_slice(&[0xa1, b'x']);
            deep.extend(std::iter::repeat_n(0x91u8, depth));
            deep.push(0xc0);
            let result = decode_body(&deep);
            if depth < MAX_NESTING - 4 {
                assert_eq!(result.unwrap(), envelope(1, Message::Ack));
            } else {
                assert!(
                    matches!(result, Err(WireError::Decode { .. })),
                    "{result:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn async_read_write_round_trip() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let messages = every_message();
        let expected = messages.clone();
        let writer = tokio::spawn(async move {
            for (i, message) in messages.into_iter().enumerate() {
                write_frame(&mut a, &envelope(i as u64, message), MAX)
                    .await
                    .unwrap();
            }
            a.shutdown().await.unwrap();
        });
        for (i, message) in expected.into_iter().enumerate() {
            let env = read_frame(&mut b, MAX).await.unwrap();
            assert_eq!(env, envelope(i as u64, message));
        }
        assert!(matches!(
            read_frame(&mut b, MAX).await,
            Err(WireError::Closed)
        ));
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn async_reader_classifies_bad_input() {
        // Oversized prefix: refused from the header alone.
        let mut header = u32::MAX.to_le_bytes().to_vec();
        header.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        assert!(matches!(
            read_frame(&mut &header[..], MAX).await,
            Err(WireError::TooLarge { .. })
        ));
        // Stream ends inside the header, then inside the body.
        assert!(matches!(
            read_frame(&mut &header[..3], MAX).await,
            Err(WireError::Truncated {
                needed: 6,
                available: 3
            })
        ));
        let frame = encode_frame(&envelope(1, Message::Ack), MAX).unwrap();
        assert!(matches!(
            read_frame(&mut &frame[..frame.len() - 1], MAX).await,
            Err(WireError::Truncated { .. })
        ));
        // Wrong version.
        let mut bad = frame.clone();
        bad[4] ^= 0xff;
        assert!(matches!(
            read_frame(&mut &bad[..], MAX).await,
            Err(WireError::Version { .. })
        ));
    }

    #[tokio::test]
    async fn async_writer_refuses_oversized_without_writing() {
        let mut out = Vec::new();
        let env = envelope(
            1,
            Message::PageResponse {
                wal: WalId::new_random(),
                offset: 0,
                data: Some(Bytes::from(vec![0u8; 100])),
            },
        );
        assert!(matches!(
            write_frame(&mut out, &env, 50).await,
            Err(WireError::TooLarge { .. })
        ));
        assert!(out.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_frame(&bytes, MAX);
            let _ = decode_body(&bytes);
        }

        #[test]
        fn random_bodies_behind_a_valid_header_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut frame = (body.len() as u32).to_le_bytes().to_vec();
            frame.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
            frame.extend_from_slice(&body);
            let _ = decode_frame(&frame, MAX);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn mutated_frames_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            which in 0usize..12,
        ) {
            let message = every_message().swap_remove(which);
            let mut frame = encode_frame(&envelope(1, message), MAX).unwrap();
            for (index, value) in flips {
                let i = index.index(frame.len());
                frame[i] = value;
            }
            let _ = decode_frame(&frame, MAX);
        }

        #[test]
        fn envelopes_round_trip(request_id in any::<u64>(), data in proptest::collection::vec(any::<u8>(), 0..2048), offset in any::<u64>()) {
            let env = envelope(request_id, Message::PageResponse {
                wal: WalId::new_random(),
                offset,
                data: Some(Bytes::from(data)),
            });
            let frame = encode_frame(&env, MAX).unwrap();
            let (decoded, used) = decode_frame(&frame, MAX).unwrap();
            prop_assert_eq!(decoded, env);
            prop_assert_eq!(used, frame.len());
        }
    }
}
