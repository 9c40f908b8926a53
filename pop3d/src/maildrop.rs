//! The POP3 maildrop on the mailstore: the session's `Maildrop` over a
//! user's INBOX (mailstore::pop3), with the UIDL in pop3d_uidl_format.
//!
//! Owns opening the mailbox for a session (the one-session lock, the sync
//! that gives new mail its UIDs and moves it to cur/) and the UIDL format.
//! Does not own the protocol (session.rs) or the store (mailstore).
//!
//! Security: runs in the mailbox process, as the mailbox owner; mailstore
//! reaches every file through directory descriptors without following
//! links.
//!
//! Diagnostics: `OpenError` says why a session could not start (in use, or
//! a store error with the file).

use std::io::{self, Read};
use std::path::Path;

use mailstore::pop3::{self, Pop3Lock, Pop3LockError};
use mailstore::{Options, Store, StoreError};

use crate::session::{Maildrop, MessageInfo};

/// Why a session's mailbox could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another POP3 session holds it (RFC 2449 [IN-USE]).
    #[error("mailbox is locked by another POP3 session")]
    InUse,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The UIDL of a message, as pop3d_uidl_format says: %u UID, %v
/// UIDVALIDITY, %08Xu/%08Xv the same as eight hex digits (lower case, as
/// Dovecot prints them), %f the file's base name (the UID list's key),
/// %% a percent sign. Anything else is copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidlFormat(String);

impl UidlFormat {
    /// Dovecot's default, which mailstore also writes.
    pub const DOVECOT: &'static str = "%08Xu%08Xv";

    /// Check a format: it must name the UID (or the file) so that each
    /// message gets its own UIDL.
    pub fn parse(f: &str) -> Result<UidlFormat, String> {
        if !(f.contains("%u") || f.contains("%08Xu") || f.contains("%f")) {
            return Err(format!(
                "pop3d_uidl_format {f:?} names neither %u nor %f: messages would share UIDLs"
            ));
        }
        Ok(UidlFormat(f.to_string()))
    }

    pub fn format(&self, uid: u32, uidvalidity: u32, base: &str) -> String {
        let mut out = String::with_capacity(24);
        let mut rest = self.0.as_str();
        while let Some(i) = rest.find('%') {
            out.push_str(&rest[..i]);
            let r = &rest[i..];
            let (text, used) = if r.starts_with("%08Xu") {
                (format!("{uid:08x}"), 5)
            } else if r.starts_with("%08Xv") {
                (format!("{uidvalidity:08x}"), 5)
            } else if r.starts_with("%u") {
                (uid.to_string(), 2)
            } else if r.starts_with("%v") {
                (uidvalidity.to_string(), 2)
            } else if r.starts_with("%f") {
                (base.to_string(), 2)
            } else if r.starts_with("%%") {
                ("%".to_string(), 2)
            } else {
                ("%".to_string(), 1)
            };
            out.push_str(&text);
            rest = &r[used..];
        }
        out.push_str(rest);
        // RFC 1939 7: 0x21..0x7E, at most 70 characters.
        out.retain(|c| ('!'..='~').contains(&c));
        out.truncate(70);
        out
    }
}

/// A session's maildrop: INBOX, locked for this session. A user whose
/// Maildir does not exist yet (no mail has arrived, and the mailbox owner
/// may not create its home) has an empty maildrop, as with Dovecot.
pub struct StoreMaildrop {
    /// The INBOX and its session lock; None for a Maildir not made yet.
    inner: Option<(pop3::Maildrop, Pop3Lock)>,
    uids: Vec<u32>,
    list: Vec<MessageInfo>,
}

impl StoreMaildrop {
    /// Open `maildir` (made if missing, with the special-use folders),
    /// take the POP3 lock, sync and list INBOX. Blocking: run on the pool.
    pub fn open(
        maildir: &Path,
        options: Options,
        format: &UidlFormat,
    ) -> Result<StoreMaildrop, OpenError> {
        let store = match Store::open_with(maildir, options) {
            Ok(s) => s,
            // Not there, and not ours to make (the home's parent is root's):
            // nothing has been delivered yet.
            Err(_) if !maildir.exists() => {
                return Ok(StoreMaildrop {
                    inner: None,
                    uids: Vec::new(),
                    list: Vec::new(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let lock = match pop3::lock(&store) {
            Ok(l) => l,
            Err(Pop3LockError::InUse) => return Err(OpenError::InUse),
            Err(Pop3LockError::Store(e)) => return Err(e.into()),
        };
        let mut inner = pop3::Maildrop::open(&store)?;
        let default = format.0 == UidlFormat::DOVECOT;
        let uidv = inner.folder().uid_validity();
        let mut list = Vec::with_capacity(inner.messages().len());
        let mut uids = Vec::with_capacity(inner.messages().len());
        let msgs = inner.messages().to_vec();
        for m in msgs {
            let dovecot = format!("{:08x}{uidv:08x}", m.uid);
            // A UIDL from the list's P field (a migrated mailbox) is kept.
            let uidl = if default || m.uidl != dovecot {
                m.uidl.clone()
            } else {
                let base = inner
                    .folder()
                    .message(m.uid)
                    .map(|x| x.base.clone())
                    .unwrap_or_default();
                format.format(m.uid, uidv, &base)
            };
            uids.push(m.uid);
            list.push(MessageInfo { size: m.size, uidl });
        }
        Ok(StoreMaildrop {
            inner: Some((inner, lock)),
            uids,
            list,
        })
    }
}

impl Maildrop for StoreMaildrop {
    fn messages(&self) -> &[MessageInfo] {
        &self.list
    }

    fn open(&mut self, n: usize) -> io::Result<Box<dyn Read + Send>> {
        let uid = *self
            .uids
            .get(n)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such message"))?;
        let Some((inner, _)) = self.inner.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such message"));
        };
        match inner.retrieve(uid) {
            Ok(r) => Ok(Box::new(r)),
            Err(StoreError::Expunged(_)) | Err(StoreError::NoSuchMessage(_)) => Err(
                io::Error::new(io::ErrorKind::NotFound, "expunged by another session"),
            ),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }

    fn delete(&mut self, ns: &[usize]) -> io::Result<()> {
        let uids: Vec<u32> = ns
            .iter()
            .filter_map(|n| self.uids.get(*n).copied())
            .collect();
        let Some((inner, _)) = self.inner.as_mut() else {
            return Ok(());
        };
        inner
            .expunge(&uids)
            .map(drop)
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uidl_formats() {
        let d = UidlFormat::parse(UidlFormat::DOVECOT).unwrap();
        assert_eq!(d.format(10, 0x5f00_0001, "x"), "0000000a5f000001");
        let v = UidlFormat::parse("%v.%u").unwrap();
        assert_eq!(v.format(7, 1234, "x"), "1234.7");
        let f = UidlFormat::parse("%f").unwrap();
        assert_eq!(
            f.format(7, 1, "1700000000.M1P2.host,S=5,W=6"),
            "1700000000.M1P2.host,S=5,W=6"
        );
        let p = UidlFormat::parse("a%%b %u%q").unwrap();
        assert_eq!(
            p.format(1, 2, ""),
            "a%b1%q",
            "spaces dropped, unknown % copied"
        );
        assert!(UidlFormat::parse("%v").is_err());
        let long = UidlFormat::parse(&"%f".repeat(3)).unwrap();
        assert_eq!(long.format(1, 1, &"y".repeat(50)).len(), 70);
    }
}
