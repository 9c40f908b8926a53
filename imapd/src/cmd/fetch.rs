//! FETCH and UID FETCH.
//!
//! Standards: RFC 3501 6.4.5 and 7.4.2 (items, \Seen set by BODY[] and
//! RFC822/RFC822.TEXT but not by .PEEK or RFC822.HEADER, FLAGS sent when
//! that changes them, UID FETCH always includes UID); RFC 9051 6.4.5;
//! RFC 3516 (BINARY, BINARY.SIZE, literal8, UNKNOWN-CTE); RFC 7162 3.1.4
//! (MODSEQ, CHANGEDSINCE; MODSEQ in every FETCH once CONDSTORE is on; both
//! enable CONDSTORE), 3.2.6 (UID FETCH VANISHED: `* VANISHED (EARLIER)`
//! first; BAD without ENABLE QRESYNC).
//!
//! Diagnostics: a message that cannot be read is logged and left out of
//! the response, which ends NO [SERVERBUG]; an expunged one gives
//! NO [EXPUNGEISSUED] after the others, as Dovecot does.

use std::io::Read;
use std::time::UNIX_EPOCH;

use mailstore::{FlagUpdate, Flags, StoreError};
use proto::imap::{FetchAttr, FetchModifiers, ResponseCode, SectionText, SequenceSet, Tag};

use super::select::{intersect, set_ranges, subtract};
use super::{resolve, seq_set_in_range};
use crate::mime::{self, ParsedMessage};
use crate::session::view::{write_vanished_earlier, View};
use crate::session::Session;

/// System flags as IMAP names them, in Dovecot's order.
const SYSTEM: [(Flags, &str); 5] = [
    (Flags::REPLIED, "\\Answered"),
    (Flags::FLAGGED, "\\Flagged"),
    (Flags::TRASHED, "\\Deleted"),
    (Flags::SEEN, "\\Seen"),
    (Flags::DRAFT, "\\Draft"),
];

/// `(\Seen $Label1)` for a message of the view (\Recent when this
/// session holds it).
pub fn write_flags(view: &mut View, uid: u32, out: &mut Vec<u8>) {
    let keywords = view.folder.keyword_names(uid).unwrap_or_default();
    out.push(b'(');
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b' ');
        }
        first = false;
    };
    if let Some(m) = view.folder.message(uid) {
        for (f, name) in SYSTEM {
            if m.flags.contains(f) {
                sep(out);
                out.extend_from_slice(name.as_bytes());
            }
        }
        if m.recent {
            sep(out);
            out.extend_from_slice(b"\\Recent");
        }
        for name in &keywords {
            sep(out);
            out.extend_from_slice(name.as_bytes());
        }
    }
    out.push(b')');
}

fn needs_body(a: &FetchAttr) -> bool {
    !matches!(
        a,
        FetchAttr::Flags
            | FetchAttr::Uid
            | FetchAttr::InternalDate
            | FetchAttr::Rfc822Size
            | FetchAttr::ModSeq
    )
}

fn needs_parse(a: &FetchAttr) -> bool {
    match a {
        FetchAttr::Envelope
        | FetchAttr::Body
        | FetchAttr::BodyStructure
        | FetchAttr::Binary { .. }
        | FetchAttr::BinarySize { .. } => true,
        FetchAttr::BodySection { section, .. } => {
            !section.part.is_empty() || section.text.is_some()
        }
        FetchAttr::Rfc822Header | FetchAttr::Rfc822Text => true,
        _ => false,
    }
}

/// Does fetching this set \Seen (RFC 3501 6.4.5)?
fn sets_seen(a: &FetchAttr) -> bool {
    match a {
        FetchAttr::Rfc822 | FetchAttr::Rfc822Text => true,
        FetchAttr::BodySection { peek, .. } | FetchAttr::Binary { peek, .. } => !peek,
        _ => false,
    }
}

fn to_mime(s: &proto::imap::Section) -> mime::Section {
    mime::Section {
        part: s.part.clone(),
        text: s.text.as_ref().map(|t| match t {
            SectionText::Header => mime::SectionText::Header,
            SectionText::HeaderFields(f) => mime::SectionText::HeaderFields(f.clone()),
            SectionText::HeaderFieldsNot(f) => mime::SectionText::HeaderFieldsNot(f.clone()),
            SectionText::Text => mime::SectionText::Text,
            SectionText::Mime => mime::SectionText::Mime,
        }),
    }
}

/// The section spec as the response names it (`BODY[1.HEADER.FIELDS
/// (FROM)]`).
fn section_name(s: &proto::imap::Section) -> String {
    let mut n: Vec<String> = s.part.iter().map(|p| p.to_string()).collect();
    if let Some(t) = &s.text {
        n.push(match t {
            SectionText::Header => "HEADER".into(),
            SectionText::Text => "TEXT".into(),
            SectionText::Mime => "MIME".into(),
            SectionText::HeaderFields(f) => format!("HEADER.FIELDS ({})", f.join(" ")),
            SectionText::HeaderFieldsNot(f) => format!("HEADER.FIELDS.NOT ({})", f.join(" ")),
        });
    }
    n.join(".")
}

/// The message's bytes with CRLF line ends.
fn read_crlf(view: &mut View, uid: u32) -> Result<Vec<u8>, StoreError> {
    let f = view.folder.open_message(uid)?;
    let mut r = mailstore::pop3::CrlfReader::new(f);
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|e| StoreError::Io {
        path: view.folder.path().to_path_buf(),
        source: e,
    })?;
    Ok(out)
}

/// Write `data` as a literal (`~{n}` literal8 when `binary`).
fn literal(out: &mut Vec<u8>, data: &[u8], binary: bool) {
    if binary {
        out.push(b'~');
    }
    out.extend_from_slice(format!("{{{}}}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
}

/// RFC 7162 3.2.6: the UIDs of the UID FETCH set expunged since `since`.
/// `*` reaches to the largest UID there could have been. UIDs the
/// session still shows (expunged, not yet reported) are left to the
/// VANISHED at the end of the command.
fn vanished_earlier(
    view: &View,
    set: &[(proto::imap::SeqNum, proto::imap::SeqNum)],
    since: u64,
    out: &mut Vec<u8>,
) {
    let wanted = set_ranges(set, u32::MAX);
    let v = view.folder.expunged_since(since);
    let shown: Vec<(u32, u32)> = view.uids.iter().map(|&u| (u, u)).collect();
    let gone = subtract(&intersect(&v.uids, &wanted), &shown);
    write_vanished_earlier(out, &gone);
}

pub fn fetch(
    s: &mut Session,
    tag: &Tag,
    uid: bool,
    set: &SequenceSet,
    attrs: &[FetchAttr],
    modifiers: &FetchModifiers,
) {
    if !uid && !seq_set_in_range(s, set) {
        s.bad(tag, "Error in IMAP command FETCH: Invalid messageset");
        return;
    }
    // RFC 7162 3.2.6: VANISHED needs ENABLE QRESYNC (the parser has
    // checked it comes with UID FETCH and CHANGEDSINCE).
    if modifiers.vanished && !s.enabled.qresync {
        s.bad(tag, "Error in IMAP command UID FETCH: QRESYNC not enabled");
        return;
    }
    let uids = resolve(s, set, uid);
    if modifiers.changed_since.is_some() || attrs.contains(&FetchAttr::ModSeq) {
        super::misc::enable_condstore(s);
    }
    let condstore = s.enabled.condstore;
    let Some(view) = s.selected.as_mut() else {
        return;
    };
    if let (true, Some(since), SequenceSet::Ranges(r)) =
        (modifiers.vanished, modifiers.changed_since, set)
    {
        vanished_earlier(view, r, since, &mut s.out);
    }
    let body = attrs.iter().any(needs_body);
    let parse = attrs.iter().any(needs_parse);
    let seen = !view.read_only && attrs.iter().any(sets_seen);
    let want_modseq = condstore || attrs.contains(&FetchAttr::ModSeq);
    let mut expunged = false;
    let mut failed = false;
    // RFC 3516 4.2: a part whose encoding cannot be undone.
    let mut unknown_cte = false;
    let mut log = Vec::new();
    // \Seen first, under one lock, for the messages that lack it.
    if seen {
        let updates: Vec<FlagUpdate> = uids
            .iter()
            .filter_map(|&u| view.folder.message(u))
            .filter(|m| !m.flags.contains(Flags::SEEN))
            .map(|m| {
                let mut flags = m.flags;
                flags.insert(Flags::SEEN);
                FlagUpdate {
                    uid: m.uid,
                    flags,
                    keywords: Vec::new(),
                }
            })
            .collect();
        if !updates.is_empty() {
            // Keywords must be given by name: keep each message's.
            let updates: Vec<FlagUpdate> = updates
                .into_iter()
                .map(|mut u| {
                    u.keywords = view.folder.keyword_names(u.uid).unwrap_or_default();
                    u
                })
                .collect();
            if let Err(e) = view.folder.set_flags_many(&updates) {
                log.push(format!("setting \\Seen: {e}"));
            }
        }
    }
    let out = &mut s.out;
    for &u in &uids {
        if view.is_gone(u) || view.folder.message(u).is_none() {
            expunged = true;
            continue;
        }
        if let Some(since) = modifiers.changed_since {
            if view.folder.modseq(u).unwrap_or(0) <= since {
                continue;
            }
        }
        let Some(seq) = view.seq_of(u) else { continue };
        let raw = if body {
            match read_crlf(view, u) {
                Ok(r) => Some(r),
                Err(StoreError::Expunged(_) | StoreError::NoSuchMessage(_)) => {
                    expunged = true;
                    continue;
                }
                Err(e) => {
                    log.push(format!("UID {u}: {e}"));
                    failed = true;
                    continue;
                }
            }
        } else {
            None
        };
        let parsed = match (&raw, parse) {
            (Some(r), true) => Some(ParsedMessage::parse(r)),
            _ => None,
        };
        let start = out.len();
        out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
        let mut items = 0;
        let mut item = |out: &mut Vec<u8>| {
            if items > 0 {
                out.push(b' ');
            }
            items += 1;
        };
        if uid && !attrs.contains(&FetchAttr::Uid) {
            item(out);
            out.extend_from_slice(format!("UID {u}").as_bytes());
        }
        let mut flags_sent = false;
        for a in attrs {
            item(out);
            match a {
                FetchAttr::Uid => out.extend_from_slice(format!("UID {u}").as_bytes()),
                FetchAttr::Flags => {
                    out.extend_from_slice(b"FLAGS ");
                    write_flags(view, u, out);
                    flags_sent = true;
                }
                FetchAttr::ModSeq => {
                    let m = view.folder.modseq(u).unwrap_or(1);
                    view.modseq_sent(m);
                    out.extend_from_slice(format!("MODSEQ ({m})").as_bytes());
                }
                FetchAttr::InternalDate => {
                    let t = view
                        .folder
                        .internal_date(u)
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs() as i64);
                    out.extend_from_slice(b"INTERNALDATE \"");
                    out.extend_from_slice(proto::imap::response::format_date_time(t, 0).as_bytes());
                    out.push(b'"');
                }
                FetchAttr::Rfc822Size => {
                    let size = match &raw {
                        Some(r) => r.len() as u64,
                        None => view.folder.vsize(u).unwrap_or(0),
                    };
                    out.extend_from_slice(format!("RFC822.SIZE {size}").as_bytes());
                }
                FetchAttr::Envelope => {
                    out.extend_from_slice(b"ENVELOPE ");
                    if let Some(p) = &parsed {
                        out.extend_from_slice(&p.envelope());
                    }
                }
                FetchAttr::Body => {
                    out.extend_from_slice(b"BODY ");
                    if let Some(p) = &parsed {
                        out.extend_from_slice(&p.body_structure(false));
                    }
                }
                FetchAttr::BodyStructure => {
                    out.extend_from_slice(b"BODYSTRUCTURE ");
                    if let Some(p) = &parsed {
                        out.extend_from_slice(&p.body_structure(true));
                    }
                }
                FetchAttr::Rfc822 => {
                    out.extend_from_slice(b"RFC822 ");
                    literal(out, raw.as_deref().unwrap_or_default(), false);
                }
                FetchAttr::Rfc822Header | FetchAttr::Rfc822Text => {
                    let (name, text) = if *a == FetchAttr::Rfc822Header {
                        ("RFC822.HEADER ", mime::SectionText::Header)
                    } else {
                        ("RFC822.TEXT ", mime::SectionText::Text)
                    };
                    out.extend_from_slice(name.as_bytes());
                    let data = parsed.as_ref().and_then(|p| {
                        p.section(&mime::Section {
                            part: Vec::new(),
                            text: Some(text),
                        })
                        .map(|c| c.into_owned())
                    });
                    literal(out, data.as_deref().unwrap_or_default(), false);
                }
                FetchAttr::BodySection {
                    section, partial, ..
                } => {
                    let whole;
                    let data: &[u8] = if section.part.is_empty() && section.text.is_none() {
                        raw.as_deref().unwrap_or_default()
                    } else {
                        whole = parsed
                            .as_ref()
                            .and_then(|p| p.section(&to_mime(section)).map(|c| c.into_owned()))
                            .unwrap_or_default();
                        &whole
                    };
                    out.extend_from_slice(format!("BODY[{}]", section_name(section)).as_bytes());
                    let data = match partial {
                        Some(p) => {
                            out.extend_from_slice(format!("<{}>", p.offset).as_bytes());
                            mime::partial(data, u64::from(p.offset), Some(u64::from(p.length)))
                        }
                        None => data,
                    };
                    out.push(b' ');
                    literal(out, data, false);
                }
                FetchAttr::Binary { part, partial, .. } => {
                    let name: Vec<String> = part.iter().map(|p| p.to_string()).collect();
                    out.extend_from_slice(format!("BINARY[{}]", name.join(".")).as_bytes());
                    match parsed.as_ref().and_then(|p| p.binary(part)) {
                        Some(Ok(b)) => {
                            let data = match partial {
                                Some(p) => {
                                    out.extend_from_slice(format!("<{}>", p.offset).as_bytes());
                                    mime::partial(
                                        &b.data,
                                        u64::from(p.offset),
                                        Some(u64::from(p.length)),
                                    )
                                }
                                None => &b.data,
                            };
                            out.push(b' ');
                            literal(out, data, b.literal8);
                        }
                        Some(Err(_)) => {
                            unknown_cte = true;
                            break;
                        }
                        None => {
                            out.extend_from_slice(b" \"\"");
                        }
                    }
                }
                FetchAttr::BinarySize { part } => {
                    let name: Vec<String> = part.iter().map(|p| p.to_string()).collect();
                    let size = parsed
                        .as_ref()
                        .map_or(Ok(0), |p| p.binary_size(part))
                        .unwrap_or(0);
                    out.extend_from_slice(
                        format!("BINARY.SIZE[{}] {size}", name.join(".")).as_bytes(),
                    );
                }
            }
        }
        if unknown_cte {
            out.truncate(start);
            break;
        }
        // RFC 3501 6.4.5: a \Seen set by this FETCH is reported with it.
        if seen && !flags_sent {
            item(out);
            out.extend_from_slice(b"FLAGS ");
            write_flags(view, u, out);
        }
        if want_modseq && !attrs.contains(&FetchAttr::ModSeq) {
            // `item` would add the space `write_modseq` brings.
            view.write_modseq(u, out);
        }
        out.extend_from_slice(b")\r\n");
        if seen {
            view.flags_reported(u);
        }
    }
    for l in log {
        s.log_line(format!("user={}: FETCH {l}", s.user));
    }
    if unknown_cte {
        s.out.extend_from_slice(tag.as_str().as_bytes());
        s.out
            .extend_from_slice(b" NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding.\r\n");
    } else if failed {
        s.no(
            tag,
            Some(ResponseCode::ServerBug),
            "Internal error occurred. Refer to server log for more information.",
        );
    } else if expunged {
        s.no(
            tag,
            Some(ResponseCode::ExpungeIssued),
            "Some messages were also expunged.",
        );
    } else {
        s.ok(tag, "Fetch completed.");
    }
}
