//! `protobase bench`: throughput and latency against raw baselines measured
//! in the same run.
//!
//! Every scenario runs with its baseline in `--rounds` rounds (default 5):
//! each round runs every scenario once, its samples alternating with the
//! baseline's where the scenario allows, so that a moment of a busy disk or
//! CPU falls on both. The machine (cores, kernel, filesystem of the
//! benchmark's directory) is printed first.
//!
//! Prints a human table (one baseline column, a `better` column saying
//! whether higher or lower values are better, the spread of the ratio over
//! the rounds, and what each baseline is), then as the last line one JSON
//! object keyed by scenario: `{"value", "unit", "baseline", "ratio",
//! "better", "rounds", "spread"}`. `value` and `baseline` are the medians
//! over the rounds; `ratio` is the median of the rounds' own ratios (value
//! ÷ baseline of one round, both in the same unit: the pairs measured at
//! the same moment); `spread` holds the `min` and `max` of `value`,
//! `baseline` and `ratio` over the rounds. Cloud rows run on an in-memory
//! store unless an S3 endpoint is given: they are then marked `(*)` in the
//! table and `"measurement": false` in the JSON (they measure no real
//! store). With `--dir`, whatever the benchmark created there is removed
//! at the end.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protobase::{AtomPointer, Storage, StorageBuilder};
use serde_json::json;

use crate::out::outln;

pub(crate) type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// One measured scenario.
pub(crate) struct Row {
    pub(crate) name: &'static str,
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
    pub(crate) baseline: f64,
    pub(crate) baseline_desc: &'static str,
}

impl Row {
    /// `value / baseline` (0 without a baseline).
    pub(crate) fn ratio(&self) -> f64 {
        if self.baseline > 0.0 {
            self.value / self.baseline
        } else {
            0.0
        }
    }

    /// Whether a higher value is better: rates (`…/s`) yes, latencies no.
    pub(crate) fn higher_is_better(&self) -> bool {
        self.unit.ends_with("/s")
    }
}

/// Removes what the benchmark created in a `--dir` given by the user (the
/// directory itself only if the benchmark created it), also on an error.
struct Cleanup {
    dir: PathBuf,
    created: bool,
    before: std::collections::HashSet<std::ffi::OsString>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_dir_all(&self.dir);
            return;
        }
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if !self.before.contains(&e.file_name()) {
                    let p = e.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        }
    }
}

struct Sizes {
    small_records: usize,
    large_blobs: usize,
    serial_commits: usize,
    concurrent_tasks: usize,
    commits_per_task: usize,
    read_records: usize,
    reads: usize,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                small_records: 100_000,
                large_blobs: 16,
                serial_commits: 50,
                concurrent_tasks: 64,
                commits_per_task: 5,
                read_records: 20_000,
                reads: 50_000,
            }
        } else {
            Sizes {
                small_records: 1_000_000,
                large_blobs: 128,
                serial_commits: 300,
                concurrent_tasks: 64,
                commits_per_task: 40,
                read_records: 200_000,
                reads: 500_000,
            }
        }
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> BenchResult<T> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

pub(crate) fn fresh(base: &Path, name: &str) -> BenchResult<PathBuf> {
    let d = base.join(name);
    if d.exists() {
        std::fs::remove_dir_all(&d)?;
    }
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// A group of scenarios (`protobase bench --only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Group {
    /// push, commit, get and gc on a standalone space.
    Local,
    /// RTTs, votes, root updates and peer pages on a 3-node cluster.
    Cluster,
    /// Cloud and cloud-cluster scenarios on the object store.
    Cloud,
}

pub(crate) async fn run(
    quick: bool,
    dir: Option<PathBuf>,
    metrics: bool,
    only: &[Group],
    rounds: usize,
) -> BenchResult<ExitCode> {
    if rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    let runs = |g: Group| only.is_empty() || only.contains(&g);
    // The recorder `protobase node` installs, before any storage is built,
    // to measure what recording costs (`--metrics`).
    let _recorder = if metrics {
        Some(crate::http::install_recorder().map_err(|e| e.to_string())?)
    } else {
        None
    };
    let _tmp;
    let _cleanup;
    let base = match dir {
        Some(d) => {
            let created = !d.exists();
            std::fs::create_dir_all(&d)?;
            let before = std::fs::read_dir(&d)?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect();
            _cleanup = Cleanup {
                dir: d.clone(),
                created,
                before,
            };
            d
        }
        None => {
            let t = tempfile::tempdir()?;
            let p = t.path().to_path_buf();
            _tmp = t;
            p
        }
    };
    let sizes = Sizes::new(quick);
    eprintln!(
        "protobase bench ({}{}, {rounds} round{}) in {}",
        if quick { "quick" } else { "full" },
        if metrics {
            ", Prometheus recorder installed"
        } else {
            ""
        },
        if rounds == 1 { "" } else { "s" },
        base.display()
    );
    let machine = crate::bench_machine::describe(&base);
    outln!("machine: {}", machine.line());
    let mut cloud_store = String::from("(not run)");
    let mut per_round = Vec::with_capacity(rounds);
    for round in 0..rounds {
        eprintln!("round {} of {rounds}", round + 1);
        let rows = one_round(&base, &sizes, quick, &runs, round, &mut cloud_store).await?;
        per_round.push(rows);
    }
    let rows = crate::bench_rounds::aggregate(&per_round);

    let in_memory =
        !std::env::var(crate::bench_cloud::S3_ENDPOINT_VAR).is_ok_and(|v| !v.trim().is_empty());
    let is_cloud = |name: &str| name.starts_with("cloud_") || name.starts_with("cc_");
    outln!("cloud scenarios ran on: {cloud_store}");
    if in_memory {
        outln!(
            "(*) in-memory object store: cloud rows measure this process's own code only, not \
             any real store; set {} for a measurement",
            crate::bench_cloud::S3_ENDPOINT_VAR
        );
    }
    outln!(
        "{:<26} {:>14} {:<10} {:>14} {:>7} {:>15}  {:<6}  compared with",
        "scenario",
        "value",
        "unit",
        "baseline",
        "ratio",
        "ratio min-max",
        "better"
    );
    for r in &rows {
        let mark = if in_memory && is_cloud(r.name) {
            " (*)"
        } else {
            ""
        };
        outln!(
            "{:<26} {:>14.1} {:<10} {:>14.1} {:>7.3} {:>15}  {:<6}  {}",
            format!("{}{mark}", r.name),
            r.value.median,
            r.unit,
            r.baseline.median,
            r.ratio.median,
            format!("{:.3}-{:.3}", r.ratio.min, r.ratio.max),
            r.better(),
            r.baseline_desc
        );
    }
    let mut obj = serde_json::Map::new();
    for r in &rows {
        let mut entry = r.to_json();
        if is_cloud(r.name) {
            entry["store"] = json!(cloud_store);
            if in_memory {
                entry["measurement"] = json!(false);
            }
        }
        obj.insert(r.name.to_string(), entry);
    }
    outln!("{}", serde_json::Value::Object(obj));
    Ok(ExitCode::SUCCESS)
}

/// Runs every selected scenario once, with its baseline.
async fn one_round(
    base: &Path,
    sizes: &Sizes,
    quick: bool,
    runs: &impl Fn(Group) -> bool,
    round: usize,
    cloud_store: &mut String,
) -> BenchResult<Vec<Row>> {
    let mut rows = Vec::new();
    if runs(Group::Local) {
        rows.push(push_small(base, sizes).await?);
        rows.push(push_large(base, sizes).await?);
        let serial = commit_serial(base, sizes).await?;
        let serial_value = serial.value;
        rows.push(serial);
        rows.push(commit_concurrent(base, sizes, serial_value).await?);
        let (cold, cached) = gets(base, sizes).await?;
        rows.push(cold);
        rows.push(cached);
        rows.push(crate::bench_gc::gc_reclaim(base, quick).await?);
        rows.push(crate::bench_space::open_after_history(base, quick).await?);
        rows.push(crate::bench_space::space_amplification(base, quick).await?);
    }
    if runs(Group::Cluster) {
        rows.extend(crate::bench_cluster::run(base, quick).await?);
    }
    if runs(Group::Cloud) {
        let local_cached = rows
            .iter()
            .find(|r| r.name == "get_cached")
            .map_or(0.0, |r| r.value);
        let (store, desc, run) = crate::bench_cloud::bench_store().await?;
        *cloud_store = desc;
        // A key prefix of its own per round.
        let run = format!("{run}/r{round}");
        let mut cloud_rows = crate::bench_cloud::run(base, quick, store.clone(), &run).await?;
        cloud_rows.extend(crate::bench_cc::run(base, store, &run, quick).await?);
        for mut row in cloud_rows {
            if row.name == "cloud_get_cached" {
                if !runs(Group::Local) {
                    // Its baseline is the local get_cached of this run.
                    eprintln!("cloud_get_cached left out: it needs the local group");
                    continue;
                }
                row.baseline = local_cached;
            }
            rows.push(row);
        }
    }

    Ok(rows)
}

async fn push_small(base: &Path, s: &Sizes) -> BenchResult<Row> {
    let n = s.small_records;
    let payload = [0xA5u8; 100];
    let raw_path = fresh(base, "raw_small")?.join("wal");
    let raw = blocking(move || {
        let t = Instant::now();
        let f = File::create(&raw_path)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &f);
        for _ in 0..n {
            w.write_all(&payload)?;
        }
        w.flush()?;
        drop(w);
        f.sync_data()?;
        Ok(rate(n, t.elapsed()))
    })
    .await?;
    let storage = Storage::open(fresh(base, "push_small")?).await?;
    let t = Instant::now();
    for _ in 0..n {
        storage.push_bytes(&payload).await?;
    }
    storage.flush_wal().await?;
    let value = rate(n, t.elapsed());
    storage.close().await?;
    Ok(Row {
        name: "push_small",
        value,
        unit: "records/s",
        baseline: raw,
        baseline_desc: "buffered file append of the same 100-byte records + one fdatasync",
    })
}

const MIB: usize = 1 << 20;

/// Baseline and scenario samples are taken alternately (one raw cycle, one
/// of ours), so both see the same disk and CPU state; the disk of this VM
/// varies several-fold between moments.
async fn push_large(base: &Path, s: &Sizes) -> BenchResult<Row> {
    let n = s.large_blobs;
    let blob: Vec<u8> = (0..MIB).map(|i| (i * 31 % 251) as u8).collect();
    let raw_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(fresh(base, "raw_large")?.join("wal"))?;
    let storage = Storage::open(fresh(base, "push_large")?).await?;
    let (mut raw, mut ours) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..n {
        let t = Instant::now();
        tokio::task::block_in_place(|| {
            (&raw_file).write_all(&blob)?;
            raw_file.sync_data()
        })?;
        raw += t.elapsed();
        let t = Instant::now();
        storage.push_bytes(&blob).await?;
        storage.flush_wal().await?;
        ours += t.elapsed();
    }
    storage.close().await?;
    let mbps = |d: Duration| (n * MIB) as f64 / 1e6 / d.as_secs_f64().max(1e-9);
    Ok(Row {
        name: "push_large",
        value: mbps(ours),
        unit: "MB/s",
        baseline: mbps(raw),
        baseline_desc: "append 1 MiB + fdatasync (alternating samples)",
    })
}

async fn commit_serial(base: &Path, s: &Sizes) -> BenchResult<Row> {
    let n = s.serial_commits;
    let raw_dir = fresh(base, "raw_commit")?;
    let wal = OpenOptions::new()
        .create(true)
        .append(true)
        .open(raw_dir.join("wal"))?;
    let storage = Storage::open(fresh(base, "commit_serial")?).await?;
    let (mut raw, mut ours) = (Duration::ZERO, Duration::ZERO);
    for i in 0..n {
        let t = Instant::now();
        tokio::task::block_in_place(|| {
            (&wal).write_all(&[0x5Au8; 100])?;
            wal.sync_data()?;
            let tmp = raw_dir.join("root.tmp");
            let f = File::create(&tmp)?;
            f.write_all_at(format!("{{\"offset\":{i}}}").as_bytes(), 0)?;
            f.sync_all()?;
            std::fs::rename(&tmp, raw_dir.join("root"))?;
            sync_dir(&raw_dir)
        })?;
        raw += t.elapsed();
        let t = Instant::now();
        let p = storage.push_bytes(&[0x5Au8; 100]).await?;
        storage.set_root(p).await?;
        ours += t.elapsed();
    }
    storage.close().await?;
    Ok(Row {
        name: "commit_serial",
        value: rate(n, ours),
        unit: "commits/s",
        baseline: rate(n, raw),
        baseline_desc: "append + fdatasync + root tmp/fsync/rename/dir-fsync (alternating)",
    })
}

async fn commit_concurrent(base: &Path, s: &Sizes, serial: f64) -> BenchResult<Row> {
    let storage = Storage::open(fresh(base, "commit_concurrent")?).await?;
    let value = commits_per_second(
        std::slice::from_ref(&storage),
        s.concurrent_tasks,
        s.commits_per_task,
    )
    .await?;
    storage.close().await?;
    Ok(Row {
        name: "commit_concurrent",
        value,
        unit: "commits/s",
        baseline: serial,
        baseline_desc: "commit_serial (this run)",
    })
}

/// How many tasks commit at once in the `*_commit_concurrent` scenarios.
pub(crate) const CONCURRENT_COMMITTERS: usize = 64;

/// `committers` tasks spread over `storages` (round robin), each pushing a
/// record and publishing it as the root `per_task` times: the commits/s of
/// all of them together.
pub(crate) async fn commits_per_second(
    storages: &[Storage],
    committers: usize,
    per_task: usize,
) -> BenchResult<f64> {
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(committers);
    for i in 0..committers {
        let st = storages[i % storages.len()].clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                let p = st.push_bytes(&[0x3Cu8; 100]).await?;
                st.set_root(p).await?;
            }
            Ok::<_, protobase::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(rate(committers * per_task, t.elapsed()))
}

/// Builds a space of 100-byte records, then measures random reads without
/// (`get_cold`) and with (`get_cached`) the page cache.
async fn gets(base: &Path, s: &Sizes) -> BenchResult<(Row, Row)> {
    let dir = fresh(base, "gets")?;
    let storage = Storage::open(&dir).await?;
    let mut ptrs = Vec::with_capacity(s.read_records);
    for i in 0..s.read_records {
        let mut rec = [0u8; 100];
        rec[..8].copy_from_slice(&(i as u64).to_le_bytes());
        ptrs.push(storage.push_bytes(&rec).await?);
    }
    storage.close().await?;
    let mut rng = fastrand::Rng::with_seed(7);
    let order: Vec<AtomPointer> = (0..s.reads)
        .map(|_| ptrs[rng.usize(..ptrs.len())])
        .collect();

    // Baseline: pread of the same record bytes through the OS page cache.
    let files: Arc<Vec<(AtomPointer, PathBuf)>> = Arc::new(
        order
            .iter()
            .map(|p| (*p, dir.join(p.wal_id.to_string())))
            .collect(),
    );
    let f2 = files.clone();
    let raw = blocking(move || {
        let mut open: std::collections::HashMap<PathBuf, File> = Default::default();
        for (_, path) in f2.iter() {
            if !open.contains_key(path) {
                open.insert(path.clone(), File::open(path)?);
            }
        }
        let mut buf = [0u8; 113];
        let t = Instant::now();
        for (p, path) in f2.iter() {
            open[path].read_exact_at(&mut buf, p.offset)?;
        }
        Ok(rate(f2.len(), t.elapsed()))
    })
    .await?;

    let cold = StorageBuilder::standalone(&dir)
        .page_cache_size(0)
        .build()
        .await?;
    let t = Instant::now();
    for p in &order {
        cold.get_bytes(*p).await?;
    }
    let cold_rate = rate(order.len(), t.elapsed());
    cold.close().await?;

    let cached = Storage::open(&dir).await?;
    for p in &ptrs {
        cached.get_bytes(*p).await?;
    }
    let t = Instant::now();
    for p in &order {
        cached.get_bytes(*p).await?;
    }
    let cached_rate = rate(order.len(), t.elapsed());
    cached.close().await?;
    Ok((
        Row {
            name: "get_cold",
            value: cold_rate,
            unit: "ops/s",
            baseline: raw,
            baseline_desc: "pread of the record bytes (OS page cache)",
        },
        Row {
            name: "get_cached",
            value: cached_rate,
            unit: "ops/s",
            baseline: raw,
            baseline_desc: "pread of the record bytes (OS page cache)",
        },
    ))
}
