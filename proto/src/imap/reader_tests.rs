//! Tests of `CommandReader`: events for whole and byte-by-byte input,
//! literals, APPEND streaming, limits and recovery.

use super::*;
use crate::imap::command::CommandBody;

/// An event with owned data, APPEND data pieces joined, for comparing runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Cmd(String, CommandBody),
    Continue,
    Line(Vec<u8>),
    AppendStart(String, Vec<u8>),
    AppendMessage(Vec<Flag>, Option<DateTime>, u64, bool, bool),
    Data(Vec<u8>),
    MessageEnd,
    AppendEnd,
    Error(Option<String>, ParseError, bool),
}

/// Feed `pieces` one after another, collecting events; `raw_after` lists
/// command names after which the next line is read raw.
fn run(limits: &Limits, pieces: &[&[u8]]) -> (Vec<Ev>, CommandReader) {
    let mut r = CommandReader::new(limits.clone());
    let mut out: Vec<Ev> = Vec::new();
    for p in pieces {
        let mut input: &[u8] = p;
        while let Some(e) = r.next(&mut input) {
            assert!(r.buffered_len() <= limits.max_line);
            let ev = match e {
                Event::Command(c) => {
                    if matches!(c.body, CommandBody::Authenticate { .. } | CommandBody::Idle) {
                        r.read_raw_line();
                    }
                    Ev::Cmd(c.tag.to_string(), c.body)
                }
                Event::Continue => Ev::Continue,
                Event::Line(l) => Ev::Line(l),
                Event::AppendStart { tag, mailbox } => {
                    Ev::AppendStart(tag.to_string(), mailbox.bytes().to_vec())
                }
                Event::AppendMessage {
                    flags,
                    date,
                    size,
                    binary,
                    utf8,
                } => Ev::AppendMessage(flags, date, size, binary, utf8),
                Event::AppendData(d) => {
                    if let Some(Ev::Data(prev)) = out.last_mut() {
                        prev.extend_from_slice(d);
                        continue;
                    }
                    Ev::Data(d.to_vec())
                }
                Event::AppendMessageEnd => Ev::MessageEnd,
                Event::AppendEnd => Ev::AppendEnd,
                Event::Error { error, fatal } => {
                    Ev::Error(error.tag.map(|t| t.to_string()), error.error, fatal)
                }
            };
            out.push(ev);
        }
        assert!(input.is_empty());
    }
    (out, r)
}

/// Whole and byte by byte (and in pieces of 7) give the same events.
fn events(limits: &Limits, input: &[u8]) -> Vec<Ev> {
    let (whole, _) = run(limits, &[input]);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    let (split, _) = run(limits, &bytes);
    assert_eq!(whole, split, "byte by byte differs for {input:?}");
    let sevens: Vec<&[u8]> = input.chunks(7).collect();
    let (split7, _) = run(limits, &sevens);
    assert_eq!(whole, split7, "pieces of 7 differ for {input:?}");
    whole
}

fn cmd(tag: &str, body: &str) -> Ev {
    let line = format!("{tag} {body}");
    let c = crate::imap::parse_command(line.as_bytes(), &Limits::default()).expect("valid");
    Ev::Cmd(tag.into(), c.body)
}

fn err(tag: Option<&str>, e: ParseError) -> Ev {
    Ev::Error(tag.map(str::to_string), e, false)
}

#[test]
fn pipelined_commands_and_literals() {
    let l = Limits::default();
    let ev = events(
        &l,
        b"a NOOP\r\n\r\nb LOGIN {3}\r\nbob {6+}\r\nsecret\r\nc SELECT INBOX\nd FROB\r\n",
    );
    assert_eq!(
        ev,
        vec![
            cmd("a", "NOOP"),
            Ev::Continue,
            cmd("b", "LOGIN {3+}\r\nbob {6+}\r\nsecret"),
            cmd("c", "SELECT INBOX"),
            err(Some("d"), ParseError::UnknownCommand),
        ]
    );
    // A literal of zero octets.
    let ev = events(&l, b"a LOGIN {0}\r\n {0+}\r\n\r\n");
    assert_eq!(ev, vec![Ev::Continue, cmd("a", "LOGIN {0+}\r\n {0+}\r\n")]);
}

#[test]
fn raw_lines_for_authenticate_and_idle() {
    let ev = events(
        &Limits::default(),
        b"a AUTHENTICATE PLAIN\r\ndGVzdAB0ZXN0AHRlc3Q=\r\nb IDLE\r\nDONE\r\n\r\n",
    );
    assert_eq!(
        ev,
        vec![
            cmd("a", "AUTHENTICATE PLAIN"),
            Ev::Line(b"dGVzdAB0ZXN0AHRlc3Q=".to_vec()),
            cmd("b", "IDLE"),
            Ev::Line(b"DONE".to_vec()),
        ]
    );
    // An empty raw line is a line (an empty SASL response).
    let ev = events(&Limits::default(), b"a AUTHENTICATE PLAIN\r\n\r\n");
    assert_eq!(ev[1], Ev::Line(Vec::new()));
}

#[test]
fn append_streams_messages() {
    let l = Limits::default();
    let ev = events(
        &l,
        b"A003 APPEND saved-messages (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" {11}\r\nDate: x\r\n\r\n\r\nb NOOP\r\n",
    );
    let date = DateTime::parse(b" 7-Feb-1994 21:52:25 -0800");
    assert_eq!(
        ev,
        vec![
            Ev::AppendStart("A003".into(), b"saved-messages".to_vec()),
            Ev::AppendMessage(vec![Flag::Seen], date, 11, false, false),
            Ev::Continue,
            Ev::Data(b"Date: x\r\n\r\n".to_vec()),
            Ev::MessageEnd,
            Ev::AppendEnd,
            cmd("b", "NOOP"),
        ]
    );
    // MULTIAPPEND (RFC 3502), a literal mailbox name, LITERAL+, literal8,
    // and a message of zero octets.
    let ev = events(
        &l,
        b"a APPEND {5+}\r\nINBOX {3+}\r\nabc (\\Draft) ~{2+}\r\n\0x {0+}\r\n\r\n",
    );
    assert_eq!(
        ev,
        vec![
            Ev::AppendStart("a".into(), b"INBOX".to_vec()),
            Ev::AppendMessage(vec![], None, 3, false, false),
            Ev::Data(b"abc".to_vec()),
            Ev::MessageEnd,
            Ev::AppendMessage(vec![Flag::Draft], None, 2, true, false),
            Ev::Data(b"\0x".to_vec()),
            Ev::MessageEnd,
            Ev::AppendMessage(vec![], None, 0, false, false),
            Ev::MessageEnd,
            Ev::AppendEnd,
        ]
    );
    // Bad text after a message, or a bad flag before one.
    let ev = events(&l, b"a APPEND x {1+}\r\nm junk\r\nb NOOP\r\n");
    assert_eq!(ev[3], Ev::MessageEnd);
    assert_eq!(
        ev[4],
        err(Some("a"), ParseError::Syntax("bad text after the message"))
    );
    assert_eq!(ev[5], cmd("b", "NOOP"));
    let ev = events(&l, b"a APPEND x (\\Recent) {3+}\r\nabc\r\nb NOOP\r\n");
    assert_eq!(
        ev,
        vec![
            err(Some("a"), ParseError::Syntax("invalid flag")),
            cmd("b", "NOOP")
        ]
    );
}

/// RFC 6855 4: `UTF8 (~{n})` under UTF8=ACCEPT, in a MULTIAPPEND.
#[test]
fn append_utf8_literal() {
    let ev = events(
        &Limits::default(),
        b"a APPEND x UTF8 (~{2+}\r\nab) (\\Seen) UTF8 (~{1+}\r\nc)\r\nb APPEND x UTF8 ({1+}\r\nc)\r\n",
    );
    assert_eq!(
        ev,
        vec![
            Ev::AppendStart("a".into(), b"x".to_vec()),
            Ev::AppendMessage(vec![], None, 2, false, true),
            Ev::Data(b"ab".to_vec()),
            Ev::MessageEnd,
            Ev::AppendMessage(vec![Flag::Seen], None, 1, false, true),
            Ev::Data(b"c".to_vec()),
            Ev::MessageEnd,
            Ev::AppendEnd,
            err(Some("b"), ParseError::Syntax("UTF8 needs a literal8")),
        ]
    );
    let ev = events(
        &Limits::default(),
        b"a APPEND x UTF8 (~{1+}\r\nc\r\nb NOOP\r\n",
    );
    assert_eq!(ev[4], err(Some("a"), ParseError::Syntax("expected )")));
    assert_eq!(ev[5], cmd("b", "NOOP"));
}

/// A message is never held by the reader: its bytes come out as they go in.
#[test]
fn append_data_is_not_buffered() {
    let mut r = CommandReader::new(Limits::default());
    let mut input: &[u8] = b"a APPEND x {100000+}\r\n";
    let mut n = 0;
    while let Some(e) = r.next(&mut input) {
        n += 1;
        assert!(matches!(
            e,
            Event::AppendStart { .. } | Event::AppendMessage { .. }
        ));
    }
    assert_eq!(n, 2);
    let chunk = vec![b'x'; 4096];
    let mut total = 0;
    for _ in 0..25 {
        let mut input: &[u8] = &chunk;
        while let Some(e) = r.next(&mut input) {
            match e {
                Event::AppendData(d) => total += d.len(),
                Event::AppendMessageEnd => {}
                other => panic!("{other:?}"),
            }
            assert_eq!(r.buffered_len(), 0);
        }
    }
    assert_eq!(total, 100_000);
}

#[test]
fn reject_append_before_continue() {
    let mut r = CommandReader::new(Limits::default());
    let mut input: &[u8] = b"a APPEND nosuch {5}\r\nb NOOP\r\n";
    assert!(matches!(
        r.next(&mut input),
        Some(Event::AppendStart { .. })
    ));
    assert!(matches!(
        r.next(&mut input),
        Some(Event::AppendMessage { .. })
    ));
    r.reject_append();
    // No continuation: the client waits for it and sends the next command.
    match r.next(&mut input) {
        Some(Event::Command(c)) => assert_eq!(c.tag.as_str(), "b"),
        other => panic!("{other:?}"),
    }
    // A non-synchronizing message is discarded with the rest of its command.
    let mut r = CommandReader::new(Limits::default());
    let mut input: &[u8] = b"a APPEND nosuch {5+}\r\nhello {2+}\r\nxx\r\nb NOOP\r\n";
    assert!(matches!(
        r.next(&mut input),
        Some(Event::AppendStart { .. })
    ));
    assert!(matches!(
        r.next(&mut input),
        Some(Event::AppendMessage { .. })
    ));
    r.reject_append();
    match r.next(&mut input) {
        Some(Event::Command(c)) => assert_eq!(c.tag.as_str(), "b"),
        other => panic!("{other:?}"),
    }
}

/// A message refused while it streams: the rest of it and of the command
/// are dropped, the next command is read.
#[test]
fn reject_append_while_streaming() {
    let mut r = CommandReader::new(Limits::default());
    let mut input: &[u8] = b"a APPEND x {10}\r\n0123";
    assert!(matches!(
        r.next(&mut input),
        Some(Event::AppendStart { .. })
    ));
    assert!(matches!(
        r.next(&mut input),
        Some(Event::AppendMessage { .. })
    ));
    assert_eq!(r.next(&mut input), Some(Event::Continue));
    assert_eq!(r.next(&mut input), Some(Event::AppendData(b"0123")));
    r.reject_append();
    let mut input: &[u8] = b"456789 {3+}\r\nabc\r\nb NOOP\r\n";
    match r.next(&mut input) {
        Some(Event::Command(c)) => assert_eq!(c.tag.as_str(), "b"),
        other => panic!("{other:?}"),
    }
}

fn small() -> Limits {
    Limits {
        max_line: 64,
        max_literal: 100,
        max_discard: 1000,
        literal_minus: false,
        max_depth: 4,
        max_items: 20,
    }
}

#[test]
fn oversized_literals() {
    let l = small();
    // A synchronizing literal over the line limit: refused before "+";
    // the client sends nothing more for it, the next command is read.
    let ev = events(&l, b"a LOGIN {100}\r\nb NOOP\r\n");
    assert_eq!(
        ev,
        vec![err(Some("a"), ParseError::LiteralTooBig), cmd("b", "NOOP")]
    );
    // A message over APPENDLIMIT: NO [TOOBIG] before "+".
    let ev = events(&l, b"a APPEND INBOX {101}\r\nb NOOP\r\n");
    assert_eq!(
        ev,
        vec![
            Ev::AppendStart("a".into(), b"INBOX".to_vec()),
            err(Some("a"), ParseError::MessageTooBig),
            cmd("b", "NOOP")
        ]
    );
    assert_eq!(
        CommandError {
            tag: None,
            error: ParseError::MessageTooBig
        }
        .status()
        .kind,
        crate::imap::StatusKind::No
    );
    // Non-synchronizing over the limit: BAD, the bytes are discarded
    // (never parsed as commands), and so is the rest of the command.
    let mut input = b"a LOGIN {200+}\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 190));
    input.extend(b"\r\nc NOOP\r\n x {3+}\r\nabc\r\nb NOOP\r\n");
    let ev = events(&l, &input);
    assert_eq!(
        ev,
        vec![err(Some("a"), ParseError::LiteralTooBig), cmd("b", "NOOP")]
    );
    // Beyond max_discard: the session ends.
    let ev = events(&l, b"a LOGIN {5000+}\r\nb NOOP\r\n");
    assert_eq!(
        ev,
        vec![Ev::Error(Some("a".into()), ParseError::LiteralTooBig, true)]
    );
    // LITERAL-: at most 4096 octets non-synchronizing.
    let minus = Limits {
        literal_minus: true,
        ..Limits::default()
    };
    let mut input = b"a APPEND x {4097+}\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'm', 4097));
    input.extend(b"\r\nb APPEND x {4096+}\r\n");
    input.extend(std::iter::repeat_n(b'm', 4096));
    input.extend(b"\r\n");
    let ev = events(&minus, &input);
    assert_eq!(ev[0], Ev::AppendStart("a".into(), b"x".to_vec()));
    assert_eq!(ev[1], err(Some("a"), ParseError::LiteralTooBig));
    assert_eq!(ev[2], Ev::AppendStart("b".into(), b"x".to_vec()));
    assert_eq!(ev.last(), Some(&Ev::AppendEnd));
    // literal8 outside APPEND.
    let ev = events(&l, b"a LOGIN ~{3}\r\nb NOOP\r\n");
    assert_eq!(
        ev[0],
        err(Some("a"), ParseError::Syntax("literal8 only in APPEND"))
    );
    assert_eq!(ev[1], cmd("b", "NOOP"));
    // A size that does not fit 64 bits.
    let ev = events(&l, b"a LOGIN {99999999999999999999999}\r\nb NOOP\r\n");
    assert_eq!(ev[0], err(Some("a"), ParseError::LiteralTooBig));
}

#[test]
fn over_long_lines_recover() {
    let l = small();
    let mut input = b"tag1 SEARCH ".to_vec();
    input.extend(std::iter::repeat_n(b'x', 100));
    input.extend(b"\r\nb NOOP\r\n");
    let ev = events(&l, &input);
    assert_eq!(
        ev,
        vec![err(Some("tag1"), ParseError::LineTooLong), cmd("b", "NOOP")]
    );
    // The tag is not known: untagged.
    let input = [vec![b'x'; 100], b"\r\nb NOOP\r\n".to_vec()].concat();
    let ev = events(&l, &input);
    assert_eq!(ev[0], err(None, ParseError::LineTooLong));
    assert_eq!(ev[1], cmd("b", "NOOP"));
    // An over-long line ending in a non-synchronizing literal: the literal
    // is dropped too (it would otherwise be read as a command).
    let mut input = b"a LOGIN ".to_vec();
    input.extend(std::iter::repeat_n(b'x', 100));
    input.extend(b" {8+}\r\nc NOOP\r\n\r\nb NOOP\r\n");
    let ev = events(&l, &input);
    assert_eq!(
        ev,
        vec![err(Some("a"), ParseError::LineTooLong), cmd("b", "NOOP")]
    );
    // Literals count toward the line.
    let ev = events(
        &l,
        b"a LOGIN {30}\r\n012345678901234567890123456789 {30}\r\nb NOOP\r\n",
    );
    assert_eq!(
        ev,
        vec![
            Ev::Continue,
            err(Some("a"), ParseError::LiteralTooBig),
            cmd("b", "NOOP")
        ]
    );
    // An over-long raw line.
    let mut input = b"a AUTHENTICATE PLAIN\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'A', 100));
    input.extend(b" {3+}\r\nb NOOP\r\n");
    let ev = events(&l, &input);
    assert_eq!(ev[1], err(None, ParseError::LineTooLong));
    assert_eq!(ev[2], cmd("b", "NOOP"));
}

/// No "+" for a line that is not an IMAP command we know.
#[test]
fn no_continuation_for_unknown_commands() {
    let l = Limits::default();
    let ev = events(&l, b"a FROB {5}\r\nb NOOP\r\n");
    assert_eq!(
        ev,
        vec![err(Some("a"), ParseError::UnknownCommand), cmd("b", "NOOP")]
    );
    let ev = events(&l, b"{5}\r\n+a NOOP {3}\r\n}\r\n123}\r\nb NOOP\r\n");
    assert_eq!(ev[0], err(None, ParseError::BadTag));
    assert_eq!(ev[1], err(None, ParseError::BadTag));
    assert_eq!(ev[4], cmd("b", "NOOP"));
    // A non-synchronizing literal of an unknown command is dropped.
    let ev = events(&l, b"a FROB {8+}\r\nc NOOP\r\n\r\nb NOOP\r\n");
    assert_eq!(
        ev,
        vec![err(Some("a"), ParseError::UnknownCommand), cmd("b", "NOOP")]
    );
}

#[test]
fn over_deep_nesting_is_bad() {
    let ev = events(&small(), b"a SEARCH (((((ALL)))))\r\nb NOOP\r\n");
    assert_eq!(
        ev,
        vec![err(Some("a"), ParseError::TooDeep), cmd("b", "NOOP")]
    );
}

/// Arbitrary inputs give the same events however they are cut, and the
/// buffer stays within the line limit.
#[test]
fn split_independence() {
    let l = small();
    let inputs: [&[u8]; 8] = [
        b"a APPEND x {3}\r\nabc (\\Seen) {2}\r\nde\r\n",
        b"a APPEND x {3}\r\nab",
        b"{3}\r\n{3}\r\n{3+}\r\n\r\n\r\n\n\n\r\r\r",
        b"a LOGIN {3+}\r\n\r\n\r\n {4}\r\n\r\n\r\n\r\n",
        b"a APPEND \"x\" \"01-Jan-2000 00:00:00 +0000\" ~{1}\r\n\0\r\nb NOOP\n",
        b"a SELECT {4}\r\nabcd (CONDSTORE)\r\n",
        b"a APPEND x {3+}\r\nabc {10000+}\r\n",
        b"a APPEND x (\\Seen {3+}\r\nabc\r\n",
    ];
    for input in inputs {
        events(&l, input);
        events(&Limits::default(), input);
    }
}

/// Every one-byte mutation of a few sessions gives the same events whole,
/// byte by byte and in pieces of 7, and never panics (what the fuzz target
/// checks, replayed here without AFL).
#[test]
fn mutations_split_independence() {
    let inputs: [&[u8]; 4] = [
        b"a LOGIN {3}\r\nbob {6+}\r\nsecret\r\nb IDLE\r\nDONE\r\n",
        b"a APPEND x (\\Seen) \"01-Jan-2000 00:00:00 +0000\" {3}\r\nabc ~{2+}\r\nde\r\nb NOOP\r\n",
        b"a FETCH 1:* (BODY.PEEK[1.HEADER.FIELDS (A {1+}\r\nB)]<0.5>)\r\nb AUTHENTICATE X\r\n=\r\n",
        b"a SEARCH OR (SEEN 1:2) NOT HEADER a {2+}\r\nbc\r\nb APPEND y {70+}\r\n",
    ];
    for l in [small(), Limits::default()] {
        for input in inputs {
            for i in 0..input.len() {
                for m in [b'\n', b'\r', b'{', b'}', b'+', b'~', b'9', b' ', b'(', 0] {
                    let mut v = input.to_vec();
                    v[i] = m;
                    events(&l, &v);
                }
            }
        }
    }
}
