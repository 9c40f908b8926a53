//! CONDSTORE and QRESYNC (RFC 7162) over a real Maildir in a temp
//! directory: several sessions on one mailbox, client lines in, server
//! lines out. Mod-sequences start from the clock (mailstore's modseq.rs),
//! so expected lines take them from the store; everything else is exact.

mod tempdir;

use std::path::Path;
use std::sync::Arc;

use mailstore::{Access, Options, Store};
use posthorn_imapd::session::{Session, SessionConfig};

fn maildir(name: &str) -> tempdir::TempMaildir {
    tempdir::TempMaildir::new("cond", name)
}

fn deliver(md: &Path, n: u32) {
    let text = format!(
        "From: Bob <bob@example.org>\nTo: alice@example.org\nSubject: message {n}\nMessage-ID: <{n}@example.org>\n\nBody {n}.\n"
    );
    std::fs::write(
        md.join("new").join(format!("17000000{n:02}.M{n}P1.host")),
        text,
    )
    .unwrap();
}

/// A client: lines in whole, or one byte at a time.
struct Client {
    s: Session,
    bytewise: bool,
}

impl Client {
    fn new(md: &Path, bytewise: bool) -> Client {
        let store = Store::create_user(md, Options::default()).unwrap();
        let cfg = Arc::new(SessionConfig::standard(proto::imap::Limits::default()));
        let (mut s, _) = Session::start(cfg, "alice".into(), store, Some("a0"), b"");
        let greeting = String::from_utf8(std::mem::take(&mut s.out)).unwrap();
        assert!(greeting.contains(" CONDSTORE QRESYNC "), "{greeting}");
        Client { s, bytewise }
    }

    fn say(&mut self, line: &str) -> String {
        if self.bytewise {
            for b in line.as_bytes() {
                self.s.input(std::slice::from_ref(b));
            }
        } else {
            self.s.input(line.as_bytes());
        }
        String::from_utf8_lossy(&std::mem::take(&mut self.s.out)).into_owned()
    }
}

/// INBOX as the store has it now: (UIDVALIDITY, HIGHESTMODSEQ).
fn inbox(md: &Path) -> (u32, u64) {
    let f = Store::open(md)
        .unwrap()
        .folder("INBOX", Access::ReadOnly)
        .unwrap();
    (f.uid_validity(), f.highest_modseq())
}

/// A message's mod-sequence as the store has it now.
fn modseq(md: &Path, uid: u32) -> u64 {
    Store::open(md)
        .unwrap()
        .folder("INBOX", Access::ReadOnly)
        .unwrap()
        .modseq(uid)
        .unwrap()
}

/// The n of the first `[HIGHESTMODSEQ n]` in a response.
fn highest_in(r: &str) -> u64 {
    let i = r.find("[HIGHESTMODSEQ ").expect(r) + "[HIGHESTMODSEQ ".len();
    r[i..].split(']').next().unwrap().parse().unwrap()
}

/// The SELECT response up to UIDNEXT (the part QRESYNC leaves alone).
fn select_head(exists: u32, recent: u32, unseen: Option<u32>, uv: u32, next: u32) -> String {
    let mut s = format!(
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
         * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n\
         * {exists} EXISTS\r\n* {recent} RECENT\r\n"
    );
    if let Some(u) = unseen {
        s += &format!("* OK [UNSEEN {u}] First unseen.\r\n");
    }
    s += &format!(
        "* OK [UIDVALIDITY {uv}] UIDs valid\r\n* OK [UIDNEXT {next}] Predicted next UID\r\n"
    );
    s
}

/// A client resynchronizes after another session changed flags, expunged
/// and delivered: RFC 7162 3.2.5.
fn resync_scenario(name: &str, bytewise: bool) {
    let md = maildir(name);
    let mut a = Client::new(&md, bytewise);
    for n in 1..=5 {
        deliver(&md, n);
    }
    // The client's last session: it remembers UIDVALIDITY and
    // HIGHESTMODSEQ.
    assert_eq!(
        a.say("a1 ENABLE QRESYNC\r\n"),
        "* ENABLED QRESYNC\r\na1 OK Enabled.\r\n"
    );
    let r = a.say("a2 SELECT INBOX\r\n");
    let (uv, m0) = inbox(&md);
    assert_eq!(
        r,
        format!(
            "{}* OK [HIGHESTMODSEQ {m0}] Highest\r\na2 OK [READ-WRITE] Select completed.\r\n",
            select_head(5, 5, Some(1), uv, 6)
        )
    );
    a.say("a3 LOGOUT\r\n");

    // Another client: \Seen \Flagged on UID 2, UIDs 3 and 5 expunged, a
    // new message (UID 6).
    let mut b = Client::new(&md, bytewise);
    b.say("b1 SELECT INBOX\r\n");
    b.say("b2 STORE 2 +FLAGS.SILENT (\\Seen \\Flagged)\r\n");
    b.say("b3 STORE 3,5 +FLAGS.SILENT (\\Deleted)\r\n");
    assert_eq!(
        b.say("b4 EXPUNGE\r\n"),
        "* 5 EXPUNGE\r\n* 3 EXPUNGE\r\nb4 OK Expunge completed.\r\n"
    );
    b.say("b5 LOGOUT\r\n");
    deliver(&md, 6);

    // Back with QRESYNC and the UIDs it knows.
    let mut c = Client::new(&md, bytewise);
    c.say("c1 ENABLE QRESYNC\r\n");
    let r = c.say(&format!("c2 SELECT INBOX (QRESYNC ({uv} {m0} 1:5))\r\n"));
    let (_, h) = inbox(&md);
    assert!(h > m0, "{h} {m0}");
    let m2 = modseq(&md, 2);
    assert_eq!(
        r,
        format!(
            "{}* OK [HIGHESTMODSEQ {h}] Highest\r\n\
             * VANISHED (EARLIER) 3,5\r\n\
             * 2 FETCH (UID 2 FLAGS (\\Flagged \\Seen) MODSEQ ({m2}))\r\n\
             c2 OK [READ-WRITE] Select completed.\r\n",
            select_head(4, 1, Some(1), uv, 7)
        )
    );

    // Without known UIDs: every message changed since, the new one too.
    let mut d = Client::new(&md, bytewise);
    d.say("d1 ENABLE QRESYNC\r\n");
    let r = d.say(&format!("d2 EXAMINE INBOX (QRESYNC ({uv} {m0}))\r\n"));
    let m6 = modseq(&md, 6);
    assert!(
        r.ends_with(&format!(
            "* OK [HIGHESTMODSEQ {h}] Highest\r\n\
             * VANISHED (EARLIER) 3,5\r\n\
             * 2 FETCH (UID 2 FLAGS (\\Flagged \\Seen) MODSEQ ({m2}))\r\n\
             * 4 FETCH (UID 6 FLAGS () MODSEQ ({m6}))\r\n\
             d2 OK [READ-ONLY] Examine completed.\r\n"
        )),
        "{r}"
    );

    // A mod-sequence older than the expunge log (here 1): every UID
    // below UIDNEXT that is not a message may have vanished; the message
    // sequence match data (seq 3 is still UID 4) says the client knew of
    // those up to UID 4 (3.2.5.2). The other mailbox closes first
    // (3.2.11).
    let r = d.say(&format!(
        "d3 EXAMINE INBOX (QRESYNC ({uv} 1 1:5 (1,3 1,4)))\r\n"
    ));
    let (m1, m4) = (modseq(&md, 1), modseq(&md, 4));
    assert!(
        r.starts_with("* OK [CLOSED] Previous mailbox closed.\r\n"),
        "{r}"
    );
    assert!(
        r.ends_with(&format!(
            "* VANISHED (EARLIER) 5\r\n\
             * 1 FETCH (UID 1 FLAGS () MODSEQ ({m1}))\r\n\
             * 2 FETCH (UID 2 FLAGS (\\Flagged \\Seen) MODSEQ ({m2}))\r\n\
             * 3 FETCH (UID 4 FLAGS () MODSEQ ({m4}))\r\n\
             d3 OK [READ-ONLY] Examine completed.\r\n"
        )),
        "{r}"
    );
    // A pair that no longer holds (seq 2 is UID 2, not 3) stops the walk
    // before it: only UID 1 is known, both vanished UIDs are sent.
    let r = d.say(&format!(
        "d4 EXAMINE INBOX (QRESYNC ({uv} 1 1:5 (1:2 1,3)))\r\n"
    ));
    assert!(r.contains("* VANISHED (EARLIER) 3,5\r\n"), "{r}");
    // Another UIDVALIDITY: nothing to resynchronize.
    let r = d.say(&format!("d5 EXAMINE INBOX (QRESYNC ({} {m0}))\r\n", uv + 1));
    assert!(!r.contains("VANISHED") && !r.contains("FETCH"), "{r}");

    // Once QRESYNC is on, expunges are VANISHED (3.2.10) and EXPUNGE's
    // tagged OK has the new HIGHESTMODSEQ (3.2.7); a silent STORE still
    // gives the MODSEQ.
    let r = c.say("c3 STORE 1 +FLAGS.SILENT (\\Deleted)\r\n");
    let m1 = modseq(&md, 1);
    assert_eq!(
        r,
        format!("* 1 FETCH (UID 1 MODSEQ ({m1}))\r\nc3 OK Store completed.\r\n")
    );
    let r = c.say("c4 EXPUNGE\r\n");
    let (_, h2) = inbox(&md);
    assert!(h2 > m1);
    assert_eq!(
        r,
        format!("* VANISHED 1\r\nc4 OK [HIGHESTMODSEQ {h2}] Expunge completed.\r\n")
    );
    // UID FETCH with VANISHED (3.2.6): the expunged UIDs of the set, then
    // the changed messages.
    let r = c.say(&format!(
        "c5 UID FETCH 1:* (FLAGS) (CHANGEDSINCE {m0} VANISHED)\r\n"
    ));
    assert_eq!(
        r,
        format!(
            "* VANISHED (EARLIER) 1,3,5\r\n\
             * 1 FETCH (UID 2 FLAGS (\\Flagged \\Seen) MODSEQ ({m2}))\r\n\
             * 3 FETCH (UID 6 FLAGS (\\Recent) MODSEQ ({m6}))\r\n\
             c5 OK Fetch completed.\r\n"
        )
    );
    let r = c.say("c6 LOGOUT\r\n");
    assert_eq!(r, "* BYE Logging out\r\nc6 OK Logout completed.\r\n");
}

#[test]
fn qresync_resync_after_changes() {
    resync_scenario("resync", false);
}

#[test]
fn qresync_resync_bytewise() {
    resync_scenario("resync-bytes", true);
}

#[test]
fn qresync_needs_enable() {
    let md = maildir("enable");
    let mut c = Client::new(&md, false);
    deliver(&md, 1);
    assert_eq!(
        c.say("a1 SELECT INBOX (QRESYNC (1 1))\r\n"),
        "a1 BAD Error in IMAP command SELECT: QRESYNC not enabled\r\n"
    );
    c.say("a2 SELECT INBOX\r\n");
    assert_eq!(
        c.say("a3 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n"),
        "a3 BAD Error in IMAP command UID FETCH: QRESYNC not enabled\r\n"
    );
    // A SELECT that fails still closes the mailbox first.
    assert_eq!(
        c.say("a4 EXAMINE INBOX (QRESYNC (1 1))\r\n"),
        "* OK [CLOSED] Previous mailbox closed.\r\na4 BAD Error in IMAP command EXAMINE: QRESYNC not enabled\r\n"
    );
    assert_eq!(
        c.say("a5 FETCH 1 FLAGS\r\n"),
        "a5 BAD No mailbox selected.\r\n"
    );
    // ENABLE QRESYNC implies CONDSTORE (3.2.3); the sets are checked.
    assert_eq!(
        c.say("a6 ENABLE QRESYNC CONDSTORE\r\n"),
        "* ENABLED QRESYNC CONDSTORE\r\na6 OK Enabled.\r\n"
    );
    assert_eq!(
        c.say("a7 SELECT INBOX (QRESYNC (1 1 1:*))\r\n"),
        "a7 BAD Error in IMAP command SELECT: Invalid QRESYNC known-uids\r\n"
    );
    assert_eq!(
        c.say("a8 SELECT INBOX (QRESYNC (1 1 1:5 (1:3 1,4)))\r\n"),
        "a8 BAD Error in IMAP command SELECT: Invalid QRESYNC sets\r\n"
    );
    // Enabled already: nothing new to list.
    assert_eq!(
        c.say("a9 ENABLE CONDSTORE QRESYNC\r\n"),
        "* ENABLED\r\na9 OK Enabled.\r\n"
    );
}

/// Four messages, UID 1 expunged: sequence numbers 1..3 are UIDs 2..4.
fn three_left(name: &str) -> tempdir::TempMaildir {
    let md = maildir(name);
    let mut b = Client::new(&md, false);
    for n in 1..=4 {
        deliver(&md, n);
    }
    b.say("b1 SELECT INBOX\r\n");
    b.say("b2 STORE 1 +FLAGS.SILENT (\\Deleted)\r\n");
    b.say("b3 EXPUNGE\r\n");
    b.say("b4 LOGOUT\r\n");
    md
}

#[test]
fn unchangedsince_conflict_gives_modified() {
    let md = three_left("unchanged");
    let mut a = Client::new(&md, false);
    let r = a.say("a1 SELECT INBOX (CONDSTORE)\r\n");
    let m = highest_in(&r);
    assert_eq!(m, inbox(&md).1);
    let m2 = modseq(&md, 2);
    assert_eq!(
        a.say("a2 FETCH 1 (MODSEQ)\r\n"),
        format!("* 1 FETCH (MODSEQ ({m2}))\r\na2 OK Fetch completed.\r\n")
    );
    // Another session answers UID 3 (sequence number 2) meanwhile.
    let mut b = Client::new(&md, false);
    b.say("b1 SELECT INBOX\r\n");
    b.say("b2 UID STORE 3 +FLAGS (\\Answered)\r\n");
    // RFC 7162 3.1.3: the others are stored, sequence number 2 is
    // MODIFIED; its change is reported with MODSEQ.
    let r = a.say(&format!(
        "a3 STORE 1:3 (UNCHANGEDSINCE {m}) +FLAGS (\\Flagged)\r\n"
    ));
    let (n2, n3, n4) = (modseq(&md, 2), modseq(&md, 3), modseq(&md, 4));
    assert_eq!(n2, n4);
    assert!(n3 > m && n2 > n3, "{m} {n2} {n3}");
    assert_eq!(
        r,
        format!(
            "* 1 FETCH (FLAGS (\\Flagged) MODSEQ ({n2}))\r\n\
             * 3 FETCH (FLAGS (\\Flagged) MODSEQ ({n4}))\r\n\
             * 2 FETCH (UID 3 FLAGS (\\Answered) MODSEQ ({n3}))\r\n\
             a3 OK [MODIFIED 2] Conditional store failed.\r\n"
        )
    );
    // UID STORE names UIDs in MODIFIED.
    assert_eq!(
        a.say(&format!(
            "a4 UID STORE 3 (UNCHANGEDSINCE {m}) +FLAGS (\\Seen)\r\n"
        )),
        "a4 OK [MODIFIED 3] Conditional store failed.\r\n"
    );
    // UNCHANGEDSINCE 0 always fails (every message has a mod-sequence).
    assert_eq!(
        a.say("a5 STORE 1 (UNCHANGEDSINCE 0) -FLAGS (\\Flagged)\r\n"),
        "a5 OK [MODIFIED 1] Conditional store failed.\r\n"
    );
    // Passing the test with .SILENT still gives the MODSEQ, also when
    // nothing changed (the flag is there already).
    assert_eq!(
        a.say(&format!(
            "a6 UID STORE 2,4 (UNCHANGEDSINCE {n2}) +FLAGS.SILENT (\\Flagged)\r\n"
        )),
        format!(
            "* 1 FETCH (UID 2 MODSEQ ({n2}))\r\n* 3 FETCH (UID 4 MODSEQ ({n4}))\r\na6 OK Store completed.\r\n"
        )
    );
    // Read-only: refused.
    a.say("a7 EXAMINE INBOX\r\n");
    assert_eq!(
        a.say(&format!(
            "a8 STORE 1 (UNCHANGEDSINCE {n2}) +FLAGS (\\Seen)\r\n"
        )),
        "a8 NO [CANNOT] Mailbox is read-only.\r\n"
    );
}

#[test]
fn changedsince_fetch_and_modseq_search() {
    let md = three_left("changed");
    let mut a = Client::new(&md, false);
    a.say("a1 SELECT INBOX\r\n");
    let m = inbox(&md).1;
    let mut b = Client::new(&md, false);
    b.say("b1 SELECT INBOX\r\n");
    b.say("b2 UID STORE 4 +FLAGS ($Important)\r\n");
    let m4 = modseq(&md, 4);
    assert!(m4 > m);
    // CHANGEDSINCE enables CONDSTORE with the mailbox selected: the
    // HIGHESTMODSEQ of the view comes first (RFC 7162 3.1). The other
    // session's change is news to this one: like Dovecot, FETCH answers
    // from the view, and the change follows as an update, with MODSEQ
    // (3.1.4.1).
    let r = a.say(&format!("a2 FETCH 1:* (UID FLAGS) (CHANGEDSINCE {m})\r\n"));
    assert_eq!(
        r,
        format!(
            "* OK [HIGHESTMODSEQ {m}] Highest\r\n\
             * 3 FETCH (UID 4 FLAGS ($Important) MODSEQ ({m4}))\r\n\
             a2 OK Fetch completed.\r\n"
        )
    );
    // Now the view has it.
    assert_eq!(
        a.say(&format!("a2 FETCH 1:* (FLAGS) (CHANGEDSINCE {m})\r\n")),
        format!("* 3 FETCH (FLAGS ($Important) MODSEQ ({m4}))\r\na2 OK Fetch completed.\r\n")
    );
    assert_eq!(
        a.say(&format!("a3 UID FETCH 1:* (FLAGS) (CHANGEDSINCE {m4})\r\n")),
        "a3 OK Fetch completed.\r\n"
    );
    // From now on every FETCH carries MODSEQ.
    let m2 = modseq(&md, 2);
    assert_eq!(
        a.say("a4 FETCH 1 (FLAGS)\r\n"),
        format!("* 1 FETCH (FLAGS () MODSEQ ({m2}))\r\na4 OK Fetch completed.\r\n")
    );
    // SEARCH MODSEQ (3.1.5): the result ends with the highest MODSEQ of
    // the messages found.
    assert_eq!(
        a.say(&format!("a5 SEARCH MODSEQ {}\r\n", m + 1)),
        format!("* SEARCH 3 (MODSEQ {m4})\r\na5 OK Search completed.\r\n")
    );
    assert_eq!(
        a.say(&format!("a6 UID SEARCH RETURN (ALL) MODSEQ {m2}\r\n")),
        format!("* ESEARCH (TAG \"a6\") UID ALL 2:4 MODSEQ {m4}\r\na6 OK Search completed.\r\n")
    );
    assert_eq!(
        a.say(&format!("a7 SEARCH MODSEQ {}\r\n", m4 + 1)),
        "* SEARCH\r\na7 OK Search completed.\r\n"
    );
    // SEARCH MODSEQ enables CONDSTORE too.
    let mut c = Client::new(&md, false);
    c.say("c1 EXAMINE INBOX\r\n");
    assert_eq!(
        c.say(&format!("c2 UID SEARCH MODSEQ \"/flags/$important\" all {m4}\r\n")),
        format!("* OK [HIGHESTMODSEQ {m4}] Highest\r\n* SEARCH 4 (MODSEQ {m4})\r\nc2 OK Search completed.\r\n")
    );
}

#[test]
fn highestmodseq_never_decreases() {
    let md = maildir("highest");
    let mut a = Client::new(&md, false);
    deliver(&md, 1);
    deliver(&md, 2);
    assert_eq!(
        a.say("a1 ENABLE CONDSTORE\r\n"),
        "* ENABLED CONDSTORE\r\na1 OK Enabled.\r\n"
    );
    let mut seen = vec![highest_in(&a.say("a2 SELECT INBOX\r\n"))];
    let status = |a: &mut Client, tag: &str| {
        let r = a.say(&format!("{tag} STATUS INBOX (HIGHESTMODSEQ)\r\n"));
        let i = r.find("HIGHESTMODSEQ ").expect(&r) + "HIGHESTMODSEQ ".len();
        r[i..].split(')').next().unwrap().parse::<u64>().unwrap()
    };
    let steps = [
        "STORE 1 +FLAGS (\\Seen)",
        "STORE 1 -FLAGS (\\Seen)",
        "STORE 1 +FLAGS (\\Seen)",
        "STORE 2 +FLAGS (\\Deleted)",
        "EXPUNGE",
        "NOOP",
    ];
    for (i, step) in steps.iter().enumerate() {
        if i == 5 {
            deliver(&md, 3);
        }
        a.say(&format!("s{i} {step}\r\n"));
        let now = status(&mut a, &format!("t{i}"));
        // Each step changes something (the NOOP finds a new message).
        let prev = *seen.last().unwrap();
        assert!(now > prev, "{step}: {now} after {prev}");
        seen.push(now);
    }
    // The file that holds them lost: rebuilt above everything before.
    std::fs::remove_file(md.join("posthorn-modseq")).unwrap();
    let mut b = Client::new(&md, false);
    let r = b.say("b1 SELECT INBOX (CONDSTORE)\r\n");
    let rebuilt = highest_in(&r);
    assert!(rebuilt > *seen.last().unwrap(), "{rebuilt} {seen:?}");
    // STATUS HIGHESTMODSEQ enables CONDSTORE: with a mailbox selected,
    // its HIGHESTMODSEQ comes first.
    let mut c = Client::new(&md, false);
    c.say("c1 EXAMINE INBOX\r\n");
    let r = c.say("c2 STATUS INBOX (HIGHESTMODSEQ)\r\n");
    let h = inbox(&md).1;
    assert_eq!(
        r,
        format!(
            "* OK [HIGHESTMODSEQ {h}] Highest\r\n* STATUS \"INBOX\" (HIGHESTMODSEQ {h})\r\nc2 OK Status completed.\r\n"
        )
    );
}

/// RFC 7162 3.2: while an expunge waits (FETCH may not report it), a
/// client must not be told a HIGHESTMODSEQ past it; once VANISHED is
/// out, the new one follows.
#[test]
fn highestmodseq_held_back_while_expunge_waits() {
    let md = maildir("held");
    let mut a = Client::new(&md, false);
    for n in 1..=3 {
        deliver(&md, n);
    }
    a.say("a1 ENABLE QRESYNC\r\n");
    let h0 = highest_in(&a.say("a2 SELECT INBOX\r\n"));
    let m2 = modseq(&md, 2);
    let mut b = Client::new(&md, false);
    b.say("b1 SELECT INBOX\r\n");
    b.say("b2 STORE 1 +FLAGS.SILENT (\\Deleted)\r\n");
    b.say("b3 EXPUNGE\r\n");
    b.say("b4 UID STORE 3 +FLAGS.SILENT (\\Seen)\r\n");
    let m3 = modseq(&md, 3);
    assert_eq!(
        a.say("a3 FETCH 2 (FLAGS)\r\n"),
        format!(
            "* 2 FETCH (FLAGS (\\Recent) MODSEQ ({m2}))\r\n\
             * 3 FETCH (UID 3 FLAGS (\\Seen \\Recent) MODSEQ ({m3}))\r\n\
             * OK [HIGHESTMODSEQ {h0}] Highest\r\n\
             a3 OK Fetch completed.\r\n"
        )
    );
    let h = inbox(&md).1;
    assert_eq!(h, m3);
    assert_eq!(
        a.say("a4 NOOP\r\n"),
        format!("* VANISHED 1\r\n* OK [HIGHESTMODSEQ {h}] Highest\r\na4 OK NOOP completed.\r\n")
    );
    assert_eq!(a.say("a5 NOOP\r\n"), "a5 OK NOOP completed.\r\n");
}

/// Under QRESYNC, IDLE reports another session's expunge as VANISHED
/// with MODSEQ in flag updates, and UID EXPUNGE's tagged OK carries the
/// HIGHESTMODSEQ (RFC 7162 3.2.9).
#[test]
fn qresync_idle_and_uid_expunge() {
    let md = maildir("idle");
    let mut a = Client::new(&md, false);
    for n in 1..=4 {
        deliver(&md, n);
    }
    a.say("a1 ENABLE QRESYNC\r\n");
    a.say("a2 SELECT INBOX\r\n");
    assert_eq!(a.say("a3 IDLE\r\n"), "+ idling\r\n");
    let mut b = Client::new(&md, false);
    b.say("b1 SELECT INBOX\r\n");
    b.say("b2 UID STORE 2 +FLAGS.SILENT (\\Deleted)\r\n");
    b.say("b3 UID EXPUNGE 2\r\n");
    b.say("b4 UID STORE 3 +FLAGS.SILENT (\\Flagged)\r\n");
    a.s.notify();
    let r = String::from_utf8_lossy(&std::mem::take(&mut a.s.out)).into_owned();
    let (m3, h) = (modseq(&md, 3), inbox(&md).1);
    assert_eq!(
        r,
        format!(
            "* VANISHED 2\r\n\
             * 2 FETCH (UID 3 FLAGS (\\Flagged \\Recent) MODSEQ ({m3}))\r\n"
        )
    );
    assert_eq!(h, m3);
    assert_eq!(a.say("DONE\r\n"), "a3 OK Idle completed.\r\n");
    a.say("a4 UID STORE 4 +FLAGS.SILENT (\\Deleted)\r\n");
    let r = a.say("a5 UID EXPUNGE 1:4\r\n");
    let h = inbox(&md).1;
    assert_eq!(
        r,
        format!("* VANISHED 4\r\na5 OK [HIGHESTMODSEQ {h}] Expunge completed.\r\n")
    );
}
