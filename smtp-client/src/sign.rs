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
//! arc_seal_domain, arc_seal_selector, authserv_id,
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
            let authserv_id = cfg.get("authserv_id");
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

#[cfg(test)]
mod tests {
    use super::*;
    use common::spool::{Envelope, Queue, Spool};

    /// A queue file with these attributes, and the agent's settings.
    fn queued(name: &str, attrs: &[(&str, &str)], extra: &str) -> (PathBuf, QueueFile, Signing) {
        let dir =
            std::env::temp_dir().join(format!("posthorn-smtp-sign-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spool = Spool::new(&dir);
        spool.create_dirs().unwrap();
        let env = Envelope {
            sender: "a@example.org".into(),
            recipients: vec!["b@example.net".into()],
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Envelope::default()
        };
        let mut w = spool.create(&env).unwrap();
        w.write(b"From: a@example.org\r\nSubject: s\r\n\r\nbody\r\n")
            .unwrap();
        let id = w.commit().unwrap();
        let qf = QueueFile::read(&spool.dir(Queue::Incoming).join(id.to_string())).unwrap();
        let text = format!(
            "mynetworks = 192.0.2.0/24\ndkim_key_directory = {}/dkim\n{extra}",
            dir.display()
        );
        let cfg = Config::parse(&dir, "main.cf", &text).unwrap();
        (dir, qf, Signing::from_config(&cfg).unwrap())
    }

    #[test]
    fn ours_is_authenticated_local_our_bounces_or_mynetworks() {
        let cases: &[(&[(&str, &str)], bool)] = &[
            (
                &[("sasl_username", "alice"), ("client_addr", "203.0.113.9")],
                true,
            ),
            (&[("uid", "1000")], true),
            (&[("protocol", "bounce")], true),
            (&[("client_addr", "192.0.2.7"), ("protocol", "ESMTP")], true),
            (
                &[("client_addr", "203.0.113.9"), ("protocol", "ESMTP")],
                false,
            ),
            (
                &[("client_addr", "203.0.113.9"), ("sasl_username", "")],
                false,
            ),
            (&[("protocol", "forward"), ("origin_queue_id", "X")], false),
            (
                &[("client_addr", "192.0.2.7"), ("protocol", "forward")],
                false,
            ),
            (&[], false),
        ];
        for (i, (attrs, want)) in cases.iter().enumerate() {
            let (dir, qf, s) = queued(&format!("ours{i}"), attrs, "");
            assert_eq!(s.ours(&qf), *want, "{attrs:?}");
            assert_eq!(s.wanted(&qf), *want, "{attrs:?}");
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn forwarded_copies_are_wanted_only_for_sealing() {
        let fwd = &[("protocol", "forward")];
        let (dir, qf, s) = queued("fwd", fwd, "arc_seal_domain = example.org\n");
        assert!(s.wanted(&qf) && !s.ours(&qf));
        // The seal's key is missing: the copy waits (4.7.0), never unsealed
        // silently.
        match s.stamp(&qf, None) {
            Err(Verdict::Deferred { dsn, text }) => {
                assert_eq!(dsn, "4.7.0");
                assert!(text.contains("arc.key"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(dir).unwrap();
        let (dir, _, _) = queued("badarc", fwd, "");
        let cfg = Config::parse(&dir, "main.cf", "arc_seal_domain = ../x\n").unwrap();
        assert!(Signing::from_config(&cfg).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_domain_without_keys_is_sent_as_it_is() {
        let (dir, qf, s) = queued("nokey", &[("sasl_username", "a")], "");
        assert_eq!(s.stamp(&qf, None).unwrap(), Vec::<u8>::new());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
