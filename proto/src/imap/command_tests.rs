//! Tables of valid and invalid commands (RFC examples first) for
//! `parse_command`, and checks of what the valid ones parse to.

use super::*;
use crate::imap::fetch::{FetchAttr, Partial, Section, SectionText};
use crate::imap::search::{SearchKey, SearchReturn, SortKey, ThreadAlgorithm};
use crate::imap::types::{SeqNum, StringForm};

fn parse(s: &str) -> Result<Command, CommandError> {
    parse_command(s.as_bytes(), &Limits::default())
}

fn body(s: &str) -> CommandBody {
    match parse(s) {
        Ok(c) => c.body,
        Err(e) => panic!("{s:?}: {e:?}"),
    }
}

fn atom(s: &str) -> AString {
    AString {
        bytes: s.as_bytes().to_vec(),
        form: StringForm::Atom,
    }
}

/// Commands from RFC 3501 6, RFC 9051 6 and the extensions' examples that
/// must parse.
#[test]
fn valid_commands() {
    let table = [
        "a002 NOOP",
        "abcd CAPABILITY",
        "A023 LOGOUT",
        "a002 STARTTLS",
        "A001 AUTHENTICATE GSSAPI",
        "a AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=",
        "a AUTHENTICATE PLAIN =",
        "a001 LOGIN SMITH SESAME",
        "a001 LOGIN {5+}\r\nSMITH \"SE\\\"SAME\"",
        "A142 SELECT INBOX",
        "A932 EXAMINE blurdybloop",
        "a SELECT INBOX (CONDSTORE)",
        "A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
        "B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29975:29977)))",
        "a SELECT INBOX (QRESYNC (1 2 (1 1)))",
        "A003 CREATE owatagusiam/",
        "t1 CREATE MySpecial (USE (\\Drafts \\Sent))",
        "A683 DELETE blurdybloop",
        "A683 RENAME blurdybloop sarasoop",
        "A002 SUBSCRIBE #news.comp.mail.mime",
        "A002 UNSUBSCRIBE #news.comp.mail.mime",
        "A101 LIST \"\" \"\"",
        "A102 LIST #news.comp.mail.misc \"\"",
        "A202 LIST ~/Mail/ %",
        "A01 LIST (REMOTE SUBSCRIBED) \"\" \"*\"",
        "A02 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN)",
        "A03 LIST \"\" (\"foo\" \"foo/*\")",
        "t1 LIST (SPECIAL-USE) \"\" \"*\"",
        "A04 LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))",
        "A05 LIST () \"\" % RETURN ()",
        "A002 LSUB \"#news.\" \"comp.mail.*\"",
        "A001 NAMESPACE",
        "A042 STATUS blurdybloop (UIDNEXT MESSAGES)",
        "a STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN SIZE DELETED HIGHESTMODSEQ APPENDLIMIT)",
        "FXXZ CHECK",
        "A341 CLOSE",
        "a UNSELECT",
        "A202 EXPUNGE",
        "A003 UID EXPUNGE 3000:3002",
        "a002 IDLE",
        "A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"",
        "A283 SEARCH TEXT \"string not in mailbox\"",
        "A284 SEARCH CHARSET UTF-8 TEXT {6+}\r\nXXXXXX",
        "a SEARCH OR (SEEN FLAGGED) NOT (1:5 UID 7:*) LARGER 100 SMALLER 9000000000",
        "a SEARCH HEADER Message-ID <x@y> KEYWORD $Junk UNKEYWORD foo BCC a CC b TO c BODY d SUBJECT e",
        "a SEARCH BEFORE \"1-Jan-2000\" ON 2-Feb-2001 SENTBEFORE 1-Mar-2002 SENTON 1-Apr-2003 SENTSINCE 1-May-2004",
        "a SEARCH ALL ANSWERED DELETED DRAFT NEW OLD RECENT SEEN UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNSEEN",
        "a SEARCH MODSEQ 620162338",
        "a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338",
        "A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"",
        "A283 SEARCH RETURN () FLAGGED",
        "A1 UID SEARCH RETURN (SAVE) FLAGGED",
        "A2 FETCH $ (UID FLAGS)",
        "a SEARCH YOUNGER 3600 OLDER 60",
        "A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])",
        "A655 FETCH 2:4 ALL",
        "a FETCH 1 FAST",
        "a FETCH 1 FULL",
        "a FETCH 1 BODY.PEEK[1.2.3.MIME]<0.1024>",
        "a FETCH 1 (BODY[] BODY[TEXT] BODY[1] BODY[HEADER.FIELDS.NOT (X-A \"X-B\")] RFC822 RFC822.HEADER RFC822.TEXT RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE INTERNALDATE UID MODSEQ)",
        "a FETCH 1 (BINARY[1]<0.10> BINARY.PEEK[] BINARY.SIZE[2.1])",
        "s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)",
        "s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)",
        "A003 STORE 2:4 +FLAGS (\\Deleted)",
        "a STORE 1 -FLAGS.SILENT \\Seen $Junk",
        "a STORE 1 FLAGS ()",
        "d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)",
        "A003 COPY 2:4 MEETING",
        "a UID COPY 1:* \"Sent Items\"",
        "a UID MOVE 42 Trash",
        "a MOVE 1 Trash",
        "A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994",
        "a UID SORT (REVERSE DATE ARRIVAL DISPLAYFROM) US-ASCII ALL",
        "a SORT RETURN (MIN MAX) (SIZE) UTF-8 ALL",
        "A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000",
        "A284 UID THREAD REFERENCES US-ASCII TEXT \"gewp\"",
        "a023 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" NIL)",
        "a ID NIL",
        "a ID ()",
        "t2 ENABLE CONDSTORE X-GOOD-IDEA",
        "a COMPRESS DEFLATE",
        "G0001 GETQUOTA \"!partition/sda4\"",
        "G0002 GETQUOTAROOT INBOX",
        "S0000 SETQUOTA \"#user/alice\" (STORAGE 510)",
        "a SETQUOTA \"\" ()",
    ];
    for s in table {
        if let Err(e) = parse(s) {
            panic!("{s:?}: {e:?}");
        }
    }
}

/// Malformed commands and the error each gives.
#[test]
fn invalid_commands() {
    use ParseError::*;
    let table: &[(&str, Option<&str>, ParseError)] = &[
        ("", None, BadTag),
        ("+a NOOP", None, BadTag),
        ("a{ NOOP", None, BadTag),
        ("a", Some("a"), Syntax("expected a space")),
        ("a FROB", Some("a"), UnknownCommand),
        ("a 123", Some("a"), UnknownCommand),
        (
            "a NOOP x",
            Some("a"),
            Syntax("unexpected text after the arguments"),
        ),
        ("a  NOOP", Some("a"), UnknownCommand),
        ("a LOGIN user", Some("a"), Syntax("expected a space")),
        (
            "a LOGIN \"us\rer\" p",
            Some("a"),
            Syntax("unterminated quoted string"),
        ),
        (
            "a LOGIN {10}\r\nabc p",
            Some("a"),
            Syntax("literal longer than the command"),
        ),
        (
            "a LOGIN {3}\r\na\0c p",
            Some("a"),
            Syntax("NUL in a literal"),
        ),
        ("a SELECT", Some("a"), Syntax("expected a space")),
        (
            "a SELECT INBOX (FOO)",
            Some("a"),
            Syntax("unknown SELECT parameter"),
        ),
        (
            "a SELECT INBOX (CONDSTORE CONDSTORE)",
            Some("a"),
            Syntax("unknown SELECT parameter"),
        ),
        ("a FETCH 0 FLAGS", Some("a"), Syntax("invalid sequence set")),
        (
            "a FETCH 1 (FLAGS ALL)",
            Some("a"),
            Syntax("unknown FETCH item"),
        ),
        ("a FETCH 1 ()", Some("a"), Syntax("empty list")),
        ("a FETCH 1 BODY[MIME]", Some("a"), Syntax("invalid section")),
        ("a FETCH 1 BODY[1.]", Some("a"), Syntax("invalid section")),
        (
            "a FETCH 1 BODY[0]",
            Some("a"),
            Syntax("expected a non-zero number"),
        ),
        (
            "a FETCH 1 BODY[]<0.0>",
            Some("a"),
            Syntax("expected a non-zero number"),
        ),
        (
            "a FETCH 1 BODY[HEADER.FIELDS ()]",
            Some("a"),
            Syntax("empty list"),
        ),
        (
            "a FETCH 1 BODY[HEADER.FIELDS (a:b)]",
            Some("a"),
            Syntax("invalid header field name"),
        ),
        (
            "a FETCH 1 FLAGS (VANISHED)",
            Some("a"),
            Syntax("VANISHED needs UID FETCH and CHANGEDSINCE"),
        ),
        (
            "a UID FETCH 1 FLAGS (VANISHED)",
            Some("a"),
            Syntax("VANISHED needs UID FETCH and CHANGEDSINCE"),
        ),
        (
            "a STORE 1 +FLAGS (\\Recent)",
            Some("a"),
            Syntax("invalid flag"),
        ),
        ("a STORE 1 +FLAGS (\\*)", Some("a"), Syntax("invalid flag")),
        (
            "a STORE 1 FLAG (\\Seen)",
            Some("a"),
            Syntax("expected FLAGS"),
        ),
        (
            "a STORE 1 (UNCHANGEDSINCE x) FLAGS ()",
            Some("a"),
            Syntax("expected a number"),
        ),
        ("a SEARCH", Some("a"), Syntax("expected a space")),
        ("a SEARCH FOO", Some("a"), Syntax("unknown search key")),
        (
            "a SEARCH SINCE 30-Feb-2000",
            Some("a"),
            Syntax("invalid date"),
        ),
        (
            "a SEARCH KEYWORD \\Seen",
            Some("a"),
            Syntax("KEYWORD takes a keyword"),
        ),
        ("a SEARCH OR SEEN", Some("a"), Syntax("expected a space")),
        (
            "a SEARCH RETURN (FOO) ALL",
            Some("a"),
            Syntax("unknown RETURN option"),
        ),
        (
            "a SEARCH LARGER 9223372036854775808",
            Some("a"),
            Syntax("expected a number"),
        ),
        (
            "a SORT (FOO) UTF-8 ALL",
            Some("a"),
            Syntax("unknown sort key"),
        ),
        ("a SORT (DATE) ALL", Some("a"), Syntax("expected a space")),
        ("a UID FROB 1", Some("a"), Syntax("unknown UID command")),
        (
            "a LIST (FOO) \"\" *",
            Some("a"),
            Syntax("unknown LIST selection option"),
        ),
        (
            "a LIST (RECURSIVEMATCH) \"\" *",
            Some("a"),
            Syntax("RECURSIVEMATCH alone"),
        ),
        (
            "a LIST \"\" * RETURN (FOO)",
            Some("a"),
            Syntax("unknown LIST return option"),
        ),
        ("a STATUS INBOX ()", Some("a"), Syntax("empty list")),
        (
            "a STATUS INBOX (FOO)",
            Some("a"),
            Syntax("unknown STATUS item"),
        ),
        (
            "a CREATE x (FOO (\\Sent))",
            Some("a"),
            Syntax("unknown CREATE parameter"),
        ),
        ("a ID (\"a\")", Some("a"), Syntax("expected a space")),
        ("a ID (a b)", Some("a"), Syntax("expected a string")),
        (
            "a APPEND INBOX",
            Some("a"),
            Syntax("APPEND needs a message literal"),
        ),
        (
            "a AUTHENTICATE PLAIN !!",
            Some("a"),
            Syntax("bad initial response"),
        ),
        ("a ENABLE", Some("a"), Syntax("expected a space")),
    ];
    for (s, tag, err) in table {
        let e = parse(s).expect_err(s);
        assert_eq!(e.tag.as_ref().map(Tag::as_str), *tag, "{s:?}");
        assert_eq!(&e.error, err, "{s:?}");
    }
}

#[test]
fn parsed_values() {
    assert_eq!(
        body("a001 LOGIN {5+}\r\nSMITH \"SE\\\"SAME\""),
        CommandBody::Login {
            user: AString {
                bytes: b"SMITH".to_vec(),
                form: StringForm::Literal
            },
            password: AString {
                bytes: b"SE\"SAME".to_vec(),
                form: StringForm::Quoted
            },
        }
    );
    let CommandBody::Select { mailbox, params } = body("a select inbox (QRESYNC (1 2 3:4 (1 5)))")
    else {
        panic!("select")
    };
    assert!(mailbox.is_inbox());
    let q = params.qresync.expect("qresync");
    assert_eq!((q.uid_validity, q.modseq), (1, 2));
    assert!(q.known_uids.is_some() && q.seq_match.is_some());
    assert_eq!(
        body("a FETCH 1:* BODY.PEEK[1.2.HEADER.FIELDS (From To)]<10.20>"),
        CommandBody::Fetch {
            uid: false,
            set: SequenceSet::Ranges(vec![(SeqNum::Value(1), SeqNum::Last)]),
            attrs: vec![FetchAttr::BodySection {
                peek: true,
                section: Section {
                    part: vec![1, 2],
                    text: Some(SectionText::HeaderFields(vec!["From".into(), "To".into()])),
                },
                partial: Some(Partial {
                    offset: 10,
                    length: 20
                }),
            }],
            modifiers: Default::default(),
        }
    );
    let CommandBody::Search { uid: true, args } =
        body("a UID SEARCH RETURN (COUNT ALL) CHARSET utf-8 NOT OR 1 2 HEADER X-Foo \"\"")
    else {
        panic!("search")
    };
    assert_eq!(args.ret, Some(vec![SearchReturn::Count, SearchReturn::All]));
    assert_eq!(args.charset.as_deref(), Some("UTF-8"));
    assert_eq!(args.keys.len(), 2);
    assert!(matches!(&args.keys[0], SearchKey::Not(k) if matches!(**k, SearchKey::Or(..))));
    let CommandBody::Store {
        mode,
        silent,
        flags,
        unchanged_since,
        ..
    } = body("a STORE 1 (UNCHANGEDSINCE 5) -FLAGS.SILENT (\\Seen foo)")
    else {
        panic!("store")
    };
    assert_eq!(mode, StoreMode::Remove);
    assert!(silent);
    assert_eq!(flags, vec![Flag::Seen, Flag::Keyword("foo".into())]);
    assert_eq!(unchanged_since, Some(5));
    let CommandBody::List(l) =
        body("a LIST (SUBSCRIBED) \"\" (INBOX Lists/%) RETURN (CHILDREN STATUS (UIDNEXT))")
    else {
        panic!("list")
    };
    assert!(l.extended && l.select.subscribed && l.ret.children);
    assert_eq!(l.patterns, vec![atom("INBOX"), atom("Lists/%")]);
    assert_eq!(l.ret.status, Some(vec![StatusItem::UidNext]));
    let CommandBody::List(l) = body("a LIST \"\" *") else {
        panic!("list")
    };
    assert!(!l.extended);
    let CommandBody::Sort { criteria, .. } = body("a SORT (REVERSE SIZE) UTF-8 ALL") else {
        panic!("sort")
    };
    assert!(criteria[0].reverse && criteria[0].key == SortKey::Size);
    assert!(matches!(
        body("a THREAD X-FOO UTF-8 ALL"),
        CommandBody::Thread {
            algorithm: ThreadAlgorithm::Other(_),
            ..
        }
    ));
    assert_eq!(
        body("a CREATE x (USE (\\Sent))"),
        CommandBody::Create {
            mailbox: Mailbox::new(atom("x")),
            special_use: vec!["\\Sent".into()],
        }
    );
    assert_eq!(
        body("a AUTHENTICATE plain ="),
        CommandBody::Authenticate {
            mechanism: "PLAIN".into(),
            initial: Some("=".into())
        }
    );
    assert_eq!(
        body("a FETCH 1 fast"),
        body("a FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE)")
    );
    assert!(parse_done(b"done\r\n") && parse_done(b"DONE") && !parse_done(b"DONE x"));
}

/// Nesting and item counts are bounded.
#[test]
fn limits() {
    let small = Limits {
        max_depth: 4,
        max_items: 20,
        ..Limits::default()
    };
    let p = |s: &str| parse_command(s.as_bytes(), &small).map(|c| c.body);
    assert!(p("a SEARCH ((((ALL))))").is_ok());
    assert_eq!(
        p("a SEARCH (((((ALL)))))").expect_err("deep").error,
        ParseError::TooDeep
    );
    assert_eq!(
        p("a SEARCH NOT NOT NOT NOT NOT ALL")
            .expect_err("deep")
            .error,
        ParseError::TooDeep
    );
    assert_eq!(
        p("a FETCH 1 BODY[1.2.3.4.5]").expect_err("deep").error,
        ParseError::TooDeep
    );
    assert!(p("a FETCH 1 BODY[1.2.3.4]").is_ok());
    let many = format!("a FETCH {} FLAGS", vec!["1"; 21].join(","));
    assert_eq!(p(&many).expect_err("many").error, ParseError::TooMany);
    let keys = format!("a SEARCH {}", vec!["SEEN"; 21].join(" "));
    assert_eq!(p(&keys).expect_err("many").error, ParseError::TooMany);
    // The default depth stops a deep search without overflowing the stack.
    let deep = format!("a SEARCH {}ALL{}", "(".repeat(5000), ")".repeat(5000));
    assert_eq!(parse(&deep).expect_err("deep").error, ParseError::TooDeep);
    let nots = format!("a SEARCH {}ALL", "NOT ".repeat(5000));
    assert_eq!(parse(&nots).expect_err("deep").error, ParseError::TooDeep);
    let ids = format!("a ID ({})", vec!["\"a\" \"b\""; 31].join(" "));
    assert_eq!(parse(&ids).expect_err("ids").error, ParseError::TooMany);
}

/// No input panics: every prefix and every one-byte mutation of the valid
/// table.
#[test]
fn never_panics() {
    let inputs = [
        "a FETCH 1:* (BODY.PEEK[1.2.HEADER.FIELDS (A B)]<0.5> BINARY[1] MODSEQ) (CHANGEDSINCE 1)",
        "a UID SEARCH RETURN (MIN) CHARSET UTF-8 OR (SEEN 1:2) NOT HEADER a {2+}\r\nbc SINCE 1-Jan-2000",
        "a SELECT INBOX (QRESYNC (1 2 3:4 (1 5)))",
        "a LIST (SUBSCRIBED) \"\" (a b) RETURN (STATUS (MESSAGES))",
        "a STORE 1 (UNCHANGEDSINCE 5) +FLAGS.SILENT (\\Seen x)",
        "a ID (\"a\" NIL)",
    ];
    for s in inputs {
        let b = s.as_bytes();
        for i in 0..=b.len() {
            let _ = parse_command(&b[..i], &Limits::default());
            for m in [0u8, b' ', b'(', b')', b'{', b'"', b'\\', b'*', 0xff] {
                let mut v = b.to_vec();
                if i < v.len() {
                    v[i] = m;
                    let _ = parse_command(&v, &Limits::default());
                }
            }
        }
    }
}
