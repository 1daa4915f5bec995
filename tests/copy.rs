//! `protobase copy`: a space directory → object store → directory round
//! trip keeps every record and the root; interrupted copies resume with
//! only what is missing; damaged chunks are found by CRC and rewritten.

#[cfg(feature = "s3")]
mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use protobase::backends::cloud::CloudBlockProvider;
use protobase::{AtomFormat, Format, RootRecord, Storage, StorageBuilder};

const OBJECT_SIZE: u64 = 4096;

fn copy(src: &str, dst: &str, extra: &[&str]) -> (Output, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_protobase"))
        .args(["copy", src, dst, "--object-size", &OBJECT_SIZE.to_string()])
        .args(extra)
        .output()
        .expect("run protobase copy");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let summary = serde_json::from_str(text.trim()).unwrap_or(serde_json::Value::Null);
    (out, summary)
}

fn copy_ok(src: &str, dst: &str) -> serde_json::Value {
    let (out, summary) = copy(src, dst, &[]);
    assert!(
        out.status.success(),
        "copy {src} {dst}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary["complete"], true, "{summary}");
    summary
}

/// A space with several WALs (small max_wal_size), records of every format
/// and sizes spanning many chunks, and a root.
async fn make_space(dir: &Path) -> RootRecord {
    let storage = StorageBuilder::standalone(dir)
        .max_wal_size(20_000)
        .build()
        .await
        .unwrap();
    let mut last = None;
    for i in 0..60u32 {
        let ptr = match i % 3 {
            0 => {
                storage
                    .push_bytes(&vec![i as u8; 1 + (i as usize * 97) % 5000])
                    .await
            }
            1 => {
                storage
                    .push_atom(&serde_json::json!({"i": i}), AtomFormat::Json)
                    .await
            }
            _ => {
                storage
                    .push_atom(&vec![i; 40], AtomFormat::MessagePack)
                    .await
            }
        }
        .unwrap();
        last = Some(ptr);
    }
    let root = storage.set_root(last.unwrap()).await.unwrap();
    storage.close().await.unwrap();
    root
}

/// Every WAL (id, length), every record (offset, format, bytes) and the root.
type Dump = (
    Vec<(protobase::WalId, u64, Vec<(u64, Format, Vec<u8>)>)>,
    Option<RootRecord>,
);

async fn dump(storage: &Storage) -> Dump {
    let mut wals = Vec::new();
    for w in storage.list_wals().await.unwrap() {
        let report = storage.scan_wal(w.id, |_| {}).await.unwrap();
        assert!(
            report.corrupt.is_empty() && report.torn_tail.is_none(),
            "{report:?}"
        );
        let mut records = Vec::new();
        for offset in report.offsets {
            let ptr = protobase::AtomPointer {
                wal_id: w.id,
                offset,
            };
            let (format, bytes) = storage.get_record(ptr).await.unwrap();
            records.push((offset, format, bytes.to_vec()));
        }
        wals.push((w.id, w.len, records));
    }
    let root = storage.read_current_root().await.unwrap();
    storage.close().await.unwrap();
    (wals, root)
}

async fn dump_dir(dir: &Path) -> Dump {
    let s = StorageBuilder::standalone(dir)
        .read_only(true)
        .build()
        .await
        .unwrap();
    dump(&s).await
}

async fn dump_bucket(bucket: &Path, staging: &Path) -> Dump {
    let store = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(bucket).unwrap());
    let provider = CloudBlockProvider::builder(store, staging)
        .object_size(OBJECT_SIZE)
        .no_cache()
        .build()
        .await
        .unwrap();
    let s = StorageBuilder::new()
        .with_block_provider(Arc::new(provider))
        .read_only(true)
        .build()
        .await
        .unwrap();
    dump(&s).await
}

fn url(p: &Path) -> String {
    format!("file://{}", p.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_to_object_store_to_directory_keeps_every_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, bucket, back) = (
        tmp.path().join("src"),
        tmp.path().join("bucket"),
        tmp.path().join("back"),
    );
    let root = make_space(&src).await;
    std::fs::write(src.join("space.config"), "[cluster]\nport = 9999\n").unwrap();
    let original = dump_dir(&src).await;
    assert!(original.0.len() >= 3, "several WALs");

    let s = copy_ok(src.to_str().unwrap(), &url(&bucket));
    assert_eq!(s["records"], 60);
    assert_eq!(s["root_copied"], true);
    assert_eq!(s["config_copied"], true);
    assert_eq!(s["bytes_copied"], s["bytes"]);
    // The bucket is a cloud space a provider opens as is.
    let in_store = dump_bucket(&bucket, &tmp.path().join("staging")).await;
    assert_eq!(in_store, original);
    assert_eq!(in_store.1, Some(root));

    copy_ok(&url(&bucket), back.to_str().unwrap());
    assert_eq!(dump_dir(&back).await, original);
    assert_eq!(
        std::fs::read(back.join("space.config")).unwrap(),
        b"[cluster]\nport = 9999\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_copy_resumes_with_only_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, bucket, back) = (
        tmp.path().join("src"),
        tmp.path().join("bucket"),
        tmp.path().join("back"),
    );
    make_space(&src).await;
    let original = dump_dir(&src).await;
    let src = src.to_str().unwrap();

    // Interrupted after ~3 chunks: no root at the destination yet.
    let (out, step) = copy(src, &url(&bucket), &["--max-bytes", "10000"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(step["complete"], false);
    let first = step["bytes_copied"].as_u64().unwrap();
    assert!(
        first >= 10_000 && first < step["bytes"].as_u64().unwrap(),
        "{step}"
    );
    assert!(!bucket.join("space_root").exists(), "root is written last");

    // The re-run copies the rest only.
    let s = copy_ok(src, &url(&bucket));
    assert_eq!(s["bytes_present"].as_u64().unwrap(), first, "{s}");
    assert_eq!(
        s["bytes_copied"].as_u64().unwrap() + first,
        s["bytes"].as_u64().unwrap()
    );
    assert_eq!(s["root_copied"], true);
    // And a third run copies nothing.
    let s = copy_ok(src, &url(&bucket));
    assert_eq!(
        (s["bytes_copied"].as_u64(), s["root_copied"].as_bool()),
        (Some(0), Some(false)),
        "{s}"
    );

    // Same for a directory destination interrupted mid-WAL.
    let (out, _) = copy(
        &url(&bucket),
        back.to_str().unwrap(),
        &["--max-bytes", "5000"],
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(!back.join("space_root").exists());
    let s = copy_ok(&url(&bucket), back.to_str().unwrap());
    assert!(s["bytes_present"].as_u64().unwrap() >= 5000, "{s}");
    assert_eq!(dump_dir(&back).await, original);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_destination_chunk_is_found_by_crc_and_rewritten() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, bucket) = (tmp.path().join("src"), tmp.path().join("bucket"));
    make_space(&src).await;
    let original = dump_dir(&src).await;
    copy_ok(src.to_str().unwrap(), &url(&bucket));
    // Flip one byte of one slot object (same length: only the CRC tells).
    let (wal, ..) = &original.0[0];
    let object = bucket.join("wal").join(wal.to_string()).join("1");
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&object, &bytes).unwrap();
    let s = copy_ok(src.to_str().unwrap(), &url(&bucket));
    assert_eq!(s["chunks_copied"], 1, "{s}");
    assert_eq!(
        dump_bucket(&bucket, &tmp.path().join("staging")).await,
        original
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_locations_and_newer_destination_roots_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    make_space(&a).await;
    let (a, b_str) = (a.to_str().unwrap(), b.to_str().unwrap());
    for (src, dst, says) in [
        (a, "ftp://host/x", "unknown scheme"),
        (a, "file://relative/x", "absolute path"),
        (a, a, "same directory"),
        (
            tmp.path().join("missing").to_str().unwrap(),
            b_str,
            "missing",
        ),
    ] {
        let (out, _) = copy(src, dst, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{src} -> {dst}: {err}");
        assert!(err.contains(says), "{src} -> {dst}: {err}");
    }
    // b is another space (with a root newer than a's): refused before
    // anything is copied, so the two spaces are never mixed.
    let storage = StorageBuilder::standalone(&b).build().await.unwrap();
    for _ in 0..100 {
        let p = storage.push_bytes(b"b").await.unwrap();
        storage.set_root(p).await.unwrap();
    }
    storage.close().await.unwrap();
    let before = std::fs::read(b.join("space_root")).unwrap();
    let listing = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let files_before = listing(&b);
    let (out, _) = copy(a, b_str, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("holds another space") && err.contains("before copying anything"),
        "{err}"
    );
    assert_eq!(std::fs::read(b.join("space_root")).unwrap(), before);
    assert_eq!(listing(&b), files_before, "nothing was copied into b");
}

#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_s3() {
    let Some(endpoint) = support::moto::server() else {
        return;
    };
    let bucket = format!("copy-{}", uuid::Uuid::new_v4().simple());
    support::moto::create_bucket(&endpoint, &bucket).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (src, back) = (tmp.path().join("src"), tmp.path().join("back"));
    make_space(&src).await;
    let original = dump_dir(&src).await;
    let s3 = format!("s3://{bucket}/spaces/one?endpoint={endpoint}");
    copy_ok(src.to_str().unwrap(), &s3);
    let again = copy_ok(src.to_str().unwrap(), &s3);
    assert_eq!(again["bytes_copied"], 0, "{again}");
    copy_ok(&s3, back.to_str().unwrap());
    assert_eq!(dump_dir(&back).await, original);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_descriptions_name_either_side() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, back) = (tmp.path().join("src"), tmp.path().join("back"));
    make_space(&src).await;
    let original = dump_dir(&src).await;
    // A cloud node's description: its store, prefix and slot size (8 KiB,
    // not the --object-size given) are used.
    let node = tmp.path().join("cloud-node.toml");
    std::fs::write(
        &node,
        "[backend]\ntype = \"cloud\"\nprefix = \"spaces/x\"\nstaging_dir = \"staging\"\nobject_size = 8192\n\
         [backend.store]\ntype = \"local\"\ndir = \"bucket\"\n",
    )
    .unwrap();
    let node = node.to_str().unwrap();
    let s = copy_ok(src.to_str().unwrap(), node);
    let slots: u64 = original
        .0
        .iter()
        .map(|(_, len, _)| len.div_ceil(8192))
        .sum();
    assert_eq!(s["chunks_copied"].as_u64(), Some(slots), "{s}");
    // The node it describes opens the copied space.
    let config = protobase::NodeConfig::load(node).unwrap();
    let storage = config.build().await.unwrap();
    assert_eq!(dump(&storage).await, original);
    copy_ok(node, back.to_str().unwrap());
    assert_eq!(dump_dir(&back).await, original);
    // A description of another kind of backend is refused.
    let mem = tmp.path().join("mem.toml");
    std::fs::write(&mem, "[backend]\ntype = \"memory\"\n").unwrap();
    let (out, _) = copy(mem.to_str().unwrap(), back.to_str().unwrap(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fs and cloud backends"));
}
