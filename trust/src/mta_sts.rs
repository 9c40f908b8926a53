//! MTA-STS (RFC 8461) for the outbound client: a destination domain's
//! policy, found, fetched, cached and matched against its MX hosts.
//!
//! Owns the policy (its parser: mail-auth 0.13 parses the `_mta-sts` TXT
//! record but not the policy file), the MX pattern match (RFC 8461 4.1),
//! the on-disk cache (`$queue_directory/mta-sts/DOMAIN`, one JSON object
//! per domain: the TXT id, when it was fetched, the policy text; written
//! whole and renamed into place) and the discovery (RFC 8461 3, 5.1):
//!
//! - `_mta-sts.DOMAIN` TXT with `v=STSv1; id=...` (mail-auth); its id the
//!   cached one and the cached policy within max_age: the cached policy.
//! - else `GET https://mta-sts.DOMAIN/.well-known/mta-sts.txt` (https.rs,
//!   webpki validation against smtp_tls_CAfile, no redirects, 200 and
//!   text/plain only, at most 64 KiB): the new policy, cached.
//! - a fetch that fails, or no TXT record, or a name service failure: the
//!   cached policy while within its max_age (RFC 8461 5.1: a policy
//!   stays in force when its record goes or its host is down), else no
//!   policy; a failed fetch with no cached policy is reported (TLS-RPT's
//!   sts-policy-fetch-error, sts-policy-invalid, sts-webpki-invalid).
//!
//! Does not own what the client does with a policy (posthorn-smtp: enforce
//! and testing), nor DANE, which takes precedence (RFC 8461 2).
//!
//! Standards: RFC 8461 (3.1 TXT, 3.2 policy, 3.3 HTTPS, 4.1 MX matching,
//! 5.1 caching), RFC 8460 (result types).
//!
//! Security: the TXT record and the policy are untrusted network input:
//! bounded (64 KiB body), parsed without panics (fuzz target
//! `mta_sts_policy`); the domain names the cache file only when it is a
//! plain LDH host name (no `/`, no leading dot).
//!
//! Diagnostics: a fetched policy is logged (`MTA-STS policy for D: mode
//! enforce, id X, max_age N`), a failed fetch as a warning with the cause.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mail_auth::common::cache::NoCache;
use mail_auth::mta_sts::MtaSts;
use mail_auth::report::tlsrpt::ResultType;
use mail_auth::{MessageAuthenticator, Txt};
use rustls::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::https;

/// The largest policy taken (RFC 8461 3.3 lets senders bound it at 64 KiB).
pub const POLICY_LIMIT: usize = 64 * 1024;
/// The longest max_age (RFC 8461 3.2: 31557600 s, about a year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;
/// The time-out of the connect and of each read of a fetch (RFC 8461 3.3
/// suggests a minute for the whole).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// A policy's mode (RFC 8461 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// A parsed policy (RFC 8461 3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// The mx patterns, lower case, without a final dot.
    pub mx: Vec<String>,
    /// Seconds.
    pub max_age: u64,
    /// The policy's lines as published (TLS-RPT's policy-string).
    pub lines: Vec<String>,
}

/// Why a policy text is not a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy is not UTF-8 text")]
    NotText,
    #[error("policy line {0} is not \"key: value\"")]
    BadLine(usize),
    #[error("policy has no version: STSv1")]
    Version,
    #[error("policy has no valid mode (enforce, testing or none)")]
    Mode,
    #[error("policy has no valid max_age")]
    MaxAge,
    #[error("policy field {0} appears twice")]
    Duplicate(&'static str),
    #[error("policy has no mx")]
    NoMx,
    #[error("policy mx {0:?} is not a host name pattern")]
    BadMx(String),
}

impl Policy {
    /// RFC 8461 3.2: `key: value` lines ending in LF or CRLF; version,
    /// mode, max_age once each, mx one or more (but for mode none);
    /// other keys ignored (extensions).
    pub fn parse(text: &[u8]) -> Result<Policy, PolicyError> {
        let text = std::str::from_utf8(text).map_err(|_| PolicyError::NotText)?;
        let (mut version, mut mode, mut max_age) = (None, None, None);
        let mut mx = Vec::new();
        let mut lines = Vec::new();
        for (i, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                continue;
            }
            let (k, v) = line.split_once(':').ok_or(PolicyError::BadLine(i + 1))?;
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(PolicyError::BadLine(i + 1));
            }
            lines.push(format!("{k}: {v}"));
            let once = |slot: &Option<String>, name| match slot {
                Some(_) => Err(PolicyError::Duplicate(name)),
                None => Ok(Some(v.to_string())),
            };
            match k {
                "version" => version = once(&version, "version")?,
                "mode" => mode = once(&mode, "mode")?,
                "max_age" => max_age = once(&max_age, "max_age")?,
                "mx" => {
                    let p = v.trim_end_matches('.').to_ascii_lowercase();
                    if !valid_pattern(&p) {
                        return Err(PolicyError::BadMx(v.into()));
                    }
                    mx.push(p);
                }
                _ => {}
            }
        }
        if version.as_deref() != Some("STSv1") {
            return Err(PolicyError::Version);
        }
        let mode = match mode.as_deref() {
            Some("enforce") => Mode::Enforce,
            Some("testing") => Mode::Testing,
            Some("none") => Mode::None,
            _ => return Err(PolicyError::Mode),
        };
        // max-age-value = 1*10(DIGIT), at most MAX_AGE_LIMIT.
        let max_age = max_age
            .filter(|a| !a.is_empty() && a.len() <= 10 && a.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|a| a.parse::<u64>().ok())
            .filter(|&a| a <= MAX_AGE_LIMIT)
            .ok_or(PolicyError::MaxAge)?;
        if mx.is_empty() && mode != Mode::None {
            return Err(PolicyError::NoMx);
        }
        Ok(Policy {
            mode,
            mx,
            max_age,
            lines,
        })
    }

    /// RFC 8461 4.1: does the MX host `host` match a pattern? A pattern is
    /// a host name, or `*.` and one, which stands for exactly one more
    /// label on the left.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|p| match p.strip_prefix("*.") {
            Some(rest) => host
                .split_once('.')
                .is_some_and(|(first, tail)| !first.is_empty() && tail == rest),
            None => *p == host,
        })
    }
}

/// A host name, or `*.` and a host name.
fn valid_pattern(p: &str) -> bool {
    let name = p.strip_prefix("*.").unwrap_or(p);
    is_host_name(name)
}

/// An LDH host name of at least one label, at most 253 octets.
pub fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The cached policy of a domain, as kept on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cached {
    /// The TXT record's id when it was fetched.
    pub id: String,
    /// When it was fetched, seconds since the epoch.
    pub fetched: u64,
    /// The policy as served.
    pub text: String,
}

impl Cached {
    /// Its policy, if it parses and `now` is within its max_age.
    fn fresh(&self, now: u64) -> Option<Policy> {
        let p = Policy::parse(self.text.as_bytes()).ok()?;
        (now < self.fetched.saturating_add(p.max_age)).then_some(p)
    }
}

/// What the discovery found for a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No policy (none published, or none could be had and none cached).
    NoPolicy,
    /// The policy in force.
    Policy(Policy),
    /// A policy is published but could not be fetched and none is cached:
    /// mail goes as without a policy; the failure is reported.
    FetchFailed { result: ResultType, why: String },
}

/// Why the MTA-STS resolver cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum StsError {
    #[error(transparent)]
    Dns(#[from] crate::dns::DnsError),
    #[error("cannot set up the runtime: {0}")]
    Runtime(std::io::Error),
}

/// The discovery: a resolver (dns_servers), the HTTPS client
/// configuration, the cache directory.
pub struct Sts {
    rt: tokio::runtime::Runtime,
    auth: MessageAuthenticator,
    /// The client configuration of the fetch (smtp_tls_CAfile), or why
    /// there is none.
    tls: Result<Arc<ClientConfig>, String>,
    /// The HTTPS port (443; smtp_mta_sts_port, for tests).
    port: u16,
    /// `$queue_directory/mta-sts`.
    dir: PathBuf,
}

impl std::fmt::Debug for Sts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sts({})", self.dir.display())
    }
}

impl Sts {
    pub fn new(
        servers: &[String],
        tls: Result<Arc<ClientConfig>, String>,
        port: u16,
        dir: PathBuf,
    ) -> Result<Sts, StsError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StsError::Runtime)?;
        Ok(Sts {
            rt,
            auth: crate::dns::authenticator(servers)?,
            tls,
            port,
            dir,
        })
    }

    /// The policy of `domain` at `now` (seconds since the epoch).
    pub fn policy(&self, domain: &str, now: u64) -> Found {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if !is_host_name(&domain) {
            return Found::NoPolicy;
        }
        let cache_file = self.dir.join(&domain);
        let cached = read_cache(&cache_file);
        let txt = self.rt.block_on(self.auth.txt_lookup::<MtaSts>(
            format!("_mta-sts.{domain}."),
            None::<&NoCache<Box<str>, Txt>>,
        ));
        let id = match txt {
            Ok(r) => r.id.clone(),
            // No record, or none of STSv1, or the name service failed: a
            // cached policy stays in force until its max_age (RFC 8461 5.1).
            Err(_) => {
                return cached
                    .and_then(|c| c.fresh(now))
                    .map_or(Found::NoPolicy, Found::Policy)
            }
        };
        if let Some(p) = cached
            .as_ref()
            .filter(|c| c.id == id)
            .and_then(|c| c.fresh(now))
        {
            return Found::Policy(p);
        }
        match self.fetch(&domain) {
            Ok((policy, text)) => {
                common::info!(
                    "MTA-STS policy for {domain}: mode {}, id {id}, max_age {}",
                    policy.mode.name(),
                    policy.max_age
                );
                let c = Cached {
                    id,
                    fetched: now,
                    text,
                };
                let data = serde_json::to_vec(&c).unwrap_or_default();
                if let Err(e) = common::durable::replace_file(&cache_file, &data, 0o600, None) {
                    common::warning!("MTA-STS: cannot cache {}: {e}", cache_file.display());
                }
                Found::Policy(policy)
            }
            Err((result, why)) => {
                common::warning!("MTA-STS policy for {domain} cannot be fetched: {why}");
                match cached.and_then(|c| c.fresh(now)) {
                    Some(p) => Found::Policy(p),
                    None => Found::FetchFailed { result, why },
                }
            }
        }
    }

    /// RFC 8461 3.3: the policy of `domain` over HTTPS.
    fn fetch(&self, domain: &str) -> Result<(Policy, String), (ResultType, String)> {
        let fetch_error = |why: String| (ResultType::StsPolicyFetchError, why);
        let tls = self.tls.clone().map_err(fetch_error)?;
        let host = format!("mta-sts.{domain}");
        let addrs: Vec<SocketAddr> = self
            .rt
            .block_on(self.auth.0.lookup_ip(format!("{host}.").as_str()))
            .map_err(|e| fetch_error(format!("{host}: {e}")))?
            .iter()
            .map(|ip| SocketAddr::new(ip, self.port))
            .collect();
        let r = https::get(
            &addrs,
            &host,
            "/.well-known/mta-sts.txt",
            tls,
            FETCH_TIMEOUT,
            POLICY_LIMIT,
        )
        .map_err(|e| match e {
            https::FetchError::Certificate(..) => (ResultType::StsWebpkiInvalid, e.to_string()),
            e => fetch_error(e.to_string()),
        })?;
        // No redirects (RFC 8461 3.3): anything but 200 is a failure.
        if r.status != 200 {
            return Err(fetch_error(format!("{host}: HTTP status {}", r.status)));
        }
        let media = r
            .content_type
            .as_deref()
            .and_then(|c| c.split(';').next())
            .map(str::trim);
        if !media.is_some_and(|m| m.eq_ignore_ascii_case("text/plain")) {
            return Err((
                ResultType::StsPolicyInvalid,
                format!("{host}: Content-Type is not text/plain"),
            ));
        }
        let policy = Policy::parse(&r.body)
            .map_err(|e| (ResultType::StsPolicyInvalid, format!("{host}: {e}")))?;
        let text = String::from_utf8(r.body).unwrap_or_default();
        Ok((policy, text))
    }
}

fn read_cache(path: &Path) -> Option<Cached> {
    let data = std::fs::read(path).ok()?;
    serde_json::from_slice(&data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        let p = Policy::parse(
            b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.NET.\r\nmax_age: 604800\r\nfuture_key: x\r\n",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.mx, ["mail.example.com", "*.example.net"]);
        assert_eq!(p.max_age, 604_800);
        assert_eq!(p.lines.len(), 6);
        // LF alone, any order.
        let p = Policy::parse(b"mode: testing\nmax_age:86400\nversion: STSv1\nmx: a.b\n").unwrap();
        assert_eq!((p.mode, p.max_age), (Mode::Testing, 86_400));
        let p = Policy::parse(b"version: STSv1\nmode: none\nmax_age: 0\n").unwrap();
        assert_eq!(p.mode, Mode::None);
    }

    #[test]
    fn bad_policies() {
        let cases: &[(&[u8], PolicyError)] = &[
            (
                b"mode: enforce\nmx: a.b\nmax_age: 1\n",
                PolicyError::Version,
            ),
            (
                b"version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n",
                PolicyError::Version,
            ),
            (
                b"version: STSv1\nmode: strict\nmx: a.b\nmax_age: 1\n",
                PolicyError::Mode,
            ),
            (
                b"version: STSv1\nmode: enforce\nmx: a.b\n",
                PolicyError::MaxAge,
            ),
            (
                b"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1\n",
                PolicyError::MaxAge,
            ),
            (
                b"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 31557601\n",
                PolicyError::MaxAge,
            ),
            (
                b"version: STSv1\nmode: enforce\nmax_age: 1\n",
                PolicyError::NoMx,
            ),
            (
                b"version: STSv1\nmode: enforce\nmx: a..b\nmax_age: 1\n",
                PolicyError::BadMx("a..b".into()),
            ),
            (
                b"version: STSv1\nmode: enforce\nmx: a.*.b\nmax_age: 1\n",
                PolicyError::BadMx("a.*.b".into()),
            ),
            (b"version: STSv1\nmode enforce\n", PolicyError::BadLine(2)),
            (
                b"version: STSv1\nmode: enforce\nmode: none\n",
                PolicyError::Duplicate("mode"),
            ),
            (b"\xff", PolicyError::NotText),
        ];
        for (text, want) in cases {
            assert_eq!(
                Policy::parse(text).as_ref(),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn mx_patterns() {
        let p = Policy::parse(
            b"version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 1\n",
        )
        .unwrap();
        assert!(p.matches("mail.example.com"));
        assert!(p.matches("MAIL.example.com."));
        assert!(!p.matches("mx.mail.example.com"));
        assert!(p.matches("mx1.example.net"));
        // RFC 8461 4.1: the wildcard is one label only.
        assert!(!p.matches("a.b.example.net"));
        assert!(!p.matches("example.net"));
        assert!(!p.matches(".example.net"));
    }

    #[test]
    fn a_cached_policy_is_fresh_within_max_age() {
        let c = Cached {
            id: "1".into(),
            fetched: 1000,
            text: "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 100\n".into(),
        };
        assert!(c.fresh(1099).is_some());
        assert!(c.fresh(1100).is_none());
    }
}
