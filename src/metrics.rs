//! Metrics, through the [`metrics`] facade.
//!
//! The library records; it installs no recorder and forces no exporter. An
//! application that wants the figures installs any `metrics` recorder
//! (Prometheus, StatsD, OpenTelemetry...) **before** building its
//! [`Storage`](crate::Storage) — handles are taken when components are built,
//! as the facade's documentation recommends for hot paths, so a storage
//! built before a recorder was installed records nothing. Without a
//! recorder every call is a no-op. `protobase node` installs a Prometheus
//! recorder and serves it on `/metrics` (see the README).
//!
//! [`describe`] registers the units and help texts of every name below.
//! Histograms of durations are in seconds.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `protobase_push_seconds` | histogram | — | latency of a push (`push_bytes`, `push_atom`, `push_record`) |
//! | `protobase_push_bytes_total` | counter | — | payload bytes pushed |
//! | `protobase_get_seconds` | histogram | — | latency of a read (`get_bytes`, `get_atom`, `get_record`) |
//! | `protobase_get_bytes_total` | counter | — | payload bytes read |
//! | `protobase_flush_seconds` | histogram | — | latency of `flush_wal` |
//! | `protobase_commit_seconds` | histogram | — | a root publish, until durable |
//! | `protobase_commits_total` | counter | `outcome` (`ok`, `error`) | root publishes |
//! | `protobase_commit_batch_size` | histogram | — | roots made durable by one root write (group commit) |
//! | `protobase_errors_total` | counter | `op`, `kind` | errors returned by the `Storage` API, by [`ErrorKind`] |
//! | `protobase_wal_syncs_total` | counter | — | durability barriers of the WAL store (an fdatasync; a staging fsync for cloud) |
//! | `protobase_wal_sync_seconds` | histogram | — | their latency |
//! | `protobase_wal_bytes_written_total` | counter | — | bytes appended to the WAL store |
//! | `protobase_wal_bytes_read_total` | counter | `tier` (`local`, `peers`, `store`) | bytes read below the page cache, by the tier that had them |
//! | `protobase_root_writes_total` | counter | `outcome` | writes of the root register |
//! | `protobase_cache_hits_total` | counter | `tier` (`memory`, `disk`, `cloud_cache`) | page / object cache hits |
//! | `protobase_cache_misses_total` | counter | `tier` | cache misses |
//! | `protobase_vote_round_seconds` | histogram | `phase` (`prepare`, `accept`, `read`), `outcome` (`ok`, `failed`) | one round to the cluster's acceptors |
//! | `protobase_grants_total` | counter | — | exclusive grants obtained by this node |
//! | `protobase_root_forwards_total` | counter | `outcome` (`ok`, `refused`, `unknown`) | blind root writes handed to the grant's holder ([`crate::root_forward`]) |
//! | `protobase_term` | gauge | — | the newest term this node's acceptor promised |
//! | `protobase_peer_fetch_seconds` | histogram | `outcome` (`ok`, `not_found`, `error`) | a WAL piece read from peers |
//! | `protobase_peer_fetch_bytes_total` | counter | — | bytes read from peers |
//! | `protobase_pages_rejected_total` | counter | `tier` (`peers`, `local`, `store`, `cache`) | answers (a peer's page, a tier's bytes) or cached pages that failed their check ([`page_check`](crate::page_check)): not used, not cached, read elsewhere |
//! | `protobase_peer_up` | gauge | `peer` | 1 while the transport has a working link to the peer |
//! | `protobase_peer_state_changes_total` | counter | `peer`, `state` (`up`, `down`) | peers coming up and going down |
//! | `protobase_object_store_request_seconds` | histogram | `op` (`get`, `put`, `list`, ...), `outcome` | object-store requests |
//! | `protobase_object_store_errors_total` | counter | `op`, `kind` | failed object-store requests |
//! | `protobase_uploads_total` | counter | — | slots uploaded by the cloud uploader |
//! | `protobase_upload_bytes_total` | counter | — | their bytes |
//! | `protobase_upload_failures_total` | counter | `kind` | uploads given up after the retry budget, or failed permanently |
//! | `protobase_upload_backlog_slots` | gauge | — | sealed slots waiting for upload |
//! | `protobase_upload_backlog_bytes` | gauge | — | their bytes |
//! | `protobase_uploader_failing` | gauge | — | 1 while some slot's last upload failed |
//! | `protobase_retries_total` | counter | `op`, `kind` | retries of the [retry policy](crate::retry) |

use ::metrics::{Counter, Histogram, Unit, describe_counter, describe_gauge, describe_histogram};

use crate::error::ErrorKind;

/// `protobase_push_seconds`.
pub const PUSH_SECONDS: &str = "protobase_push_seconds";
/// `protobase_push_bytes_total`.
pub const PUSH_BYTES: &str = "protobase_push_bytes_total";
/// `protobase_get_seconds`.
pub const GET_SECONDS: &str = "protobase_get_seconds";
/// `protobase_get_bytes_total`.
pub const GET_BYTES: &str = "protobase_get_bytes_total";
/// `protobase_flush_seconds`.
pub const FLUSH_SECONDS: &str = "protobase_flush_seconds";
/// `protobase_commit_seconds`.
pub const COMMIT_SECONDS: &str = "protobase_commit_seconds";
/// `protobase_commits_total`.
pub const COMMITS: &str = "protobase_commits_total";
/// `protobase_commit_batch_size`.
pub const COMMIT_BATCH: &str = "protobase_commit_batch_size";
/// `protobase_errors_total`.
pub const ERRORS: &str = "protobase_errors_total";
/// `protobase_wal_syncs_total`.
pub const WAL_SYNCS: &str = "protobase_wal_syncs_total";
/// `protobase_wal_sync_seconds`.
pub const WAL_SYNC_SECONDS: &str = "protobase_wal_sync_seconds";
/// `protobase_wal_bytes_written_total`.
pub const WAL_BYTES_WRITTEN: &str = "protobase_wal_bytes_written_total";
/// `protobase_wal_bytes_read_total`.
pub const WAL_BYTES_READ: &str = "protobase_wal_bytes_read_total";
/// `protobase_root_writes_total`.
pub const ROOT_WRITES: &str = "protobase_root_writes_total";
/// `protobase_cache_hits_total`.
pub const CACHE_HITS: &str = "protobase_cache_hits_total";
/// `protobase_cache_misses_total`.
pub const CACHE_MISSES: &str = "protobase_cache_misses_total";
/// `protobase_vote_round_seconds`.
pub const VOTE_ROUND_SECONDS: &str = "protobase_vote_round_seconds";
/// `protobase_grants_total`.
pub const GRANTS: &str = "protobase_grants_total";
/// `protobase_root_forwards_total`.
pub const ROOT_FORWARDS: &str = "protobase_root_forwards_total";
/// `protobase_term`.
pub const TERM: &str = "protobase_term";
/// `protobase_peer_fetch_seconds`.
pub const PEER_FETCH_SECONDS: &str = "protobase_peer_fetch_seconds";
/// `protobase_peer_fetch_bytes_total`.
pub const PEER_FETCH_BYTES: &str = "protobase_peer_fetch_bytes_total";
/// `protobase_pages_rejected_total`.
pub const PAGES_REJECTED: &str = "protobase_pages_rejected_total";
/// `protobase_peer_up`.
pub const PEER_UP: &str = "protobase_peer_up";
/// `protobase_peer_state_changes_total`.
pub const PEER_STATE_CHANGES: &str = "protobase_peer_state_changes_total";
/// `protobase_object_store_request_seconds`.
pub const STORE_REQUEST_SECONDS: &str = "protobase_object_store_request_seconds";
/// `protobase_object_store_errors_total`.
pub const STORE_ERRORS: &str = "protobase_object_store_errors_total";
/// `protobase_uploads_total`.
pub const UPLOADS: &str = "protobase_uploads_total";
/// `protobase_upload_bytes_total`.
pub const UPLOAD_BYTES: &str = "protobase_upload_bytes_total";
/// `protobase_upload_failures_total`.
pub const UPLOAD_FAILURES: &str = "protobase_upload_failures_total";
/// `protobase_upload_backlog_slots`.
pub const UPLOAD_BACKLOG_SLOTS: &str = "protobase_upload_backlog_slots";
/// `protobase_upload_backlog_bytes`.
pub const UPLOAD_BACKLOG_BYTES: &str = "protobase_upload_backlog_bytes";
/// `protobase_uploader_failing`.
pub const UPLOADER_FAILING: &str = "protobase_uploader_failing";
/// `protobase_retries_total`.
pub const RETRIES: &str = "protobase_retries_total";

/// Registers the unit and help text of every metric with the installed
/// recorder (call after installing it; harmless without one).
pub fn describe() {
    use Unit::{Bytes, Count, Seconds};
    describe_histogram!(PUSH_SECONDS, Seconds, "Latency of a push");
    describe_counter!(PUSH_BYTES, Bytes, "Payload bytes pushed");
    describe_histogram!(GET_SECONDS, Seconds, "Latency of a record read");
    describe_counter!(GET_BYTES, Bytes, "Payload bytes read");
    describe_histogram!(FLUSH_SECONDS, Seconds, "Latency of flush_wal");
    describe_histogram!(COMMIT_SECONDS, Seconds, "A root publish, until durable");
    describe_counter!(COMMITS, Count, "Root publishes, by outcome");
    describe_histogram!(
        COMMIT_BATCH,
        Count,
        "Roots made durable by one root write (group commit)"
    );
    describe_counter!(ERRORS, Count, "Errors of the Storage API, by op and kind");
    describe_counter!(
        WAL_SYNCS,
        Count,
        "Durability barriers (fsyncs) of the WAL store"
    );
    describe_histogram!(
        WAL_SYNC_SECONDS,
        Seconds,
        "Latency of a WAL durability barrier"
    );
    describe_counter!(WAL_BYTES_WRITTEN, Bytes, "Bytes appended to the WAL store");
    describe_counter!(
        WAL_BYTES_READ,
        Bytes,
        "Bytes read below the page cache, by tier"
    );
    describe_counter!(
        ROOT_WRITES,
        Count,
        "Writes of the root register, by outcome"
    );
    describe_counter!(CACHE_HITS, Count, "Cache hits, by tier");
    describe_counter!(CACHE_MISSES, Count, "Cache misses, by tier");
    describe_histogram!(
        VOTE_ROUND_SECONDS,
        Seconds,
        "One round to the cluster's acceptors, by phase and outcome"
    );
    describe_counter!(GRANTS, Count, "Exclusive grants obtained by this node");
    describe_counter!(
        ROOT_FORWARDS,
        Count,
        "Blind root writes handed to the grant's holder, by outcome"
    );
    describe_gauge!(TERM, Count, "Newest term this node's acceptor promised");
    describe_histogram!(PEER_FETCH_SECONDS, Seconds, "A WAL piece read from peers");
    describe_counter!(PEER_FETCH_BYTES, Bytes, "Bytes read from peers");
    describe_counter!(
        PAGES_REJECTED,
        Count,
        "Answers or cached pages that failed their check, by tier"
    );
    describe_gauge!(
        PEER_UP,
        Count,
        "1 while the transport has a working link to the peer"
    );
    describe_counter!(PEER_STATE_CHANGES, Count, "Peers coming up and going down");
    describe_histogram!(
        STORE_REQUEST_SECONDS,
        Seconds,
        "Object-store requests, by operation and outcome"
    );
    describe_counter!(
        STORE_ERRORS,
        Count,
        "Failed object-store requests, by op and kind"
    );
    describe_counter!(UPLOADS, Count, "Slots uploaded by the cloud uploader");
    describe_counter!(UPLOAD_BYTES, Bytes, "Bytes uploaded by the cloud uploader");
    describe_counter!(
        UPLOAD_FAILURES,
        Count,
        "Uploads that failed for good, by kind"
    );
    describe_gauge!(
        UPLOAD_BACKLOG_SLOTS,
        Count,
        "Sealed slots waiting for upload"
    );
    describe_gauge!(
        UPLOAD_BACKLOG_BYTES,
        Bytes,
        "Bytes of sealed slots waiting for upload"
    );
    describe_gauge!(
        UPLOADER_FAILING,
        Count,
        "1 while some slot's last upload failed"
    );
    describe_counter!(
        RETRIES,
        Count,
        "Retries of the retry policy, by op and kind"
    );
}

/// Seconds since `start`, as histograms record them.
#[inline]
pub(crate) fn since(start: std::time::Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// Times an operation on the hot paths (push, get), where a system clock
/// read on each side would be a good part of the operation's cost: `quanta`
/// reads the CPU's time-stamp counter where it is invariant, and falls back
/// to the system's monotonic clock where it is not.
#[derive(Clone, Copy)]
pub(crate) struct Timer(u64);

impl Timer {
    #[inline]
    pub(crate) fn start() -> Self {
        Timer(clock().raw())
    }

    /// Seconds since `start` (the counter is scaled only here).
    #[inline]
    pub(crate) fn seconds(self) -> f64 {
        let c = clock();
        c.delta_as_nanos(self.0, c.raw()) as f64 * 1e-9
    }
}

fn clock() -> &'static quanta::Clock {
    static CLOCK: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// Counts an error of a `Storage` operation.
pub(crate) fn error(op: &'static str, kind: ErrorKind) {
    ::metrics::counter!(ERRORS, "op" => op, "kind" => kind.as_str()).increment(1);
}

/// Counts a retry of the retry policy.
pub(crate) fn retry(op: &'static str, kind: ErrorKind) {
    ::metrics::counter!(RETRIES, "op" => op, "kind" => kind.as_str()).increment(1);
}

/// Counts a cache lookup of `tier`.
#[derive(Debug, Clone)]
pub(crate) struct CacheCounters {
    hits: Counter,
    misses: Counter,
}

impl CacheCounters {
    pub(crate) fn new(tier: &'static str) -> Self {
        CacheCounters {
            hits: ::metrics::counter!(CACHE_HITS, "tier" => tier),
            misses: ::metrics::counter!(CACHE_MISSES, "tier" => tier),
        }
    }

    #[inline]
    pub(crate) fn record(&self, hit: bool) {
        if hit {
            self.hits.increment(1);
        } else {
            self.misses.increment(1);
        }
    }
}

/// The handles of the engine's hot paths, taken once per storage.
#[derive(Debug, Clone)]
pub(crate) struct EngineMetrics {
    pub(crate) push_seconds: Histogram,
    pub(crate) push_bytes: Counter,
    pub(crate) get_seconds: Histogram,
    pub(crate) get_bytes: Counter,
    pub(crate) flush_seconds: Histogram,
}

impl EngineMetrics {
    pub(crate) fn new() -> Self {
        EngineMetrics {
            push_seconds: ::metrics::histogram!(PUSH_SECONDS),
            push_bytes: ::metrics::counter!(PUSH_BYTES),
            get_seconds: ::metrics::histogram!(GET_SECONDS),
            get_bytes: ::metrics::counter!(GET_BYTES),
            flush_seconds: ::metrics::histogram!(FLUSH_SECONDS),
        }
    }
}

/// Handles of the root committer (group commit).
#[derive(Debug, Clone)]
pub(crate) struct CommitMetrics {
    pub(crate) seconds: Histogram,
    pub(crate) ok: Counter,
    pub(crate) failed: Counter,
    pub(crate) batch: Histogram,
    pub(crate) grants: Counter,
}

impl CommitMetrics {
    pub(crate) fn new() -> Self {
        CommitMetrics {
            seconds: ::metrics::histogram!(COMMIT_SECONDS),
            ok: ::metrics::counter!(COMMITS, "outcome" => "ok"),
            failed: ::metrics::counter!(COMMITS, "outcome" => "error"),
            batch: ::metrics::histogram!(COMMIT_BATCH),
            grants: ::metrics::counter!(GRANTS),
        }
    }
}

/// Records one vote round (`phase`: prepare, accept or read).
pub(crate) fn vote_round(phase: &'static str, ok: bool, start: std::time::Instant) {
    let outcome = if ok { "ok" } else { "failed" };
    ::metrics::histogram!(VOTE_ROUND_SECONDS, "phase" => phase, "outcome" => outcome)
        .record(since(start));
}

/// Records a transport's view of a peer changing.
pub(crate) fn peer_state(peer: &str, up: bool) {
    let peer = peer.to_string();
    ::metrics::gauge!(PEER_UP, "peer" => peer.clone()).set(if up { 1.0 } else { 0.0 });
    let state = if up { "up" } else { "down" };
    ::metrics::counter!(PEER_STATE_CHANGES, "peer" => peer, "state" => state).increment(1);
}
