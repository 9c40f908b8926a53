//! SEARCH, SORT and THREAD arguments: search keys, return options, sort
//! criteria, thread algorithms.
//!
//! Owns the grammar of search criteria and the types the session evaluates.
//! Does not own evaluating them (imapd), charset support (the session
//! answers NO [BADCHARSET] for one it lacks) or which extensions are
//! enabled.
//!
//! Standards: RFC 3501 6.4.4 and 9 (`search`, `search-key`), RFC 9051 6.4.4
//! (number64 sizes), RFC 4731 3.1 (ESEARCH RETURN MIN MAX ALL COUNT), RFC
//! 5182 2.1 (SAVE), RFC 7162 3.1.5 (MODSEQ key), RFC 5032 (OLDER,
//! YOUNGER), RFC 5256 3 (SORT, THREAD), RFC 5267 3.2 (RETURN on SORT).
//!
//! Security: keys nest (NOT, OR, parentheses); the parser is recursive but
//! every level goes through `Lexer::enter`, so depth is bounded by
//! `Limits::max_depth`, and every key through `Lexer::item`.
//!
//! Diagnostics: nothing is logged; errors are `ParseError` values.

use super::lexer::Lexer;
use super::types::{AString, Date, SequenceSet};
use super::ParseError;

type R<T> = Result<T, ParseError>;

/// One search key (RFC 3501 6.4.4). A list of keys is their conjunction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    All,
    Answered,
    Deleted,
    Draft,
    Flagged,
    New,
    Old,
    Recent,
    Seen,
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unseen,
    /// KEYWORD flag-keyword.
    Keyword(String),
    Unkeyword(String),
    Bcc(AString),
    Body(AString),
    Cc(AString),
    From(AString),
    Subject(AString),
    Text(AString),
    To(AString),
    /// HEADER field-name string.
    Header(String, AString),
    Before(Date),
    On(Date),
    Since(Date),
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    Larger(u64),
    Smaller(u64),
    /// RFC 5032: OLDER / YOUNGER seconds.
    Older(u32),
    Younger(u32),
    Not(Box<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    /// A parenthesized list.
    And(Vec<SearchKey>),
    SequenceSet(SequenceSet),
    Uid(SequenceSet),
    /// RFC 7162 3.1.5: MODSEQ [entry-name entry-type] value.
    ModSeq {
        entry: Option<(AString, String)>,
        modseq: u64,
    },
}

/// RFC 4731 3.1 / RFC 5182 `search-return-opt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
    Save,
}

/// The shared part of SEARCH, SORT and THREAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchArgs {
    /// `RETURN (...)` when given (ESEARCH); `Some(vec![])` is RETURN ()
    /// (RFC 4731 3.1: same as RETURN (ALL)).
    pub ret: Option<Vec<SearchReturn>>,
    /// CHARSET, upper-cased.
    pub charset: Option<String>,
    /// The keys, ANDed.
    pub keys: Vec<SearchKey>,
}

/// RFC 5256 `sort-key`, plus RFC 5957 DISPLAYFROM / DISPLAYTO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    DisplayFrom,
    DisplayTo,
}

/// RFC 5256 `sort-criterion = ["REVERSE" SP] sort-key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortCriterion {
    pub reverse: bool,
    pub key: SortKey,
}

/// RFC 5256 `thread-alg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadAlgorithm {
    OrderedSubject,
    References,
    /// Another atom, upper-cased (the server answers BAD if it lacks it).
    Other(String),
}

/// `[search-return-opts] [SP "CHARSET" SP charset] 1*(SP search-key)`,
/// starting at the SP after SEARCH.
pub(crate) fn search_args(lx: &mut Lexer<'_>) -> R<SearchArgs> {
    lx.sp()?;
    let ret = return_opts(lx)?;
    let mut charset = None;
    if lx.peek_keyword() == "CHARSET" {
        lx.keyword()?;
        lx.sp()?;
        charset = Some(lx.astring_text()?.to_ascii_uppercase());
        lx.sp()?;
    }
    let keys = keys(lx)?;
    Ok(SearchArgs { ret, charset, keys })
}

/// `1*(SP search-key)` after the first SP, to the end of the command.
fn keys(lx: &mut Lexer<'_>) -> R<Vec<SearchKey>> {
    let mut keys = vec![key(lx)?];
    while !lx.at_end() {
        lx.sp()?;
        keys.push(key(lx)?);
    }
    Ok(keys)
}

/// RFC 4731 3.1: `"RETURN" SP "(" [opt *(SP opt)] ")" SP`, when present.
fn return_opts(lx: &mut Lexer<'_>) -> R<Option<Vec<SearchReturn>>> {
    if lx.peek_keyword() != "RETURN" {
        return Ok(None);
    }
    lx.keyword()?;
    lx.sp()?;
    let opts = lx.list(true, |lx| {
        Ok(match lx.keyword()?.as_str() {
            "MIN" => SearchReturn::Min,
            "MAX" => SearchReturn::Max,
            "ALL" => SearchReturn::All,
            "COUNT" => SearchReturn::Count,
            "SAVE" => SearchReturn::Save,
            _ => return Err(ParseError::Syntax("unknown RETURN option")),
        })
    })?;
    lx.sp()?;
    Ok(Some(opts))
}

/// RFC 3501 9 `search-key`.
fn key(lx: &mut Lexer<'_>) -> R<SearchKey> {
    use SearchKey as K;
    lx.item()?;
    match lx.peek() {
        Some(b'(') => return lx.list(false, key).map(K::And),
        Some(b'0'..=b'9' | b'*' | b'$') => return lx.seq_set().map(K::SequenceSet),
        _ => {}
    }
    let kw = lx.keyword()?;
    let arg = |lx: &mut Lexer<'_>| -> R<AString> {
        lx.sp()?;
        lx.astring()
    };
    let date = |lx: &mut Lexer<'_>| -> R<Date> {
        lx.sp()?;
        lx.date()
    };
    let keyword = |lx: &mut Lexer<'_>| -> R<String> {
        lx.sp()?;
        match lx.flag()? {
            super::Flag::Keyword(k) => Ok(k),
            _ => Err(ParseError::Syntax("KEYWORD takes a keyword")),
        }
    };
    Ok(match kw.as_str() {
        "ALL" => K::All,
        "ANSWERED" => K::Answered,
        "DELETED" => K::Deleted,
        "DRAFT" => K::Draft,
        "FLAGGED" => K::Flagged,
        "NEW" => K::New,
        "OLD" => K::Old,
        "RECENT" => K::Recent,
        "SEEN" => K::Seen,
        "UNANSWERED" => K::Unanswered,
        "UNDELETED" => K::Undeleted,
        "UNDRAFT" => K::Undraft,
        "UNFLAGGED" => K::Unflagged,
        "UNSEEN" => K::Unseen,
        "KEYWORD" => K::Keyword(keyword(lx)?),
        "UNKEYWORD" => K::Unkeyword(keyword(lx)?),
        "BCC" => K::Bcc(arg(lx)?),
        "BODY" => K::Body(arg(lx)?),
        "CC" => K::Cc(arg(lx)?),
        "FROM" => K::From(arg(lx)?),
        "SUBJECT" => K::Subject(arg(lx)?),
        "TEXT" => K::Text(arg(lx)?),
        "TO" => K::To(arg(lx)?),
        "HEADER" => {
            lx.sp()?;
            let name = lx.astring_text()?;
            K::Header(name, arg(lx)?)
        }
        "BEFORE" => K::Before(date(lx)?),
        "ON" => K::On(date(lx)?),
        "SINCE" => K::Since(date(lx)?),
        "SENTBEFORE" => K::SentBefore(date(lx)?),
        "SENTON" => K::SentOn(date(lx)?),
        "SENTSINCE" => K::SentSince(date(lx)?),
        "LARGER" => {
            lx.sp()?;
            K::Larger(lx.number64()?)
        }
        "SMALLER" => {
            lx.sp()?;
            K::Smaller(lx.number64()?)
        }
        "OLDER" => {
            lx.sp()?;
            K::Older(lx.nz_number()?)
        }
        "YOUNGER" => {
            lx.sp()?;
            K::Younger(lx.nz_number()?)
        }
        "UID" => {
            lx.sp()?;
            K::Uid(lx.seq_set()?)
        }
        "NOT" => {
            lx.sp()?;
            lx.enter()?;
            let k = key(lx)?;
            lx.leave();
            K::Not(Box::new(k))
        }
        "OR" => {
            lx.sp()?;
            lx.enter()?;
            let a = key(lx)?;
            lx.sp()?;
            let b = key(lx)?;
            lx.leave();
            K::Or(Box::new(a), Box::new(b))
        }
        "MODSEQ" => {
            lx.sp()?;
            // RFC 7162 3.1.5: [entry-name SP entry-type-req SP] value;
            // entry-name is a quoted "/flags/..." string.
            let entry = if lx.peek() == Some(b'"') {
                let name = lx.astring()?;
                lx.sp()?;
                let ty = lx.keyword()?;
                if !matches!(ty.as_str(), "PRIV" | "SHARED" | "ALL") {
                    return Err(ParseError::Syntax("bad MODSEQ entry type"));
                }
                lx.sp()?;
                Some((name, ty))
            } else {
                None
            };
            K::ModSeq {
                entry,
                modseq: lx.number64()?,
            }
        }
        _ => return Err(ParseError::Syntax("unknown search key")),
    })
}

/// RFC 5256 3 (RFC 5267 3.2 RETURN): `[RETURN (...) SP] "(" criteria ")"
/// SP charset 1*(SP search-key)`, from the SP after SORT.
pub(crate) fn sort_args(lx: &mut Lexer<'_>) -> R<(Vec<SortCriterion>, SearchArgs)> {
    lx.sp()?;
    let ret = return_opts(lx)?;
    let criteria = lx.list(false, |lx| {
        let mut kw = lx.keyword()?;
        let reverse = kw == "REVERSE";
        if reverse {
            lx.sp()?;
            kw = lx.keyword()?;
        }
        let key = match kw.as_str() {
            "ARRIVAL" => SortKey::Arrival,
            "CC" => SortKey::Cc,
            "DATE" => SortKey::Date,
            "FROM" => SortKey::From,
            "SIZE" => SortKey::Size,
            "SUBJECT" => SortKey::Subject,
            "TO" => SortKey::To,
            "DISPLAYFROM" => SortKey::DisplayFrom,
            "DISPLAYTO" => SortKey::DisplayTo,
            _ => return Err(ParseError::Syntax("unknown sort key")),
        };
        Ok(SortCriterion { reverse, key })
    })?;
    let (charset, keys) = charset_keys(lx)?;
    Ok((
        criteria,
        SearchArgs {
            ret,
            charset: Some(charset),
            keys,
        },
    ))
}

/// RFC 5256 3: `thread-alg SP search-criteria`, from the SP after THREAD.
pub(crate) fn thread_args(lx: &mut Lexer<'_>) -> R<(ThreadAlgorithm, SearchArgs)> {
    lx.sp()?;
    let alg = match lx.keyword()?.as_str() {
        "ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
        "REFERENCES" => ThreadAlgorithm::References,
        other => ThreadAlgorithm::Other(other.to_string()),
    };
    let (charset, keys) = charset_keys(lx)?;
    Ok((
        alg,
        SearchArgs {
            ret: None,
            charset: Some(charset),
            keys,
        },
    ))
}

/// RFC 5256 `search-criteria = charset 1*(SP search-key)`, from the SP.
fn charset_keys(lx: &mut Lexer<'_>) -> R<(String, Vec<SearchKey>)> {
    lx.sp()?;
    let charset = lx.astring_text()?.to_ascii_uppercase();
    lx.sp()?;
    Ok((charset, keys(lx)?))
}
