//! Client names (smtpd_peername_lookup): smtpd looks up the client's name
//! before the greeting and keeps it only when forward-confirmed, in its log
//! lines and the Received: header; a name server that never answers holds
//! up only the clients waiting for it.
//!
//! The clients come from addresses of 127.0.0.0/8 that /etc/hosts does not
//! list (smtpd asks /etc/hosts first, as the C library does for Postfix,
//! and it names 127.0.0.1 itself), so their names come from the tests' DNS
//! server (dns.rs), pointed at with dns_servers.

use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};

use crate::dns::{self, Rr, Zone};
use crate::harness::{self, Smtp, Suite};

/// `n` addresses of 127.0.0.0/8 that /etc/hosts does not name.
fn spare_loopback(n: usize) -> Vec<Ipv4Addr> {
    let v: Vec<Ipv4Addr> = (2..=254u8)
        .map(|d| Ipv4Addr::new(127, 0, 0, d))
        .filter(|a| harness::hosts_name(IpAddr::V4(*a)).is_none())
        .take(n)
        .collect();
    assert_eq!(v.len(), n, "/etc/hosts names almost all of 127.0.0.0/24");
    v
}

/// One message from `src` to demo (subject `subject`), saying HELO `helo`;
/// its queue id.
fn send_from(s: &Suite, src: Ipv4Addr, helo: &str, subject: &str) -> String {
    let mut c = Smtp::connect_from(IpAddr::V4(src), s.port);
    c.cmd(&format!("EHLO {helo}"), 250);
    let id = c.mail(
        "a@example.org",
        &["demo@example.test"],
        format!("Subject: {subject}\r\n\r\nx\r\n").as_bytes(),
    );
    c.cmd("QUIT", 221);
    id
}

/// The delivered message with this subject.
fn delivered(s: &Suite, n: usize, subject: &str) -> String {
    s.wait_mail("demo@example.test", n)
        .iter()
        .map(|f| String::from_utf8_lossy(&harness::read(f)).into_owned())
        .find(|m| m.contains(&format!("\nSubject: {subject}\n")))
        .unwrap_or_else(|| panic!("{subject} delivered"))
}

#[test]
fn confirmed_names_are_logged_and_written_in_received() {
    let [good, liar, nameless, hostile] = spare_loopback(4)[..] else {
        unreachable!()
    };
    let zone: Zone = Default::default();
    {
        let mut z = zone.lock().unwrap();
        // PTR and a matching A: confirmed.
        z.insert(dns::reverse(good), vec![Rr::Ptr("mx.rdns.test".into())]);
        z.insert("mx.rdns.test".into(), vec![Rr::Addr(IpAddr::V4(good))]);
        // PTR to a name that is elsewhere: not confirmed.
        z.insert(dns::reverse(liar), vec![Rr::Ptr("liar.rdns.test".into())]);
        z.insert(
            "liar.rdns.test".into(),
            vec![Rr::Addr("192.0.2.1".parse().unwrap())],
        );
        // `nameless` has no PTR at all (NXDOMAIN).
        // PTR names no log line or header may carry, each with an A record
        // that would confirm it.
        let evil = [
            "evil\nposthorn/smtpd[1]: forged.rdns.test",
            "evil\r.rdns.test",
            "\u{e9}vil.rdns.test",
            "evil name.rdns.test",
            "evil_name.rdns.test",
        ];
        z.insert(
            dns::reverse(hostile),
            evil.iter().map(|e| Rr::Ptr(e.to_string())).collect(),
        );
        for e in evil {
            z.insert(e.to_lowercase(), vec![Rr::Addr(IpAddr::V4(hostile))]);
        }
    }
    let s = Suite::start("rdns", &[], &[&format!("dns_servers={}", dns::serve(zone))]);

    let id = send_from(&s, good, "helo.rdns.test", "good");
    let m = delivered(&s, 1, "good");
    assert!(
        m.contains(&format!(
            "\nReceived: from helo.rdns.test (mx.rdns.test [{good}])\n"
        )),
        "{m}"
    );
    s.wait_log(&format!("disconnect from mx.rdns.test[{good}] ehlo=1"));
    let log = s.log();
    for line in [
        format!("connect from mx.rdns.test[{good}]"),
        format!("{id}: client=mx.rdns.test[{good}]"),
    ] {
        assert!(log.contains(&line), "{line}:\n{log}");
    }
    // A reject line names it too.
    let mut c = Smtp::connect_from(IpAddr::V4(good), s.port);
    c.cmd("HELO helo.rdns.test", 250);
    c.cmd("MAIL FROM:<a@example.org>", 250);
    c.cmd("RCPT TO:<victim@elsewhere.org>", 554);
    c.cmd("QUIT", 221);
    s.wait_log(&format!(
        "NOQUEUE: reject: RCPT from mx.rdns.test[{good}]: 554 5.7.1 <victim@elsewhere.org>: Relay access denied;"
    ));

    // Not confirmed: unknown, with Postfix's warning.
    send_from(&s, liar, "liar.example", "liar");
    let m = delivered(&s, 2, "liar");
    assert!(
        m.contains(&format!(
            "\nReceived: from liar.example (unknown [{liar}])\n"
        )),
        "{m}"
    );
    s.wait_log(&format!("disconnect from unknown[{liar}]"));
    let log = s.log();
    let warning = format!("warning: hostname liar.rdns.test does not resolve to address {liar}");
    let connect = format!("connect from unknown[{liar}]");
    let (w, c) = (log.find(&warning), log.find(&connect));
    assert!(
        w.is_some() && c.is_some() && w < c,
        "the warning, then the connect line:\n{log}"
    );

    // No PTR record: unknown, without a warning.
    send_from(&s, nameless, "nameless.example", "nameless");
    let m = delivered(&s, 3, "nameless");
    assert!(
        m.contains(&format!(
            "\nReceived: from nameless.example (unknown [{nameless}])\n"
        )),
        "{m}"
    );
    s.wait_log(&format!("disconnect from unknown[{nameless}]"));
    assert!(
        !s.log().contains(&format!("address {nameless}")),
        "no warning for an address without a name"
    );

    // Hostile names: unknown, and not a byte of them anywhere.
    send_from(&s, hostile, "hostile.example", "hostile");
    let m = delivered(&s, 4, "hostile");
    assert!(
        m.contains(&format!(
            "\nReceived: from hostile.example (unknown [{hostile}])\n"
        )),
        "{m}"
    );
    s.wait_log(&format!("disconnect from unknown[{hostile}]"));
    let log = s.log();
    assert!(!log.contains("evil") && !log.contains("forged"), "{log}");
    assert!(!m.contains("evil"), "{m}");

    // 127.0.0.1: as /etc/hosts says (the tests' server knows no name).
    send_from(&s, Ipv4Addr::LOCALHOST, "local.example", "local");
    let m = delivered(&s, 5, "local");
    assert!(
        m.contains(&format!(
            "\nReceived: from local.example ({} [127.0.0.1])\n",
            harness::local_name()
        )),
        "{m}"
    );
    s.wait_log(&format!("connect from {}", harness::local_client()));
}

/// Has `sock` nothing to read yet (no greeting)?
fn silent(sock: &mut TcpStream) -> bool {
    sock.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let quiet = matches!(sock.read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock);
    sock.set_nonblocking(false).unwrap();
    quiet
}

/// The pid of the smtpd that logged the line with `needle`.
fn smtpd_pid<'a>(log: &'a str, needle: &str) -> &'a str {
    let line = log
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle}:\n{log}"));
    line.split_once("smtpd[")
        .and_then(|(_, r)| r.split_once(']'))
        .map(|(pid, _)| pid)
        .unwrap_or_else(|| panic!("no smtpd pid in {line:?}"))
}

#[test]
fn a_dead_name_server_holds_up_only_its_own_clients() {
    // Clients whose names the server never answers for, more than smtpd
    // has pool threads (4), and one whose name it knows.
    let addrs = spare_loopback(7);
    let (known, stuck) = (addrs[0], &addrs[1..]);
    let zone: Zone = Default::default();
    {
        let mut z = zone.lock().unwrap();
        z.insert(dns::reverse(known), vec![Rr::Ptr("known.rdns.test".into())]);
        z.insert("known.rdns.test".into(), vec![Rr::Addr(IpAddr::V4(known))]);
        for a in stuck {
            z.insert(dns::reverse(*a), vec![Rr::Silent]);
        }
    }
    let dns = dns::serve(zone);
    let s = Suite::start("rdnsdead", &[], &[&format!("dns_servers={dns}")]);
    // A service of one smtpd process, so that every session below is in
    // the same process (the SMTP port has two).
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let master_cf = s.dir.join("master.cf");
    let cf = std::fs::read_to_string(&master_cf).expect("master.cf");
    std::fs::write(
        &master_cf,
        format!("{cf}127.0.0.1:{port} inet n - n - 1 smtpd -o smtpd_peername_lookup_timeout=10s\n"),
    )
    .expect("write master.cf");
    s.reload();
    s.wait_log(&format!("listening on 127.0.0.1:{port} (smtpd)"));

    // The stuck clients connect first: their look-ups wait.
    let mut waiting: Vec<TcpStream> = stuck
        .iter()
        .map(|a| harness::connect_from(IpAddr::V4(*a), port))
        .collect();
    // Meanwhile a client with a name is greeted and queues a whole message
    // (its queue file written and committed on the pool) ...
    let mut c = Smtp::connect_from(IpAddr::V4(known), port);
    c.cmd("EHLO known.rdns.test", 250);
    let id = c.mail(
        "a@example.org",
        &["demo@example.test"],
        b"Subject: beside a dead server\r\n\r\nx\r\n",
    );
    c.cmd("QUIT", 221);
    // ... while none of the others has even its greeting.
    for (sock, a) in waiting.iter_mut().zip(stuck) {
        assert!(
            silent(sock),
            "{a} was greeted before the known client's mail was queued"
        );
    }
    // They are greeted when their look-ups give up, as unknown.
    for sock in waiting {
        let mut c = Smtp::greeted(sock);
        c.cmd("QUIT", 221);
    }
    let log = s.log();
    // The order in the one process's log says the same.
    let queued_line = format!("{id}: client=known.rdns.test[{known}]");
    let queued = log.find(&queued_line).expect("the known client's message");
    for a in stuck {
        let connect_line = format!("connect from unknown[{a}]");
        let connect = log
            .find(&connect_line)
            .unwrap_or_else(|| panic!("{a} connected:\n{log}"));
        assert!(
            queued < connect,
            "{a} was named before the other's message:\n{log}"
        );
        assert_eq!(
            smtpd_pid(&log, &connect_line),
            smtpd_pid(&log, &queued_line),
            "one process served both"
        );
    }
    assert!(
        !log.contains("does not resolve"),
        "no warning for a look-up that found no name:\n{log}"
    );
}
