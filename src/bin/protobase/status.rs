//! `protobase status --config node.toml`: asks every cluster member for its
//! liveness, root and term, and prints a table (or JSON with `--json`).
//! Exits 1 unless a majority answered. It talks to the members as a client
//! (`client~<id>`), so it reaches the described node itself over QUIC too.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use protobase::NodeConfig;
use protobase::client::Client;
use protobase::protocol::NodeStatus;
use serde::Serialize;

use crate::CmdResult;
use crate::out::outln;

/// One member's line.
#[derive(Debug, Serialize)]
struct Row {
    id: String,
    address: String,
    alive: bool,
    term: Option<u64>,
    root_sequence: Option<u64>,
    root_term: Option<u64>,
    root_writer: Option<String>,
    error: Option<String>,
}

async fn ask(config: &NodeConfig, id: &str, timeout: Duration) -> Result<NodeStatus, String> {
    // A client link: it presents this node's credentials (over QUIC its
    // certificate, under the client ALPN), so the node itself answers too.
    let client = Client::connect(config, Some(id))
        .await
        .map_err(|e| e.to_string())?
        .with_timeout(timeout);
    let answer = client.status().await;
    client.close().await;
    answer.map_err(|e| e.to_string())
}

pub(crate) async fn run(config: &Path, json: bool, timeout_ms: u64) -> CmdResult {
    let config = NodeConfig::load(config)?;
    let cluster = config
        .cluster
        .clone()
        .ok_or_else(|| format!("{}: no [cluster] section: nothing to ask", config.source))?;
    let timeout = Duration::from_millis(timeout_ms);
    let asks = cluster.servers.iter().map(|member| {
        let config = &config;
        async move {
            let answer = ask(config, &member.id, timeout).await;
            let (status, error) = match answer {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e)),
            };
            let root = status.as_ref().and_then(|s| s.root.clone());
            Row {
                id: member.id.clone(),
                address: member.address.clone(),
                alive: status.is_some(),
                term: status.as_ref().map(|s| s.term),
                root_sequence: root.as_ref().map(|r| r.sequence),
                root_term: root.as_ref().map(|r| r.term),
                root_writer: root.and_then(|r| r.writer),
                error,
            }
        }
    });
    let rows = futures_util::future::join_all(asks).await;
    if json {
        outln!("{}", serde_json::to_string(&rows)?);
    } else {
        print_table(&rows)?;
    }
    let alive = rows.iter().filter(|r| r.alive).count();
    let majority = rows.len() / 2 + 1;
    Ok(if alive >= majority {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "protobase: {alive} of {} members answered: no majority ({majority} needed), the \
             cluster cannot publish roots",
            rows.len()
        );
        ExitCode::FAILURE
    })
}

fn print_table(rows: &[Row]) -> std::io::Result<()> {
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    crate::out::line(format_args!(
        "{:<12} {:<22} {:<5} {:>6} {:>9} {:>9}  {:<12} note",
        "node", "address", "alive", "term", "root seq", "root term", "root writer"
    ))?;
    for r in rows {
        crate::out::line(format_args!(
            "{:<12} {:<22} {:<5} {:>6} {:>9} {:>9}  {:<12} {}",
            r.id,
            r.address,
            if r.alive { "yes" } else { "no" },
            opt(r.term),
            opt(r.root_sequence),
            opt(r.root_term),
            r.root_writer.as_deref().unwrap_or("-"),
            r.error.as_deref().unwrap_or("")
        ))?;
    }
    Ok(())
}
