//! `protobase`: inspect, read, write, verify, copy and benchmark spaces;
//! run a node from a config file and ask a cluster for its status; create
//! development certificates for clusters over QUIC.
//!
//! Exit codes: 0 success, 1 failure (including a `verify` that found
//! problems), 2 bad usage, 3 `root` on a space without a root, 4 a `copy`
//! stopped by `--max-bytes`.

mod bench;
mod bench_cc;
mod bench_cloud;
mod bench_cluster;
mod certs;
mod commands;
mod copy;
mod copy_endpoint;
mod http;
mod node;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Inspect, read, write, verify and benchmark protobase spaces.
#[derive(Debug, Parser)]
#[command(name = "protobase", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Result of a command.
pub(crate) type CmdResult = Result<ExitCode, Box<dyn std::error::Error>>;

/// How `node` writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
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
enum PutFormat {
    /// Bytes as given (format byte 0).
    Raw,
    /// A JSON document, validated (format byte 1).
    Json,
    /// A JSON document stored as MessagePack, or MessagePack bytes as given (format byte 2).
    Msgpack,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the current root as one JSON line (exit 3 when there is none).
    Root {
        /// Space directory.
        dir: PathBuf,
    },
    /// Write a record's payload to stdout.
    Get {
        /// Space directory.
        dir: PathBuf,
        /// `<wal-uuid>:<offset>`.
        pointer: String,
        /// Decode a JSON or MessagePack record and print it as one JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Push stdin as a record and print its pointer as JSON.
    Put {
        /// Space directory (created if missing).
        dir: PathBuf,
        /// Record format.
        #[arg(long, value_enum, default_value_t = PutFormat::Raw)]
        format: PutFormat,
        /// Publish each record as the root; its line is printed once durable.
        #[arg(long)]
        root: bool,
        /// Every stdin line is its own record (one pointer line each).
        #[arg(long)]
        lines: bool,
    },
    /// List WALs with sizes and record counts.
    Inspect {
        /// Space directory.
        dir: PathBuf,
    },
    /// Check every record and the root; exit 0 only when clean.
    Verify {
        /// Space directory.
        dir: PathBuf,
        /// Also count a torn tail (left by a crash, unreachable) as a problem.
        #[arg(long)]
        strict: bool,
    },
    /// Create a development CA and a certificate per node (QUIC transport's
    /// mutual TLS); print the files and each node's `tls` settings as JSON.
    Certs {
        /// Directory for the PEM files (created if missing).
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Node ids (each certificate's name).
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Run the benchmark: a human table, then one JSON line.
    Bench {
        /// Fewer iterations (a smoke run).
        #[arg(long)]
        quick: bool,
        /// Directory for the benchmark's files (default: a temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Install the Prometheus metrics recorder `protobase node` uses
        /// (to measure what recording metrics costs).
        #[arg(long)]
        metrics: bool,
    },
    /// Run one node (any variant) from a config file until SIGINT/SIGTERM.
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
    /// Copy a space: directory, file:///object-store-dir, s3://bucket/prefix?endpoint=URL or node.toml.
    Copy {
        /// Source location.
        src: String,
        /// Destination location.
        dst: String,
        /// Slot size of object-store sides not given by a node description (must match the writer's).
        #[arg(long, default_value_t = 5 << 20)]
        object_size: u64,
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
            Command::Root { dir } => commands::root(&dir).await,
            Command::Get { dir, pointer, json } => commands::get(&dir, &pointer, json).await,
            Command::Put {
                dir,
                format,
                root,
                lines,
            } => commands::put(&dir, format, root, lines).await,
            Command::Inspect { dir } => commands::inspect(&dir).await,
            Command::Verify { dir, strict } => commands::verify(&dir, strict).await,
            Command::Certs { out, ids } => certs::run(&out, &ids),
            Command::Bench {
                quick,
                dir,
                metrics,
            } => bench::run(quick, dir, metrics).await,
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
                src,
                dst,
                object_size,
                max_bytes,
            } => {
                let opts = copy::CopyOptions {
                    object_size,
                    max_bytes,
                };
                copy::run(&src, &dst, opts).await
            }
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("protobase: {e}");
            ExitCode::FAILURE
        }
    }
}
