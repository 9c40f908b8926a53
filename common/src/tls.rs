//! TLS set-up for every listener: certificates and keys from PEM files, the
//! rustls server configuration, and what a finished handshake negotiated.
//!
//! Owns loading a certificate chain and its private key (`server_config`,
//! `from_params` for a pair of main.cf parameters such as
//! smtpd_tls_cert_file/smtpd_tls_key_file), the `TlsSetup` a server skeleton
//! is given, `TlsInfo` (protocol, cipher, bits) in the form Postfix logs it,
//! and `verify_issued`, which checks that a certificate chains to a CA and
//! names the given hosts (posthorn dev re-issues its certificate when not).
//! Does not own the TLS byte stream: common::server's transport does.
//!
//! Standards: RFC 8446 (TLS 1.3) and RFC 5246 (TLS 1.2) through rustls with
//! its default provider (aws-lc-rs); RFC 7468 (PEM); cipher names as
//! OpenSSL (and so Postfix) prints them.
//!
//! Security: the files are read whole, at most MAX_PEM bytes each, before any
//! privilege drop (daemon::start_with), so a worker never needs to open a key
//! file after it dropped root. A key that does not belong to the
//! certificate is an error here, not at the first handshake.
//!
//! Diagnostics: every `TlsError` names the file it is about.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CipherSuite, ProtocolVersion, ServerConfig};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// The largest PEM file read (a chain of a few certificates is far smaller).
const MAX_PEM: u64 = 1 << 20;

/// Why a certificate or key cannot be used; each names its file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}: no such file")]
    Missing(PathBuf),
    #[error("{path}: cannot read: {err}")]
    Unreadable { path: PathBuf, err: io::Error },
    #[error("{0}: larger than 1 MiB: not a PEM file")]
    TooLarge(PathBuf),
    #[error("{path}: bad PEM: {err}")]
    BadPem { path: PathBuf, err: String },
    #[error("{0}: no certificate in it (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate(PathBuf),
    #[error("{0}: no private key in it (expected -----BEGIN PRIVATE KEY----- or similar)")]
    NoKey(PathBuf),
    #[error("{key}: the private key does not match the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{cert}, {key}: {err}")]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        err: rustls::Error,
    },
    #[error("{path}: {err}")]
    NotValid { path: PathBuf, err: rustls::Error },
}

/// What a server skeleton does with TLS on its listeners.
#[derive(Clone)]
pub struct TlsSetup {
    pub config: Arc<ServerConfig>,
    /// Implicit TLS (wrapper mode, ports 465/993/995): every connection
    /// starts with the handshake. Otherwise TLS starts on STARTTLS/STLS.
    pub implicit: bool,
}

impl fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSetup")
            .field("implicit", &self.implicit)
            .finish_non_exhaustive()
    }
}

/// What a finished handshake negotiated, for log lines and Received:.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsInfo {
    /// "TLSv1.3" or "TLSv1.2".
    pub protocol: String,
    /// The cipher as OpenSSL names it ("TLS_AES_256_GCM_SHA384",
    /// "ECDHE-RSA-AES128-GCM-SHA256").
    pub cipher: String,
    /// The cipher's key size in bits.
    pub bits: u16,
}

impl TlsInfo {
    /// What `conn` negotiated; None while it is still handshaking.
    pub fn of(conn: &rustls::CommonState) -> Option<TlsInfo> {
        let version = conn.protocol_version()?;
        let suite = conn.negotiated_cipher_suite()?.suite();
        let protocol = match version {
            ProtocolVersion::TLSv1_3 => "TLSv1.3",
            ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "TLS",
        };
        let cipher = openssl_name(suite);
        let bits = if cipher.contains("128") { 128 } else { 256 };
        Some(TlsInfo {
            protocol: protocol.to_string(),
            cipher,
            bits,
        })
    }
}

/// Postfix's form: `TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)`.
impl fmt::Display for TlsInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} with cipher {} ({}/{} bits)",
            self.protocol, self.cipher, self.bits, self.bits
        )
    }
}

/// The OpenSSL name of a cipher suite rustls can negotiate (RFC 8446 B.4
/// names for TLS 1.3, OpenSSL's short names for TLS 1.2).
fn openssl_name(suite: CipherSuite) -> String {
    let name = match suite {
        CipherSuite::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            "ECDHE-ECDSA-CHACHA20-POLY1305"
        }
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        other => {
            return other
                .as_str()
                .map_or_else(|| format!("{other:?}"), str::to_string)
        }
    };
    name.to_string()
}

/// Read a PEM file whole (bounded), telling a missing file from an
/// unreadable one.
fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => TlsError::Missing(path.to_path_buf()),
        _ => TlsError::Unreadable {
            path: path.to_path_buf(),
            err,
        },
    })?;
    let mut bytes = Vec::new();
    f.take(MAX_PEM + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| TlsError::Unreadable {
            path: path.to_path_buf(),
            err,
        })?;
    if bytes.len() as u64 > MAX_PEM {
        return Err(TlsError::TooLarge(path.to_path_buf()));
    }
    Ok(bytes)
}

/// The certificates in a PEM file, in order (end entity first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            path: path.to_path_buf(),
            err: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey(path.to_path_buf()),
        e => TlsError::BadPem {
            path: path.to_path_buf(),
            err: e.to_string(),
        },
    })
}

/// A server configuration for TLS 1.2 and 1.3 with the certificate chain in
/// `cert` and its key in `key` (the same file may hold both).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    let config = ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ])
    .with_no_client_auth()
    .with_single_cert(chain, key_der)
    .map_err(|err| match err {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        },
        err => TlsError::Unusable {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            err,
        },
    })?;
    Ok(Arc::new(config))
}

/// The server configuration named by two main.cf parameters (e.g.
/// smtpd_tls_cert_file, smtpd_tls_key_file); None when the certificate
/// parameter is empty. An empty key parameter means: the key is in the
/// certificate file.
pub fn from_params(
    cfg: &Config,
    cert_param: &str,
    key_param: &str,
) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let cert = cfg.get(cert_param);
    if cert.trim().is_empty() {
        return Ok(None);
    }
    let key = cfg.get(key_param);
    let key = if key.trim().is_empty() { &cert } else { &key };
    server_config(Path::new(cert.trim()), Path::new(key.trim())).map(Some)
}

/// Check that the first certificate in `cert` was issued by the CA
/// certificate in `ca`, is valid for every name in `names` (host names or
/// IP addresses) as a TLS server, and is still valid at `at`.
pub fn verify_issued(
    cert: &Path,
    ca: &Path,
    names: &[&str],
    at: SystemTime,
) -> Result<(), TlsError> {
    let chain = load_certs(cert)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|err| TlsError::NotValid {
            path: ca.to_path_buf(),
            err,
        })?;
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| TlsError::NotValid {
            path: ca.to_path_buf(),
            err: rustls::Error::General(e.to_string()),
        })?;
    let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    for name in names {
        let server = ServerName::try_from(*name).map_err(|e| TlsError::NotValid {
            path: cert.to_path_buf(),
            err: rustls::Error::General(format!("{name:?}: {e}")),
        })?;
        verifier
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &server,
                &[],
                UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs)),
            )
            .map_err(|err| TlsError::NotValid {
                path: cert.to_path_buf(),
                err,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_postfix_form() {
        let i = TlsInfo {
            protocol: "TLSv1.3".into(),
            cipher: "TLS_AES_256_GCM_SHA384".into(),
            bits: 256,
        };
        assert_eq!(
            i.to_string(),
            "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
        );
    }

    #[test]
    fn openssl_names() {
        assert_eq!(
            openssl_name(CipherSuite::TLS13_AES_128_GCM_SHA256),
            "TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            openssl_name(CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
            "ECDHE-RSA-AES256-GCM-SHA384"
        );
    }
}
