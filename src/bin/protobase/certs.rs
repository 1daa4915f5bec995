//! `protobase certs`: a development CA and one certificate per node for a
//! cluster over QUIC (mutual TLS).

use std::path::Path;
use std::process::ExitCode;

use protobase::transports::tls::generate_dev_certs;

type CmdResult = Result<ExitCode, Box<dyn std::error::Error>>;

/// Creates `ca.pem`/`ca.key` and `<id>.pem`/`<id>.key` per node in `out`,
/// then prints one JSON line: the files and, per node, the `tls` section of
/// its cluster configuration.
pub(crate) fn run(out: &Path, ids: &[String]) -> CmdResult {
    if ids.is_empty() {
        return Err("name at least one node id".into());
    }
    let certs = generate_dev_certs(ids)?;
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
        "wrote {} files to {} (keys are secret; ca.key signs new node certificates)",
        files.len(),
        out.display()
    );
    println!(
        "{}",
        serde_json::json!({ "files": files, "transport": "quic", "tls": nodes })
    );
    Ok(ExitCode::SUCCESS)
}
