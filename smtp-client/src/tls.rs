//! TLS to the next hop: smtp_tls_security_level.
//!
//! Owns the client configurations of the levels: `may` (RFC 3207 with RFC
//! 7435's opportunistic security: encryption whenever the server offers
//! it, its certificate not checked: a man in the middle can strip STARTTLS
//! anyway at this level, and checking would only make mail fall back to
//! plain text), `encrypt` (TLS required, the certificate not checked),
//! `verify` and `secure` (TLS required, the certificate must chain to a CA
//! of smtp_tls_CAfile and name the host connected to: the MX host's name,
//! or relayhost's). `none` never uses TLS. `dane` and `dane-only` (RFC
//! 7672, Postfix's names): DANE where the host has secure, usable TLSA
//! records (dane.rs's configuration, made per host by lib.rs), else `may`,
//! or for `dane-only` no delivery. smtp_tls_policy_maps sets the level per
//! next hop (`Level::parse` reads its values). `Destination` is what the
//! destination itself asks beyond the level (its MTA-STS policy; DANE
//! goes first, per host, RFC 8461 2); `verifier`, `check` and
//! `result_type` serve MTA-STS testing and TLS-RPT. Does not own when
//! STARTTLS is sent or required (session.rs), the TLSA look-ups (route.rs)
//! or the MTA-STS look-ups (trust::mta_sts).
//!
//! Standards: RFC 3207, RFC 7435, RFC 6125 (names, by rustls-webpki), RFC
//! 8446 / RFC 5246 (rustls), RFC 8461 5 (MTA-STS enforcement), RFC 8460
//! 4.3 (result types).

use std::sync::Arc;

/// A TLS security level (smtp_tls_security_level, smtp_tls_policy_maps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    None,
    May,
    Encrypt,
    Verify,
    Secure,
    /// DANE when the host has usable TLSA records, else `may`.
    Dane,
    /// DANE required.
    DaneOnly,
}

impl Level {
    /// A level's name, or a policy table's value: the level, without
    /// attributes (Postfix's `match=`, `ciphers=`, ... are not supported:
    /// refusing them is safer than ignoring a `match=` that narrows what
    /// is accepted).
    pub fn parse(v: &str) -> Result<Level, String> {
        let mut words = v.split_whitespace();
        let level = match words.next().unwrap_or("") {
            "none" => Level::None,
            "may" => Level::May,
            "encrypt" => Level::Encrypt,
            "verify" => Level::Verify,
            "secure" => Level::Secure,
            "dane" => Level::Dane,
            "dane-only" => Level::DaneOnly,
            w @ "fingerprint" => return Err(format!("TLS level {w} is not supported yet")),
            w => {
                return Err(format!(
                "unknown TLS level {w:?} (none, may, encrypt, verify, secure, dane or dane-only)"
            ))
            }
        };
        match words.next() {
            Some(attr) => Err(format!("TLS policy attribute {attr:?} is not supported")),
            None => Ok(level),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::May => "may",
            Level::Encrypt => "encrypt",
            Level::Verify => "verify",
            Level::Secure => "secure",
            Level::Dane => "dane",
            Level::DaneOnly => "dane-only",
        }
    }

    /// No mail without TLS (DANE's levels: decided per host, by its TLSA
    /// records).
    pub fn required(self) -> bool {
        matches!(
            self,
            Level::Encrypt | Level::Verify | Level::Secure | Level::DaneOnly
        )
    }

    /// DANE applies (`dane`, `dane-only`).
    pub fn dane(self) -> bool {
        matches!(self, Level::Dane | Level::DaneOnly)
    }

    /// The certificate is checked.
    pub fn verified(self) -> bool {
        matches!(self, Level::Verify | Level::Secure)
    }
}

use posthorn_trust::mta_sts::Policy;
use posthorn_trust::tlsrpt::ResultType;

/// What the destination itself asks of TLS beyond the level, decided per
/// delivery in lib.rs (`Agent::destination`). RFC 8461 2: where DANE
/// (RFC 7672) applies, that is, a host has usable TLSA records at the
/// levels dane and dane-only, DANE takes that host and the policy does
/// not apply to it (lib.rs, per host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Nothing: smtp_tls_security_level / smtp_tls_policy_maps alone.
    Level,
    /// An MTA-STS policy in force (mode enforce or testing) for the
    /// recipients' domain `domain`. Enforce: only MX hosts the policy
    /// names, TLS with a certificate that chains to smtp_tls_CAfile and
    /// names the MX host (level secure at least), else defer (4.7.5),
    /// never plain text. Testing: as without it, the failures reported.
    Sts { domain: String, policy: Policy },
}
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, Error, SignatureScheme};

/// Opportunistic TLS: any certificate is taken (its signatures on the
/// handshake are still checked, so the session is with the holder of the
/// key it presented).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
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
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The CAs of `ca_file` (PEM).
fn roots(ca_file: &std::path::Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = common::tls::load_certs(ca_file).map_err(|e| e.to_string())?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("{}: no usable CA certificate", ca_file.display()));
    }
    Ok(roots)
}

/// The client configuration of `verify` and `secure`: certificates that
/// chain to the CAs of `ca_file` (PEM) and name the server.
pub fn verified(ca_file: &std::path::Path) -> Result<Arc<ClientConfig>, String> {
    let roots = roots(ca_file)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The check of `verify` on its own, for a session already open (MTA-STS
/// testing: the mail goes, a certificate that would fail is reported).
pub fn verifier(ca_file: &std::path::Path) -> Result<Arc<WebPkiServerVerifier>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca_file)?), provider)
        .build()
        .map_err(|e| e.to_string())
}

/// Does the chain `certs` (end entity first) verify for `host`?
pub fn check(
    verifier: &WebPkiServerVerifier,
    certs: &[CertificateDer<'static>],
    host: &str,
) -> Result<(), Error> {
    let (end, intermediates) = certs.split_first().ok_or(Error::NoCertificatesPresented)?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| Error::General(format!("{host:?} is not a host name")))?;
    verifier
        .verify_server_cert(end, intermediates, &name, &[], UnixTime::now())
        .map(|_| ())
}

/// RFC 8460 4.3: the result type of a failed TLS handshake or check.
pub fn result_type(e: &Error) -> ResultType {
    use rustls::CertificateError as C;
    match e {
        Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            ResultType::CertificateHostMismatch
        }
        Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            ResultType::CertificateExpired
        }
        Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            ResultType::CertificateNotTrusted
        }
        _ => ResultType::ValidationFailure,
    }
}

/// The rustls error inside an I/O error of a handshake, if that is what
/// it was.
pub fn tls_error(e: &std::io::Error) -> Option<&Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<Error>())
}

/// The client configuration of `may` and `encrypt`.
pub fn opportunistic() -> Result<Arc<ClientConfig>, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(AnyCertificate(Arc::clone(&provider)));
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_values() {
        assert_eq!(Level::parse("encrypt"), Ok(Level::Encrypt));
        assert_eq!(Level::parse(" secure "), Ok(Level::Secure));
        assert!(Level::parse("verify match=mx.example").is_err());
        assert_eq!(Level::parse("dane"), Ok(Level::Dane));
        assert_eq!(Level::parse("dane-only"), Ok(Level::DaneOnly));
        assert!(Level::parse("dane-only").unwrap().required());
        assert!(!Level::parse("dane").unwrap().required());
        assert!(Level::parse("fingerprint")
            .unwrap_err()
            .contains("not supported yet"));
        assert!(Level::parse("Encrypt").is_err());
        assert!(Level::parse("").is_err());
        assert!(Level::Verify.required() && Level::Verify.verified());
        assert!(!Level::May.required() && !Level::Encrypt.verified());
    }
}
