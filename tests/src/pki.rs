//! Throw-away certificate authorities and certificates for the TLS tests, written as PEM
//! files into a temporary directory (rcgen).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    date_time_ymd,
};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// A certificate authority whose certificate is at [`Ca::cert`]; it signs leaf certificates
/// into its directory.
pub struct Ca {
    dir: PathBuf,
    name: String,
    issuer: Issuer<'static, KeyPair>,
    /// The CA's certificate (PEM file).
    pub cert: PathBuf,
}

/// How a leaf certificate is made.
#[derive(Debug, Clone)]
pub struct Leaf<'a> {
    /// Its subject's common name (the principal is `User:<cn>`).
    pub cn: &'a str,
    /// Subject alternative names: DNS names, or IP addresses as text.
    pub sans: &'a [&'a str],
    /// Expired since 2021 instead of valid until 2099.
    pub expired: bool,
}

impl<'a> Leaf<'a> {
    /// A certificate valid for a server on loopback (`127.0.0.1`, `localhost`) and as a
    /// client, with subject CN `cn`.
    pub fn loopback(cn: &'a str) -> Leaf<'a> {
        Leaf {
            cn,
            sans: &["127.0.0.1", "localhost"],
            expired: false,
        }
    }
}

impl Ca {
    /// A new CA named `name`, its files under `dir` (which must exist).
    pub fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2099, 1, 1);
        let cert = params.self_signed(&key).expect("self-signed CA");
        let path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, cert.pem()).expect("write the CA certificate");
        Ca {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            issuer: Issuer::new(params, key),
            cert: path,
        }
    }

    /// Signs a leaf certificate and writes it with its key as `<ca>-<cn>[-expired].pem` and
    /// `.key`.
    pub fn issue(&self, leaf: &Leaf<'_>) -> CertFiles {
        let key = KeyPair::generate().expect("a leaf key");
        let sans: Vec<String> = leaf.sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, leaf.cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Brook tests");
        if leaf.expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        } else {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2099, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        let stem = format!(
            "{}-{}{}",
            self.name,
            leaf.cn,
            if leaf.expired { "-expired" } else { "" }
        );
        let files = CertFiles {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write the certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write the key");
        files
    }
}
