//! posthorn dev's certificate authority: a CA of its own and a server
//! certificate it signs, so clients can verify TLS in development
//! (`curl --cacert`, `openssl s_client -CAfile`, `swaks --tls-ca-path`,
//! Python's `ssl.create_default_context(cafile=...)`).
//!
//! Owns STATE/tls/: `ca.pem` (the CA certificate, ten years), `ca-key.pem`
//! (its key, kept to re-issue), `cert.pem` (the server certificate for
//! 127.0.0.1, localhost and $myhostname, one year) and `key.pem`. The CA is
//! made once; the server certificate is issued again when a file is
//! missing, when it no longer loads with its key, when it would not verify
//! against the CA in 30 days (expiry), or when one of the names is not in
//! it (myhostname changed).
//!
//! Security: the keys are written 0600 (owned by whoever runs posthorn dev:
//! as root, readable by root only; smtpd loads its key before dropping
//! privileges), the certificates 0644; every file is written whole and
//! renamed into place (common::durable).
//!
//! Diagnostics: `CaError`, one variant per failure, naming the file.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// How long the CA and the server certificate are valid.
const CA_DAYS: u64 = 3650;
const CERT_DAYS: u64 = 365;
/// A certificate that expires sooner than this is issued again.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86400);
const DAY: Duration = Duration::from_secs(86400);

/// The calendar day of `t` (UTC), for a certificate's validity.
macro_rules! date {
    ($t:expr) => {{
        let (y, m, d) = civil($t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 86400);
        rcgen::date_time_ymd(y, m, d)
    }};
}

/// Why the development certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("making a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate just issued does not verify: {0}")]
    Verify(common::tls::TlsError),
}

/// The files of STATE/tls/.
#[derive(Debug, Clone)]
pub struct DevTls {
    pub ca: PathBuf,
    ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl DevTls {
    pub fn new(dir: &Path) -> DevTls {
        DevTls {
            ca: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    /// Make what is missing or due: the CA once, the server certificate
    /// for `hostname` (and 127.0.0.1, localhost) when needed. Returns
    /// whether a server certificate was issued.
    pub fn ensure(&self, hostname: &str) -> Result<bool, CaError> {
        if let Some(dir) = self.ca.parent() {
            std::fs::create_dir_all(dir).map_err(|err| CaError::Io {
                path: dir.to_path_buf(),
                err,
            })?;
        }
        let names = server_names(hostname);
        let (ca_cert, ca_key, new_ca) = self.ca()?;
        if !new_ca && self.current(&names) {
            return Ok(false);
        }
        self.issue(&ca_cert, &ca_key, &names)?;
        let now = SystemTime::now();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        match common::tls::verify_issued(&self.cert, &self.ca, &refs, now) {
            Ok(()) => Ok(true),
            Err(_) if !new_ca => {
                // The CA itself is no good any more (expired, replaced by
                // hand): start over with a new one.
                let _ = std::fs::remove_file(&self.ca_key);
                let (ca_cert, ca_key, _) = self.ca()?;
                self.issue(&ca_cert, &ca_key, &names)?;
                common::tls::verify_issued(&self.cert, &self.ca, &refs, now)
                    .map_err(CaError::Verify)?;
                Ok(true)
            }
            Err(e) => Err(CaError::Verify(e)),
        }
    }

    /// The server certificate loads with its key and will verify for all
    /// `names` against the CA for RENEW_BEFORE more.
    fn current(&self, names: &[String]) -> bool {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        common::tls::server_config(&self.cert, &self.key).is_ok()
            && common::tls::verify_issued(
                &self.cert,
                &self.ca,
                &refs,
                SystemTime::now() + RENEW_BEFORE,
            )
            .is_ok()
    }

    /// The CA: loaded from ca-key.pem, or made (and written) when it is
    /// missing or unreadable. The certificate returned is made again from
    /// the same name and key, which is all that signing uses, so what it
    /// signs verifies against the ca.pem on disk.
    fn ca(&self) -> Result<(rcgen::Certificate, KeyPair, bool), CaError> {
        let loaded = std::fs::read_to_string(&self.ca_key)
            .ok()
            .filter(|_| self.ca.is_file())
            .and_then(|pem| KeyPair::from_pem(&pem).ok());
        let (key, new) = match loaded {
            Some(k) => (k, false),
            None => (KeyPair::generate()?, true),
        };
        let cert = ca_params()?.self_signed(&key)?;
        if new {
            write(&self.ca_key, key.serialize_pem().as_bytes(), 0o600)?;
            write(&self.ca, cert.pem().as_bytes(), 0o644)?;
        }
        Ok((cert, key, new))
    }

    /// A new key and certificate for `names`, signed by the CA.
    fn issue(
        &self,
        ca_cert: &rcgen::Certificate,
        ca_key: &KeyPair,
        names: &[String],
    ) -> Result<(), CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].clone());
        params
            .distinguished_name
            .push(DnType::OrganizationName, "posthorn dev");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = SystemTime::now();
        params.not_before = date!(now - DAY);
        params.not_after = date!(now + DAY * CERT_DAYS as u32);
        let cert = params.signed_by(&key, ca_cert, ca_key)?;
        // The key first: a certificate on disk always has its key there.
        write(&self.key, key.serialize_pem().as_bytes(), 0o600)?;
        write(&self.cert, cert.pem().as_bytes(), 0o644)
    }
}

/// $myhostname first (the certificate's common name), then the loopback
/// names the suite listens on.
fn server_names(hostname: &str) -> Vec<String> {
    let mut names = vec![hostname.to_ascii_lowercase()];
    for n in ["localhost", "127.0.0.1"] {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    }
    names
}

/// The CA's parameters: always the same name, so a CA certificate made
/// again from the saved key is the same issuer.
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name
        .push(DnType::CommonName, "posthorn development CA");
    p.distinguished_name
        .push(DnType::OrganizationName, "posthorn dev");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = SystemTime::now();
    p.not_before = date!(now - DAY);
    p.not_after = date!(now + DAY * CA_DAYS as u32);
    Ok(p)
}

fn write(path: &Path, data: &[u8], mode: u32) -> Result<(), CaError> {
    common::durable::replace_file(path, data, mode, None).map_err(|err| CaError::Io {
        path: path.to_path_buf(),
        err,
    })
}

/// Year, month, day of a day number since 1970-01-01 (the proleptic
/// Gregorian calendar; H. Hinnant's civil_from_days).
fn civil(days: u64) -> (i32, u8, u8) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(11_017), (2000, 3, 1));
        assert_eq!(civil(20_453), (2025, 12, 31));
        assert_eq!(civil(20_454), (2026, 1, 1));
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("posthorn-devca-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn issues_once_and_again_when_the_name_changes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp("names");
        let tls = DevTls::new(&dir);
        assert!(
            tls.ensure("mail.example.test").unwrap(),
            "first start issues"
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&tls.key), 0o600);
        assert_eq!(mode(&tls.ca_key), 0o600);
        assert_eq!(mode(&tls.cert), 0o644);
        let ca = std::fs::read(&tls.ca).unwrap();
        let cert = std::fs::read(&tls.cert).unwrap();
        assert!(!tls.ensure("mail.example.test").unwrap(), "still good");
        assert_eq!(std::fs::read(&tls.cert).unwrap(), cert);
        // A new myhostname: a new certificate, from the same CA.
        assert!(tls.ensure("mx.other.test").unwrap());
        assert_ne!(std::fs::read(&tls.cert).unwrap(), cert);
        assert_eq!(std::fs::read(&tls.ca).unwrap(), ca);
        for name in ["mx.other.test", "localhost", "127.0.0.1"] {
            common::tls::verify_issued(&tls.cert, &tls.ca, &[name], SystemTime::now()).unwrap();
        }
        // A missing key: issued again.
        std::fs::remove_file(&tls.key).unwrap();
        assert!(tls.ensure("mx.other.test").unwrap());
        assert!(common::tls::server_config(&tls.cert, &tls.key).is_ok());
        // Not valid in 400 days: it would have been renewed by then.
        assert!(common::tls::verify_issued(
            &tls.cert,
            &tls.ca,
            &["localhost"],
            SystemTime::now() + DAY * 400
        )
        .is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
