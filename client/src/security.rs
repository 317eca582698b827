//! How a client's connections reach brokers: plain text (the default) or TLS, with or
//! without a client certificate (mutual TLS).
//!
//! ```no_run
//! # async fn example() -> Result<(), brook_client::ClientError> {
//! use brook_client::{Connection, Security};
//! let security = Security::tls_from_files("ca.pem".as_ref())?
//!     .with_client_certificate_files("alice.pem".as_ref(), "alice.key".as_ref())?;
//! let conn = Connection::connect_with("broker-1:7400", &security).await?;
//! # Ok(()) }
//! ```
//!
//! Every connection a producer, consumer or admin call opens to another broker (found in
//! metadata) uses the settings of the connection it started from.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use http::HeaderValue;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::ClientError;

/// Transport security for connections to brokers. Cheap to clone.
#[derive(Clone, Default)]
pub struct Security {
    tls: Option<Arc<TlsSettings>>,
    authorization: Option<HeaderValue>,
}

#[derive(Clone)]
struct TlsSettings {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    server_name: Option<String>,
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        let mut s = f.debug_struct("Security");
        s.field("tls", &self.tls.is_some());
        if let Some(tls) = &self.tls {
            s.field("client_certificate", &tls.identity.is_some())
                .field("server_name", &tls.server_name);
        }
        s.field("token", &self.authorization.is_some()).finish()
    }
}

fn invalid(what: &str, reason: impl fmt::Display) -> ClientError {
    ClientError::InvalidArgument(format!("{what}: {reason}"))
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|e| invalid(&format!("{what} {}", path.display()), e))
}

fn check_certificates(what: &str, pem: &[u8]) -> Result<(), ClientError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(what, format_args!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(what, "holds no CERTIFICATE block"));
    }
    Ok(())
}

impl Security {
    /// Plain text: no TLS (the default).
    pub fn plaintext() -> Security {
        Security::default()
    }

    /// TLS, trusting brokers whose certificate chains to one of the PEM CA certificates in
    /// `ca_pem`. Fails when `ca_pem` holds no certificate.
    pub fn tls(ca_pem: impl Into<Vec<u8>>) -> Result<Security, ClientError> {
        let ca_pem = ca_pem.into();
        check_certificates("TLS CA", &ca_pem)?;
        Ok(Security {
            tls: Some(Arc::new(TlsSettings {
                ca_pem,
                identity: None,
                server_name: None,
            })),
            authorization: None,
        })
    }

    /// [`Security::tls`] with the CA certificates read from the PEM file at `ca`.
    pub fn tls_from_files(ca: &Path) -> Result<Security, ClientError> {
        let pem = read("TLS CA file", ca)?;
        check_certificates(&format!("TLS CA file {}", ca.display()), &pem)?;
        Security::tls(pem)
    }

    /// Presents this certificate chain (PEM, the client's own certificate first) and its
    /// private key (PEM: PKCS#8, PKCS#1 or SEC1), for brokers that require client
    /// certificates. Fails when TLS is not on or a PEM holds no certificate or key.
    pub fn with_client_certificate(
        self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Result<Security, ClientError> {
        let (cert_pem, key_pem) = (cert_pem.into(), key_pem.into());
        check_certificates("TLS client certificate", &cert_pem)?;
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            invalid(
                "TLS client key",
                format_args!("holds no PEM private key: {e}"),
            )
        })?;
        self.with_tls("a client certificate", |tls| {
            tls.identity = Some((cert_pem, key_pem))
        })
    }

    /// [`Security::with_client_certificate`] with both read from PEM files.
    pub fn with_client_certificate_files(
        self,
        cert: &Path,
        key: &Path,
    ) -> Result<Security, ClientError> {
        let cert_pem = read("TLS client certificate file", cert)?;
        let key_pem = read("TLS client key file", key)?;
        check_certificates(
            &format!("TLS client certificate file {}", cert.display()),
            &cert_pem,
        )?;
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            invalid(
                &format!("TLS client key file {}", key.display()),
                format_args!("holds no PEM private key: {e}"),
            )
        })?;
        self.with_client_certificate(cert_pem, key_pem)
    }

    /// Checks brokers' certificates against this name instead of the host of the address
    /// connected to (for brokers reached through an address their certificate does not
    /// name). Fails when TLS is not on.
    pub fn with_server_name(self, name: impl Into<String>) -> Result<Security, ClientError> {
        let name = name.into();
        self.with_tls("a TLS server name", |tls| tls.server_name = Some(name))
    }

    fn with_tls(
        self,
        what: &str,
        change: impl FnOnce(&mut TlsSettings),
    ) -> Result<Security, ClientError> {
        let Some(tls) = self.tls else {
            return Err(ClientError::InvalidArgument(format!(
                "{what} needs TLS: give the CA certificate too"
            )));
        };
        let mut tls = Arc::unwrap_or_clone(tls);
        change(&mut tls);
        Ok(Security {
            tls: Some(Arc::new(tls)),
            authorization: self.authorization,
        })
    }

    /// Sends `token` (a JWT) as `authorization: Bearer <token>` with every request. Without
    /// TLS the token travels in clear; anyone on the path can replay it. Fails for an empty
    /// token or one with characters a header cannot carry.
    pub fn with_token(mut self, token: &str) -> Result<Security, ClientError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(ClientError::InvalidArgument("the token is empty".into()));
        }
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            ClientError::InvalidArgument(
                "the token holds characters an HTTP header cannot carry".into(),
            )
        })?;
        value.set_sensitive(true);
        self.authorization = Some(value);
        Ok(self)
    }

    /// [`Security::with_token`] with the token read from `path` (surrounding whitespace
    /// dropped).
    pub fn with_token_file(self, path: &Path) -> Result<Security, ClientError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(&format!("token file {}", path.display()), e))?;
        self.with_token(&text)
    }

    /// The `authorization` header value, when a token is set.
    pub(crate) fn authorization(&self) -> Option<&HeaderValue> {
        self.authorization.as_ref()
    }

    /// TLS is on.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The URI scheme connections use.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.is_tls() { "https" } else { "http" }
    }

    /// tonic's TLS configuration, when TLS is on.
    pub(crate) fn client_tls_config(&self) -> Option<ClientTlsConfig> {
        let tls = self.tls.as_ref()?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
        if let Some((cert, key)) = &tls.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = &tls.server_name {
            config = config.domain_name(name.clone());
        }
        Some(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_PEM: &[u8] = b"hello";

    #[test]
    fn plaintext_is_the_default() {
        assert!(!Security::default().is_tls());
        assert_eq!(Security::plaintext().scheme(), "http");
        assert!(Security::plaintext().client_tls_config().is_none());
    }

    #[test]
    fn pem_without_a_certificate_is_refused() {
        assert_eq!(
            Security::tls(NOT_PEM).unwrap_err().to_string(),
            "TLS CA: holds no CERTIFICATE block"
        );
        assert_eq!(
            Security::tls(Vec::new()).unwrap_err().to_string(),
            "TLS CA: holds no CERTIFICATE block"
        );
    }

    #[test]
    fn client_settings_need_tls() {
        assert_eq!(
            Security::plaintext()
                .with_server_name("b")
                .unwrap_err()
                .to_string(),
            "a TLS server name needs TLS: give the CA certificate too"
        );
    }

    #[test]
    fn tokens_must_fit_a_header_and_stay_out_of_debug_output() {
        let security = Security::plaintext().with_token(" abc.def.ghi\n").unwrap();
        assert_eq!(
            security.authorization().unwrap().to_str().unwrap(),
            "Bearer abc.def.ghi"
        );
        assert!(security.authorization().unwrap().is_sensitive());
        assert_eq!(
            format!("{security:?}"),
            "Security { tls: false, token: true }"
        );
        assert_eq!(
            Security::plaintext()
                .with_token("  ")
                .unwrap_err()
                .to_string(),
            "the token is empty"
        );
        assert_eq!(
            Security::plaintext()
                .with_token("a\u{7f}b")
                .unwrap_err()
                .to_string(),
            "the token holds characters an HTTP header cannot carry"
        );
        let err = Security::plaintext()
            .with_token_file(Path::new("/nonexistent/token"))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("token file /nonexistent/token: "),
            "{err}"
        );
    }

    #[test]
    fn missing_files_are_named() {
        let err = Security::tls_from_files(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("TLS CA file /nonexistent/ca.pem: "),
            "{err}"
        );
    }
}
