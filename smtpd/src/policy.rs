//! Who may send to whom: smtpd's access policy, asked by the session.
//!
//! Owns the RCPT decision: a recipient in virtual_mailbox_domains must be in
//! the users file, one in mydestination must be a system user, and any other
//! domain is accepted only from clients in mynetworks (relay control).
//! `postmaster`, bare or at any domain we are final destination for, is
//! always accepted (RFC 5321 4.5.1), whether or not such a user exists.
//! Does not own syntax (proto) or the session (session.rs).
//!
//! Standards: RFC 5321 4.5.1 (postmaster), 3.6.2 (relaying only for
//! clients we know).
//!
//! Reply texts are Postfix's, so fail2ban filters and administrators'
//! habits carry over:
//! `550 5.1.1 <u@d>: Recipient address rejected: User unknown in virtual mailbox table`,
//! `554 5.7.1 <u@other>: Relay access denied`.

use std::net::IpAddr;

use common::addr::{self, Domains, Route};
use common::net::Networks;
use common::privilege;
use common::users::UserTable;
use common::warning;
use proto::smtp::Reply;

use crate::session::Policy;

pub struct AccessPolicy {
    pub domains: Domains,
    pub mynetworks: Networks,
    pub users: UserTable,
}

impl Policy for AccessPolicy {
    fn check_recipient(&mut self, client: Option<IpAddr>, rcpt: &str) -> Result<(), Reply> {
        if self.is_postmaster(rcpt) {
            return Ok(());
        }
        let key = addr::lookup_key(rcpt, &self.domains.delimiter);
        match self.domains.route(rcpt) {
            Route::Virtual => {
                if let Err(e) = self.users.refresh() {
                    warning!("{e}");
                    return Err(Reply::new(
                        451,
                        Some("4.3.0"),
                        format!("<{rcpt}>: Temporary lookup failure"),
                    ));
                }
                if self.users.get(&key).is_none() {
                    return Err(Reply::new(
                        550,
                        Some("5.1.1"),
                        format!("<{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table"),
                    ));
                }
                Ok(())
            }
            Route::System => {
                let (local, _) = addr::split(&key);
                if privilege::lookup_user(local).is_none() {
                    return Err(Reply::new(
                        550,
                        Some("5.1.1"),
                        format!("<{rcpt}>: Recipient address rejected: User unknown in local recipient table"),
                    ));
                }
                Ok(())
            }
            Route::Remote => {
                if self.trusted(client) {
                    Ok(())
                } else {
                    Err(Reply::new(
                        554,
                        Some("5.7.1"),
                        format!("<{rcpt}>: Relay access denied"),
                    ))
                }
            }
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
