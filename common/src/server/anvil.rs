//! Connection counting across processes (Postfix's anvil(8)).
//!
//! Owns both sides of `private/anvil`: the `AnvilService` that posthorn-anvil
//! runs on the server skeleton, and the `AnvilCounter` a daemon's loop uses
//! as its `Counter`. Each daemon process keeps one connection to anvil; what
//! it registered is released when that connection closes, so a killed smtpd
//! never leaves counts behind. Without anvil (not in master.cf, restarting)
//! a daemon counts in its own process and says so once in the log.
//!
//! Protocol, one line each way: `C SERVICE IP\n` (count a connection; the
//! reply is `PER_CLIENT TOTAL\n`), `D SERVICE IP\n` (release it; no reply).
//! SERVICE is the master.cf service name, IP the client's address or `-`.
//!
//! Security: anvil's peers are posthorn processes on a private socket, but
//! their input is still bounded: lines of at most 256 bytes, at most
//! MAX_KEYS distinct (service, address) pairs per peer.
//!
//! Diagnostics: a daemon logs `anvil unavailable; counting connections in
//! this process only` once per outage.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Counter, LocalCounter, Next, Peer, Refusal, Service};
use crate::warning;

/// The longest request line anvil reads.
const MAX_LINE: usize = 256;
/// Distinct (service, address) pairs one peer may hold.
const MAX_KEYS: usize = 100_000;
/// How long a daemon waits for anvil's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a daemon waits before trying anvil again after a failure.
const RETRY: Duration = Duration::from_secs(5);

type Key = (String, String);

/// Counts held by all peers.
#[derive(Debug, Default)]
pub struct AnvilService {
    per_key: HashMap<Key, u32>,
    per_service: HashMap<String, u32>,
}

/// One peer's state: its unfinished line and what it holds.
#[derive(Debug, Default)]
pub struct AnvilConn {
    line: Vec<u8>,
    held: HashMap<Key, u32>,
    broken: bool,
}

impl AnvilService {
    fn count(&mut self, c: &mut AnvilConn, key: Key) -> (u32, u32) {
        if c.held.len() >= MAX_KEYS && !c.held.contains_key(&key) {
            c.broken = true;
            return (0, 0);
        }
        *c.held.entry(key.clone()).or_insert(0) += 1;
        let total = self.per_service.entry(key.0.clone()).or_insert(0);
        *total += 1;
        let total = *total;
        let n = self.per_key.entry(key).or_insert(0);
        *n += 1;
        (*n, total)
    }

    fn release(&mut self, c: &mut AnvilConn, key: &Key, times: u32) {
        let held = c.held.get_mut(key).map(|h| {
            let t = times.min(*h);
            *h -= t;
            t
        });
        let Some(t) = held else { return };
        if c.held.get(key) == Some(&0) {
            c.held.remove(key);
        }
        if let Some(n) = self.per_key.get_mut(key) {
            *n = n.saturating_sub(t);
            if *n == 0 {
                self.per_key.remove(key);
            }
        }
        if let Some(n) = self.per_service.get_mut(&key.0) {
            *n = n.saturating_sub(t);
            if *n == 0 {
                self.per_service.remove(&key.0);
            }
        }
    }

    fn line(&mut self, c: &mut AnvilConn, line: &[u8], out: &mut Vec<u8>) {
        let text = String::from_utf8_lossy(line);
        let mut f = text.split(' ');
        match (f.next(), f.next(), f.next(), f.next()) {
            (Some("C"), Some(svc), Some(ip), None) => {
                let (n, total) = self.count(c, (svc.to_string(), ip.to_string()));
                out.extend_from_slice(format!("{n} {total}\n").as_bytes());
            }
            (Some("D"), Some(svc), Some(ip), None) => {
                self.release(c, &(svc.to_string(), ip.to_string()), 1);
            }
            _ => c.broken = true,
        }
    }
}

impl Service for AnvilService {
    type Conn = AnvilConn;
    type Done = ();

    fn open(&mut self, _peer: Peer, _out: &mut Vec<u8>) -> (AnvilConn, Next<()>) {
        (AnvilConn::default(), Next::Continue)
    }

    fn refuse(&mut self, _peer: Peer, _why: Refusal, _out: &mut Vec<u8>) -> AnvilConn {
        AnvilConn::default()
    }

    fn input(&mut self, c: &mut AnvilConn, data: &[u8], out: &mut Vec<u8>) -> Next<()> {
        for &b in data {
            if b == b'\n' {
                let line = std::mem::take(&mut c.line);
                self.line(c, &line, out);
            } else if c.line.len() < MAX_LINE {
                c.line.push(b);
            } else {
                c.broken = true;
            }
            if c.broken {
                warning!("anvil: malformed request from a peer; closing it");
                return Next::Close;
            }
        }
        Next::Continue
    }

    fn done(&mut self, _c: &mut AnvilConn, _r: (), _out: &mut Vec<u8>) -> Next<()> {
        Next::Continue
    }

    fn resume(&mut self, _c: &mut AnvilConn, _out: &mut Vec<u8>) -> Next<()> {
        Next::Continue
    }

    fn timed_out(&mut self, _c: &mut AnvilConn, _out: &mut Vec<u8>) {}

    fn stopping(&mut self, _c: &mut AnvilConn, _out: &mut Vec<u8>) -> bool {
        true
    }

    fn closed(&mut self, mut c: AnvilConn, _lost: bool) {
        let held: Vec<(Key, u32)> = c.held.iter().map(|(k, n)| (k.clone(), *n)).collect();
        for (k, n) in held {
            self.release(&mut c, &k, n);
        }
    }

    fn orphan(&mut self, _r: ()) {}
}

/// A daemon's `Counter`: anvil when it answers, else this process alone.
pub struct AnvilCounter {
    socket: PathBuf,
    service: String,
    conn: Option<BufReader<UnixStream>>,
    local: LocalCounter,
    /// This process's live connections, to register again after an outage.
    mine: HashMap<Option<IpAddr>, u32>,
    retry_at: Option<Instant>,
}

impl AnvilCounter {
    pub fn new(socket: PathBuf, service: &str) -> Self {
        AnvilCounter {
            socket,
            service: service.replace([' ', '\n'], "_"),
            conn: None,
            local: LocalCounter::default(),
            mine: HashMap::new(),
            retry_at: None,
        }
    }

    fn ip_text(ip: Option<IpAddr>) -> String {
        ip.map_or_else(|| "-".to_string(), |i| i.to_string())
    }

    /// Connect (again) and register this process's live connections.
    fn connected(&mut self) -> Option<&mut BufReader<UnixStream>> {
        if self.conn.is_none() {
            if self.retry_at.is_some_and(|t| Instant::now() < t) {
                return None;
            }
            match self.open() {
                Ok(c) => {
                    self.conn = Some(c);
                    self.retry_at = None;
                }
                Err(_) => {
                    if self.retry_at.is_none() {
                        warning!("anvil unavailable; counting connections in this process only");
                    }
                    self.retry_at = Some(Instant::now() + RETRY);
                    return None;
                }
            }
        }
        self.conn.as_mut()
    }

    fn open(&self) -> io::Result<BufReader<UnixStream>> {
        let s = UnixStream::connect(&self.socket)?;
        s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        s.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        let mut r = BufReader::new(s);
        // Re-register what this process holds, answers read in order.
        for (ip, n) in &self.mine {
            for _ in 0..*n {
                Self::ask(&mut r, &self.service, *ip)?;
            }
        }
        Ok(r)
    }

    fn ask(r: &mut BufReader<UnixStream>, svc: &str, ip: Option<IpAddr>) -> io::Result<(u32, u32)> {
        let req = format!("C {svc} {}\n", Self::ip_text(ip));
        r.get_mut().write_all(req.as_bytes())?;
        let mut line = String::new();
        r.by_ref().take(64).read_line(&mut line)?;
        let mut f = line.trim_end().split(' ');
        match (
            f.next().and_then(|n| n.parse().ok()),
            f.next().and_then(|n| n.parse().ok()),
        ) {
            (Some(n), Some(t)) => Ok((n, t)),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad answer from anvil",
            )),
        }
    }
}

impl Counter for AnvilCounter {
    fn connect(&mut self, ip: Option<IpAddr>) -> (u32, u32) {
        let local = self.local.connect(ip);
        let svc = self.service.clone();
        let answer = self
            .connected()
            .map(|c| Self::ask(c, &svc, ip))
            .and_then(|r| r.ok());
        *self.mine.entry(ip).or_insert(0) += 1;
        match answer {
            Some(counts) => counts,
            None => {
                self.conn = None;
                local
            }
        }
    }

    fn disconnect(&mut self, ip: Option<IpAddr>) {
        self.local.disconnect(ip);
        if let Some(n) = self.mine.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.mine.remove(&ip);
            }
        }
        let req = format!("D {} {}\n", self.service, Self::ip_text(ip));
        if let Some(c) = self.conn.as_mut() {
            if c.get_mut().write_all(req.as_bytes()).is_err() {
                self.conn = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(s: &mut AnvilService, c: &mut AnvilConn, text: &str) -> String {
        let mut out = Vec::new();
        let _ = s.input(c, text.as_bytes(), &mut out);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn counts_across_peers_and_releases_a_dead_peers_counts() {
        let mut s = AnvilService::default();
        let (mut a, mut b) = (AnvilConn::default(), AnvilConn::default());
        assert_eq!(feed(&mut s, &mut a, "C smtp 192.0.2.1\n"), "1 1\n");
        assert_eq!(feed(&mut s, &mut b, "C smtp 192.0.2.1\n"), "2 2\n");
        assert_eq!(
            feed(&mut s, &mut b, "C smtp 192.0.2.9\nC submission 192.0.2.1\n"),
            "1 3\n1 1\n"
        );
        feed(&mut s, &mut a, "D smtp 192.0.2.1\n");
        assert_eq!(feed(&mut s, &mut a, "C smtp 192.0.2.1\n"), "2 3\n");
        // b dies: everything it held goes.
        s.closed(b, true);
        assert_eq!(feed(&mut s, &mut a, "C smtp 192.0.2.1\n"), "2 2\n");
        // Releasing what one does not hold changes nothing.
        let mut c = AnvilConn::default();
        feed(&mut s, &mut c, "D smtp 192.0.2.1\n");
        assert_eq!(feed(&mut s, &mut c, "C smtp 192.0.2.1\n"), "3 3\n");
    }

    #[test]
    fn garbage_and_long_lines_close_the_peer() {
        let mut s = AnvilService::default();
        let mut c = AnvilConn::default();
        let mut out = Vec::new();
        assert!(matches!(s.input(&mut c, b"X y\n", &mut out), Next::Close));
        let mut c = AnvilConn::default();
        let long = vec![b'a'; 1000];
        assert!(matches!(s.input(&mut c, &long, &mut out), Next::Close));
        assert!(out.is_empty());
    }
}
