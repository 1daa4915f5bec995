//! The pre-shared-key handshake of the TCP transport: a mutual
//! challenge–response run on every new connection before any frame.
//!
//! ```text
//! client → server  hello:  "PBT2" | u16 LE version | client nonce (32) | u8 len | client id
//! server → client  hello:  "PBT2" | u16 LE version | server nonce (32) | u8 len | server id
//! client → server  HMAC-SHA256(key, "protobase-tcp client" | transcript)
//! server → client  HMAC-SHA256(key, "protobase-tcp server" | transcript)
//! transcript = u16 LE version | client nonce | server nonce | u8 len | client id | u8 len | server id
//! ```
//!
//! **The client proves first.** A server computes nothing with the key
//! before the client has proved it knows the key: a stranger that connects
//! learns no MAC it could use to guess the key offline (with `PBT1`, the
//! server's proof came first, an oracle for anyone who knew a member's id).
//! The server's proof is its acceptance; a server that does not accept
//! hangs up. (A client that dials an impostor still hands the impostor one
//! MAC: keys are at least [`MIN_PSK_BYTES`](super::MIN_PSK_BYTES) long, and
//! should be 32 random bytes, so that no guessing is practical.)
//!
//! Nonces are fresh random bytes from the operating system, so a proof cannot
//! be replayed on another connection; the two directions use different
//! labels, so one side's proof cannot be reflected as the other's. The client
//! checks that the server is the peer it dialled before proving anything;
//! the server accepts only the ids `known` admits. MACs are compared in
//! constant time. The messages are small and fixed in shape, so an
//! unauthenticated peer cannot make a node allocate more than a few hundred
//! bytes.

use std::io;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::network::{NetworkError, PeerId};
use crate::protocol::PROTOCOL_VERSION;

pub(super) const HANDSHAKE_MAGIC: [u8; 4] = *b"PBT2";
pub(super) const NONCE_LEN: usize = 32;
pub(super) const MAC_LEN: usize = 32;
const SERVER_LABEL: &[u8] = b"protobase-tcp server";
const CLIENT_LABEL: &[u8] = b"protobase-tcp client";

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum HandshakeError {
    #[error("I/O error during the handshake: {0}")]
    Io(#[from] io::Error),
    #[error("not a protobase TCP peer of this version (bad magic)")]
    BadMagic,
    #[error("peer speaks protocol version {0}, this node {PROTOCOL_VERSION}")]
    Version(u16),
    #[error("invalid node id in the handshake")]
    BadId,
    #[error("node {0:?} is not a configured peer")]
    UnknownPeer(String),
    #[error("expected peer {expected:?}, found {found:?}")]
    WrongPeer { expected: String, found: String },
    #[error(
        "authentication failed: the pre-shared keys of this node and the peer differ \
         (check this node's key too)"
    )]
    BadMac,
    #[error(
        "the peer refused the handshake: the pre-shared keys differ, or this node is not \
         configured there"
    )]
    Refused,
    #[error("no randomness for a nonce: {0}")]
    Random(String),
}

impl HandshakeError {
    pub(super) fn into_network_error(self, peer: &str) -> NetworkError {
        match self {
            HandshakeError::Io(e) => NetworkError::Unreachable {
                peer: peer.to_owned(),
                reason: format!("handshake failed: {e}"),
            },
            other => NetworkError::Protocol {
                peer: peer.to_owned(),
                reason: other.to_string(),
            },
        }
    }
}

pub(super) fn nonce() -> Result<[u8; NONCE_LEN], HandshakeError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| HandshakeError::Random(e.to_string()))?;
    Ok(nonce)
}

pub(super) fn hello(nonce: &[u8; NONCE_LEN], id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 2 + NONCE_LEN + 1 + id.len());
    out.extend_from_slice(&HANDSHAKE_MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.extend_from_slice(nonce);
    // Ids are validated to 1..=255 bytes.
    out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(id.as_bytes());
    out
}

pub(super) async fn read_hello<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<([u8; NONCE_LEN], String), HandshakeError> {
    // Magic and version first, so a stranger is turned away at once.
    let mut head = [0u8; 6];
    reader.read_exact(&mut head).await?;
    if head[..4] != HANDSHAKE_MAGIC {
        return Err(HandshakeError::BadMagic);
    }
    let version = u16::from_le_bytes([head[4], head[5]]);
    if version != PROTOCOL_VERSION {
        return Err(HandshakeError::Version(version));
    }
    let mut rest = [0u8; NONCE_LEN + 1];
    reader.read_exact(&mut rest).await?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&rest[..NONCE_LEN]);
    let id_len = usize::from(rest[NONCE_LEN]);
    if id_len == 0 {
        return Err(HandshakeError::BadId);
    }
    let mut id = vec![0u8; id_len];
    reader.read_exact(&mut id).await?;
    let id = String::from_utf8(id).map_err(|_| HandshakeError::BadId)?;
    Ok((nonce, id))
}

fn keyed(key: &[u8], label: &[u8], transcript: &[u8]) -> Result<Hmac<Sha256>, HandshakeError> {
    // HMAC accepts keys of any length; the error cannot happen in practice.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).map_err(|_| HandshakeError::BadMac)?;
    mac.update(label);
    mac.update(transcript);
    Ok(mac)
}

fn transcript(
    client_nonce: &[u8; NONCE_LEN],
    server_nonce: &[u8; NONCE_LEN],
    client_id: &str,
    server_id: &str,
) -> Vec<u8> {
    let mut t = Vec::with_capacity(2 + 2 * NONCE_LEN + 2 + client_id.len() + server_id.len());
    t.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    t.extend_from_slice(client_nonce);
    t.extend_from_slice(server_nonce);
    for id in [client_id, server_id] {
        t.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        t.extend_from_slice(id.as_bytes());
    }
    t
}

fn prove(key: &[u8], label: &[u8], transcript: &[u8]) -> Result<[u8; MAC_LEN], HandshakeError> {
    let tag = keyed(key, label, transcript)?.finalize().into_bytes();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&tag);
    Ok(out)
}

/// Checks `proof` in constant time.
fn verify(key: &[u8], label: &[u8], transcript: &[u8], proof: &[u8]) -> Result<(), HandshakeError> {
    keyed(key, label, transcript)?
        .verify_slice(proof)
        .map_err(|_| HandshakeError::BadMac)
}

/// A hang-up where an answer was due: the peer refused us.
fn refused(e: io::Error) -> HandshakeError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        HandshakeError::Refused
    } else {
        HandshakeError::Io(e)
    }
}

/// Client side: checks that the server is `expected_peer`, proves that this
/// node knows the key, then checks that the server does too.
pub(super) async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    local_id: &str,
    expected_peer: &str,
    key: &[u8],
) -> Result<(), HandshakeError> {
    let client_nonce = nonce()?;
    stream.write_all(&hello(&client_nonce, local_id)).await?;
    stream.flush().await?;
    // A server that hangs up here refuses us (unknown id, other cluster).
    let (server_nonce, server_id) = read_hello(stream).await.map_err(|e| match e {
        HandshakeError::Io(e) => refused(e),
        other => other,
    })?;
    if server_id != expected_peer {
        return Err(HandshakeError::WrongPeer {
            expected: expected_peer.to_owned(),
            found: server_id,
        });
    }
    let transcript = transcript(&client_nonce, &server_nonce, local_id, &server_id);
    stream
        .write_all(&prove(key, CLIENT_LABEL, &transcript)?)
        .await?;
    stream.flush().await?;
    let mut server_proof = [0u8; MAC_LEN];
    stream
        .read_exact(&mut server_proof)
        .await
        .map_err(refused)?;
    verify(key, SERVER_LABEL, &transcript, &server_proof)
}

/// Server side: returns the authenticated client's id. `known` says whether
/// an id may connect. Nothing is computed with the key before the client's
/// proof has been checked.
pub(super) async fn server_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    local_id: &str,
    key: &[u8],
    known: impl Fn(&str) -> bool,
) -> Result<PeerId, HandshakeError> {
    let (client_nonce, client_id) = read_hello(stream).await?;
    if !known(&client_id) {
        return Err(HandshakeError::UnknownPeer(client_id));
    }
    let server_nonce = nonce()?;
    stream.write_all(&hello(&server_nonce, local_id)).await?;
    stream.flush().await?;
    let transcript = transcript(&client_nonce, &server_nonce, &client_id, local_id);
    let mut client_proof = [0u8; MAC_LEN];
    stream.read_exact(&mut client_proof).await?;
    verify(key, CLIENT_LABEL, &transcript, &client_proof)?;
    stream
        .write_all(&prove(key, SERVER_LABEL, &transcript)?)
        .await?;
    stream.flush().await?;
    Ok(client_id)
}
