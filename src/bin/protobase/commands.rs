//! The space commands: root, get, put, inspect, verify — on any address,
//! or (root, get, put) through a running node with `--connect`.

use std::collections::VecDeque;
use std::io::{BufRead, Read};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protobase::client::{Client, ClusterSpace, Published};
use protobase::protocol::ExpectedRoot;
use protobase::{AtomPointer, Error, Format, RootRecord, Storage, StorageBuilder};

use crate::address::{Address, bad};
use crate::out::outln;
use crate::space;
use crate::{CmdResult, ConnectArgs, PutFormat, json_text, out};

/// Exit code of `root` when the space has no root.
const NO_ROOT: u8 = 3;
/// Exit code of `put --if-root` when the current root is another one.
const ROOT_MOVED: u8 = 5;
/// Lines read ahead of the one being stored (`put --lines`).
const READ_AHEAD_LINES: usize = 64;
/// Records whose durability `put --lines` waits for at once.
const IN_FLIGHT: usize = 256;

/// Parses a pointer: `<wal-uuid>:<offset>`, or the JSON `put` prints
/// (`{"transaction_id":…,"offset":…}`; the line `root` prints works too).
pub(crate) fn parse_pointer(text: &str) -> Result<AtomPointer, Box<dyn std::error::Error>> {
    let t = text.trim();
    if t.starts_with('{') {
        return serde_json::from_str::<AtomPointer>(t).map_err(|e| {
            format!(
                "pointer {t:?}: not the JSON put prints ({{\"transaction_id\":…,\"offset\":…}}): \
                 {e}"
            )
            .into()
        });
    }
    t.parse::<AtomPointer>().map_err(|e| {
        format!("{e} (a pointer is <wal-uuid>:<offset> or the JSON put prints)").into()
    })
}

/// A client of the node `--connect` names.
async fn connect(args: &ConnectArgs) -> Result<Option<Client>, Box<dyn std::error::Error>> {
    let Some(target) = &args.connect else {
        return Ok(None);
    };
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let path = std::path::Path::new(target);
    let described = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml") || e.eq_ignore_ascii_case("json"));
    let client = if described {
        let config = protobase::NodeConfig::load(path)?;
        Client::connect(&config, args.node.as_deref())
            .await
            .map_err(|e| bad(target, e))?
    } else if let Some((id, addr)) = target.split_once('@') {
        if args.node.is_some() {
            return Err(bad(target, "--node goes with a node description"));
        }
        let key = std::env::var("PROTOBASE_TRANSPORT__PSK").map_err(|_| {
            bad(
                target,
                "set PROTOBASE_TRANSPORT__PSK to the cluster's pre-shared key (or connect with \
                 a node description)",
            )
        })?;
        Client::connect_tcp(id, addr, key.as_bytes())
            .await
            .map_err(|e| bad(target, e))?
    } else {
        return Err(bad(
            target,
            "--connect takes a node description (.toml/.json) or id@host:port",
        ));
    };
    Ok(Some(client.with_timeout(timeout)))
}

fn address_or_connect<'a>(
    address: Option<&'a str>,
    args: &ConnectArgs,
) -> Result<Option<&'a str>, Box<dyn std::error::Error>> {
    match (address, &args.connect) {
        (Some(_), Some(_)) => Err(out::usage("give a space address or --connect, not both")),
        (None, None) => Err(out::usage("give a space address (or --connect NODE)")),
        (a, _) => Ok(a),
    }
}

fn print_root(root: Option<RootRecord>, what: &str) -> CmdResult {
    match root {
        Some(r) => {
            out::bytes(&[r.to_json().as_slice(), b"\n"].concat())?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("protobase: {what} has no root");
            Ok(ExitCode::from(NO_ROOT))
        }
    }
}

pub(crate) async fn root(address: Option<&str>, args: &ConnectArgs) -> CmdResult {
    let address = address_or_connect(address, args)?;
    if let Some(client) = connect(args).await? {
        let root = client.read_root().await;
        client.close().await;
        return print_root(root?, &format!("the space of node {}", client.node()));
    }
    let address = Address::parse(address.unwrap_or_default())?;
    let opened = space::open_existing(&address, None, true).await?;
    if address.cluster().is_some() {
        eprintln!(
            "protobase: {address}: this node's committed copy of the root (--connect {address} \
             asks the cluster)"
        );
    }
    let root = opened.storage.read_current_root().await;
    opened.storage.close().await?;
    print_root(
        root.map_err(|e| bad(&address, e))?,
        &format!("space {address}"),
    )
}

/// The JSON line `get --json` prints for a record.
fn json_line(
    ptr: AtomPointer,
    format: Format,
    payload: &[u8],
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut line = match format {
        Format::Json => json_text::compact_json(payload).map_err(|e| format!("{ptr}: {e}"))?,
        Format::MessagePack => {
            let value = json_text::decode_msgpack(payload)
                .map_err(|e| format!("{ptr}: the MessagePack record has no JSON form: {e}"))?;
            serde_json::to_vec(&value)?
        }
        Format::Raw => {
            return Err(Error::WrongFormat {
                wal: ptr.wal_id,
                offset: ptr.offset,
                found: format,
                expected: "JSON or MessagePack",
            }
            .into());
        }
    };
    line.push(b'\n');
    Ok(line)
}

pub(crate) async fn get(args: &[String], json: bool, connect_args: &ConnectArgs) -> CmdResult {
    let (address, pointer) = match (args, &connect_args.connect) {
        ([p], Some(_)) => (None, p),
        ([a, p], None) => (Some(a.as_str()), p),
        ([_], None) => {
            return Err(out::usage(
                "give a space address and a pointer (or --connect NODE and a pointer)",
            ));
        }
        (_, Some(_)) => return Err(out::usage("with --connect, give the pointer only")),
        _ => return Err(out::usage("give a space address and a pointer")),
    };
    let ptr = parse_pointer(pointer)?;
    let (format, payload) = if let Some(client) = connect(connect_args).await? {
        let got = client.get(ptr).await;
        client.close().await;
        got?
    } else {
        let address = Address::parse(address.unwrap_or_default())?;
        let opened = space::open_read_only(&address, None).await?;
        let got = opened.storage.get_record(ptr).await;
        opened.storage.close().await?;
        got?
    };
    if json {
        out::bytes(&json_line(ptr, format, &payload)?)?;
    } else {
        out::bytes(&payload)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Options of `put`.
#[derive(Debug, Clone)]
pub(crate) struct PutOptions {
    pub(crate) format: PutFormat,
    pub(crate) root: bool,
    pub(crate) lines: bool,
    pub(crate) if_root: Option<String>,
    pub(crate) object_size: Option<u64>,
}

/// Turns one input into the record to push, validated at the door.
fn encode(format: PutFormat, input: &[u8]) -> Result<(Format, Vec<u8>), String> {
    if input.is_empty() {
        return Err("empty: a record needs at least one byte".into());
    }
    match format {
        PutFormat::Raw => Ok((Format::Raw, input.to_vec())),
        PutFormat::Json => {
            json_text::validate_json(input)?;
            Ok((Format::Json, input.to_vec()))
        }
        PutFormat::Msgpack => Ok((Format::MessagePack, json_text::msgpack_payload(input)?)),
    }
}

/// Parses `--if-root`: `none`, a pointer, or the line `root` prints.
fn parse_expected(text: &str) -> Result<ExpectedRoot, Box<dyn std::error::Error>> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("none") {
        return Ok(ExpectedRoot::Absent);
    }
    if t.starts_with('{')
        && let Ok(root) = serde_json::from_str::<serde_json::Value>(t)
        && root.get("sequence").is_some()
    {
        let pointer = parse_pointer(t)?;
        return Ok(ExpectedRoot::Root {
            pointer,
            sequence: root["sequence"].as_u64(),
        });
    }
    Ok(ExpectedRoot::Root {
        pointer: parse_pointer(t).map_err(|e| format!("--if-root: {e}"))?,
        sequence: None,
    })
}

fn pointer_line(ptr: &AtomPointer) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = serde_json::to_vec(ptr)?;
    line.push(b'\n');
    Ok(line)
}

/// Reads stdin line by line on a thread of its own, a bounded number of
/// lines ahead (the final newline does not start another line; `\r\n`
/// ends a line too).
fn stdin_lines() -> tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD_LINES);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut reader = std::io::BufReader::with_capacity(64 << 10, stdin.lock());
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    if tx.blocking_send(Ok(line)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}

pub(crate) async fn put(address: Option<&str>, opts: PutOptions, args: &ConnectArgs) -> CmdResult {
    let address = address_or_connect(address, args)?;
    let expected = opts.if_root.as_deref().map(parse_expected).transpose()?;
    if let Some(client) = connect(args).await? {
        let result = put_through(&client, &opts, expected).await;
        client.close().await;
        return result;
    }
    let address = Address::parse(address.unwrap_or_default())?;
    let (storage, _staging) = space::open_writable(&address, opts.object_size).await?;
    let result = if opts.lines {
        put_lines(&storage, &opts).await
    } else {
        put_whole(&storage, &opts, expected).await
    };
    // Close (flush) even after an error, so acknowledged records stay.
    let closed = storage.close().await;
    let code = result?;
    closed.map_err(|e| bad(&address, e))?;
    Ok(code)
}

fn read_all_stdin() -> std::io::Result<Vec<u8>> {
    let mut input = Vec::new();
    std::io::stdin().lock().read_to_end(&mut input)?;
    Ok(input)
}

/// `put` of the whole stdin as one record.
async fn put_whole(
    storage: &Storage,
    opts: &PutOptions,
    expected: Option<ExpectedRoot>,
) -> CmdResult {
    let input = read_all_stdin()?;
    let (format, bytes) = encode(opts.format, &input).map_err(|e| format!("stdin: {e}"))?;
    let ptr = storage
        .push_record(format, &bytes)
        .await
        .map_err(|e| format!("stdin: {e}"))?;
    if opts.root {
        let update = storage.begin_root_update().await?;
        if let Some(exp) = &expected
            && !exp.matches(update.current())
        {
            let current = update.current().cloned();
            update.abort().await;
            return moved(current);
        }
        update.publish(ptr).await?;
    } else {
        storage.flush_wal().await?;
    }
    out::bytes(&pointer_line(&ptr)?)?;
    Ok(ExitCode::SUCCESS)
}

fn moved(current: Option<RootRecord>) -> CmdResult {
    let shown = current
        .map(|r| String::from_utf8_lossy(&r.to_json()).into_owned())
        .unwrap_or_else(|| "none".into());
    eprintln!("protobase: --if-root: the current root is another one, nothing published: {shown}");
    Ok(ExitCode::from(ROOT_MOVED))
}

/// A line whose record is waiting to be durable.
type Pending = (
    usize,
    tokio::task::JoinHandle<protobase::Result<AtomPointer>>,
);

/// `put --lines`: streams stdin. Each line is pushed at once (in order),
/// then made durable — published as the root with `--root` — and its
/// pointer is printed and flushed as soon as that is done, in line order.
/// Up to `IN_FLIGHT` lines wait for durability together (one fsync or root
/// write covers many of them); memory stays bounded whatever the input.
async fn put_lines(storage: &Storage, opts: &PutOptions) -> CmdResult {
    let mut lines = stdin_lines();
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut line_no = 0usize;
    let mut eof = false;
    let failure = loop {
        // Either the oldest waiting line becomes durable (print it), or
        // another line arrives (store it), whichever comes first.
        let next = match pending.pop_front() {
            Some((n, mut job)) => {
                if eof || pending.len() + 1 >= IN_FLIGHT {
                    match finished(n, job.await) {
                        Ok(ptr) => out::bytes(&pointer_line(&ptr)?)?,
                        Err(e) => break Some(e),
                    }
                    continue;
                }
                tokio::select! {
                    biased;
                    done = &mut job => {
                        match finished(n, done) {
                            Ok(ptr) => out::bytes(&pointer_line(&ptr)?)?,
                            Err(e) => break Some(e),
                        }
                        continue;
                    }
                    next = lines.recv() => {
                        pending.push_front((n, job));
                        next
                    }
                }
            }
            None if eof => break None,
            None => lines.recv().await,
        };
        let Some(next) = next else {
            eof = true;
            continue;
        };
        line_no += 1;
        let stored = async {
            let line = next.map_err(|e| format!("reading stdin: {e}"))?;
            let (format, bytes) = encode(opts.format, &line)?;
            let ptr = storage
                .push_record(format, &bytes)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(if opts.root {
                let update = storage
                    .begin_root_update()
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(async move { update.publish(ptr).await.map(|_| ptr) })
            } else {
                let s = storage.clone();
                tokio::spawn(async move { s.flush_wal().await.map(|()| ptr) })
            })
        }
        .await;
        match stored {
            Ok(job) => pending.push_back((line_no, job)),
            Err(e) => break Some(format!("line {line_no}: {e}")),
        }
    };
    // Lines stored before a failure are still reported once durable.
    let mut failure = failure;
    while let Some((n, job)) = pending.pop_front() {
        match finished(n, job.await) {
            Ok(ptr) => out::bytes(&pointer_line(&ptr)?)?,
            Err(e) => {
                failure.get_or_insert(e);
                break;
            }
        }
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// The pointer of line `n` once its job is done, or why not.
fn finished(
    n: usize,
    done: Result<protobase::Result<AtomPointer>, tokio::task::JoinError>,
) -> Result<AtomPointer, String> {
    match done {
        Ok(Ok(ptr)) => Ok(ptr),
        Ok(Err(e)) => Err(format!("line {n}: {e}")),
        Err(e) => Err(format!("line {n}: {e}")),
    }
}

/// `put --connect`: through a running node, one line (or the whole stdin)
/// at a time; each pointer is printed once its record is durable (with
/// `--root`: once the root naming it is).
async fn put_through(
    client: &Client,
    opts: &PutOptions,
    expected: Option<ExpectedRoot>,
) -> CmdResult {
    let one = |format: Format, bytes: Vec<u8>, expected: Option<ExpectedRoot>| async move {
        let ptr = client.push(format, Bytes::from(bytes), !opts.root).await?;
        if opts.root {
            match client.publish(ptr, expected).await? {
                Published::Root(_) => {}
                Published::Conflict { current } => return Ok(Err(current)),
            }
        }
        Ok::<_, Error>(Ok(ptr))
    };
    if !opts.lines {
        let input = read_all_stdin()?;
        let (format, bytes) = encode(opts.format, &input).map_err(|e| format!("stdin: {e}"))?;
        return match one(format, bytes, expected)
            .await
            .map_err(|e| format!("stdin: {e}"))?
        {
            Ok(ptr) => {
                out::bytes(&pointer_line(&ptr)?)?;
                Ok(ExitCode::SUCCESS)
            }
            Err(current) => moved(current),
        };
    }
    let mut lines = stdin_lines();
    let mut n = 0usize;
    while let Some(line) = lines.recv().await {
        n += 1;
        let line = line.map_err(|e| format!("line {n}: reading stdin: {e}"))?;
        let (format, bytes) = encode(opts.format, &line).map_err(|e| format!("line {n}: {e}"))?;
        match one(format, bytes, None)
            .await
            .map_err(|e| format!("line {n}: {e}"))?
        {
            Ok(ptr) => out::bytes(&pointer_line(&ptr)?)?,
            Err(current) => return moved(current),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn kind_name(kind: Option<protobase::record::WalKind>) -> &'static str {
    match kind {
        Some(protobase::record::WalKind::Native) => "native",
        Some(protobase::record::WalKind::Reference) => "reference",
        None => "empty",
    }
}

pub(crate) async fn inspect(address: &str, object_size: Option<u64>) -> CmdResult {
    let address = Address::parse(address)?;
    let opened = space::open_read_only(&address, object_size).await?;
    let storage = &opened.storage;
    let result = async {
        match storage.read_current_root().await? {
            Some(r) => outln!(
                "root: {} (sequence {}, term {})",
                r.pointer,
                r.sequence,
                r.term
            ),
            None => outln!("root: none"),
        }
        if let Some(slot) = opened.slot_size {
            outln!("object store, {slot}-byte slots");
        }
        let wals = storage.list_wals().await?;
        outln!(
            "{:<38} {:>12} {:>10} {:>9}  notes",
            "wal",
            "bytes",
            "records",
            "format"
        );
        for w in &wals {
            let rep = storage.scan_wal(w.id, |_| {}).await?;
            let kind = match rep.kind {
                None if rep.corrupt.iter().any(|p| p.offset == 0) => "damaged",
                k => kind_name(k),
            };
            let mut notes = Vec::new();
            if !rep.corrupt.is_empty() {
                notes.push(format!("{} corrupt", rep.corrupt.len()));
            }
            if let Some(t) = &rep.torn_tail {
                notes.push(format!("torn tail at {}", t.offset));
            }
            // Gaps inside the WAL (the last barrier's gap lies past its end).
            let gaps: Vec<_> = rep.gaps.iter().filter(|(a, _)| *a < rep.len).collect();
            if !gaps.is_empty() {
                let gap: u64 = gaps
                    .iter()
                    .map(|(a, b)| (*b).min(rep.len).saturating_sub(*a))
                    .sum();
                notes.push(format!(
                    "{} slot gaps ({gap} bytes never written)",
                    gaps.len()
                ));
            }
            outln!(
                "{:<38} {:>12} {:>10} {:>9}  {}",
                w.id.to_string(),
                w.len,
                rep.records,
                kind,
                notes.join(", ")
            );
        }
        outln!("{} WALs", wals.len());
        if opened.cluster_node {
            outln!(
                "a cluster node's directory: it holds this node's WALs only; the others are on its peers"
            );
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    storage.close().await?;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The cluster members of a node description, as a read-only space.
async fn cluster_space(
    config: &protobase::NodeConfig,
) -> Result<ClusterSpace, Box<dyn std::error::Error>> {
    let cluster = config
        .cluster
        .as_ref()
        .ok_or_else(|| format!("{}: no [cluster] section", config.source))?;
    let mut members = Vec::new();
    for m in &cluster.servers {
        let timeout = Duration::from_millis(cluster.read_timeout_ms.max(1000));
        members.push(
            Client::connect(config, Some(&m.id))
                .await?
                .with_timeout(timeout),
        );
    }
    Ok(ClusterSpace::new(members))
}

pub(crate) async fn verify(
    address: &str,
    strict: bool,
    config: Option<&std::path::Path>,
    object_size: Option<u64>,
) -> CmdResult {
    let address = Address::parse(address)?;
    let node = match config {
        Some(path) => Some(protobase::NodeConfig::load(path)?),
        None => address.node.clone().filter(|n| n.cluster.is_some()),
    };
    let opened = space::open_read_only(&address, object_size).await?;
    let storage = &opened.storage;
    let result = verify_opened(&address, &opened, strict, node.as_ref()).await;
    storage.close().await?;
    result
}

async fn verify_opened(
    address: &Address,
    opened: &space::Opened,
    strict: bool,
    node: Option<&protobase::NodeConfig>,
) -> CmdResult {
    let storage = &opened.storage;
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
    let mut report_lines = Vec::new();
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
            report_lines.push(format!("CORRUPT {}:{}: {}", w.id, p.offset, p.error));
            problems += 1;
        }
        if let Some(t) = &rep.torn_tail {
            let label = if strict {
                "TORN"
            } else {
                "torn tail (ignored)"
            };
            report_lines.push(format!("{label} {}:{}: {}", w.id, t.offset, t.error));
            if strict {
                problems += 1;
            }
        }
    }
    bar.finish_and_clear();
    for l in &report_lines {
        outln!("{l}");
    }
    let local: std::collections::HashSet<_> = wals.iter().map(|w| w.id).collect();
    let mut on_peers = None;
    match storage.read_current_root().await {
        Ok(Some(r)) if local.contains(&r.pointer.wal_id) => {
            match storage.get_record(r.pointer).await {
                Ok(_) => outln!("root {} ok", r.pointer),
                Err(e) => {
                    outln!("ROOT {}: {e}", r.pointer);
                    problems += 1;
                }
            }
        }
        Ok(Some(r)) => match node {
            Some(node) => {
                let space = Arc::new(cluster_space(node).await?);
                let peers = StorageBuilder::new()
                    .with_parts(space.clone(), space.clone())
                    .read_only(true)
                    .page_cache_size(0)
                    .build()
                    .await?;
                let all = peers.list_wals().await;
                let checked = peers.get_record(r.pointer).await;
                let owner = space.owner(r.pointer.wal_id);
                match (all, checked) {
                    (Ok(all), Ok(_)) => {
                        outln!(
                            "root {} ok (its WAL is on peer {})",
                            r.pointer,
                            owner.as_deref().unwrap_or("?")
                        );
                        on_peers = Some(all.iter().filter(|w| !local.contains(&w.id)).count());
                    }
                    (_, Err(e)) | (Err(e), _) => {
                        outln!("ROOT {}: not readable from the peers: {e}", r.pointer);
                        problems += 1;
                    }
                }
                for (peer, why) in space.unreachable() {
                    outln!("peer {peer} did not answer: {why}");
                }
                let _ = peers.close().await;
            }
            None if opened.cluster_node => outln!(
                "root {} is in WAL {}, which lives on a peer of this cluster node (not checked; \
                 verify {address} --config NODE.toml asks the peers)",
                r.pointer,
                r.pointer.wal_id
            ),
            None => {
                outln!("ROOT {}: WAL {} not found", r.pointer, r.pointer.wal_id);
                problems += 1;
            }
        },
        Ok(None) => outln!("no root"),
        Err(e) => {
            outln!("ROOT: {e}");
            problems += 1;
        }
    }
    if let Some(n) = on_peers {
        outln!("{n} WALs are on peers (verify each node's own directory)");
    }
    outln!(
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
