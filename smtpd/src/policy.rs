//! Who may send to whom: smtpd's access policy, asked by the session.
//!
//! Owns the RCPT decision: a recipient in virtual_mailbox_domains must be a
//! virtual user (asked through `UserLookup`: in production the auth
//! service's Lookup, so smtpd never reads the users file, which is `0600
//! root`), one in mydestination must be a system user or a name of
//! alias_maps (Postfix's local_recipient_maps default; a table that cannot be
//! read answers 451), and any other domain
//! is accepted only from clients in mynetworks or that logged in with AUTH
//! (relay control: Postfix's default smtpd_relay_restrictions,
//! permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination).
//! `postmaster`, bare or at any domain we are final destination for, is
//! always accepted (RFC 5321 4.5.1), whether or not such a user exists.
//! Before those checks (after relay control) the recipient goes through
//! virtual_alias_maps (common::virtual_alias): an address with an entry is
//! accepted as what it expands to, whatever its domain's users; one in a
//! virtual_alias_domains domain without an entry is refused; those domains
//! are ours for relay control.
//! Does not own syntax (proto) or the session (session.rs).
//!
//! The look-up is synchronous on smtpd's event loop, so `AuthLookup` keeps
//! it cheap: one connection to auth per smtpd process, answers cached
//! (POSITIVE_TTL for users that exist, NEGATIVE_TTL for those that do not,
//! at most MAX_CACHED names), a LOOKUP_TIMEOUT, and after a failure
//! RETRY_AFTER during which virtual recipients get 451 at once.
//!
//! Standards: RFC 5321 4.5.1 (postmaster), 3.6.2 (relaying only for
//! clients we know), 4.2.5 (451 when the check cannot be made now).
//!
//! Reply texts are Postfix's, so fail2ban filters and administrators'
//! habits carry over:
//! `550 5.1.1 <u@d>: Recipient address rejected: User unknown in virtual mailbox table`,
//! `550 5.1.1 <u@d>: Recipient address rejected: User unknown in virtual alias table`,
//! `554 5.7.1 <u@other>: Relay access denied`,
//! `451 4.3.0 <u@d>: Temporary lookup failure`.
//!
//! Diagnostics: `warning: virtual mailbox look-up: ...; answering 451 for
//! virtual recipients` once per outage of auth, and `virtual mailbox
//! look-up: the auth service answers again` when it is over; `warning:
//! unreasonable virtual_alias_maps map nesting for <a>` (or `expansion
//! size`, or `table ... cannot be read`) with each 451 the alias tables
//! cause.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::addr::{self, Domains, Route};
use common::aliases::Aliases;
use common::auth::{AuthClient, AuthError, AuthReply};
use common::net::Networks;
use common::privilege;
use common::virtual_alias::{VirtualAlias, VirtualError};
use common::{info, warning};
use proto::smtp::Reply;

use crate::session::{Accepted, Policy};

/// How long a user that exists is remembered.
pub const POSITIVE_TTL: Duration = Duration::from_secs(60);
/// How long a user that does not exist is remembered.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// The most names remembered.
pub const MAX_CACHED: usize = 10_000;
/// How long smtpd waits for auth's answer (its event loop waits too).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// After a failure, auth is not asked again for this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The virtual mailbox users, as far as smtpd needs to know them.
pub trait UserLookup {
    /// Does the user with this lookup key (lower case, extension removed)
    /// exist? `Err` when that cannot be told now.
    fn exists(&mut self, key: &str) -> Result<bool, LookupError>;
}

/// Why a user's existence cannot be told now.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("the auth service cannot answer: {0}")]
    TempFail(String),
    #[error("the auth service answered a look-up with {0}")]
    Unexpected(&'static str),
    #[error("the auth service failed less than {0:?} ago")]
    Down(Duration),
}

/// `UserLookup` through the auth service's Lookup (`private/auth`).
#[derive(Debug)]
pub struct AuthLookup {
    client: AuthClient,
    cache: HashMap<String, (bool, Instant)>,
    down_until: Option<Instant>,
    /// An outage was logged and its end is not yet.
    warned: bool,
}

impl AuthLookup {
    /// Ask the auth service at `socket` (connecting at the first look-up).
    pub fn new(socket: impl Into<PathBuf>) -> AuthLookup {
        AuthLookup {
            client: AuthClient::lazy(socket).with_timeouts(LOOKUP_TIMEOUT, LOOKUP_TIMEOUT),
            cache: HashMap::new(),
            down_until: None,
            warned: false,
        }
    }

    fn remember(&mut self, key: &str, exists: bool, now: Instant) {
        if self.cache.len() >= MAX_CACHED && !self.cache.contains_key(key) {
            self.cache.retain(|_, (_, until)| *until > now);
            if self.cache.len() >= MAX_CACHED {
                self.cache.clear();
            }
        }
        let ttl = if exists { POSITIVE_TTL } else { NEGATIVE_TTL };
        self.cache.insert(key.to_string(), (exists, now + ttl));
    }
}

impl UserLookup for AuthLookup {
    fn exists(&mut self, key: &str) -> Result<bool, LookupError> {
        let now = Instant::now();
        if let Some((exists, until)) = self.cache.get(key) {
            if *until > now {
                return Ok(*exists);
            }
        }
        if self.down_until.is_some_and(|t| t > now) {
            return Err(LookupError::Down(RETRY_AFTER));
        }
        let answer = match self.client.lookup(key) {
            Ok(AuthReply::Ok(_)) => Ok(true),
            Ok(AuthReply::NotFound) => Ok(false),
            Ok(AuthReply::TempFail(t)) => Err(LookupError::TempFail(t)),
            Ok(AuthReply::Failed { .. }) => Err(LookupError::Unexpected("Failed")),
            Err(e) => Err(LookupError::Auth(e)),
        };
        match answer {
            Ok(exists) => {
                if std::mem::take(&mut self.warned) {
                    info!("virtual mailbox look-up: the auth service answers again");
                }
                self.down_until = None;
                self.remember(key, exists, now);
                Ok(exists)
            }
            Err(e) => {
                if !self.warned {
                    warning!("virtual mailbox look-up: {e}; answering 451 for virtual recipients");
                    self.warned = true;
                }
                if matches!(e, LookupError::Auth(_)) {
                    self.down_until = Some(now + RETRY_AFTER);
                }
                Err(e)
            }
        }
    }
}

pub struct AccessPolicy {
    pub domains: Domains,
    pub mynetworks: Networks,
    /// The virtual mailbox users (virtual_mailbox_domains).
    pub users: Box<dyn UserLookup>,
    /// alias_maps: its names are local recipients too (Postfix's
    /// local_recipient_maps default, `proxy:unix:passwd.byname $alias_maps`).
    pub local_aliases: Aliases,
    /// virtual_alias_maps and virtual_alias_domains.
    pub virtual_aliases: VirtualAlias,
}

impl Policy for AccessPolicy {
    fn check_recipient(
        &mut self,
        client: Option<IpAddr>,
        rcpt: &str,
        authenticated: bool,
    ) -> Result<Accepted, Reply> {
        // Relay control first (Postfix's reject_unauth_destination before
        // reject_unlisted_recipient): an alias entry for another domain's
        // address does not make that domain ours.
        let route = self.domains.route(rcpt);
        if route == Route::Remote
            && !self.virtual_aliases.is_alias_domain(addr::split(rcpt).1)
            && !(authenticated || self.trusted(client))
        {
            return Err(Reply::new(
                554,
                Some("5.7.1"),
                format!("<{rcpt}>: Relay access denied"),
            ));
        }
        match self.virtual_aliases.expand(rcpt) {
            Ok(e) if e.rewritten => {
                return Ok(match e.recipients.as_slice() {
                    [one] if one == rcpt => Accepted::Itself,
                    _ => Accepted::Aliased(e.recipients),
                });
            }
            Ok(_) => {}
            Err(VirtualError::Unknown(_)) => {
                return Err(Reply::new(
                    550,
                    Some("5.1.1"),
                    format!(
                        "<{rcpt}>: Recipient address rejected: User unknown in virtual alias table"
                    ),
                ));
            }
            Err(e) => {
                // RFC 5321 4.2.5: cannot tell now; the client tries later.
                warning!("{e}");
                return Err(Reply::new(
                    451,
                    Some("4.3.0"),
                    format!("<{rcpt}>: Temporary lookup failure"),
                ));
            }
        }
        if self.is_postmaster(rcpt) {
            return Ok(Accepted::Itself);
        }
        let key = addr::lookup_key(rcpt, &self.domains.delimiter);
        match route {
            Route::Virtual => match self.users.exists(&key) {
                Ok(true) => Ok(Accepted::Itself),
                Ok(false) => Err(Reply::new(
                    550,
                    Some("5.1.1"),
                    format!("<{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table"),
                )),
                // RFC 5321 4.2.5: cannot tell now; the client tries later.
                Err(_) => Err(Reply::new(
                    451,
                    Some("4.3.0"),
                    format!("<{rcpt}>: Temporary lookup failure"),
                )),
            },
            Route::System => {
                let (local, _) = addr::split(&key);
                if privilege::lookup_user(local).is_none() {
                    match self.local_aliases.contains(local) {
                        Ok(true) => return Ok(Accepted::Itself),
                        Ok(false) => {}
                        Err(e) => {
                            warning!("alias_maps: {e}");
                            return Err(Reply::new(
                                451,
                                Some("4.3.0"),
                                format!("<{rcpt}>: Temporary lookup failure"),
                            ));
                        }
                    }
                    return Err(Reply::new(
                        550,
                        Some("5.1.1"),
                        format!("<{rcpt}>: Recipient address rejected: User unknown in local recipient table"),
                    ));
                }
                Ok(Accepted::Itself)
            }
            // Relaying was allowed above.
            Route::Remote => Ok(Accepted::Itself),
        }
    }

    fn trusted(&self, client: Option<IpAddr>) -> bool {
        client.is_some_and(|ip| self.mynetworks.contains(ip))
    }
}

impl AccessPolicy {
    /// RFC 5321 4.5.1: `<postmaster>` without a domain, and `postmaster@D`
    /// for every domain D we deliver (virtual_mailbox_domains, mydestination),
    /// local part matched without regard to case.
    fn is_postmaster(&self, rcpt: &str) -> bool {
        let (local, _) = addr::split(rcpt);
        // A bare address routes as System, so it is covered here too.
        local.eq_ignore_ascii_case("postmaster") && self.domains.route(rcpt) != Route::Remote
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::auth::{AuthRequest, AuthResponse, UserInfo};
    use common::ipc;
    use std::os::unix::net::UnixListener;
    use std::path::Path;

    /// A stand-in auth service on a real socket: answers Lookups from a
    /// fixed list and counts them.
    fn fake_auth(
        path: &Path,
        known: &'static [&'static str],
        answers: usize,
    ) -> std::thread::JoinHandle<usize> {
        let l = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut n = 0;
            while n < answers {
                let Ok(Some(r)) = ipc::read_frame::<_, AuthRequest>(&mut s) else {
                    break;
                };
                let common::auth::AuthBody::Lookup { user } = r.body else {
                    panic!("a lookup")
                };
                let body = if known.contains(&user.as_str()) {
                    AuthReply::Ok(UserInfo {
                        user,
                        uid: 1,
                        gid: 1,
                        home: "/h".into(),
                        maildir: "/h/Maildir".into(),
                        quota: Default::default(),
                        default_privs: false,
                    })
                } else {
                    AuthReply::NotFound
                };
                ipc::write_frame(&mut s, &AuthResponse { id: r.id, body }).unwrap();
                n += 1;
            }
            n
        })
    }

    #[test]
    fn auth_lookup_caches_and_fails_fast_when_auth_is_gone() {
        let dir =
            std::env::temp_dir().join(format!("posthorn-smtpd-authlookup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("auth");
        let server = fake_auth(&path, &["a@x"], 2);
        let mut l = AuthLookup::new(&path);
        assert!(l.exists("a@x").unwrap());
        assert!(!l.exists("b@x").unwrap());
        // Both answers come from the cache now: the server answered two.
        assert!(l.exists("a@x").unwrap());
        assert!(!l.exists("b@x").unwrap());
        assert_eq!(server.join().unwrap(), 2);
        // The server is gone: an unknown name is a temporary failure, then
        // fails fast; the cached names still answer.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(l.exists("c@x"), Err(LookupError::Auth(_))));
        assert!(matches!(l.exists("c@x"), Err(LookupError::Down(_))));
        assert!(l.exists("a@x").unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
