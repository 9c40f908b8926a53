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
    assert_eq!(s.workers("posthorn-smtpd").len(), 2, "two smtpd processes");
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
