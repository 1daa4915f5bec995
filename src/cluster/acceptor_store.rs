//! Where a node's [`Acceptor`](super::Acceptor) keeps its state durably.
//!
//! The state is what consensus needs to survive a restart: the highest term
//! the acceptor may have promised (reserved in blocks, see
//! [`TERM_BLOCK`]) and the root it accepted with its ballot. It is written
//! whole, and the acceptor answers a request only after the write that
//! records its decision returned.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, FormatError, Result};
use crate::protocol::AcceptedRoot;

/// Terms reserved per durable write of a promise: before promising a term
/// above the stored ceiling, the acceptor durably raises the ceiling to that
/// term plus this block, and after a restart it promises nothing at or below
/// the ceiling. Most promises then need no write.
pub const TERM_BLOCK: u64 = 1024;

/// An acceptor's durable state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptorState {
    /// Every term at or below may have been promised.
    pub ceiling: u64,
    /// The root accepted last, with its ballot.
    pub accepted: Option<AcceptedRoot>,
}

/// Durable storage of an [`AcceptorState`].
#[async_trait]
pub trait AcceptorStore: Send + Sync + fmt::Debug {
    /// The stored state (the default state when none was stored).
    async fn load(&self) -> Result<AcceptorState>;
    /// Replaces the state durably and atomically.
    async fn save(&self, state: &AcceptorState) -> Result<()>;
}

/// The file `cluster_acceptor` (JSON with a CRC32C), replaced by
/// tmp + fsync + rename + directory fsync. A legacy `cluster_term` file (a
/// bare ceiling) beside it is read when the state file does not exist.
#[derive(Debug, Clone)]
pub struct FileAcceptorStore {
    path: PathBuf,
}

/// File name of the acceptor state in a node's directory.
pub const ACCEPTOR_FILE: &str = "cluster_acceptor";
const LEGACY_TERM_FILE: &str = "cluster_term";

#[derive(Serialize, Deserialize)]
struct Stored {
    state: AcceptorState,
    crc: u32,
}

fn crc_of(state: &AcceptorState) -> u32 {
    crc32c::crc32c(&serde_json::to_vec(state).unwrap_or_default())
}

impl FileAcceptorStore {
    /// The state file in a node's directory.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        FileAcceptorStore {
            path: dir.into().join(ACCEPTOR_FILE),
        }
    }

    /// Whether `dir` holds a cluster node's acceptor state (the directory
    /// belongs to a cluster node).
    pub fn exists_in(dir: &std::path::Path) -> bool {
        dir.join(ACCEPTOR_FILE).exists() || dir.join(LEGACY_TERM_FILE).exists()
    }

    fn decode(&self, bytes: &[u8]) -> Result<AcceptorState> {
        let corrupt = |m: String| Error::CorruptRoot {
            location: self.path.display().to_string(),
            source: FormatError::BadRoot(m),
        };
        let stored: Stored =
            serde_json::from_slice(bytes).map_err(|e| corrupt(format!("acceptor state: {e}")))?;
        let computed = crc_of(&stored.state);
        if computed != stored.crc {
            return Err(Error::CorruptRoot {
                location: self.path.display().to_string(),
                source: FormatError::BadCrc {
                    stored: stored.crc,
                    computed,
                },
            });
        }
        Ok(stored.state)
    }
}

#[async_trait]
impl AcceptorStore for FileAcceptorStore {
    async fn load(&self) -> Result<AcceptorState> {
        let path = self.path.clone();
        let legacy = path.with_file_name(LEGACY_TERM_FILE);
        let read = |p: PathBuf| match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", p.display()), e)),
        };
        if let Some(b) = read(path)? {
            return self.decode(&b);
        }
        match read(legacy.clone())? {
            Some(b) => {
                let text = String::from_utf8_lossy(&b);
                let ceiling = text.trim().parse::<u64>().map_err(|e| {
                    Error::invalid("term ceiling", format!("{}: {e}", legacy.display()))
                })?;
                Ok(AcceptorState {
                    ceiling,
                    accepted: None,
                })
            }
            None => Ok(AcceptorState::default()),
        }
    }

    async fn save(&self, state: &AcceptorState) -> Result<()> {
        let json = serde_json::to_vec(&Stored {
            state: state.clone(),
            crc: crc_of(state),
        })
        .map_err(|e| Error::invalid("acceptor state", e.to_string()))?;
        let path = self.path.clone();
        crate::backends::file_io::blocking(move || {
            crate::backends::file_io::replace_file(&path, &json)
        })
        .await
    }
}

/// State in memory; clones share it, so a test can "restart" an acceptor
/// with the same store. Only for tests and simulations: promises kept here
/// are forgotten when the process ends.
#[derive(Debug, Clone, Default)]
pub struct MemoryAcceptorStore(Arc<Mutex<AcceptorState>>);

#[async_trait]
impl AcceptorStore for MemoryAcceptorStore {
    async fn load(&self) -> Result<AcceptorState> {
        Ok(self.0.lock().clone())
    }
    async fn save(&self, state: &AcceptorState) -> Result<()> {
        *self.0.lock() = state.clone();
        Ok(())
    }
}
