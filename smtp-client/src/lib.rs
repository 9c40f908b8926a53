//! posthorn-smtp: the outbound delivery agent.
//!
//! Serves `private/smtp` as posthorn-local serves `private/local`: qmgr
//! connects and sends `DeliverRequest`s (a message in active/ and its
//! recipients for one destination), and gets one `DeliverReply` per request
//! with a result per recipient. One connection at a time per process;
//! master runs maxproc processes (the smtp service's), qmgr opens as many.
//! Runs as mail_owner (it reads queue files; it writes only the MTA-STS
//! cache and the TLS-RPT records, in spool directories master gives to
//! mail_owner).
//!
//! Each request: the queue file opened once (no symbolic link), the
//! recipients checked against it, the next hop qmgr names (route.rs:
//! `[host]:port` itself, a host or domain its MX hosts), their addresses
//! tried in order until one gives
//! verdicts (session.rs); a
//! failure at one address (refused, timed out, a greeting other than 220)
//! moves to the next, and when none is left every recipient is deferred
//! with the last reason. A TLS handshake that fails is tried again without
//! TLS (smtp_tls_security_level = may is opportunistic).
//!
//! 8-bit content goes with BODY=8BITMIME to a server that offers it; for
//! one that does not, the message is converted to 7-bit MIME first
//! (downgrade.rs: 8-bit parts quoted-printable if text, base64 otherwise,
//! as Postfix's smtp does unless disable_mime_output_conversion = yes) and
//! sent without BODY=. One that cannot be converted (8-bit headers, more
//! than MESSAGE_KEPT bytes, ...) bounces with the reason (5.6.3).
//!
//! DKIM and ARC (sign.rs, with posthorn_trust::sign): mail that is ours
//! (AUTH, local submission, our bounces, mynetworks) whose From: domain has
//! keys in dkim_key_directory gets a DKIM-Signature per key; a forwarded
//! copy gets an ARC set when arc_seal_domain is set. Both are made in the
//! session from the bytes it sends (after the 7-bit conversion) and go
//! before them; a key that cannot be used defers (4.7.0).
//!
//! Connections: the one of the last delivery is kept
//! (smtp_connection_cache_time_limit) for the next request to the same next
//! hop at the same TLS level, which qmgr sends to this agent; a kept
//! connection the server closed, or that has reached
//! smtp_connection_reuse_time_limit or smtp_connection_reuse_count_limit,
//! is not used.
//!
//! DANE (RFC 7672; dane.rs, route.rs): at the levels `dane` and
//! `dane-only`, each host's TLSA records (validated with DNSSEC) decide its
//! TLS: matched by the certificate chain (`dane_settings`), required but
//! unauthenticated, `may`, or the host not used; a host that fails DANE is
//! never tried without TLS, and the recipients are deferred with 4.7.5.
//! Each DANE session, and each DANE failure before one, is recorded for
//! TLS-RPT (policy type tlsa, the next hop's domain).
//!
//! MTA-STS (RFC 8461, smtp_mta_sts): for MX delivery to the recipients'
//! own domain (not relayhost or transport_maps next hops), the domain's
//! policy (trust::mta_sts: TXT record, HTTPS fetch, on-disk cache).
//! enforce: only MX hosts the policy names, TLS with a certificate that
//! chains to smtp_tls_CAfile and names the MX host, a failure defers
//! (4.7.5) and never falls back to plain text; testing: delivered as
//! before, what enforce would refuse logged; each session under a policy,
//! and each policy that cannot be had, is recorded for TLS-RPT
//! (trust::tlsrpt, `$queue_directory/tlsrpt/`). `Agent::destination` finds
//! the policy; a host DANE takes (usable TLSA records at a DANE level) is
//! DANE's alone (RFC 8461 2).
//!
//! Parameters: smtp_tcp_port, dnssec_trust_anchor_file,
//! dns_servers, smtp_helo_name, smtp_connect_timeout, smtp_helo_timeout,
//! smtp_data_done_timeout, smtp_tls_security_level, smtp_tls_policy_maps,
//! smtp_tls_CAfile, smtp_mta_sts, smtp_mta_sts_port,
//! smtp_connection_cache_time_limit,
//! smtp_connection_reuse_time_limit, smtp_connection_reuse_count_limit,
//! disable_mime_output_conversion, dkim_key_directory,
//! dkim_signature_headers, mynetworks, arc_seal_domain, arc_seal_selector,
//! queue_directory.
//!
//! Diagnostics: one line per recipient in Postfix's shape:
//! `ID: to=<a@b>, relay=mx.example.org[192.0.2.1]:25, delay=0.3, dsn=2.0.0,
//! status=sent (250 2.0.0 Ok: queued as X)` (`, orig_to=<x@y>` after
//! `to=` when the ORCPT names another address); deferred and bounced ones
//! carry the remote reply (`host said: ...`) or the reason; TLS as
//! `Untrusted TLS connection established to HOST[ADDR]:PORT: TLSv1.3 with
//! cipher ...` (`Verified` at verify, secure and for DANE), and for DANE
//! `HOST[ADDR]:PORT: dane: TLSA 3 1 1 matched the server certificate`; a
//! warning for each host DANE refuses (the reason).
//!
//! Security: requests are validated (queue id syntax, recipient index and
//! address must match the queue file); a bad request closes the
//! connection. Remote replies are bounded and shown without control
//! characters (proto::smtp::client).

pub mod dane;
pub mod downgrade;
pub mod route;
pub mod session;
pub mod sign;
pub mod tls;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::agent::{next_request, peer_gone};
use common::config::{Config, ConfigError};
use common::daemon::{self, Listener};
use common::dsn::RecipientDsn;
use common::ipc::{self, DeliverReply, DeliverRequest, Handoff, RecipientResult, Status};
use common::spool::{Queue, QueueFile, QueueId, Spool};
use common::{info, warning};

use std::cell::RefCell;
use std::sync::Arc;

use common::table::Tables;
use rustls::ClientConfig;

use crate::route::{Dns, NextHop, TlsaLookup, Unroutable};
use crate::session::{Failure, Message, Session, Settings, Verdict};
use crate::tls::{Destination, Level};
use posthorn_trust::mta_sts::{Found, Mode, Policy, Sts};
use posthorn_trust::tlsrpt::{self, PolicyType, ResultType};
use rustls::client::WebPkiServerVerifier;
use std::path::PathBuf;

/// The agent's settings, read once.
pub struct Agent {
    pub spool: Spool,
    /// MX and address look-ups; None when the resolver cannot be set up
    /// (everything is deferred, saying so).
    pub dns: Option<Dns>,
    /// smtp_tcp_port: the port of MX hosts.
    pub mx_port: u16,
    /// Timeouts and names; its TLS fields are set per next hop
    /// (`settings_for`).
    pub session: Settings,
    /// smtp_tls_security_level.
    pub level: Level,
    /// smtp_tls_policy_maps: the level per next hop.
    tls_policy: RefCell<Tables<Level>>,
    /// The configuration of may and encrypt.
    opportunistic: Arc<ClientConfig>,
    /// The configuration of verify and secure (smtp_tls_CAfile), made when
    /// first needed, or why it cannot be.
    verified: RefCell<Option<Result<Arc<ClientConfig>, String>>>,
    ca_file: String,
    /// smtp_connection_cache_time_limit: how long an idle connection is
    /// kept for the next message to its next hop (zero: not at all).
    pub cache_time: Duration,
    /// smtp_connection_reuse_time_limit.
    pub reuse_time: Duration,
    /// smtp_connection_reuse_count_limit (0: no limit).
    pub reuse_count: u32,
    /// MTA-STS policy discovery (smtp_mta_sts = yes), None when off or
    /// when its resolver cannot be set up.
    sts: Option<Sts>,
    /// The certificate check of MTA-STS testing (smtp_tls_CAfile, read at
    /// start), or why there is none.
    sts_verifier: Result<Arc<WebPkiServerVerifier>, String>,
    /// `$queue_directory/tlsrpt`: TLS-RPT results (trust::tlsrpt).
    tlsrpt_dir: PathBuf,
    /// DKIM signing and ARC sealing (sign.rs).
    pub signing: sign::Signing,
}

/// The SMTP connection kept between requests (one per agent process: qmgr
/// sends a next hop's next message to the agent that last served it).
#[derive(Default)]
pub struct Cache {
    kept: Option<Kept>,
}

struct Kept {
    nexthop: String,
    /// `relay=` of the log lines: host[address]:port.
    relay: String,
    session: Session,
    opened: Instant,
    idle_since: Instant,
}

impl Cache {
    /// How long the kept connection may still wait (None: none kept).
    pub fn idle_left(&self, limit: Duration) -> Option<Duration> {
        self.kept
            .as_ref()
            .map(|k| limit.saturating_sub(k.idle_since.elapsed()))
    }

    /// QUIT the kept connection, if any.
    pub fn close(&mut self) {
        if let Some(k) = self.kept.take() {
            k.session.quit();
        }
    }
}

impl Agent {
    pub fn from_config(cfg: &Config) -> Result<Agent, ConfigError> {
        let level = Level::parse(&cfg.one_of(
            "smtp_tls_security_level",
            &[
                "none",
                "may",
                "encrypt",
                "verify",
                "secure",
                "dane",
                "dane-only",
            ],
        )?)
        .map_err(|e| cfg.invalid("smtp_tls_security_level", e))?;
        let opportunistic = tls::opportunistic().map_err(|e| {
            cfg.invalid(
                "smtp_tls_security_level",
                format!("TLS cannot be set up: {e}"),
            )
        })?;
        let ca_file = cfg.get("smtp_tls_CAfile");
        // At verify or secure for every next hop the CAs must load now (a
        // configuration error otherwise); for a policy entry, when needed.
        let verified = if level.verified() {
            Some(Ok(tls::verified(std::path::Path::new(&ca_file))
                .map_err(|e| cfg.invalid("smtp_tls_CAfile", e))?))
        } else {
            None
        };
        let sts = if cfg.bool("smtp_mta_sts")? {
            let port = u16::try_from(cfg.int("smtp_mta_sts_port")?)
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| cfg.invalid("smtp_mta_sts_port", "not a port (1-65535)".into()))?;
            let fetch_tls = tls::verified(std::path::Path::new(&ca_file))
                .map_err(|e| format!("smtp_tls_CAfile: {e}"));
            match Sts::new(
                &cfg.list("dns_servers"),
                fetch_tls,
                port,
                cfg.queue_dir().join("mta-sts"),
            ) {
                Ok(s) => Some(s),
                Err(e) => {
                    warning!("MTA-STS: {e}; no MTA-STS policy is applied");
                    None
                }
            }
        } else {
            None
        };
        let sts_verifier = match &sts {
            Some(_) => tls::verifier(std::path::Path::new(&ca_file))
                .map_err(|e| format!("smtp_tls_CAfile: {e}")),
            None => Err("MTA-STS is off".into()),
        };
        Ok(Agent {
            sts,
            sts_verifier,
            tlsrpt_dir: cfg.queue_dir().join("tlsrpt"),
            level,
            tls_policy: RefCell::new(Tables::new(&cfg.get("smtp_tls_policy_maps"), Level::parse)),
            opportunistic,
            verified: RefCell::new(verified),
            ca_file,
            spool: Spool::new(cfg.queue_dir()),
            dns: match Dns::new(&cfg.list("dns_servers"), {
                let f = cfg.get("dnssec_trust_anchor_file");
                (!f.is_empty()).then(|| std::path::PathBuf::from(f))
            }) {
                Ok(d) => Some(d),
                Err(e) => {
                    warning!("DNS: {e}; mail for other domains is deferred");
                    None
                }
            },
            mx_port: u16::try_from(cfg.int("smtp_tcp_port")?)
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| cfg.invalid("smtp_tcp_port", "not a port (1-65535)".into()))?,
            session: Settings {
                helo_name: cfg.get("smtp_helo_name"),
                connect_timeout: cfg.time("smtp_connect_timeout")?,
                reply_timeout: cfg.time("smtp_helo_timeout")?,
                data_done_timeout: cfg.time("smtp_data_done_timeout")?,
                tls: None,
                tls_required: false,
                tls_verified: false,
                mime_output_conversion: !cfg.bool("disable_mime_output_conversion")?,
            },
            cache_time: cfg.time("smtp_connection_cache_time_limit")?,
            reuse_time: cfg.time("smtp_connection_reuse_time_limit")?,
            reuse_count: u32::try_from(cfg.int("smtp_connection_reuse_count_limit")?)
                .unwrap_or(u32::MAX),
            signing: sign::Signing::from_config(cfg)?,
        })
    }

    /// The TLS level of a next hop: smtp_tls_policy_maps (the next hop as
    /// written, then for an MX destination its domain and parent domains,
    /// as Postfix's tls_policy(5)), else smtp_tls_security_level.
    pub fn level_for(&self, nexthop: &str, hop: &NextHop) -> Level {
        let mut policy = self.tls_policy.borrow_mut();
        policy.refresh();
        if policy.is_empty() {
            return self.level;
        }
        let mut keys = vec![nexthop.to_ascii_lowercase()];
        if !hop.literal {
            keys.extend(common::table::domain_keys(&hop.host));
        }
        policy
            .find(keys.iter().map(String::as_str))
            .copied()
            .unwrap_or(self.level)
    }

    /// The session settings of a level; Err: the level cannot be had (its
    /// CAs do not load).
    fn settings_for(&self, level: Level) -> Result<Settings, String> {
        let mut s = self.session.clone();
        s.tls_required = level.required();
        s.tls_verified = level.verified();
        s.tls = match level {
            Level::None => None,
            // DANE's levels: `may` until a host's TLSA records say more.
            Level::May | Level::Encrypt | Level::Dane | Level::DaneOnly => {
                Some(Arc::clone(&self.opportunistic))
            }
            Level::Verify | Level::Secure => {
                let mut v = self.verified.borrow_mut();
                let made = v.get_or_insert_with(|| {
                    tls::verified(std::path::Path::new(&self.ca_file))
                        .map_err(|e| format!("smtp_tls_CAfile: {e}"))
                });
                Some(Arc::clone(made.as_ref().map_err(|e| {
                    format!("TLS level {} cannot be had: {e}", level.name())
                })?))
            }
        };
        Ok(s)
    }

    /// One request: a result per recipient, in order. Err: the request is
    /// bad (the connection is closed).
    pub fn deliver(
        &self,
        req: &DeliverRequest,
        cache: &mut Cache,
    ) -> Result<Vec<RecipientResult>, String> {
        let id = QueueId::parse(&req.queue_id)
            .ok_or_else(|| format!("bad queue id {:?}", req.queue_id))?;
        // Through active/, owned by its owner, no link followed; a message
        // of up to MESSAGE_KEPT bytes is read once (kept in memory for the
        // 8-bit scan and the sending).
        let opened = self
            .spool
            .open_dir(Queue::Active)
            .map_err(Into::into)
            .and_then(|dir| QueueFile::open_in(&dir, &self.spool.dir(Queue::Active), &id));
        let qf = match opened {
            Ok(q) => q,
            Err(e) => {
                let why = format!("cannot read queue file: {e}");
                warning!("{id}: {why}");
                return Ok(req
                    .recipients
                    .iter()
                    .map(|r| result(r.index, Status::Deferred, "4.3.0", &why))
                    .collect());
            }
        };
        for r in &req.recipients {
            match qf.recipients.get(r.index as usize) {
                Some(rec) if rec.address == r.address => {}
                _ => {
                    return Err(format!(
                        "{id}: recipient {} <{}> is not in the queue file",
                        r.index, r.address
                    ))
                }
            }
        }
        let addresses: Vec<String> = req.recipients.iter().map(|r| r.address.clone()).collect();
        // NOTIFY and ORCPT from the queue file (checked against it above).
        let rcpt_dsn: Vec<RecipientDsn> = req
            .recipients
            .iter()
            .map(|r| qf.recipients[r.index as usize].dsn.clone())
            .collect();
        let (relay, verdicts) = self.send(&qf, &addresses, &rcpt_dsn, &req.nexthop, cache);
        let delay = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
            - qf.arrival as f64;
        let mut out = Vec::with_capacity(verdicts.len());
        for ((r, v), d) in req.recipients.iter().zip(verdicts).zip(&rcpt_dsn) {
            let (status, dsn, text, word, handoff) = match v {
                Verdict::Sent { dsn, text, handoff } => (Status::Sent, dsn, text, "sent", handoff),
                Verdict::Deferred { dsn, text } => {
                    (Status::Deferred, dsn, text, "deferred", Handoff::default())
                }
                Verdict::Bounced { dsn, text } => {
                    (Status::Bounced, dsn, text, "bounced", Handoff::default())
                }
            };
            info!(
                "{id}: to=<{}>{}, relay={relay}, delay={delay:.2}, dsn={dsn}, status={word} ({text})",
                r.address,
                d.orig_to(&r.address)
            );
            let mut res = result(r.index, status, &dsn, &text);
            res.handoff = handoff;
            out.push(res);
        }
        Ok(out)
    }

    /// Send to the next hop: `relay=` text and a verdict per recipient.
    /// `rcpt_dsn`: NOTIFY and ORCPT of each of `rcpts`. `nexthop`: qmgr's.
    /// The kept connection is used when it goes there.
    fn send(
        &self,
        qf: &QueueFile,
        rcpts: &[String],
        rcpt_dsn: &[RecipientDsn],
        nexthop: &str,
        cache: &mut Cache,
    ) -> (String, Vec<Verdict>) {
        let all = |v: Verdict| vec![v; rcpts.len()];
        let eight_bit = match has_8bit(qf) {
            Ok(b) => b,
            Err(e) => {
                return (
                    "none".into(),
                    all(Verdict::Deferred {
                        dsn: "4.3.0".into(),
                        text: format!("cannot read queue file: {e}"),
                    }),
                )
            }
        };
        // The next hop qmgr chose (transport_maps, relayhost or the domain).
        let Some(hop) = NextHop::parse(nexthop, self.mx_port) else {
            return (
                "none".into(),
                all(Verdict::Deferred {
                    dsn: "4.3.5".into(),
                    text: format!("bad next hop {nexthop:?} from qmgr"),
                }),
            );
        };
        let mut level = self.level_for(nexthop, &hop);
        let dest = self.destination(&hop, rcpts);
        let sts = match &dest {
            Destination::Sts { domain, policy } => Some((domain.as_str(), policy)),
            Destination::Level => None,
        };
        let enforce = sts.is_some_and(|(_, p)| p.mode == Mode::Enforce);
        if enforce && !level.verified() && !level.dane() {
            // RFC 8461 5: a valid certificate naming the MX host, as at
            // level secure. (At a DANE level, per host: below.)
            level = Level::Secure;
        }
        let base = match self.settings_for(level) {
            Ok(s) => s,
            Err(e) => {
                return (
                    "none".into(),
                    all(Verdict::Deferred {
                        dsn: "4.7.5".into(),
                        text: e,
                    }),
                )
            }
        };
        let key = format!(
            "{} {} {}:{}:{}",
            level.name(),
            sts.map_or("-", |(_, p)| p.mode.name()),
            hop.literal,
            hop.host,
            hop.port
        );

        // The connection kept from the last message, if it goes there and
        // may still be used.
        if let Some(k) = cache.kept.take() {
            let fresh = k.opened.elapsed() < self.reuse_time
                && (self.reuse_count == 0 || k.session.deliveries < self.reuse_count)
                && k.idle_since.elapsed() < self.cache_time;
            if k.nexthop == key && fresh && k.session.usable() {
                let mut k = k;
                match self.attempt(qf, rcpts, rcpt_dsn, eight_bit, &mut k.session) {
                    Ok(v) => {
                        let relay = k.relay.clone();
                        k.idle_since = Instant::now();
                        self.keep(cache, k);
                        return (relay, v);
                    }
                    Err(f) => {
                        // Gone stale between messages (or lost mid-way):
                        // a new connection, as for any failed address.
                        info!("connection to {} not reused: {f}", k.relay);
                    }
                }
            } else {
                k.session.quit();
            }
        }

        let unroutable = |u: Unroutable| {
            let v = match u {
                Unroutable::NoSuchDomain(d) => Verdict::Bounced {
                    dsn: "5.1.2".into(),
                    text: format!("Host or domain name not found. Name service error for name={d} type=MX: Host not found"),
                },
                Unroutable::NullMx(d) => Verdict::Bounced {
                    dsn: "5.1.10".into(),
                    text: format!("Domain {d} does not accept mail (nullMX)"),
                },
                Unroutable::TempFail(t) => Verdict::Deferred {
                    dsn: "4.4.3".into(),
                    text: t,
                },
                Unroutable::Bogus(t) => Verdict::Deferred {
                    dsn: "4.7.5".into(),
                    text: t,
                },
            };
            ("none".to_string(), all(v))
        };
        let Some(dns) = &self.dns else {
            return unroutable(Unroutable::TempFail(
                "the resolver could not be set up (see the log at start)".into(),
            ));
        };
        // DANE (RFC 7672 2.2.1): the MX hosts from the validated look-up,
        // their names reference identifiers only when the MX records are
        // secure; the next hop's own name always is. Bogus MX records defer.
        let mut mx_secure = false;
        let (mut hosts, port) = if hop.literal {
            (vec![hop.host.clone()], hop.port)
        } else if level.dane() {
            match dns.dane_mx_hosts(&hop.host) {
                Ok((h, secure)) => {
                    mx_secure = secure;
                    (h, hop.port)
                }
                Err(u) => {
                    if let Unroutable::Bogus(e) = &u {
                        warning!("{e}");
                        self.dane_report(
                            &hop.host,
                            &[],
                            None,
                            None,
                            Some((ResultType::DnssecInvalid, e.clone())),
                        );
                    }
                    return unroutable(u);
                }
            }
        } else {
            match dns.mx_hosts(&hop.host) {
                Ok(h) => (h, hop.port),
                Err(u) => return unroutable(u),
            }
        };
        if let (true, false, Some((domain, policy))) = (enforce, level.dane(), sts) {
            // RFC 8461 4.1: only the MX hosts the policy names. (At a DANE
            // level a host with usable TLSA records is DANE's whatever the
            // policy says: decided per host below.)
            let (ok, not): (Vec<String>, Vec<String>) =
                hosts.into_iter().partition(|h| policy.matches(h));
            if ok.is_empty() {
                let why = format!(
                    "MTA-STS policy of {domain} (enforce): no MX host matches the policy (MX: {}; policy mx: {})",
                    not.join(", "),
                    policy.mx.join(", ")
                );
                self.tlsrpt(
                    PolicyType::Sts,
                    domain,
                    Some(policy),
                    not.first().map(String::as_str),
                    None,
                    Some((ResultType::ValidationFailure, why.clone())),
                );
                return (
                    "none".into(),
                    all(Verdict::Deferred {
                        dsn: "4.7.5".into(),
                        text: why,
                    }),
                );
            }
            hosts = ok;
        }
        let mut tlsa_found: Vec<(String, TlsaLookup)> = Vec::new();
        let mut addresses: Vec<(String, SocketAddr)> = Vec::new();
        let mut temp = None;
        for h in &hosts {
            match dns.addresses(h, port) {
                Ok(a) => addresses.extend(a.into_iter().map(|a| (h.clone(), a))),
                Err(u) => temp = Some(u),
            }
        }
        if addresses.is_empty() {
            return unroutable(temp.unwrap_or_else(|| {
                Unroutable::TempFail(format!(
                    "Host or domain name not found: no address for {}",
                    hosts.join(", ")
                ))
            }));
        }
        let mut last = ("4.4.1", String::new());
        for (host, addr) in addresses {
            let relay = format!("{host}[{}]:{}", addr.ip(), addr.port());
            let mut settings = base.clone();
            let mut dane_match = None;
            let mut dane_records: Vec<String> = Vec::new();
            if level.dane() {
                let found = match tlsa_found.iter().find(|(h, _)| *h == host) {
                    Some((_, t)) => t.clone(),
                    None => {
                        let t = if host.parse::<std::net::IpAddr>().is_ok() {
                            TlsaLookup::None
                        } else {
                            dns.tlsa(&host, port)
                        };
                        tlsa_found.push((host.clone(), t.clone()));
                        t
                    }
                };
                dane_records = match &found {
                    TlsaLookup::Secure(r) => r
                        .iter()
                        .map(|t| {
                            let hex: String = t.data.iter().map(|b| format!("{b:02x}")).collect();
                            format!("_{port}._tcp.{host} IN TLSA {t} {hex}")
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let failed_lookup = matches!(found, TlsaLookup::Failed(_));
                match self.dane_settings(level, &hop, &host, mx_secure, found, &mut settings) {
                    Ok(m) => dane_match = m,
                    Err(why) => {
                        warning!("{relay}: {why}");
                        // TLS-RPT (RFC 8460 4.3.2.2): a bogus or failed
                        // TLSA look-up, or dane-only without DANE.
                        let r = if failed_lookup {
                            ResultType::DnssecInvalid
                        } else {
                            ResultType::DaneRequired
                        };
                        self.dane_report(
                            &hop.host,
                            &dane_records,
                            Some(&host),
                            Some(addr.ip()),
                            Some((r, why.clone())),
                        );
                        last = ("4.7.5", why);
                        continue;
                    }
                }
            }
            // MTA-STS for this host, unless DANE has taken it (RFC 8461 2).
            let sts_here = if dane_match.is_some() { None } else { sts };
            if let (true, Some((domain, policy))) = (enforce, sts_here) {
                if !policy.matches(&host) {
                    let why = format!(
                        "MTA-STS policy of {domain} (enforce): MX host {host} does not match the policy (mx: {})",
                        policy.mx.join(", ")
                    );
                    warning!("{relay}: {why}");
                    self.tlsrpt(
                        PolicyType::Sts,
                        domain,
                        Some(policy),
                        Some(&host),
                        Some(addr.ip()),
                        Some((ResultType::ValidationFailure, why.clone())),
                    );
                    last = ("4.7.5", why);
                    continue;
                }
                if !settings.tls_verified {
                    // A DANE level, no DANE for this host: the policy's
                    // verified TLS.
                    match self.settings_for(Level::Secure) {
                        Ok(v) => {
                            settings.tls = v.tls;
                            settings.tls_required = true;
                            settings.tls_verified = true;
                        }
                        Err(e) => {
                            last = ("4.7.5", e);
                            continue;
                        }
                    }
                }
            }
            // Opportunistic TLS: a failed handshake is tried once without.
            for _ in 0..2 {
                let attempt = session::open(&settings, addr, &host).and_then(|mut s| {
                    if let Some(t) = &s.tls {
                        let trust = if settings.tls_verified {
                            "Verified"
                        } else {
                            "Untrusted"
                        };
                        info!("{trust} TLS connection established to {relay}: {t}");
                        let matched = dane_match.as_ref().and_then(|m: &dane::Matched| {
                            m.lock()
                                .ok()
                                .and_then(|v| v.as_ref().map(dane::Verified::text))
                        });
                        if let Some(m) = matched {
                            info!("{relay}: dane: {m}");
                        }
                    }
                    let v = self.attempt(qf, rcpts, rcpt_dsn, eight_bit, &mut s)?;
                    Ok((s, v))
                });
                match attempt {
                    Ok((s, v)) => {
                        if let Some((domain, policy)) = sts_here {
                            self.sts_session(domain, policy, &host, addr, &s);
                        }
                        if dane_match.is_some() {
                            // TLS-RPT: a DANE session for the next hop.
                            self.dane_report(
                                &hop.host,
                                &dane_records,
                                Some(&host),
                                Some(addr.ip()),
                                None,
                            );
                        }
                        let now = Instant::now();
                        self.keep(
                            cache,
                            Kept {
                                nexthop: key,
                                relay: relay.clone(),
                                session: s,
                                opened: now,
                                idle_since: now,
                            },
                        );
                        return (relay, v);
                    }
                    Err(Failure::Tls(_, e)) if settings.tls.is_some() && !settings.tls_required => {
                        warning!("TLS handshake with {relay} failed: {e}; trying without TLS");
                        settings.tls = None;
                    }
                    Err(f) => {
                        // A DANE host's TLS failing is a security failure
                        // (RFC 7672 2.2: never plain text instead).
                        let dsn = match f {
                            Failure::Tls(..) | Failure::TlsNotOffered(_) if level.dane() => {
                                warning!("{relay}: {f}");
                                "4.7.5"
                            }
                            _ => "4.4.1",
                        };
                        last = (dsn, f.to_string());
                        if let (true, Some(r)) = (dane_match.is_some(), sts_failure(&f)) {
                            self.dane_report(
                                &hop.host,
                                &dane_records,
                                Some(&host),
                                Some(addr.ip()),
                                Some((r, f.to_string())),
                            );
                        }
                        if let (Some((domain, policy)), Some(r)) = (sts_here, sts_failure(&f)) {
                            self.tlsrpt(
                                PolicyType::Sts,
                                domain,
                                Some(policy),
                                Some(&host),
                                Some(addr.ip()),
                                Some((r, f.to_string())),
                            );
                            if enforce {
                                // A TLS failure under an enforce policy:
                                // 4.7.5 (as Postfix says of a certificate
                                // not verified), the policy named.
                                last = (
                                    "4.7.5",
                                    format!("MTA-STS policy of {domain} (enforce): {f}"),
                                );
                            }
                        }
                        break;
                    }
                }
            }
        }
        (
            format!("{}:{port}", hosts.join(",")),
            all(Verdict::Deferred {
                dsn: last.0.into(),
                text: last.1,
            }),
        )
    }

    /// The settings for one host at a DANE level, from its TLSA records
    /// (RFC 7672 2.2, Postfix's `dane` and `dane-only`): secure usable
    /// records: TLS required, the chain checked by dane.rs against them
    /// (the reference names: the next hop's, and the MX host's when the MX
    /// records are secure); secure records none of which is usable: TLS
    /// required, unauthenticated (RFC 7672 3.1.3; for `dane-only` the host
    /// is not used); none (or insecure):
    /// `may`, or for `dane-only` this host is not used; a failed look-up:
    /// this host is not used. Ok: where the verifier puts what matched.
    fn dane_settings(
        &self,
        level: Level,
        hop: &NextHop,
        host: &str,
        mx_secure: bool,
        found: TlsaLookup,
        settings: &mut Settings,
    ) -> Result<Option<dane::Matched>, String> {
        match found {
            TlsaLookup::Secure(records) if records.iter().any(dane::Tlsa::usable) => {
                let mut names = vec![hop.host.clone()];
                if mx_secure && !host.eq_ignore_ascii_case(&hop.host) {
                    names.push(host.to_string());
                }
                let (config, matched) = dane::config(records, names)
                    .map_err(|e| format!("DANE TLS cannot be set up: {e}"))?;
                settings.tls = Some(config);
                settings.tls_required = true;
                settings.tls_verified = true;
                Ok(Some(matched))
            }
            TlsaLookup::Secure(_) | TlsaLookup::None if level == Level::DaneOnly => Err(format!(
                "no usable TLSA records for {host} (smtp_tls_security_level dane-only)"
            )),
            TlsaLookup::Secure(_) => {
                settings.tls_required = true;
                Ok(None)
            }
            TlsaLookup::None => Ok(None),
            TlsaLookup::Failed(e) => Err(e),
        }
    }

    /// What the destination asks of TLS beyond the level: its MTA-STS
    /// policy. DANE, at the levels dane and dane-only, is decided per host
    /// (`dane_settings`) and takes a host with usable TLSA records from
    /// the policy (RFC 8461 2).
    ///
    /// MTA-STS only for MX delivery to the recipients' own domain (as
    /// Postfix's smtp_tls_policy_maps with an STS resolver): not for a
    /// `[host]` next hop (relayhost, transport_maps), nor for a next hop
    /// that is not the recipients' domain. A policy of mode none is none;
    /// a policy published but not to be had is reported and mail goes as
    /// without it (RFC 8461 5.1, no cached policy).
    fn destination(&self, hop: &NextHop, rcpts: &[String]) -> Destination {
        let Some(sts) = &self.sts else {
            return Destination::Level;
        };
        let domain = hop.host.trim_end_matches('.').to_ascii_lowercase();
        let to_domain = rcpts.iter().all(|r| {
            r.rsplit_once('@')
                .is_some_and(|(_, d)| d.trim_end_matches('.').eq_ignore_ascii_case(&domain))
        });
        if hop.literal || rcpts.is_empty() || !to_domain {
            return Destination::Level;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        match sts.policy(&domain, now) {
            Found::Policy(p) if p.mode != Mode::None => Destination::Sts { domain, policy: p },
            Found::Policy(_) | Found::NoPolicy => Destination::Level,
            Found::FetchFailed { result, why } => {
                self.tlsrpt(
                    PolicyType::Sts,
                    &domain,
                    None,
                    None,
                    None,
                    Some((result, why)),
                );
                Destination::Level
            }
        }
    }

    /// A session opened under an MTA-STS policy: report it (RFC 8460).
    /// Enforce: it verified in the handshake. Testing: check now what
    /// enforce would have checked, log and report what would have failed;
    /// the mail goes on.
    fn sts_session(
        &self,
        domain: &str,
        policy: &Policy,
        host: &str,
        addr: SocketAddr,
        s: &Session,
    ) {
        let failure = if policy.mode == Mode::Enforce {
            None
        } else if !policy.matches(host) {
            Some((
                ResultType::ValidationFailure,
                format!(
                    "MX host {host} does not match the policy (mx: {})",
                    policy.mx.join(", ")
                ),
            ))
        } else if s.tls.is_none() {
            Some((
                ResultType::StartTlsNotSupported,
                format!("no TLS with {host}[{}]", addr.ip()),
            ))
        } else {
            match &self.sts_verifier {
                Ok(verifier) => tls::check(verifier, &s.peer_certificates(), host)
                    .err()
                    .map(|e| (tls::result_type(&e), format!("certificate of {host}: {e}"))),
                Err(e) => Some((ResultType::ValidationFailure, e.clone())),
            }
        };
        if let Some((_, why)) = &failure {
            warning!("MTA-STS policy of {domain} (testing) not met: {why}; delivering anyway");
        }
        self.tlsrpt(
            PolicyType::Sts,
            domain,
            Some(policy),
            Some(host),
            Some(addr.ip()),
            failure,
        );
    }

    /// Report one session (or a failure before one) of the policy domain
    /// `domain` to TLS-RPT: `kind` sts (MTA-STS) or tlsa (DANE).
    fn tlsrpt(
        &self,
        kind: PolicyType,
        domain: &str,
        policy: Option<&Policy>,
        mx: Option<&str>,
        ip: Option<std::net::IpAddr>,
        failure: Option<(ResultType, String)>,
    ) {
        let lines = policy.map(|p| p.lines.clone()).unwrap_or_default();
        let patterns = policy.map(|p| p.mx.clone()).unwrap_or_default();
        let domain = domain.to_string();
        self.report(kind, domain, lines, patterns, mx, ip, failure);
    }

    /// Report one DANE session (or a failure before one) of the next hop
    /// `domain` to TLS-RPT (policy type tlsa; `records`: the host's TLSA
    /// records in zone file form).
    fn dane_report(
        &self,
        domain: &str,
        records: &[String],
        mx: Option<&str>,
        ip: Option<std::net::IpAddr>,
        failure: Option<(ResultType, String)>,
    ) {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let records = records.to_vec();
        self.report(
            PolicyType::Tlsa,
            domain,
            records,
            Vec::new(),
            mx,
            ip,
            failure,
        );
    }

    /// One TLS-RPT session record, now.
    #[allow(clippy::too_many_arguments)]
    fn report(
        &self,
        policy_type: PolicyType,
        policy_domain: String,
        policy_string: Vec<String>,
        mx_host: Vec<String>,
        mx: Option<&str>,
        ip: Option<std::net::IpAddr>,
        failure: Option<(ResultType, String)>,
    ) {
        let (failure, detail) = failure.unzip();
        self.record(&tlsrpt::Session {
            time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
            policy_type,
            policy_domain,
            policy_string,
            mx_host,
            mx: mx.map(str::to_string),
            ip,
            failure,
            detail,
        });
    }

    fn record(&self, s: &tlsrpt::Session) {
        if let Err(e) = tlsrpt::record(&self.tlsrpt_dir, s) {
            warning!("TLS-RPT: {e}");
        }
    }

    /// The message over an open session.
    fn attempt(
        &self,
        qf: &QueueFile,
        rcpts: &[String],
        rcpt_dsn: &[RecipientDsn],
        eight_bit: bool,
        s: &mut Session,
    ) -> Result<Vec<Verdict>, Failure> {
        let mut body = qf.message().map_err(Failure::QueueFile)?;
        let stamp = |converted: Option<&[u8]>| self.signing.stamp(qf, converted);
        let mut m = Message {
            sender: &qf.sender,
            recipients: rcpts,
            dsn: &qf.dsn,
            rcpt_dsn,
            size: qf.message_size(),
            eight_bit,
            body: &mut body,
            stamp: self.signing.wanted(qf).then_some(&stamp),
        };
        s.send(&mut m)
    }

    /// Keep a session that can take another message (within the limits),
    /// else QUIT it.
    fn keep(&self, cache: &mut Cache, k: Kept) {
        let more = !self.cache_time.is_zero()
            && k.opened.elapsed() < self.reuse_time
            && (self.reuse_count == 0 || k.session.deliveries < self.reuse_count)
            && k.session.usable();
        if more {
            cache.kept = Some(k);
        } else {
            k.session.quit();
        }
    }
}

/// The TLS-RPT result type of a session that failed, if it failed in TLS
/// (a refused connection or a lost one is no TLS result).
fn sts_failure(f: &Failure) -> Option<ResultType> {
    match f {
        Failure::TlsNotOffered(_) => Some(ResultType::StartTlsNotSupported),
        Failure::Tls(_, e) => {
            Some(tls::tls_error(e).map_or(ResultType::ValidationFailure, tls::result_type))
        }
        _ => None,
    }
}

fn result(index: u32, status: Status, dsn: &str, text: &str) -> RecipientResult {
    RecipientResult {
        index,
        status,
        dsn: dsn.to_string(),
        text: text.to_string(),
        handoff: Handoff::default(),
        forward: Vec::new(),
    }
}

/// Does the message have a byte above 127 (BODY=8BITMIME)?
fn has_8bit(qf: &QueueFile) -> io::Result<bool> {
    if let Some(b) = qf.message_bytes() {
        return Ok(!b.is_ascii());
    }
    let mut r = qf.message()?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) if !buf[..n].is_ascii() => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The program's entry point (posthorn-smtp).
pub fn main() {
    let worker = daemon::start("smtp");
    let Listener::Unix(listener) = &worker.listener else {
        common::fatal!("smtp must be a unix service in master.cf");
    };
    let agent = match Agent::from_config(&worker.config) {
        Ok(a) => a,
        Err(e) => common::config_fatal!("{e}"),
    };
    common::agent::accept_loop(listener, &worker, |stream| serve(&agent, stream, &worker));
}

/// Serve one qmgr connection: a request, its reply, until it closes or we
/// are told to stop. The SMTP connection of the last delivery is kept
/// while the next request may want it (smtp_connection_cache_time_limit).
fn serve(agent: &Agent, mut stream: UnixStream, worker: &daemon::Worker) -> io::Result<()> {
    common::agent::prepare(&stream)?;
    let mut frames = ipc::FrameReader::new();
    let mut cache = Cache::default();
    let result = (|| {
        loop {
            // With a connection kept: wait no longer than it may idle.
            if let Some(left) = cache.idle_left(agent.cache_time) {
                if left.is_zero() {
                    cache.close();
                    continue;
                }
                if !frames.has_frame()
                    && !common::agent::wait_readable(&stream, left.min(Duration::from_millis(500)))
                {
                    if worker.stopping() {
                        return Ok(());
                    }
                    continue;
                }
            }
            let Some(req) = next_request(&stream, &mut frames, worker)? else {
                return Ok(());
            };
            if peer_gone(&stream) {
                warning!("{}: requester has gone; not delivered", req.queue_id);
                return Ok(());
            }
            let results = agent
                .deliver(&req, &mut cache)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let mut out = Vec::new();
            ipc::encode_frame(&mut out, &DeliverReply { results })?;
            stream.write_all(&out)?;
        }
    })();
    cache.close();
    result
}
