//! Issue 15's space-growth keys:
//!
//! - `open_after_history`: open a standalone space and read its root, µs
//!   p50, after 10,000 commits and 1,000 open/close cycles (quick: 1,000
//!   and 100); baseline: the same on a fresh space of one commit. Open must
//!   not grow with the space's past (target: ratio <= 2).
//! - `space_amplification`: bytes in the space directory ÷ live payload
//!   bytes after a workload that rewrites every object 10 times (one
//!   commit per round, the root an index of the objects' pointers) and a
//!   reclamation with the index's live set; baseline 1.0 (live bytes
//!   alone), so the ratio is the amplification (target <= 1.5).

use std::path::Path;
use std::time::{Duration, Instant};

use protobase::{AtomPointer, ReclaimOptions, Storage, StorageBuilder};

use crate::bench::{BenchResult, Row, fresh};
use crate::bench_cluster::p50_us;

/// Open + read root, `samples` times, p50 in µs.
async fn open_read_p50(dir: &Path, samples: usize) -> BenchResult<f64> {
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        let s = StorageBuilder::standalone(dir).build().await?;
        let root = s.read_current_root().await?;
        times.push(t.elapsed());
        if root.is_none() {
            return Err("open_after_history: the space lost its root".into());
        }
        s.close().await?;
    }
    Ok(p50_us(times))
}

pub(crate) async fn open_after_history(base: &Path, quick: bool) -> BenchResult<Row> {
    let (commits, cycles, samples) = if quick {
        (1_000, 100, 21)
    } else {
        (10_000, 1_000, 51)
    };
    let old = fresh(base, "open_after_history")?;
    let s = StorageBuilder::standalone(&old).build().await?;
    for i in 0..commits {
        let p = s.push_bytes(format!("commit {i}").as_bytes()).await?;
        s.set_root(p).await?;
    }
    s.close().await?;
    for i in 0..cycles {
        let s = StorageBuilder::standalone(&old).build().await?;
        let p = s.push_bytes(format!("cycle {i}").as_bytes()).await?;
        s.set_root(p).await?;
        s.close().await?;
    }
    let young = fresh(base, "open_fresh")?;
    let s = StorageBuilder::standalone(&young).build().await?;
    let p = s.push_bytes(b"commit 0").await?;
    s.set_root(p).await?;
    s.close().await?;
    // Interleaved halves, so both see the same machine state.
    let (mut ours, mut fresh_space) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        ours.push(open_read_p50(&old, samples / 3 + 1).await?);
        fresh_space.push(open_read_p50(&young, samples / 3 + 1).await?);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok(Row {
        name: "open_after_history",
        value: median(ours),
        unit: "us p50",
        baseline: median(fresh_space),
        baseline_desc: "the same on a fresh space of one commit",
    })
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() {
            dir_bytes(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(total)
}

pub(crate) async fn space_amplification(base: &Path, quick: bool) -> BenchResult<Row> {
    let (objects, size) = if quick { (100, 2_048) } else { (500, 8_192) };
    const REWRITES: usize = 10;
    let dir = fresh(base, "space_amplification")?;
    let open = || async {
        StorageBuilder::standalone(&dir)
            .max_wal_size(256 << 10)
            .build()
            .await
    };
    let s: Storage = open().await?;
    let mut rng = fastrand::Rng::with_seed(15);
    let mut current: Vec<Option<AtomPointer>> = vec![None; objects];
    for round in 0..REWRITES {
        let mut order: Vec<usize> = (0..objects).collect();
        rng.shuffle(&mut order);
        for i in order {
            let mut v = vec![(round * 31 + i) as u8; size];
            v[..8].copy_from_slice(&(i as u64).to_le_bytes());
            current[i] = Some(s.push_bytes(&v).await?);
        }
        let index: Vec<String> = current.iter().flatten().map(|p| p.to_string()).collect();
        let root = s.push_atom(&index, protobase::AtomFormat::Json).await?;
        s.set_root(root).await?;
    }
    s.close().await?;
    // The object database's reachability walk: the index and its objects.
    let s = open().await?;
    let root = s
        .read_current_root()
        .await?
        .ok_or("space_amplification: no root")?;
    let index: Vec<String> = s.get_atom(root.pointer).await?;
    let mut live = vec![root.pointer.wal_id];
    let mut live_bytes = s.get_bytes(root.pointer).await?.len() as u64;
    for p in &index {
        let p: AtomPointer = p.parse()?;
        live.push(p.wal_id);
        live_bytes += s.get_bytes(p).await?.len() as u64;
    }
    let report = s
        .reclaim(live, ReclaimOptions::new().min_age(Duration::ZERO))
        .await?;
    s.close().await?;
    if report.retired.is_empty() {
        return Err(format!("space_amplification: nothing reclaimed ({:?})", report.kept).into());
    }
    let on_disk = dir_bytes(&dir)?;
    Ok(Row {
        name: "space_amplification",
        value: on_disk as f64 / live_bytes.max(1) as f64,
        unit: "x live bytes",
        baseline: 1.0,
        baseline_desc: "live bytes alone (ratio = amplification)",
    })
}
