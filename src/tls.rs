//! TLS material: certificates and keys read from PEM files into rustls
//! configurations (the `ring` provider). The listeners' acceptor
//! (`ssl_cert`/`ssl_key`, as anycable-go: TLS 1.2 and 1.3, no client
//! certificates) and the clients' configurations (the RPC server:
//! `rpc_tls_*`; Redis reads its files through [`certificates`] and
//! [`private_key`]). Every error names the file and what was wrong with it, so
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

/// A client's TLS (to the RPC server, to Redis): the servers it trusts and
/// whether it checks them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// The option naming the CA, for messages (`rpc_tls_root_ca`, ...).
    pub ca_option: &'static str,
    /// The CA certificate(s) trusted instead of the system's: a path to a
    /// PEM file or, as anycable-go takes `rpc_tls_root_ca`, the PEM itself.
    pub ca: Option<String>,
    /// Check the server's certificate (chain and name). Off only when the
    /// deployment says so (`rpc_tls_verify=false`, insecure).
    pub verify: bool,
}

impl ClientTls {
    /// The rustls configuration, offering `alpn` (`h2` for gRPC).
    pub fn config(&self, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(format!("TLS setup: {e}")))?;
        let builder = if self.verify {
            builder.with_root_certificates(self.roots()?)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(provider())))
        };
        let mut config = builder.with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    fn roots(&self) -> Result<rustls::RootCertStore, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        let certs = match &self.ca {
            Some(ca) => ca_certificates(self.ca_option, ca)?,
            None => {
                let found = rustls_native_certs::load_native_certs();
                if found.certs.is_empty() {
                    return Err(TlsError(format!(
                        "no system CA certificates to check the server with ({:?}): install them \
                         (ca-certificates) or set {}",
                        found.errors, self.ca_option
                    )));
                }
                found.certs
            }
        };
        for cert in certs {
            roots.add(cert).map_err(|e| {
                TlsError(format!(
                    "{}: a CA certificate cannot be used: {e}",
                    self.ca_option
                ))
            })?;
        }
        Ok(roots)
    }
}

/// The CA certificates `value` names: a PEM file, else PEM content.
fn ca_certificates(option: &str, value: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    if Path::new(value).is_file() || !value.contains("-----BEGIN") {
        return certificates(option, Path::new(value));
    }
    let certs = CertificateDer::pem_slice_iter(value.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{option}: not a PEM certificate ({e})")))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{option}: no PEM certificate in it")));
    }
    Ok(certs)
}

/// Accepts any server certificate (the deployment turned verification off)
/// but still checks that the server holds the key of the one it sent.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
