//! The token level of an IMAP command: a cursor over one complete command
//! (its lines and the literals inside them), giving atoms, strings,
//! numbers, sequence sets, flag lists and dates.
//!
//! Owns the lexical grammar and the nesting and item counters every
//! command parser goes through. Does not own the framing of commands on the
//! stream (`reader`, which has already checked the literal announcements
//! and sizes) or the meaning of the tokens (`command`, `fetch`, `search`).
//!
//! Standards: RFC 3501 4 (atom, number, string: quoted and literal,
//! parenthesized list, NIL), 9 (formal syntax); RFC 7888 (`{n+}`); RFC
//! 3516 4.2 (`~{n}` literal8); RFC 6855 3 / RFC 9051 4.3 (UTF-8 in quoted
//! strings).
//!
//! Security: the command is untrusted. Literal sizes are checked against
//! the bytes present, so a bad announcement cannot read past the command;
//! NUL is refused in strings and literals (RFC 3501 4.3), CR and LF in
//! quoted strings. Nesting (`enter`) and item counts (`item`) are bounded
//! by `Limits`, so a parser built on this cursor never recurses or
//! allocates without bound.
//!
//! Diagnostics: nothing is logged; errors are `ParseError` values.

use super::types::{
    is_astring_char, is_atom_char, is_list_char, parse_number, parse_number64, AString, Date,
    DateTime, Flag, Mailbox, SequenceSet, StringForm,
};
use super::{Limits, ParseError};

/// A cursor over one command, CRLF of the last line excluded.
pub(crate) struct Lexer<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: &'a Limits,
    depth: usize,
    items: usize,
}

type R<T> = Result<T, ParseError>;

fn syntax<T>(what: &'static str) -> R<T> {
    Err(ParseError::Syntax(what))
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(buf: &'a [u8], limits: &'a Limits) -> Lexer<'a> {
        Lexer {
            buf,
            pos: 0,
            limits,
            depth: 0,
            items: 0,
        }
    }

    pub(crate) fn limits(&self) -> &Limits {
        self.limits
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// The rest of the command, unparsed.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Consume `b` when it is next.
    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn expect(&mut self, b: u8, what: &'static str) -> R<()> {
        if self.eat(b) {
            Ok(())
        } else {
            syntax(what)
        }
    }

    /// RFC 3501 9: arguments are separated by exactly one SP.
    pub(crate) fn sp(&mut self) -> R<()> {
        self.expect(b' ', "expected a space")
    }

    /// The end of the command: nothing may follow.
    pub(crate) fn end(&self) -> R<()> {
        if self.at_end() {
            Ok(())
        } else {
            syntax("unexpected text after the arguments")
        }
    }

    /// Enter a nesting level (parenthesis, section); bounded by
    /// `Limits::max_depth`.
    pub(crate) fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(ParseError::TooDeep);
        }
        Ok(())
    }

    pub(crate) fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Count one item (fetch attribute, search key, list element); bounded
    /// by `Limits::max_items` for the whole command.
    pub(crate) fn item(&mut self) -> R<()> {
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(ParseError::TooMany);
        }
        Ok(())
    }

    /// The longest run of bytes matching `f`.
    pub(crate) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.buf[start..self.pos]
    }

    /// RFC 3501 9 `atom = 1*ATOM-CHAR`.
    pub(crate) fn atom(&mut self) -> R<&'a [u8]> {
        match self.take_while(is_atom_char) {
            [] => syntax("expected an atom"),
            a => Ok(a),
        }
    }

    /// An atom upper-cased, for keywords (case-insensitive, RFC 3501 9).
    pub(crate) fn keyword(&mut self) -> R<String> {
        let a = self.atom()?;
        Ok(String::from_utf8_lossy(a).to_ascii_uppercase())
    }

    /// The next keyword without consuming it (empty when none).
    pub(crate) fn peek_keyword(&self) -> String {
        let rest = self.rest();
        let n = rest.iter().take_while(|&&b| is_atom_char(b)).count();
        String::from_utf8_lossy(&rest[..n]).to_ascii_uppercase()
    }

    /// RFC 3501 9 `number` (32 bits).
    pub(crate) fn number(&mut self) -> R<u32> {
        parse_number(self.take_while(|b| b.is_ascii_digit()))
            .map_or_else(|| syntax("expected a number"), Ok)
    }

    /// RFC 3501 9 `nz-number`.
    pub(crate) fn nz_number(&mut self) -> R<u32> {
        match self.number()? {
            0 => syntax("expected a non-zero number"),
            n => Ok(n),
        }
    }

    /// RFC 9051 9 `number64` (RFC 7162 `mod-sequence-value`).
    pub(crate) fn number64(&mut self) -> R<u64> {
        parse_number64(self.take_while(|b| b.is_ascii_digit()))
            .map_or_else(|| syntax("expected a number"), Ok)
    }

    /// RFC 3501 9 `sequence-set` or RFC 5182 `$`, bounded ranges.
    pub(crate) fn seq_set(&mut self) -> R<SequenceSet> {
        let s = self.take_while(|b| b.is_ascii_digit() || matches!(b, b':' | b',' | b'*' | b'$'));
        let ranges = s.iter().filter(|&&b| b == b',').count() + 1;
        if ranges > self.limits.max_items {
            return Err(ParseError::TooMany);
        }
        SequenceSet::parse(s, self.limits.max_items)
            .map_or_else(|| syntax("invalid sequence set"), Ok)
    }

    /// RFC 3501 4.2 `quoted`; RFC 9051 / RFC 6855 allow UTF-8 in it, so
    /// 8-bit bytes are kept (the store decides); NUL, CR, LF are refused.
    fn quoted(&mut self) -> R<Vec<u8>> {
        self.expect(b'"', "expected a quoted string")?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(0 | b'\r' | b'\n') => return syntax("unterminated quoted string"),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        _ => return syntax("bad escape in quoted string"),
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// RFC 3501 4.3 literal `{n}` CRLF octets, RFC 7888 `{n+}`, and with
    /// `allow8` RFC 3516 literal8 `~{n}` (which may hold NUL).
    fn literal(&mut self, allow8: bool) -> R<Vec<u8>> {
        let eight = self.eat(b'~');
        if eight && !allow8 {
            return syntax("literal8 not allowed here");
        }
        self.expect(b'{', "expected a literal")?;
        let n = self.number()? as usize;
        self.eat(b'+');
        self.expect(b'}', "bad literal")?;
        self.expect(b'\r', "bad literal")?;
        self.expect(b'\n', "bad literal")?;
        let Some(data) = self.buf.get(self.pos..self.pos + n) else {
            return syntax("literal longer than the command");
        };
        if !eight && data.contains(&0) {
            return syntax("NUL in a literal");
        }
        self.pos += n;
        Ok(data.to_vec())
    }

    /// RFC 3501 9 `string = quoted / literal`.
    pub(crate) fn string(&mut self) -> R<AString> {
        match self.peek() {
            Some(b'"') => Ok(AString {
                bytes: self.quoted()?,
                form: StringForm::Quoted,
            }),
            Some(b'{') => Ok(AString {
                bytes: self.literal(false)?,
                form: StringForm::Literal,
            }),
            _ => syntax("expected a string"),
        }
    }

    /// RFC 3501 9 `astring = 1*ASTRING-CHAR / string`.
    pub(crate) fn astring(&mut self) -> R<AString> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => match self.take_while(is_astring_char) {
                [] => syntax("expected a string"),
                a => Ok(AString {
                    bytes: a.to_vec(),
                    form: StringForm::Atom,
                }),
            },
        }
    }

    /// RFC 3501 9 `nstring = string / nil`.
    pub(crate) fn nstring(&mut self) -> R<Option<AString>> {
        if self.peek_keyword() == "NIL" {
            self.pos += 3;
            return Ok(None);
        }
        self.string().map(Some)
    }

    /// RFC 3501 9 `mailbox`.
    pub(crate) fn mailbox(&mut self) -> R<Mailbox> {
        self.astring().map(Mailbox::new)
    }

    /// RFC 3501 9 `list-mailbox = 1*list-char / string` (LIST patterns).
    pub(crate) fn list_mailbox(&mut self) -> R<AString> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => match self.take_while(is_list_char) {
                [] => syntax("expected a mailbox pattern"),
                a => Ok(AString {
                    bytes: a.to_vec(),
                    form: StringForm::Atom,
                }),
            },
        }
    }

    /// A parenthesized list of `f` separated by SP; `empty` allows `()`.
    pub(crate) fn list<T>(
        &mut self,
        empty: bool,
        mut f: impl FnMut(&mut Self) -> R<T>,
    ) -> R<Vec<T>> {
        self.expect(b'(', "expected (")?;
        self.enter()?;
        let mut out = Vec::new();
        if !self.eat(b')') {
            loop {
                self.item()?;
                out.push(f(self)?);
                if self.eat(b')') {
                    break;
                }
                self.sp()?;
            }
        } else if !empty {
            return syntax("empty list");
        }
        self.leave();
        Ok(out)
    }

    /// A client flag: `\Seen` etc. or a keyword (see `Flag::from_client`).
    pub(crate) fn flag(&mut self) -> R<Flag> {
        let start = self.pos;
        self.eat(b'\\');
        self.take_while(is_atom_char);
        Flag::from_client(&self.buf[start..self.pos]).map_or_else(|| syntax("invalid flag"), Ok)
    }

    /// RFC 3501 9 `flag-list = "(" [flag *(SP flag)] ")"`.
    pub(crate) fn flag_list(&mut self) -> R<Vec<Flag>> {
        self.list(true, Self::flag)
    }

    /// Flags for STORE: a flag-list, or (RFC 3501 9) flags without
    /// parentheses.
    pub(crate) fn store_flags(&mut self) -> R<Vec<Flag>> {
        if self.peek() == Some(b'(') {
            return self.flag_list();
        }
        let mut out = vec![self.flag()?];
        while self.eat(b' ') {
            self.item()?;
            out.push(self.flag()?);
        }
        Ok(out)
    }

    /// RFC 3501 9 `date = date-text / DQUOTE date-text DQUOTE`.
    pub(crate) fn date(&mut self) -> R<Date> {
        let quoted = self.eat(b'"');
        let d = Date::parse(self.take_while(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if quoted {
            self.expect(b'"', "bad date")?;
        }
        d.map_or_else(|| syntax("invalid date"), Ok)
    }

    /// RFC 3501 9 `date-time = DQUOTE ... DQUOTE`.
    pub(crate) fn date_time(&mut self) -> R<DateTime> {
        self.expect(b'"', "expected a date-time")?;
        let s = self.take_while(|b| b != b'"' && b != b'\r' && b != b'\n');
        self.expect(b'"', "bad date-time")?;
        DateTime::parse(s).map_or_else(|| syntax("invalid date-time"), Ok)
    }

    /// An `astring` that must be UTF-8 (charset names, header names, ID
    /// fields are ASCII in practice; the caller says which).
    pub(crate) fn astring_text(&mut self) -> R<String> {
        let s = self.astring()?;
        String::from_utf8(s.bytes).map_or_else(|_| syntax("not UTF-8"), Ok)
    }
}
