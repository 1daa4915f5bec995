//! `protobase gc <space> --live <file> [--dry-run]`: retires the WALs of a
//! space that nothing live points into ([`protobase::Storage::reclaim`]).
//!
//! The live set comes from the object database above (its reachability
//! walk), one entry per line: a WAL id, a pointer (`<wal>:<offset>` or the
//! JSON `put` prints); blank lines and `#` comments are skipped. A line
//! that is none of these stops the command before anything is removed: a
//! live set read wrong would remove live data.
//!
//! Prints one JSON line: `{"dry_run", "retired": [{"wal", "bytes"}],
//! "retired_bytes", "live", "kept": [{"wal", "bytes", "reason",
//! "detail"}], "missing_live": [...]}`. Exit 0 when every WAL it chose
//! went (or, with `--dry-run`, would go); 1 when a removal failed, a live
//! WAL is missing from the space (the live set or the space is wrong), or
//! the space cannot be opened.

use std::collections::HashSet;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use protobase::{KeptBecause, ReclaimOptions, ReclaimReport, WalId};
use serde_json::json;

use crate::CmdResult;
use crate::address::Address;
use crate::out::outln;
use crate::space;

/// Reads the live set: WAL ids of the lines of `text`.
pub(crate) fn parse_live(text: &str) -> Result<HashSet<WalId>, String> {
    let mut live = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let wal = match t.parse::<WalId>() {
            Ok(w) => w,
            Err(_) => {
                crate::commands::parse_pointer(t)
                    .map_err(|e| {
                        format!("line {}: {t:?} is not a WAL id or a pointer: {e}", i + 1)
                    })?
                    .wal_id
            }
        };
        live.insert(wal);
    }
    Ok(live)
}

pub(crate) async fn run(
    address: &str,
    live_file: &Path,
    dry_run: bool,
    min_age_s: u64,
    object_size: Option<u64>,
) -> CmdResult {
    let text = std::fs::read_to_string(live_file)
        .map_err(|e| format!("reading the live set {}: {e}", live_file.display()))?;
    let live = parse_live(&text).map_err(|e| format!("{}: {e}", live_file.display()))?;
    let address = Address::parse(address)?;
    let options = ReclaimOptions::new()
        .dry_run(dry_run)
        .min_age(Duration::from_secs(min_age_s));
    // A dry run changes nothing: the space opens read-only.
    let (storage, _staging) = if dry_run {
        let opened = space::open_read_only(&address, object_size).await?;
        (opened.storage, opened._staging)
    } else {
        if let Some(c) = address.cluster() {
            return Err(format!(
                "{address} describes cluster node {:?}: gc of a cluster needs every member's \
                 agreement, which is not supported yet",
                c.server_id
            )
            .into());
        }
        space::open_writable_existing(&address, object_size).await?
    };
    let report = storage.reclaim(live, options).await;
    let closed = storage.close().await;
    let report = report?;
    closed?;
    outln!("{}", to_json(&report));
    let failed = report.failed().count();
    if failed > 0 {
        eprintln!("{failed} WAL(s) could not be removed (see \"kept\"); run gc again");
        return Ok(ExitCode::from(1));
    }
    if !report.missing_live.is_empty() {
        eprintln!(
            "{} live WAL(s) are not in the space (see \"missing_live\"): is the live set for \
             this space?",
            report.missing_live.len()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn to_json(r: &ReclaimReport) -> serde_json::Value {
    let kept: Vec<serde_json::Value> = r
        .kept
        .iter()
        .map(|(w, why)| {
            let (reason, detail) = match why {
                KeptBecause::CurrentRoot => ("current_root", None),
                KeptBecause::Checkpoint(d) => ("checkpoint", Some(d.clone())),
                KeptBecause::Writing => ("writing", None),
                KeptBecause::Recent => ("recent", None),
                KeptBecause::InUse(d) => ("in_use", Some(d.clone())),
                KeptBecause::Member(d) => ("member", Some(d.clone())),
                KeptBecause::Failed(d) => ("failed", Some(d.clone())),
                _ => ("other", Some(format!("{why:?}"))),
            };
            json!({"wal": w.wal, "bytes": w.bytes, "reason": reason, "detail": detail})
        })
        .collect();
    json!({
        "dry_run": r.dry_run,
        "retired": r.retired,
        "retired_bytes": r.retired_bytes(),
        "live": r.live,
        "kept": kept,
        "missing_live": r.missing_live,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_sets_take_ids_and_pointers_and_refuse_anything_else() {
        let a = WalId::new_random();
        let b = WalId::new_random();
        let text =
            format!("# live\n{a}\n\n  {b}:120  \n{{\"transaction_id\":\"{a}\",\"offset\":9}}\n");
        assert_eq!(parse_live(&text).unwrap(), HashSet::from([a, b]));
        let err = parse_live(&format!("{a}\nnot-a-wal\n")).unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        assert!(parse_live("").unwrap().is_empty());
    }
}
