//! A service whose worker cannot start: master throttles it, the other
//! services keep serving, and after master.cf is fixed and master reloaded
//! the service serves.
//!
//! The broken service is a second smtpd on another port with
//! `-o smtpd_timeout=bogus`: master.cf parses (it does not know what the
//! override means), but every smtpd started for it exits at once with a
//! configuration error.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::harness::{Smtp, Suite};

/// A port nobody listens on now (the kernel's choice of a free one).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Send one message on `port` and wait until it is in demo's Maildir.
fn deliver_on(s: &Suite, port: u16, subject: &str) {
    let before = s.new_mail("demo@example.test").len();
    let mut c = Smtp::connect(port);
    c.cmd("HELO crashloop.example.org", 250);
    c.mail(
        "a@example.org",
        &["demo@example.test"],
        format!("Subject: {subject}\r\n\r\nx\r\n").as_bytes(),
    );
    c.cmd("QUIT", 221);
    let files = s.wait_mail("demo@example.test", before + 1);
    assert!(
        files.iter().any(|f| std::fs::read_to_string(f)
            .unwrap_or_default()
            .contains(&format!("Subject: {subject}\n"))),
        "{subject} delivered"
    );
}

#[test]
fn a_crash_looping_service_is_throttled_and_recovers_after_reload() {
    let s = Suite::start("crashloop", &[], &[]);
    let master_cf = s.dir.join("master.cf");
    let good = std::fs::read_to_string(&master_cf).expect("master.cf");
    let port = free_port();
    let service = format!("127.0.0.1:{port}");
    std::fs::write(
        &master_cf,
        format!("{good}{service} inet n - n - 1 smtpd -o smtpd_timeout=bogus\n"),
    )
    .expect("write master.cf");
    s.reload();
    s.wait_log(&format!("listening on {service} (smtpd)"));

    // Its worker exits at start, again and again: master throttles it.
    s.wait_log(&format!(
        "service {service} (smtpd): bad command startup -- throttling"
    ));
    let log = s.log();
    assert!(
        log.contains("smtpd_timeout") && log.contains("bogus"),
        "the worker said why it exits:\n{log}"
    );

    // Meanwhile the other services serve: mail on the good port is delivered.
    deliver_on(&s, s.port, "while the other service crash-loops");

    // Fixed and reloaded, the service serves on its port.
    std::fs::write(
        &master_cf,
        format!("{good}{service} inet n - n - 1 smtpd\n"),
    )
    .expect("write master.cf");
    let reloads = s.log().matches("reload -- version").count();
    s.reload();
    let t = Instant::now();
    while s.log().matches("reload -- version").count() <= reloads {
        assert!(t.elapsed() < Duration::from_secs(30), "master reloaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The first connection may still wait for the end of the throttle;
    // it must be greeted within 10 s of the reload.
    let t = Instant::now();
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("the port is still bound");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set timeout");
    let mut greeting = [0u8; 3];
    let greeted = sock.read_exact(&mut greeting).is_ok() && &greeting == b"220";
    assert!(
        greeted,
        "the fixed service greets within 10s of the reload (waited {:.1}s); log:\n{}",
        t.elapsed().as_secs_f32(),
        s.log()
    );
    drop(sock);
    deliver_on(&s, port, "on the repaired service");
    deliver_on(&s, s.port, "on the first service after the repair");
}
