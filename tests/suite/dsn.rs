//! Delivery status notifications end to end (RFC 3461, RFC 3464): a
//! sender's DSN parameters go through smtpd into the queue file, and
//! qmgr's notices come back into the sender's Maildir (demo, a local user)
//! with the fields and the content asked for; posthorn-smtp passes the
//! parameters to a next hop that offers DSN. The next hops are SMTP sinks
//! on loopback (one per address: 127.0.0.1 without DSN, 127.0.0.2 with),
//! found through the tests' DNS server, answering each recipient as its
//! name says: `nobody...` 550 5.1.1, `later...` 450 every time, the rest
//! 250. "No notice" is proven with a barrier message that arrives after it
//! would have.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::dns::{serve, Rr, Zone};
use crate::harness::{read, Smtp, Suite};

/// What a sink saw: every MAIL and RCPT line as sent, and the recipients
/// of the messages it took.
#[derive(Default)]
struct Seen {
    lines: Vec<String>,
    delivered: Vec<String>,
}

type Shared = Arc<Mutex<Seen>>;

/// A sink on `l`, offering DSN or not.
fn sink(l: TcpListener, dsn: bool) -> Shared {
    let seen: Shared = Arc::default();
    let s = Arc::clone(&seen);
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let _ = session(conn, dsn, &s);
            });
        }
    });
    seen
}

fn session(tcp: TcpStream, dsn: bool, seen: &Shared) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = tcp.try_clone()?;
    let mut r = BufReader::new(tcp);
    w.write_all(b"220 sink.example ESMTP\r\n")?;
    let mut rcpts = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        let upper = line.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            if dsn {
                "250-sink.example\r\n250-8BITMIME\r\n250-DSN\r\n250 ENHANCEDSTATUSCODES\r\n"
                    .to_string()
            } else {
                "250-sink.example\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n".to_string()
            }
        } else if upper.starts_with("MAIL FROM:") {
            seen.lock().unwrap().lines.push(line.to_string());
            rcpts.clear();
            "250 2.1.0 Ok\r\n".into()
        } else if upper.starts_with("RCPT TO:<") {
            seen.lock().unwrap().lines.push(line.to_string());
            let to = line[9..line.find('>').unwrap_or(line.len())].to_string();
            if to.starts_with("nobody") {
                format!("550 5.1.1 <{to}>: Recipient address rejected: User unknown\r\n")
            } else if to.starts_with("later") {
                format!("450 4.2.0 <{to}>: try again later\r\n")
            } else {
                rcpts.push(to);
                "250 2.1.5 Ok\r\n".into()
            }
        } else if upper == "DATA" {
            w.write_all(b"354 go ahead\r\n")?;
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l)? == 0 || l == b".\r\n" {
                    break;
                }
            }
            seen.lock().unwrap().delivered.append(&mut rcpts);
            "250 2.0.0 Ok: queued as SINK1\r\n".into()
        } else if upper == "QUIT" {
            w.write_all(b"221 2.0.0 Bye\r\n")?;
            return Ok(());
        } else {
            "250 2.0.0 Ok\r\n".into()
        };
        w.write_all(reply.as_bytes())?;
    }
}

/// Two sinks on one port: 127.0.0.1 without DSN (domain plain.example),
/// 127.0.0.2 with (dsn.example); a DNS server whose MX records say so; and
/// the main.cf lines for posthorn to use them.
struct Hops {
    plain: Shared,
    with_dsn: Shared,
    options: Vec<String>,
}

fn hops() -> Hops {
    // A port free on both addresses (another test may hold it on one).
    let (plain_l, dsn_l) = loop {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if let Ok(b) = TcpListener::bind(("127.0.0.2", port)) {
            break (a, b);
        }
    };
    let port = plain_l.local_addr().unwrap().port();
    let zone: Zone = Arc::default();
    {
        let mut z = zone.lock().unwrap();
        for (domain, addr) in [("plain.example", "127.0.0.1"), ("dsn.example", "127.0.0.2")] {
            let mx = format!("mx.{domain}");
            z.insert(domain.into(), vec![Rr::Mx(10, mx.clone())]);
            z.insert(mx, vec![Rr::Addr(addr.parse::<IpAddr>().unwrap())]);
        }
    }
    Hops {
        plain: sink(plain_l, false),
        with_dsn: sink(dsn_l, true),
        options: vec![
            format!("dns_servers={}", serve(zone)),
            format!("smtp_tcp_port={port}"),
            "mynetworks=127.0.0.0/8".into(),
        ],
    }
}

fn start(name: &str, hops: &Hops, more: &[&str]) -> Suite {
    let mut o: Vec<&str> = hops.options.iter().map(String::as_str).collect();
    o.extend_from_slice(more);
    Suite::start(name, &[], &o)
}

/// Send with DSN parameters: `mail` after MAIL FROM:<from>, each recipient
/// with its own; the message says `subject` and has a body line that the
/// notices returning headers only must not have. Returns the queue id.
fn send(s: &Suite, from: &str, mail: &str, subject: &str, rcpts: &[(&str, &str)]) -> String {
    let mut c = Smtp::connect(s.port);
    let ehlo = c.cmd("EHLO client.example.org", 250);
    assert!(ehlo.iter().any(|l| l == "250-DSN"), "{ehlo:?}");
    c.cmd(format!("MAIL FROM:<{from}> {mail}").trim_end(), 250);
    for (to, params) in rcpts {
        c.cmd(format!("RCPT TO:<{to}> {params}").trim_end(), 250);
    }
    c.cmd("DATA", 354);
    c.raw(format!("Subject: {subject}\r\n\r\nBODY-OF-{subject}\r\n.\r\n").as_bytes());
    let l = c.expect(250);
    c.cmd("QUIT", 221);
    l[0].rsplit(' ').next().unwrap().to_string()
}

/// demo's messages (LF line ends as delivered) that mention `needle`.
fn mail_with(s: &Suite, needle: &str) -> Vec<String> {
    s.new_mail("demo@example.test")
        .iter()
        .map(|f| String::from_utf8_lossy(&read(f)).into_owned())
        .filter(|m| m.contains(needle))
        .collect()
}

/// Wait for demo's one message that mentions `needle`.
fn wait_notice(s: &Suite, needle: &str) -> String {
    s.wait_until(&format!("a notice with {needle:?}"), || {
        !mail_with(s, needle).is_empty()
    });
    let all = mail_with(s, needle);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.into_iter().next().unwrap()
}

/// A local recipient with NOTIFY=SUCCESS: a "delivered" notice, with the
/// ENVID and ORCPT decoded from xtext, and the headers only (as Postfix's
/// success notices, whatever RET says). The client is Python's smtplib.
#[test]
fn success_notice_for_local_delivery() {
    let s = Suite::start("dsn-success", &["bob@example.test:bob"], &[]);
    let out = std::process::Command::new("python3")
        .arg(format!(
            "{}/../tests/clients/smtplib_dsn.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(s.port.to_string())
        .args(["demo@example.test", "RET=FULL ENVID=QQ314159+2Bx", "hello"])
        .args([
            "bob@example.test",
            "NOTIFY=SUCCESS ORCPT=rfc822;bob+2Bsales+40example.test",
        ])
        .output()
        .expect("python3 runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "sent\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.wait_mail("bob@example.test", 1);
    let n = wait_notice(&s, "Subject: Successful Mail Delivery Report");
    assert!(n.starts_with("Return-Path: <>\n"), "{n}");
    assert!(n.contains("\nFrom: MAILER-DAEMON@"), "{n}");
    assert!(n.contains("\nTo: demo@example.test\n"), "{n}");
    assert!(n.contains("\nOriginal-Envelope-Id: QQ314159+x\n"), "{n}");
    assert!(
        n.contains(
            "\nOriginal-Recipient: rfc822; bob+sales@example.test\n\
             Final-Recipient: rfc822; bob@example.test\n\
             Action: delivered\n\
             Status: 2.0.0\n\
             Diagnostic-Code: X-Posthorn; delivered to maildir\n"
        ),
        "{n}"
    );
    assert!(n.contains("\nContent-Type: text/rfc822-headers\n"), "{n}");
    assert!(n.contains("\nSubject: hello\n"), "the headers: {n}");
    assert!(
        !n.contains("the body, sent with smtplib"),
        "headers only: {n}"
    );
    s.wait_log("sender delivery status notification: ");
}

/// Bounces honour RET (headers only, or the whole message) and carry
/// ENVID and ORCPT; NOTIFY=NEVER, and NOTIFY without FAILURE, get none.
#[test]
fn bounces_follow_ret_and_notify() {
    let h = hops();
    let s = start("dsn-bounce", &h, &[]);
    send(
        &s,
        "demo@example.test",
        "RET=HDRS ENVID=hdrs-1",
        "hdrs",
        &[(
            "nobody1@plain.example",
            "NOTIFY=FAILURE ORCPT=rfc822;orig1+40plain.example",
        )],
    );
    send(
        &s,
        "demo@example.test",
        "RET=FULL",
        "full",
        &[("nobody2@plain.example", "")],
    );
    let n = wait_notice(&s, "nobody1@plain.example");
    assert!(
        n.contains("\nSubject: Undelivered Mail Returned to Sender\n"),
        "{n}"
    );
    assert!(n.contains("\nOriginal-Envelope-Id: hdrs-1\n"), "{n}");
    assert!(
        n.contains(
            "\nOriginal-Recipient: rfc822; orig1@plain.example\n\
             Final-Recipient: rfc822; nobody1@plain.example\n\
             Action: failed\n\
             Status: 5.1.1\n"
        ),
        "{n}"
    );
    assert!(n.contains("\nContent-Type: text/rfc822-headers\n"), "{n}");
    assert!(n.contains("\nSubject: hdrs\n"), "{n}");
    assert!(!n.contains("BODY-OF-hdrs"), "RET=HDRS: headers only: {n}");
    let n = wait_notice(&s, "nobody2@plain.example");
    assert!(
        n.contains("\nFinal-Recipient: rfc822; nobody2@plain.example\nAction: failed\n"),
        "{n}"
    );
    assert!(!n.contains("Original-Recipient"), "{n}");
    assert!(n.contains("\nContent-Type: message/rfc822\n"), "{n}");
    assert!(
        n.contains("\nBODY-OF-full\n"),
        "RET=FULL: the whole message: {n}"
    );

    // No notice: NEVER, and SUCCESS,DELAY (no FAILURE). Once the message
    // is gone its bounce would be queued; the barrier comes after it.
    let id = send(
        &s,
        "demo@example.test",
        "",
        "quiet",
        &[
            ("nobody3@plain.example", "NOTIFY=NEVER"),
            ("nobody4@plain.example", "NOTIFY=SUCCESS,DELAY"),
        ],
    );
    s.wait_log(&format!(
        "{id}: to=<nobody4@plain.example>, relay=mx.plain.example[127.0.0.1]"
    ));
    s.wait_log(&format!("{id}: removed"));
    let before: Vec<String> = s
        .barrier(&["demo@example.test"])
        .iter()
        .map(|f| String::from_utf8_lossy(&read(f)).into_owned())
        .collect();
    assert_eq!(
        before.len(),
        2,
        "the two bounces, nothing more: {before:#?}"
    );
    assert!(
        !before
            .iter()
            .any(|m| m.contains("nobody3@") || m.contains("nobody4@")),
        "{before:#?}"
    );
}

/// To a next hop without DSN, NOTIFY=SUCCESS gets a "relayed" notice; to
/// one with DSN the parameters go along (ORCPT made from the recipient
/// when the sender gave none, as Postfix does) and the notice is that
/// hop's to send, not ours. One message, both hops, one notice.
#[test]
fn relayed_or_passed_on_to_the_next_hop() {
    let h = hops();
    let s = start("dsn-relay", &h, &[]);
    let id = send(
        &s,
        "demo@example.test",
        "RET=HDRS ENVID=env+2B77",
        "relay",
        &[
            ("a@plain.example", "NOTIFY=SUCCESS"),
            (
                "b@dsn.example",
                "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+40dsn.example",
            ),
            ("c@dsn.example", ""),
        ],
    );
    s.wait_log(&format!("{id}: removed"));
    let plain = h.plain.lock().unwrap().lines.clone();
    assert_eq!(plain.len(), 2, "{plain:?}");
    assert!(
        plain[0].starts_with("MAIL FROM:<demo@example.test>") && !plain[0].contains("RET="),
        "no DSN parameters without DSN: {plain:?}"
    );
    assert_eq!(plain[1], "RCPT TO:<a@plain.example>");
    let dsn = h.with_dsn.lock().unwrap().lines.clone();
    assert_eq!(
        dsn,
        [
            "MAIL FROM:<demo@example.test> RET=HDRS ENVID=env+2B77",
            "RCPT TO:<b@dsn.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+40dsn.example",
            "RCPT TO:<c@dsn.example> ORCPT=rfc822;c@dsn.example",
        ],
        "the parameters as given, ORCPT made for c"
    );
    let n = wait_notice(&s, "Subject: Successful Mail Delivery Report");
    assert!(
        n.contains(
            "\nFinal-Recipient: rfc822; a@plain.example\n\
             Action: relayed\n\
             Status: 2.0.0\n"
        ),
        "{n}"
    );
    assert!(n.contains("\nOriginal-Envelope-Id: env+77\n"), "{n}");
    assert!(!n.contains("b@dsn.example"), "the next hop's to tell: {n}");
    let before = s.barrier(&["demo@example.test"]);
    assert_eq!(before.len(), 1, "one notice in all");
}

/// delay_warning_time: one warning per message, with the last reason,
/// recorded in the queue file so that neither more attempts nor a new qmgr
/// send another; none for a recipient whose NOTIFY leaves out DELAY.
#[test]
fn one_delay_warning_even_across_a_qmgr_restart() {
    let h = hops();
    let s = start(
        "dsn-delay",
        &h,
        &[
            "delay_warning_time=2s",
            "minimal_backoff_time=1s",
            "maximal_backoff_time=1s",
            "queue_run_delay=1s",
        ],
    );
    let id = send(
        &s,
        "demo@example.test",
        "",
        "delayed",
        &[("later1@plain.example", "")],
    );
    let quiet = send(
        &s,
        "demo@example.test",
        "",
        "quiet",
        &[("later2@plain.example", "NOTIFY=FAILURE")],
    );
    let n = wait_notice(&s, "Subject: Delayed Mail (still being retried)");
    assert!(n.contains("\nTo: demo@example.test\n"), "{n}");
    assert!(
        n.contains(
            "\nFinal-Recipient: rfc822; later1@plain.example\n\
             Action: delayed\n\
             Status: 4.2.0\n\
             Diagnostic-Code: X-Posthorn; host said: 450 4.2.0 <later1@plain.example>: try again later (in reply to RCPT TO)\n\
             Will-Retry-Until: "
        ),
        "{n}"
    );
    assert!(
        n.contains("\nYour message could not be delivered for more than 2 second(s).\n"),
        "{n}"
    );
    assert!(n.contains("\nSubject: delayed\n"), "{n}");
    assert!(!n.contains("BODY-OF-delayed"), "headers only: {n}");
    assert!(!n.contains("later2@"), "{n}");
    s.wait_log(&format!("{id}: sender delay notification: "));

    // More attempts, a qmgr killed and started again, more attempts.
    let attempts = |s: &Suite| {
        s.log()
            .matches(&format!("{id}: to=<later1@plain.example>, relay="))
            .count()
    };
    let seen = attempts(&s);
    s.wait_until("two more attempts", || attempts(&s) >= seen + 2);
    let qmgr = s.workers("posthorn-qmgr");
    assert_eq!(qmgr.len(), 1, "{qmgr:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(qmgr[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    s.wait_until("a new qmgr", || {
        let now = s.workers("posthorn-qmgr");
        !now.is_empty() && now != qmgr
    });
    let seen = attempts(&s);
    s.wait_until("two attempts by the new qmgr", || attempts(&s) >= seen + 2);
    // The quiet message has been tried (and deferred) after it was
    // delay_warning_time old: each attempt is at least a second after the
    // last, and an attempt starts only after the one before has finished.
    let quiet_attempts = || {
        s.log()
            .matches(&format!("{quiet}: to=<later2@plain.example>, relay="))
            .count()
    };
    s.wait_until("four attempts of the quiet message", || {
        quiet_attempts() >= 4
    });
    let before: Vec<String> = s
        .barrier(&["demo@example.test"])
        .iter()
        .map(|f| String::from_utf8_lossy(&read(f)).into_owned())
        .collect();
    assert_eq!(before.len(), 1, "one warning in all: {before:#?}");
    assert_eq!(
        s.log().matches("sender delay notification: ").count(),
        1,
        "{}",
        s.log()
    );
}
