//! `protobase`: inspect, read, write, verify, copy and benchmark spaces;
//! run a node from a config file, talk to running nodes as a client and ask
//! a cluster for its status; create development certificates for clusters
//! over QUIC.
//!
//! Every command that reads or writes a space takes an *address* (see
//! `address.rs`): a directory, `file:///dir`, `s3://bucket/prefix?endpoint=…`,
//! `memory://` (copy) or a node description. Exit codes are listed in each
//! subcommand's `--help`: 0 success, 1 failure (including a `verify` that
//! found problems), 2 bad usage, 3 `root` on a space without a root, 4 a
//! `copy` stopped by `--max-bytes`, 5 a conditional publish (`--if-root`)
//! that found another root. Output to a closed pipe ends the command
//! quietly (exit 0).

mod address;
mod bench;
mod bench_cc;
mod bench_cloud;
mod bench_cluster;
mod bench_gc;
mod bench_machine;
mod bench_rounds;
mod bench_space;
mod certs;
mod checkpoint;
mod commands;
mod copy;
mod gc;
mod history;
mod http;
mod json_text;
mod node;
mod out;
mod space;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Inspect, read, write, verify, copy and benchmark protobase spaces; run
/// nodes and talk to them.
#[derive(Debug, Parser)]
#[command(name = "protobase", version, about, after_help = ADDRESSES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const ADDRESSES: &str = "\
Space addresses (every command that reads or writes a space):
  ./space, /var/lib/space            a space directory
  file:///srv/bucket/prefix          a local directory used as an object store
  s3://bucket/prefix?endpoint=URL    S3 or an S3-compatible server (&region=R;
                                     credentials from AWS_ACCESS_KEY_ID/..._SECRET_...)
  gs://bucket/prefix, az://c/prefix  GCS, Azure (builds with those features)
  memory://                          a fresh in-memory store (copy: a dry run)
  node.toml, node.json               a node description: its directory or store
                                     (slot size, credentials; env overrides apply)

Exit codes: 0 success, 1 failure, 2 bad usage, 3 no root (root), 4 copy
stopped by --max-bytes, 5 --if-root found another root (put). A closed
output pipe ends a command quietly (exit 0).";

/// Result of a command.
pub(crate) type CmdResult = Result<ExitCode, Box<dyn std::error::Error>>;

/// How `node` writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines (coloured only on a terminal; NO_COLOR disables).
    Human,
    /// One JSON object per line.
    Json,
}

/// What `node --workload` does besides serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Write an atom and publish it as the root, `--rate` times a second.
    Demo,
}

/// How `put` encodes its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PutFormat {
    /// Bytes as given (format byte 0).
    Raw,
    /// Exactly one JSON value, numbers that round-trip (format byte 1).
    Json,
    /// One JSON value stored as MessagePack, or exactly one MessagePack
    /// value as given (format byte 2).
    Msgpack,
}

/// How to reach a running node (`--connect`).
#[derive(Debug, Clone, Args)]
pub(crate) struct ConnectArgs {
    /// Send the command to a running cluster node instead of opening a
    /// space: a node description (.toml/.json: its transport and
    /// credentials; the client is `client~<its id>`, never a voting member)
    /// or `id@host:port` (TCP, key from PROTOBASE_TRANSPORT__PSK).
    #[arg(long, value_name = "NODE")]
    pub(crate) connect: Option<String>,
    /// With --connect and a description: the member to talk to (default:
    /// the described node).
    #[arg(long, value_name = "ID")]
    pub(crate) node: Option<String>,
    /// With --connect: deadline of each request, in ms.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub(crate) timeout_ms: u64,
}

const ROOT_EXIT: &str = "Exit codes: 0 the root was printed, 1 failure (unreadable space, \
unreachable node), 2 bad usage, 3 the space has no root.";
const GET_EXIT: &str = "Exit codes: 0 the record was printed, 1 failure (bad pointer, missing or \
corrupt record, a raw record with --json), 2 bad usage.";
const PUT_EXIT: &str = "Exit codes: 0 every record was stored (and published), 1 failure \
(invalid input names its line; earlier lines stay stored and printed), 2 bad usage, 5 --if-root \
found another root (nothing published; the current root is printed on stderr).";
const INSPECT_EXIT: &str = "Exit codes: 0 listed, 1 failure (no such space), 2 bad usage.";
const VERIFY_EXIT: &str = "Exit codes: 0 clean, 1 problems found (corrupt records, an unreadable \
root, with --strict a torn tail) or no space at the address, 2 bad usage.";
const HISTORY_EXIT: &str = "Exit codes: 0 the roots were printed, 1 failure (no space at the \
address, an unreadable register), 2 bad usage, 3 the space has no root.";
const GC_EXIT: &str = "Exit codes: 0 every WAL chosen went (with --dry-run: would go), 1 failure \
(a removal failed, a live WAL is not in the space, an unreadable live set or space; nothing is \
removed when the live set cannot be read), 2 bad usage.";
const CHECKPOINT_EXIT: &str = "Exit codes: 0 done, 1 failure (no space at the address, a bad or \
taken name, an unreadable checkpoint), 2 bad usage, 3 nothing to pin (the space has no root) or, \
with --remove, no checkpoint of that name.";
const PRUNE_EXIT: &str = "Exit codes: 0 pruned (or nothing to prune), 1 failure (no space at the \
address, a store error: what was kept is intact, run again), 2 bad usage.";
const CERTS_EXIT: &str = "Exit codes: 0 written, 1 failure (an existing CA without its key, a \
bad id), 2 bad usage.";
const BENCH_EXIT: &str = "Exit codes: 0 done, 1 failure, 2 bad usage.";
const NODE_EXIT: &str = "Exit codes: 0 stopped by SIGINT/SIGTERM after flushing, 1 failure \
(bad config, address in use, storage error), 2 bad usage.";
const STATUS_EXIT: &str = "Exit codes: 0 a majority of members answered, 1 no majority answered \
(or a bad config), 2 bad usage.";
const COPY_EXIT: &str = "Exit codes: 0 complete (every byte copied and re-verified at the \
destination, the root written last), 1 failure or corrupt source records (nothing is reported \
complete), 2 bad usage, 4 stopped by --max-bytes (re-run to continue).";

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the current root as one JSON line (exit 3 when there is none).
    #[command(after_help = ROOT_EXIT)]
    Root {
        /// Space address (omit with --connect).
        address: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Write a record's payload to stdout.
    #[command(after_help = GET_EXIT)]
    Get {
        /// Space address, then the pointer: `<wal-uuid>:<offset>` or the
        /// JSON `put` prints (with --connect: the pointer only).
        #[arg(required = true, num_args = 1..=2, value_name = "ADDRESS] [POINTER")]
        args: Vec<String>,
        /// Decode a JSON or MessagePack record and print it as one JSON line
        /// (numbers keep every digit).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Push stdin as a record and print its pointer as JSON.
    #[command(after_help = PUT_EXIT)]
    Put {
        /// Space address, created if missing (omit with --connect).
        address: Option<String>,
        /// Record format.
        #[arg(long, value_enum, default_value_t = PutFormat::Raw)]
        format: PutFormat,
        /// Publish each record as the root; its line is printed once durable.
        #[arg(long)]
        root: bool,
        /// Every stdin line is its own record, streamed: each is pushed (and
        /// published) and its pointer printed as soon as it is durable.
        #[arg(long)]
        lines: bool,
        /// With --root: publish only if the current root is this one (the
        /// line `root` prints, a pointer, or `none`); exit 5 otherwise.
        #[arg(long, value_name = "ROOT", requires = "root", conflicts_with = "lines")]
        if_root: Option<String>,
        /// Slot size of a new object-store space (default 5 MiB).
        #[arg(long)]
        object_size: Option<u64>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List WALs with sizes and record counts.
    #[command(after_help = INSPECT_EXIT)]
    Inspect {
        /// Space address.
        address: String,
        /// Slot size of an object-store space (default: read from the space).
        #[arg(long)]
        object_size: Option<u64>,
    },
    /// Check every record and the root; exit 0 only when clean.
    #[command(after_help = VERIFY_EXIT)]
    Verify {
        /// Space address.
        address: String,
        /// Also count a torn tail (left by a crash, unreachable) as a problem.
        #[arg(long)]
        strict: bool,
        /// The description of the cluster node whose directory this is: WALs
        /// it does not hold are looked for on its peers.
        #[arg(long, value_name = "NODE")]
        config: Option<PathBuf>,
        /// Slot size of an object-store space (default: read from the space).
        #[arg(long)]
        object_size: Option<u64>,
    },
    /// List the space's recent roots, newest first, one JSON line each
    /// (sequence, term, writer, pointer, when written).
    #[command(after_help = HISTORY_EXIT)]
    History {
        /// Space address.
        address: String,
        /// How many roots at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Slot size of an object-store space (default: read from the space).
        #[arg(long)]
        object_size: Option<u64>,
    },
    /// Remove the WALs of a space that nothing live points into; print what
    /// went (or, with --dry-run, would go) and what stayed, as JSON.
    #[command(after_help = GC_EXIT)]
    Gc {
        /// Space address (a directory, an object store, a standalone or
        /// cloud node's description; the node must not be running).
        address: String,
        /// The live set: one WAL id or pointer (`<wal>:<offset>` or the
        /// JSON `put` prints) per line, from the object database's
        /// reachability walk of every root still in use.
        #[arg(long, value_name = "FILE")]
        live: PathBuf,
        /// Report what would go; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Keep WALs written less than this many seconds ago (another
        /// process may be writing atoms there that no root reaches yet).
        #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
        min_age: u64,
        /// Slot size of an object-store space (default: read from the space).
        #[arg(long)]
        object_size: Option<u64>,
    },
    /// Pin the space's current root under a name (it and what it reaches
    /// survive gc and prune until removed), list checkpoints, or remove one;
    /// one JSON line per checkpoint.
    #[command(after_help = CHECKPOINT_EXIT)]
    Checkpoint {
        /// Space address (a directory, an object store, a standalone or
        /// cloud node's description; the node must not be running).
        address: String,
        /// The checkpoint's name: ASCII letters, digits, '-', '_', '.'.
        #[arg(required_unless_present = "list")]
        name: Option<String>,
        /// List the checkpoints instead.
        #[arg(long, conflicts_with_all = ["name", "remove"])]
        list: bool,
        /// Remove the checkpoint `name` instead.
        #[arg(long)]
        remove: bool,
        /// Slot size of an object-store space (default: read from the space).
        #[arg(long)]
        object_size: Option<u64>,
    },
    /// Remove the root history a retention does not keep (an object store's
    /// root objects, a directory's history lines); print {"removed","kept"}.
    #[command(after_help = PRUNE_EXIT)]
    Prune {
        /// Space address (the node must not be running).
        address: String,
        /// Keep the last N roots (the current one included).
        #[arg(long, value_name = "N")]
        keep: u64,
        /// Also keep roots written less than this many seconds ago.
        #[arg(long, value_name = "SECONDS")]
        keep_younger_than: Option<u64>,
        /// Slot size of an object-store space (default: read from the space).
        #[arg(long)]
        object_size: Option<u64>,
    },
    /// Create a development CA and a certificate per node (QUIC transport's
    /// mutual TLS); print the files and each node's `tls` settings as JSON.
    /// An existing CA in --out is reused (so existing certificates stay
    /// valid) unless --force.
    #[command(after_help = CERTS_EXIT)]
    Certs {
        /// Directory for the PEM files (created if missing).
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Replace an existing CA (certificates it signed stop verifying).
        #[arg(long)]
        force: bool,
        /// Node ids (each certificate's name).
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Run the benchmark: a human table, then one JSON line.
    #[command(after_help = BENCH_EXIT)]
    Bench {
        /// Fewer iterations (a smoke run).
        #[arg(long)]
        quick: bool,
        /// Directory for the benchmark's files (default: a temp dir); what
        /// the benchmark creates there is removed when it ends.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Install the Prometheus metrics recorder `protobase node` uses
        /// (to measure what recording metrics costs).
        #[arg(long)]
        metrics: bool,
        /// Run only these groups of scenarios (repeatable): `local`
        /// (push, commit, get, gc), `cluster` (RTTs, votes, peer pages),
        /// `cloud` (cloud and cloud-cluster). Default: all.
        #[arg(long, value_enum)]
        only: Vec<bench::Group>,
        /// Rounds of every scenario with its baseline; the JSON gives the
        /// median over the rounds and the spread (min, max).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
        rounds: u16,
    },
    /// Run one node (any variant) from a config file until SIGINT/SIGTERM;
    /// a cluster node also serves clients (`--connect`).
    #[command(after_help = NODE_EXIT)]
    Node {
        /// Node description (.toml or .json).
        #[arg(long)]
        config: PathBuf,
        /// Log format (stderr; RUST_LOG filters, default info).
        #[arg(long, value_enum, default_value_t = LogFormat::Human)]
        log_format: LogFormat,
        /// Also write and publish atoms, to watch a cluster live.
        #[arg(long, value_enum)]
        workload: Option<Workload>,
        /// Roots published per second by the workload.
        #[arg(long, default_value_t = 2.0)]
        rate: f64,
    },
    /// Ask every cluster member for liveness, root sequence and term.
    #[command(after_help = STATUS_EXIT)]
    Status {
        /// Node description of any member (.toml or .json).
        #[arg(long)]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Timeout of each member's answer.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Copy a space between two addresses, verified: `copy SRC DST`, or
    /// `copy --config NODE.toml DST` for a whole cluster.
    #[command(after_help = COPY_EXIT)]
    Copy {
        /// Source and destination addresses (only the destination with
        /// --config).
        #[arg(required = true, num_args = 1..=2, value_name = "SRC] [DST")]
        locations: Vec<String>,
        /// Copy the whole space of the cluster this node description belongs
        /// to (every member's WALs, the quorum's root).
        #[arg(long, value_name = "NODE")]
        config: Option<PathBuf>,
        /// Slot size of the destination store (default: the destination's,
        /// the source's, else 5 MiB); a store source's slot size is read
        /// from the source and must agree when given.
        #[arg(long)]
        object_size: Option<u64>,
        /// Stop after writing this many bytes (exit 4; re-run to continue).
        #[arg(long)]
        max_bytes: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("protobase: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = rt.block_on(async {
        match cli.command {
            Command::Root { address, connect } => {
                commands::root(address.as_deref(), &connect).await
            }
            Command::Get {
                args,
                json,
                connect,
            } => commands::get(&args, json, &connect).await,
            Command::Put {
                address,
                format,
                root,
                lines,
                if_root,
                object_size,
                connect,
            } => {
                let opts = commands::PutOptions {
                    format,
                    root,
                    lines,
                    if_root,
                    object_size,
                };
                commands::put(address.as_deref(), opts, &connect).await
            }
            Command::Inspect {
                address,
                object_size,
            } => commands::inspect(&address, object_size).await,
            Command::Verify {
                address,
                strict,
                config,
                object_size,
            } => commands::verify(&address, strict, config.as_deref(), object_size).await,
            Command::History {
                address,
                limit,
                object_size,
            } => history::run(&address, limit, object_size).await,
            Command::Gc {
                address,
                live,
                dry_run,
                min_age,
                object_size,
            } => gc::run(&address, &live, dry_run, min_age, object_size).await,
            Command::Checkpoint {
                address,
                name,
                list,
                remove,
                object_size,
            } => {
                let action = match (&name, list, remove) {
                    (_, true, _) => checkpoint::Action::List,
                    (Some(n), false, true) => checkpoint::Action::Remove(n),
                    (Some(n), false, false) => checkpoint::Action::Take(n),
                    (None, false, _) => {
                        return Err(out::Usage("a checkpoint name (or --list)".into()).into());
                    }
                };
                checkpoint::run(&address, action, object_size).await
            }
            Command::Prune {
                address,
                keep,
                keep_younger_than,
                object_size,
            } => checkpoint::prune(&address, keep, keep_younger_than, object_size).await,
            Command::Certs { out, force, ids } => certs::run(&out, &ids, force),
            Command::Bench {
                quick,
                dir,
                metrics,
                only,
                rounds,
            } => bench::run(quick, dir, metrics, &only, usize::from(rounds)).await,
            Command::Node {
                config,
                log_format,
                workload,
                rate,
            } => {
                node::init_logging(log_format);
                node::run(&config, workload == Some(Workload::Demo), rate).await
            }
            Command::Status {
                config,
                json,
                timeout_ms,
            } => status::run(&config, json, timeout_ms).await,
            Command::Copy {
                locations,
                config,
                object_size,
                max_bytes,
            } => {
                let opts = copy::CopyOptions {
                    object_size,
                    max_bytes,
                };
                copy::run(&locations, config.as_deref(), opts).await
            }
        }
    });
    // Let tasks of the runtime (uploaders, links) end before exiting.
    drop(rt);
    match outcome {
        Ok(code) => code,
        Err(e) if out::is_broken_pipe(&*e) => ExitCode::SUCCESS,
        Err(e) if e.is::<out::Usage>() => {
            eprintln!("error: {e}\n\nFor more information, try '--help'.");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("protobase: {e}");
            ExitCode::FAILURE
        }
    }
}
