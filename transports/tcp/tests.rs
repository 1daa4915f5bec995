//! Unit tests of the TCP transport: the handshake and frames on raw sockets.

use std::sync::atomic::AtomicUsize;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::psk::{HandshakeError, MAC_LEN, client_handshake, hello, nonce, read_hello};
use super::*;
use crate::network::{MessageHandler, NetworkManager};
use crate::protocol::{Envelope, PROTOCOL_VERSION};
use crate::wire;
use async_trait::async_trait;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

const KEY: &[u8] = b"unit-test key, 32 bytes or so...";

#[derive(Debug, Default)]
struct Counter(AtomicUsize);

#[async_trait]
impl MessageHandler for Counter {
    async fn handle(&self, _from: PeerId, message: Message) -> Option<Message> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Some(message)
    }
}

/// Node "n1" serving with a counting handler; "n0" may connect.
async fn server() -> (TcpNetworkManager, Arc<Counter>, SocketAddr) {
    let config = TcpConfig::new("n1", "127.0.0.1:0", KEY)
        .with_peer("n0", "127.0.0.1:9")
        .with_max_frame_bytes(64 * 1024);
    let node = TcpNetworkManager::new(config).unwrap();
    let counter = Arc::new(Counter::default());
    node.start(counter.clone()).await.unwrap();
    let addr = node.local_addr().unwrap();
    (node, counter, addr)
}

async fn authenticated(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    client_handshake(&mut stream, "n0", "n1", KEY)
        .await
        .unwrap();
    stream
}

/// True when the node closes the stream (within 10 s).
async fn closed(stream: &mut TcpStream) -> bool {
    let drain = async {
        let mut buf = [0u8; 256];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_ok()
}

fn heartbeat_frame(request_id: u64) -> Vec<u8> {
    let envelope = Envelope {
        version: PROTOCOL_VERSION,
        request_id,
        message: Message::Heartbeat {
            node: "n0".into(),
            root_sequence: request_id,
            term: 1,
        },
    };
    wire::encode_frame(&envelope, 1024).unwrap()
}

#[tokio::test]
async fn handshake_round_trip_and_frames_flow() {
    let (node, counter, addr) = server().await;
    let mut stream = authenticated(addr).await;
    stream.write_all(&heartbeat_frame(41)).await.unwrap();
    let response = wire::read_frame(&mut stream, 1024).await.unwrap();
    assert_eq!(response.request_id, 41);
    assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    assert!(
        node.peers()[0].alive,
        "an authenticated inbound peer is alive"
    );
    node.stop().await.unwrap();
}

/// A client that cannot prove the key gets no frame read and learns no
/// MAC of the server's: the server proves nothing before the client has.
#[tokio::test]
async fn a_client_with_a_forged_proof_is_refused_and_gets_no_proof() {
    let (node, counter, addr) = server().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let client_nonce = nonce().unwrap();
    stream.write_all(&hello(&client_nonce, "n0")).await.unwrap();
    let (_server_nonce, server_id) = read_hello(&mut stream).await.unwrap();
    assert_eq!(server_id, "n1");
    stream.write_all(&[0x42; MAC_LEN]).await.unwrap();
    let _ = stream.write_all(&heartbeat_frame(1)).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
        .await
        .expect("the server left the connection open");
    assert!(
        read.is_err() || rest.is_empty(),
        "the server answered a forged proof with {} bytes",
        rest.len()
    );
    assert_eq!(counter.0.load(Ordering::SeqCst), 0);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_key_mismatch_and_a_wrong_server_are_detected_by_the_client() {
    let (node, _counter, addr) = server().await;
    // The server refuses a client whose proof fails (it hangs up).
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let err = client_handshake(&mut stream, "n0", "n1", b"another key, not the cluster's")
        .await
        .unwrap_err();
    assert!(matches!(err, HandshakeError::Refused), "{err}");
    assert!(err.to_string().contains("pre-shared keys"), "{err}");
    // The client proves nothing to a server that is not the peer it
    // dialled.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let err = client_handshake(&mut stream, "n0", "n9", KEY)
        .await
        .unwrap_err();
    assert!(matches!(err, HandshakeError::WrongPeer { .. }), "{err}");
    node.stop().await.unwrap();

    // An impostor server that takes any proof but cannot prove the key.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let impostor = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        read_hello(&mut s).await.unwrap();
        s.write_all(&hello(&nonce().unwrap(), "n1")).await.unwrap();
        let mut proof = [0u8; MAC_LEN];
        s.read_exact(&mut proof).await.unwrap();
        s.write_all(&[7u8; MAC_LEN]).await.unwrap();
        s
    });
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let err = client_handshake(&mut stream, "n0", "n1", KEY)
        .await
        .unwrap_err();
    assert!(matches!(err, HandshakeError::BadMac), "{err}");
    drop(impostor.await.unwrap());
}

#[test]
fn short_keys_are_refused() {
    for key in [&b""[..], &b"fifteen bytes.."[..]] {
        let err = TcpNetworkManager::new(TcpConfig::new("n1", "127.0.0.1:0", key)).unwrap_err();
        assert_eq!(
            err,
            TcpConfigError::KeyTooShort {
                len: key.len(),
                min: MIN_PSK_BYTES
            }
        );
    }
    assert!(TcpNetworkManager::new(TcpConfig::new("n1", "127.0.0.1:0", &[9u8; 16][..])).is_ok());
}

/// A client link (`client~…`, same key) is accepted, and the handler
/// sees its client id, never a member's.
#[tokio::test]
async fn a_client_link_is_accepted_under_its_client_id() {
    #[derive(Debug, Default)]
    struct From(Mutex<Vec<PeerId>>);
    #[async_trait]
    impl MessageHandler for From {
        async fn handle(&self, from: PeerId, message: Message) -> Option<Message> {
            self.0.lock().push(from);
            Some(message)
        }
    }
    let config = TcpConfig::new("n1", "127.0.0.1:0", KEY).with_peer("n0", "127.0.0.1:9");
    let node = TcpNetworkManager::new(config).unwrap();
    let seen = Arc::new(From::default());
    node.start(seen.clone()).await.unwrap();
    let addr = node.local_addr().unwrap().to_string();
    let client = TcpNetworkManager::new(
        TcpConfig::new(crate::network::client_id("n0"), "127.0.0.1:0", KEY)
            .with_peer("n1", addr.as_str()),
    )
    .unwrap();
    client.start(seen.clone()).await.unwrap();
    let r = client
        .request(&"n1".into(), heartbeat_message(), Duration::from_secs(5))
        .await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(*seen.0.lock(), vec!["client~n0".to_string()]);
    // A wrong key is still refused, and blamed on the keys, not the peer.
    let stranger = TcpNetworkManager::new(
        TcpConfig::new(
            crate::network::client_id("n0"),
            "127.0.0.1:0",
            &b"a wrong key, long enough"[..],
        )
        .with_peer("n1", addr.as_str())
        .with_max_retries(0),
    )
    .unwrap();
    stranger.start(seen.clone()).await.unwrap();
    let r = stranger
        .request(&"n1".into(), heartbeat_message(), Duration::from_secs(5))
        .await;
    let err = r.unwrap_err().to_string();
    assert!(err.contains("pre-shared keys"), "{err}");
    // A member id may not be a client id.
    assert!(
        TcpNetworkManager::new(
            TcpConfig::new("n1", "127.0.0.1:0", KEY).with_peer("client~x", "127.0.0.1:9")
        )
        .is_err()
    );
    for n in [&client, &stranger, &node] {
        n.stop().await.unwrap();
    }
}

fn heartbeat_message() -> Message {
    Message::Heartbeat {
        node: "x".into(),
        root_sequence: 0,
        term: 0,
    }
}

#[tokio::test]
async fn an_unknown_id_is_refused() {
    let (node, counter, addr) = server().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let err = client_handshake(&mut stream, "stranger", "n1", KEY)
        .await
        .unwrap_err();
    assert!(matches!(err, HandshakeError::Refused), "{err}");
    assert_eq!(counter.0.load(Ordering::SeqCst), 0);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_frames_after_authentication_close_only_that_connection() {
    let (node, counter, addr) = server().await;
    let mut healthy = authenticated(addr).await;

    let oversized = {
        let mut v = u32::MAX.to_le_bytes().to_vec();
        v.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        v
    };
    let wrong_version = {
        let mut v = heartbeat_frame(2);
        v[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
        v
    };
    let garbage_body = {
        let mut v = 8u32.to_le_bytes().to_vec();
        v.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        v.extend_from_slice(&[0xc1; 8]);
        v
    };
    let truncated = heartbeat_frame(3)[..10].to_vec();
    for (name, bytes) in [
        ("oversized", oversized),
        ("wrong version", wrong_version),
        ("garbage body", garbage_body),
        ("truncated", truncated),
    ] {
        let mut hostile = authenticated(addr).await;
        hostile.write_all(&bytes).await.unwrap();
        if name == "truncated" {
            // Ends the stream inside the frame.
            hostile.shutdown().await.unwrap();
        }
        assert!(closed(&mut hostile).await, "{name}: connection left open");
    }
    assert_eq!(counter.0.load(Ordering::SeqCst), 0);

    // The healthy connection, opened before the attacks, still works.
    healthy.write_all(&heartbeat_frame(7)).await.unwrap();
    let response = wire::read_frame(&mut healthy, 1024).await.unwrap();
    assert_eq!(response.request_id, 7);
    assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    node.stop().await.unwrap();
}

/// Echoes requests, but panics on a heartbeat of sequence 666 (a handler
/// with a bug).
#[derive(Debug, Default)]
struct PanicsOn666;

#[async_trait]
impl MessageHandler for PanicsOn666 {
    async fn handle(&self, _from: PeerId, message: Message) -> Option<Message> {
        if matches!(
            message,
            Message::Heartbeat {
                root_sequence: 666,
                ..
            }
        ) {
            panic!("a handler bug (expected by this test)");
        }
        Some(message)
    }
}

/// A handler that panics costs only its own request: the connection goes
/// on answering the requests behind it (they are not left unanswered on a
/// half-open connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_costs_only_its_own_request() {
    let config = TcpConfig::new("n1", "127.0.0.1:0", KEY)
        .with_peer("n0", "127.0.0.1:9")
        .with_max_frame_bytes(64 * 1024);
    let node = TcpNetworkManager::new(config).unwrap();
    node.start(Arc::new(PanicsOn666)).await.unwrap();
    let mut stream = authenticated(node.local_addr().unwrap()).await;
    stream.write_all(&heartbeat_frame(666)).await.unwrap();
    stream.write_all(&heartbeat_frame(7)).await.unwrap();
    let response =
        tokio::time::timeout(Duration::from_secs(10), wire::read_frame(&mut stream, 1024))
            .await
            .expect("the request behind the panicking one was answered")
            .unwrap();
    assert_eq!(response.request_id, 7);
    node.stop().await.unwrap();
}
