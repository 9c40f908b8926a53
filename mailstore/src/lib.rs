//! Mailbox storage shared by local delivery, imapd and pop3d.
//!
//! Now: delivering into Maildir (and mbox). Later: the UID index, flags,
//! keywords and folders that IMAP needs.

pub mod maildir;
pub mod mbox;

pub use maildir::Maildir;

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
