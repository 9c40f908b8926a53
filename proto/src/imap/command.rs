//! IMAP command parsing: one complete command (its lines and literals) in,
//! a `Command` or a `CommandError` out.
//!
//! Owns the syntax of every command the server understands in any state
//! and the tag of a malformed one. Does not own which command is allowed
//! in which state, which extensions are enabled, or what names mean (the
//! session and the store decide; they may answer a well-formed command
//! with NO or BAD), nor the framing of commands on the stream or APPEND,
//! whose message literals are streamed by `reader`.
//!
//! Standards: RFC 3501 6 and 9 / RFC 9051 6 and 9 (the commands and their
//! syntax), RFC 7162 3.1.2, 3.1.3, 3.2.5 (CONDSTORE, UNCHANGEDSINCE,
//! QRESYNC), RFC 5258 3 (LIST-EXTENDED), RFC 5819 (LIST-STATUS), RFC 6154
//! 5.2-5.3 (SPECIAL-USE in LIST and CREATE), RFC 2971 3.1 (ID), RFC 5161
//! 3.1 (ENABLE), RFC 4978 3 (COMPRESS), RFC 4959 3 (SASL-IR), RFC 9208
//! 4.1-4.3 (GETQUOTA, GETQUOTAROOT, SETQUOTA), RFC 7889 (APPENDLIMIT
//! status item), RFC 6851 (MOVE), RFC 3691 (UNSELECT), RFC 2177 (IDLE),
//! RFC 4315 (UID EXPUNGE).
//!
//! Security: the command is untrusted and may be up to `Limits::max_line`
//! long; parsing allocates in proportion to it, nesting and list lengths
//! are bounded (`Lexer`). The tag is taken only when it is a valid tag, so
//! a reply never echoes bytes that are not ASTRING-CHARs.
//!
//! Diagnostics: nothing is logged; errors are `CommandError` values whose
//! `status()` is the BAD response to send.

use super::fetch::{fetch_attrs, fetch_modifiers, FetchAttr, FetchModifiers};
use super::lexer::Lexer;
use super::search::{
    search_args, sort_args, thread_args, SearchArgs, SortCriterion, ThreadAlgorithm,
};
use super::types::{is_atom_char, AString, Flag, Mailbox, SequenceSet, Tag};
use super::{CommandError, Limits, ParseError};

type R<T> = Result<T, ParseError>;

/// RFC 2971 3.1 ID parameters: (field, value) pairs.
pub type IdParams = Vec<(AString, Option<AString>)>;

/// RFC 2971 3.3: at most 30 field-value pairs in ID.
pub const MAX_ID_PAIRS: usize = 30;

/// A parsed command with its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub tag: Tag,
    pub body: CommandBody,
}

/// Every command but APPEND (see `reader::Event::AppendStart`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    Capability,
    Noop,
    Logout,
    StartTls,
    /// RFC 3501 6.2.2, RFC 4959 3: mechanism upper-cased; the initial
    /// response as sent (base64, or "=" for an empty one).
    Authenticate {
        mechanism: String,
        initial: Option<String>,
    },
    Login {
        user: AString,
        password: AString,
    },
    /// RFC 5161: capability names upper-cased.
    Enable(Vec<String>),
    Select {
        mailbox: Mailbox,
        params: SelectParams,
    },
    Examine {
        mailbox: Mailbox,
        params: SelectParams,
    },
    /// RFC 6154 5.3: CREATE name (USE (\Sent ...)).
    Create {
        mailbox: Mailbox,
        special_use: Vec<String>,
    },
    Delete(Mailbox),
    Rename {
        from: Mailbox,
        to: Mailbox,
    },
    Subscribe(Mailbox),
    Unsubscribe(Mailbox),
    List(ListArgs),
    Lsub {
        reference: Mailbox,
        pattern: AString,
    },
    Namespace,
    Status {
        mailbox: Mailbox,
        items: Vec<StatusItem>,
    },
    Check,
    Close,
    Unselect,
    Idle,
    Expunge,
    /// RFC 4315 2.1: UID EXPUNGE set.
    UidExpunge(SequenceSet),
    Search {
        uid: bool,
        args: SearchArgs,
    },
    Fetch {
        uid: bool,
        set: SequenceSet,
        attrs: Vec<FetchAttr>,
        modifiers: FetchModifiers,
    },
    Store {
        uid: bool,
        set: SequenceSet,
        /// RFC 7162 3.1.3.
        unchanged_since: Option<u64>,
        mode: StoreMode,
        silent: bool,
        flags: Vec<Flag>,
    },
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: Mailbox,
    },
    Move {
        uid: bool,
        set: SequenceSet,
        mailbox: Mailbox,
    },
    Sort {
        uid: bool,
        criteria: Vec<SortCriterion>,
        args: SearchArgs,
    },
    Thread {
        uid: bool,
        algorithm: ThreadAlgorithm,
        args: SearchArgs,
    },
    /// RFC 2971: None for NIL; (field, value) pairs otherwise.
    Id(Option<IdParams>),
    /// RFC 4978: the algorithm upper-cased.
    Compress(String),
    GetQuota(AString),
    GetQuotaRoot(Mailbox),
    /// RFC 9208 4.3: resource names upper-cased, limits.
    SetQuota {
        root: AString,
        limits: Vec<(String, u64)>,
    },
}

/// STORE's `+FLAGS`, `-FLAGS` or `FLAGS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Replace,
    Add,
    Remove,
}

/// RFC 7162 SELECT/EXAMINE parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SelectParams {
    pub condstore: bool,
    pub qresync: Option<Qresync>,
}

/// RFC 7162 3.2.5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qresync {
    pub uid_validity: u32,
    pub modseq: u64,
    pub known_uids: Option<SequenceSet>,
    /// (known sequence numbers, the UIDs they had).
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// RFC 5258 LIST with its options (plain RFC 3501 LIST has none).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListArgs {
    pub select: ListSelect,
    pub reference: Option<Mailbox>,
    /// One pattern, or several in parentheses (RFC 5258 3).
    pub patterns: Vec<AString>,
    pub ret: ListReturn,
    /// Whether any RFC 5258 syntax was used (the response differs: RFC
    /// 5258 3 CHILDINFO etc.).
    pub extended: bool,
}

/// RFC 5258 3.1 selection options (and RFC 6154 SPECIAL-USE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListSelect {
    pub subscribed: bool,
    pub remote: bool,
    pub recursive_match: bool,
    pub special_use: bool,
}

/// RFC 5258 3.2 return options, RFC 5819 STATUS, RFC 6154 SPECIAL-USE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListReturn {
    pub subscribed: bool,
    pub children: bool,
    pub special_use: bool,
    pub status: Option<Vec<StatusItem>>,
}

/// RFC 3501 6.3.10, RFC 9051 6.3.11 (SIZE, DELETED), RFC 7162 3.1.6
/// (HIGHESTMODSEQ), RFC 7889 (APPENDLIMIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    Size,
    Deleted,
    HighestModSeq,
    AppendLimit,
}

impl StatusItem {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::Recent => "RECENT",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::Size => "SIZE",
            StatusItem::Deleted => "DELETED",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
            StatusItem::AppendLimit => "APPENDLIMIT",
        }
    }
}

/// Parse one complete command: the bytes up to (not including) the CRLF
/// of its last line, literals inline as they came (`{n}` CRLF octets).
pub fn parse_command(cmd: &[u8], limits: &Limits) -> Result<Command, CommandError> {
    let mut lx = Lexer::new(cmd, limits);
    // RFC 3501 9: command = tag SP (...) CRLF.
    let tag_bytes = lx.take_while(|b| b != b' ');
    let Some(tag) = Tag::new(tag_bytes) else {
        return Err(CommandError {
            tag: None,
            error: ParseError::BadTag,
        });
    };
    let body = (|| {
        lx.sp()?;
        let body = command_body(&mut lx)?;
        lx.end()?;
        Ok(body)
    })();
    match body {
        Ok(body) => Ok(Command { tag, body }),
        Err(error) => Err(CommandError {
            tag: Some(tag),
            error,
        }),
    }
}

/// The command name and its arguments.
fn command_body(lx: &mut Lexer<'_>) -> R<CommandBody> {
    use CommandBody as C;
    let name = lx.keyword().map_err(|_| ParseError::UnknownCommand)?;
    Ok(match name.as_str() {
        "CAPABILITY" => C::Capability,
        "NOOP" => C::Noop,
        "LOGOUT" => C::Logout,
        "STARTTLS" => C::StartTls,
        "AUTHENTICATE" => {
            lx.sp()?;
            let mechanism = lx.keyword()?;
            let mut initial = None;
            if lx.eat(b' ') {
                // RFC 4959 3: initial-response = base64 / "=".
                let r =
                    lx.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
                if r.is_empty() {
                    return Err(ParseError::Syntax("bad initial response"));
                }
                initial = Some(String::from_utf8_lossy(r).into_owned());
            }
            C::Authenticate { mechanism, initial }
        }
        "LOGIN" => {
            lx.sp()?;
            let user = lx.astring()?;
            lx.sp()?;
            C::Login {
                user,
                password: lx.astring()?,
            }
        }
        "ENABLE" => {
            let mut caps = Vec::new();
            // RFC 5161 3.1: 1*(SP capability).
            loop {
                lx.sp()?;
                lx.item()?;
                caps.push(lx.keyword()?);
                if lx.at_end() {
                    break;
                }
            }
            C::Enable(caps)
        }
        "SELECT" | "EXAMINE" => {
            lx.sp()?;
            let mailbox = lx.mailbox()?;
            let params = select_params(lx)?;
            if name == "SELECT" {
                C::Select { mailbox, params }
            } else {
                C::Examine { mailbox, params }
            }
        }
        "CREATE" => {
            lx.sp()?;
            let mailbox = lx.mailbox()?;
            let mut special_use = Vec::new();
            if lx.eat(b' ') {
                // RFC 6154 5.3, RFC 4466 2.2: create-params.
                lx.list(false, |lx| {
                    if lx.keyword()? != "USE" {
                        return Err(ParseError::Syntax("unknown CREATE parameter"));
                    }
                    lx.sp()?;
                    special_use = lx.list(true, attribute)?;
                    Ok(())
                })?;
            }
            C::Create {
                mailbox,
                special_use,
            }
        }
        "DELETE" => C::Delete(one_mailbox(lx)?),
        "SUBSCRIBE" => C::Subscribe(one_mailbox(lx)?),
        "UNSUBSCRIBE" => C::Unsubscribe(one_mailbox(lx)?),
        "RENAME" => {
            let from = one_mailbox(lx)?;
            C::Rename {
                from,
                to: one_mailbox(lx)?,
            }
        }
        "LIST" => C::List(list_args(lx)?),
        "LSUB" => {
            let reference = one_mailbox(lx)?;
            lx.sp()?;
            C::Lsub {
                reference,
                pattern: lx.list_mailbox()?,
            }
        }
        "NAMESPACE" => C::Namespace,
        "STATUS" => {
            let mailbox = one_mailbox(lx)?;
            lx.sp()?;
            C::Status {
                mailbox,
                items: status_items(lx)?,
            }
        }
        "CHECK" => C::Check,
        "CLOSE" => C::Close,
        "UNSELECT" => C::Unselect,
        "IDLE" => C::Idle,
        "EXPUNGE" => C::Expunge,
        "UID" => {
            lx.sp()?;
            let sub = lx.keyword()?;
            match sub.as_str() {
                "EXPUNGE" => {
                    lx.sp()?;
                    C::UidExpunge(lx.seq_set()?)
                }
                "FETCH" | "STORE" | "COPY" | "MOVE" | "SEARCH" | "SORT" | "THREAD" => {
                    uid_able(lx, &sub, true)?
                }
                _ => return Err(ParseError::Syntax("unknown UID command")),
            }
        }
        "FETCH" | "STORE" | "COPY" | "MOVE" | "SEARCH" | "SORT" | "THREAD" => {
            uid_able(lx, &name, false)?
        }
        "ID" => C::Id(id_params(lx)?),
        "COMPRESS" => {
            lx.sp()?;
            C::Compress(lx.keyword()?)
        }
        "GETQUOTA" => {
            lx.sp()?;
            C::GetQuota(lx.astring()?)
        }
        "GETQUOTAROOT" => C::GetQuotaRoot(one_mailbox(lx)?),
        "SETQUOTA" => {
            lx.sp()?;
            let root = lx.astring()?;
            lx.sp()?;
            let limits = lx.list(true, |lx| {
                let name = lx.keyword()?;
                lx.sp()?;
                Ok((name, lx.number64()?))
            })?;
            C::SetQuota { root, limits }
        }
        "APPEND" => return Err(ParseError::Syntax("APPEND needs a message literal")),
        _ => return Err(ParseError::UnknownCommand),
    })
}

/// `SP mailbox`.
fn one_mailbox(lx: &mut Lexer<'_>) -> R<Mailbox> {
    lx.sp()?;
    lx.mailbox()
}

/// A mailbox attribute such as `\Sent` (RFC 6154 2), as sent.
fn attribute(lx: &mut Lexer<'_>) -> R<String> {
    lx.expect(b'\\', "expected a \\attribute")?;
    let a = lx.atom()?;
    Ok(format!("\\{}", String::from_utf8_lossy(a)))
}

/// The commands that take a UID prefix (RFC 3501 6.4.8).
fn uid_able(lx: &mut Lexer<'_>, name: &str, uid: bool) -> R<CommandBody> {
    use CommandBody as C;
    Ok(match name {
        "SEARCH" => C::Search {
            uid,
            args: search_args(lx)?,
        },
        "SORT" => {
            let (criteria, args) = sort_args(lx)?;
            C::Sort {
                uid,
                criteria,
                args,
            }
        }
        "THREAD" => {
            let (algorithm, args) = thread_args(lx)?;
            C::Thread {
                uid,
                algorithm,
                args,
            }
        }
        _ => {
            lx.sp()?;
            let set = lx.seq_set()?;
            lx.sp()?;
            match name {
                "FETCH" => {
                    let attrs = fetch_attrs(lx)?;
                    let modifiers = fetch_modifiers(lx)?;
                    // RFC 7162 3.2.6: VANISHED only in UID FETCH with
                    // CHANGEDSINCE.
                    if modifiers.vanished && (!uid || modifiers.changed_since.is_none()) {
                        return Err(ParseError::Syntax(
                            "VANISHED needs UID FETCH and CHANGEDSINCE",
                        ));
                    }
                    C::Fetch {
                        uid,
                        set,
                        attrs,
                        modifiers,
                    }
                }
                "STORE" => store(lx, uid, set)?,
                "COPY" => C::Copy {
                    uid,
                    set,
                    mailbox: lx.mailbox()?,
                },
                _ => C::Move {
                    uid,
                    set,
                    mailbox: lx.mailbox()?,
                },
            }
        }
    })
}

/// RFC 3501 9 `store-att-flags`, RFC 7162 3.1.3 `store-modifiers`, after
/// the set and its SP.
fn store(lx: &mut Lexer<'_>, uid: bool, set: SequenceSet) -> R<CommandBody> {
    let mut unchanged_since = None;
    if lx.peek() == Some(b'(') {
        lx.list(false, |lx| {
            if lx.keyword()? != "UNCHANGEDSINCE" || unchanged_since.is_some() {
                return Err(ParseError::Syntax("unknown STORE modifier"));
            }
            lx.sp()?;
            unchanged_since = Some(lx.number64()?);
            Ok(())
        })?;
        lx.sp()?;
    }
    let mode = if lx.eat(b'+') {
        StoreMode::Add
    } else if lx.eat(b'-') {
        StoreMode::Remove
    } else {
        StoreMode::Replace
    };
    let silent = match lx.keyword()?.as_str() {
        "FLAGS" => false,
        "FLAGS.SILENT" => true,
        _ => return Err(ParseError::Syntax("expected FLAGS")),
    };
    lx.sp()?;
    Ok(CommandBody::Store {
        uid,
        set,
        unchanged_since,
        mode,
        silent,
        flags: lx.store_flags()?,
    })
}

/// RFC 7162 3.1.8 / 3.2.5 `select-params`, when present.
fn select_params(lx: &mut Lexer<'_>) -> R<SelectParams> {
    let mut p = SelectParams::default();
    if !lx.eat(b' ') {
        return Ok(p);
    }
    lx.list(false, |lx| {
        match lx.keyword()?.as_str() {
            "CONDSTORE" if !p.condstore => p.condstore = true,
            "QRESYNC" if p.qresync.is_none() => {
                lx.sp()?;
                lx.expect(b'(', "expected (")?;
                lx.enter()?;
                let uid_validity = lx.nz_number()?;
                lx.sp()?;
                let modseq = lx.number64()?;
                let mut q = Qresync {
                    uid_validity,
                    modseq,
                    known_uids: None,
                    seq_match: None,
                };
                if lx.eat(b' ') {
                    if lx.peek() != Some(b'(') {
                        q.known_uids = Some(lx.seq_set()?);
                        if lx.eat(b' ') && lx.peek() != Some(b'(') {
                            return Err(ParseError::Syntax("bad QRESYNC"));
                        }
                    }
                    if lx.eat(b'(') {
                        let seqs = lx.seq_set()?;
                        lx.sp()?;
                        let uids = lx.seq_set()?;
                        lx.expect(b')', "bad QRESYNC")?;
                        q.seq_match = Some((seqs, uids));
                    }
                }
                lx.expect(b')', "bad QRESYNC")?;
                lx.leave();
                p.qresync = Some(q);
            }
            _ => return Err(ParseError::Syntax("unknown SELECT parameter")),
        }
        Ok(())
    })?;
    Ok(p)
}

/// RFC 3501 6.3.8 / RFC 5258 3 LIST arguments, from after "LIST".
fn list_args(lx: &mut Lexer<'_>) -> R<ListArgs> {
    let mut a = ListArgs::default();
    lx.sp()?;
    if lx.peek() == Some(b'(') {
        a.extended = true;
        lx.list(true, |lx| {
            match lx.keyword()?.as_str() {
                "SUBSCRIBED" => a.select.subscribed = true,
                "REMOTE" => a.select.remote = true,
                "RECURSIVEMATCH" => a.select.recursive_match = true,
                "SPECIAL-USE" => a.select.special_use = true,
                // RFC 5258 3.1: unknown selection options are an error.
                _ => return Err(ParseError::Syntax("unknown LIST selection option")),
            }
            Ok(())
        })?;
        // RFC 5258 3.1: RECURSIVEMATCH needs another option with it.
        if a.select.recursive_match && !(a.select.subscribed || a.select.special_use) {
            return Err(ParseError::Syntax("RECURSIVEMATCH alone"));
        }
        lx.sp()?;
    }
    a.reference = Some(lx.mailbox()?);
    lx.sp()?;
    if lx.peek() == Some(b'(') {
        a.extended = true;
        a.patterns = lx.list(false, Lexer::list_mailbox)?;
    } else {
        a.patterns = vec![lx.list_mailbox()?];
    }
    if lx.eat(b' ') {
        a.extended = true;
        if lx.keyword()? != "RETURN" {
            return Err(ParseError::Syntax("expected RETURN"));
        }
        lx.sp()?;
        let mut ret = ListReturn::default();
        lx.list(true, |lx| {
            match lx.keyword()?.as_str() {
                "SUBSCRIBED" => ret.subscribed = true,
                "CHILDREN" => ret.children = true,
                "SPECIAL-USE" => ret.special_use = true,
                // RFC 5819 2.
                "STATUS" if ret.status.is_none() => {
                    lx.sp()?;
                    ret.status = Some(status_items(lx)?);
                }
                _ => return Err(ParseError::Syntax("unknown LIST return option")),
            }
            Ok(())
        })?;
        a.ret = ret;
    }
    Ok(a)
}

/// RFC 3501 9 `"(" status-att *(SP status-att) ")"`.
fn status_items(lx: &mut Lexer<'_>) -> R<Vec<StatusItem>> {
    lx.list(false, |lx| {
        Ok(match lx.keyword()?.as_str() {
            "MESSAGES" => StatusItem::Messages,
            "RECENT" => StatusItem::Recent,
            "UIDNEXT" => StatusItem::UidNext,
            "UIDVALIDITY" => StatusItem::UidValidity,
            "UNSEEN" => StatusItem::Unseen,
            "SIZE" => StatusItem::Size,
            "DELETED" => StatusItem::Deleted,
            "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
            "APPENDLIMIT" => StatusItem::AppendLimit,
            _ => return Err(ParseError::Syntax("unknown STATUS item")),
        })
    })
}

/// RFC 2971 3.1: `SP ("(" *(string SP nstring) ")" / nil)`; RFC 2971 3.3
/// bounds the pairs at 30.
fn id_params(lx: &mut Lexer<'_>) -> R<Option<IdParams>> {
    lx.sp()?;
    if lx.peek_keyword() == "NIL" {
        lx.keyword()?;
        return Ok(None);
    }
    let pairs = lx.list(true, |lx| {
        let field = lx.string()?;
        lx.sp()?;
        Ok((field, lx.nstring()?))
    })?;
    if pairs.len() > MAX_ID_PAIRS {
        return Err(ParseError::TooMany);
    }
    Ok(Some(pairs))
}

/// Every command name `parse_command` knows (and APPEND), for the reader's
/// check before it invites a literal.
const COMMAND_NAMES: &[&str] = &[
    "CAPABILITY",
    "NOOP",
    "LOGOUT",
    "STARTTLS",
    "AUTHENTICATE",
    "LOGIN",
    "ENABLE",
    "SELECT",
    "EXAMINE",
    "CREATE",
    "DELETE",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "RENAME",
    "LIST",
    "LSUB",
    "NAMESPACE",
    "STATUS",
    "CHECK",
    "CLOSE",
    "UNSELECT",
    "IDLE",
    "EXPUNGE",
    "UID",
    "FETCH",
    "STORE",
    "COPY",
    "MOVE",
    "SEARCH",
    "SORT",
    "THREAD",
    "ID",
    "COMPRESS",
    "GETQUOTA",
    "GETQUOTAROOT",
    "SETQUOTA",
    "APPEND",
];

/// Whether `name` (any case) is a command name `parse_command` knows.
pub(crate) fn is_command_name(name: &[u8]) -> bool {
    COMMAND_NAMES
        .iter()
        .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
}

/// The IDLE continuation: RFC 2177 3 "DONE" (any case) ends IDLE; any
/// other line is a protocol error.
pub fn parse_done(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    line.eq_ignore_ascii_case(b"DONE")
}

/// Whether `s` can be sent as an atom (RFC 3501 9), for writers.
pub(crate) fn is_atom(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_atom_char(b))
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
