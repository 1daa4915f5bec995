//! Cloud file storage on a local-directory object store.
//!
//! The WAL lives in fixed-size objects (`wal/<wal_id>/<slot>`) in an
//! `object_store` — here `LocalFileSystem`, the same code path as S3 — with a
//! local staging area and a background uploader. In `Cloud` durability a
//! commit returns once its slots and the root are in the store, so a fresh
//! node that reads only the store sees everything.
//!
//! ```text
//! cargo run --example cloud --features cloud
//! ```

use std::sync::Arc;

use object_store::local::LocalFileSystem;
use protobase::backends::cloud::{CloudBlockProvider, Durability};
use protobase::{AtomFormat, StorageBuilder};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket)?;
    let store = Arc::new(LocalFileSystem::new_with_prefix(&bucket)?);

    // Node 1 writes through its own staging dir.
    let provider = CloudBlockProvider::builder(store.clone(), tmp.path().join("staging-1"))
        .prefix("spaces/demo")
        .object_size(1 << 20)
        .durability(Durability::Cloud)
        .build()
        .await?;
    let storage = StorageBuilder::new()
        .with_block_provider(Arc::new(provider))
        .build()
        .await?;
    let ptr = storage
        .push_atom(
            &serde_json::json!({"stored": "in objects"}),
            AtomFormat::Json,
        )
        .await?;
    let root = storage.set_root(ptr).await?;
    println!("committed root #{} -> {}", root.sequence, root.pointer);
    storage.close().await?;

    let mut keys = Vec::new();
    for entry in walk(&bucket)? {
        keys.push(entry.strip_prefix(&bucket)?.display().to_string());
    }
    keys.sort();
    println!("objects in the bucket: {keys:?}");

    // Node 2: nothing local, everything from the store (and its cache dir).
    let provider = CloudBlockProvider::builder(store, tmp.path().join("staging-2"))
        .prefix("spaces/demo")
        .object_size(1 << 20)
        .build()
        .await?;
    let fresh = StorageBuilder::new()
        .with_block_provider(Arc::new(provider))
        .build()
        .await?;
    let seen = fresh
        .read_current_root()
        .await?
        .ok_or("no root in the store")?;
    let value: serde_json::Value = fresh.get_atom(seen.pointer).await?;
    println!(
        "a fresh node reads root #{} from the store: {value}",
        seen.sequence
    );
    fresh.close().await?;
    println!("ok");
    Ok(())
}

fn walk(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}
