//! Error types of the storage boundary.
//!
//! [`Error`] is what every public operation returns. It carries the context a
//! caller needs to act (which WAL, which offset, which file) and answers
//! [`Error::kind`] with a short, stable [`ErrorKind`] so callers can branch
//! without matching every variant. Record decoding has its own small enum,
//! [`FormatError`], wrapped by [`Error::Corrupt`] together with the position.

use std::path::PathBuf;

use crate::types::WalId;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What is wrong with bytes that were read back (from disk, a peer or a store).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The stored checksum does not match the bytes.
    #[error("CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// Checksum found after the payload.
        stored: u32,
        /// Checksum of the bytes actually read.
        computed: u32,
    },
    /// The record ends after the available bytes (a torn tail or a short read).
    #[error("truncated record: needs {needed} bytes, only {available} available")]
    Truncated {
        /// Bytes the record header announces (header and trailer included).
        needed: u64,
        /// Bytes that exist from the record start.
        available: u64,
    },
    /// The format byte is not 0 (raw), 1 (JSON) or 2 (MessagePack).
    #[error("unknown format byte {0}")]
    UnknownFormat(u8),
    /// The length prefix is larger than any record may be.
    #[error("length prefix {length} exceeds the limit of {limit} bytes")]
    LengthTooLarge {
        /// Length found in the prefix.
        length: u64,
        /// Largest length accepted.
        limit: u64,
    },
    /// A zero length prefix: no valid record is empty (zero-filled tail).
    #[error("zero-length record (zero-filled or torn tail)")]
    ZeroLength,
    /// The offset falls inside the native WAL header.
    #[error("offset points inside the WAL header")]
    InsideHeader,
    /// A native WAL header with an unsupported version.
    #[error("unsupported WAL version {0}")]
    UnsupportedVersion(u16),
    /// The first bytes of a WAL are neither a valid native header nor a
    /// reference record: a damaged header (never read as a reference WAL).
    #[error("damaged WAL header: {0}")]
    BadHeader(String),
    /// The root record's checksum or fields are invalid.
    #[error("invalid root record: {0}")]
    BadRoot(String),
    /// An answer to a read does not match its request: another WAL or
    /// offset, or more bytes than were asked for (a peer's page answer).
    #[error("answer does not match its request: {0}")]
    Mismatch(String),
}

/// A short classification of an [`Error`], stable across versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller passed something invalid (empty data, too large, bad pointer).
    Invalid,
    /// The thing asked for does not exist here (a peer or store may have it).
    NotFound,
    /// Stored bytes failed validation.
    Data,
    /// Another writer won a race (root compare-and-swap, space lock).
    Conflict,
    /// The storage is closed or read-only.
    Closed,
    /// An I/O or remote failure, or no majority answered in time; retrying
    /// may help.
    Unavailable,
    /// The store or peer refused the credentials (HTTP 401/403, a bad
    /// signature, a missing permission): retrying does not help until the
    /// configuration changes.
    Permission,
    /// This node's exclusive grant was fenced by a newer term or lost before
    /// the operation finished; a new grant (a new root update) may succeed.
    Fenced,
}

impl ErrorKind {
    /// A short lowercase name (`"unavailable"`, `"permission"`...), as used
    /// in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Data => "data",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Closed => "closed",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Permission => "permission",
            ErrorKind::Fenced => "fenced",
        }
    }

    /// Whether retrying the same request may succeed (only
    /// [`Unavailable`](Self::Unavailable) errors are transient).
    pub fn is_transient(self) -> bool {
        self == ErrorKind::Unavailable
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A boxed error kept as the source of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error of every public storage operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Data to push was empty.
    #[error("cannot push empty data")]
    EmptyData,
    /// Data to push exceeds `blob_max_size`.
    #[error("blob of {size} bytes exceeds blob_max_size of {max} bytes")]
    BlobTooLarge {
        /// Size of the rejected blob.
        size: u64,
        /// Configured limit.
        max: u64,
    },
    /// An invalid argument or configuration value.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which argument or setting.
        what: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The storage (or provider) was closed.
    #[error("storage is closed")]
    Closed,
    /// The storage was opened read-only.
    #[error("storage is read-only")]
    ReadOnly,
    /// No WAL with this id exists here.
    #[error("WAL {wal} not found")]
    WalNotFound {
        /// The missing WAL.
        wal: WalId,
    },
    /// The offset is at or beyond the end of the WAL.
    #[error("offset {offset} is past the end of WAL {wal} ({len} bytes)")]
    OffsetOutOfRange {
        /// WAL read.
        wal: WalId,
        /// Offset asked for.
        offset: u64,
        /// Bytes the WAL holds.
        len: u64,
    },
    /// A record failed validation.
    #[error("corrupt record in WAL {wal} at offset {offset}: {source}")]
    Corrupt {
        /// WAL read.
        wal: WalId,
        /// Record offset.
        offset: u64,
        /// What is wrong.
        #[source]
        source: FormatError,
    },
    /// The root file or object is unreadable.
    #[error("corrupt root at {location}: {source}")]
    CorruptRoot {
        /// Where the root was read.
        location: String,
        /// What is wrong.
        #[source]
        source: FormatError,
    },
    /// The current root points into a WAL at or past the end of its valid
    /// records: the WAL was damaged below the root. Opening the space for
    /// writing refuses to continue (and so to cut) such a WAL; a read-only
    /// open still works, to inspect it.
    #[error(
        "the current root points to WAL {wal} at offset {root_offset}, but that WAL's valid \
         records end at {valid_end}: the WAL is damaged below the root; refusing to write to \
         the space (open it read-only and run `protobase verify`)"
    )]
    RootPastWalEnd {
        /// The WAL the root points into.
        wal: WalId,
        /// The root's offset.
        root_offset: u64,
        /// Where the WAL's valid records end (first invalid byte).
        valid_end: u64,
    },
    /// A record could not be decoded into (or encoded from) the requested type.
    #[error("cannot {action} atom{}: {message}", at.map(|(w, o)| format!(" at {w}:{o}")).unwrap_or_default())]
    Encoding {
        /// "encode" or "decode".
        action: &'static str,
        /// Pointer of the record, when decoding.
        at: Option<(WalId, u64)>,
        /// The codec's message.
        message: String,
    },
    /// The record's format byte is not the one the caller asked to decode.
    #[error("record at {wal}:{offset} has format {found:?}, not {expected}")]
    WrongFormat {
        /// WAL read.
        wal: WalId,
        /// Record offset.
        offset: u64,
        /// Format of the stored record.
        found: crate::types::Format,
        /// What the caller asked for.
        expected: &'static str,
    },
    /// The root compare-and-swap lost: another writer published first.
    #[error("root conflict: expected sequence {expected:?}, found {found:?}")]
    RootConflict {
        /// Sequence the writer built on.
        expected: Option<u64>,
        /// Sequence found in the store.
        found: Option<u64>,
    },
    /// A published root was not committed: making it (or a root it built
    /// on) durable failed. When the root register's write itself failed, the
    /// outcome is unknown and the root may still be stored.
    #[error("root #{sequence} not committed: {source}")]
    CommitFailed {
        /// Sequence of the root.
        sequence: u64,
        /// Why.
        #[source]
        source: std::sync::Arc<Error>,
    },
    /// A blind root write handed to the node holding the grant (see
    /// [`crate::root_forward`]) got no answer saying whether it was
    /// published: the outcome is unknown (the root may still be stored).
    #[error("root handed to {holder} (term {term}) has an unknown outcome: {source}")]
    ForwardFailed {
        /// The node it was handed to.
        holder: String,
        /// The grant's term it named.
        term: u64,
        /// Why no answer came.
        #[source]
        source: Box<Error>,
    },
    /// A WAL cannot be removed: a writer (of this process or another)
    /// holds it, or it may still gain records.
    #[error("WAL {wal} is in use: {why}")]
    WalInUse {
        /// The WAL.
        wal: WalId,
        /// Who or what holds it.
        why: String,
    },
    /// A checkpoint of this name exists already (remove it first).
    #[error("checkpoint {name:?} exists already")]
    CheckpointExists {
        /// The name.
        name: String,
    },
    /// No checkpoint has this name.
    #[error("no checkpoint named {name:?}")]
    CheckpointNotFound {
        /// The name.
        name: String,
    },
    /// Another process holds the space lock.
    #[error("space {path} is locked by another process")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The exclusive grant for root updates was refused, fenced by a newer
    /// term or lost ([`ErrorKind::Fenced`]).
    #[error("exclusive grant not obtained: {0}")]
    NotGranted(String),
    /// No majority of the cluster answered in time (a vote or a root write):
    /// [`ErrorKind::Unavailable`], retrying may help once peers are back.
    #[error("no majority: {0}")]
    NoMajority(String),
    /// An I/O failure, with what was being done.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What was being done (with paths).
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A peer could not be reached or misbehaved.
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    /// Bytes a read tier or a peer answered failed their check (see
    /// [`crate::page_check`]): they were not used, cached or served on, and
    /// the read went on to the next source. A read that no source could
    /// serve returns the first such `source` error itself (an
    /// [`Error::Corrupt`], [`Error::OffsetOutOfRange`]...), never this
    /// wrapper, except from a [`ReadTier`](crate::ReadTier) asked directly.
    #[error("bytes of WAL {wal} at offset {offset} from {from} rejected: {source}")]
    Rejected {
        /// Who answered: `peer <id>`, or a read tier's name.
        from: String,
        /// WAL read.
        wal: WalId,
        /// Offset asked for.
        offset: u64,
        /// Why the answer was refused.
        #[source]
        source: Box<Error>,
    },
    /// A backend-specific failure (object store, peers…), classified by
    /// `kind` and keeping the backend's own error as its source.
    #[error("{backend}: {message}")]
    Backend {
        /// Which backend or transport.
        backend: String,
        /// What failed.
        message: String,
        /// What kind of failure ([`ErrorKind::Unavailable`] for transient
        /// ones, [`ErrorKind::Permission`], [`ErrorKind::NotFound`]...).
        kind: ErrorKind,
        /// The backend's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// Builds an [`Error::Io`] with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Builds an [`Error::Invalid`].
    pub fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what,
            reason: reason.into(),
        }
    }

    /// A transient [`Error::Backend`] failure without a source.
    pub fn backend(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Backend {
            backend: backend.into(),
            message: message.into(),
            kind: ErrorKind::Unavailable,
            source: None,
        }
    }

    /// An [`Error::Backend`] of `kind` keeping `source`.
    pub fn backend_with(
        backend: impl Into<String>,
        message: impl Into<String>,
        kind: ErrorKind,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Backend {
            backend: backend.into(),
            message: message.into(),
            kind,
            source: Some(source.into()),
        }
    }

    /// The short classification of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::EmptyData
            | Error::BlobTooLarge { .. }
            | Error::Invalid { .. }
            | Error::OffsetOutOfRange { .. }
            | Error::WrongFormat { .. }
            | Error::Encoding { .. } => ErrorKind::Invalid,
            Error::WalNotFound { .. } | Error::CheckpointNotFound { .. } => ErrorKind::NotFound,
            Error::Corrupt { .. } | Error::CorruptRoot { .. } | Error::RootPastWalEnd { .. } => {
                ErrorKind::Data
            }
            Error::RootConflict { .. }
            | Error::Locked { .. }
            | Error::WalInUse { .. }
            | Error::CheckpointExists { .. } => ErrorKind::Conflict,
            Error::NotGranted(_) => ErrorKind::Fenced,
            Error::Closed | Error::ReadOnly => ErrorKind::Closed,
            Error::CommitFailed { source, .. } => source.kind(),
            Error::ForwardFailed { source, .. } => source.kind(),
            Error::Rejected { source, .. } => source.kind(),
            Error::Backend { kind, .. } => *kind,
            Error::Io { .. } | Error::Network(_) | Error::NoMajority(_) => ErrorKind::Unavailable,
        }
    }

    /// The error a rejected answer carried ([`Error::Rejected`] unwrapped);
    /// any other error as it is.
    pub fn unwrap_rejected(self) -> Error {
        match self {
            Error::Rejected { source, .. } => source.unwrap_rejected(),
            e => e,
        }
    }

    /// True when the data may exist elsewhere (a peer, the object store).
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }
}
