//! The server skeleton and master's supervision, seen from outside:
//! connection limits that hold across smtpd processes (anvil), and workers
//! killed after they served being replaced at once, not throttled.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::{Smtp, Suite};

/// Connect and read the first reply line.
fn greeting(port: u16) -> (TcpStream, String) {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = String::new();
    BufReader::new(s.try_clone().unwrap())
        .read_line(&mut line)
        .expect("greeting");
    (s, line.trim_end().to_string())
}

#[test]
fn client_connection_limit_counts_across_smtpd_processes() {
    let s = Suite::start(
        "anvil-limit",
        &[],
        &["smtpd_client_connection_count_limit=3"],
    );
    // Two for SMTP (the port used below), one each for submission and
    // submissions.
    assert_eq!(
        s.workers("posthorn-smtpd").len(),
        crate::harness::SMTPD_PROCESSES,
        "smtpd processes"
    );
    assert_eq!(s.workers("posthorn-anvil").len(), 1, "one anvil");
    // Six connections over two processes: counted per process, up to six
    // would be let in; counted across processes, exactly three.
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..6 {
        let (c, line) = greeting(s.port);
        if line.starts_with("220 ") {
            open.push(c);
        } else {
            assert!(
                line.starts_with("421 4.7.0 ")
                    && line.contains("too many connections from 127.0.0.1"),
                "{line}"
            );
            refused += 1;
        }
    }
    assert_eq!((open.len(), refused), (3, 3), "log:\n{}", s.log());
    assert!(!s.log().contains("anvil unavailable"), "{}", s.log());
    // A connection that ends makes room for one more.
    drop(open.pop());
    let t = Instant::now();
    loop {
        let (c, line) = greeting(s.port);
        if line.starts_with("220 ") {
            open.push(c);
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no room after a close: {line}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A killed smtpd leaves no counts behind: anvil releases what it held.
    for pid in s.workers("posthorn-smtpd") {
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    }
    drop(open);
    let t = Instant::now();
    let mut got = 0;
    let mut keep = Vec::new();
    while got < 3 {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "counts were not released:\n{}",
            s.log()
        );
        let Ok(c) = TcpStream::connect(("127.0.0.1", s.port)) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut line = String::new();
        let _ = BufReader::new(c.try_clone().unwrap()).read_line(&mut line);
        if line.starts_with("220 ") {
            got += 1;
            keep.push(c);
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn a_worker_killed_after_serving_is_replaced_at_once() {
    let s = Suite::start("replaced", &[], &[]);
    let mut c = Smtp::connect(s.port);
    c.cmd("EHLO client.example", 250);
    c.mail(
        "a@example.org",
        &["demo@example.test"],
        b"Subject: one\r\n\r\nhi\r\n",
    );
    c.cmd("QUIT", 221);
    s.wait_mail("demo@example.test", 1);
    let before: Vec<i32> = ["posthorn-smtpd", "posthorn-qmgr", "posthorn-local"]
        .iter()
        .flat_map(|p| s.workers(p))
        .collect();
    for pid in &before {
        kill(Pid::from_raw(*pid), Signal::SIGKILL).unwrap();
    }
    // Replaced at once: a new message is accepted and delivered promptly.
    let t = Instant::now();
    let mut c = loop {
        if let Ok(s2) = TcpStream::connect(("127.0.0.1", s.port)) {
            drop(s2);
            let mut c = Smtp::connect(s.port);
            c.cmd("EHLO client.example", 250);
            break c;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "smtpd not back within 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    c.mail(
        "a@example.org",
        &["demo@example.test"],
        b"Subject: two\r\n\r\nhi\r\n",
    );
    c.cmd("QUIT", 221);
    s.wait_mail("demo@example.test", 2);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    let log = s.log();
    assert!(log.contains("killed by signal 9"), "{log}");
    assert!(
        !log.contains("throttling"),
        "a worker that served was throttled:\n{log}"
    );
}

/// As root with an unprivileged mail_owner: master makes the sockets in
/// private/ with mail_owner's ids (never chmod/chown by path as root), and a
/// symlink planted in private/ is not followed when it binds again.
#[test]
fn private_sockets_belong_to_mail_owner_and_planted_links_are_not_followed() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root (master binds as mail_owner only when root)");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody exists");
    let mut s = Suite::start("private-links", &[], &["mail_owner=nobody"]);
    let private = s.dir.join("spool/private");
    for name in ["qmgr", "local", "anvil"] {
        let m = std::fs::symlink_metadata(private.join(name)).expect(name);
        assert!(m.file_type().is_socket(), "{name}");
        assert_eq!(m.uid(), nobody.uid.as_raw(), "{name} owner");
        assert_eq!(m.mode() & 0o777, 0o600, "{name} mode");
    }
    s.stop();
    // mail_owner plants links where master will bind again.
    let target = s.dir.join("root-only");
    std::fs::write(&target, b"secret\n").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
    for name in ["qmgr", "anvil"] {
        let _ = std::fs::remove_file(private.join(name));
        std::os::unix::fs::symlink(&target, private.join(name)).unwrap();
        nix::unistd::fchownat(
            None,
            &private.join(name),
            Some(nobody.uid),
            Some(nobody.gid),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }
    s.spawn(&[], &["mail_owner=nobody"]);
    let m = std::fs::metadata(&target).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777),
        (0, 0, 0o640),
        "target changed"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"secret\n");
    for name in ["qmgr", "anvil"] {
        let m = std::fs::symlink_metadata(private.join(name)).unwrap();
        assert!(m.file_type().is_socket(), "{name} is a socket again");
        assert_eq!(m.uid(), nobody.uid.as_raw());
    }
    // And the services run on the new sockets. (Delivery to the demo user
    // needs the users file, which a mail_owner other than the dev user may
    // not read until the auth service exists.)
    let mut c = Smtp::connect(s.port);
    c.cmd("EHLO client.example", 250);
    c.cmd("QUIT", 221);
    assert_eq!(s.workers("posthorn-anvil").len(), 1);
    assert_eq!(s.workers("posthorn-qmgr").len(), 1);
}

/// 1,000 pipelined NOOPs are not all answered at full speed: past the junk
/// command limit they count as errors, past the soft error limit each reply
/// is held back (the skeleton's pause), and the hard limit ends the session.
#[test]
fn pipelined_junk_commands_are_slowed_and_cut_off() {
    use std::io::{Read, Write};
    let s = Suite::start(
        "junk",
        &[],
        &[
            "smtpd_junk_command_limit=5",
            "smtpd_soft_error_limit=3",
            "smtpd_hard_error_limit=6",
            "smtpd_error_sleep_time=1s",
        ],
    );
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let t = Instant::now();
    c.write_all(&b"NOOP\r\n".repeat(1000)).unwrap();
    let mut all = Vec::new();
    let _ = c.read_to_end(&mut all); // until the server closes
    let elapsed = t.elapsed();
    let text = String::from_utf8_lossy(&all);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("220 "), "{text}");
    let oks = lines.iter().filter(|l| l.starts_with("250 ")).count();
    // 5 free NOOPs, then errors 1..=6 answered (those past 3 after a pause
    // each); the next command passes the hard limit.
    assert_eq!(oks, 11, "{text}");
    assert!(
        lines.last().unwrap().starts_with("421 4.7.0 ") && text.contains("too many errors"),
        "{text}"
    );
    // Both pauses happened (a lower bound, not a timing test).
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
}
