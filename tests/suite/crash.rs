//! The crash test: SIGKILL qmgr, local delivery and smtpd while 520
//! messages are being sent; every message that got 250 must be delivered,
//! and each queued copy once, or once more for each qmgr or local crash it
//! was in flight at. (A client whose smtpd was killed after the commit but
//! before the 250 sends again: a second queue file, as with any MTA.)

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::Suite;

const SENDERS: usize = 4;
const PER_SENDER: usize = 130;

/// A client that reports failures instead of panicking.
struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn connect(port: u16) -> Option<Client> {
        let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
        let mut c = Client {
            r: BufReader::new(s.try_clone().ok()?),
            w: s,
        };
        (c.code()? == 220).then_some(())?;
        c.send("HELO crash.example.org")?;
        (c.code()? == 250).then_some(c)
    }

    fn code(&mut self) -> Option<u16> {
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l).ok()? == 0 {
                return None;
            }
            if l.as_bytes().get(3) != Some(&b'-') {
                return l.get(..3)?.parse().ok();
            }
        }
    }

    fn send(&mut self, line: &str) -> Option<()> {
        self.w.write_all(format!("{line}\r\n").as_bytes()).ok()
    }

    fn message(&mut self, token: &str) -> Option<bool> {
        self.send("MAIL FROM:<load@example.org>")?;
        if self.code()? != 250 {
            return Some(false);
        }
        self.send("RCPT TO:<demo@example.test>")?;
        if self.code()? != 250 {
            return Some(false);
        }
        self.send("DATA")?;
        if self.code()? != 354 {
            return Some(false);
        }
        let body = format!(
            "Subject: {token}\r\nMessage-ID: <{token}@example.org>\r\n\r\n{}\r\n.\r\n",
            "load ".repeat(200)
        );
        self.w.write_all(body.as_bytes()).ok()?;
        Some(self.code()? == 250)
    }
}

#[test]
fn sigkill_workers_under_load_loses_nothing() {
    let s = Suite::start(
        "crash",
        &[],
        &[
            "minimal_backoff_time=1s",
            "maximal_backoff_time=2s",
            "queue_run_delay=1s",
        ],
    );
    let accepted: Arc<Mutex<HashSet<String>>> = Arc::new(Mutex::new(HashSet::new()));
    let done = Arc::new(AtomicBool::new(false));
    let port = s.port;
    let mut senders = Vec::new();
    for t in 0..SENDERS {
        let accepted = Arc::clone(&accepted);
        senders.push(std::thread::spawn(move || {
            let mut conn: Option<Client> = None;
            for i in 0..PER_SENDER {
                let token = format!("crash-{t}-{i}");
                let started = Instant::now();
                loop {
                    assert!(
                        started.elapsed() < Duration::from_secs(60),
                        "{token}: could not be sent for 60s"
                    );
                    if conn.is_none() {
                        conn = Client::connect(port);
                        if conn.is_none() {
                            std::thread::sleep(Duration::from_millis(50));
                            continue;
                        }
                    }
                    match conn.as_mut().and_then(|c| c.message(&token)) {
                        Some(true) => {
                            accepted.lock().unwrap().insert(token.clone());
                            break;
                        }
                        // Refused or connection lost: a new connection, the same message again.
                        _ => conn = None,
                    }
                }
            }
        }));
    }
    // The killer: qmgr and every local process three times, smtpd once, each
    // when the load has reached a given point (so they happen mid-load however
    // fast the machine is).
    let killer = {
        let done = Arc::clone(&done);
        let accepted = Arc::clone(&accepted);
        let master = s.master_pid() as i32;
        std::thread::spawn(move || {
            let plan = [
                (40, "posthorn-qmgr"),
                (90, "posthorn-local"),
                (150, "posthorn-smtpd"),
                (220, "posthorn-qmgr"),
                (290, "posthorn-local"),
                (360, "posthorn-qmgr"),
                (430, "posthorn-local"),
            ];
            let mut kills = Vec::new();
            for (at, program) in plan {
                while accepted.lock().unwrap().len() < at {
                    if done.load(Ordering::Relaxed) {
                        return kills;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                // One entry per crash (all of a program's processes at once).
                let mut killed = false;
                for pid in crate::harness::children(master, program) {
                    killed |= kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok();
                }
                if killed {
                    kills.push(program);
                }
            }
            kills
        })
    };
    for h in senders {
        h.join().expect("sender thread");
    }
    done.store(true, Ordering::Relaxed);
    let kills = killer.join().unwrap();
    for p in ["posthorn-qmgr", "posthorn-local", "posthorn-smtpd"] {
        assert!(
            kills.contains(&p),
            "{p} was killed during the load: {kills:?}"
        );
    }
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(
        accepted.len(),
        SENDERS * PER_SENDER,
        "every message eventually got 250"
    );

    // Every accepted message arrives; count copies by queue id (the
    // Received header's `id`), and note the Subjects that arrived.
    let t = Instant::now();
    let counts = loop {
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut per_id: HashMap<String, usize> = HashMap::new();
        for f in s.new_mail("demo@example.test") {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            if let Some(subj) = text.lines().find_map(|l| l.strip_prefix("Subject: ")) {
                *counts.entry(subj.to_string()).or_default() += 1;
            }
            if let Some(id) = text.lines().take(8).find_map(|l| {
                l.split_once(" id ")
                    .map(|(_, r)| r.split([';', ' ']).next().unwrap_or("").to_string())
            }) {
                *per_id.entry(id).or_default() += 1;
            }
        }
        // Each qmgr or local crash may repeat what was in flight at it,
        // once; a message deferred after one crash (its agent died) can be
        // in flight at the next ones too when delivery lags behind the
        // load, so the bound is one copy more per such crash.
        let crashes = kills.iter().filter(|p| **p != "posthorn-smtpd").count();
        for (id, n) in &per_id {
            assert!(
                *n <= 1 + crashes,
                "queue file {id} delivered {n} times ({crashes} qmgr/local crashes)"
            );
        }
        let missing = accepted.iter().filter(|t| !counts.contains_key(*t)).count();
        if missing == 0 {
            break counts;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{missing} accepted messages never delivered (kills: {kills:?}); log tail:\n{}",
            s.log()
                .lines()
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let dupes: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "crash test: {} accepted, {} delivered twice, kills {kills:?}",
        accepted.len(),
        dupes.len()
    );
}
