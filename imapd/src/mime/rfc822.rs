//! RFC 5322 and MIME lexical tokens as Dovecot's lib-mail reads them:
//! comments and folding white space, atoms, dot-atoms, quoted strings,
//! phrases, domains, MIME tokens, Content-Type and its parameters with the
//! RFC 2231 continuations merged.
//!
//! Owns only the tokenizer over one header value (already unfolded into
//! `\n`-separated lines by the header parser); address lists are in
//! `address.rs`, the Content-* fields in `structure.rs`.
//!
//! Standards: RFC 5322 3.2 (lexical tokens: CFWS 3.2.2, atom and dot-atom
//! 3.2.3, quoted-string 3.2.4, phrase 3.2.5), 3.4.1 (domain-literal), 4.1
//! (obs-phrase with dots); RFC 2045 5.1 (Content-Type token and tspecials);
//! RFC 2231 3 and 4 (parameter continuations and extended values: merged,
//! the extended value kept encoded as Dovecot prints it).
//!
//! Security: every loop advances over a bounded slice; nested comments are
//! counted, not recursed into.
//!
//! Diagnostics: none; results say whether the input ran out (0), was
//! broken (-1 as `Err(())`) or continues (1), as Dovecot's parser does.

/// atext (1), alpha/digit/8-bit (2), atext but a MIME tspecial (4):
/// rfc822-parser.c's table, RFC 5322 3.2.3 and RFC 2045 5.1.
const fn atext_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b >= 0x80 || b.is_ascii_alphanumeric() {
            2
        } else {
            match b {
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'^' | b'_'
                | b'`' | b'{' | b'|' | b'}' | b'~' => 1,
                b'/' | b'=' | b'?' => 4,
                _ => 0,
            }
        };
        c += 1;
    }
    t
}

static ATEXT: [u8; 256] = atext_table();

/// RFC 5322 atext (8-bit bytes count as atext, as in Dovecot).
pub(crate) fn is_atext(c: u8) -> bool {
    ATEXT[c as usize] != 0
}

/// RFC 2045 token character other than '.'.
fn is_token(c: u8) -> bool {
    ATEXT[c as usize] & 3 != 0
}

/// The replacement for a NUL inside quoted strings and comments.
const NUL_REPLACEMENT: &[u8] = "\u{fffd}".as_bytes();

/// A MIME parameter: name and value, as written.
pub(crate) type Param = (Vec<u8>, Vec<u8>);

/// A cursor over one header value.
pub(crate) struct Parser<'a> {
    data: &'a [u8],
    pub(crate) pos: usize,
    /// The text of the last comment skipped, when wanted (addresses use it
    /// as a display name).
    pub(crate) last_comment: Option<Vec<u8>>,
    /// Replace NUL in quoted strings and comments (address parsing).
    pub(crate) nul_replacement: bool,
}

/// `Ok(true)`: more input follows; `Ok(false)`: the end was reached;
/// `Err(())`: broken syntax (Dovecot's 1, 0 and -1).
pub(crate) type Step = Result<bool, ()>;

impl<'a> Parser<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Parser {
            data,
            pos: 0,
            last_comment: None,
            nul_replacement: false,
        }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The current byte, or 0 at the end (Dovecot reads the NUL terminator).
    pub(crate) fn peek(&self) -> u8 {
        self.data.get(self.pos).copied().unwrap_or(0)
    }

    fn more(&self) -> Step {
        Ok(self.pos < self.data.len())
    }

    /// RFC 5322 3.2.2 comment, nested; its text kept in `last_comment`.
    fn skip_comment(&mut self) -> Step {
        let mut level = 1;
        let mut text = self.last_comment.as_ref().map(|_| Vec::new());
        self.pos += 1;
        let mut start = self.pos;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                0 => {
                    if let (Some(t), true) = (text.as_mut(), self.nul_replacement) {
                        t.extend_from_slice(&self.data[start..self.pos]);
                        t.extend_from_slice(NUL_REPLACEMENT);
                        start = self.pos + 1;
                    }
                }
                b'(' => level += 1,
                b')' => {
                    level -= 1;
                    if level == 0 {
                        if let Some(mut t) = text {
                            t.extend_from_slice(&self.data[start..self.pos]);
                            self.last_comment = Some(t);
                        }
                        self.pos += 1;
                        return self.more();
                    }
                }
                b'\n' => {
                    if let Some(t) = text.as_mut() {
                        let mut end = self.pos;
                        if end > start && self.data[end - 1] == b'\r' {
                            end -= 1;
                        }
                        t.extend_from_slice(&self.data[start..end]);
                        start = self.pos + 1;
                    }
                }
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return Err(());
                    }
                    if matches!(self.data[self.pos], b'\r' | b'\n' | 0) {
                        self.pos -= 1;
                    } else {
                        if let Some(t) = text.as_mut() {
                            t.extend_from_slice(&self.data[start..self.pos - 1]);
                        }
                        start = self.pos;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        // missing ')'
        if text.is_some() {
            self.last_comment = Some(Vec::new());
        }
        Err(())
    }

    /// RFC 5322 3.2.2 CFWS.
    pub(crate) fn skip_lwsp(&mut self) -> Step {
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'(' => {
                    self.skip_comment()?;
                }
                _ => break,
            }
        }
        self.more()
    }

    /// RFC 5322 3.2.3 atom.
    pub(crate) fn atom(&mut self, out: &mut Vec<u8>) -> Step {
        if self.at_end() || !is_atext(self.peek()) {
            return Err(());
        }
        let start = self.pos;
        self.pos += 1;
        while self.pos < self.data.len() && is_atext(self.data[self.pos]) {
            self.pos += 1;
        }
        out.extend_from_slice(&self.data[start..self.pos]);
        if self.at_end() {
            return Ok(false);
        }
        self.skip_lwsp()
    }

    /// RFC 5322 3.2.3 dot-atom, allowing CFWS around the dots (RFC 822).
    pub(crate) fn dot_atom(&mut self, out: &mut Vec<u8>) -> Step {
        if self.at_end() || !is_atext(self.peek()) {
            return Err(());
        }
        let mut start = self.pos;
        self.pos += 1;
        while self.pos < self.data.len() {
            if is_atext(self.data[self.pos]) {
                self.pos += 1;
                continue;
            }
            if start == self.pos {
                return Err(());
            }
            out.extend_from_slice(&self.data[start..self.pos]);
            if !self.skip_lwsp()? {
                return Ok(false);
            }
            if self.peek() != b'.' {
                return Ok(true);
            }
            self.pos += 1;
            out.push(b'.');
            if !self.skip_lwsp()? {
                return Err(());
            }
            start = self.pos;
        }
        out.extend_from_slice(&self.data[start..self.pos]);
        Ok(false)
    }

    /// RFC 2045 5.1 token (dots allowed, as Dovecot does).
    pub(crate) fn mime_token(&mut self, out: &mut Vec<u8>) -> Step {
        let start = self.pos;
        while self.pos < self.data.len() {
            let c = self.data[self.pos];
            if is_token(c) || c == b'.' {
                self.pos += 1;
                continue;
            }
            out.extend_from_slice(&self.data[start..self.pos]);
            return self.skip_lwsp();
        }
        out.extend_from_slice(&self.data[start..self.pos]);
        Ok(false)
    }

    /// RFC 5322 3.2.4 quoted-string; folding removed, quoted-pairs undone.
    pub(crate) fn quoted_string(&mut self, out: &mut Vec<u8>) -> Step {
        self.pos += 1;
        let mut start = self.pos;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                0 if self.nul_replacement => {
                    out.extend_from_slice(&self.data[start..self.pos]);
                    out.extend_from_slice(NUL_REPLACEMENT);
                    start = self.pos + 1;
                }
                b'"' => {
                    out.extend_from_slice(&self.data[start..self.pos]);
                    self.pos += 1;
                    return self.skip_lwsp();
                }
                b'\n' => {
                    let mut end = self.pos;
                    if end > start && self.data[end - 1] == b'\r' {
                        end -= 1;
                    }
                    out.extend_from_slice(&self.data[start..end]);
                    start = self.pos + 1;
                }
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return Err(());
                    }
                    if matches!(self.data[self.pos], b'\r' | b'\n' | 0) {
                        self.pos -= 1;
                    } else {
                        out.extend_from_slice(&self.data[start..self.pos - 1]);
                        start = self.pos;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        Err(())
    }

    fn atom_or_dot(&mut self, out: &mut Vec<u8>) -> Step {
        let start = self.pos;
        while self.pos < self.data.len() {
            let c = self.data[self.pos];
            if is_atext(c) || c == b'.' {
                self.pos += 1;
                continue;
            }
            out.extend_from_slice(&self.data[start..self.pos]);
            return self.skip_lwsp();
        }
        out.extend_from_slice(&self.data[start..self.pos]);
        Ok(false)
    }

    /// RFC 5322 3.2.5 phrase and 4.1 obs-phrase: words joined by one space.
    pub(crate) fn phrase(&mut self, out: &mut Vec<u8>) -> Step {
        if self.at_end() {
            return Ok(false);
        }
        if self.peek() == b'.' {
            return Err(());
        }
        loop {
            let more = if self.peek() == b'"' {
                self.quoted_string(out)?
            } else {
                self.atom_or_dot(out)?
            };
            if !more {
                return Ok(false);
            }
            let c = self.peek();
            if !is_atext(c) && c != b'"' && c != b'.' {
                break;
            }
            out.push(b' ');
        }
        self.skip_lwsp()
    }

    /// RFC 5322 3.4.1 domain-literal; backslashes are kept.
    fn domain_literal(&mut self, out: &mut Vec<u8>) -> Step {
        let mut start = self.pos;
        self.pos += 1;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                0 if self.nul_replacement => {
                    out.extend_from_slice(&self.data[start..self.pos]);
                    out.extend_from_slice(NUL_REPLACEMENT);
                    start = self.pos + 1;
                }
                b'[' => return Err(()),
                b']' => {
                    out.extend_from_slice(&self.data[start..=self.pos]);
                    self.pos += 1;
                    return self.skip_lwsp();
                }
                b'\n' => {
                    let mut end = self.pos;
                    if end > start && self.data[end - 1] == b'\r' {
                        end -= 1;
                    }
                    out.extend_from_slice(&self.data[start..end]);
                    start = self.pos + 1;
                }
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return Err(());
                    }
                    if matches!(self.data[self.pos], b'\r' | b'\n' | 0) {
                        out.extend_from_slice(&self.data[start..self.pos]);
                        start = self.pos;
                        self.pos -= 1;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        Err(())
    }

    /// RFC 5322 3.4.1 domain after the '@' at the cursor.
    pub(crate) fn domain(&mut self, out: &mut Vec<u8>) -> Step {
        self.pos += 1;
        if !self.skip_lwsp()? {
            return Err(());
        }
        if self.peek() == b'[' {
            self.domain_literal(out)
        } else {
            self.dot_atom(out)
        }
    }

    /// RFC 2045 5.1 type "/" subtype into `out` ("" when broken).
    pub(crate) fn content_type(&mut self, out: &mut Vec<u8>) -> Step {
        if !self.skip_lwsp()? {
            return Err(());
        }
        let start = out.len();
        if !self.mime_token(out)? || out.len() == start {
            return Err(());
        }
        if self.peek() != b'/' {
            out.truncate(start);
            return Err(());
        }
        self.pos += 1;
        if !self.skip_lwsp().unwrap_or(false) {
            out.truncate(start);
            return Err(());
        }
        out.push(b'/');
        let sub = out.len();
        let ret = self.mime_token(out);
        if ret.is_err() || out.len() == sub || (!self.at_end() && self.peek() != b';') {
            out.truncate(start);
            return Err(());
        }
        ret
    }

    /// One `; attribute=value`: `Ok(None)` at the end, `Err` when broken.
    fn content_param(&mut self) -> Result<Option<Param>, ()> {
        if self.at_end() {
            return Ok(None);
        }
        if self.peek() != b';' {
            return Err(());
        }
        self.pos += 1;
        if !self.skip_lwsp()? {
            return Err(());
        }
        let mut key = Vec::new();
        if !self.mime_token(&mut key)? || self.peek() != b'=' {
            return Err(());
        }
        self.pos += 1;
        let mut value = Vec::new();
        let ret = match self.skip_lwsp() {
            Ok(true) => {
                if self.peek() == b'"' {
                    self.quoted_string(&mut value)
                } else if self.peek() == b'=' {
                    // broken input such as name==?utf-8?b?...?=
                    while !self.at_end()
                        && !matches!(self.peek(), b';' | b' ' | b'\t' | b'\r' | b'\n')
                    {
                        value.push(self.peek());
                        self.pos += 1;
                    }
                    Ok(true)
                } else {
                    self.mime_token(&mut value)
                }
            }
            other => other,
        };
        if ret.is_err() {
            return Err(());
        }
        Ok(Some((key, value)))
    }

    /// RFC 2045 5.1 parameters with RFC 2231 3 continuations merged:
    /// plain ones in order, then the merged ones sorted by name (Dovecot's
    /// rfc2231_parse). Broken parameters are skipped a byte at a time.
    pub(crate) fn params(&mut self) -> Vec<Param> {
        let saved = std::mem::replace(&mut self.nul_replacement, true);
        let result = self.params_inner();
        self.nul_replacement = saved;
        result
    }

    fn params_inner(&mut self) -> Vec<Param> {
        let mut result = Vec::new();
        // (key, index, extended, value)
        let mut cont: Vec<(Vec<u8>, u32, bool, Vec<u8>)> = Vec::new();
        loop {
            let (key, value) = match self.content_param() {
                Ok(None) => break,
                Ok(Some(kv)) => kv,
                Err(()) => {
                    if self.at_end() {
                        break;
                    }
                    self.pos += 1;
                    continue;
                }
            };
            if let Some(star) = key.iter().position(|&c| c == b'*') {
                let mut p = star;
                let mut idx: u32 = 0;
                if p + 1 < key.len() {
                    p += 1;
                    while p < key.len() && key[p].is_ascii_digit() {
                        idx = idx.wrapping_mul(10).wrapping_add(u32::from(key[p] - b'0'));
                        p += 1;
                    }
                }
                let extended = p < key.len() && key[p] == b'*';
                if extended {
                    p += 1;
                }
                if p >= key.len() {
                    cont.push((key[..star].to_vec(), idx, extended, value));
                    continue;
                }
            }
            result.push((key, value));
        }
        if cont.is_empty() {
            return result;
        }
        cont.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut i = 0;
        while i < cont.len() {
            let mut j = i;
            let mut ok = true;
            let mut have_extended = false;
            let mut next_idx = 0u32;
            while j < cont.len() && cont[i].0.eq_ignore_ascii_case(&cont[j].0) {
                if cont[j].1 != next_idx {
                    ok = false;
                }
                have_extended |= cont[j].2;
                next_idx = next_idx.wrapping_add(1);
                j += 1;
            }
            if !ok {
                for c in &cont[i..j] {
                    let mut key = c.0.clone();
                    key.extend_from_slice(format!("*{}", c.1).as_bytes());
                    if c.2 {
                        key.push(b'*');
                    }
                    result.push((key, c.3.clone()));
                }
            } else {
                let mut value = Vec::new();
                if !cont[i].2 && have_extended {
                    value.extend_from_slice(b"''");
                }
                for c in &cont[i..j] {
                    if !c.2 && have_extended {
                        for &b in &c.3 {
                            if b == b'%' {
                                value.extend_from_slice(b"%25");
                            } else {
                                value.push(b);
                            }
                        }
                    } else {
                        value.extend_from_slice(&c.3);
                    }
                }
                let mut key = cont[i].0.clone();
                if have_extended {
                    key.push(b'*');
                }
                result.push((key, value));
            }
            i = j;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2231_continuations_merge_and_stay_encoded() {
        let mut p = Parser::new(b"; a*1*=b; a*0*=UTF-8''x%20; plain=1");
        let params = p.params();
        assert_eq!(
            params,
            vec![
                (b"plain".to_vec(), b"1".to_vec()),
                (b"a*".to_vec(), b"UTF-8''x%20b".to_vec())
            ]
        );
    }

    #[test]
    fn content_type_without_slash_is_broken() {
        let mut out = Vec::new();
        assert!(Parser::new(b"text; charset=x")
            .content_type(&mut out)
            .is_err());
        assert!(out.is_empty());
    }
}
