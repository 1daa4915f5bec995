//! Messages nodes exchange (DESIGN.md §5 wire, §6).
//!
//! Transports carry [`Envelope`]s: a protocol version, a request id (so many
//! requests share one connection) and a [`Message`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::types::{RootRecord, WalId};
use crate::vote::{VoteRequest, VoteResponse};

/// Version spoken by this build; peers with another version are refused.
pub const PROTOCOL_VERSION: u16 = 1;

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Message {
    /// Prepare: a candidate asks for the exclusive grant.
    VoteRequest(VoteRequest),
    /// Promise (or refusal) with the voter's latest root.
    VoteResponse(VoteResponse),
    /// Accept: a root published under `term`.
    RootUpdate {
        /// Fencing term of the publisher's grant.
        term: u64,
        /// The root.
        root: RootRecord,
    },
    /// Answer to [`Message::RootUpdate`].
    RootAck {
        /// Term the voter now knows.
        term: u64,
        /// Sequence of the voter's latest root.
        sequence: u64,
        /// Whether the root was accepted.
        accepted: bool,
    },
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
