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

#[cfg(not(feature = "s3"))]
compile_error!("the copy tests need the s3 feature (cli enables it)");

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
        // The data's length: a file writer's close mark is not data (a
        // copy to a store leaves it out).
        wals.push((w.id, report.close_mark.unwrap_or(w.len), records));
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
    assert_eq!(s["destination_records"], 60);
    assert_eq!(s["root_copied"], true);
    assert_eq!(s["root_verified"], true);
    assert_eq!(s["config_copied"], true);
    assert_eq!(s["bytes_copied"], s["bytes"]);
    assert_eq!(s["gap_bytes"], 0);
    assert_eq!(s["source_crc32c"], s["destination_crc32c"]);
    let total: u64 = original.0.iter().map(|(_, len, _)| len).sum();
    assert_eq!(s["bytes"], total);
    // The bucket is a cloud space a provider opens as is.
    let in_store = dump_bucket(&bucket, &tmp.path().join("staging")).await;
    assert_eq!(in_store, original);
    assert_eq!(in_store.1, Some(root));

    let b = copy_ok(&url(&bucket), back.to_str().unwrap());
    assert_eq!(b["source_object_size"], OBJECT_SIZE);
    assert_eq!(
        (&b["bytes"], &b["source_crc32c"], &b["records"]),
        (&s["bytes"], &s["source_crc32c"], &s["records"])
    );
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
    assert!(!back.join("space_root.log").exists());
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
    let up = copy_ok(src.to_str().unwrap(), &s3);
    let again = copy_ok(src.to_str().unwrap(), &s3);
    assert_eq!(again["bytes_copied"], 0, "{again}");
    let down = copy_ok(&s3, back.to_str().unwrap());
    let total: u64 = original.0.iter().map(|(_, len, _)| len).sum();
    for s in [&up, &again, &down] {
        assert_eq!(s["bytes"], total, "{s}");
        assert_eq!(s["records"], 60, "{s}");
        assert_eq!(s["destination_records"], 60, "{s}");
        assert_eq!(s["source_crc32c"], up["source_crc32c"], "{s}");
        assert_eq!(s["destination_crc32c"], up["source_crc32c"], "{s}");
    }
    assert_eq!(down["source_object_size"], OBJECT_SIZE);
    assert_eq!(dump_dir(&back).await, original);
    // The S3 space is an address of the other commands too.
    let verify = run_cli(&["verify", &s3]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
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
         store = \"file:bucket\"\n",
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

/// A cloud space written with a commit per slot (every slot sealed early:
/// skip records and gaps) into `bucket` under `prefix`, `object_size`
/// slots; returns the pointers and the root.
async fn make_gappy_cloud_space(
    bucket: &Path,
    staging: &Path,
    prefix: &str,
    object_size: u64,
    commits: u32,
) -> (Vec<protobase::AtomPointer>, RootRecord) {
    use protobase::backends::cloud::Durability;
    std::fs::create_dir_all(bucket).unwrap();
    let store = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(bucket).unwrap());
    let provider = CloudBlockProvider::builder(store, staging)
        .prefix(prefix)
        .object_size(object_size)
        .durability(Durability::Cloud)
        .build()
        .await
        .unwrap();
    let storage = StorageBuilder::cloud(Arc::new(provider))
        .build()
        .await
        .unwrap();
    let mut ptrs = Vec::new();
    let mut root = None;
    for i in 0..commits {
        let p = storage
            .push_atom(&serde_json::json!({"commit": i}), AtomFormat::Json)
            .await
            .unwrap();
        root = Some(storage.set_root(p).await.unwrap());
        ptrs.push(p);
    }
    storage.close().await.unwrap();
    (ptrs, root.unwrap())
}

fn run_cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_protobase"))
        .args(args)
        .output()
        .expect("run protobase")
}

/// Defect 2: a cloud space with slot gaps copied to a directory becomes a
/// sparse WAL about the size of its data that `verify` calls clean and
/// `inspect` counts right; and back into a store it reads the same. Byte
/// counts and CRCs agree at every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_space_with_slot_gaps_copies_to_a_verifiable_directory() {
    const SLOT: u64 = 64 << 10;
    let tmp = tempfile::tempdir().unwrap();
    let (bucket, back, bucket2) = (
        tmp.path().join("bucket"),
        tmp.path().join("back"),
        tmp.path().join("bucket2"),
    );
    let (ptrs, root) = make_gappy_cloud_space(
        &bucket,
        &tmp.path().join("staging"),
        "spaces/gappy",
        SLOT,
        21,
    )
    .await;
    let src = format!("file://{}/spaces/gappy", bucket.display());
    // No --object-size: the slot size is read from the objects.
    let out = run_cli(&["copy", &src, back.to_str().unwrap()]);
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary["complete"], true, "{summary}");
    assert_eq!(summary["records"], 21);
    assert_eq!(summary["destination_records"], 21);
    assert_eq!(summary["source_object_size"], SLOT);
    assert_eq!(summary["source_crc32c"], summary["destination_crc32c"]);
    assert_eq!(summary["root_verified"], true);
    let data = summary["bytes"].as_u64().unwrap();
    let gaps = summary["gap_bytes"].as_u64().unwrap();
    assert!(gaps > 10 * SLOT && data < 2 * SLOT, "{summary}");

    // The directory: one WAL, sparse (disk use about its data), clean.
    let wal = ptrs[0].wal_id;
    let meta = std::fs::metadata(back.join(wal.to_string())).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.len(), data + gaps);
    assert!(
        meta.blocks() * 512 < meta.len() / 4,
        "{} bytes on disk for a {}-byte WAL holding {data} bytes of data",
        meta.blocks() * 512,
        meta.len()
    );
    let verify = run_cli(&["verify", back.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{text}");
    assert!(
        text.contains("21 records, 0 problems") && !text.contains("torn"),
        "{text}"
    );
    let inspect =
        String::from_utf8_lossy(&run_cli(&["inspect", back.to_str().unwrap()]).stdout).to_string();
    let line = inspect
        .lines()
        .find(|l| l.starts_with(&wal.to_string()))
        .unwrap();
    assert_eq!(line.split_whitespace().nth(2), Some("21"), "{inspect}");
    assert!(line.contains("20 slot gaps"), "{inspect}");
    let in_dir = dump_dir(&back).await;
    assert_eq!(in_dir.1, Some(root.clone()));
    assert_eq!(in_dir.0[0].2.len(), 21);

    // Back into a store: one object per slot holding data, nothing for gaps.
    // (No --object-size: the gaps' slot size is the destination's.)
    let out = run_cli(&["copy", back.to_str().unwrap(), &url(&bucket2)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(s["complete"], true, "{s}");
    assert_eq!(s["destination_object_size"], SLOT, "{s}");
    assert_eq!(s["chunks_copied"], 21, "{s}");
    assert_eq!(s["source_crc32c"], summary["source_crc32c"]);
    let staging = tmp.path().join("staging2");
    let store = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&bucket2).unwrap());
    let provider = CloudBlockProvider::builder(store, &staging)
        .object_size(SLOT)
        .no_cache()
        .build()
        .await
        .unwrap();
    let again = dump(
        &StorageBuilder::new()
            .with_block_provider(Arc::new(provider))
            .read_only(true)
            .build()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(again, in_dir);

    // Another slot size cannot hold those gaps.
    let (out, _) = copy(
        back.to_str().unwrap(),
        &url(&tmp.path().join("bucket3")),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs the same slot size"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Defect 1: a store read with the wrong slot size, a mistyped prefix and
/// an unknown source are refused, never reported complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_slot_sizes_and_empty_sources_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, bucket) = (tmp.path().join("src"), tmp.path().join("bucket"));
    make_space(&src).await;
    // Written with 4096-byte slots (the copy helper's --object-size).
    copy_ok(src.to_str().unwrap(), &url(&bucket));
    let restored = tmp.path().join("restored");
    let out = run_cli(&[
        "copy",
        &url(&bucket),
        restored.to_str().unwrap(),
        "--object-size",
        "1024",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("written with 4096-byte slots"), "{err}");
    assert!(out.stdout.is_empty(), "no summary claims anything");
    assert!(!restored.exists(), "nothing was created");
    for bad in [
        format!("file://{}/typo", bucket.display()),
        tmp.path().join("nope").display().to_string(),
    ] {
        let out = run_cli(&["copy", &bad, restored.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad}: {err}");
        assert!(
            err.contains("holds no space") || err.contains("no such directory"),
            "{bad}: {err}"
        );
        assert!(!err.contains("complete"));
    }
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run_cli(&["copy", empty.to_str().unwrap(), restored.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no space"));
    // A dry run into memory:// verifies everything and keeps nothing.
    let out = run_cli(&["copy", src.to_str().unwrap(), "memory://"]);
    let s: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s["complete"], true);
    assert_eq!(s["records"], 60);
    assert_eq!(s["destination_records"], 60);
    // A cluster node's directory is not the whole space.
    std::fs::write(src.join("cluster_acceptor"), b"{}").unwrap();
    let out = run_cli(&["copy", src.to_str().unwrap(), restored.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("--config"), "{err}");
}

/// A source written during the copy (a live space): the copy is of the
/// root read first and of the WALs at the lengths listed after it, so it
/// is complete, every record it holds is the source's record at the same
/// offset, its root reads back, and `verify` calls it clean — however the
/// writes interleave with the copy's scan, copy and checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_written_during_the_copy_copies_a_consistent_prefix() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    // Small WALs: new WALs appear while copies run; 8 MB written first, so
    // the writer commits while a copy scans and copies.
    let storage = StorageBuilder::standalone(&src)
        .max_wal_size(512 << 10)
        .build()
        .await
        .unwrap();
    for i in 0..80u8 {
        storage.push_bytes(&vec![i; 100_000]).await.unwrap();
    }
    let p = storage.push_bytes(b"first").await.unwrap();
    storage.set_root(p).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (published, mut progress) = tokio::sync::watch::channel(0u64);
    let writer = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let data = vec![(i % 251) as u8; 100 + (i as usize * 37) % 3000];
                let p = storage.push_bytes(&data).await.unwrap();
                storage.set_root(p).await.unwrap();
                i += 1;
                published.send_replace(i);
            }
            storage.close().await.unwrap();
        }
    });
    // Waits until the writer has published 20 more roots (progress, not time).
    let mut advance = async || {
        let target = *progress.borrow() + 20;
        progress.wait_for(|n| *n >= target).await.unwrap();
    };
    let mut copies = Vec::new();
    for i in 0..3 {
        advance().await;
        let dst = tmp.path().join(format!("copy{i}"));
        let (s, d) = (src.to_str().unwrap().to_string(), dst.clone());
        let summary = tokio::task::spawn_blocking(move || copy_ok(&s, d.to_str().unwrap()))
            .await
            .unwrap();
        assert_eq!(summary["corrupt_records"], 0, "{summary}");
        assert_eq!(summary["root_verified"], true, "{summary}");
        assert_eq!(summary["source_crc32c"], summary["destination_crc32c"]);
        let out = run_cli(&["verify", dst.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "verify {}: {}",
            dst.display(),
            String::from_utf8_lossy(&out.stdout)
        );
        copies.push((dst, summary));
    }
    // The source kept growing after the last copy.
    advance().await;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();

    let final_src = StorageBuilder::standalone(&src)
        .read_only(true)
        .build()
        .await
        .unwrap();
    let final_root = final_src.read_current_root().await.unwrap().unwrap();
    for (dst, summary) in &copies {
        let c = StorageBuilder::standalone(dst)
            .read_only(true)
            .build()
            .await
            .unwrap();
        let root = c.read_current_root().await.unwrap().expect("a root");
        assert!(final_root.is_newer_than(&root), "the source moved on");
        assert_eq!(summary["root_sequence"], root.sequence);
        assert_eq!(
            c.get_record(root.pointer).await.unwrap(),
            final_src.get_record(root.pointer).await.unwrap()
        );
        let mut records = 0;
        for w in c.list_wals().await.unwrap() {
            let report = c.scan_wal(w.id, |_| {}).await.unwrap();
            assert!(report.corrupt.is_empty(), "{report:?}");
            for offset in report.offsets {
                let ptr = protobase::AtomPointer {
                    wal_id: w.id,
                    offset,
                };
                assert_eq!(
                    c.get_record(ptr).await.unwrap(),
                    final_src.get_record(ptr).await.unwrap(),
                    "{ptr}"
                );
                records += 1;
            }
        }
        assert_eq!(summary["records"], records, "{summary}");
        c.close().await.unwrap();
    }
    final_src.close().await.unwrap();
}
