//! Cloud scenarios of `protobase bench`.
//!
//! They run against the S3-compatible server named by
//! `PROTOBASE_BENCH_S3_ENDPOINT` (e.g. `http://127.0.0.1:5000`; path-style,
//! bucket `bench`, created if missing; credentials from the environment or
//! `test`/`test`), under a fresh `run-<uuid>/` prefix, and otherwise against
//! an in-memory store. The table and the JSON (`"store"` of each `cloud_*`
//! entry) say which. Baselines are raw `object_store` requests on the same
//! store in the same run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::memory::InMemory;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use protobase::backends::cloud::{CloudBlockProvider, Durability};
use protobase::{AtomPointer, BlockProvider, Storage, StorageBuilder};

use crate::bench::{BenchResult, CONCURRENT_COMMITTERS, Row, commits_per_second, fresh};

const MIB: usize = 1 << 20;

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

async fn storage(provider: &Arc<CloudBlockProvider>) -> BenchResult<Storage> {
    let p: Arc<dyn BlockProvider> = provider.clone();
    Ok(StorageBuilder::new().with_block_provider(p).build().await?)
}

/// The environment variable naming the S3 endpoint of the cloud scenarios.
pub(crate) const S3_ENDPOINT_VAR: &str = "PROTOBASE_BENCH_S3_ENDPOINT";
const S3_BUCKET: &str = "bench";

/// The store of the cloud scenarios, its description and the key prefix of
/// this run.
pub(crate) async fn bench_store() -> BenchResult<(Arc<dyn ObjectStore>, String, String)> {
    match std::env::var(S3_ENDPOINT_VAR) {
        Ok(ep) if !ep.trim().is_empty() => {
            let ep = ep.trim().trim_end_matches('/').to_string();
            protobase::backends::cloud::create_bucket_if_missing(S3_BUCKET, &ep).await?;
            let store = protobase::backends::cloud::s3_store(S3_BUCKET, Some(&ep))?;
            let run = format!("run-{}", uuid::Uuid::new_v4().simple());
            let desc = format!("S3 at {ep} (bucket {S3_BUCKET}, prefix {run}/)");
            Ok((Arc::new(store), desc, run))
        }
        _ => Ok((
            Arc::new(InMemory::new()),
            format!("in-memory object store (set {S3_ENDPOINT_VAR} for S3)"),
            "run".to_string(),
        )),
    }
}

/// Runs the cloud scenarios on `store`, under the key prefix `run`.
pub(crate) async fn run(
    base: &Path,
    quick: bool,
    store: Arc<dyn ObjectStore>,
    run: &str,
) -> BenchResult<Vec<Row>> {
    let key = |rest: &str| format!("{run}/{rest}");
    let (blobs, commits, records, reads) = if quick {
        (16, 30, 5_000, 5_000)
    } else {
        (64, 200, 20_000, 50_000)
    };

    // cloud_upload: 1 MiB records through staging and the uploader, MB/s;
    // baseline: raw PUTs of whole 5 MiB objects, the same bytes.
    let object = CloudBlockProvider::builder(store.clone(), fresh(base, "cloud_stage_up")?)
        .prefix(key("upload"))
        .build()
        .await?;
    let object_size = object.object_size() as usize;
    let provider = Arc::new(object);
    let up = storage(&provider).await?;
    let blob = vec![0x5Au8; MIB];
    let t = Instant::now();
    for _ in 0..blobs {
        up.push_bytes(&blob).await?;
    }
    up.flush_wal().await?;
    provider.flush_uploads().await?;
    let ours = t.elapsed();
    up.close().await?;
    let total = blobs * MIB;
    let raw_obj = PutPayload::from(vec![0x5Au8; object_size]);
    let t = Instant::now();
    // As many PUTs in flight as the uploader runs at once.
    {
        use futures_util::{StreamExt, TryStreamExt};
        futures_util::stream::iter(0..total.div_ceil(object_size))
            .map(|i| {
                let (store, path, obj) = (
                    store.clone(),
                    StorePath::from(key(&format!("raw/{i}"))),
                    raw_obj.clone(),
                );
                async move { store.put(&path, obj).await }
            })
            .buffer_unordered(protobase::backends::cloud::DEFAULT_UPLOAD_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
    }
    let raw = t.elapsed();
    let mbps = |d: Duration| total as f64 / 1e6 / d.as_secs_f64().max(1e-9);
    let upload = Row {
        name: "cloud_upload",
        value: mbps(ours),
        unit: "MB/s",
        baseline: mbps(raw),
        baseline_desc: "raw PUTs of 5 MiB objects, same bytes, 4 in flight (as the uploader)",
    };

    // cloud_commit: durable commit in Cloud mode (slots and root in the
    // store before it returns), ms p50; baseline: one raw small PUT.
    let provider = Arc::new(
        CloudBlockProvider::builder(store.clone(), fresh(base, "cloud_stage_commit")?)
            .prefix(key("commit"))
            .durability(Durability::Cloud)
            .build()
            .await?,
    );
    let st = storage(&provider).await?;
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for i in 0..commits + commits / 10 {
        let t = Instant::now();
        store
            .put(
                &StorePath::from(key(&format!("raw/small/{i}"))),
                PutPayload::from(vec![1u8; 100]),
            )
            .await?;
        let r = t.elapsed();
        let t = Instant::now();
        let p = st.push_bytes(&[2u8; 100]).await?;
        st.set_root(p).await?;
        if i >= commits / 10 {
            ours.push(t.elapsed());
            raw.push(r);
        }
    }
    let raw_put = p50(raw);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let commit = Row {
        name: "cloud_commit",
        value: ms(p50(ours)),
        unit: "ms p50",
        baseline: ms(raw_put),
        baseline_desc: "one raw PUT of 100 bytes",
    };

    // cloud_commit_concurrent: 64 committers on the same storage, commits/s;
    // baseline: one commit per raw PUT latency (1 / cloud_commit's baseline).
    let per_task = if quick { 2 } else { 5 };
    let concurrent =
        commits_per_second(std::slice::from_ref(&st), CONCURRENT_COMMITTERS, per_task).await?;
    st.close().await?;
    let commit_concurrent = Row {
        name: "cloud_commit_concurrent",
        value: concurrent,
        unit: "commits/s",
        baseline: 1.0 / raw_put.as_secs_f64().max(1e-9),
        baseline_desc: "1 / one raw PUT's latency (cloud_commit's baseline)",
    };

    // Records for the read scenarios, uploaded, then read by a fresh
    // provider (fresh staging, no cache dir) and through the page cache.
    let provider = Arc::new(
        CloudBlockProvider::builder(store.clone(), fresh(base, "cloud_stage_w")?)
            .prefix(key("reads"))
            .build()
            .await?,
    );
    let w = storage(&provider).await?;
    let mut ptrs: Vec<AtomPointer> = Vec::with_capacity(records);
    for i in 0..records {
        let mut rec = [0u8; 100];
        rec[..8].copy_from_slice(&(i as u64).to_le_bytes());
        ptrs.push(w.push_bytes(&rec).await?);
    }
    w.flush_wal().await?;
    provider.flush_uploads().await?;
    w.close().await?;
    let mut rng = fastrand::Rng::with_seed(11);
    let order: Vec<AtomPointer> = (0..reads).map(|_| ptrs[rng.usize(..ptrs.len())]).collect();

    let cold_provider = Arc::new(
        CloudBlockProvider::builder(store.clone(), fresh(base, "cloud_stage_r")?)
            .prefix(key("reads"))
            .no_cache()
            .build()
            .await?,
    );
    let cold_p: Arc<dyn BlockProvider> = cold_provider.clone();
    let cold = StorageBuilder::new()
        .with_block_provider(cold_p)
        .page_cache_size(0)
        .build()
        .await?;
    let (mut ours, mut raw) = (Duration::ZERO, Duration::ZERO);
    for p in &order {
        let slot = p.offset / object_size as u64;
        let key = StorePath::from(key(&format!("reads/wal/{}/{slot}", p.wal_id)));
        let start = p.offset % object_size as u64;
        let t = Instant::now();
        store.get_range(&key, start..start + 113).await?;
        raw += t.elapsed();
        let t = Instant::now();
        cold.get_bytes(*p).await?;
        ours += t.elapsed();
    }
    cold.close().await?;
    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    let get_cold = Row {
        name: "cloud_get_cold",
        value: rate(order.len(), ours),
        unit: "ops/s",
        baseline: rate(order.len(), raw),
        baseline_desc: "raw ranged GET of the record bytes",
    };

    let warm_provider = Arc::new(
        CloudBlockProvider::builder(store.clone(), fresh(base, "cloud_stage_c")?)
            .prefix(key("reads"))
            .build()
            .await?,
    );
    let warm = storage(&warm_provider).await?;
    for p in &ptrs {
        warm.get_bytes(*p).await?;
    }
    let t = Instant::now();
    for p in &order {
        warm.get_bytes(*p).await?;
    }
    let cached_rate = rate(order.len(), t.elapsed());
    warm.close().await?;
    let rows = vec![
        upload,
        commit,
        commit_concurrent,
        get_cold,
        Row {
            name: "cloud_get_cached",
            value: cached_rate,
            unit: "ops/s",
            baseline: 0.0, // filled in by the caller with this run's get_cached
            baseline_desc: "local get_cached (this run)",
        },
    ];
    Ok(rows)
}
