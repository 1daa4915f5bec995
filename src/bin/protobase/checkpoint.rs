//! `protobase checkpoint <space> <name>` pins the current root under
//! `name` ([`protobase::Storage::checkpoint`]) and prints it; `--list`
//! prints every checkpoint; `--remove` removes one. One JSON line per
//! checkpoint: `{"name", "sequence", "term", "writer", "pointer",
//! "created_ms"}`.
//!
//! `protobase prune <space> --keep N [--keep-younger-than S]` removes the
//! root history the retention does not keep
//! ([`protobase::Storage::prune_roots`]) and prints `{"removed", "kept"}`.

use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use protobase::{Checkpoint, Error, RootRetention};
use serde_json::json;

use crate::CmdResult;
use crate::address::{Address, bad};
use crate::out::outln;
use crate::space;

fn line(c: &Checkpoint) -> serde_json::Value {
    let created_ms = c
        .created
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .ok();
    json!({
        "name": c.name,
        "sequence": c.root.sequence,
        "term": c.root.term,
        "writer": c.root.writer,
        "pointer": c.root.pointer.to_string(),
        "created_ms": created_ms,
    })
}

/// What `protobase checkpoint` does.
pub(crate) enum Action<'a> {
    Take(&'a str),
    List,
    Remove(&'a str),
}

pub(crate) async fn run(address: &str, action: Action<'_>, object_size: Option<u64>) -> CmdResult {
    let address = Address::parse(address)?;
    if let Action::List = action {
        let opened = space::open_existing(&address, object_size, false).await?;
        let listed = opened.storage.checkpoints().await;
        opened.storage.close().await?;
        for c in listed.map_err(|e| bad(&address, e))? {
            outln!("{}", line(&c));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (storage, _staging) = space::open_writable_existing(&address, object_size).await?;
    let done = match action {
        Action::Take(name) => storage.checkpoint(name).await.map(Some),
        Action::Remove(name) => storage.remove_checkpoint(name).await.map(|()| None),
        Action::List => Ok(None),
    };
    let closed = storage.close().await;
    let code = match done {
        Ok(Some(c)) => {
            outln!("{}", line(&c));
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e @ Error::CheckpointNotFound { .. }) => {
            eprintln!("protobase: {e}");
            ExitCode::from(3)
        }
        Err(Error::Invalid {
            what: "checkpoint",
            reason,
        }) => {
            eprintln!("protobase: space {address}: {reason}");
            ExitCode::from(3)
        }
        Err(e) => return Err(bad(&address, e)),
    };
    closed?;
    Ok(code)
}

pub(crate) async fn prune(
    address: &str,
    keep: u64,
    keep_younger_than_s: Option<u64>,
    object_size: Option<u64>,
) -> CmdResult {
    if keep == 0 {
        return Err("--keep must be at least 1 (the current root always stays)".into());
    }
    let address = Address::parse(address)?;
    let mut retention = RootRetention::last(keep);
    if let Some(s) = keep_younger_than_s {
        retention = retention.younger_than(Duration::from_secs(s));
    }
    let (storage, _staging) = space::open_writable_existing(&address, object_size).await?;
    let report = storage.prune_roots(retention).await;
    let closed = storage.close().await;
    let report = report.map_err(|e| bad(&address, e))?;
    closed?;
    outln!(
        "{}",
        json!({"removed": report.removed, "kept": report.kept})
    );
    Ok(ExitCode::SUCCESS)
}
