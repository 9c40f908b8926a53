//! The whole-suite harness: a posthorn in a temp directory, real sockets.
//!
//! `Suite::start` runs `posthorn dev` (the README's first command) as the
//! current user with its own state directory and port offset, waits for SMTP
//! to answer, and stops it (SIGTERM, then SIGKILL) when dropped. Its log
//! (stderr) is kept in the state directory for assertions and post-mortems.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_posthorn");

/// The smtpd processes `posthorn dev` runs: two for SMTP (maxproc 2), one
/// for submission and one for submissions.
pub const SMTPD_PROCESSES: usize = 4;

static NEXT_OFFSET: AtomicU16 = AtomicU16::new(0);
static NEXT_BARRIER: AtomicU16 = AtomicU16::new(0);

pub struct Suite {
    pub dir: PathBuf,
    pub port: u16,
    pub offset: u16,
    child: Option<Child>,
}

impl Suite {
    /// Start with the default demo user plus `users` (ADDR:PASSWORD) and main.cf overrides.
    pub fn start(name: &str, users: &[&str], overrides: &[&str]) -> Suite {
        let base =
            std::env::temp_dir().join(format!("posthorn-suite-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Ports: a block per test process (pid) and a step per suite
        // within it. The step is not 1: `posthorn dev` listens on several
        // base ports (2110, 2143, 2465, 2525, 2587, 2993, 2995) and with
        // consecutive offsets one suite's IMAPS port (2993 + k + 2) was
        // another's POP3S port (2995 + k). No two of the first 100 multiples
        // of 19 is a difference of two base ports, so suites of one process
        // never share a port.
        let n = NEXT_OFFSET.fetch_add(1, Ordering::SeqCst) % 100;
        let offset = 10000 + (std::process::id() % 8) as u16 * 2000 + n * 19;
        let mut s = Suite {
            dir: base,
            port: 2525 + offset,
            offset,
            child: None,
        };
        s.spawn(users, overrides);
        s
    }

    pub fn spawn(&mut self, users: &[&str], overrides: &[&str]) {
        let mut cmd = Command::new(BIN);
        cmd.arg("dev")
            .arg("--state")
            .arg(&self.dir)
            .arg("--port-offset")
            .arg(self.offset.to_string());
        let mut all_users = vec!["demo@example.test:demo"];
        all_users.extend_from_slice(users);
        for u in all_users {
            cmd.arg("--user").arg(u);
        }
        // Nothing leaves the machine: no name server but the tests' own
        // (one that knows no name, unless the test brings its own).
        if !overrides.iter().any(|o| o.starts_with("dns_servers=")) {
            let empty = crate::dns::serve(Default::default());
            cmd.arg("-o").arg(format!("dns_servers={empty}"));
        }
        for o in overrides {
            cmd.arg("-o").arg(o);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .unwrap();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stdout"))
            .unwrap();
        cmd.stdout(out).stderr(log).stdin(Stdio::null());
        self.child = Some(cmd.spawn().expect("posthorn dev starts"));
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let mut b = [0u8; 3];
                if s.read_exact(&mut b).is_ok() && &b == b"220" {
                    let _ = s.write_all(b"QUIT\r\n");
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "posthorn did not answer on port {} within 30s; log:\n{}",
            self.port,
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    pub fn master_pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn maildir(&self, user: &str) -> PathBuf {
        let (local, domain) = user.split_once('@').unwrap();
        self.dir
            .join("mail")
            .join(domain)
            .join(local)
            .join("Maildir")
    }

    /// Files in a user's Maildir new/.
    pub fn new_mail(&self, user: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.maildir(user).join("new"))
            .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Wait until `user` has `n` messages; return them.
    pub fn wait_mail(&self, user: &str, n: usize) -> Vec<PathBuf> {
        let t = Instant::now();
        loop {
            let m = self.new_mail(user);
            if m.len() >= n {
                return m;
            }
            if t.elapsed() > Duration::from_secs(30) {
                panic!(
                    "{user} has {} messages, expected {n}; log:\n{}",
                    m.len(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Prove that nothing (more) arrived for `users` without sleeping: send a
    /// marker message to all of them in a new session and wait until each has
    /// it. Mail queued before the marker has then had its turn (qmgr takes
    /// incoming/ in queue id order, which is arrival order). Returns every
    /// file in their new/ directories except the markers.
    pub fn barrier(&self, users: &[&str]) -> Vec<PathBuf> {
        let token = format!(
            "barrier-{}-{}@suite.invalid",
            std::process::id(),
            NEXT_BARRIER.fetch_add(1, Ordering::SeqCst)
        );
        let mut c = Smtp::connect(self.port);
        c.cmd("HELO barrier.example.org", 250);
        let message = format!("Subject: barrier\r\nMessage-ID: <{token}>\r\n\r\nbarrier\r\n");
        c.mail("barrier@example.org", users, message.as_bytes());
        c.cmd("QUIT", 221);
        let is_marker = |p: &Path| {
            String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default())
                .contains(&format!("Message-ID: <{token}>"))
        };
        let t = Instant::now();
        loop {
            let files: Vec<PathBuf> = users.iter().flat_map(|u| self.new_mail(u)).collect();
            let markers = files.iter().filter(|p| is_marker(p)).count();
            if markers == users.len() {
                return files.into_iter().filter(|p| !is_marker(p)).collect();
            }
            if t.elapsed() > Duration::from_secs(30) {
                panic!(
                    "barrier message {token} reached {markers} of {users:?} in 30s; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `posthorn reload` (SIGHUP to master); panics when it fails.
    pub fn reload(&self) {
        self.admin("reload");
    }

    /// `posthorn flush` (every deferred message now); panics when it fails.
    pub fn flush(&self) {
        self.admin("flush");
    }

    /// `posthorn COMMAND -c DIR`; panics when it fails.
    fn admin(&self, command: &str) {
        let out = Command::new(BIN)
            .args([command, "-c"])
            .arg(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("posthorn {command}: {e}"));
        assert!(
            out.status.success(),
            "posthorn {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Wait (up to 40 s) until `cond` holds; `what` names it in the panic.
    pub fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let t = Instant::now();
        while !cond() {
            if t.elapsed() > Duration::from_secs(40) {
                panic!("waited 40s for {what}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        let t = Instant::now();
        while !self.log().contains(needle) {
            if t.elapsed() > Duration::from_secs(30) {
                panic!("log never said {needle:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Worker pids by program name (children of master).
    pub fn workers(&self, program: &str) -> Vec<i32> {
        children(self.master_pid() as i32, program)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let t = Instant::now();
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if t.elapsed() > Duration::from_secs(20) {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        let pid = self.child.as_ref().map(|c| c.id() as i32);
        let workers: Vec<i32> = pid.map(|p| children(p, "")).unwrap_or_default();
        self.stop();
        for w in workers {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(w),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Children of `parent` whose argv[0] is `program` (any when empty).
pub fn children(parent: i32, program: &str) -> Vec<i32> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Field 4 (after the parenthesised name) is the parent pid.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r.to_string()) else {
            continue;
        };
        let ppid: i32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(-1);
        if ppid != parent {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or(&[]);
        if program.is_empty() || String::from_utf8_lossy(argv0).ends_with(program) {
            v.push(pid);
        }
    }
    v
}

/// A TCP connection to 127.0.0.1:`port` from `src`, another address of
/// the loopback network (smtpd sees a client other than 127.0.0.1).
pub fn connect_from(src: IpAddr, port: u16) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    let IpAddr::V4(src) = src else {
        panic!("{src}: an IPv4 loopback address");
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(src, 0))).expect("bind");
    connect(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
    )
    .expect("connect");
    TcpStream::from(fd)
}

/// The name /etc/hosts gives `ip`, as smtpd reads it (the first name of
/// the first line with the address), if any.
pub fn hosts_name(ip: IpAddr) -> Option<String> {
    let text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let addr: IpAddr = f.next()?.parse().ok()?;
            (addr == ip).then(|| f.next().map(str::to_string))?
        })
}

/// How smtpd names a client on 127.0.0.1 in its logs: confirmed by
/// /etc/hosts (`localhost[127.0.0.1]` on most systems; the tests' name
/// servers know no name), else `unknown[127.0.0.1]`.
pub fn local_client() -> String {
    format!("{}[127.0.0.1]", local_name())
}

/// The name part of `local_client`, as the Received: header has it.
pub fn local_name() -> String {
    hosts_name(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap_or_else(|| "unknown".into())
}

/// A minimal SMTP client that checks every reply code; replies are read
/// with proto's client-side reader (the one posthorn-smtp uses).
pub struct Smtp {
    r: TcpStream,
    replies: proto::smtp::client::ReplyReader,
    w: TcpStream,
}

impl Smtp {
    pub fn connect(port: u16) -> Smtp {
        Smtp::greeted(TcpStream::connect(("127.0.0.1", port)).expect("connect"))
    }

    /// Connect from the loopback address `src` (any of 127.0.0.0/8).
    pub fn connect_from(src: IpAddr, port: u16) -> Smtp {
        Smtp::greeted(connect_from(src, port))
    }

    /// A connection whose 220 is read.
    pub fn greeted(s: TcpStream) -> Smtp {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut c = Smtp {
            r: s.try_clone().unwrap(),
            replies: proto::smtp::client::ReplyReader::new(),
            w: s,
        };
        c.expect(220);
        c
    }

    /// Read one (possibly multi-line) reply: (code, its lines as sent,
    /// without CRLF).
    pub fn reply(&mut self) -> (u16, Vec<String>) {
        let mut buf = [0u8; 4096];
        let r = loop {
            if let Some(r) = self.replies.next_reply() {
                break r.expect("a well-formed reply");
            }
            let n = self.r.read(&mut buf).expect("read reply");
            assert!(n > 0, "server closed the connection before a whole reply");
            self.replies.feed(&buf[..n]);
        };
        let last = r.lines.len().saturating_sub(1);
        let lines = r
            .lines
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let sep = if i < last { '-' } else { ' ' };
                format!("{}{sep}{t}", r.code).trim_end().to_string()
            })
            .collect();
        (r.code, lines)
    }

    pub fn expect(&mut self, code: u16) -> Vec<String> {
        let (c, lines) = self.reply();
        assert_eq!(c, code, "reply {lines:?}");
        lines
    }

    pub fn send(&mut self, line: &str) {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    pub fn cmd(&mut self, line: &str, code: u16) -> Vec<String> {
        self.send(line);
        self.expect(code)
    }

    /// One whole transaction; returns the queue id.
    pub fn mail(&mut self, from: &str, to: &[&str], message: &[u8]) -> String {
        self.cmd(&format!("MAIL FROM:<{from}>"), 250);
        for t in to {
            self.cmd(&format!("RCPT TO:<{t}>"), 250);
        }
        self.cmd("DATA", 354);
        let mut wire = Vec::with_capacity(message.len() + 16);
        proto::smtp::client::dot_stuff(message, &mut wire);
        self.raw(&wire);
        let l = self.expect(250);
        l[0].rsplit(' ').next().unwrap().to_string()
    }
}

/// Remove the headers delivery adds (Return-Path, Delivered-To, smtpd's
/// Authentication-Results when there is one, Received, and their
/// continuation lines) from the top of a delivered file.
pub fn strip_trace(file: &[u8]) -> &[u8] {
    let mut i = 0;
    for name in [
        &b"Return-Path: "[..],
        b"Delivered-To: ",
        b"Authentication-Results: ",
        b"Received: ",
    ] {
        if name == b"Authentication-Results: " && !file[i..].starts_with(name) {
            continue;
        }
        assert!(
            file[i..].starts_with(name),
            "expected {:?} at byte {i}",
            String::from_utf8_lossy(name)
        );
        loop {
            i += file[i..]
                .iter()
                .position(|&b| b == b'\n')
                .expect("line end")
                + 1;
            if !matches!(file.get(i), Some(b' ' | b'\t')) {
                break;
            }
        }
    }
    &file[i..]
}

pub fn crlf_to_lf(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len());
    let mut i = 0;
    while i < m.len() {
        if m[i] == b'\r' && m.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(m[i]);
        i += 1;
    }
    out
}

pub fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

/// Complete queue files in a queue directory (not the empty, incomplete
/// ones smtpd reserves: mode 0600, no execute bit).
pub fn queue_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.metadata()
                .map(|m| m.permissions().mode() & 0o100 != 0)
                .unwrap_or(false)
        })
        .map(|e| e.path())
        .filter(|p| !p.to_string_lossy().ends_with(".tmp"))
        .collect()
}

/// Is the client program `name` installed? .ci/run installs every client the
/// suite uses, so a missing one fails the test (a test that passes because
/// its client is missing proves nothing), unless the developer set
/// POSTHORN_SKIP_MISSING_TOOLS=1, which skips with a line on stderr.
pub fn tool(name: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            d.join(name)
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    });
    if found {
        return true;
    }
    if std::env::var_os("POSTHORN_SKIP_MISSING_TOOLS").is_some() {
        eprintln!("{name} is not installed: skipped (POSTHORN_SKIP_MISSING_TOOLS)");
        return false;
    }
    panic!(
        "{name} is not installed: .ci/run installs it (set POSTHORN_SKIP_MISSING_TOOLS=1 to skip)"
    );
}

/// A line-oriented plain TCP client for text protocols (POP3, IMAP).
pub struct Lines {
    r: BufReader<TcpStream>,
    pub w: TcpStream,
}

impl Lines {
    pub fn connect(port: u16) -> Lines {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Lines {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    /// One line without its CRLF; panics on end of file.
    pub fn line(&mut self) -> String {
        let mut l = Vec::new();
        let n = self.r.read_until(b'\n', &mut l).expect("read a line");
        assert!(n > 0, "the server closed the connection");
        assert!(l.ends_with(b"\r\n"), "line without CRLF: {l:?}");
        l.truncate(l.len() - 2);
        String::from_utf8_lossy(&l).into_owned()
    }

    /// Bytes up to and including the terminating ".\r\n" of a multi-line
    /// response (after its first line).
    pub fn multiline(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        loop {
            let mut l = Vec::new();
            let n = self.r.read_until(b'\n', &mut l).expect("read");
            assert!(n > 0, "end of file inside a multi-line response");
            all.extend_from_slice(&l);
            if l == b".\r\n" {
                return all;
            }
        }
    }

    pub fn send(&mut self, line: &str) {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    }

    /// Send a line, return the first line of the reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(line);
        self.line()
    }

    /// End of file from the server (after it closed).
    pub fn eof(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0))
    }
}
