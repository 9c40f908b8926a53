//! Inbound verification: SPF, DKIM, DMARC and ARC of one message, through
//! mail-auth, into one Authentication-Results header, a log summary, the
//! DMARC outcome smtpd may enforce and the observation kept for reports.
//!
//! Owns which checks run (smtpd_authentication_checks), the SPF identity
//! (MAIL FROM; the HELO name for the null sender, RFC 7208 2.4), the bound
//! on DKIM signatures verified (MAX_SIGNATURES, in the order they appear;
//! the rest are reported as not verified), RSA-SHA1 signatures reported as
//! `dkim=policy` and not counted for DMARC (RFC 8301 3.1), RFC 7208
//! 4.6.4's void look-up limit (mail-auth 0.13 enforces the 10 look-ups but
//! not this: cache::Counting counts them), DMARC's result (fail when a
//! record exists and no aligned identifier passes; the policy shown is the
//! one applied: p, sp or np, reject lowered to quarantine under t=y), and a
//! time limit per check (STAGE_TIMEOUT: past it the check is temperror). Does
//! not own the DNS (trust::dns's resolver, trust::cache's caches), the
//! header text (authres.rs), or what smtpd does with the outcome.
//!
//! Standards: RFC 7208 (SPF: mail-auth enforces 4.6.4's 10 look-ups and 2
//! void look-ups, permerror past them), RFC 6376 and RFC 8463 (DKIM),
//! RFC 8301 (rsa-sha1), RFC 7489 / RFC 9989 (DMARC: mail-auth's tree
//! walk), RFC 8617 (ARC), RFC 8601 (the header).
//!
//! Security: the message is parsed by mail-auth (fuzzed, fuzz/ target
//! `authenticate`); every DNS answer is bounded by the resolver's time-out
//! and each check by STAGE_TIMEOUT.

use std::net::IpAddr;
use std::time::Duration;

use mail_auth::common::crypto::Algorithm;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::report::{
    ActionDisposition, PolicyOverride, PolicyOverrideReason, PolicyPublished, Record,
    SPFDomainScope,
};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DmarcResult, MessageAuthenticator, SpfResult,
};

use crate::authres::{self, Results};
use crate::cache::{Caches, Counting, CAPACITY};
use crate::dmarc_store::Observation;

/// DKIM signatures verified per message at most.
pub const MAX_SIGNATURES: usize = 10;
/// RFC 7208 4.6.4: void look-ups allowed in one SPF evaluation.
pub const MAX_VOID_LOOKUPS: usize = 2;
/// Longest time one check (SPF, DKIM, ARC, DMARC) may take.
pub const STAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a setting is not usable.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("smtpd_authentication_checks: unknown check {0:?} (spf, dkim, dmarc, arc)")]
    UnknownCheck(String),
}

/// Which checks run (smtpd_authentication_checks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checks {
    pub spf: bool,
    pub dkim: bool,
    pub dmarc: bool,
    pub arc: bool,
}

impl Checks {
    /// The list's names (any case); an empty list is no checks.
    pub fn parse(items: &[String]) -> Result<Checks, VerifyError> {
        let mut c = Checks::default();
        for i in items {
            match i.to_ascii_lowercase().as_str() {
                "spf" => c.spf = true,
                "dkim" => c.dkim = true,
                "dmarc" => c.dmarc = true,
                "arc" => c.arc = true,
                _ => return Err(VerifyError::UnknownCheck(i.clone())),
            }
        }
        Ok(c)
    }

    /// Is anything checked?
    pub fn any(&self) -> bool {
        self.spf || self.dkim || self.dmarc || self.arc
    }
}

/// The SMTP facts of one message.
#[derive(Debug, Clone)]
pub struct Transaction<'a> {
    pub client: IpAddr,
    /// The HELO/EHLO name.
    pub helo: &'a str,
    /// The MAIL FROM address ("" for the null sender).
    pub mail_from: &'a str,
    /// Our host name (SPF's %{r}).
    pub myhostname: &'a str,
    /// Arrival, seconds since the epoch (for the observation).
    pub time: u64,
}

/// The DMARC outcome a receiver may act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcAction {
    /// No DMARC result that asks for anything (pass, none, errors, p=none,
    /// or DMARC not checked).
    Nothing,
    /// Failed under p=quarantine.
    Quarantine,
    /// Failed under p=reject.
    Reject,
}

/// What verification found.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub results: Results,
    /// What DMARC asks of us (t=y testing mode asks nothing).
    pub action: DmarcAction,
    /// For the DMARC report store, when a DMARC record was found; its
    /// disposition is what DMARC asked; the caller sets what was done
    /// (`Verdict::applied`).
    pub observation: Option<Observation>,
}

impl Verdict {
    /// Record what was done with a failing message in the observation:
    /// `rejected` (dmarc_enforce = yes and p=reject), or delivered.
    pub fn applied(&mut self, rejected: bool) {
        let action = self.action;
        let Some(o) = self.observation.as_mut() else {
            return;
        };
        let row = &mut o.record;
        match (action, rejected) {
            (_, true) => {
                *row = std::mem::take(row).with_action_disposition(ActionDisposition::Reject)
            }
            (DmarcAction::Nothing, false) => {}
            (_, false) => {
                *row = std::mem::take(row)
                    .with_action_disposition(ActionDisposition::None)
                    .with_policy_override_reason(
                        PolicyOverrideReason::new(PolicyOverride::LocalPolicy)
                            .with_comment("delivered: dmarc_enforce"),
                    );
            }
        }
    }
}

/// The verifier of one smtpd process: the authenticator, its caches and
/// the settings.
pub struct Verifier {
    auth: MessageAuthenticator,
    caches: Caches,
    checks: Checks,
}

impl Verifier {
    pub fn new(auth: MessageAuthenticator, checks: Checks) -> Verifier {
        Verifier {
            auth,
            caches: Caches::new(CAPACITY),
            checks,
        }
    }

    pub fn checks(&self) -> Checks {
        self.checks
    }

    /// Check one message. `message` is Err(why) when it could not be held
    /// (too large, unreadable): then only SPF is checked, and DKIM says
    /// why not.
    pub async fn verify(&self, tx: &Transaction<'_>, message: Result<&[u8], &str>) -> Verdict {
        let c = self.checks;
        let mut results = Results::default();
        // RFC 7208 2.4: the HELO identity stands in for the null sender.
        let (spf_params, property, identity, scope) = if tx.mail_from.is_empty() {
            (
                SpfParameters::verify_ehlo(tx.client, tx.helo, tx.myhostname),
                "smtp.helo",
                tx.helo.to_string(),
                SPFDomainScope::Helo,
            )
        } else {
            (
                SpfParameters::verify_mail_from(tx.client, tx.helo, tx.myhostname, tx.mail_from),
                "smtp.mailfrom",
                tx.mail_from.to_string(),
                SPFDomainScope::MailFrom,
            )
        };
        let mail_from_domain = if tx.mail_from.is_empty() {
            tx.helo.to_string()
        } else {
            tx.mail_from
                .rsplit_once('@')
                .map_or(tx.helo, |(_, d)| d)
                .to_string()
        };
        // DMARC needs the SPF result even when SPF itself is not reported.
        let spf = if c.spf || c.dmarc {
            let k = &self.caches;
            let (txt, mx, v4, v6, ptr) = (
                Counting::new(&k.txt),
                Counting::new(&k.mx),
                Counting::new(&k.ipv4),
                Counting::new(&k.ipv6),
                Counting::new(&k.ptr),
            );
            let params = mail_auth::Parameters::new(spf_params)
                .with_txt_cache(&txt)
                .with_mx_cache(&mx)
                .with_ipv4_cache(&v4)
                .with_ipv6_cache(&v6)
                .with_ptr_cache(&ptr);
            let mut out = tokio::time::timeout(STAGE_TIMEOUT, self.auth.verify_spf(params))
                .await
                .unwrap_or_else(|_| {
                    mail_auth::SpfOutput::new(mail_from_domain.clone())
                        .with_result(SpfResult::TempError)
                });
            // RFC 7208 4.6.4: more than 2 void look-ups is a permerror.
            let voids = txt.voids() + mx.voids() + v4.voids() + v6.voids() + ptr.voids();
            if voids > MAX_VOID_LOOKUPS && out.result() != SpfResult::TempError {
                out = mail_auth::SpfOutput::new(out.domain().to_string())
                    .with_result(SpfResult::PermError);
            }
            if c.spf {
                results.spf = Some(authres::Spf {
                    result: spf_result(out.result()),
                    property,
                    identity,
                });
            }
            Some(out)
        } else {
            None
        };

        let parsed = message.ok().and_then(AuthenticatedMessage::parse);
        let Some(mut msg) = parsed else {
            let why = match message {
                Err(why) => why,
                Ok(_) => "message not parsable",
            };
            if c.dkim || c.arc || c.dmarc {
                results.dkim_unchecked = Some(why.into());
            }
            return Verdict {
                results,
                action: DmarcAction::Nothing,
                observation: None,
            };
        };
        if msg.dkim_headers.len() > MAX_SIGNATURES {
            results.dkim_skipped = msg.dkim_headers.len() - MAX_SIGNATURES;
            msg.dkim_headers.truncate(MAX_SIGNATURES);
        }
        let msg = msg;

        let mut dkim: Vec<DkimOutput<'_>> = Vec::new();
        if c.dkim || c.dmarc {
            dkim = tokio::time::timeout(
                STAGE_TIMEOUT,
                self.auth.verify_dkim(self.caches.parameters(&msg)),
            )
            .await
            .unwrap_or_else(|_| {
                msg.dkim_headers
                    .iter()
                    .map(|h| {
                        DkimOutput::dns_error(mail_auth::Error::Dns(mail_auth::DnsError::Resolver(
                            "timed out".into(),
                        )))
                        .with_signature(&h.header)
                    })
                    .collect()
            });
            let mut entries = Vec::new();
            for out in dkim.iter_mut() {
                let mut entry = dkim_entry(out);
                // RFC 8301 3.1: rsa-sha1 is not a valid signature.
                if let Some(sig) = msg
                    .dkim_headers
                    .iter()
                    .map(|h| &h.header)
                    .find(|s| out.signature().is_some_and(|o| std::ptr::eq(*s, o)))
                {
                    if sig.a == Algorithm::RsaSha1 {
                        entry.result = "policy";
                        entry.reason = Some("weak algorithm rsa-sha1".into());
                        *out = DkimOutput::fail(mail_auth::Error::Dkim(
                            mail_auth::dkim::DkimError::UnsupportedAlgorithm,
                        ))
                        .with_signature(sig);
                    }
                }
                entries.push(entry);
            }
            if c.dkim {
                results.dkim = Some(entries);
            } else {
                results.dkim_skipped = 0;
            }
        } else {
            results.dkim_skipped = 0;
        }

        let arc = if c.arc {
            let out = tokio::time::timeout(
                STAGE_TIMEOUT,
                self.auth.verify_arc(self.caches.parameters(&msg)),
            )
            .await
            .ok();
            results.arc = Some(match out.as_ref().map(|o| o.result()) {
                None => "temperror",
                Some(DkimResult::Pass) => "pass",
                Some(DkimResult::None) => "none",
                Some(DkimResult::TempError(_)) => "temperror",
                Some(_) => "fail",
            });
            out
        } else {
            None
        };

        let mut action = DmarcAction::Nothing;
        let mut observation = None;
        if let (true, Some(spf)) = (c.dmarc, spf.as_ref()) {
            let out = tokio::time::timeout(
                STAGE_TIMEOUT,
                self.auth
                    .verify_dmarc(self.caches.parameters(DmarcParameters {
                        message: &msg,
                        dkim_output: &dkim,
                        dkim2_output: None,
                        rfc5321_mail_from_domain: &mail_from_domain,
                        spf_output: spf,
                    })),
            )
            .await;
            let from = msg
                .from
                .first()
                .and_then(|f| f.rsplit_once('@'))
                .map(|(_, d)| d.to_ascii_lowercase())
                .unwrap_or_default();
            match out {
                Err(_) => {
                    results.dmarc = Some(authres::Dmarc {
                        result: "temperror",
                        from,
                        policy: "",
                    });
                }
                Ok(out) => {
                    let record = out.dmarc_record();
                    let passed = *out.spf_result() == DmarcResult::Pass
                        || *out.dkim_result() == DmarcResult::Pass;
                    // RFC 7489 6.6.2: with a record, a message that no
                    // aligned identifier passes fails.
                    let result = if passed {
                        "pass"
                    } else {
                        match (out.spf_result(), out.dkim_result()) {
                            (DmarcResult::TempError(_), _) | (_, DmarcResult::TempError(_)) => {
                                "temperror"
                            }
                            (DmarcResult::PermError(_), _) | (_, DmarcResult::PermError(_)) => {
                                "permerror"
                            }
                            _ if record.is_some() => "fail",
                            _ => "none",
                        }
                    };
                    // The policy applied (p, sp or np; t=y lowers reject to
                    // quarantine).
                    let policy = match (record, out.policy()) {
                        (None, _) => "",
                        (Some(_), Policy::Reject) => "reject",
                        (Some(_), Policy::Quarantine) => "quarantine",
                        (Some(_), _) => "none",
                    };
                    let testing = record.is_some_and(|r| r.t);
                    if result == "fail" && !testing {
                        action = match out.policy() {
                            Policy::Reject => DmarcAction::Reject,
                            Policy::Quarantine => DmarcAction::Quarantine,
                            _ => DmarcAction::Nothing,
                        };
                    }
                    let domain = if out.domain().is_empty() {
                        from.clone()
                    } else {
                        out.domain().to_string()
                    };
                    if let Some(rec) = record {
                        let mut row = Record::new()
                            .with_count(1)
                            .with_source_ip(tx.client)
                            .with_header_from(domain.clone())
                            .with_envelope_from(mail_from_domain.clone())
                            .with_dkim_output(&dkim)
                            .with_spf_output(spf, scope)
                            .with_dmarc_output(&out);
                        if let Some(a) = &arc {
                            row = row.with_arc_output(a);
                        }
                        observation = Some(Observation {
                            time: tx.time,
                            policy: PolicyPublished::from_record(domain.clone(), rec),
                            record: row,
                        });
                    }
                    results.dmarc = Some(authres::Dmarc {
                        result,
                        from: domain,
                        policy,
                    });
                }
            }
        }
        Verdict {
            results,
            action,
            observation,
        }
    }
}

/// RFC 7208 2.6's name of an SPF result.
pub fn spf_result(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

/// One signature's A-R entry (RFC 8601 2.7.1 results).
fn dkim_entry(out: &DkimOutput<'_>) -> authres::Dkim {
    let (result, reason) = match out.result() {
        DkimResult::Pass => ("pass", None),
        DkimResult::Neutral(e) => ("neutral", Some(e.to_string())),
        DkimResult::Fail(e) => ("fail", Some(e.to_string())),
        DkimResult::PermError(e) => ("permerror", Some(e.to_string())),
        DkimResult::TempError(e) => ("temperror", Some(e.to_string())),
        DkimResult::None => ("none", None),
    };
    // A body hash mismatch is a failed signature (RFC 6376 6.3), which
    // mail-auth reports as neutral.
    let result = match out.result() {
        DkimResult::Neutral(mail_auth::Error::Dkim(
            mail_auth::dkim::DkimError::FailedBodyHashMatch,
        )) => "fail",
        _ => result,
    };
    let (domain, selector, b) = match out.signature() {
        Some(s) => (s.d.clone(), s.s.clone(), b64_prefix(&s.b)),
        None => (String::new(), String::new(), String::new()),
    };
    authres::Dkim {
        result,
        reason,
        domain,
        selector,
        b,
    }
}

/// RFC 6008: the first 8 characters of the signature's base64.
fn b64_prefix(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in b.chunks(3).take(2) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            s.push(A[((n >> (18 - 6 * k)) & 63) as usize] as char);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_parse() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            Checks::parse(&l(&["SPF", "dmarc"])).unwrap(),
            Checks {
                spf: true,
                dmarc: true,
                ..Checks::default()
            }
        );
        assert!(!Checks::parse(&[]).unwrap().any());
        assert!(matches!(
            Checks::parse(&l(&["spf", "dnsbl"])),
            Err(VerifyError::UnknownCheck(c)) if c == "dnsbl"
        ));
    }

    #[test]
    fn signature_prefixes() {
        assert_eq!(b64_prefix(b"\x00\x10\x83\x10\x51\x87\xff"), "ABCDEFGH");
        assert_eq!(b64_prefix(b"ab"), "YWIA");
    }
}
