//! The DNS records a mail domain served by this host publishes (issue 11,
//! "DNS records"): MX, SPF, DKIM per selector, DMARC (and the RFC 7489 7.1
//! authorization of an outside report address), MTA-STS (the `_mta-sts`
//! TXT record and the policy file it announces), TLS-RPT, TLSA for smtpd's
//! certificate, and the RFC 6186 / RFC 8314 SRV records of the client
//! services. `posthorn dns DOMAIN` prints them (cli/src/dns.rs) and
//! `posthorn dns --check` compares them with what DNS answers
//! (records_check.rs), through [`judge`] here.
//!
//! Owns: which records, their zone-file text, the MTA-STS policy and its
//! id, the TLSA digest, the verdict on what was found. Does not own: DNS
//! look-ups (records_check), DKIM keys (trust::sign writes them and their
//! records).
//!
//! Standards: RFC 1035 5.1 (zone-file syntax: TXT character-strings of at
//! most 255 octets), RFC 7208 (SPF), RFC 6376 3.6.1 (DKIM key records),
//! RFC 7489 6.1 and 7.1 (DMARC), RFC 8461 3.1-3.2 (MTA-STS), RFC 8460 3
//! (TLS-RPT), RFC 6698 2 and RFC 7672 3.1.1 (TLSA 3 1 1), RFC 6186 and
//! RFC 8314 5.1 (SRV).

use std::fmt;
use std::path::Path;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::dmarc::Dmarc;
use mail_auth::mta_sts::{MtaSts, ReportUri, TlsRpt};
use mail_auth::spf::Spf;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

/// Why the records cannot be worked out.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("smtpd_tls_cert_file {0}: {1}")]
    CertFile(String, String),
}

/// The RDATA of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rdata {
    /// Preference, exchange (without the final dot).
    Mx(u16, String),
    /// The text, its character-strings joined (RFC 7208 3.3).
    Txt(String),
    /// Usage, selector, matching type, data (RFC 6698 2.1).
    Tlsa(u8, u8, u8, Vec<u8>),
    /// Priority, weight, port, target (without the final dot).
    Srv(u16, u16, u16, String),
}

impl Rdata {
    /// The record type's mnemonic.
    pub fn rtype(&self) -> &'static str {
        match self {
            Rdata::Mx(..) => "MX",
            Rdata::Txt(_) => "TXT",
            Rdata::Tlsa(..) => "TLSA",
            Rdata::Srv(..) => "SRV",
        }
    }
}

/// Zone-file presentation (RFC 1035 5.1); a long TXT is cut into quoted
/// character-strings of 255 octets. Octets other than printable ASCII (what
/// a hostile zone may serve) are written `\DDD`, so a line printed for the
/// administrator holds no control characters.
impl fmt::Display for Rdata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rdata::Mx(pref, host) => write!(f, "{pref} {}.", escape(host.as_bytes(), false)),
            Rdata::Txt(text) => {
                let chunks: Vec<String> = text
                    .as_bytes()
                    .chunks(255)
                    .map(|c| format!("\"{}\"", escape(c, true)))
                    .collect();
                if chunks.is_empty() {
                    write!(f, "\"\"")
                } else {
                    write!(f, "{}", chunks.join(" "))
                }
            }
            Rdata::Tlsa(u, s, m, data) => write!(f, "{u} {s} {m} {}", hex(data)),
            Rdata::Srv(p, w, port, target) => {
                write!(f, "{p} {w} {port} {}.", escape(target.as_bytes(), false))
            }
        }
    }
}

/// RFC 1035 5.1 escapes: `\DDD` for octets outside printable ASCII, and a
/// backslash before `"` and `\` (in a quoted string) or before `"`, `\`,
/// `;`, `(`, `)` and white space (in a name).
fn escape(bytes: &[u8], quoted: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            b';' | b'(' | b')' | b' ' if !quoted => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out
}

/// What a record is for: the label of its `--check` line and how found
/// records are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Mx,
    Spf,
    Dkim,
    Dmarc,
    /// RFC 7489 7.1: the report address's domain accepts reports for ours.
    DmarcReport,
    MtaSts,
    TlsRpt,
    Tlsa,
    Srv,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Mx => "MX",
            Kind::Spf => "SPF",
            Kind::Dkim => "DKIM",
            Kind::Dmarc => "DMARC",
            Kind::DmarcReport => "DMARC report authorization",
            Kind::MtaSts => "MTA-STS",
            Kind::TlsRpt => "TLS-RPT",
            Kind::Tlsa => "TLSA",
            Kind::Srv => "SRV",
        }
    }
}

/// One record to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    /// The owner name, without the final dot.
    pub name: String,
    pub data: Rdata,
}

impl Record {
    /// `NAME.<TAB>IN TYPE RDATA`.
    pub fn zone_line(&self) -> String {
        format!("{}.\tIN {} {}", self.name, self.data.rtype(), self.data)
    }
}

/// Records under one comment (one kind of record, usually).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Comment lines, without the `; `.
    pub comment: Vec<String>,
    pub records: Vec<Record>,
}

/// The MTA-STS policy (RFC 8461 3.2) served at
/// `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtaStsPolicy {
    /// enforce, testing or none.
    pub mode: String,
    pub mx: Vec<String>,
    /// Seconds.
    pub max_age: u64,
}

impl MtaStsPolicy {
    /// The policy file: CRLF-separated key/value pairs (RFC 8461 3.2).
    pub fn text(&self) -> String {
        let mut t = format!("version: STSv1\r\nmode: {}\r\n", self.mode);
        for mx in &self.mx {
            t.push_str(&format!("mx: {mx}\r\n"));
        }
        t.push_str(&format!("max_age: {}\r\n", self.max_age));
        t
    }

    /// The `id=` of the `_mta-sts` record: the first 32 hex digits of the
    /// policy's SHA-256, so it changes exactly when the policy does (RFC
    /// 8461 3.1: 1-32 alphanumeric characters).
    pub fn id(&self) -> String {
        hex(&Sha256::digest(self.text().as_bytes()))[..32].to_string()
    }
}

/// What the records of one domain are made from (main.cf and the files it
/// names).
#[derive(Debug, Clone)]
pub struct Site {
    pub domain: String,
    /// myhostname: the MX, the MTA-STS mx, the TLSA and SRV host.
    pub host: String,
    /// dmarc_report_address (empty: no rua).
    pub dmarc_rua: String,
    /// tlsrpt_report_address (empty: no TLS-RPT record).
    pub tlsrpt_rua: String,
    pub mta_sts: MtaStsPolicy,
    /// The DER SubjectPublicKeyInfo of smtpd_tls_cert_file's certificate.
    pub spki: Option<Vec<u8>>,
    /// DKIM key records, one per selector (trust::sign's).
    pub dkim: Vec<Record>,
}

/// The services a mail client uses (RFC 6186 and RFC 8314 SRV names, and
/// Thunderbird's autoconfig): (SRV service, port, autoconfig element and
/// type, socketType), most preferred first within a kind (RFC 8314 3:
/// implicit TLS first).
pub const CLIENT_SERVICES: &[(&str, u16, &str, &str, &str)] = &[
    ("_imaps._tcp", 993, "incomingServer", "imap", "SSL"),
    ("_imap._tcp", 143, "incomingServer", "imap", "STARTTLS"),
    ("_pop3s._tcp", 995, "incomingServer", "pop3", "SSL"),
    ("_submissions._tcp", 465, "outgoingServer", "smtp", "SSL"),
    (
        "_submission._tcp",
        587,
        "outgoingServer",
        "smtp",
        "STARTTLS",
    ),
];

/// The SPF record printed: the domain's MX hosts (this host) may send its
/// mail, nobody else (RFC 7208 5.4 `mx`, 5.1 `-all`).
pub const SPF: &str = "v=spf1 mx -all";

/// The DMARC policy printed (RFC 7489 6.3): failing mail is quarantined.
pub const DMARC_POLICY: &str = "quarantine";

impl Site {
    /// Every record of the domain, grouped, in the order they are printed.
    pub fn groups(&self) -> Vec<Group> {
        let (d, h) = (&self.domain, &self.host);
        let rec = |kind, name: String, data| Record { kind, name, data };
        let mut g = vec![
            Group {
                comment: vec![format!("MX: mail for {d} goes to {h}.")],
                records: vec![rec(Kind::Mx, d.clone(), Rdata::Mx(10, h.clone()))],
            },
            Group {
                comment: vec![format!(
                    "SPF: the MX hosts of {d} ({h}) may send its mail (mx, not {h}'s \
                     addresses, so an address change needs no new record); add ip4:/ip6: \
                     terms before -all for any other sender."
                )],
                records: vec![rec(Kind::Spf, d.clone(), Rdata::Txt(SPF.into()))],
            },
        ];
        let dkim_comment = if self.dkim.is_empty() {
            format!("DKIM: no key for {d} (posthorn dkim keygen {d} makes one).")
        } else {
            "DKIM: one key record per selector.".to_string()
        };
        g.push(Group {
            comment: vec![dkim_comment],
            records: self.dkim.clone(),
        });
        let mut dmarc = format!("v=DMARC1; p={DMARC_POLICY}");
        let mut dmarc_comment = vec![format!(
            "DMARC: mail that fails SPF and DKIM alignment is quarantined (p={DMARC_POLICY})."
        )];
        let mut dmarc_records = Vec::new();
        if !self.dmarc_rua.is_empty() {
            dmarc.push_str(&format!("; rua=mailto:{}", self.dmarc_rua));
            dmarc_comment.push(format!(
                "Aggregate reports go to {} (dmarc_report_address).",
                self.dmarc_rua
            ));
        }
        dmarc_records.push(rec(Kind::Dmarc, format!("_dmarc.{d}"), Rdata::Txt(dmarc)));
        if let Some((_, rua_domain)) = self.dmarc_rua.rsplit_once('@') {
            if !same_organization(d, rua_domain) {
                dmarc_comment.push(format!(
                    "{rua_domain} accepts reports for {d} (RFC 7489 7.1): publish this in {rua_domain}'s zone."
                ));
                dmarc_records.push(rec(
                    Kind::DmarcReport,
                    format!("{d}._report._dmarc.{rua_domain}"),
                    Rdata::Txt("v=DMARC1".into()),
                ));
            }
        }
        g.push(Group {
            comment: dmarc_comment,
            records: dmarc_records,
        });
        g.push(Group {
            comment: vec![
                format!(
                    "MTA-STS (RFC 8461): mode {}, mx {}, max_age {}; the id changes with the policy.",
                    self.mta_sts.mode,
                    self.mta_sts.mx.join(" "),
                    self.mta_sts.max_age
                ),
                format!(
                    "Serve the policy (posthorn dns {d} --mta-sts-policy FILE writes it) as \
                     https://mta-sts.{d}/.well-known/mta-sts.txt, with a certificate for mta-sts.{d}."
                ),
            ],
            records: vec![rec(
                Kind::MtaSts,
                format!("_mta-sts.{d}"),
                Rdata::Txt(format!("v=STSv1; id={}", self.mta_sts.id())),
            )],
        });
        if !self.tlsrpt_rua.is_empty() {
            g.push(Group {
                comment: vec![format!(
                    "TLS-RPT (RFC 8460): senders' TLS reports go to {} (tlsrpt_report_address).",
                    self.tlsrpt_rua
                )],
                records: vec![rec(
                    Kind::TlsRpt,
                    format!("_smtp._tls.{d}"),
                    Rdata::Txt(format!("v=TLSRPTv1; rua=mailto:{}", self.tlsrpt_rua)),
                )],
            });
        }
        match &self.spki {
            Some(spki) => g.push(Group {
                comment: vec![format!(
                    "TLSA (DANE, RFC 7672): {h}'s key, from smtpd_tls_cert_file (3 1 1: the \
                         SHA-256 of the public key). Publish only in a DNSSEC-signed zone; a new \
                         key needs its record published before it is used."
                )],
                records: vec![rec(
                    Kind::Tlsa,
                    format!("_25._tcp.{h}"),
                    Rdata::Tlsa(3, 1, 1, Sha256::digest(spki).to_vec()),
                )],
            }),
            None => g.push(Group {
                comment: vec![format!(
                    "TLSA: none (no smtpd_tls_cert_file, so no STARTTLS on {h})."
                )],
                records: Vec::new(),
            }),
        }
        g.push(Group {
            comment: vec![
                "Where mail clients find IMAP, POP3 and submission (RFC 6186, RFC 8314):".into(),
            ],
            records: CLIENT_SERVICES
                .iter()
                .map(|(srv, port, _, _, socket)| {
                    // Implicit TLS before STARTTLS (RFC 8314 5.1): priority 0, then 10.
                    let priority = if *socket == "SSL" { 0 } else { 10 };
                    rec(
                        Kind::Srv,
                        format!("{srv}.{d}"),
                        Rdata::Srv(priority, 1, *port, h.clone()),
                    )
                })
                .collect(),
        });
        g
    }

    /// Every record, in order.
    pub fn records(&self) -> Vec<Record> {
        self.groups().into_iter().flat_map(|g| g.records).collect()
    }
}

/// DKIM key records from (`SELECTOR._domainkey.DOMAIN.`, TXT value)
/// pairs, as trust::sign lists a domain's keys.
pub fn dkim_records(pairs: Vec<(String, String)>) -> Vec<Record> {
    pairs
        .into_iter()
        .map(|(name, value)| Record {
            kind: Kind::Dkim,
            name: name.trim_end_matches('.').to_string(),
            data: Rdata::Txt(value),
        })
        .collect()
}

/// RFC 7489 7.1 asks for the authorization record when the report
/// address's Organizational Domain differs from the policy domain's. Without
/// the public suffix list, two domains are taken to be one organization when
/// one is the other or below it; otherwise the record is printed (harmless
/// when not needed).
pub fn same_organization(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}"))
}

/// The DER SubjectPublicKeyInfo of the first certificate in the PEM file
/// `path` (RFC 5280 4.1.2.7), for TLSA selector 1.
pub fn cert_spki(path: &Path) -> Result<Vec<u8>, RecordsError> {
    let err = |e: String| RecordsError::CertFile(path.display().to_string(), e);
    let der = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("no certificate in the file".into()))?
        .map_err(|e| err(e.to_string()))?;
    let cert = webpki::EndEntityCert::try_from(&der).map_err(|e| err(e.to_string()))?;
    Ok(cert.subject_public_key_info().as_ref().to_vec())
}

/// What `--check` says of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// No record of the type at the name (or none of the record's kind,
    /// for TXT).
    Missing,
    Wrong {
        found: String,
        expected: String,
    },
    /// The look-up failed (time-out, server failure).
    Failed(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Ok => write!(f, "ok"),
            Verdict::Missing => write!(f, "missing"),
            Verdict::Wrong { found, expected } => {
                write!(f, "wrong: found {found}, expected {expected}")
            }
            Verdict::Failed(e) => write!(
                f,
                "look-up failed: {}",
                e.replace(|c: char| c.is_control(), "?")
            ),
        }
    }
}

/// Compare what DNS has at `expected.name` (records of its type) with it.
/// SPF is only parsed here: whether it lets this host's addresses send is
/// an SPF evaluation (records_check).
pub fn judge(expected: &Record, found: &[Rdata]) -> Verdict {
    let want = expected.data.to_string();
    let wrong = |found: Vec<String>| Verdict::Wrong {
        found: found.join(", "),
        expected: want.clone(),
    };
    let txts: Vec<&str> = found
        .iter()
        .filter_map(|r| match r {
            Rdata::Txt(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    // The TXT records that claim to be of this kind (by their version tag).
    let tagged = |tag: &str| -> Vec<&str> {
        txts.iter()
            .copied()
            .filter(|t| version_tag(t).is_some_and(|v| v.eq_ignore_ascii_case(tag)))
            .collect()
    };
    let show = |t: &&str| Rdata::Txt(t.to_string()).to_string();
    match (&expected.kind, &expected.data) {
        (Kind::Mx, Rdata::Mx(_, host)) => {
            let mx: Vec<&Rdata> = found
                .iter()
                .filter(|r| matches!(r, Rdata::Mx(..)))
                .collect();
            if mx.is_empty() {
                Verdict::Missing
            } else if mx
                .iter()
                .any(|r| matches!(r, Rdata::Mx(_, h) if same_name(h, host)))
            {
                Verdict::Ok
            } else {
                wrong(mx.iter().map(|r| r.to_string()).collect())
            }
        }
        (Kind::Srv, Rdata::Srv(_, _, port, host)) => {
            let srv: Vec<&Rdata> = found
                .iter()
                .filter(|r| matches!(r, Rdata::Srv(..)))
                .collect();
            if srv.is_empty() {
                Verdict::Missing
            } else if srv
                .iter()
                .any(|r| matches!(r, Rdata::Srv(_, _, p, h) if p == port && same_name(h, host)))
            {
                Verdict::Ok
            } else {
                wrong(srv.iter().map(|r| r.to_string()).collect())
            }
        }
        (Kind::Tlsa, Rdata::Tlsa(..)) => {
            let tlsa: Vec<&Rdata> = found
                .iter()
                .filter(|r| matches!(r, Rdata::Tlsa(..)))
                .collect();
            if tlsa.is_empty() {
                Verdict::Missing
            } else if tlsa.iter().any(|r| **r == expected.data) {
                Verdict::Ok
            } else {
                wrong(tlsa.iter().map(|r| r.to_string()).collect())
            }
        }
        (Kind::Spf, _) => match tagged("spf1").as_slice() {
            [] => Verdict::Missing,
            // RFC 7208 4.5: more than one is a permerror.
            [one] if Spf::parse(one.as_bytes()).is_ok() => Verdict::Ok,
            many => wrong(many.iter().map(show).collect()),
        },
        (Kind::Dmarc, Rdata::Txt(_)) => match tagged("DMARC1").as_slice() {
            [] => Verdict::Missing,
            // RFC 7489 6.6.3: not exactly one record means no policy.
            [one] => match Dmarc::parse(one.as_bytes()) {
                Ok(d) => {
                    let rua = rua_of(&expected.data);
                    if rua.is_none_or(|a| d.rua.iter().any(|u| u.uri.eq_ignore_ascii_case(a))) {
                        Verdict::Ok
                    } else {
                        wrong(vec![show(one)])
                    }
                }
                Err(_) => wrong(vec![show(one)]),
            },
            many => wrong(many.iter().map(show).collect()),
        },
        (Kind::DmarcReport, _) => {
            if tagged("DMARC1").is_empty() {
                Verdict::Missing
            } else {
                Verdict::Ok
            }
        }
        (Kind::MtaSts, Rdata::Txt(text)) => match tagged("STSv1").as_slice() {
            [] => Verdict::Missing,
            [one] => {
                let id = |t: &str| MtaSts::parse(t.as_bytes()).ok().map(|m| m.id);
                if id(one).is_some() && id(one) == id(text) {
                    Verdict::Ok
                } else {
                    wrong(vec![show(one)])
                }
            }
            // RFC 8461 3.1: several records: no MTA-STS.
            many => wrong(many.iter().map(show).collect()),
        },
        (Kind::TlsRpt, Rdata::Txt(_)) => match tagged("TLSRPTv1").as_slice() {
            [] => Verdict::Missing,
            [one] => {
                let rua = rua_of(&expected.data).unwrap_or_default();
                let ok = TlsRpt::parse(one.as_bytes()).is_ok_and(|r| {
                    r.rua
                        .iter()
                        .any(|u| matches!(u, ReportUri::Mail(a) if a.eq_ignore_ascii_case(rua)))
                });
                if ok {
                    Verdict::Ok
                } else {
                    wrong(vec![show(one)])
                }
            }
            // RFC 8460 3: several records: no reports.
            many => wrong(many.iter().map(show).collect()),
        },
        (Kind::Dkim, Rdata::Txt(text)) => {
            if txts.is_empty() {
                return Verdict::Missing;
            }
            let key = tag_value(text, "p");
            if key.is_some() && txts.iter().any(|t| tag_value(t, "p") == key) {
                Verdict::Ok
            } else {
                wrong(txts.iter().map(show).collect())
            }
        }
        _ => wrong(found.iter().map(|r| r.to_string()).collect()),
    }
}

/// The value of a TXT record's `v=` tag when it is the first tag.
fn version_tag(txt: &str) -> Option<&str> {
    let first = txt.split(';').next()?.trim();
    // SPF is "v=spf1 mechanisms" (RFC 7208 4.5), the others tag lists.
    let first = first.split_ascii_whitespace().next()?;
    let (k, v) = first.split_once('=')?;
    k.trim().eq_ignore_ascii_case("v").then(|| v.trim())
}

/// A tag's value in a tag=value list (RFC 6376 3.2), white space removed.
fn tag_value(txt: &str, tag: &str) -> Option<String> {
    txt.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == tag).then(|| v.chars().filter(|c| !c.is_whitespace()).collect())
    })
}

/// The mailto: address of a rua= tag of an expected record.
fn rua_of(data: &Rdata) -> Option<&str> {
    let Rdata::Txt(t) = data else { return None };
    t.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == "rua").then(|| v.trim().trim_start_matches("mailto:"))
    })
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        Site {
            domain: "example.org".into(),
            host: "mail.example.org".into(),
            dmarc_rua: "postmaster@example.org".into(),
            tlsrpt_rua: "tls@example.org".into(),
            mta_sts: MtaStsPolicy {
                mode: "testing".into(),
                mx: vec!["mail.example.org".into()],
                max_age: 604_800,
            },
            spki: Some(b"key".to_vec()),
            dkim: vec![Record {
                kind: Kind::Dkim,
                name: "s1._domainkey.example.org".into(),
                data: Rdata::Txt("v=DKIM1; k=ed25519; p=AAAA".into()),
            }],
        }
    }

    fn find(kind: Kind) -> Record {
        site()
            .records()
            .into_iter()
            .find(|r| r.kind == kind)
            .unwrap()
    }

    #[test]
    fn zone_lines() {
        let lines: Vec<String> = site().records().iter().map(Record::zone_line).collect();
        let policy = site().mta_sts;
        assert_eq!(
            policy.text(),
            "version: STSv1\r\nmode: testing\r\nmx: mail.example.org\r\nmax_age: 604800\r\n"
        );
        assert_eq!(policy.id().len(), 32);
        let tlsa = hex(&Sha256::digest(b"key"));
        let expect = [
            "example.org.\tIN MX 10 mail.example.org.".to_string(),
            "example.org.\tIN TXT \"v=spf1 mx -all\"".into(),
            "s1._domainkey.example.org.\tIN TXT \"v=DKIM1; k=ed25519; p=AAAA\"".into(),
            "_dmarc.example.org.\tIN TXT \"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org\"".into(),
            format!("_mta-sts.example.org.\tIN TXT \"v=STSv1; id={}\"", policy.id()),
            "_smtp._tls.example.org.\tIN TXT \"v=TLSRPTv1; rua=mailto:tls@example.org\"".into(),
            format!("_25._tcp.mail.example.org.\tIN TLSA 3 1 1 {tlsa}"),
            "_imaps._tcp.example.org.\tIN SRV 0 1 993 mail.example.org.".into(),
        ];
        assert_eq!(&lines[..expect.len()], &expect[..]);
        // The id follows the policy.
        let mut other = site().mta_sts;
        other.mode = "enforce".into();
        assert_ne!(other.id(), policy.id());
    }

    #[test]
    fn an_outside_report_address_is_authorized_in_its_zone() {
        let mut s = site();
        s.dmarc_rua = "dmarc@reports.example.net".into();
        let r: Vec<String> = s.records().iter().map(Record::zone_line).collect();
        assert!(r.contains(
            &"example.org._report._dmarc.reports.example.net.\tIN TXT \"v=DMARC1\"".to_string()
        ));
        s.dmarc_rua = "dmarc@sub.example.org".into();
        assert!(!s.records().iter().any(|r| r.kind == Kind::DmarcReport));
    }

    #[test]
    fn dkim_records_from_key_pairs() {
        let key = "A".repeat(392);
        let r = dkim_records(vec![(
            "s2048._domainkey.example.org.".into(),
            format!("v=DKIM1; k=rsa; p={key}"),
        )]);
        assert_eq!(r[0].name, "s2048._domainkey.example.org");
        // A 2048-bit key is longer than one character-string.
        let line = r[0].zone_line();
        assert!(
            line.starts_with("s2048._domainkey.example.org.\tIN TXT \"v=DKIM1; k=rsa; p=AAA"),
            "{line}"
        );
        assert_eq!(line.matches("\" \"").count(), 1, "{line}");
        assert_eq!(
            judge(&r[0], &[Rdata::Txt(format!("v=DKIM1; k=rsa; p={key}"))]),
            Verdict::Ok
        );
    }

    #[test]
    fn found_text_is_escaped() {
        assert_eq!(
            Rdata::Txt("a\"b\\c\n\u{e9}".into()).to_string(),
            "\"a\\\"b\\\\c\\010\\195\\169\""
        );
        assert_eq!(
            Rdata::Mx(1, "a b;\x07".into()).to_string(),
            "1 a\\ b\\;\\007."
        );
    }

    #[test]
    fn long_txt_is_cut_into_character_strings() {
        let t = "a".repeat(300);
        assert_eq!(
            Rdata::Txt(t).to_string(),
            format!("\"{}\" \"{}\"", "a".repeat(255), "a".repeat(45))
        );
    }

    #[test]
    fn verdicts() {
        let txt = |s: &str| Rdata::Txt(s.into());
        let mx = find(Kind::Mx);
        assert_eq!(
            judge(&mx, &[Rdata::Mx(5, "MAIL.example.org.".into())]),
            Verdict::Ok
        );
        assert_eq!(judge(&mx, &[]), Verdict::Missing);
        assert_eq!(
            judge(&mx, &[Rdata::Mx(10, "other.example".into())]).to_string(),
            "wrong: found 10 other.example., expected 10 mail.example.org."
        );
        let spf = find(Kind::Spf);
        assert_eq!(
            judge(
                &spf,
                &[txt("google-site-verification=x"), txt("v=spf1 a -all")]
            ),
            Verdict::Ok
        );
        assert_eq!(judge(&spf, &[txt("other")]), Verdict::Missing);
        assert!(matches!(
            judge(&spf, &[txt("v=spf1 -all"), txt("v=spf1 mx -all")]),
            Verdict::Wrong { .. }
        ));
        let dmarc = find(Kind::Dmarc);
        assert_eq!(
            judge(
                &dmarc,
                &[txt(
                    "v=DMARC1; p=none; rua=mailto:x@y.example,mailto:postmaster@example.org"
                )]
            ),
            Verdict::Ok
        );
        assert!(matches!(
            judge(&dmarc, &[txt("v=DMARC1; p=none; rua=mailto:x@y.example")]),
            Verdict::Wrong { .. }
        ));
        let sts = find(Kind::MtaSts);
        let Rdata::Txt(right) = &sts.data else {
            unreachable!()
        };
        assert_eq!(judge(&sts, &[txt(right)]), Verdict::Ok);
        assert_eq!(
            judge(&sts, &[txt("v=STSv1; id=old")]).to_string(),
            format!("wrong: found \"v=STSv1; id=old\", expected \"{right}\"")
        );
        let rpt = find(Kind::TlsRpt);
        assert_eq!(
            judge(&rpt, &[txt("v=TLSRPTv1;rua=mailto:tls@example.org")]),
            Verdict::Ok
        );
        assert!(matches!(
            judge(&rpt, &[txt("v=TLSRPTv1; rua=https://r.example/")]),
            Verdict::Wrong { .. }
        ));
        let tlsa = find(Kind::Tlsa);
        assert_eq!(judge(&tlsa, std::slice::from_ref(&tlsa.data)), Verdict::Ok);
        assert!(matches!(
            judge(&tlsa, &[Rdata::Tlsa(3, 1, 1, vec![0; 32])]),
            Verdict::Wrong { .. }
        ));
        let dkim = find(Kind::Dkim);
        assert_eq!(
            judge(&dkim, &[txt("v=DKIM1; k=ed25519; p=AA AA")]),
            Verdict::Ok
        );
        assert!(matches!(
            judge(&dkim, &[txt("v=DKIM1; p=BBBB")]),
            Verdict::Wrong { .. }
        ));
    }
}
