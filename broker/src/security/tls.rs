//! TLS material: the `[tls]` PEM files turned into rustls server configurations (the gRPC
//! listener negotiates HTTP/2, the HTTP listener HTTP/1.1) and into the client configuration
//! this broker uses towards other brokers. [`Tls::reload_if_changed`] and [`Tls::reload`]
//! swap in new files for connections made afterwards; open connections keep the session they
//! have, as in Kafka.
//!
//! A reload that fails (a key that does not match the new certificate, a file half written)
//! keeps the previous material and reports the error; the next check tries again.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::config::{ClientAuth, TlsConfig};

/// ALPN protocol of the gRPC listener.
const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol of the HTTP listener.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("tls.{setting} = {}: cannot read it: {source}", path.display())]
    Read {
        /// The setting naming the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file does not hold what the setting needs.
    #[error("tls.{setting} = {}: {reason}", path.display())]
    Invalid {
        /// The setting naming the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Which listener a server configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The gRPC listener (HTTP/2).
    Grpc,
    /// The HTTP listener (HTTP/1.1).
    Http,
}

/// The broker's TLS material, swapped whole on reload.
#[derive(Debug)]
pub struct Tls {
    settings: TlsConfig,
    current: RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    grpc: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
    peer: ClientTlsConfig,
    stamps: Vec<Stamp>,
}

/// What a file looked like when it was read: a change of either means it was replaced.
type Stamp = Option<(SystemTime, u64)>;

impl Tls {
    /// Loads the files named by `settings`; `None` when TLS is off.
    pub fn load(settings: &TlsConfig) -> Result<Option<Tls>, TlsError> {
        if !settings.enabled() {
            return Ok(None);
        }
        let loaded = load(settings)?;
        Ok(Some(Tls {
            settings: settings.clone(),
            current: RwLock::new(loaded),
        }))
    }

    /// The server configuration new connections on `listener` use.
    pub fn server_config(&self, listener: Listener) -> Arc<ServerConfig> {
        let current = self.current.read();
        match listener {
            Listener::Grpc => current.grpc.clone(),
            Listener::Http => current.http.clone(),
        }
    }

    /// The client configuration for a connection to another broker: this broker's
    /// certificate as its identity, `ca_file` as the roots its certificate is checked against.
    pub fn peer_config(&self) -> ClientTlsConfig {
        self.current.read().peer.clone()
    }

    /// Reads the files again and swaps them in.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = load(&self.settings)?;
        *self.current.write() = loaded;
        metrics::counter!("brook_tls_reloads_total").increment(1);
        Ok(())
    }

    /// Reloads when a file's modification time or length changed since it was last loaded.
    /// Returns whether it reloaded.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        if stamps(&self.settings) == self.current.read().stamps {
            return Ok(false);
        }
        self.reload().map(|()| true)
    }
}

fn paths(settings: &TlsConfig) -> [(&'static str, &Path); 3] {
    [
        ("cert_file", settings.cert_file.as_path()),
        ("key_file", settings.key_file.as_path()),
        ("ca_file", settings.ca_file.as_path()),
    ]
}

fn stamps(settings: &TlsConfig) -> Vec<Stamp> {
    paths(settings)
        .iter()
        .map(|(_, path)| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        setting,
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(setting: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::Invalid {
        setting,
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn certificates(
    setting: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(setting, path, format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(setting, path, "holds no CERTIFICATE block"));
    }
    Ok(certs)
}

fn load(settings: &TlsConfig) -> Result<Loaded, TlsError> {
    // Stamped before reading, so a file replaced while it is read is read again next time.
    let stamps = stamps(settings);
    let (cert_path, key_path, ca_path) = (
        settings.cert_file.as_path(),
        settings.key_file.as_path(),
        settings.ca_file.as_path(),
    );
    let cert_pem = read("cert_file", cert_path)?;
    let key_pem = read("key_file", key_path)?;
    let chain = certificates("cert_file", cert_path, &cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        invalid(
            "key_file",
            key_path,
            format!("holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    let ca_pem = if ca_path.as_os_str().is_empty() {
        None
    } else {
        Some(read("ca_file", ca_path)?)
    };
    let roots = match &ca_pem {
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("ca_file", ca_path, pem)? {
                roots
                    .add(cert)
                    .map_err(|e| invalid("ca_file", ca_path, format!("not a usable CA: {e}")))?;
            }
            Some(Arc::new(roots))
        }
        None => None,
    };
    let provider = Arc::new(crypto_provider());
    let server = |alpn: &[u8]| -> Result<Arc<ServerConfig>, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| invalid("cert_file", cert_path, e.to_string()))?;
        let builder = match (settings.client_auth, &roots) {
            (ClientAuth::Required, Some(roots)) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                        .build()
                        .map_err(|e| invalid("ca_file", ca_path, e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| {
                invalid(
                    "key_file",
                    key_path,
                    format!("does not go with tls.cert_file: {e}"),
                )
            })?;
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(Arc::new(config))
    };
    let grpc = server(ALPN_H2)?;
    let http = server(ALPN_HTTP1)?;
    let mut peer = ClientTlsConfig::new().identity(Identity::from_pem(&cert_pem, &key_pem));
    if let Some(pem) = &ca_pem {
        peer = peer.ca_certificate(Certificate::from_pem(pem));
    }
    Ok(Loaded {
        grpc,
        http,
        peer,
        stamps,
    })
}

/// rustls on *ring*, the backend tonic's `tls-ring` feature uses too. *ring* has no
/// post-quantum key exchange (hence rustls's deprecation note); aws-lc-rs has, at the price
/// of building AWS-LC's C sources with cmake in every clean build. docs/security.md records
/// the choice.
#[allow(deprecated)]
pub fn crypto_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The principal a client certificate (DER) stands for: `User:<CN>` from its subject's
/// common name, or `User:<subject>` (the whole distinguished name) when it has none.
pub fn certificate_principal(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = match subject.iter_common_name().next() {
        Some(cn) => cn.as_str().ok()?.to_string(),
        None => subject.to_string(),
    };
    Some(format!("User:{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    struct Files {
        dir: tempfile::TempDir,
        settings: TlsConfig,
    }

    fn ca() -> (CertificateParams, KeyPair, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        let pem = params.self_signed(&key).unwrap().pem();
        (params, key, pem)
    }

    fn leaf(issuer: &Issuer<'_, KeyPair>, cn: Option<&str>) -> (String, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Brook tests");
        (params.signed_by(&key, issuer).unwrap().pem(), key)
    }

    fn files(client_auth: ClientAuth) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let (params, key, ca_pem) = ca();
        let issuer = Issuer::new(params, key);
        let (cert, key) = leaf(&issuer, Some("broker-1"));
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let settings = TlsConfig {
            cert_file: write("broker.pem", &cert),
            key_file: write("broker.key", &key.serialize_pem()),
            ca_file: write("ca.pem", &ca_pem),
            client_auth,
            ..TlsConfig::default()
        };
        Files { dir, settings }
    }

    #[test]
    fn off_without_a_certificate() {
        assert!(Tls::load(&TlsConfig::default()).unwrap().is_none());
    }

    #[test]
    fn loads_for_both_listeners_with_their_protocols() {
        for auth in [ClientAuth::None, ClientAuth::Required] {
            let f = files(auth);
            let tls = Tls::load(&f.settings).unwrap().expect("TLS on");
            assert_eq!(tls.server_config(Listener::Grpc).alpn_protocols, [b"h2"]);
            assert_eq!(
                tls.server_config(Listener::Http).alpn_protocols,
                [b"http/1.1"]
            );
            assert!(!tls.reload_if_changed().unwrap(), "nothing changed");
        }
    }

    #[test]
    fn unreadable_and_malformed_files_are_named() {
        let f = files(ClientAuth::None);
        let mut missing = f.settings.clone();
        missing.cert_file = f.dir.path().join("nope.pem");
        let err = Tls::load(&missing).unwrap_err();
        assert!(
            matches!(&err, TlsError::Read { setting: "cert_file", path, .. } if *path == missing.cert_file),
            "{err}"
        );
        assert!(err.to_string().starts_with(&format!(
            "tls.cert_file = {}: cannot read it: ",
            missing.cert_file.display()
        )));

        let garbage = f.dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let mut bad_cert = f.settings.clone();
        bad_cert.cert_file = garbage.clone();
        assert_eq!(
            Tls::load(&bad_cert).unwrap_err().to_string(),
            format!(
                "tls.cert_file = {}: holds no CERTIFICATE block",
                garbage.display()
            )
        );
        let mut bad_ca = f.settings.clone();
        bad_ca.ca_file = garbage.clone();
        assert_eq!(
            Tls::load(&bad_ca).unwrap_err().to_string(),
            format!(
                "tls.ca_file = {}: holds no CERTIFICATE block",
                garbage.display()
            )
        );
        let mut bad_key = f.settings.clone();
        bad_key.key_file = garbage.clone();
        let err = Tls::load(&bad_key).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "tls.key_file = {}: holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                garbage.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_and_a_failed_reload_keeps_the_old_files() {
        let f = files(ClientAuth::None);
        let tls = Tls::load(&f.settings).unwrap().unwrap();
        let before = tls.server_config(Listener::Grpc);
        // Another key in place of the certificate's own.
        std::fs::write(
            &f.settings.key_file,
            KeyPair::generate().unwrap().serialize_pem(),
        )
        .unwrap();
        let err = tls.reload().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "tls.key_file = {}: does not go with tls.cert_file: ",
                f.settings.key_file.display()
            )),
            "{err}"
        );
        assert!(Arc::ptr_eq(&before, &tls.server_config(Listener::Grpc)));
        // The change is seen (and fails again) until the files are fixed.
        assert!(tls.reload_if_changed().is_err());
    }

    #[test]
    fn a_replaced_certificate_is_reloaded() {
        let f = files(ClientAuth::None);
        let tls = Tls::load(&f.settings).unwrap().unwrap();
        let before = tls.server_config(Listener::Grpc);
        let (params, key, _) = ca();
        let (cert, key) = leaf(&Issuer::new(params, key), Some("broker-2"));
        std::fs::write(&f.settings.cert_file, cert).unwrap();
        std::fs::write(&f.settings.key_file, key.serialize_pem()).unwrap();
        assert!(tls.reload_if_changed().unwrap());
        assert!(!Arc::ptr_eq(&before, &tls.server_config(Listener::Grpc)));
        assert!(!tls.reload_if_changed().unwrap());
    }

    #[test]
    fn principals_come_from_the_common_name_or_the_whole_subject() {
        let (params, key, _) = ca();
        let issuer = Issuer::new(params, key);
        let der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (alice, _) = leaf(&issuer, Some("alice"));
        assert_eq!(
            certificate_principal(&der(&alice)).as_deref(),
            Some("User:alice")
        );
        let (nameless, _) = leaf(&issuer, None);
        assert_eq!(
            certificate_principal(&der(&nameless)).as_deref(),
            Some("User:O=Brook tests")
        );
        assert_eq!(certificate_principal(b"not DER"), None);
    }
}
