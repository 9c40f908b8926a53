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

#[cfg(test)]
mod tests {
    use super::*;

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
