//! `protobase node --config node.toml`: runs one node of any variant until
//! SIGINT or SIGTERM, then flushes and exits 0.
//!
//! A cluster node serves votes, root updates, pages and status requests to
//! its peers, and clients (`protobase put/get/root --connect`, see
//! `protobase::client`), for as long as it runs. `--workload demo` also writes an atom
//! and publishes it as the root `--rate` times a second; each atom records
//! the previous root's atom, read first (often from a peer's WAL, through a
//! page request), so a cluster can be watched live and checked afterwards.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use protobase::{AtomFormat, ErrorKind, NodeConfig, Storage};
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{CmdResult, LogFormat};

/// What `--workload demo` writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DemoAtom {
    /// Writing node.
    pub(crate) node: String,
    /// Its counter.
    pub(crate) n: u64,
    /// The atom of the root this one replaced: `(node, n)`.
    pub(crate) prev: Option<(String, u64)>,
}

/// Sets up `tracing` on stderr: human-readable, or one JSON object a line.
pub(crate) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a terminal (never in a redirected log), and never
    // with NO_COLOR set.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(e) = result {
        eprintln!("protobase: logging not set up: {e}");
    }
}

pub(crate) async fn run(config: &Path, demo: bool, rate: f64) -> CmdResult {
    if demo && !(rate.is_finite() && rate > 0.0) {
        return Err(format!("--rate must be a positive number, got {rate}").into());
    }
    let config = NodeConfig::load(config)?;
    let node = config.node_id().to_string();
    let mut signals = Signals::new()?;
    info!(node = %node, variant = config.variant(), file = %config.source, "starting");
    let storage = Arc::new(config.build().await?);
    // Peers started at the same time may not answer the first root read (a
    // QUIC handshake with a peer not listening yet waits for a
    // retransmission): a cluster node keeps serving its peers and asks
    // again until a majority answers, or it is stopped.
    let root = loop {
        match storage.read_current_root().await {
            Ok(root) => break root,
            Err(e) if e.kind() == ErrorKind::Unavailable && config.cluster.is_some() => {
                let retry = config
                    .cluster
                    .as_ref()
                    .map_or(1000, |c| c.retry_interval_ms.max(100));
                warn!(node = %node, error = %e, "no majority yet; asking again");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(retry)) => {}
                    signal_name = signals.next() => {
                        info!(node = %node, signal = signal_name, "stopping before ready");
                        storage.close().await?;
                        return Ok(ExitCode::SUCCESS);
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    };
    let listen = config
        .cluster
        .as_ref()
        .map(|c| format!("{}:{}", c.host, c.port));
    info!(
        node = %node,
        listen = listen.as_deref().unwrap_or("-"),
        root_sequence = root.as_ref().map(|r| r.sequence),
        "ready"
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let workload = demo.then(|| {
        tokio::spawn(demo_workload(
            storage.clone(),
            node.clone(),
            Duration::from_secs_f64(1.0 / rate),
            stop_rx,
        ))
    });
    let signal_name = signals.next().await;
    info!(node = %node, signal = signal_name, "stopping");
    let _ = stop_tx.send(true);
    if let Some(task) = workload
        && let Err(e) = task.await
    {
        warn!(error = %e, "workload task ended abnormally");
    }
    storage.close().await?;
    info!(node = %node, "stopped");
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM and SIGINT, listened to from the start (a signal before the
/// node is ready stops it too).
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> Result<Self, std::io::Error> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Writes and publishes one atom every `every` until `stop` turns true.
async fn demo_workload(
    storage: Arc<Storage>,
    node: String,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        n += 1;
        match publish_one(&storage, &node, n).await {
            Ok((root, prev)) => info!(
                node = %node,
                n,
                sequence = root.sequence,
                term = root.term,
                prev_node = prev.as_ref().map(|p| p.0.as_str()),
                "published root"
            ),
            Err(e) => warn!(node = %node, n, error = %e, "publish failed; retrying next tick"),
        }
    }
}

async fn publish_one(
    storage: &Storage,
    node: &str,
    n: u64,
) -> protobase::Result<(protobase::RootRecord, Option<(String, u64)>)> {
    let mut seen = None;
    let root = storage
        .update_root(|current| {
            let seen = &mut seen;
            async move {
                // The previous root's atom may live in a peer's WAL: this
                // read is then a page request. A peer that is down takes its
                // WAL with it (cluster nodes keep only their own WALs), so an
                // unreadable atom is logged and the chain goes on without it.
                let prev = match current {
                    Some(r) => match storage.get_atom::<DemoAtom>(r.pointer).await {
                        Ok(a) => Some((a.node, a.n)),
                        Err(e) => {
                            warn!(error = %e, pointer = %r.pointer, "previous root's atom unreadable");
                            None
                        }
                    },
                    None => None,
                };
                *seen = prev.clone();
                let atom = DemoAtom {
                    node: node.to_string(),
                    n,
                    prev,
                };
                storage.push_atom(&atom, AtomFormat::Json).await
            }
        })
        .await?;
    Ok((root, seen))
}
