//! Cloud-cluster file storage: the reference page's single-node example
//! (`CloudClusterFileStorage` with a mocked cloud client) in Rust.
//!
//! One node, `server-1` on `localhost:12345`, whose server list is itself,
//! over an in-memory object store (the "mocked" S3 client), uploading every
//! 100 ms. It pushes a record, flushes, and reads it back through every tier,
//! printing which one served each read:
//!
//! 1. the WAL writer's memory (right after the push);
//! 2. the object store, after a restart on a fresh staging directory (the
//!    slot is then kept in the provider's cache directory and the page in
//!    the cloud page cache);
//! 3. the cloud page cache's memory tier;
//! 4. the cloud page cache's disk tier
//!    (`cloud_page_cache/server_server-1`, `cache_mappings.json`), reused
//!    after another restart.
//!
//! In a real cluster the same node would also answer its peers' page
//! requests from that cache (`CacheAwareHandler`).
//!
//! ```text
//! cargo run --example cloud_cluster --features cloud
//! ```

use std::path::Path;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use protobase::backends::cloud::{CloudBlockProvider, CloudPageCache, DEFAULT_CACHE_SIZE};
use protobase::cluster::{ClusterConfig, PeerAddress};
use protobase::{AtomPointer, PageCache, Storage, StorageBuilder};

const SERVER_ID: &str = "server-1";

/// What every counter said before a read.
#[derive(Clone, Copy)]
struct Counters {
    page_hits: u64,
    disk_hits: u64,
    store_fetches: u64,
    dir_hits: u64,
}

/// One running node and the handles the demo reads counters from.
struct Node {
    storage: Storage,
    provider: Arc<CloudBlockProvider>,
    pages: Arc<CloudPageCache>,
}

impl Node {
    async fn start(
        store: Arc<dyn ObjectStore>,
        staging: &Path,
        base: &Path,
    ) -> Result<Node, Box<dyn std::error::Error>> {
        let provider = Arc::new(
            CloudBlockProvider::builder(store, staging)
                .prefix("prefix")
                .upload_interval_ms(100)
                .build()
                .await?,
        );
        let pages = Arc::new(
            CloudPageCache::open(
                CloudPageCache::default_dir(base, SERVER_ID)?,
                DEFAULT_CACHE_SIZE,
                64 << 20,
                1 << 20,
            )
            .await?,
        );
        let cluster = ClusterConfig::new(SERVER_ID)
            .with_host("localhost")
            .with_port(12345)
            .with_servers([PeerAddress::new(SERVER_ID, "localhost:12345")])
            .with_psk("example-only-key");
        let storage = StorageBuilder::cloud(provider.clone())
            .cluster(cluster)
            .with_page_cache(pages.clone())
            .build()
            .await?;
        Ok(Node {
            storage,
            provider,
            pages,
        })
    }

    fn counters(&self) -> Counters {
        let dir = self.provider.cache().map(|c| c.stats()).unwrap_or_default();
        Counters {
            page_hits: self.pages.stats().hits,
            disk_hits: self.pages.disk_stats().hits,
            store_fetches: dir.inserts,
            dir_hits: dir.hits,
        }
    }

    /// Reads `ptr` and names the tier that served it.
    async fn read(&self, what: &str, ptr: AtomPointer) -> Result<(), Box<dyn std::error::Error>> {
        let before = self.counters();
        let bytes = self.storage.get_bytes(ptr).await?;
        let after = self.counters();
        let tier = if after.store_fetches > before.store_fetches {
            "object store (GET; now in the cache dir and the page cache)"
        } else if after.dir_hits > before.dir_hits {
            "provider cache directory"
        } else if after.disk_hits > before.disk_hits {
            "cloud page cache, disk tier"
        } else if after.page_hits > before.page_hits {
            "cloud page cache, memory tier"
        } else {
            "memory (the WAL writer) or local staging"
        };
        println!("{what:<32} {:?} <- {tier}", String::from_utf8_lossy(&bytes));
        Ok(())
    }

    async fn stop(self) -> Result<(), Box<dyn std::error::Error>> {
        self.storage.close().await?;
        drop(self.storage);
        self.pages.close().await?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    // The "mocked" cloud client: an in-memory bucket.
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());

    let node = Node::start(store.clone(), &tmp.path().join("staging-a"), tmp.path()).await?;
    let ptr = node.storage.push_bytes(b"hello from server-1").await?;
    node.read("right after the push", ptr).await?;
    node.storage.flush_wal().await?;
    let root = node.storage.set_root(ptr).await?;
    println!(
        "root #{} (term {}) -> {}",
        root.sequence, root.term, root.pointer
    );
    node.provider.flush_uploads().await?; // at most upload_interval_ms later anyway
    node.stop().await?;

    // Restart on a fresh staging dir: nothing local but the page cache dir,
    // which has not seen this page yet.
    let node = Node::start(store.clone(), &tmp.path().join("staging-b"), tmp.path()).await?;
    node.read("after a restart", ptr).await?;
    node.read("read again", ptr).await?;
    node.stop().await?;

    // Restart again: the page cache's mappings bring the page back.
    let node = Node::start(store, &tmp.path().join("staging-c"), tmp.path()).await?;
    node.read("after another restart", ptr).await?;
    println!(
        "page cache directory: {}",
        node.pages.dir().strip_prefix(tmp.path())?.display()
    );
    node.stop().await?;
    Ok(())
}
