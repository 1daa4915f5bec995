//! `protobase copy <src> <dst>`: copies a space between any two locations
//! (directory ↔ object store ↔ directory), verifying CRCs, resumable.
//!
//! - Every source record's CRC32C is checked (a sequential scan of each
//!   WAL); corrupt records are reported and make the exit code 1.
//! - WAL bytes move in chunks of one destination slot object (a directory
//!   destination: one source slot). Slot sizes come from a node
//!   description's backend, else `--object-size`. A chunk already at the destination with the same
//!   length and CRC32C is left alone, so a re-run after an interruption (or
//!   a `--max-bytes` step) copies only what is missing or different. Every
//!   chunk written is read back and its CRC32C compared with the source's.
//! - The root is written last, with the destination's compare-and-swap,
//!   once every WAL is complete and durable: a destination never names a
//!   root whose bytes it lacks. A destination whose root is newer than the
//!   source's is refused.
//!
//! Prints one JSON summary line. Exit codes: 0 done, 1 failure or corrupt
//! source records, 4 stopped by `--max-bytes` (re-run to continue).

use std::process::ExitCode;

use bytes::{Bytes, BytesMut};
use protobase::{Error, WalId, WalStore};
use serde::Serialize;

use crate::CmdResult;
use crate::copy_endpoint::{self, Sink};

/// Exit code of a copy stopped by `--max-bytes`.
const INCOMPLETE: u8 = 4;

/// Options of one copy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CopyOptions {
    /// Slot size of object-store sides not described by a config file.
    pub(crate) object_size: u64,
    /// Stop after writing this many bytes (a bounded step).
    pub(crate) max_bytes: Option<u64>,
}

/// What a copy did.
#[derive(Debug, Default, Serialize)]
struct Summary {
    wals: usize,
    records: u64,
    corrupt_records: usize,
    bytes: u64,
    bytes_copied: u64,
    bytes_present: u64,
    chunks_copied: u64,
    chunks_present: u64,
    config_copied: bool,
    root_sequence: Option<u64>,
    root_copied: bool,
    complete: bool,
}

/// Reads exactly `len` bytes (providers may return less per call).
async fn read_exact(
    provider: &dyn WalStore,
    wal: WalId,
    start: u64,
    len: u64,
) -> Result<Bytes, Error> {
    let first = provider.read(wal, start, len).await?;
    if first.len() as u64 >= len {
        return Ok(first);
    }
    let mut buf = BytesMut::from(&first[..]);
    while (buf.len() as u64) < len {
        let at = start + buf.len() as u64;
        let more = provider.read(wal, at, len - buf.len() as u64).await?;
        if more.is_empty() {
            return Err(Error::io(
                format!("reading WAL {wal} at {at}"),
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "source ended early"),
            ));
        }
        buf.extend_from_slice(&more);
    }
    Ok(buf.freeze())
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} copying [{bar:40}] {bytes}/{total_bytes} ({eta}) {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Copies chunk `index` of `wal` unless the destination has it; returns
/// whether it was written.
async fn copy_chunk(
    source: &dyn WalStore,
    sink: &Sink,
    wal: WalId,
    index: u64,
    start: u64,
    len: u64,
) -> Result<bool, Box<dyn std::error::Error>> {
    let data = read_exact(source, wal, start, len).await?;
    let crc = crc32c::crc32c(&data);
    let same = |b: &Bytes| b.len() == data.len() && crc32c::crc32c(b) == crc;
    if sink
        .read_chunk(wal, index, start, len)
        .await?
        .is_some_and(|b| same(&b))
    {
        return Ok(false);
    }
    sink.write_chunk(wal, index, start, data.clone()).await?;
    match sink.read_chunk(wal, index, start, len).await? {
        Some(back) if same(&back) => Ok(true),
        _ => Err(format!(
            "verification failed: WAL {wal} bytes {start}..{} read back differently",
            start + len
        )
        .into()),
    }
}

pub(crate) async fn run(src: &str, dst: &str, opts: CopyOptions) -> CmdResult {
    if opts.object_size < 64 {
        return Err("--object-size must be at least 64 bytes".into());
    }
    let from = copy_endpoint::parse(src)?;
    let to = copy_endpoint::parse(dst)?;
    if let (copy_endpoint::Endpoint::Dir(a), copy_endpoint::Endpoint::Dir(b)) = (&from, &to)
        && a.canonicalize()
            .ok()
            .is_some_and(|a| b.canonicalize().ok() == Some(a))
    {
        return Err("source and destination are the same directory".into());
    }
    let src_slot = from.slot_size(opts.object_size).unwrap_or(opts.object_size);
    let dst_slot = to.slot_size(opts.object_size);
    // A chunk is one destination slot object; into a directory, one source slot.
    let chunk = dst_slot.unwrap_or(src_slot);
    if chunk < 64 {
        return Err("object size must be at least 64 bytes".into());
    }
    let staging = tempfile::tempdir()?;
    let source = from
        .storage(src_slot, &staging.path().join("source"))
        .await?;
    let sink = to.sink()?;
    let wals = source.list_wals().await?;
    let mut sum = Summary {
        wals: wals.len(),
        bytes: wals.iter().map(|w| w.len).sum(),
        ..Summary::default()
    };
    let bar = progress_bar(sum.bytes);
    let mut complete = true;
    let mut corrupt = Vec::new();
    'wals: for w in &wals {
        bar.set_message(w.id.to_string());
        let report = source.scan_wal(w.id, |_| {}).await?;
        sum.records += report.records;
        for p in &report.corrupt {
            corrupt.push(format!("{}:{}: {}", w.id, p.offset, p.error));
        }
        let mut index = 0u64;
        while index * chunk < w.len {
            let start = index * chunk;
            let len = chunk.min(w.len - start);
            let written = copy_chunk(&**source.wal_store(), &sink, w.id, index, start, len).await?;
            if written {
                sum.bytes_copied += len;
                sum.chunks_copied += 1;
            } else {
                sum.bytes_present += len;
                sum.chunks_present += 1;
            }
            bar.inc(len);
            index += 1;
            if opts.max_bytes.is_some_and(|m| sum.bytes_copied >= m)
                && sum.bytes_present + sum.bytes_copied < sum.bytes
            {
                complete = false;
                break 'wals;
            }
        }
        sink.finish_wal(w.id, w.len).await?;
    }
    bar.finish_and_clear();
    for c in &corrupt {
        eprintln!("CORRUPT {c}");
    }
    sum.corrupt_records = corrupt.len();
    if complete {
        sink.sync().await?;
        if let Some(config) = source.read_config().await? {
            sum.config_copied = sink.write_config(config).await?;
        }
        let root = source.read_current_root().await?;
        sum.root_sequence = root.as_ref().map(|r| r.sequence);
        if let Some(root) = root {
            let target = to
                .provider(chunk, &staging.path().join("destination"), true)
                .await?;
            let outcome = async {
                let _lock = target.lock_root().await?;
                match target.read_root().await? {
                    Some(cur) if cur.root == root => Ok(false),
                    Some(cur) if !root.is_newer_than(&cur.root) => Err(Error::RootConflict {
                        expected: Some(root.sequence),
                        found: Some(cur.root.sequence),
                    }),
                    cur => target
                        .write_root(&root, cur.map(|c| c.version))
                        .await
                        .map(|_| true),
                }
            }
            .await;
            target.close().await?;
            sum.root_copied = outcome.map_err(|e| {
                format!("destination root not replaced (it is newer or another space's): {e}")
            })?;
        }
    }
    source.close().await?;
    sum.complete = complete;
    println!("{}", serde_json::to_string(&sum)?);
    Ok(if !complete {
        eprintln!("protobase: stopped after --max-bytes; re-run to continue");
        ExitCode::from(INCOMPLETE)
    } else if !corrupt.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
