//! The session after login over a real Maildir in a temp directory: client
//! lines in, server lines out, fed whole and byte by byte.

mod tempdir;

use std::sync::Arc;

use mailstore::{Options, Store};
use posthorn_imapd::session::{Session, SessionConfig};

fn maildir(name: &str) -> tempdir::TempMaildir {
    tempdir::TempMaildir::new("s", name)
}

fn deliver(md: &std::path::Path, name: &str, text: &str) {
    std::fs::write(md.join("new").join(name), text).unwrap();
}

fn session(md: &std::path::Path) -> Session {
    let store = Store::create_user(md, Options::default()).unwrap();
    let cfg = Arc::new(SessionConfig::standard(proto::imap::Limits::default()));
    let (mut s, _) = Session::start(cfg, "alice".into(), store, Some("a0"), b"");
    let greeting = String::from_utf8(std::mem::take(&mut s.out)).unwrap();
    assert!(
        greeting.starts_with("a0 OK [CAPABILITY IMAP4rev1 "),
        "{greeting}"
    );
    s
}

/// A second session of the same user on an existing Maildir, its login
/// answer taken.
fn another(md: &std::path::Path) -> Session {
    let store = Store::open_with(md, Options::default()).unwrap();
    let cfg = Arc::new(SessionConfig::standard(proto::imap::Limits::default()));
    let mut s = Session::start(cfg, "alice".into(), store, Some("x0"), b"").0;
    s.out.clear();
    s
}

fn say(s: &mut Session, line: &str) -> String {
    s.input(line.as_bytes());
    String::from_utf8_lossy(&std::mem::take(&mut s.out)).into_owned()
}

fn say_bytewise(s: &mut Session, line: &str) -> String {
    for b in line.as_bytes() {
        s.input(std::slice::from_ref(b));
    }
    String::from_utf8_lossy(&std::mem::take(&mut s.out)).into_owned()
}

const MSG: &str = "From: Bob <bob@example.org>\nTo: alice@example.org\nSubject: hello\nDate: Mon, 2 Nov 2026 10:00:00 +0000\nMessage-ID: <1@example.org>\n\nHi Alice.\n";

#[test]
fn select_fetch_store_search_expunge() {
    let md = maildir("basic");
    let mut s = session(&md);
    deliver(&md, "1700000000.M1P1.host", MSG);
    deliver(&md, "1700000001.M2P1.host", MSG);
    let r = say(&mut s, "a1 SELECT INBOX\r\n");
    assert!(r.contains("* 2 EXISTS\r\n"), "{r}");
    assert!(r.contains("* 2 RECENT\r\n"), "{r}");
    assert!(r.contains("* OK [UNSEEN 1] First unseen.\r\n"), "{r}");
    assert!(
        r.ends_with("a1 OK [READ-WRITE] Select completed.\r\n"),
        "{r}"
    );
    let r = say(&mut s, "a2 FETCH 1:* (UID FLAGS RFC822.SIZE)\r\n");
    let size = MSG.len() + MSG.matches('\n').count();
    assert_eq!(
        r,
        format!("* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE {size})\r\n* 2 FETCH (UID 2 FLAGS (\\Recent) RFC822.SIZE {size})\r\na2 OK Fetch completed.\r\n")
    );
    let crlf = MSG.replace('\n', "\r\n");
    let r = say_bytewise(&mut s, "a3 FETCH 2 BODY.PEEK[]\r\n");
    assert_eq!(
        r,
        format!("* 2 FETCH (BODY[] {{{size}}}\r\n{crlf})\r\na3 OK Fetch completed.\r\n")
    );
    let r = say(&mut s, "a4 FETCH 1 (BODY[HEADER.FIELDS (SUBJECT)])\r\n");
    assert_eq!(
        r,
        "* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: hello\r\n\r\n FLAGS (\\Seen \\Recent))\r\na4 OK Fetch completed.\r\n"
    );
    let r = say(&mut s, "a5 SEARCH UNSEEN\r\n");
    assert_eq!(r, "* SEARCH 2\r\na5 OK Search completed.\r\n");
    let r = say(&mut s, "a6 STORE 2 +FLAGS (\\Deleted $Junk)\r\n");
    assert_eq!(
        r,
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Junk)\r\n* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Junk \\*)] Flags permitted.\r\n* 2 FETCH (FLAGS (\\Deleted \\Recent $Junk))\r\na6 OK Store completed.\r\n"
    );
    let r = say(&mut s, "a7 UID SEARCH DELETED\r\n");
    assert_eq!(r, "* SEARCH 2\r\na7 OK Search completed.\r\n");
    let r = say(&mut s, "a8 EXPUNGE\r\n");
    assert_eq!(r, "* 2 EXPUNGE\r\na8 OK Expunge completed.\r\n");
    let r = say(&mut s, "a9 UID FETCH 1:* FLAGS\r\n");
    assert_eq!(
        r,
        "* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))\r\na9 OK Fetch completed.\r\n"
    );
    let r = say(&mut s, "b1 LOGOUT\r\n");
    assert_eq!(r, "* BYE Logging out\r\nb1 OK Logout completed.\r\n");
}

#[test]
fn mailboxes_append_copy_move() {
    let md = maildir("boxes");
    let mut s = session(&md);
    let r = say(&mut s, "a1 LIST \"\" *\r\n");
    assert!(
        r.contains("* LIST (\\HasNoChildren) \".\" \"INBOX\"\r\n"),
        "{r}"
    );
    assert!(r.contains("\\Sent) \".\" \"Sent\"\r\n"), "{r}");
    let r = say(&mut s, "a2 CREATE Archive.2026\r\n");
    assert_eq!(r, "a2 OK Create completed.\r\n");
    let r = say(&mut s, "a3 LIST \"\" Archive*\r\n");
    assert_eq!(
        r,
        "* LIST (\\HasChildren \\Archive) \".\" \"Archive\"\r\n* LIST (\\HasNoChildren) \".\" \"Archive.2026\"\r\na3 OK List completed.\r\n"
    );
    let r = say(&mut s, "a4 CREATE ../etc\r\n");
    assert!(r.starts_with("a4 NO "), "{r}");
    let msg = "Subject: appended\r\n\r\nbody\r\n";
    let r = say(
        &mut s,
        &format!(
            "a5 APPEND Archive.2026 (\\Seen) \"05-Nov-2026 10:00:00 +0000\" {{{}+}}\r\n{msg}\r\n",
            msg.len()
        ),
    );
    assert!(r.starts_with("a5 OK [APPENDUID "), "{r}");
    assert!(r.ends_with(" 1] Append completed.\r\n"), "{r}");
    let r = say(&mut s, "a6 APPEND Nope {3+}\r\nabc\r\n");
    assert_eq!(r, "a6 NO [TRYCREATE] Mailbox doesn't exist.\r\n");
    let r = say(
        &mut s,
        "a7 STATUS Archive.2026 (MESSAGES UNSEEN UIDNEXT)\r\n",
    );
    assert_eq!(
        r,
        "* STATUS \"Archive.2026\" (MESSAGES 1 UNSEEN 0 UIDNEXT 2)\r\na7 OK Status completed.\r\n"
    );
    let r = say(&mut s, "a8 SELECT Archive.2026\r\n");
    assert!(r.contains("* 1 EXISTS\r\n"), "{r}");
    let r = say(&mut s, "a9 FETCH 1 (INTERNALDATE BODY.PEEK[TEXT])\r\n");
    assert_eq!(
        r,
        "* 1 FETCH (INTERNALDATE \" 5-Nov-2026 10:00:00 +0000\" BODY[TEXT] {6}\r\nbody\r\n)\r\na9 OK Fetch completed.\r\n"
    );
    let r = say(&mut s, "b1 UID COPY 1 INBOX\r\n");
    assert!(r.starts_with("b1 OK [COPYUID "), "{r}");
    let r = say(&mut s, "b2 MOVE 1 Sent\r\n");
    assert!(r.starts_with("* OK [COPYUID "), "{r}");
    assert!(
        r.ends_with("* 1 EXPUNGE\r\nb2 OK Move completed.\r\n"),
        "{r}"
    );
    let r = say(&mut s, "b3 STATUS Sent (MESSAGES)\r\n");
    assert_eq!(
        r,
        "* STATUS \"Sent\" (MESSAGES 1)\r\nb3 OK Status completed.\r\n"
    );
}

#[test]
fn idle_reports_new_mail() {
    let md = maildir("idle");
    let mut s = session(&md);
    say(&mut s, "a1 SELECT INBOX\r\n");
    let r = say(&mut s, "a2 IDLE\r\n");
    assert_eq!(r, "+ idling\r\n");
    deliver(&md, "1700000005.M5P1.host", MSG);
    s.notify();
    let r = String::from_utf8_lossy(&std::mem::take(&mut s.out)).into_owned();
    assert_eq!(r, "* 1 EXISTS\r\n* 1 RECENT\r\n");
    let r = say(&mut s, "DONE\r\n");
    assert_eq!(r, "a2 OK Idle completed.\r\n");
}

/// Regression: an APPEND to the selected mailbox gave its EXISTS after the
/// tagged OK (found by tests/suite/imap.rs); RFC 3501 6.3.11 wants the
/// client told at once, so a client acting on the OK knows the new count.
#[test]
fn append_to_the_selected_mailbox_reports_exists_before_ok() {
    let md = maildir("append-selected");
    let mut s = session(&md);
    say(&mut s, "a1 SELECT INBOX\r\n");
    let r = say(&mut s, "a2 APPEND INBOX {6+}\r\nx: y\r\n\r\n");
    assert!(
        r.starts_with("* 1 EXISTS\r\n* 1 RECENT\r\na2 OK [APPENDUID "),
        "{r}"
    );
    assert!(r.ends_with(" 1] Append completed.\r\n"), "{r}");
    // Appending elsewhere reports nothing about the selected mailbox.
    let r = say(&mut s, "a3 APPEND Sent {6+}\r\nx: y\r\n\r\n");
    assert!(r.starts_with("a3 OK [APPENDUID "), "{r}");
}

/// Regression: the messages SELECT reported \Recent were not the session's
/// own, so SEARCH RECENT missed them and the RECENT after new mail counted
/// only the new ones (found by tests/suite/imap.rs): RFC 3501 7.3.2, RECENT
/// is the number of messages with \Recent.
#[test]
fn recent_counts_include_the_messages_select_reported() {
    let md = maildir("recent");
    let mut s = session(&md);
    deliver(&md, "1700000000.M1P1.host", MSG);
    deliver(&md, "1700000001.M2P1.host", MSG);
    let r = say(&mut s, "a1 SELECT INBOX\r\n");
    assert!(r.contains("* 2 RECENT\r\n"), "{r}");
    let r = say(&mut s, "a2 SEARCH RECENT\r\n");
    assert_eq!(r, "* SEARCH 1 2\r\na2 OK Search completed.\r\n");
    deliver(&md, "1700000002.M3P1.host", MSG);
    let r = say(&mut s, "a3 NOOP\r\n");
    assert_eq!(r, "* 3 EXISTS\r\n* 3 RECENT\r\na3 OK NOOP completed.\r\n");
}

/// Regression (found by tests/suite/imap.rs): a message that arrived while
/// two sessions had the mailbox selected was \Recent in both, and RECENT
/// counted expunged messages (`* 2 EXISTS` with `* 4 RECENT`). RFC 3501
/// 2.3.2: only the first session told has \Recent; 7.3.2: RECENT is the
/// number of messages with it.
#[test]
fn recent_goes_to_one_session_and_forgets_expunged_messages() {
    let md = maildir("recent-two");
    let mut a = session(&md);
    for i in 0..3 {
        deliver(&md, &format!("170000000{i}.M{i}P1.host"), MSG);
    }
    let r = say(&mut a, "a1 SELECT INBOX\r\n");
    assert!(r.contains("* 3 RECENT\r\n"), "{r}");
    let store = Store::open_with(&md, Options::default()).unwrap();
    let cfg = Arc::new(SessionConfig::standard(proto::imap::Limits::default()));
    let (mut b, _) = Session::start(cfg, "alice".into(), store, Some("b0"), b"");
    let r = say(&mut b, "b1 SELECT INBOX\r\n");
    assert!(r.contains("* 0 RECENT\r\n"), "{r}");
    let r = say(
        &mut a,
        "a2 STORE 2:3 +FLAGS.SILENT (\\Deleted)\r\na3 EXPUNGE\r\n",
    );
    assert_eq!(
        r,
        "a2 OK Store completed.\r\n* 3 EXPUNGE\r\n* 2 EXPUNGE\r\na3 OK Expunge completed.\r\n"
    );
    deliver(&md, "1700000009.M9P1.host", MSG);
    // B syncs first: the new message is B's \Recent.
    let r = say(&mut b, "b2 NOOP\r\n");
    assert_eq!(
        r,
        "* 3 EXPUNGE\r\n* 2 EXPUNGE\r\n* 2 EXISTS\r\n* 1 RECENT\r\nb2 OK NOOP completed.\r\n"
    );
    let r = say(&mut a, "a4 NOOP\r\n");
    assert_eq!(r, "* 2 EXISTS\r\n* 1 RECENT\r\na4 OK NOOP completed.\r\n");
    let r = say(&mut a, "a5 FETCH 1:* FLAGS\r\n");
    assert_eq!(
        r,
        "* 1 FETCH (FLAGS (\\Recent))\r\n* 2 FETCH (FLAGS ())\r\na5 OK Fetch completed.\r\n"
    );
    let r = say(&mut b, "b3 FETCH 2 FLAGS\r\n");
    assert_eq!(
        r,
        "* 2 FETCH (FLAGS (\\Recent))\r\nb3 OK Fetch completed.\r\n"
    );
}

#[test]
fn imap4rev2_search_answers_esearch() {
    let md = maildir("rev2");
    let mut s = session(&md);
    deliver(&md, "1700000000.M1P1.host", MSG);
    deliver(&md, "1700000001.M2P1.host", MSG);
    say(&mut s, "a1 ENABLE IMAP4rev2\r\n");
    let r = say(&mut s, "a2 SELECT INBOX\r\n");
    assert!(!r.contains("RECENT"), "no \\Recent in IMAP4rev2: {r}");
    let r = say(&mut s, "a3 SEARCH ALL\r\n");
    assert_eq!(
        r,
        "* ESEARCH (TAG \"a3\") ALL 1:2\r\na3 OK Search completed.\r\n"
    );
    let r = say(&mut s, "a4 UID SEARCH DELETED\r\n");
    assert_eq!(
        r,
        "* ESEARCH (TAG \"a4\") UID\r\na4 OK Search completed.\r\n"
    );
}

#[test]
fn a_selected_mailbox_deleted_by_another_session_ends_the_session() {
    let md = maildir("deleted");
    let mut a = session(&md);
    say(&mut a, "a1 CREATE Doomed\r\n");
    let r = say(&mut a, "a2 SELECT Doomed\r\n");
    assert!(
        r.ends_with("a2 OK [READ-WRITE] Select completed.\r\n"),
        "{r}"
    );
    let store = Store::open(&md).unwrap();
    let cfg = Arc::new(SessionConfig::standard(proto::imap::Limits::default()));
    let (mut b, _) = Session::start(cfg, "alice".into(), store, Some("b0"), b"");
    b.out.clear();
    assert_eq!(
        say(&mut b, "b1 DELETE Doomed\r\n"),
        "b1 OK Delete completed.\r\n"
    );
    let step = a.input(b"a3 NOOP\r\n");
    let r = String::from_utf8_lossy(&std::mem::take(&mut a.out)).into_owned();
    assert_eq!(
        r,
        "* BYE Selected mailbox was deleted, have to disconnect.\r\n"
    );
    assert_eq!(step, posthorn_imapd::session::Step::Close);
}

/// A session that went quiet (imapd_hibernate_timeout: `Session::quiet`
/// lets go of the selected folder's message list) reports exactly what a
/// session that stayed awake reports: another session's flag change and
/// expunge, then a delivery, and FETCH answers from the folder listed again.
#[test]
fn a_quiet_session_reports_what_an_awake_one_does() {
    let md = maildir("quiet");
    let mut a = session(&md);
    for i in 0..4 {
        deliver(&md, &format!("170000000{i}.M{i}P1.host"), MSG);
    }
    let open = || another(&md);
    let (mut awake, mut other) = (open(), open());
    say(&mut a, "a1 SELECT INBOX\r\n");
    say(&mut awake, "w1 SELECT INBOX\r\n");
    say(&mut other, "o1 SELECT INBOX\r\n");
    a.quiet();
    let r = say(
        &mut other,
        "o2 STORE 1 +FLAGS.SILENT (\\Flagged)\r\no3 STORE 3 +FLAGS.SILENT (\\Deleted)\r\no4 EXPUNGE\r\n",
    );
    assert!(
        r.ends_with("* 3 EXPUNGE\r\no4 OK Expunge completed.\r\n"),
        "{r}"
    );
    // The same but for \Recent, which A took when it selected first (and
    // keeps while quiet).
    let ra = say(&mut a, "a2 NOOP\r\n");
    let rw = say(&mut awake, "a2 NOOP\r\n");
    assert_eq!(ra.replace(" \\Recent", ""), rw);
    assert!(ra.contains("* 3 EXPUNGE\r\n"), "{ra}");
    assert!(
        ra.contains("* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))"),
        "{ra}"
    );
    a.quiet();
    let ra = say(&mut a, "a3 FETCH 1:* (UID FLAGS RFC822.SIZE)\r\n");
    let rw = say(&mut awake, "a3 FETCH 1:* (UID FLAGS RFC822.SIZE)\r\n");
    assert_eq!(ra.replace(" \\Recent", "").replace("\\Recent", ""), rw);
    assert!(ra.contains("* 3 FETCH (UID 4 "), "{ra}");
    a.quiet();
    deliver(&md, "1700000009.M9P1.host", MSG);
    let r = say(&mut a, "a4 NOOP\r\n");
    // Its three \Recent messages and the new one, which it took first.
    assert_eq!(r, "* 4 EXISTS\r\n* 4 RECENT\r\na4 OK NOOP completed.\r\n");
}

/// SELECT of the mailbox already selected (kept, not listed again when
/// unchanged) answers as a first SELECT in a new session does: after
/// another session's flag change and expunge, and after a delivery (whose
/// \Recent the re-SELECT takes).
#[test]
fn select_again_answers_as_a_first_select() {
    let md = maildir("reselect");
    let mut a = session(&md);
    for i in 0..4 {
        deliver(&md, &format!("170000000{i}.M{i}P1.host"), MSG);
    }
    let open = || another(&md);
    let r = say(&mut a, "a1 SELECT INBOX\r\n");
    assert!(r.contains("* 4 RECENT\r\n"), "{r}");
    // Unchanged: the same answer but for \Recent, which went to the first.
    let again = say(&mut a, "a2 SELECT INBOX\r\n");
    let fresh = say(&mut open(), "a2 SELECT INBOX\r\n");
    assert_eq!(
        again,
        format!("* OK [CLOSED] Previous mailbox closed.\r\n{fresh}")
    );
    assert!(again.contains("* 0 RECENT\r\n"), "{again}");
    let mut other = open();
    say(&mut other, "o1 SELECT INBOX\r\n");
    say(
        &mut other,
        "o2 STORE 2 +FLAGS.SILENT (\\Seen)\r\no3 STORE 1 +FLAGS.SILENT (\\Deleted)\r\no4 EXPUNGE\r\n",
    );
    deliver(&md, "1700000009.M9P1.host", MSG);
    let again = say(&mut a, "a3 SELECT INBOX\r\n");
    assert!(again.contains("* 4 EXISTS\r\n* 1 RECENT\r\n"), "{again}");
    let fresh = say(&mut open(), "a3 SELECT INBOX\r\n");
    assert_eq!(
        again.replace("* 1 RECENT", "* 0 RECENT"),
        format!("* OK [CLOSED] Previous mailbox closed.\r\n{fresh}")
    );
    let r = say(&mut a, "a4 FETCH 1:* (UID FLAGS)\r\n");
    assert_eq!(
        r,
        "* 1 FETCH (UID 2 FLAGS (\\Seen))\r\n* 2 FETCH (UID 3 FLAGS ())\r\n* 3 FETCH (UID 4 FLAGS ())\r\n* 4 FETCH (UID 5 FLAGS (\\Recent))\r\na4 OK Fetch completed.\r\n"
    );
}

/// A folder a session let go of (LOGOUT) is kept for the user's next
/// SELECT in this process (session::kept): that SELECT still tells what
/// changed in between, and its \Recent.
#[test]
fn a_kept_folder_is_up_to_date_when_selected_again() {
    let md = maildir("kept");
    let mut a = session(&md);
    for i in 0..3 {
        deliver(&md, &format!("170000000{i}.M{i}P1.host"), MSG);
    }
    let open = || another(&md);
    let r = say(&mut a, "a1 SELECT INBOX\r\n");
    assert!(r.contains("* 3 EXISTS\r\n* 3 RECENT\r\n"), "{r}");
    say(&mut a, "a2 LOGOUT\r\n");
    drop(a);
    // Changed behind the kept folder's back: by hand, as another program.
    let cur = md.join("cur");
    let first = std::fs::read_dir(&cur)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with("1700000000."))
        .unwrap();
    std::fs::rename(
        cur.join(&first),
        cur.join(format!("{}:2,F", first.split(':').next().unwrap())),
    )
    .unwrap();
    deliver(&md, "1700000009.M9P1.host", MSG);
    let mut b = open();
    let r = say(&mut b, "b1 SELECT INBOX\r\n");
    assert!(r.contains("* 4 EXISTS\r\n* 1 RECENT\r\n"), "{r}");
    let r = say(&mut b, "b2 FETCH 1:* (UID FLAGS)\r\n");
    assert_eq!(
        r,
        "* 1 FETCH (UID 1 FLAGS (\\Flagged))\r\n* 2 FETCH (UID 2 FLAGS ())\r\n* 3 FETCH (UID 3 FLAGS ())\r\n* 4 FETCH (UID 4 FLAGS (\\Recent))\r\nb2 OK Fetch completed.\r\n"
    );
}

/// More commands in a second than the session's bound: the rest wait
/// (`Step::Pause` for what is left of the second; the skeleton reads
/// nothing meanwhile), then run, all of them, in order.
#[test]
fn a_command_flood_waits_for_the_next_second() {
    use posthorn_imapd::session::Step;
    let md = maildir("rate");
    let store = Store::create_user(&md, Options::default()).unwrap();
    let mut cfg = SessionConfig::standard(proto::imap::Limits::default());
    assert_eq!(cfg.commands_per_second, 1000);
    cfg.commands_per_second = 5;
    let (mut s, _) = Session::start(Arc::new(cfg), "alice".into(), store, Some("a0"), b"");
    s.out.clear();
    let flood: String = (0..12).map(|i| format!("n{i} NOOP\r\n")).collect();
    let step = s.input(flood.as_bytes());
    let Step::Pause(wait) = step else {
        panic!("{step:?}")
    };
    assert!(wait <= std::time::Duration::from_secs(1), "{wait:?}");
    let out = String::from_utf8(std::mem::take(&mut s.out)).unwrap();
    assert_eq!(out.matches(" OK NOOP completed.\r\n").count(), 5, "{out}");
    assert!(out.ends_with("n4 OK NOOP completed.\r\n"), "{out}");
    // Within the same second nothing more runs.
    assert!(matches!(s.resume_paused(), Step::Pause(_)));
    assert!(s.out.is_empty());
    let mut out = String::new();
    let mut step = Step::Pause(wait);
    while let Step::Pause(w) = step {
        std::thread::sleep(w);
        step = s.resume_paused();
        out.push_str(&String::from_utf8(std::mem::take(&mut s.out)).unwrap());
    }
    assert_eq!(step, Step::Continue);
    let expected: String = (5..12)
        .map(|i| format!("n{i} OK NOOP completed.\r\n"))
        .collect();
    assert_eq!(out, expected);
}
