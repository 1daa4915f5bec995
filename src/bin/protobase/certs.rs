//! `protobase certs`: a development CA and one certificate per node for a
//! cluster over QUIC (mutual TLS).
//!
//! An existing CA in the output directory (`ca.pem` and `ca.key`) is reused,
//! so certificates it signed before (other nodes') stay valid; `--force`
//! replaces it. A `ca.pem` without its `ca.key` is refused (new certificates
//! could not be signed by it) unless `--force`.

use std::path::Path;
use std::process::ExitCode;

use protobase::transports::tls::{generate_dev_certs, generate_dev_certs_with_ca};

use crate::out::outln;

type CmdResult = Result<ExitCode, Box<dyn std::error::Error>>;

/// Creates (or reuses) `ca.pem`/`ca.key` and writes `<id>.pem`/`<id>.key`
/// per node in `out`, then prints one JSON line: the files and, per node,
/// the `tls` section of its cluster configuration.
pub(crate) fn run(out: &Path, ids: &[String], force: bool) -> CmdResult {
    if ids.is_empty() {
        return Err("name at least one node id".into());
    }
    let (ca_pem, ca_key) = (out.join("ca.pem"), out.join("ca.key"));
    let existed = ca_pem.exists();
    let reuse = !force && existed;
    let certs = if reuse {
        let cert = std::fs::read_to_string(&ca_pem)
            .map_err(|e| format!("reading {}: {e}", ca_pem.display()))?;
        let key = std::fs::read_to_string(&ca_key).map_err(|e| {
            format!(
                "{} exists but {} cannot be read ({e}): new certificates could not be signed \
                 by that CA; pass --force to replace the CA (certificates it signed stop \
                 verifying)",
                ca_pem.display(),
                ca_key.display()
            )
        })?;
        generate_dev_certs_with_ca(&cert, &key, ids)?
    } else {
        generate_dev_certs(ids)?
    };
    let files = certs.write_to(out)?;
    let nodes: serde_json::Map<String, serde_json::Value> = ids
        .iter()
        .map(|id| {
            let tls = serde_json::json!({
                "cert": out.join(format!("{id}.pem")),
                "key": out.join(format!("{id}.key")),
                "ca": out.join("ca.pem"),
            });
            (id.clone(), tls)
        })
        .collect();
    eprintln!(
        "wrote {} files to {} ({}; keys are secret; ca.key signs new node certificates)",
        files.len(),
        out.display(),
        if reuse {
            "reused the existing CA"
        } else if existed {
            "replaced the CA"
        } else {
            "new CA"
        }
    );
    outln!(
        "{}",
        serde_json::json!({
            "files": files,
            "transport": "quic",
            "ca_reused": reuse,
            "tls": nodes
        })
    );
    Ok(ExitCode::SUCCESS)
}
