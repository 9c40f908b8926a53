//! Date: and Message-ID: for submitted mail that lacks them (RFC 6409 8.2
//! and 8.3), added at the end of the header section while the message
//! streams to the queue file.
//!
//! Owns finding where the header section ends and whether Date: and
//! Message-ID: are in it: lines are fields (`name:`, the name printable
//! ASCII without a colon) or continuations (starting with a space or tab);
//! the first other line (the empty line before the body, or anything else)
//! ends the section, and the missing fields go just before it. A message
//! that is all header gets them at its end. Does not own which messages
//! get them (the session: those of an authenticated client) or the values
//! (the session: `<YYYYMMDDhhmmss.QUEUEID@myhostname>` and the time of
//! arrival).
//!
//! Bounded: a line's start is held back only until it is known to be a
//! field or not, at most MAX_NAME bytes (a longer name counts as a field);
//! everything else passes through as it comes. Bytes out are the bytes in,
//! in order, plus the added fields.
//!
//! Standards: RFC 5322 2.2 (field names: printable US-ASCII but colon),
//! 2.2.3 (folding), 3.6 (Date: and Message-ID: are required); RFC 6409 8.

/// The longest field name looked at.
const MAX_NAME: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// At the start of a line (nothing of it seen).
    Start,
    /// Reading what may be a field name (held back in `pending`).
    Name,
    /// A field or continuation line: passes through to its end.
    Header,
}

/// The scanner of one message.
#[derive(Debug)]
pub struct MissingHeaders {
    /// The fields to add, each with its CRLF, when their name is missing.
    date: Vec<u8>,
    message_id: Vec<u8>,
    has_date: bool,
    has_message_id: bool,
    line: Line,
    pending: Vec<u8>,
    /// The header section has ended (and the fields are out).
    done: bool,
    /// The last byte passed on was LF (or nothing has been).
    at_line_end: bool,
}

impl MissingHeaders {
    /// `date` and `message_id` are the whole field lines to add, without
    /// their CRLF.
    pub fn new(date: String, message_id: String) -> MissingHeaders {
        MissingHeaders {
            date: format!("{date}\r\n").into_bytes(),
            message_id: format!("{message_id}\r\n").into_bytes(),
            has_date: false,
            has_message_id: false,
            line: Line::Start,
            pending: Vec::new(),
            done: false,
            at_line_end: true,
        }
    }

    /// Message bytes in (CRLF line ends, as queued); what to write out.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.done {
            out.extend_from_slice(data);
            return;
        }
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            match self.line {
                Line::Start => {
                    if b == b' ' || b == b'\t' {
                        self.line = Line::Header;
                    } else if is_name_byte(b) {
                        self.line = Line::Name;
                        self.pending.push(b);
                        i += 1;
                        continue;
                    } else {
                        // An empty line or not a field: the section ends here.
                        self.end(out);
                        out.extend_from_slice(&data[i..]);
                        return;
                    }
                }
                Line::Name => {
                    if b == b':' {
                        self.note_field();
                        self.pending.push(b);
                        out.append(&mut self.pending);
                        self.line = Line::Header;
                        self.at_line_end = false;
                        i += 1;
                        continue;
                    } else if is_name_byte(b) && self.pending.len() < MAX_NAME {
                        self.pending.push(b);
                        i += 1;
                        continue;
                    } else if is_name_byte(b) {
                        // Too long to be a name worth reading: a field.
                        out.append(&mut self.pending);
                        self.line = Line::Header;
                    } else {
                        // Not a field line: the section ended before it.
                        self.end(out);
                        out.extend_from_slice(&data[i..]);
                        return;
                    }
                }
                Line::Header => {}
            }
            // Inside a field line: pass it on up to its end.
            let rest = &data[i..];
            match rest.iter().position(|&c| c == b'\n') {
                Some(p) => {
                    out.extend_from_slice(&rest[..=p]);
                    self.at_line_end = true;
                    self.line = Line::Start;
                    i += p + 1;
                }
                None => {
                    out.extend_from_slice(rest);
                    self.at_line_end = rest.last() == Some(&b'\n');
                    return;
                }
            }
        }
    }

    /// The message is complete: a message that is all header gets the
    /// fields at its end.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !self.pending.is_empty() {
            // A last line that never became a field (no colon, no end).
            self.end(out);
            return;
        }
        if !self.at_line_end {
            out.extend_from_slice(b"\r\n");
        }
        self.end(out);
    }

    /// The header section ends here: the missing fields, then whatever was
    /// held back of the line that ended it.
    fn end(&mut self, out: &mut Vec<u8>) {
        self.done = true;
        if !self.has_date {
            out.extend_from_slice(&self.date);
        }
        if !self.has_message_id {
            out.extend_from_slice(&self.message_id);
        }
        out.append(&mut self.pending);
    }

    fn note_field(&mut self) {
        if self.pending.eq_ignore_ascii_case(b"date") {
            self.has_date = true;
        } else if self.pending.eq_ignore_ascii_case(b"message-id") {
            self.has_message_id = true;
        }
    }
}

/// RFC 5322 2.2: ftext, printable US-ASCII but the colon.
fn is_name_byte(b: u8) -> bool {
    (33..=126).contains(&b) && b != b':'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(msg: &[u8], split: usize) -> String {
        let mut h = MissingHeaders::new("Date: D".into(), "Message-ID: <M>".into());
        let mut out = Vec::new();
        if split == 0 {
            h.feed(msg, &mut out);
        } else {
            for c in msg.chunks(split) {
                h.feed(c, &mut out);
            }
        }
        h.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn all_splits(msg: &str, want: &str) {
        for split in [0, 1, 2, 3, 7] {
            assert_eq!(
                run(msg.as_bytes(), split),
                want,
                "{msg:?} in pieces of {split}"
            );
        }
    }

    #[test]
    fn added_at_the_end_of_the_header_section() {
        all_splits(
            "Subject: a\r\n b\r\nTo: x\r\n\r\nbody\r\nDate: not a header\r\n",
            "Subject: a\r\n b\r\nTo: x\r\nDate: D\r\nMessage-ID: <M>\r\n\r\nbody\r\nDate: not a header\r\n",
        );
    }

    #[test]
    fn present_ones_are_kept_in_any_case() {
        all_splits(
            "date: Sun, 29 Nov 2026\r\nMESSAGE-ID: <a@b>\r\n\r\nx\r\n",
            "date: Sun, 29 Nov 2026\r\nMESSAGE-ID: <a@b>\r\n\r\nx\r\n",
        );
        all_splits(
            "Message-Id: <a@b>\r\n\r\nx\r\n",
            "Message-Id: <a@b>\r\nDate: D\r\n\r\nx\r\n",
        );
        // A field name that only starts like one is another field.
        all_splits(
            "Dates: x\r\nMessage-IDs: y\r\n\r\n",
            "Dates: x\r\nMessage-IDs: y\r\nDate: D\r\nMessage-ID: <M>\r\n\r\n",
        );
    }

    #[test]
    fn odd_messages() {
        // No header at all: the fields come first.
        all_splits("\r\nbody\r\n", "Date: D\r\nMessage-ID: <M>\r\n\r\nbody\r\n");
        // A first line that is not a field ends the section at once.
        all_splits(
            "hello world\r\n",
            "Date: D\r\nMessage-ID: <M>\r\nhello world\r\n",
        );
        // All header: the fields at the end; a last line without its
        // CRLF gets one.
        all_splits(
            "Subject: s\r\n",
            "Subject: s\r\nDate: D\r\nMessage-ID: <M>\r\n",
        );
        all_splits("Subject: s", "Subject: s\r\nDate: D\r\nMessage-ID: <M>\r\n");
        // A last line that never became a field.
        all_splits(
            "Subject: s\r\nnocolon",
            "Subject: s\r\nDate: D\r\nMessage-ID: <M>\r\nnocolon",
        );
        // Empty message.
        all_splits("", "Date: D\r\nMessage-ID: <M>\r\n");
        // A very long name counts as a field.
        let long = format!("{}: v\r\n\r\n", "X".repeat(300));
        all_splits(
            &long,
            &format!(
                "{}: v\r\nDate: D\r\nMessage-ID: <M>\r\n\r\n",
                "X".repeat(300)
            ),
        );
    }
}
