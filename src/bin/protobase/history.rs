//! `protobase history <space> [--limit N]`: the space's recent roots,
//! newest first, one JSON line each: `{"sequence", "term", "writer",
//! "pointer", "written_ms"}` (`written_ms`: unix milliseconds when the
//! register stored the root, `null` where it does not know). A directory
//! keeps the last 1,000 roots written through it (`space_root.history`);
//! an object store's chain every root. Exit 3 when the space has no root.

use std::process::ExitCode;
use std::time::UNIX_EPOCH;

use protobase::HistoricRoot;
use serde_json::json;

use crate::CmdResult;
use crate::address::{Address, bad};
use crate::out::outln;
use crate::space;

/// One root's line.
pub(crate) fn line(h: &HistoricRoot) -> serde_json::Value {
    let written_ms = h
        .written
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    json!({
        "sequence": h.root.sequence,
        "term": h.root.term,
        "writer": h.root.writer,
        "pointer": h.root.pointer.to_string(),
        "written_ms": written_ms,
    })
}

pub(crate) async fn run(address: &str, limit: usize, object_size: Option<u64>) -> CmdResult {
    let address = Address::parse(address)?;
    let opened = space::open_existing(&address, object_size, true).await?;
    let history = opened.storage.root_history(limit).await;
    opened.storage.close().await?;
    let history = history.map_err(|e| bad(&address, e))?;
    if history.is_empty() {
        eprintln!("protobase: space {address} has no root");
        return Ok(ExitCode::from(3));
    }
    for h in &history {
        outln!("{}", line(h));
    }
    Ok(ExitCode::SUCCESS)
}
