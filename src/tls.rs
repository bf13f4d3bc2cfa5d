//! TLS material: certificates and keys read from PEM files into rustls
//! configurations (the `ring` provider). The listeners' acceptor
//! (`ssl_cert`/`ssl_key`, as anycable-go: TLS 1.2 and 1.3, no client
//! certificates). Every error names the file and what was wrong with it, so
//! a deployment with a bad path stops at start with that message.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// What went wrong loading TLS material (the message names the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate chain in a PEM file (at least one certificate).
pub fn certificates(option: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |what: String| TlsError(format!("{option} {}: {what}", path.display()));
    std::fs::metadata(path).map_err(|e| fail(format!("cannot read it ({e})")))?;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(format!("cannot read it ({e})")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(fail("no PEM certificate (BEGIN CERTIFICATE) in it".into()));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(option: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let fail = |what: String| TlsError(format!("{option} {}: {what}", path.display()));
    std::fs::metadata(path).map_err(|e| fail(format!("cannot read it ({e})")))?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| fail(format!("no PEM private key in it ({e})")))
}

/// The listeners' TLS acceptor for a certificate chain and its key.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let chain = certificates("ssl_cert", cert)?;
    let private = private_key("ssl_key", key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            TlsError(format!(
                "ssl_key {} does not go with ssl_cert {}: {e}",
                key.display(),
                cert.display()
            ))
        })?;
    // HTTP/1.1 only, as the listeners speak it (WebSocket upgrades need it).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The listeners' TLS, from `ssl_cert` and `ssl_key`: none unless both are
/// set (the configuration refuses one without the other).
pub fn listener_acceptor(
    cert: Option<&str>,
    key: Option<&str>,
) -> Result<Option<TlsAcceptor>, TlsError> {
    match (cert, key) {
        (Some(cert), Some(key)) => acceptor(Path::new(cert), Path::new(key)).map(Some),
        _ => Ok(None),
    }
}
