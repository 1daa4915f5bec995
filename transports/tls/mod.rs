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

mod dev;
mod node;
mod verify;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

pub use self::dev::{DevCerts, NodeCert, generate_dev_certs, generate_dev_certs_with_ca};
pub(crate) use self::node::{TlsPeers, identity_of, node_tls};
pub(crate) use self::verify::identify;
use self::verify::{PeersOnly, Pinned, cert_names};

/// ALPN protocol id of the protobase QUIC transport (members).
pub const ALPN: &[u8] = b"protobase/1";

/// ALPN protocol id of client links (operator tools, `--connect`): they
/// present a member's certificate but are served as clients
/// ([`client_id`](crate::network::client_id)), never as members.
pub const CLIENT_ALPN: &[u8] = b"protobase-client/1";

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
    /// (client certificates required). It offers both ALPN ids: members
    /// connect with [`ALPN`], client links with [`CLIENT_ALPN`]; the QUIC
    /// transport admits a member only under `ALPN` and a certificate of one
    /// of its peers, and a client only under `CLIENT_ALPN` (a certificate of
    /// any member, this node's included, so pass every member in `peers`).
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
        config.alpn_protocols = vec![ALPN.to_vec(), CLIENT_ALPN.to_vec()];
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
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
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
