//! The IMAP harness: proto::imap's command reader and parser.
//!
//! Owns what the `imap_command` target feeds and the properties it checks
//! beyond "does not panic": the events are the same for any split of the
//! input (APPEND data pieces joined); the reader never holds more than its
//! line limit; APPEND messages come out exactly as long as announced; every
//! error answers with one well-formed response line; nothing follows a
//! fatal error. Does not own the reader or the parser (proto).
//!
//! Standards: RFC 3501 2.2 and 7 / RFC 9051 (framing, literals, status
//! responses), RFC 7888 (non-synchronizing literals, LITERAL-), RFC 3502
//! (MULTIAPPEND).
//!
//! Security: every function takes attacker-shaped bytes; a panic, an abort
//! or a hang is a finding.
//!
//! Diagnostics: a failed property panics with what differed.

use proto::imap::{CommandBody, CommandReader, Event, Limits};

use crate::chunks;

/// The reader fed `data`, the first byte choosing the split and the
/// limits (bit 0: LITERAL-). Small limits so that the fuzzer reaches them.
pub fn imap_command(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_line: 200,
        max_literal: 300,
        max_discard: 1000,
        literal_minus: seed & 1 != 0,
        max_depth: 6,
        max_items: 24,
    };
    let whole = run(&limits, &[rest]);
    let split = run(&limits, &chunks(seed, rest));
    assert_eq!(whole, split, "events depend on the split");
}

/// The events as text (APPEND data joined per message), checking the
/// properties of each on the way.
fn run(limits: &Limits, pieces: &[&[u8]]) -> Vec<String> {
    let mut r = CommandReader::new(limits.clone());
    let mut out: Vec<String> = Vec::new();
    let mut data: Option<(u64, Vec<u8>)> = None;
    let mut closed = false;
    for p in pieces {
        let mut input: &[u8] = p;
        while let Some(e) = r.next(&mut input) {
            assert!(!closed, "an event after a fatal error: {e:?}");
            assert!(
                r.buffered_len() <= limits.max_line,
                "reader holds {} octets",
                r.buffered_len()
            );
            match e {
                Event::AppendData(d) => {
                    let (_, buf) = data.as_mut().expect("data inside a message");
                    buf.extend_from_slice(d);
                    continue;
                }
                Event::AppendMessage { size, .. } => {
                    assert!(size <= limits.max_literal, "APPENDLIMIT passed");
                    data = Some((size, Vec::new()));
                    // Refuse messages to a mailbox called "reject", as a
                    // session would for a missing one.
                    if out
                        .last()
                        .is_some_and(|l| l.contains("Mailbox(\"reject\")"))
                    {
                        r.reject_append();
                        data = None;
                    }
                }
                Event::AppendMessageEnd => {
                    let (size, buf) = data.take().expect("a message ended");
                    assert_eq!(buf.len() as u64, size, "message length");
                    out.push(format!("data {}", buf.escape_ascii()));
                }
                Event::Command(ref c) => {
                    if matches!(c.body, CommandBody::Authenticate { .. } | CommandBody::Idle) {
                        r.read_raw_line();
                    }
                }
                Event::Error { ref error, fatal } => {
                    let mut line = Vec::new();
                    let status = if fatal { error.bye() } else { error.status() };
                    status.write(&mut line);
                    assert!(line.ends_with(b"\r\n"));
                    let body = &line[..line.len() - 2];
                    assert!(
                        !body.iter().any(|&b| b < 0x20 || b == 0x7f),
                        "control in {:?}",
                        body.escape_ascii().to_string()
                    );
                    closed |= fatal;
                }
                _ => {}
            }
            out.push(format!("{e:?}"));
        }
        assert!(input.is_empty(), "input left over");
    }
    out
}
