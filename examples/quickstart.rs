//! Quickstart: standalone file storage.
//!
//! Opens a space directory (the first argument, or a temp dir), pushes raw
//! bytes and JSON / MessagePack atoms, publishes a root, reopens the space
//! and reads everything back.
//!
//! ```text
//! cargo run --example quickstart [-- <space-dir>]
//! ```

use serde::{Deserialize, Serialize};

use protobase::{AtomFormat, AtomPointer, Storage};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Document {
    title: String,
    tags: Vec<String>,
    /// Pointers to other atoms: how an object graph is built from atoms.
    parts: Vec<AtomPointer>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _tmp;
    let dir = match std::env::args().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            let t = tempfile::tempdir()?;
            let p = t.path().join("space");
            _tmp = t;
            p
        }
    };
    println!("space directory: {}", dir.display());

    // 1. Open (created if missing) and push atoms. Each push returns a
    //    pointer at once; the record is readable immediately.
    let storage = Storage::open(&dir).await?;
    let blob = storage
        .push_bytes(b"raw bytes: an image, a page, anything")
        .await?;
    let settings = storage
        .push_atom(
            &serde_json::json!({"theme": "dark", "ñandú": "€"}),
            AtomFormat::MessagePack,
        )
        .await?;
    let doc = Document {
        title: "hello protobase".into(),
        tags: vec!["example".into()],
        parts: vec![blob, settings],
    };
    let doc_ptr = storage.push_atom(&doc, AtomFormat::Json).await?;
    println!("pushed blob at {blob}, settings at {settings}, document at {doc_ptr}");

    // 2. Publish the document as the root. When this returns, the root and
    //    every byte pushed before it are durable.
    let root = storage
        .update_root(|previous| async move {
            println!("previous root: {previous:?}");
            Ok(doc_ptr)
        })
        .await?;
    println!("published root #{} -> {}", root.sequence, root.pointer);
    storage.close().await?;

    // 3. Reopen and walk from the root.
    let storage = Storage::open(&dir).await?;
    let root = storage
        .read_current_root()
        .await?
        .ok_or("the space lost its root")?;
    let doc_back: Document = storage.get_atom(root.pointer).await?;
    assert_eq!(doc_back, doc);
    let blob_back = storage.get_bytes(doc_back.parts[0]).await?;
    let settings_back: serde_json::Value = storage.get_atom(doc_back.parts[1]).await?;
    println!(
        "after reopen, root #{} is {:?}",
        root.sequence, doc_back.title
    );
    println!("  blob: {:?}", String::from_utf8_lossy(&blob_back));
    println!("  settings: {settings_back}");
    println!("  page cache: {:?}", storage.cache_stats());
    storage.close().await?;
    println!("ok");
    Ok(())
}
