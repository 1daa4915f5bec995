//! The space commands: root, get, put, inspect, verify.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use protobase::{AtomPointer, Error, Format, Storage, StorageBuilder};

use crate::PutFormat;

/// Exit code of `root` when the space has no root.
const NO_ROOT: u8 = 3;

type CmdResult = Result<ExitCode, Box<dyn std::error::Error>>;

async fn open_read_only(dir: &Path) -> Result<Storage, Error> {
    StorageBuilder::standalone(dir)
        .read_only(true)
        .page_cache_size(0)
        .build()
        .await
}

pub(crate) async fn root(dir: &Path) -> CmdResult {
    let storage = open_read_only(dir).await?;
    let root = storage.read_current_root().await?;
    storage.close().await?;
    match root {
        Some(r) => {
            println!("{}", String::from_utf8_lossy(&r.to_json()));
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("protobase: space {} has no root", dir.display());
            Ok(ExitCode::from(NO_ROOT))
        }
    }
}

pub(crate) async fn get(dir: &Path, pointer: &str, json: bool) -> CmdResult {
    let ptr: AtomPointer = pointer.parse()?;
    let storage = open_read_only(dir).await?;
    let out = if json {
        let value: serde_json::Value = storage.get_atom(ptr).await?;
        let mut line = serde_json::to_vec(&value)?;
        line.push(b'\n');
        line
    } else {
        storage.get_bytes(ptr).await?.to_vec()
    };
    storage.close().await?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Turns one input into the record to push.
fn encode(format: PutFormat, input: &[u8], what: &str) -> Result<(Format, Vec<u8>), String> {
    match format {
        PutFormat::Raw => Ok((Format::Raw, input.to_vec())),
        PutFormat::Json => serde_json::from_slice::<serde::de::IgnoredAny>(input)
            .map(|_| (Format::Json, input.to_vec()))
            .map_err(|e| format!("{what} is not JSON: {e}")),
        PutFormat::Msgpack => match serde_json::from_slice::<serde_json::Value>(input) {
            Ok(v) => rmp_serde::to_vec_named(&v)
                .map(|b| (Format::MessagePack, b))
                .map_err(|e| format!("{what}: {e}")),
            Err(_) => rmp_serde::from_slice::<serde::de::IgnoredAny>(input)
                .map(|_| (Format::MessagePack, input.to_vec()))
                .map_err(|e| format!("{what} is neither JSON nor MessagePack: {e}")),
        },
    }
}

pub(crate) async fn put(dir: &Path, format: PutFormat, root: bool, lines: bool) -> CmdResult {
    let mut input = Vec::new();
    std::io::stdin().lock().read_to_end(&mut input)?;
    let items: Vec<&[u8]> = if lines {
        input
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .collect::<Vec<_>>()
    } else {
        vec![&input[..]]
    };
    // A final newline does not start another record.
    let items = match items.split_last() {
        Some((last, rest)) if lines && last.is_empty() => rest.to_vec(),
        _ => items,
    };
    let storage = StorageBuilder::standalone(dir).build().await?;
    let mut stdout = std::io::stdout().lock();
    let result = async {
        for (i, item) in items.iter().enumerate() {
            let what = if lines {
                format!("line {}", i + 1)
            } else {
                "stdin".to_string()
            };
            let (fmt, bytes) = encode(format, item, &what)?;
            let ptr = storage
                .push_record(fmt, &bytes)
                .await
                .map_err(|e| format!("{what}: {e}"))?;
            if root {
                storage.set_root(ptr).await?;
            }
            let mut line = serde_json::to_vec(&ptr)?;
            line.push(b'\n');
            stdout.write_all(&line)?;
            stdout.flush()?;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    // Close (flush) even after an error, so acknowledged records stay.
    storage.close().await?;
    result?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn inspect(dir: &Path) -> CmdResult {
    let storage = open_read_only(dir).await?;
    match storage.read_current_root().await? {
        Some(r) => println!(
            "root: {} (sequence {}, term {})",
            r.pointer, r.sequence, r.term
        ),
        None => println!("root: none"),
    }
    let wals = storage.list_wals().await?;
    println!(
        "{:<38} {:>12} {:>10} {:>9}  notes",
        "wal", "bytes", "records", "format"
    );
    for w in &wals {
        let rep = storage.scan_wal(w.id, |_| {}).await?;
        let kind = match rep.kind {
            Some(protobase::record::WalKind::Native) => "native",
            Some(protobase::record::WalKind::Reference) => "reference",
            None => "empty",
        };
        let mut notes = Vec::new();
        if !rep.corrupt.is_empty() {
            notes.push(format!("{} corrupt", rep.corrupt.len()));
        }
        if let Some(t) = &rep.torn_tail {
            notes.push(format!("torn tail at {}", t.offset));
        }
        println!(
            "{:<38} {:>12} {:>10} {:>9}  {}",
            w.id.to_string(),
            w.len,
            rep.records,
            kind,
            notes.join(", ")
        );
    }
    println!("{} WALs", wals.len());
    storage.close().await?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn verify(dir: &Path, strict: bool) -> CmdResult {
    let storage = open_read_only(dir).await?;
    let wals = storage.list_wals().await?;
    let total: u64 = wals.iter().map(|w| w.len).sum();
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} verifying [{bar:40}] {bytes}/{total_bytes} ({eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let mut problems = 0usize;
    let mut records = 0u64;
    let mut done = 0u64;
    for w in &wals {
        let base = done;
        let b = bar.clone();
        let rep = storage
            .scan_wal(w.id, move |n| b.set_position(base + n))
            .await?;
        done += w.len;
        bar.set_position(done);
        records += rep.records;
        for p in &rep.corrupt {
            bar.suspend(|| println!("CORRUPT {}:{}: {}", w.id, p.offset, p.error));
            problems += 1;
        }
        if let Some(t) = &rep.torn_tail {
            let label = if strict {
                "TORN"
            } else {
                "torn tail (ignored)"
            };
            bar.suspend(|| println!("{label} {}:{}: {}", w.id, t.offset, t.error));
            if strict {
                problems += 1;
            }
        }
    }
    bar.finish_and_clear();
    match storage.read_current_root().await {
        Ok(Some(r)) => match storage.get_record(r.pointer).await {
            Ok(_) => println!("root {} ok", r.pointer),
            Err(e) => {
                println!("ROOT {}: {e}", r.pointer);
                problems += 1;
            }
        },
        Ok(None) => println!("no root"),
        Err(e) => {
            println!("ROOT: {e}");
            problems += 1;
        }
    }
    storage.close().await?;
    println!(
        "{} WALs, {records} records, {problems} problem{}",
        wals.len(),
        if problems == 1 { "" } else { "s" }
    );
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
