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
//! by user USER`, Postfix's reply). An address is owned by the logins
//! smtpd_sender_login_maps lists for it (the address, without extension, or
//! @domain), and by the user whose
//! login name it is, with or without a recipient_delimiter extension
//! (`user+tag@domain`); the null sender (bounces, auto-replies) is not
//! refused. Without AUTH, reject_sender_login_mismatch refuses an address
//! the maps give an owner (`... not logged in`);
//! reject_authenticated_sender_login_mismatch does not.
//!
//! Diagnostics: a name the list may not hold is a `ConfigError` naming the
//! parameter and the name.

use common::addr;
use common::config::{Config, ConfigError};
use common::table::Tables;
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
    /// smtpd_sender_login_maps' owners of `sender` (None: no maps; empty:
    /// the maps name no owner).
    pub owners: Option<&'a [String]>,
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
                let listed = f.owners.unwrap_or(&[]);
                if f.user.is_none()
                    && *r == Restriction::RejectSenderLoginMismatch
                    && !f.sender.is_empty()
                    && !listed.is_empty()
                {
                    // Postfix: an address the maps give an owner is sent
                    // from only by that owner, logged in.
                    return Err(Reply::new(
                        553,
                        Some("5.7.1"),
                        format!("<{}>: Sender address rejected: not logged in", f.sender),
                    ));
                }
                if let Some(user) = f.user {
                    let owned = owns(user, f.sender, f.delimiter)
                        || listed.iter().any(|o| o.eq_ignore_ascii_case(user));
                    if !f.sender.is_empty() && !owned {
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

/// A value of smtpd_sender_login_maps: the owners (logins), separated by
/// commas or white space, in lower case.
pub fn owners(v: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> = v
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    if list.is_empty() {
        Err("no owner".into())
    } else {
        Ok(list)
    }
}

/// The owners the maps give `sender`: the whole address, then without its
/// recipient_delimiter extension, then `@domain` (Postfix's order); empty
/// when none (or for the null sender).
pub fn owners_of(maps: &Tables<Vec<String>>, sender: &str, delimiter: &str) -> Vec<String> {
    if sender.is_empty() {
        return Vec::new();
    }
    let whole = sender.to_ascii_lowercase();
    let base = addr::lookup_key(sender, delimiter);
    let domain = format!("@{}", addr::split(&whole).1);
    maps.find([whole.as_str(), base.as_str(), domain.as_str()])
        .cloned()
        .unwrap_or_default()
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
            owners: None,
        }
    }

    #[test]
    fn sender_login_maps_name_owners() {
        use Restriction::*;
        let text = "info@example.test demo@example.test, bob@example.test\n\
                    @shared.example bob@example.test\n";
        let table = common::table::parse_table("maps", text, owners, |w| panic!("{w}"));
        assert_eq!(
            table["info@example.test"],
            ["demo@example.test", "bob@example.test"]
        );
        let dir = std::env::temp_dir().join(format!("posthorn-loginmaps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("maps");
        std::fs::write(&path, text).unwrap();
        let maps = Tables::new(&format!("texthash:{}", path.display()), owners);
        let _ = std::fs::remove_dir_all(&dir);
        let run = |list: &[Restriction], user: Option<&str>, sender: &str| {
            let o = owners_of(&maps, sender, "+");
            let f = Facts {
                owners: Some(&o),
                ..facts(user, sender)
            };
            check(list, Stage::Sender, &f).map_err(|r| r.to_string())
        };
        let both = [RejectSenderLoginMismatch];
        let authed = [RejectAuthenticatedSenderLoginMismatch];
        // Listed owners, with an extension, and the @domain entry.
        assert!(run(&both, Some("bob@example.test"), "Info+x@example.test").is_ok());
        assert!(run(&both, Some("bob@example.test"), "anyone@shared.example").is_ok());
        // One's own address stays one's own (a superset of Postfix).
        assert!(run(&both, Some("demo@example.test"), "demo@example.test").is_ok());
        assert_eq!(
            run(&both, Some("eve@example.test"), "info@example.test").unwrap_err(),
            "553 5.7.1 <info@example.test>: Sender address rejected: not owned by user eve@example.test"
        );
        // Not logged in: an address with an owner is refused by
        // reject_sender_login_mismatch only.
        assert_eq!(
            run(&both, None, "info@example.test").unwrap_err(),
            "553 5.7.1 <info@example.test>: Sender address rejected: not logged in"
        );
        assert!(run(&authed, None, "info@example.test").is_ok());
        assert!(run(&both, None, "nobody@elsewhere.example").is_ok());
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
