//! DANE for SMTP: TLSA records and the certificate check they ask for.
//!
//! Owns the TLSA record type (`Tlsa`), which records are usable (RFC 7672
//! 3.1.3: DANE-TA(2) and DANE-EE(3) only; PKIX-TA(0) and PKIX-EE(1) are
//! not, nor unknown selectors or matching types, nor digests of the wrong
//! length), matching a certificate (`Tlsa::matches`: the full certificate
//! or its SubjectPublicKeyInfo, exact, SHA-256 or SHA-512), the check of a
//! chain (`check`) and the rustls verifier that runs it in the handshake
//! (`config`). Does not own the look-ups (route.rs: DNSSEC-validated TLSA
//! and MX records) or when DANE applies (lib.rs: the `dane` and
//! `dane-only` levels).
//!
//! Standards: RFC 6698 (TLSA), RFC 7671 (operational guidance: DANE-EE
//! ignores names and dates, 5.1; DANE-TA, 5.2), RFC 7672 3.1 (usages in
//! SMTP), 3.2 (reference identifiers: the next-hop domain and, when the MX
//! records are secure, the MX host name).
//!
//! Security: the server's certificates are parsed by rustls-webpki only;
//! a certificate that does not parse matches no selector-1 record. A
//! DANE-TA match makes that certificate the only trust anchor of a webpki
//! path check with a name check (and its dates), never a CA of any other
//! configuration.
//!
//! Diagnostics: `Mismatch`'s text (the handshake's error, so the
//! deferral's text): which usable records there were and that none
//! matched; `Verified::text` names the record that matched.

use std::fmt;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256, Sha512};

/// Certificate usages (RFC 6698 2.1.1, RFC 7218 names).
pub const DANE_TA: u8 = 2;
pub const DANE_EE: u8 = 3;

/// One TLSA record (RFC 6698 2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

impl fmt::Display for Tlsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.usage, self.selector, self.matching)
    }
}

impl Tlsa {
    /// RFC 7672 3.1.3: only DANE-TA(2) and DANE-EE(3) are usable in SMTP;
    /// selectors 0 (certificate) and 1 (SubjectPublicKeyInfo); matching
    /// types 0 (exact), 1 (SHA-256, 32 octets) and 2 (SHA-512, 64 octets).
    pub fn usable(&self) -> bool {
        matches!(self.usage, DANE_TA | DANE_EE)
            && matches!(self.selector, 0 | 1)
            && match self.matching {
                0 => !self.data.is_empty(),
                1 => self.data.len() == 32,
                2 => self.data.len() == 64,
                _ => false,
            }
    }

    /// Whether `cert` is the one this record names (RFC 6698 2.1.2, 2.1.3).
    pub fn matches(&self, cert: &CertificateDer<'_>) -> bool {
        let spki;
        let selected: &[u8] = match self.selector {
            0 => cert.as_ref(),
            1 => match webpki::EndEntityCert::try_from(cert) {
                Ok(c) => {
                    spki = c.subject_public_key_info();
                    spki.as_ref()
                }
                Err(_) => return false,
            },
            _ => return false,
        };
        match self.matching {
            0 => selected == self.data.as_slice(),
            1 => Sha256::digest(selected).as_slice() == self.data.as_slice(),
            2 => Sha512::digest(selected).as_slice() == self.data.as_slice(),
            _ => false,
        }
    }
}

/// Where a handshake's verifier puts what matched.
pub type Matched = Arc<Mutex<Option<Verified>>>;

/// How a chain was verified: the record that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub record: Tlsa,
    /// The name the chain was checked against (DANE-TA only).
    pub name: Option<String>,
}

impl Verified {
    pub fn text(&self) -> String {
        match &self.name {
            Some(n) => format!("TLSA {} matched a trust anchor, name {n}", self.record),
            None => format!("TLSA {} matched the server certificate", self.record),
        }
    }
}

/// Why a chain does not pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("DANE: no usable TLSA record")]
    NoUsableRecord,
    #[error("DANE: no TLSA record ({records}) matched the certificate chain{names}")]
    NoMatch { records: String, names: String },
}

/// Check the server's chain (`ee`, then `intermediates` as sent) against
/// the usable records of `records`. DANE-EE(3): the server certificate
/// itself, no name or date check (RFC 7672 3.1.1). DANE-TA(2): a
/// certificate the server sent is the trust anchor of a path to `ee`,
/// which must name one of `names` (RFC 7672 3.1.2, 3.2.2).
pub fn check(
    records: &[Tlsa],
    names: &[String],
    ee: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    provider: &Arc<CryptoProvider>,
) -> Result<Verified, Mismatch> {
    let usable: Vec<&Tlsa> = records.iter().filter(|r| r.usable()).collect();
    if usable.is_empty() {
        return Err(Mismatch::NoUsableRecord);
    }
    for r in usable.iter().filter(|r| r.usage == DANE_EE) {
        if r.matches(ee) {
            return Ok(Verified {
                record: (*r).clone(),
                name: None,
            });
        }
    }
    for r in usable.iter().filter(|r| r.usage == DANE_TA) {
        for ta in intermediates.iter().filter(|c| r.matches(c)) {
            let mut roots = RootCertStore::empty();
            if roots.add(ta.clone()).is_err() {
                continue;
            }
            let Ok(verifier) =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
                    .build()
            else {
                continue;
            };
            for name in names {
                let Ok(server_name) = ServerName::try_from(name.clone()) else {
                    continue;
                };
                if verifier
                    .verify_server_cert(ee, intermediates, &server_name, &[], now)
                    .is_ok()
                {
                    return Ok(Verified {
                        record: (*r).clone(),
                        name: Some(name.clone()),
                    });
                }
            }
        }
    }
    let records: Vec<String> = usable.iter().map(|r| r.to_string()).collect();
    let names = if usable.iter().any(|r| r.usage == DANE_TA) {
        format!(" for {}", names.join(", "))
    } else {
        String::new()
    };
    Err(Mismatch::NoMatch {
        records: records.join(", "),
        names,
    })
}

/// The handshake's check: `check`, and the handshake's signatures by the
/// key of the certificate presented.
#[derive(Debug)]
struct DaneVerifier {
    records: Vec<Tlsa>,
    names: Vec<String>,
    provider: Arc<CryptoProvider>,
    verified: Matched,
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match check(
            &self.records,
            &self.names,
            end_entity,
            intermediates,
            now,
            &self.provider,
        ) {
            Ok(v) => {
                if let Ok(mut slot) = self.verified.lock() {
                    *slot = Some(v);
                }
                Ok(ServerCertVerified::assertion())
            }
            Err(m) => Err(Error::General(m.to_string())),
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client configuration that takes only a chain `records` verify (with
/// `names` for DANE-TA), and where the verifier puts what matched.
pub fn config(
    records: Vec<Tlsa>,
    names: Vec<String>,
) -> Result<(Arc<ClientConfig>, Matched), Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verified = Arc::new(Mutex::new(None));
    let verifier = Arc::new(DaneVerifier {
        records,
        names,
        provider: Arc::clone(&provider),
        verified: Arc::clone(&verified),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok((Arc::new(config), verified))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Chain {
        ee: CertificateDer<'static>,
        ca: CertificateDer<'static>,
    }

    /// A CA and a server certificate for `names` it issued.
    fn chain(names: &[&str]) -> Chain {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let key = KeyPair::generate().expect("key");
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let ee = params.signed_by(&key, &ca, &ca_key).expect("certificate");
        Chain {
            ee: ee.der().clone(),
            ca: ca.der().clone(),
        }
    }

    fn spki(c: &CertificateDer<'_>) -> Vec<u8> {
        webpki::EndEntityCert::try_from(c)
            .expect("parses")
            .subject_public_key_info()
            .as_ref()
            .to_vec()
    }

    fn tlsa(usage: u8, selector: u8, matching: u8, of: &[u8]) -> Tlsa {
        let data = match matching {
            0 => of.to_vec(),
            1 => Sha256::digest(of).to_vec(),
            _ => Sha512::digest(of).to_vec(),
        };
        Tlsa {
            usage,
            selector,
            matching,
            data,
        }
    }

    fn run(records: &[Tlsa], names: &[&str], c: &Chain) -> Result<Verified, Mismatch> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        check(
            records,
            &names,
            &c.ee,
            std::slice::from_ref(&c.ca),
            UnixTime::now(),
            &provider,
        )
    }

    #[test]
    fn dane_ee_matches_the_key_or_the_certificate_by_any_digest() {
        let c = chain(&["mx.example.org"]);
        for m in 0..=2 {
            for (selector, of) in [(1, spki(&c.ee)), (0, c.ee.to_vec())] {
                let r = tlsa(3, selector, m, &of);
                let got = run(std::slice::from_ref(&r), &["other.example"], &c);
                assert_eq!(
                    got,
                    Ok(Verified {
                        record: r.clone(),
                        name: None
                    }),
                    "3 {selector} {m}: no name check for DANE-EE"
                );
            }
        }
    }

    #[test]
    fn a_record_for_another_key_does_not_match() {
        let c = chain(&["mx.example.org"]);
        let other = chain(&["mx.example.org"]);
        let r = tlsa(3, 1, 1, &spki(&other.ee));
        assert_eq!(
            run(&[r], &["mx.example.org"], &c),
            Err(Mismatch::NoMatch {
                records: "3 1 1".into(),
                names: String::new()
            })
        );
        // The CA's key named as DANE-EE is not the server's.
        assert!(run(&[tlsa(3, 1, 1, &spki(&c.ca))], &[], &c).is_err());
        // A digest one bit off.
        let mut r = tlsa(3, 1, 2, &spki(&c.ee));
        r.data[63] ^= 1;
        assert!(run(&[r], &[], &c).is_err());
    }

    #[test]
    fn dane_ta_needs_the_anchor_in_the_chain_and_a_reference_name() {
        let c = chain(&["mx.example.org"]);
        let ta = tlsa(2, 0, 1, &c.ca);
        let got = run(
            std::slice::from_ref(&ta),
            &["example.org", "mx.example.org"],
            &c,
        );
        assert_eq!(got.map(|v| v.name), Ok(Some("mx.example.org".into())));
        assert!(
            run(&[tlsa(2, 1, 1, &spki(&c.ca))], &["mx.example.org"], &c).is_ok(),
            "the anchor's key"
        );
        assert_eq!(
            run(std::slice::from_ref(&ta), &["example.org"], &c),
            Err(Mismatch::NoMatch {
                records: "2 0 1".into(),
                names: " for example.org".into()
            }),
            "the certificate does not name the next hop"
        );
        // The server certificate named as a trust anchor is not one (it
        // is not in the chain after it, and is no CA).
        assert!(run(&[tlsa(2, 0, 1, &c.ee)], &["mx.example.org"], &c).is_err());
        // Another CA.
        let other = chain(&["mx.example.org"]);
        assert!(run(&[tlsa(2, 0, 1, &other.ca)], &["mx.example.org"], &c).is_err());
    }

    #[test]
    fn pkix_usages_and_unknown_parameters_are_unusable() {
        let c = chain(&["mx.example.org"]);
        let key = spki(&c.ee);
        for r in [
            tlsa(0, 1, 1, &spki(&c.ca)),
            tlsa(1, 1, 1, &key),
            tlsa(4, 1, 1, &key),
            tlsa(3, 2, 1, &key),
            tlsa(3, 1, 3, &key),
            Tlsa {
                usage: 3,
                selector: 1,
                matching: 1,
                data: Sha256::digest(&key)[..31].to_vec(),
            },
            Tlsa {
                usage: 3,
                selector: 1,
                matching: 0,
                data: Vec::new(),
            },
        ] {
            assert!(!r.usable(), "{r}");
            assert_eq!(
                run(&[r], &["mx.example.org"], &c),
                Err(Mismatch::NoUsableRecord)
            );
        }
        // Unusable records beside a usable one are ignored.
        assert!(run(
            &[tlsa(1, 1, 1, &key), tlsa(3, 1, 1, &key)],
            &["mx.example.org"],
            &c
        )
        .is_ok());
    }

    #[test]
    fn garbage_certificates_match_nothing() {
        let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01]);
        assert!(!tlsa(3, 1, 1, b"x").matches(&junk));
        let exact = tlsa(3, 0, 0, junk.as_ref());
        assert!(exact.matches(&junk), "selector 0 needs no parse");
    }
}
