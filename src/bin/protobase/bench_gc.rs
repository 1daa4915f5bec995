//! `gc_reclaim`: how fast [`Storage::reclaim`](protobase::Storage::reclaim)
//! removes WALs nothing live points into, against removing the same files
//! by hand (unlink + directory fsync each: the same durability).

use std::path::Path;
use std::time::{Duration, Instant};

use protobase::{ReclaimOptions, StorageBuilder};

use crate::bench::{BenchResult, Row, fresh};

/// `gc_reclaim` in MB/s of reclaimed WAL bytes.
pub(crate) async fn gc_reclaim(base: &Path, quick: bool) -> BenchResult<Row> {
    let (wals, size) = if quick {
        (16, 256 << 10)
    } else {
        (64, 1 << 20)
    };
    let blob = vec![0x6Bu8; size];

    // Ours: one WAL per blob; the root's WAL stays.
    let dir = fresh(base, "gc_reclaim")?;
    let storage = StorageBuilder::standalone(&dir)
        .max_wal_size(size as u64)
        .build()
        .await?;
    let mut last = None;
    for _ in 0..=wals {
        last = Some(storage.push_bytes(&blob).await?);
    }
    if let Some(p) = last {
        storage.set_root(p).await?;
    }
    storage.close().await?;
    let storage = StorageBuilder::standalone(&dir).build().await?;
    let t = Instant::now();
    let report = storage
        .reclaim([], ReclaimOptions::new().min_age(Duration::ZERO))
        .await?;
    let ours = t.elapsed();
    storage.close().await?;
    let reclaimed = report.retired_bytes();
    if report.retired.len() < wals {
        return Err(format!(
            "gc_reclaim: {} of {wals} WALs reclaimed ({:?})",
            report.retired.len(),
            report.kept
        )
        .into());
    }

    // Raw: the same number of files of the same sizes, unlinked durably.
    let raw_dir = fresh(base, "gc_raw")?;
    let per_file = reclaimed / report.retired.len() as u64;
    let paths: Vec<_> = (0..report.retired.len())
        .map(|i| raw_dir.join(format!("f{i}")))
        .collect();
    for p in &paths {
        std::fs::write(p, vec![0x6Bu8; per_file as usize])?;
    }
    std::fs::File::open(&raw_dir)?.sync_all()?;
    let raw = tokio::task::spawn_blocking(move || -> std::io::Result<Duration> {
        let t = Instant::now();
        let d = std::fs::File::open(&raw_dir)?;
        for p in &paths {
            std::fs::remove_file(p)?;
            d.sync_all()?;
        }
        Ok(t.elapsed())
    })
    .await??;
    let mbps = |d: Duration| reclaimed as f64 / 1e6 / d.as_secs_f64().max(1e-9);
    Ok(Row {
        name: "gc_reclaim",
        value: mbps(ours),
        unit: "MB/s",
        baseline: mbps(raw),
        baseline_desc: "unlink + directory fsync of the same files",
    })
}
