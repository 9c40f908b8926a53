//! APPEND, with MULTIAPPEND.
//!
//! The reader (proto::imap) streams each message literal as events; the
//! messages are gathered here and stored together when the command ends
//! (RFC 3502 6: all or none), with their flags, keywords and date.
//!
//! Standards: RFC 3501 6.3.11 (NO [TRYCREATE] when the mailbox does not
//! exist; the date-time is INTERNALDATE), RFC 3502 (MULTIAPPEND), RFC 4315
//! 3 (APPENDUID), RFC 7889 (APPENDLIMIT: larger messages are refused by
//! the reader before they are sent), RFC 9051 6.3.12.
//!
//! Bounds: everything one APPEND command carries is held until it ends;
//! its total is bounded by APPENDLIMIT (the reader bounds each message,
//! this module the sum): past it the command fails NO [TOOBIG] and the
//! rest of its data is dropped as it arrives.

use std::time::{Duration, UNIX_EPOCH};

use mailstore::folder::AppendMessage;
use mailstore::Flags;
use proto::imap::{DateTime, Flag, Mailbox, ResponseCode, Status, Tag};

use super::store_name;
use crate::session::{Append, Session};

/// One message received, waiting for the command's end.
struct Received {
    data: Vec<u8>,
    flags: Vec<Flag>,
    date: Option<i64>,
}

pub fn start(s: &mut Session, tag: Tag, m: &Mailbox) {
    let (mailbox, failed) = match store_name(s, m) {
        Ok(n) => match s.store.exists(&n) {
            Ok(true) => (n, None),
            Ok(false) => (
                n,
                Some(
                    Status::no(Some(&tag), "Mailbox doesn't exist.")
                        .with_code(ResponseCode::TryCreate),
                ),
            ),
            Err(e) => {
                s.log_line(format!("user={}: APPEND: {e}", s.user));
                (
                    n,
                    Some(
                        Status::no(Some(&tag), "Internal error occurred.")
                            .with_code(ResponseCode::ServerBug),
                    ),
                )
            }
        },
        Err(why) => (String::new(), Some(Status::no(Some(&tag), why))),
    };
    s.set_state_append(Box::new(Append {
        tag,
        mailbox,
        message: Vec::new(),
        flags: Vec::new(),
        date: None,
        uids: Vec::new(),
        uid_validity: 0,
        failed,
        received: Vec::new(),
        total: 0,
    }));
}

pub fn message(s: &mut Session, flags: Vec<Flag>, date: Option<DateTime>, size: u64) {
    let limit = s.config().limits.max_literal;
    let mut reject = false;
    if let Some(a) = s.append_mut() {
        if a.failed.is_none() && a.total.saturating_add(size) > limit {
            a.failed =
                Some(Status::no(Some(&a.tag), "Message too big.").with_code(ResponseCode::TooBig));
        }
        // RFC 3501 6.3.11: refuse before the client sends the message.
        reject = a.failed.is_some();
        a.total = a.total.saturating_add(size);
        a.flags = flags;
        a.date = date.map(|d| d.unix_seconds());
        a.message = Vec::with_capacity(usize::try_from(size.min(1 << 20)).unwrap_or(0));
    }
    if reject {
        s.reader_mut().reject_append();
        // The reader will read a new command: answer now.
        if let Some(a) = s.take_append() {
            if let Some(st) = a.failed {
                st.write(&mut s.out);
            }
        }
    }
}

pub fn message_end(s: &mut Session) {
    if let Some(a) = s.append_mut() {
        let data = std::mem::take(&mut a.message);
        let flags = std::mem::take(&mut a.flags);
        a.received.push((data, flags, a.date.take()));
    }
}

pub fn end(s: &mut Session) {
    let Some(mut a) = s.take_append() else {
        return;
    };
    if let Some(st) = a.failed.take() {
        st.write(&mut s.out);
        return;
    }
    // Dovecot's cmd-append.c: an empty message is refused, none stored.
    if a.received.iter().any(|(data, _, _)| data.is_empty()) {
        return s.no(&a.tag, None, "Can't save a zero byte message.");
    }
    let mut folder = match s.store.folder(&a.mailbox, mailstore::Access::ReadWrite) {
        Ok(f) => f,
        Err(e) => return s.store_error(&a.tag, &e),
    };
    let received: Vec<Received> = a
        .received
        .drain(..)
        .map(|(data, flags, date)| Received { data, flags, date })
        .collect();
    let mut readers: Vec<&[u8]> = received.iter().map(|r| r.data.as_slice()).collect();
    let mut msgs: Vec<AppendMessage<'_>> = Vec::with_capacity(received.len());
    for (r, reader) in received.iter().zip(readers.iter_mut()) {
        let mut flags = Flags::empty();
        let mut keywords = Vec::new();
        for f in &r.flags {
            match f {
                Flag::Seen => flags.insert(Flags::SEEN),
                Flag::Answered => flags.insert(Flags::REPLIED),
                Flag::Flagged => flags.insert(Flags::FLAGGED),
                Flag::Deleted => flags.insert(Flags::TRASHED),
                Flag::Draft => flags.insert(Flags::DRAFT),
                Flag::Keyword(k) => keywords.push(k.clone()),
                _ => {}
            }
        }
        msgs.push(AppendMessage {
            message: reader,
            flags,
            keywords,
            internal_date: r
                .date
                .map(|secs| UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)),
        });
    }
    match folder.append_many(&mut msgs) {
        Ok(uids) => {
            let code = ResponseCode::AppendUid {
                uid_validity: folder.uid_validity(),
                uids,
            };
            // RFC 3501 6.3.11: a message appended to the selected folder
            // shows up at once, its EXISTS before the tagged OK (a client
            // that acts on the OK knows the new count).
            if s.selected
                .as_ref()
                .is_some_and(|v| v.folder.name() == a.mailbox)
            {
                s.sync_report(crate::session::view::Report::All);
            }
            s.ok_code(&a.tag, code, "Append completed.");
        }
        Err(e) => s.store_error(&a.tag, &e),
    }
}

/// A reader error ended the APPEND: nothing is stored.
pub fn abort(_s: &mut Session, _a: Append) {}
