//! Messages nodes exchange (DESIGN.md §5 wire, §6).
//!
//! Transports carry [`Envelope`]s: a protocol version, a request id (so many
//! requests share one connection) and a [`Message`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::types::{RootRecord, WalId};

/// Version spoken by this build; peers with another version are refused.
/// Version 2: prepare/promise and accept with ballots (one acceptor state).
pub const PROTOCOL_VERSION: u16 = 2;

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
