//! `protobase`: inspect, read, write, verify and benchmark spaces, and create
//! development certificates for clusters over QUIC.
//!
//! Exit codes: 0 success, 1 failure (including a `verify` that found
//! problems), 2 bad usage, 3 `root` on a space without a root.

mod bench;
mod bench_cloud;
mod bench_cluster;
mod certs;
mod commands;

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
            Command::Bench { quick, dir } => bench::run(quick, dir).await,
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
