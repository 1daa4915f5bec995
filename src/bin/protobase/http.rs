//! The operator endpoint of `protobase node` (`[http] address = ...`):
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | every metric in the Prometheus text format (`protobase::metrics`) |
//! | `GET /health` | `200 ok` while the process serves (liveness) |
//! | `GET /ready` | `200` when the node can serve, else `503`; JSON [`protobase::Readiness`] either way |
//! | `GET /status` | the rows of `protobase status --json` for every member, as this node sees them |
//!
//! Plain HTTP/1.1 on the configured address; put it on a private interface
//! (it needs no credentials and reveals roots and terms).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use protobase::protocol::Message;
use protobase::{NodeConfig, Storage};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::status;

/// Installs the process's Prometheus recorder (before any storage is
/// built: handles are taken at build time) and keeps its upkeep running.
pub(crate) fn install_recorder() -> Result<PrometheusHandle, Box<dyn std::error::Error>> {
    const SECONDS: &[f64] = &[
        0.000_01, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
        0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)?
        .set_buckets_for_metric(
            Matcher::Full(protobase::metrics::COMMIT_BATCH.into()),
            BATCH,
        )?
        .install_recorder()?;
    protobase::metrics::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// What the endpoint serves.
pub(crate) struct Endpoint {
    pub(crate) storage: Arc<Storage>,
    pub(crate) config: NodeConfig,
    pub(crate) metrics: PrometheusHandle,
}

/// Binds `address`; returns the bound address (port 0 picks one).
pub(crate) async fn bind(address: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves `endpoint` on `listener` until `stop` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    endpoint: Arc<Endpoint>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!(error = %e, "http: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let endpoint = endpoint.clone();
                async move { Ok::<_, Infallible>(answer(&endpoint, req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(error = %e, "http: connection ended");
            }
        });
    }
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(body) => reply(status, "application/json", body),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            e.to_string(),
        ),
    }
}

async fn answer(endpoint: &Endpoint, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n",
        );
    }
    match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            endpoint.metrics.render(),
        ),
        "/health" => reply(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        "/ready" => {
            let r = endpoint.storage.readiness(timeout(&endpoint.config)).await;
            let code = if r.is_ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(code, &r)
        }
        "/status" => json(StatusCode::OK, &status_rows(endpoint).await),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /metrics, /health, /ready or /status\n",
        ),
    }
}

/// How long a readiness check or a member's status answer may take.
fn timeout(config: &NodeConfig) -> Duration {
    config.cluster.as_ref().map_or(Duration::from_secs(2), |c| {
        Duration::from_millis(c.read_timeout_ms)
    })
}

/// Every member's row, asked over the node's own transport (this node
/// answers from its acceptor); outside a cluster, the node's own row.
async fn status_rows(endpoint: &Endpoint) -> Vec<status::Row> {
    let storage = &endpoint.storage;
    let Some(cluster) = endpoint.config.cluster.as_ref() else {
        let me = endpoint.config.node_id();
        let answer = storage
            .read_current_root()
            .await
            .map(|root| protobase::protocol::NodeStatus {
                node: me.to_string(),
                term: root.as_ref().map_or(0, |r| r.term),
                root,
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .map_err(|e| e.to_string());
        return vec![status::row(me, "-", answer)];
    };
    let wait = timeout(&endpoint.config);
    let asks = cluster.servers.iter().map(|member| async move {
        let answer = if member.id == cluster.server_id {
            storage
                .node_status()
                .ok_or_else(|| "not a cluster node".to_string())
        } else {
            match storage.network() {
                Some(net) => match net.request(&member.id, Message::StatusRequest, wait).await {
                    Ok(Message::Status(s)) => Ok(s),
                    Ok(other) => Err(format!("unexpected answer {other:?}")),
                    Err(e) => Err(e.to_string()),
                },
                None => Err("no network".to_string()),
            }
        };
        status::row(&member.id, &member.address, answer)
    });
    futures_util::future::join_all(asks).await
}
