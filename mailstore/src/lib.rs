//! Mailbox storage shared by local delivery, imapd and pop3d: Maildir++ as
//! Dovecot lays it out, so that a mailbox moves between Dovecot and
//! posthorn with its UIDs, flags, keywords, folders, subscriptions and
//! quota; and mbox delivery.
//!
//! Owns: `Store` (a user's Maildir: folders, subscriptions, quota; store.rs),
//! `Folder` (messages, UIDs, flags, expunge, append, copy; folder.rs),
//! `pop3` (the session lock and the maildrop), delivery into new/
//! (maildir.rs), the file formats (uidlist.rs, keywords.rs,
//! subscriptions.rs, quota.rs, filename.rs, names.rs, modseq.rs for
//! IMAP's mod-sequences, expunge log and \Recent) and the locks
//! (dotlock.rs). Does not own who a mailbox belongs to or the protocols.
//!
//! Standards: the Maildir specification; Maildir++ (folders, quota); RFC
//! 3501 2.3.1.1, 2.3.2, 5.1.3 (UIDs, flags, \Recent, modified UTF-7); RFC
//! 7162 (mod-sequences, VANISHED); RFC 6851 (MOVE); RFC 1939 and
//! 2449 (POP3 sizes, UIDL, [IN-USE]); RFC 6154 (special-use); Dovecot's
//! maildir storage formats (each module says which).
//!
//! Security: every file operation goes through directory descriptors
//! without following links (fsat.rs, common::privilege), as the mailbox
//! owner; every file read is bounded and every parser returns errors, never
//! panics (fuzz/: maildir_uidlist, maildir_modseq, maildir_keywords,
//! maildirsize, maildir_filename).
//!
//! Diagnostics: one error type, `StoreError`, whose messages name the file;
//! repairs (a rebuilt uidlist or posthorn-modseq, a replaced stale lock, a
//! fixed duplicate) are logged as warnings.

pub mod dotlock;
pub mod error;
pub mod filename;
pub mod folder;
pub mod fsat;
pub mod keywords;
pub mod maildir;
pub mod mbox;
pub mod modseq;
pub mod names;
pub mod pop3;
pub mod quota;
pub mod store;
pub mod subscriptions;
pub(crate) mod tracker;
pub mod uidlist;
pub mod uidvalidity;
pub mod watcher;

pub use error::{ParseError, StoreError};
pub use filename::{Flags, KeywordSet};
pub use folder::{AppendMessage, Changes, FlagUpdate, Folder, Message};
pub use maildir::Maildir;
pub use modseq::Vanished;
pub use names::{SpecialUse, INBOX};
pub use store::{Access, FolderInfo, Options, Store};
pub use watcher::Watcher;

/// Convert CRLF to LF while streaming (a CR at the end of one chunk is held
/// until the next). Bare CR and bare LF pass unchanged.
#[derive(Debug, Default)]
pub struct CrlfToLf {
    pending_cr: bool,
}

impl CrlfToLf {
    /// Append `input`, converted, to `out`: the runs between CRs are
    /// copied whole.
    pub fn convert(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        let Some(&first) = input.first() else { return };
        if std::mem::take(&mut self.pending_cr) && first != b'\n' {
            out.push(b'\r');
        }
        out.reserve(input.len());
        while let Some(i) = find_cr(input) {
            out.extend_from_slice(&input[..i]);
            match input.get(i + 1) {
                // CR LF: the LF is copied with the next run.
                Some(b'\n') => {}
                Some(_) => out.push(b'\r'),
                None => {
                    self.pending_cr = true;
                    return;
                }
            }
            input = &input[i + 1..];
        }
        out.extend_from_slice(input);
    }

    /// Flush a trailing CR.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

/// The first CR in `s`, looking at eight bytes at a time (a message has a
/// CR about every 78 bytes; a byte loop costs several instructions each).
fn find_cr(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut words = s.chunks_exact(8);
    let mut at = 0;
    for w in words.by_ref() {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        // Zero bytes of v are the CRs of w (the classic has-zero-byte test;
        // its lowest flagged byte is always a real one).
        let v = u64::from_le_bytes(b) ^ (ONES * u64::from(b'\r'));
        let hit = v.wrapping_sub(ONES) & !v & HIGH;
        if hit != 0 {
            return Some(at + (hit.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = words.remainder();
    tail.iter().position(|&b| b == b'\r').map(|i| at + i)
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

    /// The byte-at-a-time definition the run-copying `convert` must match,
    /// on every string of up to 7 bytes over {a, CR, LF}, split anywhere.
    #[test]
    fn convert_matches_the_bytewise_definition() {
        fn reference(input: &[u8]) -> Vec<u8> {
            let (mut out, mut cr) = (Vec::new(), false);
            for &b in input {
                if std::mem::take(&mut cr) && b != b'\n' {
                    out.push(b'\r');
                }
                if b == b'\r' {
                    cr = true;
                } else {
                    out.push(b);
                }
            }
            if cr {
                out.push(b'\r');
            }
            out
        }
        let alphabet = [b'a', b'\r', b'\n'];
        for len in 0..=7u32 {
            for code in 0..3usize.pow(len) {
                let input: Vec<u8> = (0..len)
                    .map(|k| alphabet[code / 3usize.pow(k) % 3])
                    .collect();
                let want = reference(&input);
                for split in 0..=input.len() {
                    let (mut out, mut c) = (Vec::new(), CrlfToLf::default());
                    c.convert(&input[..split], &mut out);
                    c.convert(&input[split..], &mut out);
                    c.finish(&mut out);
                    assert_eq!(out, want, "{input:?} split at {split}");
                }
            }
        }
    }

    #[test]
    fn find_cr_finds_the_first() {
        for len in 0..40 {
            for cr in 0..=len {
                let mut v = vec![b'x'; len];
                // Bytes around CR (0x0c, 0x0e, 0x8d) must not count.
                for (i, b) in v.iter_mut().enumerate() {
                    *b = [b'x', 0x0c, 0x0e, 0x8d][i % 4];
                }
                if cr < len {
                    v[cr] = b'\r';
                    if cr + 3 < len {
                        v[cr + 3] = b'\r';
                    }
                }
                let want = v.iter().position(|&b| b == b'\r');
                assert_eq!(find_cr(&v), want, "len {len}, CR at {cr}");
            }
        }
    }
}
