//! The operator endpoint of `protobase node` (`[http] address`), scraped
//! from a running 3-node cluster of real processes: `/health`, `/ready`,
//! `/status` and `/metrics` (Prometheus text), whose counters move with the
//! work done; with two nodes killed, the survivor's `/ready` turns false.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PSK: &str = "node-http-test-key";

#[path = "support/processes.rs"]
mod processes;
use processes::{Nodes, free_ports};

/// Three node files; returns them and each node's HTTP address.
fn write_configs(dir: &Path) -> (Vec<PathBuf>, Vec<String>) {
    let ports = free_ports(6);
    let servers = (0..3)
        .map(|i| {
            format!(
                "{{ id = \"n{}\", address = \"127.0.0.1:{}\" }}",
                i + 1,
                ports[i]
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let http: Vec<String> = (0..3)
        .map(|i| format!("127.0.0.1:{}", ports[3 + i]))
        .collect();
    let configs = (0..3)
        .map(|i| {
            let path = dir.join(format!("n{}.toml", i + 1));
            let text = format!(
                "[backend]\ntype = \"fs\"\ndir = \"space-n{n}\"\n\n[cluster]\nserver_id = \"n{n}\"\n\
                 host = \"127.0.0.1\"\nport = {port}\nservers = [{servers}]\nheartbeat_ms = 200\n\
                 lease_ms = 1000\nread_timeout_ms = 500\nretry_interval_ms = 100\nmax_retries = 1\n\
                 vote_timeout_ms = 1500\n\n[transport]\ntype = \"tcp\"\n\n[http]\naddress = \"{http}\"\n",
                n = i + 1,
                port = ports[i],
                http = http[i],
            );
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    (configs, http)
}

fn start_node(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_protobase"))
        .args(["node", "--config"])
        .arg(config)
        .args(["--log-format", "json", "--workload", "demo", "--rate", "5"])
        .env("PROTOBASE_TRANSPORT__PSK", PSK)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn protobase node")
}

/// `GET path` on `addr`: (status code, body). `None` when nothing answers.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    // The server sends small bodies whole (Content-Length).
    Some((code, body.to_string()))
}

/// Polls `GET path` until `check` holds or `within` passes.
fn wait_for(
    addr: &str,
    path: &str,
    within: Duration,
    what: &str,
    check: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + within;
    loop {
        let got = get(addr, path);
        if let Some((code, body)) = &got
            && check(*code, body)
        {
            return (*code, body.clone());
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} on {addr}{path}: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The sum of a metric's samples (every label set) in a Prometheus text
/// page; `None` when the page has none.
fn metric(page: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let base = series.split('{').next().unwrap_or(series);
        if base == name {
            *found.get_or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    found
}

/// A metric's samples with a label value.
fn metric_with(page: &str, name: &str, label: &str) -> Option<f64> {
    let lines: Vec<&str> = page
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .collect();
    (!lines.is_empty()).then(|| {
        lines
            .iter()
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    })
}

#[test]
fn a_three_node_cluster_serves_metrics_health_readiness_and_status() {
    let tmp = tempfile::tempdir().unwrap();
    let (configs, http) = write_configs(tmp.path());
    let logs: Vec<PathBuf> = (1..=3)
        .map(|i| tmp.path().join(format!("n{i}.log")))
        .collect();
    let mut nodes = Nodes(
        configs
            .iter()
            .zip(&logs)
            .map(|(c, l)| Some(start_node(c, l)))
            .collect(),
    );
    let long = Duration::from_secs(60);

    // Liveness, then readiness on every node (a root, a majority).
    for addr in &http {
        wait_for(addr, "/health", long, "health", |c, b| {
            c == 200 && b == "ok\n"
        });
    }
    for addr in &http {
        let (_, body) = wait_for(addr, "/ready", long, "ready", |c, _| c == 200);
        let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(ready["majority"], true, "{ready}");
        assert_eq!(ready["cluster_size"], 3, "{ready}");
        assert!(ready["reasons"].as_array().unwrap().is_empty(), "{ready}");
    }

    // /status: the rows of `protobase status --json`, all alive, each with
    // a root (a member outside the first roots' majorities gets one later).
    let (code, _) = wait_for(&http[0], "/status", long, "3 alive with roots", |c, b| {
        c == 200
            && serde_json::from_str::<Vec<serde_json::Value>>(b).is_ok_and(|rows| {
                rows.len() == 3
                    && rows
                        .iter()
                        .all(|r| r["alive"] == true && r["root_sequence"].as_u64().is_some())
            })
    });
    assert_eq!(code, 200);

    // /metrics: Prometheus text whose counters move with the work done.
    let (code, first) = wait_for(&http[0], "/metrics", long, "commits counted", |c, b| {
        c == 200 && metric_with(b, "protobase_commits_total", "outcome=\"ok\"").is_some()
    });
    assert_eq!(code, 200);
    assert!(
        first.contains("# TYPE protobase_push_seconds histogram"),
        "{first}"
    );
    let commits =
        |page: &str| metric_with(page, "protobase_commits_total", "outcome=\"ok\"").unwrap_or(0.0);
    let pushed = |page: &str| metric(page, "protobase_push_bytes_total").unwrap_or(0.0);
    let (_, second) = wait_for(&http[0], "/metrics", long, "more commits", |_, b| {
        commits(b) >= commits(&first) + 3.0 && pushed(b) > pushed(&first)
    });
    // Each demo commit pushes one atom and makes the WAL durable.
    assert!(metric(&second, "protobase_wal_syncs_total").unwrap_or(0.0) >= 1.0);
    assert!(metric(&second, "protobase_push_seconds_count").unwrap_or(0.0) >= commits(&second));
    assert!(metric(&second, "protobase_commit_seconds_count").unwrap_or(0.0) >= commits(&second));
    assert!(
        metric_with(
            &second,
            "protobase_vote_round_seconds_count",
            "phase=\"accept\""
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        metric_with(&second, "protobase_peer_up", "peer=\"n2\"") == Some(1.0),
        "{second}"
    );
    assert!(
        metric(&second, "protobase_term").unwrap_or(0.0) >= 1.0,
        "{second}"
    );
    // Every node takes part in the votes (accepts), and serves its metrics.
    for addr in &http[1..] {
        let (_, page) = get(addr, "/metrics").unwrap();
        assert!(
            metric(&page, "protobase_term").unwrap_or(0.0) >= 1.0,
            "{addr}: {page}"
        );
    }
    // Anything else is a 404.
    assert_eq!(get(&http[0], "/nope").unwrap().0, 404);

    // Kill two nodes: the survivor is alive but not ready (no majority).
    for i in [1, 2] {
        let mut c = nodes.0[i].take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }
    // (The root read can fail, and /ready turn 503, before the links notice
    // the peers are gone: wait for both.)
    let (_, body) = wait_for(
        &http[0],
        "/ready",
        long,
        "not ready, no majority",
        |c, b| {
            c == 503
                && serde_json::from_str::<serde_json::Value>(b)
                    .is_ok_and(|v| v["majority"] == serde_json::Value::Bool(false))
        },
    );
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["majority"], false, "{ready}");
    assert!(!ready["reasons"].as_array().unwrap().is_empty(), "{ready}");
    assert_eq!(get(&http[0], "/health").unwrap().0, 200);
    let (_, page) = get(&http[0], "/metrics").unwrap();
    assert_eq!(
        metric_with(&page, "protobase_peer_up", "peer=\"n2\""),
        Some(0.0),
        "{page}"
    );
    assert!(
        metric_with(
            &page,
            "protobase_peer_state_changes_total",
            "state=\"down\""
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{page}"
    );
    let (_, status) = get(&http[0], "/status").unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&status).unwrap();
    assert_eq!(
        rows.iter().filter(|r| r["alive"] == true).count(),
        1,
        "{status}"
    );
}

/// A node started before its peers serves `/health` at once and answers
/// `/ready` with 503 (no majority) while it waits for them; once they run
/// it is ready.
#[test]
fn a_node_waiting_for_its_peers_is_alive_but_not_ready() {
    let tmp = tempfile::tempdir().unwrap();
    let (configs, http) = write_configs(tmp.path());
    let logs: Vec<PathBuf> = (1..=3)
        .map(|i| tmp.path().join(format!("n{i}.log")))
        .collect();
    let mut nodes = Nodes(vec![Some(start_node(&configs[0], &logs[0])), None, None]);
    let long = Duration::from_secs(60);
    wait_for(&http[0], "/health", long, "health", |c, b| {
        c == 200 && b == "ok\n"
    });
    let (_, body) = wait_for(&http[0], "/ready", long, "not ready", |c, _| c == 503);
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["majority"], false, "{ready}");
    // (The log line and the 503 come from different tasks: poll the log.)
    let deadline = Instant::now() + long;
    while !std::fs::read_to_string(&logs[0])
        .unwrap_or_default()
        .contains("no majority yet")
    {
        assert!(
            Instant::now() < deadline,
            "the node does not say it waits for a majority"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(nodes.0[0].as_mut().unwrap().try_wait().unwrap().is_none());
    for i in 1..3 {
        nodes.0[i] = Some(start_node(&configs[i], &logs[i]));
    }
    let (_, body) = wait_for(&http[0], "/ready", long, "ready", |c, _| c == 200);
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["majority"], true, "{ready}");
}
