//! A writer killed with SIGKILL at random moments leaves a space that
//! reopens with the last acknowledged root and everything it reaches
//! (DESIGN.md §4, §8, §9).
//!
//! The test re-executes its own binary: `crash_child` is a no-op unless
//! `PROTOBASE_CRASH_CHILD_DIR` is set, in which case it writes forever and
//! prints `ACK <sequence> <wal>:<offset>` after each durable root. The parent
//! kills it at a random point, reopens the space and checks it, then starts
//! the next child on the same directory: recovery after recovery.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use protobase::{AtomFormat, AtomPointer, Storage, StorageBuilder};
use serde::{Deserialize, Serialize};

const DIR_ENV: &str = "PROTOBASE_CRASH_CHILD_DIR";
const SEED_ENV: &str = "PROTOBASE_CRASH_CHILD_SEED";
const BACKEND_ENV: &str = "PROTOBASE_CRASH_CHILD_BACKEND";
/// How many tasks of the child commit at once (group commit).
const WRITERS_ENV: &str = "PROTOBASE_CRASH_CHILD_WRITERS";

/// Where the killed writer keeps its space.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Backend {
    /// A space directory (`FileBlockProvider`).
    Fs,
    /// `CloudBlockProvider` in `Local` durability over a local-directory
    /// object store (`<dir>/bucket`), staging in `<dir>/staging`.
    #[cfg(feature = "cloud")]
    Cloud,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Fs => "fs",
            #[cfg(feature = "cloud")]
            Backend::Cloud => "cloud",
        }
    }

    fn from_env() -> Backend {
        match std::env::var(BACKEND_ENV).as_deref() {
            #[cfg(feature = "cloud")]
            Ok("cloud") => Backend::Cloud,
            _ => Backend::Fs,
        }
    }
}

/// Opens the space of `backend` in `dir`; `staging` overrides the cloud
/// provider's staging dir (a fresh one reads everything from the store).
async fn open(dir: &Path, backend: Backend, staging: Option<&Path>) -> Storage {
    match backend {
        Backend::Fs => {
            let _ = staging;
            builder(dir).build().await.unwrap()
        }
        #[cfg(feature = "cloud")]
        Backend::Cloud => {
            use protobase::backends::cloud::CloudBlockProvider;
            let bucket = dir.join("bucket");
            std::fs::create_dir_all(&bucket).unwrap();
            let store = std::sync::Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(&bucket).unwrap(),
            );
            let staging = staging.map_or_else(|| dir.join("staging"), Path::to_path_buf);
            let provider = CloudBlockProvider::builder(store, staging)
                .object_size(64 << 10)
                .upload_interval_ms(20)
                .build()
                .await
                .unwrap();
            StorageBuilder::new()
                .with_block_provider(std::sync::Arc::new(provider))
                .buffer_size(32 << 10)
                .max_wal_size(256 << 10)
                .build()
                .await
                .unwrap()
        }
    }
}
const ITERATIONS: usize = 30;

/// The child's settings: small buffers and WALs, so background writes and
/// rollovers happen all the time.
fn builder(dir: &Path) -> StorageBuilder {
    StorageBuilder::standalone(dir)
        .buffer_size(32 << 10)
        .max_wal_size(256 << 10)
}

/// A blob pushed by the child, regenerated from its seed by the checker.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Blob {
    ptr: AtomPointer,
    len: usize,
    seed: u64,
}

/// The atom each root names: the blobs pushed for it and the root before.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RootAtom {
    prev: Option<AtomPointer>,
    prev_sequence: Option<u64>,
    blobs: Vec<Blob>,
}

fn blob_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fastrand::Rng::with_seed(seed).fill(&mut v);
    v
}

// ---------------------------------------------------------------------------
// Child

#[test]
#[ignore = "the child process of killed_writer_recovers_every_acknowledged_root, which runs it"]
fn crash_child() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        return;
    };
    let seed: u64 = std::env::var(SEED_ENV).unwrap().parse().unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let writers: usize = std::env::var(WRITERS_ENV)
                .ok()
                .and_then(|w| w.parse().ok())
                .unwrap_or(1);
            let dir = PathBuf::from(dir);
            if writers <= 1 {
                write_forever(dir, seed, Backend::from_env()).await
            } else {
                commit_concurrently(dir, seed, Backend::from_env(), writers).await
            }
        });
}

/// Pushes the blobs of one root (1 to 4, now and then one over 1 MiB).
async fn push_blobs(storage: &Storage, rng: &mut fastrand::Rng) -> Vec<Blob> {
    let mut blobs = Vec::new();
    for _ in 0..rng.usize(1..=4) {
        let len = if rng.u8(..10) == 0 {
            rng.usize((1 << 20) + 1..(2 << 20))
        } else {
            rng.usize(1..40_000)
        };
        let seed = rng.u64(..);
        let ptr = storage.push_bytes(&blob_bytes(seed, len)).await.unwrap();
        blobs.push(Blob { ptr, len, seed });
    }
    blobs
}

/// `writers` tasks push their blobs at once and each publishes a root over
/// the current one: their publishes share flushes and register writes
/// (group commit). Each acknowledgement is printed as it returns, so the
/// lines come in any order.
async fn commit_concurrently(dir: PathBuf, seed: u64, backend: Backend, writers: usize) {
    let storage = open(&dir, backend, None).await;
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (storage, out) = (storage.clone(), out.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed ^ (w as u64 + 1).wrapping_mul(0x9e37));
            loop {
                let blobs = push_blobs(&storage, &mut rng).await;
                let s = storage.clone();
                let root = storage
                    .update_root(|prev| async move {
                        let atom = RootAtom {
                            prev: prev.as_ref().map(|r| r.pointer),
                            prev_sequence: prev.as_ref().map(|r| r.sequence),
                            blobs,
                        };
                        s.push_atom(&atom, AtomFormat::Json).await
                    })
                    .await
                    .unwrap();
                let mut out = out.lock().unwrap();
                writeln!(out, "ACK {} {}", root.sequence, root.pointer).unwrap();
                out.flush().unwrap();
            }
        }));
    }
    // The writers loop until the process is killed; a panic in one ends it.
    let Err(e) = futures_util::future::select_all(tasks).await.0;
    panic!("a writer failed: {e}");
}

async fn write_forever(dir: PathBuf, seed: u64, backend: Backend) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let storage = open(&dir, backend, None).await;
    let mut prev = storage.read_current_root().await.unwrap();
    let mut out = std::io::stdout();
    loop {
        let blobs = push_blobs(&storage, &mut rng).await;
        let atom = RootAtom {
            prev: prev.as_ref().map(|r| r.pointer),
            prev_sequence: prev.as_ref().map(|r| r.sequence),
            blobs,
        };
        let ptr = storage.push_atom(&atom, AtomFormat::Json).await.unwrap();
        let root = storage.set_root(ptr).await.unwrap();
        writeln!(out, "ACK {} {}", root.sequence, root.pointer).unwrap();
        out.flush().unwrap();
        prev = Some(root);
    }
}

// ---------------------------------------------------------------------------
// Parent

/// Kills the child if the parent fails half-way.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parse_ack(line: &str) -> Option<(u64, AtomPointer)> {
    // libtest may have printed `test crash_child ... ` on the same line.
    let rest = &line[line.find("ACK ")? + 4..];
    let (seq, ptr) = rest.split_once(' ')?;
    Some((seq.parse().ok()?, ptr.trim().parse().ok()?))
}

/// What one check of the space found.
struct Checked {
    root_sequence: u64,
    torn_tails: usize,
}

/// Reopens the space and checks the root, the whole chain of root atoms
/// behind it with every blob they list, and every WAL.
async fn check_space(
    dir: &Path,
    backend: Backend,
    staging: Option<&Path>,
    last_ack: Option<(u64, AtomPointer)>,
    acked: &[(u64, AtomPointer)],
) -> Checked {
    let storage: Storage = open(dir, backend, staging).await;
    let root = storage.read_current_root().await.unwrap();
    let root_sequence = root.as_ref().map_or(0, |r| r.sequence);
    if let Some((seq, ptr)) = last_ack {
        let root = root.as_ref().expect("an acknowledged root vanished");
        assert!(
            root.sequence >= seq,
            "root {} older than the acknowledged {seq}",
            root.sequence
        );
        if root.sequence == seq {
            assert_eq!(root.pointer, ptr, "acknowledged root {seq} changed");
        }
    }
    // Walk the whole history: every root ever published is reachable.
    let mut next = root.map(|r| (r.pointer, r.sequence));
    let mut walked = 0;
    let mut chain = std::collections::HashMap::new();
    while let Some((ptr, seq)) = next {
        chain.insert(seq, ptr);
        let atom: RootAtom = storage
            .get_atom(ptr)
            .await
            .unwrap_or_else(|e| panic!("root atom #{seq} at {ptr}: {e}"));
        for b in &atom.blobs {
            let got = storage
                .get_bytes(b.ptr)
                .await
                .unwrap_or_else(|e| panic!("blob {} of root #{seq}: {e}", b.ptr));
            assert!(
                got == blob_bytes(b.seed, b.len)[..],
                "blob {} of root #{seq} differs",
                b.ptr
            );
        }
        assert_eq!(
            atom.prev_sequence,
            (seq > 1).then(|| seq - 1),
            "root #{seq}"
        );
        assert_eq!(atom.prev.is_some(), atom.prev_sequence.is_some());
        next = atom.prev.zip(atom.prev_sequence);
        walked += 1;
    }
    assert_eq!(walked, root_sequence, "history has a gap");
    for (seq, ptr) in acked {
        assert_eq!(
            chain.get(seq),
            Some(ptr),
            "acknowledged root #{seq} at {ptr} is not the chain's #{seq}"
        );
    }

    let mut torn_tails = 0;
    for w in storage.list_wals().await.unwrap() {
        let report = storage.scan_wal(w.id, |_| {}).await.unwrap();
        assert!(report.corrupt.is_empty(), "corrupt records: {report:?}");
        torn_tails += usize::from(report.torn_tail.is_some());
    }
    storage.close().await.unwrap();
    Checked {
        root_sequence,
        torn_tails,
    }
}

/// Runs one child until `acks` roots are acknowledged plus `delay`, kills
/// it, and returns every root it acknowledged.
fn run_child(
    dir: &Path,
    backend: Backend,
    writers: usize,
    seed: u64,
    acks: usize,
    delay: Duration,
) -> Vec<(u64, AtomPointer)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir)
        .env(SEED_ENV, seed.to_string())
        .env(BACKEND_ENV, backend.name())
        .env(WRITERS_ENV, writers.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut child = KillOnDrop(child);
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(ack) = parse_ack(&line)
                && tx.send(ack).is_err()
            {
                break;
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut acked = Vec::new();
    while acked.len() < acks {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(ack) => acked.push(ack),
            Err(e) => {
                let _ = child.0.kill();
                let _ = child.0.wait();
                panic!(
                    "child gave {} of {acks} acks ({e:?}); its stderr:\n{}",
                    acked.len(),
                    errors.join().unwrap()
                );
            }
        }
    }
    std::thread::sleep(delay);
    child.0.kill().unwrap();
    let status = child.0.wait().unwrap();
    assert!(!status.success(), "the child exited by itself: {status:?}");
    // Lines written before the kill are acknowledgements too.
    reader.join().unwrap();
    acked.extend(rx.try_iter());
    let _ = errors.join();
    acked
}

#[test]
fn killed_writer_recovers_every_acknowledged_root() {
    crash_loop(Backend::Fs, 1, ITERATIONS);
}

/// Sixteen tasks commit at once (their publishes grouped into shared
/// flushes and register writes) until SIGKILL: every root acknowledged to
/// any of them is on the recovered chain, at its sequence.
#[test]
fn killed_group_committers_keep_every_acknowledged_root() {
    crash_loop(Backend::Fs, 16, ITERATIONS / 2);
}

/// The same on the cloud provider in `Local` durability: after a restart on
/// the same staging dir nothing committed is lost, and once the restarted
/// provider has uploaded (closed), a node with a fresh staging dir reading
/// only the store sees the same history.
#[cfg(feature = "cloud")]
#[test]
fn killed_cloud_writer_loses_nothing_committed() {
    crash_loop(Backend::Cloud, 1, ITERATIONS / 2);
}

fn crash_loop(backend: Backend, writers: usize, iterations: usize) {
    let seed = std::env::var("PROTOBASE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    // Printed on failure (the harness shows a failing test's output).
    println!("seed {seed} (PROTOBASE_TEST_SEED={seed} to replay the schedule)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("space");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();

    let mut last_ack: Option<(u64, AtomPointer)> = None;
    let mut recovered = 0;
    let (mut total_acks, mut torn_tails) = (0, 0);
    for it in 0..iterations {
        let acks = rng.usize(0..=5 * writers);
        let delay = Duration::from_millis(rng.u64(0..30));
        let mut acked = run_child(&dir, backend, writers, rng.u64(..), acks, delay);
        assert!(acked.len() >= acks);
        // The child continued the history where the last check left it:
        // distinct sequences after the recovered root (concurrent writers
        // print theirs in any order).
        acked.sort_unstable_by_key(|(seq, _)| *seq);
        for (i, (seq, _)) in acked.iter().enumerate() {
            assert!(*seq > recovered, "iteration {it}: acks {acked:?}");
            if writers == 1 {
                assert_eq!(
                    *seq,
                    recovered + 1 + i as u64,
                    "iteration {it}: acks {acked:?}"
                );
            } else if i > 0 {
                assert!(
                    acked[i - 1].0 < *seq,
                    "iteration {it}: a sequence acknowledged twice"
                );
            }
        }
        total_acks += acked.len();
        if let Some(last) = acked.last() {
            last_ack = Some(*last);
        }
        let checked = rt.block_on(check_space(&dir, backend, None, last_ack, &acked));
        #[cfg(feature = "cloud")]
        if backend == Backend::Cloud {
            // `check_space` closed the provider, which drained its uploads.
            let fresh = tmp.path().join(format!("fresh-staging-{it}"));
            let from_store =
                rt.block_on(check_space(&dir, backend, Some(&fresh), last_ack, &acked));
            assert_eq!(
                from_store.root_sequence, checked.root_sequence,
                "iteration {it}"
            );
        }
        assert!(
            checked.root_sequence >= recovered,
            "iteration {it}: the root went back"
        );
        recovered = checked.root_sequence;
        torn_tails += checked.torn_tails;
        println!(
            "iteration {it}: killed after {} acks + {delay:?}, root #{recovered}",
            acked.len()
        );
    }
    println!(
        "{iterations} {} crashes, {total_acks} acknowledged roots, {torn_tails} torn tails seen, {:?}",
        backend.name(),
        started.elapsed()
    );
    assert!(
        total_acks >= iterations,
        "too few roots were acknowledged to test anything"
    );
    assert!(recovered >= total_acks as u64);
    if backend == Backend::Fs {
        // Each child continued a WAL an earlier one left (fencing its torn
        // tail) instead of starting one: WAL files follow the data, not the
        // number of runs. A WAL rolls over near `max_wal_size` (256 KiB).
        let wals: Vec<u64> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| {
                let e = e.unwrap();
                e.file_name().to_str()?.parse::<protobase::WalId>().ok()?;
                Some(e.metadata().unwrap().len())
            })
            .collect();
        let bytes: u64 = wals.iter().sum();
        let bound = bytes / (128 << 10) + 2;
        println!("{} WAL files, {bytes} bytes", wals.len());
        assert!(
            wals.len() as u64 <= bound,
            "{} WAL files for {bytes} bytes after {iterations} runs (bound {bound})",
            wals.len()
        );
    }
}
