//! Mutual TLS for the QUIC transport (feature `quic`): PEM loading, rustls
//! client and server configurations, and development certificates.
//!
//! Every node presents a certificate whose subject alternative name is its
//! node id (`server_id`), and verifies its peers against a [`Trust`]:
//!
//! - [`Trust::Ca`]: certificates issued by one of the given CA certificates
//!   (the usual case: a cluster CA, see [`generate_dev_certs`]);
//! - [`Trust::Pinned`]: exactly the given end-entity certificates, whoever
//!   issued them.
//!
//! On top of that, a node accepts a connection only from a certificate valid
//! for one of its configured peers' ids, and a client checks that the server
//! it dialled presents a certificate for the id it expects. A node with an
//! untrusted certificate therefore fails the TLS handshake: it never gets a
//! stream accepted, let alone a handler call (no vote, no publish).
//!
//! Only TLS 1.3 (QUIC requires it) with the `ring` crypto provider.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// ALPN protocol id of the protobase QUIC transport.
pub const ALPN: &[u8] = b"protobase/1";

/// Errors loading certificates or building TLS configurations, naming the
/// file or node concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {path}: {reason}")]
    Pem {
        /// What was expected ("certificate chain", "private key", ...).
        what: &'static str,
        /// The file (or `<memory>`).
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A PEM input holds no certificate.
    #[error("{path} holds no certificate")]
    NoCertificate {
        /// The file (or `<memory>`).
        path: PathBuf,
    },
    /// The node's certificate is not valid for its own node id.
    #[error("certificate of node {node:?} is not valid for that id: {reason}")]
    NameMismatch {
        /// The node id.
        node: String,
        /// Why.
        reason: String,
    },
    /// A node id cannot be used as a certificate name (a DNS-style name).
    #[error("node id {0:?} cannot be a certificate name (use letters, digits, '-', '.')")]
    InvalidName(String),
    /// rustls refused the configuration (bad key, no usable CA, ...).
    #[error("TLS configuration refused: {0}")]
    Config(String),
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// Writing generated certificates failed.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Whom a node trusts.
#[derive(Clone)]
pub enum Trust {
    /// Certificates issued by one of these CA certificates.
    Ca(Vec<CertificateDer<'static>>),
    /// Exactly these end-entity certificates.
    Pinned(Vec<CertificateDer<'static>>),
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::Ca(certs) => write!(f, "Ca({} certificates)", certs.len()),
            Trust::Pinned(certs) => write!(f, "Pinned({} certificates)", certs.len()),
        }
    }
}

/// A node's TLS identity (certificate chain and key) and whom it trusts.
pub struct TlsConfig {
    /// The node's certificate first, then any intermediates.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The certificate's private key.
    pub key: PrivateKeyDer<'static>,
    /// Whom peers' certificates must be issued by (or be).
    pub trust: Trust,
}

impl Clone for TlsConfig {
    fn clone(&self) -> Self {
        TlsConfig {
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
            trust: self.trust.clone(),
        }
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field(
                "cert_chain",
                &format!("{} certificates", self.cert_chain.len()),
            )
            .field("key", &"<redacted>")
            .field("trust", &self.trust)
            .finish()
    }
}

fn memory() -> PathBuf {
    PathBuf::from("<memory>")
}

fn certs_from_pem(pem: &[u8], path: PathBuf) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: "certificates",
            path: path.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path });
    }
    Ok(certs)
}

fn key_from_pem(pem: &[u8], path: PathBuf) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        what: "private key",
        path,
        reason: e.to_string(),
    })
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Pem {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

impl Trust {
    /// CA certificates from PEM text (one or more `CERTIFICATE` blocks).
    pub fn ca_from_pem(pem: &[u8]) -> Result<Self, TlsError> {
        Ok(Trust::Ca(certs_from_pem(pem, memory())?))
    }

    /// CA certificates from a PEM file.
    pub fn ca_from_pem_file(path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let path = path.as_ref();
        Ok(Trust::Ca(certs_from_pem(
            &read(path, "CA certificates")?,
            path.to_owned(),
        )?))
    }

    /// Pinned peer certificates from PEM files (each may hold several).
    pub fn pinned_from_pem_files<P: AsRef<Path>>(
        paths: impl IntoIterator<Item = P>,
    ) -> Result<Self, TlsError> {
        let mut certs = Vec::new();
        for path in paths {
            let path = path.as_ref();
            certs.extend(certs_from_pem(
                &read(path, "pinned certificates")?,
                path.to_owned(),
            )?);
        }
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                path: PathBuf::from("<pinned set>"),
            });
        }
        Ok(Trust::Pinned(certs))
    }
}

impl TlsConfig {
    /// A configuration from PEM text: the node's certificate chain, its
    /// private key (PKCS#8, PKCS#1 or SEC1), and whom to trust.
    pub fn from_pem(cert_chain: &[u8], key: &[u8], trust: Trust) -> Result<Self, TlsError> {
        Ok(TlsConfig {
            cert_chain: certs_from_pem(cert_chain, memory())?,
            key: key_from_pem(key, memory())?,
            trust,
        })
    }

    /// A configuration from PEM files: the node's certificate (chain) and
    /// its key; `trust` from [`Trust::ca_from_pem_file`] or
    /// [`Trust::pinned_from_pem_files`].
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
        trust: Trust,
    ) -> Result<Self, TlsError> {
        let (cert_path, key_path) = (cert_chain.as_ref(), key.as_ref());
        Ok(TlsConfig {
            cert_chain: certs_from_pem(
                &read(cert_path, "certificate chain")?,
                cert_path.to_owned(),
            )?,
            key: key_from_pem(&read(key_path, "private key")?, key_path.to_owned())?,
            trust,
        })
    }

    /// Replaces whom to trust.
    pub fn with_trust(mut self, trust: Trust) -> Self {
        self.trust = trust;
        self
    }

    /// Checks that the node's own certificate is valid for `node_id`.
    pub fn check_identity(&self, node_id: &str) -> Result<(), TlsError> {
        let name = server_name(node_id)?;
        let cert = self
            .cert_chain
            .first()
            .ok_or_else(|| TlsError::NoCertificate {
                path: PathBuf::from("<certificate chain>"),
            })?;
        cert_names(cert, &name).map_err(|reason| TlsError::NameMismatch {
            node: node_id.to_owned(),
            reason,
        })
    }

    /// The rustls server configuration of a node that accepts only `peers`
    /// (client certificates required).
    pub fn server_config(&self, peers: &[String]) -> Result<rustls::ServerConfig, TlsError> {
        let provider = provider();
        let inner: Arc<dyn ClientCertVerifier> = match &self.trust {
            Trust::Ca(cas) => rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(cas)?),
                Arc::clone(&provider),
            )
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?,
            Trust::Pinned(certs) => Arc::new(Pinned::new(certs, &provider)),
        };
        let allowed = peers
            .iter()
            .map(|id| server_name(id))
            .collect::<Result<Vec<_>, _>>()?;
        let verifier = Arc::new(PeersOnly { inner, allowed });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// The rustls client configuration: presents this node's certificate
    /// and checks the server's against the trust (and, through the server
    /// name given at connect time, the peer id).
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = provider();
        let verifier: Arc<dyn ServerCertVerifier> = match &self.trust {
            Trust::Ca(cas) => rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots(cas)?),
                Arc::clone(&provider),
            )
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?,
            Trust::Pinned(certs) => Arc::new(Pinned::new(certs, &provider)),
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.cert_chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(cas: &[CertificateDer<'static>]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots
            .add(ca.clone())
            .map_err(|e| TlsError::Config(format!("unusable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// `id` as a TLS server name.
pub(crate) fn server_name(id: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(id.to_owned()).map_err(|_| TlsError::InvalidName(id.to_owned()))
}

/// Whether `cert` is valid for `name` (its subject alternative names).
fn cert_names(cert: &CertificateDer<'_>, name: &ServerName<'_>) -> Result<(), String> {
    let parsed = webpki::EndEntityCert::try_from(cert).map_err(|e| e.to_string())?;
    parsed
        .verify_is_valid_for_subject_name(name)
        .map_err(|e| e.to_string())
}

/// The first of `ids` that `cert` is valid for.
pub(crate) fn identify<'a>(cert: &CertificateDer<'_>, ids: &'a [String]) -> Option<&'a String> {
    ids.iter().find(|id| {
        server_name(id)
            .map(|name| cert_names(cert, &name).is_ok())
            .unwrap_or(false)
    })
}

/// Client verification that also requires the certificate to name one of
/// the configured peers.
#[derive(Debug)]
struct PeersOnly {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<ServerName<'static>>,
}

impl ClientCertVerifier for PeersOnly {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        true
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self
            .allowed
            .iter()
            .any(|name| cert_names(end_entity, name).is_ok())
        {
            Ok(verified)
        } else {
            tracing::warn!("refused a client certificate that names no configured peer");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts exactly the pinned end-entity certificates (both directions).
struct Pinned {
    certs: HashSet<Vec<u8>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for Pinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pinned({} certificates)", self.certs.len())
    }
}

impl Pinned {
    fn new(certs: &[CertificateDer<'static>], provider: &CryptoProvider) -> Self {
        Pinned {
            certs: certs.iter().map(|c| c.as_ref().to_vec()).collect(),
            algorithms: provider.signature_verification_algorithms,
        }
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.certs.contains(end_entity.as_ref()) {
            Ok(())
        } else {
            tracing::warn!("refused a certificate outside the pinned set");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)?;
        cert_names(end_entity, server_name).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
        })?;
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

// ---------------------------------------------------------------------------
// Development certificates
// ---------------------------------------------------------------------------

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

/// Creates a CA and one certificate per node id (subject alternative name =
/// the id, valid for client and server authentication), for a development
/// or test cluster. Keys are ECDSA P-256.
pub fn generate_dev_certs<S: AsRef<str>>(node_ids: &[S]) -> Result<DevCerts, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "protobase development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(generate)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(generate)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

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
        let cert = params.signed_by(&key, &issuer).map_err(generate)?;
        nodes.push(NodeCert {
            id: id.to_owned(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        });
    }
    Ok(DevCerts {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem,
        nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certs_load_and_name_their_node() {
        let certs = generate_dev_certs(&["n0", "n1"]).unwrap();
        let tls = certs.tls_config("n0").unwrap().unwrap();
        tls.check_identity("n0").unwrap();
        assert!(matches!(
            tls.check_identity("n1"),
            Err(TlsError::NameMismatch { .. })
        ));
        let peers = ["n1".to_owned()];
        tls.server_config(&peers).unwrap();
        tls.client_config().unwrap();
        assert_eq!(identify(&tls.cert_chain[0], &peers), None);
        let n1 = certs.tls_config("n1").unwrap().unwrap();
        assert_eq!(identify(&n1.cert_chain[0], &peers), Some(&peers[0]));
        assert!(certs.tls_config("n9").is_none());
        assert!(!format!("{tls:?}").contains("PRIVATE"));
    }

    #[test]
    fn bad_pem_is_reported_with_its_source() {
        assert!(matches!(
            Trust::ca_from_pem(b"not pem"),
            Err(TlsError::NoCertificate { .. })
        ));
        let certs = generate_dev_certs(&["n0"]).unwrap();
        let err = TlsConfig::from_pem(
            certs.nodes[0].cert_pem.as_bytes(),
            b"-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n",
            Trust::Ca(Vec::new()),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Pem {
                    what: "private key",
                    ..
                }
            ),
            "{err}"
        );
        let missing =
            TlsConfig::from_pem_files("/nonexistent/n0.pem", "/x.key", Trust::Ca(Vec::new()))
                .unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/n0.pem"),
            "{missing}"
        );
        assert!(matches!(
            generate_dev_certs(&["bad id with spaces"]),
            Err(TlsError::InvalidName(_))
        ));
    }

    #[test]
    fn dev_certs_are_written_with_private_keys_protected() {
        let dir = tempfile::tempdir().unwrap();
        let certs = generate_dev_certs(&["a", "b"]).unwrap();
        let files = certs.write_to(dir.path()).unwrap();
        assert_eq!(files.len(), 6);
        let trust = Trust::ca_from_pem_file(dir.path().join("ca.pem")).unwrap();
        let loaded =
            TlsConfig::from_pem_files(dir.path().join("a.pem"), dir.path().join("a.key"), trust)
                .unwrap();
        loaded.check_identity("a").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("a.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
        }
    }
}
