//! Which outbound mail posthorn-smtp signs with DKIM or seals with ARC,
//! and the header fields it puts before it (the keys and the cryptography
//! are posthorn_trust::sign's).
//!
//! DKIM (RFC 6376): mail that is ours to sign, whose From: domain has a
//! key in dkim_key_directory, gets a DKIM-Signature per key of that
//! domain. Ours (OpenDKIM's "authenticated or InternalHosts"), from the
//! queue file's attributes:
//! - submitted with SMTP AUTH (`sasl_username`),
//! - posted locally (sendmail/postdrop through pickup: `uid`),
//! - a bounce or delay notice of our own (`protocol=bounce`),
//! - received over SMTP from a client in mynetworks (`client_addr`).
//!
//! A forwarded copy (`protocol=forward`: aliases, .forward) is not ours:
//! it is ARC-sealed instead (RFC 8617) when arc_seal_domain is set.
//! Everything else goes as it is. Local delivery signs nothing.
//!
//! The fields are made at delivery, from the bytes that go on the wire
//! (after an 8BITMIME downgrade), so the signature covers exactly what is
//! sent. A key that exists but cannot be used defers the message (4.7.0,
//! the reason logged): never sent unsigned when a key exists.
//!
//! Parameters: dkim_key_directory, dkim_signature_headers, mynetworks,
//! arc_seal_domain, arc_seal_selector, authserv_id (else myhostname),
//! dns_servers (to verify an existing ARC chain).
//!
//! Diagnostics: `ID: DKIM-Signature field added (d=DOMAIN, s=S1 S2)`,
//! `ID: ARC set added (i=N, d=DOMAIN, s=S, cv=CV)`, a warning when a
//! message is deferred for its signature or not sealed.

use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;

use common::config::{Config, ConfigError};
use common::net::Networks;
use common::spool::QueueFile;
use common::{info, warning};
use posthorn_trust::sign::{self as trust_sign, ArcSettings, Sealed};

use crate::session::Verdict;

/// The signing settings of the agent.
pub struct Signing {
    /// dkim_key_directory.
    pub key_dir: PathBuf,
    /// dkim_signature_headers (empty: trust::sign::DEFAULT_HEADERS).
    pub headers: Vec<String>,
    /// mynetworks: clients whose mail is ours.
    pub mynetworks: Networks,
    /// ARC sealing of forwarded copies (arc_seal_domain not empty).
    pub arc: Option<ArcSettings>,
    /// The resolver and runtime that check an existing ARC chain; None
    /// when it cannot be set up (a chain is then not sealed).
    verifier: Option<(mail_auth::MessageAuthenticator, tokio::runtime::Runtime)>,
}

impl Signing {
    pub fn from_config(cfg: &Config) -> Result<Signing, ConfigError> {
        let mynetworks =
            Networks::parse(&cfg.get("mynetworks")).map_err(|e| cfg.invalid("mynetworks", e))?;
        let headers: Vec<String> = cfg.list("dkim_signature_headers");
        let key_dir = PathBuf::from(cfg.get("dkim_key_directory"));
        let arc_domain = cfg.get("arc_seal_domain");
        let arc = if arc_domain.is_empty() {
            None
        } else {
            trust_sign::checked_name(&arc_domain, "domain")
                .map_err(|e| cfg.invalid("arc_seal_domain", e.to_string()))?;
            let selector = cfg.get("arc_seal_selector");
            trust_sign::checked_name(&selector, "selector")
                .map_err(|e| cfg.invalid("arc_seal_selector", e.to_string()))?;
            // Engineer A's authserv_id when the tree has it, else
            // myhostname (its default).
            let authserv_id = if common::params::find("authserv_id").is_some() {
                cfg.get("authserv_id")
            } else {
                cfg.get("myhostname")
            };
            Some(ArcSettings {
                key_dir: key_dir.clone(),
                domain: arc_domain,
                selector,
                authserv_id,
                headers: headers.clone(),
            })
        };
        let verifier = if arc.is_some() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match (
                posthorn_trust::dns::authenticator(&cfg.list("dns_servers")),
                rt,
            ) {
                (Ok(a), Ok(rt)) => Some((a, rt)),
                (Err(e), _) => {
                    warning!("ARC: {e}; forwarded copies with an ARC chain are not sealed");
                    None
                }
                (_, Err(e)) => {
                    warning!(
                        "ARC: no runtime: {e}; forwarded copies with an ARC chain are not sealed"
                    );
                    None
                }
            }
        } else {
            None
        };
        Ok(Signing {
            key_dir,
            headers,
            mynetworks,
            arc,
            verifier,
        })
    }

    /// Is the message one to seal (a forwarded copy, arc_seal_domain set)
    /// or, being ours, one to sign when its From: domain has a key?
    pub fn wanted(&self, qf: &QueueFile) -> bool {
        if qf.attr("protocol") == Some("forward") {
            return self.arc.is_some();
        }
        self.ours(qf)
    }

    /// Mail posthorn may sign as its own (see the module documentation).
    pub fn ours(&self, qf: &QueueFile) -> bool {
        match qf.attr("protocol") {
            Some("forward") => return false,
            Some("bounce") => return true,
            _ => {}
        }
        if qf.attr("sasl_username").is_some_and(|u| !u.is_empty()) || qf.attr("uid").is_some() {
            return true;
        }
        qf.attr("client_addr")
            .and_then(|a| a.parse::<IpAddr>().ok())
            .is_some_and(|ip| self.mynetworks.contains(ip))
    }

    /// The fields to put before the message (`session::Message::stamp`):
    /// `converted` is the 7-bit form when the message was converted.
    pub fn stamp(&self, qf: &QueueFile, converted: Option<&[u8]>) -> Result<Vec<u8>, Verdict> {
        let id = qf
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let defer = |text: String| {
            warning!("{id}: {text}; message deferred");
            Verdict::Deferred {
                dsn: "4.7.0".into(),
                text,
            }
        };
        if qf.attr("protocol") == Some("forward") {
            let Some(arc) = &self.arc else {
                return Ok(Vec::new());
            };
            let owned;
            let bytes = match converted {
                Some(b) => b,
                None => {
                    let mut v = Vec::with_capacity(qf.msg_len as usize);
                    qf.message()
                        .and_then(|mut r| r.read_to_end(&mut v))
                        .map_err(|e| defer(format!("ARC sealing: cannot read queue file: {e}")))?;
                    owned = v;
                    &owned
                }
            };
            let verifier = self.verifier.as_ref().map(|(a, rt)| (a, rt));
            return match trust_sign::arc_seal(arc, bytes, verifier) {
                Ok(Sealed::Set(fields, cv)) => {
                    info!(
                        "{id}: ARC set added (d={}, s={}, cv={cv})",
                        arc.domain, arc.selector
                    );
                    Ok(fields)
                }
                Ok(Sealed::Skipped(why)) => {
                    warning!("{id}: not ARC-sealed: {why}");
                    Ok(Vec::new())
                }
                Err(e) => Err(defer(format!("ARC sealing failed: {e}"))),
            };
        }
        let signed = match converted {
            Some(b) => trust_sign::dkim_sign(&self.key_dir, &self.headers, &mut &b[..]),
            None => match qf.message() {
                Ok(mut r) => trust_sign::dkim_sign(&self.key_dir, &self.headers, &mut r),
                Err(e) => return Err(defer(format!("DKIM signing: cannot read queue file: {e}"))),
            },
        };
        match signed {
            Ok(Some(s)) => {
                info!(
                    "{id}: DKIM-Signature field added (d={}, s={})",
                    s.domain,
                    s.selectors.join(" ")
                );
                Ok(s.fields)
            }
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(defer(format!("DKIM signing failed: {e}"))),
        }
    }
}
