//! [`NetworkManager`]: a node's link to its peers.
//!
//! Transports (TCP, QUIC, in-process) implement it; the cluster protocol uses
//! it through `Arc<dyn NetworkManager>`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::protocol::Message;

/// Name of a node (its `server_id`).
pub type PeerId = String;

/// Prefix of the ids client links present (see [`client_id`]).
pub const CLIENT_ID_PREFIX: &str = "client~";

/// The id of a client link that authenticates with `member`'s credentials
/// (`client~<member>`).
///
/// Transports accept client links with the cluster's own credentials (the
/// TCP pre-shared key; over QUIC a member's certificate, presented with the
/// client ALPN) and hand their messages to the handler with such an id as
/// `from`. A client is never a member: handlers answer its client requests
/// and read-only queries, and refuse every consensus message from it, so a
/// client can neither vote nor accept (see [`crate::client`]).
pub fn client_id(member: &str) -> PeerId {
    format!("{CLIENT_ID_PREFIX}{member}")
}

/// Whether `id` is a client link's (see [`client_id`]).
pub fn is_client_id(id: &str) -> bool {
    id.starts_with(CLIENT_ID_PREFIX)
}

/// The member whose credentials the client link `id` uses (`None`: not a
/// client id).
pub fn client_member(id: &str) -> Option<&str> {
    id.strip_prefix(CLIENT_ID_PREFIX)
}

/// A peer and what the transport knows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer.
    pub id: PeerId,
    /// Its address (`host:port` or transport-specific).
    pub address: String,
    /// Whether it answered recently.
    pub alive: bool,
}

/// Errors at the network boundary, naming the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// No answer within the timeout.
    #[error("peer {peer} did not answer within {timeout:?}")]
    Timeout {
        /// The peer.
        peer: PeerId,
        /// The timeout.
        timeout: Duration,
    },
    /// The peer cannot be reached.
    #[error("peer {peer} unreachable: {reason}")]
    Unreachable {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The peer sent something invalid (bad frame, version, authentication).
    #[error("protocol error with {peer}: {reason}")]
    Protocol {
        /// The peer.
        peer: PeerId,
        /// What was wrong.
        reason: String,
    },
    /// The peer is not in the configured set.
    #[error("unknown peer {0}")]
    UnknownPeer(PeerId),
    /// This node cannot listen on its own address (in use, not local,
    /// unresolvable): a local problem, not a peer's.
    #[error("cannot listen on {address}: {reason}")]
    Listen {
        /// The address (`host:port`).
        address: String,
        /// Why.
        reason: String,
    },
    /// The manager was stopped.
    #[error("network manager stopped")]
    Stopped,
}

/// Answers incoming messages.
#[async_trait]
pub trait MessageHandler: Send + Sync {
    /// Handles `message` from `from` (the sender's authenticated id); the
    /// returned message is the response. `None` is answered with
    /// [`Message::Ack`] by the transport, so the requester is not left
    /// waiting. Calls run concurrently (one per request) and may be
    /// cancelled (their future dropped) when the node stops.
    async fn handle(&self, from: PeerId, message: Message) -> Option<Message>;
}

/// A node's link to its peers.
///
/// # Contract
///
/// `request` returns the peer's response or a [`NetworkError`] within about
/// `timeout`; `broadcast` sends to every peer (not self) concurrently and
/// reports each peer's result; after `stop`, calls fail with
/// [`NetworkError::Stopped`] and the handler is no longer invoked.
///
/// The transports in [`crate::transports`] also guarantee:
///
/// - requests before `start` fail with [`NetworkError::Stopped`];
/// - `stop` fails in-flight requests promptly, cancels running handler calls
///   and returns only when none is running; `start` after `stop` starts the
///   node again (same address); `start` on a running node replaces the
///   handler;
/// - a request to self or to an unconfigured id fails with
///   [`NetworkError::UnknownPeer`]; a message too large for a frame fails with
///   [`NetworkError::Protocol`] without being sent; a peer that is down gives
///   [`NetworkError::Unreachable`] (or [`NetworkError::Timeout`]).
///
/// `protobase::conformance::network` (feature `conformance`) checks all of
/// this for any implementation.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait NetworkManager: Send + Sync + fmt::Debug {
    /// This node's id.
    fn local_id(&self) -> PeerId;
    /// Starts listening, dispatching incoming messages to `handler`.
    async fn start(&self, handler: Arc<dyn MessageHandler>) -> Result<(), NetworkError>;
    /// Sends `message` to `peer` and waits for its response.
    async fn request(
        &self,
        peer: &PeerId,
        message: Message,
        timeout: Duration,
    ) -> Result<Message, NetworkError>;
    /// Sends `message` to every peer, returning each peer's outcome.
    async fn broadcast(
        &self,
        message: Message,
        timeout: Duration,
    ) -> Vec<(PeerId, Result<Message, NetworkError>)>;
    /// The configured peers (self excluded) and their liveness.
    fn peers(&self) -> Vec<PeerInfo>;
    /// Stops listening and closes connections.
    async fn stop(&self) -> Result<(), NetworkError>;
}
