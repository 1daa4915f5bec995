//! Messages nodes exchange (DESIGN.md §5 wire, §6).
//!
//! Transports carry [`Envelope`]s: a protocol version, a request id (so many
//! requests share one connection) and a [`Message`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::types::{AtomPointer, Format, RootRecord, WalId};

/// Version spoken by this build; peers with another version are refused.
/// Version 2: prepare/promise and accept with ballots (one acceptor state).
/// Version 3: client requests (`Client*` messages, see [`crate::client`]).
pub const PROTOCOL_VERSION: u16 = 3;

/// A root an acceptor accepted, with the ballot (grant term) it accepted it
/// under. A holder's write-back of an older root keeps the root's own term
/// and uses its ballot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedRoot {
    /// Ballot of the accept.
    pub ballot: u64,
    /// The root.
    pub root: RootRecord,
}

/// An acceptor's answer to [`Message::Prepare`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promise {
    /// Whether the term is promised to the sender (with a lease).
    pub granted: bool,
    /// Highest term the acceptor has promised.
    pub promised: u64,
    /// What the acceptor has accepted.
    pub accepted: Option<AcceptedRoot>,
    /// Lease granted, in milliseconds (0 when refused).
    pub lease_ms: u64,
}

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Message {
    /// Prepare: the sender (its authenticated id is the candidate) asks for
    /// a promise of `term` and a lease of `lease_ms` (capped by the voter).
    Prepare {
        /// Term (ballot) asked for.
        term: u64,
        /// Lease length asked for.
        lease_ms: u64,
    },
    /// Answer to [`Message::Prepare`].
    Promise(Promise),
    /// Accept: the holder of `term` asks to store `root` under that ballot.
    Accept {
        /// Ballot (the holder's grant term).
        term: u64,
        /// The root.
        root: RootRecord,
    },
    /// Answer to [`Message::Accept`].
    Accepted {
        /// Ballot the answer is about (the accept's term).
        term: u64,
        /// Whether the root is now stored durably under that ballot.
        accepted: bool,
        /// Highest term the acceptor has promised.
        promised: u64,
    },
    /// Asks what an acceptor has accepted (linearizable root reads).
    QueryAccepted,
    /// Answer to [`Message::QueryAccepted`].
    AcceptedValue(Option<AcceptedRoot>),
    /// Ask for bytes of a WAL.
    PageRequest {
        /// The WAL.
        wal: WalId,
        /// First byte.
        offset: u64,
        /// Bytes wanted.
        len: u64,
    },
    /// Bytes of a WAL, or `None` when this peer does not have them.
    PageResponse {
        /// The WAL.
        wal: WalId,
        /// First byte.
        offset: u64,
        /// The bytes.
        #[serde(default, deserialize_with = "crate::wire::shared::option_bytes")]
        data: Option<Bytes>,
    },
    /// Liveness and root progress.
    Heartbeat {
        /// Sender.
        node: String,
        /// Sequence of its latest root.
        root_sequence: u64,
        /// Highest term it knows.
        term: u64,
    },
    /// The holder gives its grant back.
    Release {
        /// Term of the released grant.
        term: u64,
        /// Releasing node.
        holder: String,
    },
    /// Empty acknowledgement: what a transport sends back when the handler
    /// returns no response, so the requester learns at once that the request
    /// was handled.
    Ack,
    /// A request could not be served.
    Error {
        /// Why.
        message: String,
    },
    /// An operator tool asks a node for its state (`protobase status`).
    StatusRequest,
    /// Answer to [`Message::StatusRequest`].
    Status(NodeStatus),
    /// A client pushes a record through the node (served by
    /// [`ClientHandler`](crate::client::ClientHandler)); with `sync`, the
    /// answer waits until the record is durable.
    ClientPush {
        /// Record format.
        format: Format,
        /// Payload.
        #[serde(deserialize_with = "crate::wire::shared::bytes")]
        data: Bytes,
        /// Make the record durable before answering.
        sync: bool,
    },
    /// Answer to [`Message::ClientPush`].
    ClientPushed {
        /// Where the record is.
        pointer: AtomPointer,
    },
    /// A client reads a record through the node (its own WALs, then its
    /// peers or the object store, as an embedded read).
    ClientGet {
        /// The record.
        pointer: AtomPointer,
    },
    /// Answer to [`Message::ClientGet`]: the record, checked.
    ClientRecord {
        /// Its format.
        format: Format,
        /// Its payload.
        #[serde(deserialize_with = "crate::wire::shared::bytes")]
        data: Bytes,
    },
    /// A client asks for the current root (a linearizable read in a cluster).
    ClientReadRoot,
    /// Answer to [`Message::ClientReadRoot`].
    ClientRoot(Option<RootRecord>),
    /// A client publishes a root through the node's grant, optionally only
    /// if the current root is `expected` (compare-and-swap).
    ClientPublish {
        /// The new root's atom (it must be readable).
        pointer: AtomPointer,
        /// What the current root must be; `None`: whatever it is.
        expected: Option<ExpectedRoot>,
    },
    /// Answer to [`Message::ClientPublish`]: the durable new root.
    ClientPublished(RootRecord),
    /// Answer to a conditional [`Message::ClientPublish`] whose expectation
    /// failed: nothing was published; this is the current root.
    ClientConflict {
        /// The current root.
        current: Option<RootRecord>,
    },
    /// A client asks which WALs the node holds itself.
    ClientListWals,
    /// A member about to reclaim `wals` (remove them for good, see
    /// [`crate::reclaim`]) asks which of them this node still needs.
    ReclaimQuery {
        /// The WALs it would remove.
        wals: Vec<WalId>,
    },
    /// Answer to [`Message::ReclaimQuery`]: the WALs this node needs, each
    /// with why.
    ReclaimKeep(Vec<(WalId, String)>),
    /// Answer to [`Message::ClientListWals`]: `(wal, length)` pairs.
    ClientWals(Vec<(WalId, u64)>),
    /// A member hands a blind root write to the node holding the grant of
    /// `term` (see [`crate::root_forward`]): the atom is in the sender's
    /// WAL, durable before this is sent; the root names the sender as its
    /// writer.
    ForwardRoot {
        /// The new root's atom.
        pointer: AtomPointer,
        /// The grant the holder must publish under (and hold right now).
        term: u64,
        /// The sending process's incarnation (random per start).
        nonce: u64,
        /// The sending process's number for this forward (never reused by
        /// one incarnation): a duplicate is refused.
        id: u64,
    },
    /// Answer to [`Message::ForwardRoot`]: the durable new root.
    ForwardedRoot(RootRecord),
    /// Answer to [`Message::ForwardRoot`]: nothing was published (the
    /// receiver does not hold the term, or the forward is a duplicate).
    ForwardRefused {
        /// Why.
        reason: String,
    },
}

/// What a conditional publish ([`Message::ClientPublish`]) expects the
/// current root to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedRoot {
    /// The space has no root yet.
    Absent,
    /// The current root names `pointer` (and, when given, has `sequence`).
    Root {
        /// The current root's atom.
        pointer: AtomPointer,
        /// The current root's sequence, if the caller knows it.
        sequence: Option<u64>,
    },
}

impl ExpectedRoot {
    /// Whether `current` is what this expects.
    pub fn matches(&self, current: Option<&RootRecord>) -> bool {
        match (self, current) {
            (ExpectedRoot::Absent, None) => true,
            (ExpectedRoot::Root { pointer, sequence }, Some(r)) => {
                r.pointer == *pointer && sequence.is_none_or(|s| s == r.sequence)
            }
            _ => false,
        }
    }
}

impl Message {
    /// Bytes of payload the message carries (a page, a record): what its
    /// encoding needs beyond a few hundred bytes of fields.
    pub fn payload_len(&self) -> usize {
        match self {
            Message::PageResponse {
                data: Some(data), ..
            }
            | Message::ClientPush { data, .. }
            | Message::ClientRecord { data, .. } => data.len(),
            _ => 0,
        }
    }

    /// Whether this is a client request (`Client*` sent by a client).
    pub fn is_client_request(&self) -> bool {
        matches!(
            self,
            Message::ClientPush { .. }
                | Message::ClientGet { .. }
                | Message::ClientReadRoot
                | Message::ClientPublish { .. }
                | Message::ClientListWals
        )
    }
}

/// What a node reports of itself to operator tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's id.
    pub node: String,
    /// Highest term the node has promised (or published under).
    pub term: u64,
    /// The newest root the node holds.
    pub root: Option<RootRecord>,
    /// The answering build's crate version.
    pub version: String,
}

/// A message with its framing metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Protocol version of the sender.
    pub version: u16,
    /// Correlates a response with its request.
    pub request_id: u64,
    /// The payload.
    pub message: Message,
}
