//! Mailbox storage shared by local delivery, imapd and pop3d: Maildir++ as
//! Dovecot lays it out, so that a mailbox moves between Dovecot and
//! posthorn with its UIDs, flags, keywords, folders, subscriptions and
//! quota; and mbox delivery.
//!
//! Owns: `Store` (a user's Maildir: folders, subscriptions, quota; store.rs),
//! `Folder` (messages, UIDs, flags, expunge, append, copy; folder.rs),
//! `pop3` (the session lock and the maildrop), delivery into new/
//! (maildir.rs), the file formats (uidlist.rs, keywords.rs,
//! subscriptions.rs, quota.rs, filename.rs, names.rs) and the locks
//! (dotlock.rs). Does not own who a mailbox belongs to or the protocols.
//!
//! Standards: the Maildir specification; Maildir++ (folders, quota); RFC
//! 3501 2.3.1.1, 2.3.2, 5.1.3 (UIDs, flags, modified UTF-7); RFC 1939 and
//! 2449 (POP3 sizes, UIDL, [IN-USE]); RFC 6154 (special-use); Dovecot's
//! maildir storage formats (each module says which).
//!
//! Security: every file operation goes through directory descriptors
//! without following links (fsat.rs, common::privilege), as the mailbox
//! owner; every file read is bounded and every parser returns errors, never
//! panics (fuzz/: maildir_uidlist, maildir_keywords, maildirsize,
//! maildir_filename).
//!
//! Diagnostics: one error type, `StoreError`, whose messages name the file;
//! repairs (a rebuilt uidlist, a replaced stale lock, a fixed duplicate)
//! are logged as warnings.

pub mod dotlock;
pub mod error;
pub mod filename;
pub mod folder;
pub mod fsat;
pub mod keywords;
pub mod maildir;
pub mod mbox;
pub mod names;
pub mod pop3;
pub mod quota;
pub mod store;
pub mod subscriptions;
pub mod uidlist;
pub mod uidvalidity;

pub use error::{ParseError, StoreError};
pub use filename::{Flags, KeywordSet};
pub use folder::{Changes, FlagUpdate, Folder, Message};
pub use maildir::Maildir;
pub use names::{SpecialUse, INBOX};
pub use store::{Access, FolderInfo, Options, Store};

/// Convert CRLF to LF while streaming (a CR at the end of one chunk is held
/// until the next). Bare CR and bare LF pass unchanged.
#[derive(Debug, Default)]
pub struct CrlfToLf {
    pending_cr: bool,
}

impl CrlfToLf {
    /// Append `input`, converted, to `out`.
    pub fn convert(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if self.pending_cr {
                self.pending_cr = false;
                if b != b'\n' {
                    out.push(b'\r');
                }
            }
            if b == b'\r' {
                self.pending_cr = true;
            } else {
                out.push(b);
            }
        }
    }

    /// Flush a trailing CR.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

/// A reader that turns CRLF into LF on the way through (streaming, bounded
/// buffer): queue files keep SMTP's CRLF, mailboxes on disk use LF.
pub struct LfReader<R> {
    inner: R,
    conv: CrlfToLf,
    out: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl<R: std::io::Read> LfReader<R> {
    pub fn new(inner: R) -> LfReader<R> {
        LfReader {
            inner,
            conv: CrlfToLf::default(),
            out: Vec::with_capacity(16 * 1024 + 64),
            pos: 0,
            eof: false,
        }
    }
}

impl<R: std::io::Read> std::io::Read for LfReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.out.len() {
            if self.eof {
                return Ok(0);
            }
            self.out.clear();
            self.pos = 0;
            let mut chunk = [0u8; 16 * 1024];
            let n = self.inner.read(&mut chunk)?;
            if n == 0 {
                self.eof = true;
                self.conv.finish(&mut self.out);
            } else {
                self.conv.convert(&chunk[..n], &mut self.out);
            }
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn lf_reader_streams() {
        let mut r = LfReader::new(&b"a\r\nb\r"[..]);
        let mut out = Vec::new();
        let mut one = [0u8; 1];
        while r.read(&mut one).unwrap() == 1 {
            out.push(one[0]);
        }
        assert_eq!(out, b"a\nb\r");
    }

    #[test]
    fn crlf_any_split() {
        let input = b"a\r\nb\rc\n\r\r\nend\r";
        let mut whole = Vec::new();
        let mut c = CrlfToLf::default();
        c.convert(input, &mut whole);
        c.finish(&mut whole);
        assert_eq!(whole, b"a\nb\rc\n\r\nend\r");
        for split in 0..input.len() {
            let mut out = Vec::new();
            let mut c = CrlfToLf::default();
            c.convert(&input[..split], &mut out);
            c.convert(&input[split..], &mut out);
            c.finish(&mut out);
            assert_eq!(out, whole, "split at {split}");
        }
    }
}
