//! Access restriction lists, Postfix's way, for what submission needs:
//! `smtpd_client_restrictions` and `smtpd_sender_restrictions`, evaluated
//! at MAIL FROM, first match wins.
//!
//! Owns the names a list may hold and their meaning: `permit`, `reject`,
//! `permit_mynetworks`, `permit_sasl_authenticated`, and (sender list)
//! `reject_sender_login_mismatch` and
//! `reject_authenticated_sender_login_mismatch`. Does not own AUTH (the
//! session) or who exists (policy.rs).
//!
//! The submission services of master.cf use
//! `smtpd_client_restrictions = permit_sasl_authenticated, reject` (mail
//! only after AUTH: `530 5.7.0 Authentication required` when AUTH is
//! offered, RFC 4954 6) and `smtpd_sender_restrictions =
//! reject_sender_login_mismatch` (an authenticated user sends only as an
//! address it owns: `553 5.7.1 <addr>: Sender address rejected: not owned
//! by user USER`, Postfix's reply). An address is owned by the user whose
//! login name it is, with or without a recipient_delimiter extension
//! (`user+tag@domain`); the null sender (bounces, auto-replies) is not
//! refused. Postfix's smtpd_sender_login_maps (aliases as owned addresses)
//! is not there yet.
//!
//! Diagnostics: a name the list may not hold is a `ConfigError` naming the
//! parameter and the name.

use common::addr;
use common::config::{Config, ConfigError};
use proto::smtp::Reply;

/// One entry of a restriction list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restriction {
    Permit,
    Reject,
    PermitMynetworks,
    PermitSaslAuthenticated,
    /// Sender list only: refuse a sender address the authenticated user
    /// does not own (unauthenticated clients are left to the client list).
    RejectSenderLoginMismatch,
    /// The same (Postfix has both names; without smtpd_sender_login_maps
    /// they mean the same here).
    RejectAuthenticatedSenderLoginMismatch,
}

/// Where a list is used: which names it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Client,
    Sender,
}

impl Restriction {
    fn from_name(name: &str, stage: Stage) -> Option<Restriction> {
        let r = match name {
            "permit" => Restriction::Permit,
            "reject" => Restriction::Reject,
            "permit_mynetworks" => Restriction::PermitMynetworks,
            "permit_sasl_authenticated" => Restriction::PermitSaslAuthenticated,
            "reject_sender_login_mismatch" if stage == Stage::Sender => {
                Restriction::RejectSenderLoginMismatch
            }
            "reject_authenticated_sender_login_mismatch" if stage == Stage::Sender => {
                Restriction::RejectAuthenticatedSenderLoginMismatch
            }
            _ => return None,
        };
        Some(r)
    }
}

/// Read list `param` (names separated by commas or white space).
pub fn parse(cfg: &Config, param: &str, stage: Stage) -> Result<Vec<Restriction>, ConfigError> {
    cfg.list(param)
        .iter()
        .map(|name| {
            Restriction::from_name(&name.to_ascii_lowercase(), stage).ok_or_else(|| {
                cfg.invalid(
                    param,
                    format!(
                        "unknown restriction {name:?} (this list takes {})",
                        known(stage)
                    ),
                )
            })
        })
        .collect()
}

fn known(stage: Stage) -> &'static str {
    match stage {
        Stage::Client => "permit, reject, permit_mynetworks, permit_sasl_authenticated",
        Stage::Sender => {
            "permit, reject, permit_mynetworks, permit_sasl_authenticated, \
             reject_sender_login_mismatch, reject_authenticated_sender_login_mismatch"
        }
    }
}

/// What the session knows when MAIL FROM comes.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// In mynetworks.
    pub trusted: bool,
    /// The authenticated user (auth's canonical name), if any.
    pub user: Option<&'a str>,
    /// AUTH is offered on this connection now (for 530 instead of 554).
    pub auth_offered: bool,
    /// MAIL FROM's address (empty for the null sender).
    pub sender: &'a str,
    pub delimiter: &'a str,
    pub client_label: &'a str,
}

/// Run `list`: Err is the reply that refuses MAIL FROM.
pub fn check(list: &[Restriction], stage: Stage, f: &Facts<'_>) -> Result<(), Reply> {
    for r in list {
        match r {
            Restriction::Permit => return Ok(()),
            Restriction::PermitMynetworks if f.trusted => return Ok(()),
            Restriction::PermitSaslAuthenticated if f.user.is_some() => return Ok(()),
            Restriction::Reject => return Err(refusal(stage, f)),
            Restriction::RejectSenderLoginMismatch
            | Restriction::RejectAuthenticatedSenderLoginMismatch => {
                if let Some(user) = f.user {
                    if !f.sender.is_empty() && !owns(user, f.sender, f.delimiter) {
                        return Err(Reply::new(
                            553,
                            Some("5.7.1"),
                            format!(
                                "<{}>: Sender address rejected: not owned by user {user}",
                                f.sender
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn refusal(stage: Stage, f: &Facts<'_>) -> Reply {
    if f.auth_offered && f.user.is_none() {
        // RFC 4954 6.
        return Reply::new(530, Some("5.7.0"), "Authentication required");
    }
    match stage {
        Stage::Client => Reply::new(
            554,
            Some("5.7.1"),
            format!("<{}>: Client host rejected: Access denied", f.client_label),
        ),
        Stage::Sender => Reply::new(
            554,
            Some("5.7.1"),
            format!("<{}>: Sender address rejected: Access denied", f.sender),
        ),
    }
}

/// Does `user` (auth's name: lower case) own `sender`?
pub fn owns(user: &str, sender: &str, delimiter: &str) -> bool {
    addr::lookup_key(sender, delimiter) == user.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(user: Option<&'a str>, sender: &'a str) -> Facts<'a> {
        Facts {
            trusted: false,
            user,
            auth_offered: true,
            sender,
            delimiter: "+",
            client_label: "unknown[192.0.2.1]",
        }
    }

    #[test]
    fn submission_lists() {
        use Restriction::*;
        let client = [PermitSaslAuthenticated, Reject];
        let r = check(&client, Stage::Client, &facts(None, "a@example.test")).unwrap_err();
        assert_eq!(r.to_string(), "530 5.7.0 Authentication required");
        assert!(check(&client, Stage::Client, &facts(Some("a@example.test"), "x")).is_ok());

        let sender = [RejectSenderLoginMismatch];
        let me = Some("demo@example.test");
        for ok in ["demo@example.test", "Demo+lists@EXAMPLE.test", ""] {
            assert!(
                check(&sender, Stage::Sender, &facts(me, ok)).is_ok(),
                "{ok}"
            );
        }
        let r = check(&sender, Stage::Sender, &facts(me, "bob@example.test")).unwrap_err();
        assert_eq!(
            r.to_string(),
            "553 5.7.1 <bob@example.test>: Sender address rejected: not owned by user demo@example.test"
        );
    }
}
