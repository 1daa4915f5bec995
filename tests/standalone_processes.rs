//! Processes sharing one space directory: three processes commit at once
//! (each root's atom names the root it replaced), one of them is killed
//! with SIGKILL partway, and afterwards every root any process saw
//! acknowledged is on the one chain of roots the space holds, whose
//! sequences are 1..=n. The root log (`space_root.log`) is replaced several
//! times on the way (about 250 roots fit in one), by whichever process
//! finds it full.
//!
//! The processes are this test binary run again with one ignored test,
//! `child_commits`, which reads its orders from the environment.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use protobase::{AtomPointer, RootRecord, StorageBuilder};

mod support;
use support::history::{check_chain, publish};

const CHILD_DIR: &str = "PROTOBASE_TEST_CHILD_DIR";
const CHILD_NAME: &str = "PROTOBASE_TEST_CHILD_NAME";
const CHILD_COMMITS: &str = "PROTOBASE_TEST_CHILD_COMMITS";

#[test]
#[ignore = "a child process of processes_sharing_a_space_lose_no_acknowledged_root"]
fn child_commits() {
    let (Ok(dir), Ok(name), Ok(commits)) = (
        std::env::var(CHILD_DIR),
        std::env::var(CHILD_NAME),
        std::env::var(CHILD_COMMITS),
    ) else {
        return;
    };
    let commits: u32 = commits.parse().expect("a number of commits");
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let storage = StorageBuilder::standalone(&dir)
            .build()
            .await
            .expect("opening the space");
        let mut out = std::io::stdout();
        for n in 0..commits {
            let r = publish(&storage, &name, n).await.expect("a root update");
            writeln!(
                out,
                "ACK {} {} {} {}",
                r.sequence, r.term, r.pointer.wal_id, r.pointer.offset
            )
            .and_then(|()| out.flush())
            .expect("writing to the parent");
        }
        storage.close().await.expect("closing the space");
        writeln!(out, "DONE")
            .and_then(|()| out.flush())
            .expect("writing");
    });
}

/// An acknowledged root as a child reported it (its sequence, term and
/// pointer: what the chain check compares).
fn parse_ack(line: &str) -> Option<RootRecord> {
    // libtest starts the line of the test's first output with its name.
    let at = line.find("ACK ")?;
    let mut parts = line[at..].strip_prefix("ACK ")?.split(' ');
    let sequence = parts.next()?.parse().ok()?;
    let term = parts.next()?.parse().ok()?;
    let wal = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    Some(RootRecord::new(
        AtomPointer::new(wal, offset),
        sequence,
        term,
        None,
    ))
}

fn spawn_child(dir: &std::path::Path, name: &str, commits: u32) -> std::process::Child {
    Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "child_commits",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_NAME, name)
        .env(CHILD_COMMITS, commits.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning a child")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_space_lose_no_acknowledged_root() {
    const COMMITS: u32 = 200;
    const KILL_AFTER: usize = 60;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("space");
    std::fs::create_dir(&dir).unwrap();

    let mut victim = spawn_child(&dir, "victim", COMMITS);
    let survivors: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let mut child = spawn_child(&dir, name, COMMITS);
            let stdout = child.stdout.take().unwrap();
            let reader = std::thread::spawn(move || {
                BufReader::new(stdout)
                    .lines()
                    .map(|l| l.unwrap())
                    .collect::<Vec<_>>()
            });
            (name, child, reader)
        })
        .collect();

    // The victim is killed once it has seen KILL_AFTER roots acknowledged,
    // wherever it is in its next commit.
    let mut acks = Vec::new();
    let mut lines = BufReader::new(victim.stdout.take().unwrap()).lines();
    while acks.len() < KILL_AFTER {
        let line = lines
            .next()
            .expect("the victim ended before it was killed")
            .unwrap();
        acks.extend(parse_ack(&line));
    }
    victim.kill().unwrap();
    for line in lines {
        acks.extend(parse_ack(&line.unwrap()));
    }
    assert!(!victim.wait().unwrap().success(), "the victim was killed");
    let killed_acks = acks.len();

    for (name, mut child, reader) in survivors {
        let lines = reader.join().unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "child {name}: {status}");
        assert!(
            lines.iter().any(|l| l.ends_with("DONE")),
            "child {name}: {lines:?}"
        );
        let mine: Vec<RootRecord> = lines.iter().filter_map(|l| parse_ack(l)).collect();
        assert_eq!(mine.len(), COMMITS as usize, "child {name}");
        acks.extend(mine);
    }

    // Every acknowledged root is on the chain from the space's root back
    // to the first; the chain has only those, and at most one more (the
    // victim's, stored but killed before it said so).
    let storage = StorageBuilder::standalone(&dir).build().await.unwrap();
    let last = storage.read_current_root().await.unwrap().expect("a root");
    let chain = check_chain(&storage, &last, &acks).await;
    assert!(
        (acks.len()..=acks.len() + 1).contains(&chain),
        "{} roots acknowledged ({killed_acks} by the victim), {chain} on the chain",
        acks.len()
    );
    // The last process to close left the reference's copy exact.
    assert_eq!(
        std::fs::read(dir.join("space_root")).unwrap(),
        last.to_json()
    );
    storage.close().await.unwrap();
}

/// A writer committing without pause (each commit within the linger of the
/// grant and root lock it keeps after the one before) still lets another
/// writer of the space in: a grant lingers only while young. (Within one
/// process two storages of one directory contend for the same root lock as
/// two processes do.) The timeout only bounds a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_writer_lets_another_in() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("space");
    let busy = StorageBuilder::standalone(&dir).build().await.unwrap();
    let other = StorageBuilder::standalone(&dir).build().await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looping = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let p = busy.push_bytes(b"busy").await.unwrap();
                busy.set_root(p).await.unwrap();
                n += 1;
            }
            busy.close().await.unwrap();
            n
        }
    });
    // The busy writer is under way.
    while other.read_current_root().await.unwrap().is_none() {
        tokio::task::yield_now().await;
    }
    let p = other.push_bytes(b"other").await.unwrap();
    let mine = tokio::time::timeout(std::time::Duration::from_secs(60), other.set_root(p))
        .await
        .expect("the other writer never got the root lock")
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let n = looping.await.unwrap();
    assert!(n >= 1 && mine.sequence >= 2, "{n} busy commits, {mine:?}");
    other.close().await.unwrap();
}

/// A storage on a runtime without timers (a grant's linger cannot sleep)
/// does not keep the root lock: another writer of the space gets in. The
/// channel's timeout only bounds a hang.
#[test]
fn a_runtime_without_timers_keeps_no_root_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("space");
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = rt.block_on(async {
            let a = StorageBuilder::standalone(&dir).build().await.unwrap();
            let b = StorageBuilder::standalone(&dir).build().await.unwrap();
            let p = a.push_bytes(b"a").await.unwrap();
            a.set_root(p).await.unwrap();
            // Let the linger's task run (and fail to sleep).
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            let p = b.push_bytes(b"b").await.unwrap();
            let root = b.set_root(p).await.unwrap();
            b.close().await.unwrap();
            a.close().await.unwrap();
            root.sequence
        });
        let _ = done.send(got);
    });
    let sequence = finished
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the second writer never got the root lock");
    assert_eq!(sequence, 2);
}
