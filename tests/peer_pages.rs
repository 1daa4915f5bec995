//! Issue 17, item 2: nothing from a peer is trusted before it is checked.
//!
//! Three in-process nodes: `w` writes a WAL, `h` is a hostile (or broken)
//! member that answers page requests with bytes derived from `w`'s WAL but
//! damaged in one way per test, and `r` reads `w`'s records. `h` is listed
//! first, so `r` asks it before `w`. In every case `r` must return the
//! right bytes (from `w`), keep nothing in its page cache that differs from
//! `w`'s WAL, and serve a fourth node only `w`'s bytes.
//!
//! A last test damages a page inside a node's own page cache: the reader
//! evicts it and reads the page again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use protobase::backends::memory::MemoryBlockProvider;
use protobase::cluster::{ClusterConfig, MemoryAcceptorStore, PeerAddress};
use protobase::protocol::Message;
use protobase::transports::InProcessHub;
use protobase::{
    AtomPointer, MemoryPageCache, MessageHandler, NetworkManager, PageCache, PageKey, PeerId,
    Storage, StorageBuilder, WalId, WalStore,
};

const PAGE: u64 = 64;
const IDS: [&str; 3] = ["h", "w", "r"];

fn config(id: &str, members: &[&str]) -> ClusterConfig {
    ClusterConfig::new(id)
        .with_servers(
            members
                .iter()
                .map(|p| PeerAddress::new(*p, format!("{p}:1")))
                .collect::<Vec<_>>(),
        )
        .with_read_timeout_ms(1_000)
        .with_vote_timeout_ms(2_000)
        .with_retry_interval_ms(10)
        .with_max_retries(1)
        .with_lease_ms(1_000)
        .with_heartbeat_ms(0)
}

/// How the hostile peer damages its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lie {
    /// Flips the first payload byte of every record in the answer.
    Corrupt,
    /// Answers offset 0 with a reference-looking record instead of the
    /// native header, and flips payload bytes like `Corrupt`.
    NoMagic,
    /// Answers with the bytes of another WAL (valid header and CRCs).
    OtherWal,
    /// Answers half of the bytes.
    Short,
    /// Answers more bytes than asked for.
    Long,
}

struct Hostile {
    lie: Lie,
    /// The writer's WAL store (the truth the hostile peer damages).
    truth: Arc<MemoryBlockProvider>,
    /// Another WAL, for `Lie::OtherWal`.
    other: Option<(Arc<MemoryBlockProvider>, WalId)>,
    /// Record starts of the writer's WAL.
    records: Vec<u64>,
    asked: AtomicUsize,
}

#[async_trait]
impl MessageHandler for Hostile {
    async fn handle(&self, _from: PeerId, message: Message) -> Option<Message> {
        let Message::PageRequest { wal, offset, len } = message else {
            return Some(Message::Error {
                message: "hostile peer".into(),
            });
        };
        self.asked.fetch_add(1, Ordering::SeqCst);
        let source = match (&self.other, self.lie) {
            (Some((p, id)), Lie::OtherWal) => p.read(*id, offset, len).await,
            _ => self.truth.read(wal, offset, len).await,
        };
        let Ok(bytes) = source else {
            return Some(Message::PageResponse {
                wal,
                offset,
                data: None,
            });
        };
        let mut data = BytesMut::from(&bytes[..]);
        let flip = |data: &mut BytesMut| {
            for &r in &self.records {
                let at = r + 9;
                if at >= offset && at < offset + data.len() as u64 {
                    data[(at - offset) as usize] ^= 0x20;
                }
            }
        };
        match self.lie {
            Lie::Corrupt => flip(&mut data),
            Lie::NoMagic => {
                flip(&mut data);
                if offset == 0 && data.len() >= 32 {
                    // A plausible reference record of 23 bytes of payload
                    // where the header was: the native record after it
                    // looks like a second reference record.
                    data[..8].copy_from_slice(&23u64.to_le_bytes());
                    data[8..32].fill(0);
                }
            }
            Lie::OtherWal => {}
            Lie::Short => data.truncate(data.len() / 2),
            Lie::Long => data.extend_from_slice(&[0xAB; 16]),
        }
        Some(Message::PageResponse {
            wal,
            offset,
            data: Some(data.freeze()),
        })
    }
}

/// A node that answers nothing (the fourth node only asks).
struct Silent;

#[async_trait]
impl MessageHandler for Silent {
    async fn handle(&self, _from: PeerId, _message: Message) -> Option<Message> {
        None
    }
}

struct Cluster {
    hub: InProcessHub,
    writer: Storage,
    reader: Storage,
    cache: Arc<MemoryPageCache>,
    truth: Arc<MemoryBlockProvider>,
    hostile: Arc<Hostile>,
    wal: WalId,
    pointers: Vec<(AtomPointer, Vec<u8>)>,
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8 | 0x41).collect()
}

/// Writes `n` records of varied lengths (some longer than a page) with
/// `storage` and flushes them.
async fn write_records(storage: &Storage, n: usize, salt: usize) -> Vec<(AtomPointer, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..n {
        let len = [5, 17, 40, 3, 90, 11][i % 6];
        let data = payload(i + salt, len);
        out.push((storage.push_bytes(&data).await.unwrap(), data));
    }
    storage.flush_wal().await.unwrap();
    out
}

async fn node(
    hub: &InProcessHub,
    id: &str,
    provider: Arc<MemoryBlockProvider>,
    cache: Arc<MemoryPageCache>,
) -> Storage {
    StorageBuilder::new()
        .with_block_provider(provider)
        .page_size(PAGE)
        .with_page_cache(cache)
        .cluster(config(id, &IDS))
        .with_network_manager(Arc::new(hub.node(id)))
        .with_acceptor_store(Arc::new(MemoryAcceptorStore::default()))
        .build()
        .await
        .unwrap()
}

async fn cluster(lie: Lie) -> Cluster {
    let hub = InProcessHub::new(17);
    let truth = Arc::new(MemoryBlockProvider::new());
    let writer = node(
        &hub,
        "w",
        truth.clone(),
        Arc::new(MemoryPageCache::new(1 << 20, PAGE)),
    )
    .await;
    let pointers = write_records(&writer, 12, 0).await;
    let wal = pointers[0].0.wal_id;
    // Another WAL with records of the same lengths at the same offsets.
    let other_provider = Arc::new(MemoryBlockProvider::new());
    let other = StorageBuilder::new()
        .with_block_provider(other_provider.clone())
        .build()
        .await
        .unwrap();
    let other_pointers = write_records(&other, 12, 1000).await;
    assert_eq!(
        other_pointers
            .iter()
            .map(|p| p.0.offset)
            .collect::<Vec<_>>(),
        pointers.iter().map(|p| p.0.offset).collect::<Vec<_>>()
    );
    let other_wal = other_pointers[0].0.wal_id;
    let hostile = Arc::new(Hostile {
        lie,
        truth: truth.clone(),
        other: Some((other_provider, other_wal)),
        records: pointers.iter().map(|p| p.0.offset).collect(),
        asked: AtomicUsize::new(0),
    });
    hub.node("h").start(hostile.clone()).await.unwrap();
    let cache = Arc::new(MemoryPageCache::new(1 << 20, PAGE));
    let reader = node(
        &hub,
        "r",
        Arc::new(MemoryBlockProvider::new()),
        cache.clone(),
    )
    .await;
    Cluster {
        hub,
        writer,
        reader,
        cache,
        truth,
        hostile,
        wal,
        pointers,
    }
}

impl Cluster {
    /// The writer's WAL as stored.
    async fn wal_bytes(&self) -> Bytes {
        self.truth.read(self.wal, 0, 1 << 20).await.unwrap()
    }

    /// Every record reads back right on the reader, twice (the second time
    /// from its cache where it kept pages).
    async fn reads_are_right(&self) {
        for round in 0..2 {
            for (ptr, data) in &self.pointers {
                let got = self
                    .reader
                    .get_bytes(*ptr)
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: reading {ptr:?}: {e}"));
                assert_eq!(&got[..], &data[..], "round {round}: wrong bytes at {ptr:?}");
            }
        }
        assert!(
            self.hostile.asked.load(Ordering::SeqCst) > 0,
            "the hostile peer was never asked"
        );
    }

    /// Every page the reader cached is a prefix of the writer's page.
    async fn cache_holds_only_the_truth(&self) {
        let truth = self.wal_bytes().await;
        let pages = (truth.len() as u64).div_ceil(PAGE) + 2;
        let mut cached = 0;
        for page in 0..pages {
            let Some(p) = self
                .cache
                .get(&PageKey {
                    wal: self.wal,
                    page,
                })
                .await
            else {
                continue;
            };
            cached += 1;
            let start = (page * PAGE) as usize;
            assert!(p.len() as u64 <= PAGE, "page {page} has {} bytes", p.len());
            let end = start + p.len();
            assert!(end <= truth.len(), "page {page} runs past the WAL's end");
            assert_eq!(
                &p[..],
                &truth[start..end],
                "page {page} differs from the WAL"
            );
        }
        assert!(cached > 0, "the reader cached no page at all");
    }

    /// A fourth node asking the reader for every page gets the writer's
    /// bytes (or nothing), never the hostile peer's.
    async fn forwards_only_the_truth(&self) {
        let truth = self.wal_bytes().await;
        let x = self.hub.node("x");
        x.start(Arc::new(Silent)).await.unwrap();
        let pages = (truth.len() as u64).div_ceil(PAGE);
        for page in 0..pages {
            let offset = page * PAGE;
            let answer = x
                .request(
                    &"r".to_string(),
                    Message::PageRequest {
                        wal: self.wal,
                        offset,
                        len: PAGE,
                    },
                    Duration::from_secs(2),
                )
                .await
                .unwrap();
            let Message::PageResponse { data, .. } = answer else {
                panic!("not a page response: {answer:?}");
            };
            if let Some(d) = data {
                let start = offset as usize;
                let end = (start + PAGE as usize).min(truth.len());
                assert_eq!(&d[..], &truth[start..end], "page {page} forwarded wrong");
            }
        }
    }

    async fn close(self) {
        self.reader.close().await.unwrap();
        self.writer.close().await.unwrap();
    }
}

async fn hostile_peer_case(lie: Lie) {
    let c = cluster(lie).await;
    c.reads_are_right().await;
    c.cache_holds_only_the_truth().await;
    c.forwards_only_the_truth().await;
    c.close().await;
}

#[tokio::test]
async fn a_corrupted_page_from_a_peer_is_refused_and_read_elsewhere() {
    hostile_peer_case(Lie::Corrupt).await;
}

#[tokio::test]
async fn a_page_without_the_native_magic_does_not_make_the_wal_unchecked() {
    hostile_peer_case(Lie::NoMagic).await;
}

#[tokio::test]
async fn a_page_of_another_wal_is_refused_and_read_elsewhere() {
    hostile_peer_case(Lie::OtherWal).await;
}

#[tokio::test]
async fn a_short_page_from_a_peer_is_refused_and_read_elsewhere() {
    hostile_peer_case(Lie::Short).await;
}

#[tokio::test]
async fn a_long_page_from_a_peer_is_refused_and_read_elsewhere() {
    hostile_peer_case(Lie::Long).await;
}

/// A full-length page in the cache that fails its CRC is evicted and read
/// again (it used to make the record unreadable for as long as it stayed).
#[tokio::test]
async fn a_cached_corrupt_page_is_evicted_and_read_again() {
    let provider = Arc::new(MemoryBlockProvider::new());
    let cache = Arc::new(MemoryPageCache::new(1 << 20, PAGE));
    let storage = StorageBuilder::new()
        .with_block_provider(provider.clone())
        .page_size(PAGE)
        .with_page_cache(cache.clone())
        .build()
        .await
        .unwrap();
    let pointers = write_records(&storage, 12, 0).await;
    let wal = pointers[0].0.wal_id;
    // Fill the cache.
    for (ptr, data) in &pointers {
        assert_eq!(&storage.get_bytes(*ptr).await.unwrap()[..], &data[..]);
    }
    let truth = provider.read(wal, 0, 1 << 20).await.unwrap();
    // Damage a payload byte of every record that lies whole in a full page.
    let mut damaged = 0;
    for (ptr, data) in &pointers {
        let page = ptr.offset / PAGE;
        let end = ptr.offset + 9 + data.len() as u64 + 4;
        let key = PageKey { wal, page };
        if end > (page + 1) * PAGE {
            continue;
        }
        let Some(p) = cache.get(&key).await else {
            continue;
        };
        if (p.len() as u64) < PAGE {
            continue;
        }
        let mut v = p.to_vec();
        v[(ptr.offset + 9 - page * PAGE) as usize] ^= 0x01;
        cache.insert(key, Bytes::from(v)).await;
        damaged += 1;
    }
    assert!(damaged > 0, "no record lies whole in a full page");
    for (ptr, data) in &pointers {
        let got = storage
            .get_bytes(*ptr)
            .await
            .unwrap_or_else(|e| panic!("reading {ptr:?}: {e}"));
        assert_eq!(&got[..], &data[..]);
    }
    // The damaged pages were replaced by the WAL's bytes.
    for page in 0..(truth.len() as u64).div_ceil(PAGE) {
        if let Some(p) = cache.get(&PageKey { wal, page }).await {
            let start = (page * PAGE) as usize;
            assert_eq!(&p[..], &truth[start..start + p.len()], "page {page}");
        }
    }
    storage.close().await.unwrap();
}

/// On a cloud-cluster node whose only peer lies, the page comes from the
/// object store (the next tier), and only the store's bytes are cached.
#[cfg(feature = "cloud")]
async fn cloud_case(lie: Lie) {
    use object_store::memory::InMemory;
    use protobase::backends::cloud::CloudBlockProvider;

    let store: Arc<dyn object_store::ObjectStore> = Arc::new(InMemory::new());
    let provider = |dir: &std::path::Path| {
        CloudBlockProvider::builder(store.clone(), dir)
            .prefix("space")
            .upload_interval_ms(3_600_000)
            .build()
    };
    // The writer: a cloud node outside the cluster.
    let wdir = tempfile::TempDir::new().unwrap();
    let wp = Arc::new(provider(wdir.path()).await.unwrap());
    let writer = StorageBuilder::cloud(wp.clone()).build().await.unwrap();
    let pointers = write_records(&writer, 12, 0).await;
    wp.flush_uploads().await.unwrap();
    let wal = pointers[0].0.wal_id;
    let truth = wp.read(wal, 0, 1 << 20).await.unwrap();

    let hub = InProcessHub::new(5);
    let hostile = Arc::new(CloudHostile {
        lie,
        truth: wp.clone(),
        records: pointers.iter().map(|p| p.0.offset).collect(),
        asked: AtomicUsize::new(0),
    });
    hub.node("h").start(hostile.clone()).await.unwrap();
    let rdir = tempfile::TempDir::new().unwrap();
    let rp = Arc::new(provider(rdir.path()).await.unwrap());
    let cache = Arc::new(MemoryPageCache::new(1 << 20, PAGE));
    let reader = StorageBuilder::cloud(rp)
        .cluster(config("r", &["h", "r"]))
        .with_network_manager(Arc::new(hub.node("r")))
        .with_acceptor_store(Arc::new(MemoryAcceptorStore::default()))
        .with_page_cache(cache.clone())
        .page_size(PAGE)
        .build()
        .await
        .unwrap();
    for (ptr, data) in &pointers {
        let got = reader
            .get_bytes(*ptr)
            .await
            .unwrap_or_else(|e| panic!("reading {ptr:?}: {e}"));
        assert_eq!(&got[..], &data[..], "wrong bytes at {ptr:?}");
    }
    assert!(hostile.asked.load(Ordering::SeqCst) > 0);
    for page in 0..(truth.len() as u64).div_ceil(PAGE) {
        if let Some(p) = cache.get(&PageKey { wal, page }).await {
            let start = (page * PAGE) as usize;
            assert!(p.len() as u64 <= PAGE);
            assert_eq!(&p[..], &truth[start..start + p.len()], "page {page}");
        }
    }
    reader.close().await.unwrap();
    writer.close().await.unwrap();
}

/// [`Hostile`] over a cloud writer's provider.
#[cfg(feature = "cloud")]
struct CloudHostile {
    lie: Lie,
    truth: Arc<protobase::backends::cloud::CloudBlockProvider>,
    records: Vec<u64>,
    asked: AtomicUsize,
}

#[cfg(feature = "cloud")]
#[async_trait]
impl MessageHandler for CloudHostile {
    async fn handle(&self, from: PeerId, message: Message) -> Option<Message> {
        let Message::PageRequest { wal, offset, len } = message else {
            return Some(Message::Error {
                message: "hostile peer".into(),
            });
        };
        self.asked.fetch_add(1, Ordering::SeqCst);
        // Borrow the in-memory hostile's damage on a snapshot of the WAL.
        let snapshot = Arc::new(MemoryBlockProvider::new());
        let bytes = self.truth.read(wal, 0, 1 << 20).await.ok()?;
        let id = snapshot.create_wal().await.ok()?.id;
        snapshot.append(id, 0, bytes).await.ok()?;
        let inner = Hostile {
            lie: self.lie,
            truth: snapshot,
            other: None,
            records: self.records.clone(),
            asked: AtomicUsize::new(0),
        };
        match inner
            .handle(
                from,
                Message::PageRequest {
                    wal: id,
                    offset,
                    len,
                },
            )
            .await
        {
            Some(Message::PageResponse { offset, data, .. }) => {
                Some(Message::PageResponse { wal, offset, data })
            }
            other => other,
        }
    }
}

#[cfg(feature = "cloud")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_page_from_the_only_peer_is_read_from_the_store() {
    cloud_case(Lie::Corrupt).await;
}

#[cfg(feature = "cloud")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_without_the_native_magic_from_the_only_peer_is_read_from_the_store() {
    cloud_case(Lie::NoMagic).await;
}
