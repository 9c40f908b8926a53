//! `mailq` and `posthorn queue`: messages for a relayhost on a closed
//! port are deferred with the connection's refusal; mailq and --json show
//! them with that reason; requeue, delete, hold and release (by id, ALL
//! with a queue name, and ids on standard input) do what they say, with
//! the suite running (through qmgr) and stopped (by the command itself).
//! "Not delivered" (a held message) is proven by later messages that the
//! same flush delivered, not by a sleep.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use crate::harness::{Smtp, Suite, BIN};

/// Recipients the sink has taken.
type Taken = Arc<Mutex<Vec<String>>>;

/// A minimal SMTP server on `l`: takes every message, notes its recipients.
fn sink_on(l: TcpListener, taken: Taken) {
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let taken = Arc::clone(&taken);
            std::thread::spawn(move || {
                let _ = session(conn, &taken);
            });
        }
    });
}

fn session(tcp: TcpStream, taken: &Taken) -> std::io::Result<()> {
    let mut w = tcp.try_clone()?;
    let mut r = BufReader::new(tcp);
    w.write_all(b"220 sink.example ESMTP\r\n")?;
    let mut rcpts = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            w.write_all(b"250 sink.example\r\n")?;
        } else if upper.starts_with("RCPT TO:<") {
            let a = &line[9..];
            rcpts.push(a[..a.find('>').unwrap_or(a.len())].to_string());
            w.write_all(b"250 ok\r\n")?;
        } else if upper.starts_with("DATA") {
            w.write_all(b"354 go on\r\n")?;
            loop {
                line.clear();
                if r.read_line(&mut line)? == 0 || line == ".\r\n" {
                    break;
                }
            }
            taken.lock().unwrap().append(&mut rcpts);
            w.write_all(b"250 taken\r\n")?;
        } else if upper.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            // MAIL, RSET, NOOP
            rcpts.clear();
            w.write_all(b"250 ok\r\n")?;
        }
    }
}

/// A port with nothing listening (yet).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(name: &str, port: u16) -> Suite {
    Suite::start(
        name,
        &[],
        &[
            &format!("relayhost=[127.0.0.1]:{port}"),
            "mynetworks=127.0.0.0/8",
            "minimal_backoff_time=1h",
            "maximal_backoff_time=2h",
            "queue_run_delay=1h",
        ],
    )
}

/// `posthorn ARGS -c DIR` (with `stdin`); its output.
fn posthorn(s: &Suite, args: &[&str], stdin: &str) -> Output {
    let mut c = Command::new(BIN)
        .args(args)
        .arg("-c")
        .arg(&s.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

fn ok(out: &Output) -> (String, String) {
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "stdout:\n{o}\nstderr:\n{e}");
    (o, e)
}

/// The multi-call binary as `mailq`.
fn mailq(s: &Suite) -> String {
    let out = Command::new(BIN)
        .arg0("mailq")
        .arg("-C")
        .arg(&s.dir)
        .output()
        .unwrap();
    ok(&out).0
}

fn in_queue(s: &Suite, q: &str, id: &str) -> bool {
    s.dir.join("spool").join(q).join(id).exists()
}

/// Queue one message per recipient; wait until each is deferred.
fn deferred_messages(s: &Suite, port: u16, rcpts: &[&str]) -> Vec<String> {
    let mut c = Smtp::connect(s.port);
    c.cmd("EHLO trusted.example.org", 250);
    let ids: Vec<String> = rcpts
        .iter()
        .map(|r| c.mail("a@example.org", &[r], b"Subject: queued\r\n\r\nx\r\n"))
        .collect();
    c.cmd("QUIT", 221);
    for (id, r) in ids.iter().zip(rcpts) {
        s.wait_log(&format!("{id}: to=<{r}>, relay=127.0.0.1:{port}, delay="));
        s.wait_until(&format!("{id} in deferred/"), || {
            in_queue(s, "deferred", id)
        });
    }
    ids
}

fn log_count(s: &Suite, needle: &str) -> usize {
    s.log().matches(needle).count()
}

#[test]
fn queue_operations_with_the_suite_running() {
    let port = closed_port();
    let s = start("queue-running", port);
    let rcpts = [
        "x1@far.example",
        "x2@far.example",
        "x3@far.example",
        "x4@far.example",
    ];
    let ids = deferred_messages(&s, port, &rcpts);

    // mailq: Postfix's layout, with the reason.
    let reason = format!("(connect to 127.0.0.1:{port}: Connection refused");
    let q = mailq(&s);
    assert!(
        q.starts_with("-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"),
        "{q}"
    );
    for (id, r) in ids.iter().zip(rcpts) {
        let at = q
            .find(&format!("{id} "))
            .unwrap_or_else(|| panic!("{id} in\n{q}"));
        let rest = &q[at..];
        assert!(rest.contains("  a@example.org\n"), "{q}");
        let block = &rest[..rest.find("\n\n").unwrap_or(rest.len())];
        assert!(block.contains(&reason), "reason of {id}:\n{q}");
        assert!(block.contains(&format!("\n{:41}{r}", "")), "{q}");
    }
    // The total is the sizes shown (Authentication-Results included).
    let total: u64 = ids
        .iter()
        .map(|id| {
            let line = q.lines().find(|l| l.starts_with(id.as_str())).unwrap();
            line.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert!(
        q.ends_with(&format!("\n-- {} Kbytes in 4 Requests.\n", total / 1024)),
        "{q}"
    );
    // --json: a line per message, postqueue -j's fields.
    let (json, _) = ok(&posthorn(&s, &["queue", "list", "--json"], ""));
    assert_eq!(json.lines().count(), 4, "{json}");
    for (id, r) in ids.iter().zip(rcpts) {
        let line = json.lines().find(|l| l.contains(id.as_str())).unwrap();
        assert!(
            line.starts_with("{\"queue_name\": \"deferred\", \"queue_id\": \""),
            "{line}"
        );
        assert!(line.contains(&format!(
            "\"sender\": \"a@example.org\", \"recipients\": [{{\"address\": \"{r}\", \"delay_reason\": \"connect to 127.0.0.1:{port}: Connection refused"
        )), "{line}");
    }
    // show: envelope and headers.
    let (show, _) = ok(&posthorn(&s, &["queue", "show", &ids[0]], ""));
    assert!(
        show.starts_with(&format!("*** ENVELOPE RECORDS deferred/{} ***\n", ids[0])),
        "{show}"
    );
    assert!(show.contains("\nsender: a@example.org\n"), "{show}");
    // smtpd's Authentication-Results, kept in the queue file's trailer,
    // is the message's first header wherever it leaves the queue.
    assert!(
        show.contains(&format!(
            "*** MESSAGE CONTENTS deferred/{} ***\nAuthentication-Results: mail.example.test;\n",
            ids[0]
        )),
        "{show}"
    );
    assert!(
        show.contains("\nrecipient: x1@far.example\ndelay_reason: connect to"),
        "{show}"
    );
    assert!(
        show.contains("\nSubject: queued\n\n*** MESSAGE FILE END"),
        "{show}"
    );

    // Nobody but root and mail_owner sees the queue (as root: try as
    // nobody; as nobody, mail_owner is nobody).
    if nix::unistd::geteuid().is_root() {
        let out = Command::new(BIN)
            .arg0("mailq")
            .arg("-C")
            .arg(&s.dir)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && out.stdout.is_empty(), "{err}");
        assert!(
            err.contains("posthorn: the queue is open to root and mail_owner (root) only"),
            "{err}"
        );
    }

    // Bad ids: a clear error, a non-zero exit.
    let out = posthorn(&s, &["queue", "delete", "not-an-id"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-an-id: not a queue id"));
    let out = posthorn(&s, &["queue", "hold", "00000000000000"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("00000000000000: no such message in the queue"));

    // requeue: tried again now (not in an hour), deferred again.
    let tried = format!("{}: to=<x3@far.example>, relay=127.0.0.1:{port}", ids[2]);
    assert_eq!(log_count(&s, &tried), 1);
    let (_, e) = ok(&posthorn(&s, &["queue", "requeue", &ids[2]], ""));
    assert!(e.contains("posthorn: Requeued: 1 message"), "{e}");
    s.wait_log(&format!("{}: requeued", ids[2]));
    s.wait_until("a second attempt", || log_count(&s, &tried) == 2);
    s.wait_until("deferred again", || in_queue(&s, "deferred", &ids[2]));

    // delete.
    let (_, e) = ok(&posthorn(&s, &["queue", "delete", &ids[1]], ""));
    assert!(e.contains(&format!("posthorn: {}: removed", ids[1])), "{e}");
    assert!(e.contains("posthorn: Deleted: 1 message"), "{e}");
    s.wait_log(&format!("{}: removed", ids[1]));
    assert!(!in_queue(&s, "deferred", &ids[1]));

    // hold by id, then ALL deferred: mailq marks them with `!`.
    ok(&posthorn(&s, &["queue", "hold", &ids[0]], ""));
    let (_, e) = ok(&posthorn(&s, &["queue", "hold", "ALL", "deferred"], ""));
    assert!(e.contains("posthorn: Placed on hold: 2 messages"), "{e}");
    for id in [&ids[0], &ids[2], &ids[3]] {
        assert!(in_queue(&s, "hold", id), "{id} held");
    }
    let q = mailq(&s);
    assert!(q.contains(&format!("{}!", ids[0])), "{q}");
    assert!(q.ends_with("-- 0 Kbytes in 3 Requests.\n"), "{q}");
    // release two of them, their ids on standard input.
    let (_, e) = ok(&posthorn(
        &s,
        &["queue", "release", "-"],
        &format!("{}\n{}\n", ids[2], ids[3]),
    ));
    assert!(
        e.contains("posthorn: Released from hold: 2 messages"),
        "{e}"
    );

    // The next hop answers now. A flush delivers the released two; the
    // held one is not delivered: the other two, taken by the same flush,
    // are the barrier.
    let taken: Taken = Arc::default();
    sink_on(
        TcpListener::bind(("127.0.0.1", port)).unwrap(),
        Arc::clone(&taken),
    );
    ok(&posthorn(&s, &["flush"], ""));
    for id in [&ids[2], &ids[3]] {
        s.wait_log(&format!("{id}: removed"));
    }
    {
        let t = taken.lock().unwrap();
        assert!(
            t.contains(&"x3@far.example".to_string()) && t.contains(&"x4@far.example".to_string())
        );
        assert!(
            !t.contains(&"x1@far.example".to_string()),
            "held, yet delivered"
        );
    }
    assert!(in_queue(&s, "hold", &ids[0]));
    // Released and flushed: delivered.
    ok(&posthorn(&s, &["queue", "release", &ids[0]], ""));
    ok(&posthorn(&s, &["flush"], ""));
    s.wait_log(&format!("{}: removed", ids[0]));
    assert!(taken
        .lock()
        .unwrap()
        .contains(&"x1@far.example".to_string()));
    assert_eq!(mailq(&s), "Mail queue is empty\n");
}

#[test]
fn queue_operations_with_the_suite_stopped() {
    let port = closed_port();
    let mut s = start("queue-stopped", port);
    let ids = deferred_messages(
        &s,
        port,
        &["y1@far.example", "y2@far.example", "y3@far.example"],
    );
    s.stop();
    let q = mailq(&s);
    assert!(q.ends_with("-- 0 Kbytes in 3 Requests.\n"), "{q}");
    let (_, e) = ok(&posthorn(&s, &["queue", "hold", &ids[0]], ""));
    assert!(
        e.contains(&format!("posthorn: {}: placed on hold", ids[0])),
        "{e}"
    );
    assert!(in_queue(&s, "hold", &ids[0]));
    let (_, e) = ok(&posthorn(&s, &["queue", "requeue", &ids[0]], ""));
    assert!(e.contains("posthorn: Requeued: 1 message"), "{e}");
    assert!(in_queue(&s, "incoming", &ids[0]));
    let (_, e) = ok(&posthorn(
        &s,
        &["queue", "delete", "-"],
        &format!("{}\n", ids[1]),
    ));
    assert!(e.contains("posthorn: Deleted: 1 message"), "{e}");
    assert!(!in_queue(&s, "deferred", &ids[1]));
    let (_, e) = ok(&posthorn(&s, &["queue", "delete", "ALL", "deferred"], ""));
    assert!(e.contains("posthorn: Deleted: 1 message"), "{e}");
    let (_, e) = ok(&posthorn(&s, &["queue", "delete", "ALL"], ""));
    assert!(e.contains("posthorn: Deleted: 1 message"), "{e}");
    assert_eq!(mailq(&s), "Mail queue is empty\n");
    let spool: PathBuf = s.dir.join("spool");
    for q in ["incoming", "active", "deferred", "hold"] {
        assert!(
            crate::harness::queue_files(&spool.join(q)).is_empty(),
            "{q}"
        );
    }
}
