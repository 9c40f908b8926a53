//! GETQUOTAROOT, GETQUOTA and SETQUOTA: the user's quota, read-only.
//!
//! Owns the quota responses. The limits are the user's (the users file's
//! quota rules, common::quota, handed to the store as Options.quota); the
//! usage is mailstore's Maildir++ `maildirsize` accounting
//! (Store::quota_usage). Changing a quota is the administrator's: SETQUOTA
//! is refused.
//!
//! One quota root per user, named "User quota", as Dovecot names it with
//! its default `quota = maildir:User quota`, so a client that remembers
//! root names sees the same one after a migration. Every mailbox is under
//! it. The root exists only when the user has a limit: without one,
//! GETQUOTAROOT lists no root (`* QUOTAROOT INBOX`, then `OK No quota.`;
//! Dovecot sends only the OK) and GETQUOTA of the root is NO, as for any
//! unknown root.
//!
//! Standards: RFC 9208 4.1 (GETQUOTA), 4.2 (GETQUOTAROOT), 4.3 (SETQUOTA:
//! NO when the server does not let the client change it), 5.1 (STORAGE
//! in units of 1024 octets; Dovecot rounds both numbers up), 5.2 (MESSAGE),
//! 7.1 (QUOTA response: only resources with a limit).
//!
//! Diagnostics: a failure to read the usage is logged with the user and
//! answered NO [SERVERBUG].

use proto::imap::{AString, Mailbox, ResponseCode, Tag};

use super::store_name;
use crate::session::Session;

/// The name of the one quota root (Dovecot's default).
pub const ROOT: &str = "User quota";

/// `* QUOTA "User quota" (STORAGE used limit MESSAGE used limit)`, the
/// resources with a limit only; false (nothing written) when the user has
/// none, or the usage cannot be read (then the NO is written).
fn write_quota(s: &mut Session, tag: &Tag) -> Result<bool, ()> {
    let quota = s.store.options().quota;
    if quota.is_unlimited() {
        return Ok(false);
    }
    let usage = match s.store.quota_usage() {
        Ok(u) => u,
        Err(e) => {
            s.store_error(tag, &e);
            return Err(());
        }
    };
    let mut items = Vec::new();
    if let Some(limit) = quota.storage {
        // RFC 9208 5.1: KiB; Dovecot rounds up (quota.c).
        items.push(format!(
            "STORAGE {} {}",
            usage.bytes.div_ceil(1024),
            limit.div_ceil(1024)
        ));
    }
    if let Some(limit) = quota.messages {
        items.push(format!("MESSAGE {} {limit}", usage.messages));
    }
    s.out.extend_from_slice(b"* QUOTA ");
    proto::imap::response::write_astring(&mut s.out, ROOT.as_bytes());
    s.out
        .extend_from_slice(format!(" ({})\r\n", items.join(" ")).as_bytes());
    Ok(true)
}

/// RFC 9208 4.2.
pub fn get_quota_root(s: &mut Session, tag: &Tag, m: &Mailbox) {
    // The name must be a valid one; like Dovecot, the mailbox need not
    // exist (every name is under the user's root).
    if let Err(why) = store_name(s, m) {
        super::bad_name(s, tag, &why);
        return;
    }
    let limited = !s.store.options().quota.is_unlimited();
    s.out.extend_from_slice(b"* QUOTAROOT ");
    proto::imap::response::write_astring(&mut s.out, m.bytes());
    if limited {
        s.out.push(b' ');
        proto::imap::response::write_astring(&mut s.out, ROOT.as_bytes());
    }
    s.out.extend_from_slice(b"\r\n");
    match write_quota(s, tag) {
        Ok(true) => s.ok(tag, "Getquotaroot completed."),
        Ok(false) => s.ok(tag, "No quota."),
        Err(()) => {}
    }
}

/// RFC 9208 4.1.
pub fn get_quota(s: &mut Session, tag: &Tag, root: &AString) {
    if root.bytes != ROOT.as_bytes() || s.store.options().quota.is_unlimited() {
        // Dovecot's words
        s.no(tag, None, "Quota root doesn't exist.");
        return;
    }
    if let Ok(true) = write_quota(s, tag) {
        s.ok(tag, "Getquota completed.");
    }
}

/// RFC 9208 4.3: quotas are the administrator's.
pub fn set_quota(s: &mut Session, tag: &Tag) {
    s.no(
        tag,
        Some(ResponseCode::NoPerm),
        "Quota can be changed only by admin.",
    );
}
