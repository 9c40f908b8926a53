//! The auth service on the server skeleton: frames in, frames out.
//!
//! Owns answering `common::auth` requests: `Lookup` at once (the users
//! file's entry resolved by common::users), `Verify` after the checks that
//! need no hash (bounds, user-name characters, cleartext, authzid), from
//! the verification cache, or from a hash computation on the skeleton's
//! pool (`Next::Run`; the pool has auth_worker_max_count threads, so that
//! many hashes run at once while look-ups go on being answered). Owns who
//! may connect (SO_PEERCRED: root, mail_owner, or this process's own user),
//! the failure penalty and the cache. Does not own schemes (scheme.rs) or
//! the file (passdb.rs).
//!
//! Standards: RFC 4616 2 (an authzid other than the authcid asks to act as
//! another user: refused, there are no master users); RFC 1939 7 (APOP).
//!
//! Security: unknown users and wrong passwords get the same reply and the
//! same delay, and unknown users are verified against a dummy hash of the
//! scheme the users file uses (passdb.rs), so neither the answer nor its timing tells
//! them apart. User names are limited to Dovecot's auth_username_chars
//! (letters, digits, `.-_@`) so log lines cannot be shaped to make fail2ban
//! ban someone else; names and passwords over the bounds are refused
//! without hashing. A peer that sends a malformed or oversized frame is
//! disconnected. Users that resolve to uid 0 come back with default_privs'
//! ids and `default_privs: true`.
//!
//! Diagnostics: Dovecot's passwd-file lines, which fail2ban's dovecot
//! filter matches with `_daemon=posthorn/\S+`:
//! `passwd-file(USER,IP): unknown user`, `passwd-file(USER,IP): Password
//! mismatch` (IP empty when unknown); `passwd-file(USER,IP): cannot log in:
//! REASON` for users the file does not let in; warnings for refused peers,
//! malformed requests and users whose mailbox cannot be resolved.

use std::net::IpAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::auth::{
    self, AuthBody, AuthReply, AuthRequest, AuthResponse, Credentials, FailReason, Mechanism,
    UserInfo, MAX_PASSWORD, MAX_REQUEST, MAX_USER,
};
use common::config::{Config, ConfigError};
use common::server::{Next, Peer, Refusal, Service};
use common::users;
use common::{info, warning};

use crate::cache::{PasswordDigest, VerifyCache};
use crate::passdb::PassDb;
use crate::penalty::Penalty;
use crate::scheme::Stored;

/// Dovecot's default auth_username_chars: what a user name may contain.
const USERNAME_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_@";

/// The service's settings (main.cf).
#[derive(Debug, Clone)]
pub struct Settings {
    /// auth_allow_cleartext.
    pub allow_cleartext: bool,
    /// auth_allow_plain_passwords.
    pub allow_plain: bool,
    /// auth_failure_delay.
    pub failure_delay: Duration,
    /// auth_cache_ttl.
    pub cache_ttl: Duration,
    /// auth_worker_max_count (at least 1).
    pub workers: usize,
    /// The uids that may connect.
    pub allowed_uids: Vec<u32>,
}

impl Settings {
    /// Read the auth_* parameters. Allowed peers: root, mail_owner (when it
    /// is a user), and the user this process runs as.
    pub fn from_config(cfg: &Config) -> Result<Settings, ConfigError> {
        let mut allowed_uids = vec![0, nix::unistd::geteuid().as_raw()];
        if let Some(a) = common::privilege::lookup_user(&cfg.get("mail_owner")) {
            allowed_uids.push(a.uid);
        }
        allowed_uids.sort_unstable();
        allowed_uids.dedup();
        Ok(Settings {
            allow_cleartext: cfg.bool("auth_allow_cleartext")?,
            allow_plain: cfg.bool("auth_allow_plain_passwords")?,
            failure_delay: cfg.time("auth_failure_delay")?,
            cache_ttl: cfg.time("auth_cache_ttl")?,
            workers: usize::try_from(cfg.int("auth_worker_max_count")?)
                .unwrap_or(usize::MAX)
                .clamp(1, 64),
            allowed_uids,
        })
    }
}

/// What a connection is waiting for: a hash computation of this request.
#[derive(Debug)]
struct Pending {
    id: u64,
    /// The lower-case user name.
    user: String,
    client: Option<IpAddr>,
    /// For the cache, when the password may be remembered.
    digest: Option<PasswordDigest>,
    /// The table's generation when the request came.
    generation: u64,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// A user who can log in: a match is a success.
    Known,
    /// No such user: verified against the dummy.
    Unknown,
    /// A user who cannot log in (why): verified against the dummy.
    Unusable(String),
}

/// One peer's connection.
#[derive(Debug, Default)]
pub struct AuthConn {
    buf: Vec<u8>,
    uid: Option<u32>,
    pending: Option<Pending>,
}

/// A hash computation's result: did the password match?
pub type Matched = bool;

/// The auth service: settings, the users file, penalty and cache.
pub struct AuthService {
    cfg: Config,
    settings: Settings,
    passdb: PassDb,
    penalty: Penalty,
    cache: VerifyCache,
}

/// What handling one request gives.
enum Handled {
    Reply(AuthReply),
    Run(Pending, Box<dyn FnOnce() -> Matched + Send>),
}

impl AuthService {
    /// A service reading the users file of `cfg`.
    pub fn new(cfg: Config, settings: Settings) -> Result<AuthService, getrandom::Error> {
        let passdb = PassDb::new(cfg.users_file(), settings.allow_plain);
        AuthService::with_passdb(cfg, settings, passdb)
    }

    /// A service with a table of its own (tests, fuzzing).
    pub fn with_passdb(
        cfg: Config,
        settings: Settings,
        passdb: PassDb,
    ) -> Result<AuthService, getrandom::Error> {
        Ok(AuthService {
            penalty: Penalty::new(settings.failure_delay),
            cache: VerifyCache::new(settings.cache_ttl)?,
            cfg,
            settings,
            passdb,
        })
    }

    /// The table (tests look at it; `refresh` re-reads it).
    pub fn passdb_mut(&mut self) -> &mut PassDb {
        &mut self.passdb
    }

    /// Answer the whole requests in `c.buf`, until one needs the pool.
    fn pump(&mut self, c: &mut AuthConn, out: &mut Vec<u8>) -> Next<Matched> {
        loop {
            if c.pending.is_some() {
                return Next::Continue;
            }
            let req = match auth::take_request(&mut c.buf) {
                Ok(Some(r)) => r,
                Ok(None) => return Next::Continue,
                Err(e) => {
                    warning!(
                        "malformed request from uid {}: {e}; disconnecting",
                        show_uid(c.uid)
                    );
                    return Next::Close;
                }
            };
            let id = req.id;
            match self.handle(req) {
                Handled::Reply(body) => {
                    if !respond(out, id, body) {
                        return Next::Close;
                    }
                }
                Handled::Run(p, job) => {
                    c.pending = Some(p);
                    return Next::Run(Box::new(move || {
                        // A panic in a hash crate must not take the pool's
                        // thread (and so the daemon) down: it is a mismatch.
                        panic::catch_unwind(AssertUnwindSafe(job)).unwrap_or(false)
                    }));
                }
            }
        }
    }

    fn handle(&mut self, req: AuthRequest) -> Handled {
        self.passdb.refresh();
        match req.body {
            AuthBody::Lookup { user } => Handled::Reply(self.lookup(&user)),
            AuthBody::Verify(creds) => self.verify(req.id, creds),
        }
    }

    fn lookup(&mut self, user: &str) -> AuthReply {
        if user.len() > MAX_USER {
            return AuthReply::NotFound;
        }
        let key = user.trim().to_ascii_lowercase();
        match self.passdb.get(&key) {
            None => AuthReply::NotFound,
            Some(e) => self.user_info(&e.user),
        }
    }

    /// The user's mailbox, or TempFail when the configuration cannot say.
    fn user_info(&self, u: &users::User) -> AuthReply {
        match users::resolve_virtual(&self.cfg, u) {
            Ok(m) => AuthReply::Ok(UserInfo {
                user: u.address.clone(),
                uid: m.uid,
                gid: m.gid,
                home: m.home,
                maildir: m.maildir,
                quota: u.quota,
                default_privs: m.default_privs.is_some(),
            }),
            Err(e) => {
                warning!("{}: cannot resolve the mailbox: {e}", u.address);
                AuthReply::TempFail(format!("{}: {e}", u.address))
            }
        }
    }

    fn verify(&mut self, id: u64, creds: Credentials) -> Handled {
        let client = creds.client.map(|ip| ip.to_canonical());
        let ip = client.map(|a| a.to_string()).unwrap_or_default();
        let user = creds.user.to_ascii_lowercase();
        let shown = shown_name(&user);
        if creds.user.len() > MAX_USER
            || creds.authzid.len() > MAX_USER
            || creds.password.len() > MAX_PASSWORD
            || creds.service.len() > 32
        {
            info!("passwd-file({shown},{ip}): unknown user (credentials over the size limits)");
            return self.fail(client, FailReason::Invalid);
        }
        if !valid_login_name(&user) {
            info!("passwd-file({shown},{ip}): unknown user (invalid characters in the name)");
            return self.fail(client, FailReason::Invalid);
        }
        if !creds.secured && !self.settings.allow_cleartext {
            info!(
                "passwd-file({shown},{ip}): cleartext authentication refused: neither TLS nor loopback (auth_allow_cleartext = no)"
            );
            return self.fail(client, FailReason::CleartextRefused);
        }
        // RFC 4616 2: an authzid names the identity to act as.
        if !creds.authzid.is_empty() && !creds.authzid.eq_ignore_ascii_case(&user) {
            info!(
                "passwd-file({shown},{ip}): authzid {} refused: master users are not supported",
                shown_name(&creds.authzid.to_ascii_lowercase())
            );
            return self.fail(client, FailReason::AuthzidRefused);
        }
        let entry = self.passdb.get(&user);
        if let Mechanism::Apop { challenge } = &creds.mechanism {
            // RFC 1939 7: MD5 of the challenge and the secret; cheap, done here.
            let (matched, why) = match entry.map(|e| self.passdb.usable(e)) {
                None => (false, "unknown user".to_string()),
                Some(Ok(s)) if matches!(**s, Stored::Plain(_)) => (
                    s.verify_apop(challenge, &creds.password),
                    "Password mismatch".to_string(),
                ),
                Some(Ok(s)) => (
                    false,
                    format!(
                        "cannot log in: APOP needs a PLAIN password, the users file has {}",
                        s.scheme()
                    ),
                ),
                Some(Err(e)) => (false, format!("cannot log in: {e}")),
            };
            if matched {
                let Some(e) = entry else {
                    return self.fail(client, FailReason::Credentials);
                };
                let u = e.user.clone();
                return Handled::Reply(self.succeed(client, &u, None));
            }
            info!("passwd-file({shown},{ip}): {why}");
            return self.fail(client, FailReason::Credentials);
        }
        let (stored, kind) = match entry.map(|e| self.passdb.usable(e)) {
            Some(Ok(s)) => (Arc::clone(s), Kind::Known),
            Some(Err(e)) => (self.passdb.dummy(), Kind::Unusable(e.to_string())),
            None => (self.passdb.dummy(), Kind::Unknown),
        };
        let digest = match kind {
            Kind::Known if self.cache.enabled() => Some(self.cache.digest(&creds.password)),
            _ => None,
        };
        if let (Some(d), Some(e)) = (&digest, entry) {
            if self
                .cache
                .hit(self.passdb.generation(), &user, d, Instant::now())
            {
                let u = e.user.clone();
                return Handled::Reply(self.succeed(client, &u, None));
            }
        }
        let password = creds.password;
        Handled::Run(
            Pending {
                id,
                user,
                client,
                digest,
                generation: self.passdb.generation(),
                kind,
            },
            Box::new(move || stored.verify(&password)),
        )
    }

    /// A hash computation finished.
    fn finish(&mut self, p: Pending, matched: Matched) -> AuthReply {
        let shown = shown_name(&p.user);
        let ip = p.client.map(|a| a.to_string()).unwrap_or_default();
        match (p.kind, matched) {
            (Kind::Known, true) => {
                // The table may have changed while the hash ran: answer
                // from the current one (a removed user is unknown now), and
                // remember the password only if the table is the same.
                let digest = p
                    .digest
                    .filter(|_| p.generation == self.passdb.generation());
                match self.passdb.get(&p.user).map(|e| e.user.clone()) {
                    Some(u) => self.succeed(p.client, &u, digest.as_ref()),
                    None => {
                        info!("passwd-file({shown},{ip}): unknown user");
                        self.failed(p.client, FailReason::Credentials)
                    }
                }
            }
            (Kind::Known, false) => {
                info!("passwd-file({shown},{ip}): Password mismatch");
                self.failed(p.client, FailReason::Credentials)
            }
            (Kind::Unknown, _) => {
                info!("passwd-file({shown},{ip}): unknown user");
                self.failed(p.client, FailReason::Credentials)
            }
            (Kind::Unusable(why), _) => {
                info!("passwd-file({shown},{ip}): cannot log in: {why}");
                self.failed(p.client, FailReason::Credentials)
            }
        }
    }

    fn succeed(
        &mut self,
        client: Option<IpAddr>,
        u: &users::User,
        digest: Option<&PasswordDigest>,
    ) -> AuthReply {
        self.penalty.success(client);
        if let Some(d) = digest {
            self.cache
                .remember(self.passdb.generation(), &u.address, d, Instant::now());
        }
        self.user_info(u)
    }

    fn failed(&mut self, client: Option<IpAddr>, reason: FailReason) -> AuthReply {
        let delay = self.penalty.failure(client, Instant::now());
        AuthReply::Failed {
            delay_ms: u32::try_from(delay.as_millis()).unwrap_or(u32::MAX),
            reason,
        }
    }

    fn fail(&mut self, client: Option<IpAddr>, reason: FailReason) -> Handled {
        Handled::Reply(self.failed(client, reason))
    }
}

/// Append a response; false (after a warning) if it cannot be encoded.
fn respond(out: &mut Vec<u8>, id: u64, body: AuthReply) -> bool {
    match auth::put_response(out, &AuthResponse { id, body }) {
        Ok(()) => true,
        Err(e) => {
            warning!("cannot encode a response: {e}");
            false
        }
    }
}

/// Can a user of this name log in? (Dovecot's default auth_username_chars;
/// case does not matter.)
pub fn valid_login_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_USER && name.bytes().all(|b| USERNAME_CHARS.contains(&b))
}

/// A user name for log lines: characters outside USERNAME_CHARS as '?', so
/// a name cannot change what a log parser reads around it.
fn shown_name(name: &str) -> String {
    name.chars()
        .take(MAX_USER)
        .map(|c| {
            if c.is_ascii() && USERNAME_CHARS.contains(&(c as u8)) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn show_uid(uid: Option<u32>) -> String {
    uid.map_or_else(|| "?".to_string(), |u| u.to_string())
}

impl Service for AuthService {
    type Conn = AuthConn;
    type Done = Matched;

    fn open(&mut self, peer: Peer, _out: &mut Vec<u8>) -> (AuthConn, Next<Matched>) {
        let conn = AuthConn {
            uid: peer.uid,
            ..AuthConn::default()
        };
        if !peer
            .uid
            .is_some_and(|u| self.settings.allowed_uids.contains(&u))
        {
            warning!(
                "refusing a connection from uid {}: only root, mail_owner and uid {} may use the auth service",
                show_uid(peer.uid),
                nix::unistd::geteuid()
            );
            return (conn, Next::Close);
        }
        (conn, Next::Continue)
    }

    fn refuse(&mut self, peer: Peer, why: Refusal, _out: &mut Vec<u8>) -> AuthConn {
        warning!(
            "too many connections ({why:?}); refusing one from uid {}",
            show_uid(peer.uid)
        );
        AuthConn::default()
    }

    fn input(&mut self, c: &mut AuthConn, data: &[u8], out: &mut Vec<u8>) -> Next<Matched> {
        c.buf.extend_from_slice(data);
        let next = self.pump(c, out);
        // Bounded: whole frames were taken; what is left is under one frame
        // and one read (the skeleton reads nothing while a job runs).
        if c.buf.len() > 4 + MAX_REQUEST + 64 * 1024 {
            warning!("uid {} sent too much; disconnecting", show_uid(c.uid));
            return Next::Close;
        }
        next
    }

    fn done(&mut self, c: &mut AuthConn, matched: Matched, out: &mut Vec<u8>) -> Next<Matched> {
        let Some(p) = c.pending.take() else {
            return self.pump(c, out);
        };
        let id = p.id;
        let reply = self.finish(p, matched);
        if !respond(out, id, reply) {
            return Next::Close;
        }
        self.pump(c, out)
    }

    fn resume(&mut self, c: &mut AuthConn, out: &mut Vec<u8>) -> Next<Matched> {
        self.pump(c, out)
    }

    fn timed_out(&mut self, _c: &mut AuthConn, _out: &mut Vec<u8>) {}

    fn stopping(&mut self, _c: &mut AuthConn, _out: &mut Vec<u8>) -> bool {
        true
    }

    fn closed(&mut self, _c: AuthConn, _lost: bool) {}

    fn orphan(&mut self, _matched: Matched) {}
}
