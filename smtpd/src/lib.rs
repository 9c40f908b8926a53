//! posthorn-smtpd: the SMTP server.
//!
//! Serves master.cf inet services (port 25 for MX; submission on 587 and
//! 465 with `-o` settings: AUTH enabled, mail only after it, only from the
//! user's own address; `-o smtpd_tls_wrappermode=yes` makes a port 465
//! service) with ESMTP: EHLO/HELO, MAIL, RCPT, DATA, BDAT, RSET, NOOP, QUIT,
//! VRFY, HELP, STARTTLS, AUTH (PLAIN and LOGIN through posthorn-auth, on a
//! pool thread) and the extensions PIPELINING, SIZE, 8BITMIME,
//! ENHANCEDSTATUSCODES, SMTPUTF8, CHUNKING, STARTTLS and AUTH. One process serves
//! many connections (mio). Before the greeting the client's name is looked
//! up and kept only when forward-confirmed (Postfix's `name[addr]`, else
//! `unknown[addr]`), on a thread of its own. Mail from clients that did not
//! AUTH gets SPF, DKIM, DMARC and ARC checks at the end of DATA, on another
//! thread (authenticate.rs; trust::verify), their Authentication-Results
//! kept in the queue file; Authentication-Results fields claiming our
//! authserv_id are removed as the message streams in. Accepted mail is
//! queued in incoming/ and qmgr is woken. The certificate and key are read before
//! privileges are dropped (daemon::start_with); a reload (SIGHUP) lets
//! sessions finish while new processes serve new connections with the new
//! certificate.
//!
//! Layout: session.rs (protocol state machine, no I/O), policy.rs (who may
//! send to whom), restrictions.rs (smtpd_client_restrictions and
//! smtpd_sender_restrictions), headers.rs (Date: and Message-ID: for
//! submitted mail), peername.rs (client name look-ups), authenticate.rs
//! (the authentication checks' thread), server.rs (the event loop, durable
//! commits and AUTH's verifications).
//!
//! Parameters: myhostname, smtpd_banner, mail_name, message_size_limit,
//! smtpd_recipient_limit, smtpd_recipient_overshoot_limit, smtpd_timeout,
//! smtpd_soft_error_limit, smtpd_error_sleep_time, smtpd_hard_error_limit,
//! smtpd_junk_command_limit,
//! smtpd_client_connection_count_limit, smtpd_max_connections,
//! smtpd_vrfy_reply, smtpd_forbid_bare_newline, mynetworks,
//! virtual_mailbox_domains, mydestination, alias_maps, recipient_delimiter,
//! virtual_alias_maps, virtual_alias_domains, virtual_alias_recursion_limit,
//! virtual_alias_expansion_limit, propagate_unmatched_extensions, myorigin,
//! queue_directory (virtual users are asked of posthorn-auth on
//! `private/auth`), smtpd_tls_cert_file, smtpd_tls_key_file,
//! smtpd_tls_security_level, smtpd_tls_wrappermode, smtpd_sasl_auth_enable,
//! smtpd_tls_auth_only, smtpd_client_restrictions,
//! smtpd_sender_restrictions, auth_allow_cleartext, smtpd_peername_lookup,
//! smtpd_peername_lookup_timeout, dns_servers, smtpd_authentication_checks,
//! authserv_id, dmarc_enforce.
//!
//! Diagnostics: Postfix's lines: `connect from NAME[ADDR]` (`hostname NAME
//! does not resolve to address ADDR` before it when a name is not
//! confirmed), `ID: client=`, `NOQUEUE:
//! reject: RCPT from ...`, `disconnect from ... commands=N`, `timeout after X`,
//! `lost connection after X`, `Anonymous TLS connection established from
//! ...`; a certificate that cannot be loaded is a configuration error naming
//! the file.

mod authenticate;
pub mod headers;
mod peername;
pub mod policy;
pub mod restrictions;
mod server;
pub mod session;

use std::sync::Arc;

use common::addr::Domains;
use common::config::Config;
use common::daemon::{self, Listener};
use common::net::Networks;
use common::server::anvil::AnvilCounter;
use common::server::{Limits, Server};
use common::spool::Spool;
use common::tls::{self, TlsSetup};
use common::virtual_alias::VirtualAlias;

/// Threads that fsync queue files.
const POOL_THREADS: usize = 4;

/// The program's entry point (posthorn-smtpd).
pub fn main() {
    let (worker, tls) = daemon::start_with("smtpd", load_tls);
    let cfg = &worker.config;
    let smtp = match session::SmtpConfig::from_config(cfg) {
        Ok(s) => Arc::new(s),
        Err(e) => common::config_fatal!("{e}"),
    };
    let mynetworks = match Networks::parse(&cfg.get("mynetworks")) {
        Ok(n) => n,
        Err(e) => common::config_fatal!("mynetworks: {e}"),
    };
    // The defaults live in common::params; a bad value is a config error.
    let int = |name: &str| match cfg.int(name) {
        Ok(v) => v,
        Err(e) => common::config_fatal!("{e}"),
    };
    let limits = Limits {
        idle: match cfg.time("smtpd_timeout") {
            Ok(t) => t,
            Err(e) => common::config_fatal!("{e}"),
        },
        total: None,
        per_client: u32::try_from(int("smtpd_client_connection_count_limit")).unwrap_or(u32::MAX),
        max_connections: usize::try_from(int("smtpd_max_connections"))
            .unwrap_or(usize::MAX)
            .max(1),
        ..Limits::default()
    };
    let spool = Spool::new(cfg.queue_dir());
    let policy = policy::AccessPolicy {
        domains: Domains::from_config(cfg),
        mynetworks,
        // Virtual users through the auth service: smtpd does not read the
        // users file.
        users: Box::new(policy::AuthLookup::new(spool.private("auth"))),
        local_aliases: common::aliases::Aliases::new(&cfg.list("alias_maps")),
        virtual_aliases: match VirtualAlias::from_config(cfg) {
            Ok(v) => v,
            Err(e) => common::config_fatal!("{e}"),
        },
    };
    let peernames = peernames(cfg);
    let authenticator = authenticator(cfg, &spool);
    let mut counter = AnvilCounter::new(spool.private("anvil"), &worker.service);
    let daemon::Worker {
        listener,
        stop,
        drain,
        ..
    } = worker;
    if !matches!(listener, Listener::Tcp(_)) {
        common::config_fatal!("smtpd must be an inet service in master.cf");
    }
    let mut server = match Server::new(POOL_THREADS) {
        Ok(s) => s,
        Err(e) => common::fatal!("{e}"),
    };
    if let Some(tls) = tls {
        server = server.with_tls(tls);
    }
    let mut smtpd = server::Smtpd::new(
        smtp,
        policy,
        spool,
        server.pool().spawner(),
        peernames,
        authenticator,
    );
    if let Err(e) = server.run(listener, &mut smtpd, &limits, &mut counter, &stop, &drain) {
        common::fatal!("{e}");
    }
}

/// The client name look-up thread, when smtpd_peername_lookup is on. A
/// name service that cannot be set up is not fatal: /etc/hosts alone, or
/// no look-ups (every client `unknown`), with a warning.
fn peernames(cfg: &Config) -> Option<peername::PeerNames> {
    match cfg.bool("smtpd_peername_lookup") {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => common::config_fatal!("{e}"),
    }
    let within = match cfg.time("smtpd_peername_lookup_timeout") {
        Ok(t) => t,
        Err(e) => common::config_fatal!("{e}"),
    };
    let servers = match common::dns::servers(&cfg.list("dns_servers")) {
        Ok(s) => Some(s),
        Err(e) => {
            common::warning!("client name look-ups: {e}; only /etc/hosts is asked");
            None
        }
    };
    match peername::PeerNames::start(servers, within) {
        Ok(p) => Some(p),
        Err(e) => {
            common::warning!("client name look-ups: {e}; every client is unknown");
            None
        }
    }
}

/// The authentication checks' thread, when smtpd_authentication_checks
/// names any. A resolver that cannot be set up is not fatal: mail is
/// queued without results, with a warning.
fn authenticator(cfg: &Config, spool: &Spool) -> Option<authenticate::Authenticator> {
    use posthorn_trust::verify::{Checks, Verifier};
    let checks = match Checks::parse(&cfg.list("smtpd_authentication_checks")) {
        Ok(c) => c,
        Err(e) => common::config_fatal!("{e}"),
    };
    if !checks.any() {
        return None;
    }
    let enforce = match cfg.bool("dmarc_enforce") {
        Ok(b) => b,
        Err(e) => common::config_fatal!("{e}"),
    };
    let auth = match posthorn_trust::dns::authenticator(&cfg.list("dns_servers")) {
        Ok(a) => a,
        Err(e) => {
            common::warning!("authentication checks: {e}; mail is queued without them");
            return None;
        }
    };
    let settings = authenticate::Settings {
        verifier: Verifier::new(auth, checks),
        authserv_id: cfg.get("authserv_id").trim().to_string(),
        myhostname: cfg.get("myhostname"),
        enforce,
        dmarc_dir: spool.root().join("dmarc"),
    };
    match authenticate::Authenticator::start(settings) {
        Ok(a) => Some(a),
        Err(e) => {
            common::warning!("authentication checks: {e}; mail is queued without them");
            None
        }
    }
}

/// The certificate and key, read while still root: None when TLS is off
/// (level none) or not configured (level may without a certificate).
fn load_tls(cfg: &Config) -> Option<TlsSetup> {
    let level = match cfg.one_of("smtpd_tls_security_level", &["none", "may", "encrypt"]) {
        Ok(l) => l,
        Err(e) => common::config_fatal!("{e}"),
    };
    let wrapper = match cfg.bool("smtpd_tls_wrappermode") {
        Ok(w) => w,
        Err(e) => common::config_fatal!("{e}"),
    };
    if level == "none" && !wrapper {
        return None;
    }
    match tls::from_params(cfg, "smtpd_tls_cert_file", "smtpd_tls_key_file") {
        Ok(Some(config)) => Some(TlsSetup {
            config,
            implicit: wrapper,
        }),
        Ok(None) if wrapper => {
            common::config_fatal!("smtpd_tls_wrappermode = yes needs smtpd_tls_cert_file")
        }
        Ok(None) if level == "encrypt" => {
            common::config_fatal!("smtpd_tls_security_level = encrypt needs smtpd_tls_cert_file")
        }
        Ok(None) => None,
        Err(e) => common::config_fatal!("smtpd_tls_cert_file/smtpd_tls_key_file: {e}"),
    }
}
