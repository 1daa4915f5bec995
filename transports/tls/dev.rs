//! Development certificates: a CA and one certificate per node (rcgen).

use std::fmt;
use std::path::{Path, PathBuf};

use super::{TlsConfig, TlsError, Trust, server_name};

/// A node's generated certificate and key, in PEM.
#[derive(Clone)]
pub struct NodeCert {
    /// The node id (the certificate's subject alternative name).
    pub id: String,
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key (PKCS#8), PEM.
    pub key_pem: String,
}

impl fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCert")
            .field("id", &self.id)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A development CA and certificates for a set of nodes, in PEM.
#[derive(Clone)]
pub struct DevCerts {
    /// The CA certificate, PEM (what every node trusts).
    pub ca_cert_pem: String,
    /// The CA's private key, PEM.
    pub ca_key_pem: String,
    /// One certificate per node, in the order asked.
    pub nodes: Vec<NodeCert>,
}

impl fmt::Debug for DevCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevCerts")
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

impl DevCerts {
    /// The [`TlsConfig`] of node `id` (trusting the CA), if it is one of
    /// the generated nodes.
    pub fn tls_config(&self, id: &str) -> Option<Result<TlsConfig, TlsError>> {
        let node = self.nodes.iter().find(|n| n.id == id)?;
        Some(
            Trust::ca_from_pem(self.ca_cert_pem.as_bytes()).and_then(|trust| {
                TlsConfig::from_pem(node.cert_pem.as_bytes(), node.key_pem.as_bytes(), trust)
            }),
        )
    }

    /// Writes `ca.pem`, `ca.key`, and `<id>.pem` / `<id>.key` per node into
    /// `dir` (created if missing); returns the files written. Keys are
    /// written with mode 0600 on Unix.
    pub fn write_to(&self, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, TlsError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| TlsError::Write {
            path: dir.to_owned(),
            reason: e.to_string(),
        })?;
        let mut files = vec![
            (dir.join("ca.pem"), &self.ca_cert_pem, false),
            (dir.join("ca.key"), &self.ca_key_pem, true),
        ];
        for node in &self.nodes {
            files.push((dir.join(format!("{}.pem", node.id)), &node.cert_pem, false));
            files.push((dir.join(format!("{}.key", node.id)), &node.key_pem, true));
        }
        let mut written = Vec::new();
        for (path, text, secret) in files {
            write_file(&path, text.as_bytes(), secret).map_err(|e| TlsError::Write {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            written.push(path);
        }
        Ok(written)
    }
}

fn write_file(path: &Path, bytes: &[u8], secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn ca_params() -> Result<rcgen::CertificateParams, TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "protobase development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(ca_params)
}

/// One certificate per node id, signed by `issuer`.
fn node_certs<S: AsRef<str>>(
    node_ids: &[S],
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
) -> Result<Vec<NodeCert>, TlsError> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut nodes = Vec::new();
    for id in node_ids {
        let id = id.as_ref();
        server_name(id)?;
        let mut params = CertificateParams::new(vec![id.to_owned()]).map_err(generate)?;
        params.distinguished_name.push(DnType::CommonName, id);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().map_err(generate)?;
        let cert = params.signed_by(&key, issuer).map_err(generate)?;
        nodes.push(NodeCert {
            id: id.to_owned(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        });
    }
    Ok(nodes)
}

/// Creates a CA and one certificate per node id (subject alternative name =
/// the id, valid for client and server authentication), for a development
/// or test cluster. Keys are ECDSA P-256.
pub fn generate_dev_certs<S: AsRef<str>>(node_ids: &[S]) -> Result<DevCerts, TlsError> {
    use rcgen::{Issuer, KeyPair};
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let ca_params = ca_params()?;
    let ca_key = KeyPair::generate().map_err(generate)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(generate)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let nodes = node_certs(node_ids, &issuer)?;
    Ok(DevCerts {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem,
        nodes,
    })
}

/// Certificates for `node_ids` signed by an existing development CA (its
/// certificate and key, PEM, as [`generate_dev_certs`] wrote them), so
/// certificates issued before stay valid. Each new certificate is checked
/// to verify against `ca_cert_pem`; a CA this crate did not create (another
/// subject name) is refused.
pub fn generate_dev_certs_with_ca<S: AsRef<str>>(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    node_ids: &[S],
) -> Result<DevCerts, TlsError> {
    use rcgen::{Issuer, KeyPair};
    let key = KeyPair::from_pem(ca_key_pem).map_err(|e| TlsError::Pem {
        what: "CA private key",
        path: PathBuf::from("ca.key"),
        reason: e.to_string(),
    })?;
    let issuer = Issuer::new(ca_params()?, key);
    let nodes = node_certs(node_ids, &issuer)?;
    let cas = super::certs_from_pem(ca_cert_pem.as_bytes(), PathBuf::from("ca.pem"))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(super::roots(&cas)?),
        super::provider(),
    )
    .build()
    .map_err(|e| TlsError::Config(e.to_string()))?;
    for node in &nodes {
        let cert = super::certs_from_pem(node.cert_pem.as_bytes(), PathBuf::from("<new>"))?;
        let Some(first) = cert.first() else {
            return Err(TlsError::NoCertificate {
                path: PathBuf::from("<new>"),
            });
        };
        verifier
            .verify_client_cert(first, &[], rustls_pki_types::UnixTime::now())
            .map_err(|e| {
                TlsError::Config(format!(
                    "a certificate signed with ca.key does not verify against ca.pem ({e}): the \
                     two do not belong together, or the CA was not made by protobase certs"
                ))
            })?;
    }
    Ok(DevCerts {
        ca_cert_pem: ca_cert_pem.to_owned(),
        ca_key_pem: ca_key_pem.to_owned(),
        nodes,
    })
}
