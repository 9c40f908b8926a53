//! Mail for other domains: submitted on 587, queued, handed by qmgr to
//! posthorn-smtp, sent to the relayhost: an SMTP sink this test runs on
//! loopback, which offers STARTTLS (with posthorn dev's certificate) and
//! answers each recipient as its name says: `later...` gets 450 the first
//! time, `nobody...` 550 5.1.1, `slow...` 250 after 8 s, `stall...` (the
//! first time) no reply to the message at all, the rest 250. What the sink receives must
//! be what was submitted apart from the trace headers; the 450 is retried
//! and delivered; the 550 comes back to the sender as a bounce with the
//! remote reply.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::harness::{read, Suite};

/// One message as the sink took it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) from: String,
    /// The MAIL FROM command as it came (its parameters: BODY=, SIZE=).
    mail: String,
    pub(crate) rcpts: Vec<String>,
    pub(crate) data: Vec<u8>,
    pub(crate) tls: bool,
    /// It came with BDAT (RFC 3030), not DATA.
    pub(crate) bdat: bool,
}

#[derive(Default)]
pub(crate) struct SinkState {
    pub(crate) tls: Option<Arc<ServerConfig>>,
    pub(crate) messages: Vec<Received>,
    /// `later...` recipients already answered 450.
    deferred_once: Vec<String>,
    /// A `stall...` message is being held without a reply.
    stalling: bool,
    stalled_once: bool,
    /// A `slow...` RCPT is waiting.
    slow_waiting: bool,
    /// Offer PIPELINING (RFC 2920): the client then sends MAIL, the RCPTs
    /// and DATA in one write.
    pipelining: bool,
    /// RCPT had come already when MAIL FROM was read (they were sent in
    /// one write).
    pipelined: bool,
    /// Connections accepted.
    connections: usize,
    /// Close the connection (without a word) after each message's 250.
    close_after_message: bool,
    /// How long a `slow...` RCPT waits (0: 8 s).
    slow_secs: u64,
    /// `slow...` RCPTs waiting now, and the most at once.
    slow_now: usize,
    slow_most: usize,
    /// Do not offer 8BITMIME (RFC 6152): a 7-bit server.
    pub(crate) no_8bitmime: bool,
    /// Offer CHUNKING (RFC 3030) and take BDAT.
    pub(crate) chunking: bool,
}

pub(crate) type Shared = Arc<Mutex<SinkState>>;

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// Start the sink: its port.
pub(crate) fn sink(state: Shared) -> u16 {
    sink_on(TcpListener::bind("127.0.0.1:0").unwrap(), state)
}

/// The sink on `l`.
fn sink_on(l: TcpListener, state: Shared) -> u16 {
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                let _ = session(conn, &state);
            });
        }
    });
    port
}

fn session(tcp: TcpStream, state: &Shared) -> std::io::Result<()> {
    state.lock().unwrap().connections += 1;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut r: BufReader<Box<dyn Stream>> = BufReader::new(Box::new(tcp.try_clone()?));
    let mut tcp = Some(tcp);
    let mut tls = false;
    let say = |r: &mut BufReader<Box<dyn Stream>>, s: &str| -> std::io::Result<()> {
        r.get_mut().write_all(s.as_bytes())?;
        r.get_mut().flush()
    };
    say(&mut r, "220 sink.example ESMTP\r\n")?;
    let mut from = String::new();
    let mut mail = String::new();
    let mut rcpts = Vec::new();
    let mut bdat_data = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            let (offer_tls, pipelining, no_8bitmime, chunking) = {
                let st = state.lock().unwrap();
                (
                    !tls && st.tls.is_some(),
                    st.pipelining,
                    st.no_8bitmime,
                    st.chunking,
                )
            };
            let mut reply = String::from("250-sink.example\r\n250-SIZE 10000000\r\n");
            if chunking {
                reply.push_str("250-CHUNKING\r\n");
            }
            if !no_8bitmime {
                reply.push_str("250-8BITMIME\r\n");
            }
            if pipelining {
                reply.push_str("250-PIPELINING\r\n");
            }
            if offer_tls {
                reply.push_str("250-STARTTLS\r\n");
            }
            reply.push_str("250 ENHANCEDSTATUSCODES\r\n");
            say(&mut r, &reply)?;
        } else if upper == "STARTTLS" {
            say(&mut r, "220 2.0.0 go ahead\r\n")?;
            let config = state.lock().unwrap().tls.clone().unwrap();
            let conn = ServerConnection::new(config).unwrap();
            let s = StreamOwned::new(conn, tcp.take().unwrap());
            r = BufReader::new(Box::new(s));
            tls = true;
        } else if let Some(a) = upper.strip_prefix("MAIL FROM:<") {
            from = line[11..11 + a.find('>').unwrap()].to_string();
            mail = line.to_string();
            if r.buffer().starts_with(b"RCPT TO:<") {
                state.lock().unwrap().pipelined = true;
            }
            rcpts.clear();
            say(&mut r, "250 2.1.0 Ok\r\n")?;
        } else if upper.starts_with("RCPT TO:<") {
            let to = line[9..line.find('>').unwrap()].to_string();
            if to.starts_with("slow") {
                let secs = {
                    let mut st = state.lock().unwrap();
                    st.slow_waiting = true;
                    st.slow_now += 1;
                    st.slow_most = st.slow_most.max(st.slow_now);
                    if st.slow_secs == 0 {
                        8
                    } else {
                        st.slow_secs
                    }
                };
                std::thread::sleep(Duration::from_secs(secs));
                state.lock().unwrap().slow_now -= 1;
            }
            let mut st = state.lock().unwrap();
            if to.starts_with("nobody") {
                say(
                    &mut r,
                    &format!("550 5.1.1 <{to}>: Recipient address rejected: User unknown\r\n"),
                )?;
            } else if to.starts_with("later") && !st.deferred_once.contains(&to) {
                st.deferred_once.push(to.clone());
                say(&mut r, &format!("450 4.2.0 <{to}>: try again later\r\n"))?;
            } else {
                rcpts.push(to);
                say(&mut r, "250 2.1.5 Ok\r\n")?;
            }
        } else if let Some(args) = upper.strip_prefix("BDAT ") {
            // RFC 3030: BDAT size [LAST], then exactly size octets.
            let mut words = args.split_whitespace();
            let size: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            let last = words.next() == Some("LAST");
            let mut chunk = vec![0u8; size];
            r.read_exact(&mut chunk)?;
            bdat_data.extend_from_slice(&chunk);
            if !last {
                say(&mut r, "250 2.0.0 chunk taken\r\n")?;
                continue;
            }
            state.lock().unwrap().messages.push(Received {
                from: from.clone(),
                mail: mail.clone(),
                rcpts: rcpts.clone(),
                data: std::mem::take(&mut bdat_data),
                tls,
                bdat: true,
            });
            say(&mut r, "250 2.0.0 Ok: queued as SINK1\r\n")?;
        } else if upper == "DATA" {
            say(&mut r, "354 End data with <CR><LF>.<CR><LF>\r\n")?;
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                r.read_until(b'\n', &mut l)?;
                if l == b".\r\n" {
                    break;
                }
                let l = if l.starts_with(b"..") {
                    &l[1..]
                } else {
                    &l[..]
                };
                data.extend_from_slice(l);
            }
            if rcpts.iter().any(|r| r.starts_with("stall")) {
                let mut st = state.lock().unwrap();
                if !st.stalled_once {
                    st.stalled_once = true;
                    st.stalling = true;
                    drop(st);
                    // Hold the reply; the test kills posthorn-smtp now.
                    std::thread::sleep(Duration::from_secs(20));
                    return Ok(());
                }
            }
            let close = {
                let mut st = state.lock().unwrap();
                st.messages.push(Received {
                    from: from.clone(),
                    mail: mail.clone(),
                    rcpts: rcpts.clone(),
                    data,
                    tls,
                    bdat: false,
                });
                st.close_after_message
            };
            say(&mut r, "250 2.0.0 Ok: queued as SINK1\r\n")?;
            if close {
                return Ok(());
            }
        } else if upper == "QUIT" {
            say(&mut r, "221 2.0.0 Bye\r\n")?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            say(&mut r, "250 2.0.0 Ok\r\n")?;
        } else {
            say(&mut r, "502 5.5.2 what?\r\n")?;
        }
    }
}

fn client(name: &str) -> String {
    format!("{}/../tests/clients/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn submitted_mail_for_other_domains_goes_to_the_relayhost() {
    let state: Shared = Arc::default();
    let port = sink(Arc::clone(&state));
    let s = Suite::start(
        "outbound",
        &[],
        &[
            &format!("relayhost=[127.0.0.1]:{port}"),
            "minimal_backoff_time=1s",
            "maximal_backoff_time=2s",
            "queue_run_delay=1s",
        ],
    );
    let tls = rustls_config(&s);
    {
        let mut st = state.lock().unwrap();
        st.tls = Some(tls);
        st.pipelining = true;
    }

    let out = std::process::Command::new("python3")
        .arg(client("smtp_submit.py"))
        .args(["starttls", &(2587 + s.offset).to_string()])
        .arg(s.dir.join("tls/ca.pem"))
        .args([
            "demo@example.test",
            "demo",
            "demo@example.test",
            "to the world",
        ])
        .args([
            "bob@elsewhere.example",
            "later@elsewhere.example",
            "nobody@elsewhere.example",
        ])
        .output()
        .expect("python3 runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("sent "),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = said.trim().trim_start_matches("sent ").to_string();

    // bob at once; later on the retry; both over TLS, the message as
    // submitted under posthorn's Received: header.
    wait_for(&state, &s, "bob@elsewhere.example");
    let got = wait_for(&state, &s, "later@elsewhere.example");
    assert!(
        state.lock().unwrap().pipelined,
        "MAIL and RCPT in one write (PIPELINING offered)"
    );
    for m in &got {
        assert_eq!(m.from, "demo@example.test");
        assert!(m.tls, "STARTTLS used when offered");
        let text = String::from_utf8_lossy(&m.data);
        assert!(
            text.starts_with("Received: from client.example.org"),
            "{text}"
        );
        assert!(text.contains(" with ESMTPSA id "), "{text}");
        let body = text.split_once("\r\nFrom: ").map(|(_, b)| b).unwrap_or("");
        assert!(
            body.starts_with("<demo@example.test>\r\nTo: <bob@elsewhere.example>\r\nSubject: to the world\r\nDate: "),
            "{text}"
        );
        assert!(
            body.ends_with("\r\n\r\nsubmitted with smtplib\r\n"),
            "{text}"
        );
    }
    s.wait_log(&format!(
        "{id}: to=<bob@elsewhere.example>, relay=127.0.0.1[127.0.0.1]:{port}, "
    ));
    s.wait_log("dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as SINK1)");
    s.wait_log(&format!(
        "Untrusted TLS connection established to 127.0.0.1[127.0.0.1]:{port}: TLSv1.3"
    ));
    s.wait_log("status=deferred (host said: 450 4.2.0 <later@elsewhere.example>: try again later (in reply to RCPT TO))");

    // nobody: a bounce to demo with the remote reply.
    let bounce = bounce_for(&s, "nobody@elsewhere.example");
    assert!(bounce.contains("Status: 5.1.1"), "{bounce}");
    assert!(
        bounce.contains(
            "550 5.1.1 <nobody@elsewhere.example>: Recipient address rejected: User unknown"
        ),
        "{bounce}"
    );
    // Each recipient once at the sink.
    let got = state.lock().unwrap().messages.clone();
    let mut to: Vec<String> = got.iter().flat_map(|m| m.rcpts.clone()).collect();
    to.sort();
    assert_eq!(to, ["bob@elsewhere.example", "later@elsewhere.example"]);
}

#[test]
fn mx_hosts_in_preference_order_implicit_mx_null_mx_and_no_such_domain() {
    use crate::dns::{serve, Rr, Zone};
    let state: Shared = Arc::default();
    let port = sink(Arc::clone(&state));
    let zone: Zone = Arc::default();
    {
        let mut z = zone.lock().unwrap();
        // far.example: the first MX takes no connection, the second is the sink.
        z.insert(
            "far.example".into(),
            vec![
                Rr::Mx(20, "mx2.far.example".into()),
                Rr::Mx(10, "mx1.far.example".into()),
            ],
        );
        z.insert(
            "mx1.far.example".into(),
            vec![Rr::Addr("127.0.0.2".parse().unwrap())],
        );
        z.insert(
            "mx2.far.example".into(),
            vec![Rr::Addr("127.0.0.1".parse().unwrap())],
        );
        // bare.example: no MX, an address (the implicit MX, RFC 5321 5.1).
        z.insert(
            "bare.example".into(),
            vec![Rr::Addr("127.0.0.1".parse().unwrap())],
        );
        // nomail.example: RFC 7505's null MX.
        z.insert("nomail.example".into(), vec![Rr::Mx(0, String::new())]);
    }
    let dns = serve(Arc::clone(&zone));
    let s = Suite::start(
        "outbound-mx",
        &[],
        &[
            &format!("dns_servers={dns}"),
            &format!("smtp_tcp_port={port}"),
            "mynetworks=127.0.0.0/8",
        ],
    );
    let mut c = crate::harness::Smtp::connect(s.port);
    c.cmd("EHLO trusted.example.org", 250);
    let id = c.mail(
        "demo@example.test",
        &[
            "a@far.example",
            "b@bare.example",
            "c@nomail.example",
            "d@nowhere.example",
        ],
        b"Subject: mx\r\n\r\nx\r\n",
    );
    wait_for(&state, &s, "a@far.example");
    wait_for(&state, &s, "b@bare.example");
    s.wait_log(&format!(
        "{id}: to=<a@far.example>, relay=mx2.far.example[127.0.0.1]:{port}, "
    ));
    s.wait_log(&format!(
        "{id}: to=<b@bare.example>, relay=bare.example[127.0.0.1]:{port}, "
    ));
    s.wait_log("dsn=5.1.10, status=bounced (Domain nomail.example does not accept mail (nullMX))");
    s.wait_log("dsn=5.1.2, status=bounced (Host or domain name not found. Name service error for name=nowhere.example type=MX: Host not found)");
    // The two bounces reach the sender.
    s.wait_until("the bounces for c@ and d@", || {
        let all: String = s
            .new_mail("demo@example.test")
            .iter()
            .map(|f| String::from_utf8_lossy(&read(f)).into_owned())
            .collect();
        all.contains("Final-Recipient: rfc822; c@nomail.example")
            && all.contains("Final-Recipient: rfc822; d@nowhere.example")
    });
}

/// Wait until the sink holds a message for `rcpt`: the messages it holds.
/// The bounce for `rcpt` in demo@example.test's Maildir (waited for).
fn bounce_for(s: &Suite, rcpt: &str) -> String {
    let needle = format!("Final-Recipient: rfc822; {rcpt}");
    let mut found = String::new();
    s.wait_until(&format!("the bounce for {rcpt}"), || {
        found = s
            .new_mail("demo@example.test")
            .into_iter()
            .map(|f| String::from_utf8_lossy(&read(&f)).into_owned())
            .find(|m| m.contains(&needle))
            .unwrap_or_default();
        !found.is_empty()
    });
    found
}

pub(crate) fn wait_for(state: &Shared, s: &Suite, rcpt: &str) -> Vec<Received> {
    let has = || {
        let st = state.lock().unwrap();
        st.messages
            .iter()
            .any(|m| m.rcpts.iter().any(|r| r == rcpt))
    };
    s.wait_until(&format!("mail for {rcpt} at the sink"), has);
    state.lock().unwrap().messages.clone()
}

#[test]
fn a_slow_destination_does_not_hold_up_another() {
    let state: Shared = Arc::default();
    let port = sink(Arc::clone(&state));
    let s = Suite::start(
        "outbound-slow",
        &[],
        &[
            &format!("relayhost=[127.0.0.1]:{port}"),
            "mynetworks=127.0.0.0/8",
        ],
    );
    let mut c = crate::harness::Smtp::connect(s.port);
    c.cmd("EHLO trusted.example.org", 250);
    c.mail(
        "a@example.org",
        &["slow@slow.example"],
        b"Subject: slow\r\n\r\nx\r\n",
    );
    // The slow one is in its RCPT wait when the quick one comes.
    s.wait_until("the slow RCPT", || state.lock().unwrap().slow_waiting);
    let queued = Instant::now();
    c.mail(
        "a@example.org",
        &["quick@fast.example"],
        b"Subject: quick\r\n\r\nx\r\n",
    );
    let got = wait_for(&state, &s, "quick@fast.example");
    assert!(
        !got.iter()
            .any(|m| m.rcpts.iter().any(|r| r == "slow@slow.example")),
        "the quick message waited for the slow one ({:?})",
        queued.elapsed()
    );
    wait_for(&state, &s, "slow@slow.example");
}

#[test]
fn an_smtp_agent_killed_mid_message_loses_nothing() {
    let state: Shared = Arc::default();
    let port = sink(Arc::clone(&state));
    let s = Suite::start(
        "outbound-kill",
        &[],
        &[
            &format!("relayhost=[127.0.0.1]:{port}"),
            "mynetworks=127.0.0.0/8",
            "minimal_backoff_time=1s",
            "maximal_backoff_time=2s",
            "queue_run_delay=1s",
        ],
    );
    let mut c = crate::harness::Smtp::connect(s.port);
    c.cmd("EHLO trusted.example.org", 250);
    let id = c.mail(
        "a@example.org",
        &["stall@far.example"],
        b"Subject: stall\r\n\r\nx\r\n",
    );
    s.wait_until("the stalled message", || state.lock().unwrap().stalling);
    // The whole message is at the sink, its reply not yet: kill the agent.
    let agents = s.workers("posthorn-smtp");
    assert!(!agents.is_empty());
    for pid in agents {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    // Retried and delivered once; qmgr saw it sent.
    let got = wait_for(&state, &s, "stall@far.example");
    assert_eq!(got.len(), 1, "{got:?}");
    s.wait_log(&format!(
        "{id}: to=<stall@far.example>, relay=127.0.0.1[127.0.0.1]:{port}, "
    ));
    s.wait_log(&format!("{id}: removed"));
}

#[test]
fn flush_tries_deferred_mail_at_once() {
    // A port with nothing on it yet: the first try is refused, and the
    // next one would be an hour later.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Suite::start(
        "outbound-flush",
        &[],
        &[
            &format!("relayhost=[127.0.0.1]:{port}"),
            "mynetworks=127.0.0.0/8",
            "minimal_backoff_time=1h",
            "maximal_backoff_time=2h",
            "queue_run_delay=1h",
        ],
    );
    let mut c = crate::harness::Smtp::connect(s.port);
    c.cmd("EHLO trusted.example.org", 250);
    let id = c.mail(
        "a@example.org",
        &["x@far.example"],
        b"Subject: flush\r\n\r\nx\r\n",
    );
    s.wait_log(&format!(
        "{id}: to=<x@far.example>, relay=127.0.0.1:{port}, delay="
    ));
    s.wait_log(&format!(
        "dsn=4.4.1, status=deferred (connect to 127.0.0.1:{port}: Connection refused"
    ));
    // Now a server is there; flush instead of waiting the hour.
    let state: Shared = Arc::default();
    sink_on(
        TcpListener::bind(("127.0.0.1", port)).unwrap(),
        Arc::clone(&state),
    );
    s.flush();
    s.wait_log("flush: every deferred message is tried now");
    wait_for(&state, &s, "x@far.example");
    s.wait_log(&format!("{id}: removed"));
}

/// A server without 8BITMIME (RFC 6152 3): a message with an 8-bit body
/// reaches it as 7-bit MIME (MAIL FROM without BODY=, no byte above 127,
/// the 8-bit parts quoted-printable and base64) that decodes, with
/// Python's email package, to what was sent; one with an 8-bit header
/// cannot be converted and comes back to its sender with the reason.
#[test]
fn eight_bit_mail_is_converted_to_7bit_for_a_server_without_8bitmime() {
    let state: Shared = Arc::default();
    state.lock().unwrap().no_8bitmime = true;
    let port = sink(Arc::clone(&state));
    let s = Suite::start(
        "outbound-7bit",
        &[],
        &[
            &format!("relayhost=[127.0.0.1]:{port}"),
            "mynetworks=127.0.0.0/8",
        ],
    );
    let text = "Gr\u{fc}\u{df}e aus K\u{f6}ln \u{2014} na\u{ef}ve caf\u{e9} \u{2615}\r\n= and a tab\t\r\nlast line";
    let data: Vec<u8> = (0..=255u8).rev().collect();
    let mut message = format!(
        "From: <demo@example.test>\r\nTo: <bob@far.example>\r\nSubject: 8-bit\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         {text}\r\n--b1\r\nContent-Type: application/octet-stream\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n"
    )
    .into_bytes();
    message.extend_from_slice(&data);
    message.extend_from_slice(b"\r\n--b1--\r\n");
    let mut c = crate::harness::Smtp::connect(s.port);
    c.cmd("EHLO trusted.example.org", 250);
    let id = c.mail("demo@example.test", &["bob@far.example"], &message);
    let header_8bit = c.mail(
        "demo@example.test",
        &["carol@far.example"],
        "From: <demo@example.test>\r\nSubject: Gr\u{fc}\u{df}e\r\n\r\nplain body\r\n".as_bytes(),
    );

    let got = wait_for(&state, &s, "bob@far.example");
    let m = got.iter().find(|m| m.rcpts == ["bob@far.example"]).unwrap();
    assert!(!m.mail.to_ascii_uppercase().contains("BODY="), "{}", m.mail);
    assert!(m.data.is_ascii(), "{}", String::from_utf8_lossy(&m.data));
    assert!(m.data.split(|&b| b == b'\n').all(|l| l.len() <= 1000));
    let sent = String::from_utf8_lossy(&m.data).into_owned();
    assert!(
        sent.contains("charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"),
        "{sent}"
    );
    assert!(
        sent.contains("octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"),
        "{sent}"
    );
    // An independent MIME reader: each leaf's encoding and decoded bytes.
    let mut py = std::process::Command::new("python3")
        .args([
            "-c",
            "import email, sys\n\
             m = email.message_from_bytes(sys.stdin.buffer.read())\n\
             for p in m.walk():\n\
             \x20   if not p.is_multipart():\n\
             \x20       print(p['Content-Transfer-Encoding'], p.get_payload(decode=True).hex(), len(p.defects))\n\
             print('defects', len(m.defects))\n",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    py.stdin.take().unwrap().write_all(&m.data).unwrap();
    let out = py.wait_with_output().unwrap();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "quoted-printable {} 0\nbase64 {} 0\ndefects 0\n",
            hex(text.as_bytes()),
            hex(&data)
        )
    );
    s.wait_log(&format!(
        "{id}: to=<bob@far.example>, relay=127.0.0.1[127.0.0.1]:{port}, "
    ));

    // The 8-bit header: bounced with the reason, nothing sent.
    s.wait_log(&format!(
        "{header_8bit}: to=<carol@far.example>, relay=127.0.0.1[127.0.0.1]:{port}, "
    ));
    s.wait_log("dsn=5.6.3, status=bounced (8-bit content for a server without 8BITMIME: 8-bit text in a message header (Subject:))");
    let bounce = bounce_for(&s, "carol@far.example");
    assert!(bounce.contains("Status: 5.6.3"), "{bounce}");
    assert!(
        bounce.contains("8-bit text in a message header"),
        "{bounce}"
    );
    // Bounced before MAIL FROM: the sink never had it.
    assert!(!state
        .lock()
        .unwrap()
        .messages
        .iter()
        .any(|m| m.rcpts.iter().any(|r| r == "carol@far.example")));
}

/// smtp_tls_security_level: encrypt sends nothing to a server without
/// STARTTLS; verify checks the certificate against smtp_tls_CAfile (the
/// dev CA: delivered, "Verified"; the system's CAs: not trusted, deferred).
#[test]
fn tls_levels_encrypt_and_verify() {
    // encrypt, a server that offers no STARTTLS: deferred, nothing sent.
    let plain: Shared = Arc::default();
    let port = sink(Arc::clone(&plain));
    let s = Suite::start(
        "outbound-encrypt",
        &[],
        &[
            &format!("relayhost=[127.0.0.1]:{port}"),
            "mynetworks=127.0.0.0/8",
            "smtp_tls_security_level=encrypt",
        ],
    );
    let mut c = crate::harness::Smtp::connect(s.port);
    c.cmd("EHLO trusted.example.org", 250);
    let id = c.mail(
        "a@example.org",
        &["x@far.example"],
        b"Subject: e\r\n\r\nx\r\n",
    );
    s.wait_log(&format!(
        "{id}: to=<x@far.example>, relay=127.0.0.1:{port}, delay="
    ));
    s.wait_log(&format!(
        "dsn=4.4.1, status=deferred (TLS is required, but was not offered by host 127.0.0.1:{port})"
    ));
    assert!(plain.lock().unwrap().messages.is_empty());
    drop(s);

    // verify against the dev CA (the sink has a certificate of it for
    // 127.0.0.1), then against the system's CAs.
    for (trusted, name) in [(true, "outbound-verify"), (false, "outbound-verify-no")] {
        let state: Shared = Arc::default();
        let port = sink(Arc::clone(&state));
        let mut opts = vec![
            format!("relayhost=[127.0.0.1]:{port}"),
            "mynetworks=127.0.0.0/8".to_string(),
            "smtp_tls_security_level=verify".to_string(),
        ];
        if !trusted {
            opts.push("smtp_tls_CAfile=/etc/ssl/certs/ca-certificates.crt".into());
        }
        let base =
            std::env::temp_dir().join(format!("posthorn-suite-{}-{name}", std::process::id()));
        if trusted {
            opts.push(format!(
                "smtp_tls_CAfile={}",
                base.join("tls/ca.pem").display()
            ));
        }
        let o: Vec<&str> = opts.iter().map(String::as_str).collect();
        let s = Suite::start(name, &[], &o);
        state.lock().unwrap().tls = Some(rustls_config(&s));
        let mut c = crate::harness::Smtp::connect(s.port);
        c.cmd("EHLO trusted.example.org", 250);
        let id = c.mail(
            "a@example.org",
            &["v@far.example"],
            b"Subject: v\r\n\r\nx\r\n",
        );
        if trusted {
            let got = wait_for(&state, &s, "v@far.example");
            assert!(got[0].tls);
            s.wait_log(&format!(
                "Verified TLS connection established to 127.0.0.1[127.0.0.1]:{port}: TLSv1.3"
            ));
            s.wait_log(&format!(
                "{id}: to=<v@far.example>, relay=127.0.0.1[127.0.0.1]:{port}, "
            ));
        } else {
            s.wait_log(&format!(
                "{id}: to=<v@far.example>, relay=127.0.0.1:{port}, "
            ));
            s.wait_log("status=deferred (TLS handshake with 127.0.0.1:");
            assert!(state.lock().unwrap().messages.is_empty());
        }
    }
}

pub(crate) fn rustls_config(s: &Suite) -> Arc<ServerConfig> {
    common::tls::server_config(&s.dir.join("tls/cert.pem"), &s.dir.join("tls/key.pem"))
        .expect("the dev certificate")
}

#[test]
fn a_connection_is_reused_for_the_next_message_to_its_next_hop() {
    let state: Shared = Arc::default();
    let port = sink(Arc::clone(&state));
    let s = Suite::start(
        "outbound-reuse",
        &[],
        &[
            &format!("relayhost=[127.0.0.1]:{port}"),
            "mynetworks=127.0.0.0/8",
            "smtp_connection_cache_time_limit=60s",
            "smtp_connection_reuse_count_limit=2",
        ],
    );
    let mut c = crate::harness::Smtp::connect(s.port);
    c.cmd("EHLO trusted.example.org", 250);
    // One after the other (each at the sink before the next is sent), to
    // domains of one next hop: the first two share a connection, the
    // third needs a new one (reuse count limit 2).
    for (n, to) in ["one@a.example", "two@b.example", "three@a.example"]
        .iter()
        .enumerate()
    {
        c.mail(
            "a@example.org",
            &[to],
            format!("Subject: {n}\r\n\r\nx\r\n").as_bytes(),
        );
        wait_for(&state, &s, to);
    }
    assert_eq!(state.lock().unwrap().connections, 2, "{}", s.log());

    // A kept connection the server has closed is not used: the message
    // goes over a new one. (four takes the second connection's last
    // turn; five opens a third, which the sink closes after it; six finds
    // it closed and opens a fourth, without trying the dead one.)
    state.lock().unwrap().close_after_message = true;
    for to in ["four@a.example", "five@a.example", "six@a.example"] {
        c.mail("a@example.org", &[to], b"Subject: closed\r\n\r\nx\r\n");
        wait_for(&state, &s, to);
    }
    let st = state.lock().unwrap();
    assert_eq!(st.messages.len(), 6);
    assert_eq!(st.connections, 4, "{}", s.log());
    assert!(!s.log().contains("not reused"), "{}", s.log());
}

#[test]
fn transport_maps_route_bounce_and_are_read_again_when_changed() {
    let state: Shared = Arc::default();
    let port = sink(Arc::clone(&state));
    let dir = std::env::temp_dir().join(format!("posthorn-transport-suite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let table = dir.join("transport");
    std::fs::write(
        &table,
        format!(
            "# routes of the test\n\
             routed.example     smtp:[127.0.0.1]:{port}\n\
             .sub.example       relay:[127.0.0.1]:{port}\n\
             gone.example       error:5.1.6 mailbox moved to new.example\n\
             novalue\n"
        ),
    )
    .unwrap();
    // No relayhost, and the test DNS server knows none of these names:
    // only the table can route them.
    let s = Suite::start(
        "outbound-transport",
        &[],
        &[
            &format!("transport_maps=texthash:{}", table.display()),
            "mynetworks=127.0.0.0/8",
        ],
    );
    let mut c = crate::harness::Smtp::connect(s.port);
    c.cmd("EHLO trusted.example.org", 250);
    c.mail(
        "demo@example.test",
        &["a@routed.example", "b@x.sub.example", "c@gone.example"],
        b"Subject: routes\r\n\r\nx\r\n",
    );
    wait_for(&state, &s, "a@routed.example");
    wait_for(&state, &s, "b@x.sub.example");
    s.wait_log(&format!(
        "{}, line 5: expected format: key whitespace value",
        table.display()
    ));
    // gone.example: bounced at once with the table's text.
    let bounce = bounce_for(&s, "c@gone.example");
    assert!(bounce.contains("Status: 5.1.6"), "{bounce}");
    assert!(bounce.contains("mailbox moved to new.example"), "{bounce}");

    // The table changes: gone.example is routed now, no reload needed.
    // (Replaced whole, by rename; qmgr looks at most once a second.)
    let new = dir.join("transport.new");
    std::fs::write(&new, format!("gone.example smtp:[127.0.0.1]:{port}\n")).unwrap();
    std::fs::rename(&new, &table).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    c.mail(
        "demo@example.test",
        &["d@gone.example"],
        b"Subject: back\r\n\r\nx\r\n",
    );
    wait_for(&state, &s, "d@gone.example");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_destination_gets_at_most_its_concurrency_limit() {
    let slow: Shared = Arc::default();
    slow.lock().unwrap().slow_secs = 3;
    let fast: Shared = Arc::default();
    let (slow_port, fast_port) = (sink(Arc::clone(&slow)), sink(Arc::clone(&fast)));
    let dir = std::env::temp_dir().join(format!("posthorn-limit-suite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let table = dir.join("transport");
    std::fs::write(
        &table,
        format!("slow.example smtp:[127.0.0.1]:{slow_port}\nfast.example smtp:[127.0.0.1]:{fast_port}\n"),
    )
    .unwrap();
    let s = Suite::start(
        "outbound-limit",
        &[],
        &[
            &format!("transport_maps=texthash:{}", table.display()),
            "mynetworks=127.0.0.0/8",
            "smtp_destination_concurrency_limit=1",
        ],
    );
    let mut c = crate::harness::Smtp::connect(s.port);
    c.cmd("EHLO trusted.example.org", 250);
    // Three messages for the slow destination (dev has 4 smtp agents),
    // then one for another: the slow ones go one at a time, the other
    // passes them.
    for n in 1..=3 {
        c.mail(
            "a@example.org",
            &[&format!("slow{n}@slow.example")],
            b"Subject: slow\r\n\r\nx\r\n",
        );
    }
    s.wait_until("the first slow RCPT", || slow.lock().unwrap().slow_waiting);
    c.mail(
        "a@example.org",
        &["quick@fast.example"],
        b"Subject: quick\r\n\r\nx\r\n",
    );
    wait_for(&fast, &s, "quick@fast.example");
    assert!(
        slow.lock().unwrap().messages.len() < 3,
        "the quick message waited for the slow destination"
    );
    for n in 1..=3 {
        wait_for(&slow, &s, &format!("slow{n}@slow.example"));
    }
    assert_eq!(slow.lock().unwrap().slow_most, 1, "{}", s.log());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn smtp_tls_policy_maps_set_the_level_per_next_hop() {
    // Two sinks offering STARTTLS and one without; the default level is
    // may. The table: none for one sink (no TLS although offered), encrypt
    // for the one without STARTTLS (deferred, nothing sent), and nothing
    // for the third (may: TLS).
    let (none, enc, may): (Shared, Shared, Shared) = Default::default();
    let (p_none, p_enc, p_may) = (
        sink(Arc::clone(&none)),
        sink(Arc::clone(&enc)),
        sink(Arc::clone(&may)),
    );
    let dir = std::env::temp_dir().join(format!("posthorn-tlspolicy-suite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let transport = dir.join("transport");
    let policy = dir.join("tls_policy");
    std::fs::write(
        &transport,
        format!(
            "none.example smtp:[127.0.0.1]:{p_none}\n\
             enc.example smtp:[127.0.0.1]:{p_enc}\n\
             may.example smtp:[127.0.0.1]:{p_may}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        &policy,
        format!(
            "[127.0.0.1]:{p_none} none\n\
             [127.0.0.1]:{p_enc} encrypt\n\
             [127.0.0.1]:{p_may} fingerprint\n"
        ),
    )
    .unwrap();
    let s = Suite::start(
        "outbound-tlspolicy",
        &[],
        &[
            &format!("transport_maps=texthash:{}", transport.display()),
            &format!("smtp_tls_policy_maps=texthash:{}", policy.display()),
            "mynetworks=127.0.0.0/8",
        ],
    );
    let tls = rustls_config(&s);
    none.lock().unwrap().tls = Some(Arc::clone(&tls));
    may.lock().unwrap().tls = Some(tls);
    let mut c = crate::harness::Smtp::connect(s.port);
    c.cmd("EHLO trusted.example.org", 250);
    let id = c.mail(
        "a@example.org",
        &["x@enc.example"],
        b"Subject: e\r\n\r\nx\r\n",
    );
    c.mail(
        "a@example.org",
        &["x@none.example"],
        b"Subject: n\r\n\r\nx\r\n",
    );
    c.mail(
        "a@example.org",
        &["x@may.example"],
        b"Subject: m\r\n\r\nx\r\n",
    );
    assert!(
        !wait_for(&none, &s, "x@none.example")[0].tls,
        "none: no TLS"
    );
    assert!(
        wait_for(&may, &s, "x@may.example")[0].tls,
        "no usable entry: may"
    );
    s.wait_log(&format!(
        "{id}: to=<x@enc.example>, relay=127.0.0.1:{p_enc}, delay="
    ));
    s.wait_log(&format!(
        "status=deferred (TLS is required, but was not offered by host 127.0.0.1:{p_enc})"
    ));
    s.wait_log(&format!(
        "{}, line 3: TLS level fingerprint is not supported yet",
        policy.display()
    ));
    assert!(enc.lock().unwrap().messages.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn chunking_sends_the_message_as_bdat_without_dot_stuffing() {
    let state: Shared = Arc::default();
    {
        let mut st = state.lock().unwrap();
        st.chunking = true;
        st.pipelining = true;
    }
    let port = sink(Arc::clone(&state));
    let s = Suite::start(
        "outbound-bdat",
        &[],
        &[
            &format!("relayhost=[127.0.0.1]:{port}"),
            "mynetworks=127.0.0.0/8",
        ],
    );
    let mut c = crate::harness::Smtp::connect(s.port);
    c.cmd("EHLO trusted.example.org", 250);
    let body = b"Subject: chunks\r\n\r\n.a line that starts with a dot\r\n..two\r\n.\r\nend\r\n";
    c.mail("a@example.org", &["x@far.example"], body);
    let got = wait_for(&state, &s, "x@far.example");
    assert!(got[0].bdat, "BDAT used when CHUNKING is offered");
    assert!(
        got[0]
            .data
            .ends_with(b"\r\n\r\n.a line that starts with a dot\r\n..two\r\n.\r\nend\r\n"),
        "byte for byte, dots not stuffed: {}",
        String::from_utf8_lossy(&got[0].data)
    );
    // smtpd's Authentication-Results (kept in the queue file's trailer)
    // goes out first.
    assert!(
        got[0]
            .data
            .starts_with(b"Authentication-Results: mail.example.test;\r\n\tspf=none smtp.mailfrom=a@example.org;\r\n"),
        "{}",
        String::from_utf8_lossy(&got[0].data)
    );
    s.wait_log("status=sent (250 2.0.0 Ok: queued as SINK1)");
}

#[test]
fn an_undeliverable_bounce_goes_to_postmaster_once_and_never_loops() {
    let state: Shared = Arc::default();
    let port = sink(Arc::clone(&state));
    let s = Suite::start(
        "outbound-double",
        &[],
        &[
            &format!("relayhost=[127.0.0.1]:{port}"),
            "mynetworks=127.0.0.0/8",
        ],
    );
    let mut c = crate::harness::Smtp::connect(s.port);
    c.cmd("EHLO trusted.example.org", 250);
    // A notification (null sender) the remote side refuses for good.
    let id = c.mail(
        "",
        &["nobody@elsewhere.example"],
        b"Subject: a bounce\r\n\r\nx\r\n",
    );
    s.wait_log(&format!("{id}: to=<nobody@elsewhere.example>"));
    let line = format!("{id}: postmaster non-delivery notification: ");
    s.wait_log(&line);
    let log = s.log();
    let notice: String = log
        .lines()
        .find_map(|l| l.split_once(&line).map(|(_, b)| b.trim().to_string()))
        .unwrap();
    // The notice to postmaster runs its course (delivered, or dropped if
    // it fails: its sender is double_bounce_sender); then nothing follows.
    s.wait_log(&format!("{notice}: removed"));
    let log = s.log();
    assert_eq!(
        log.matches("postmaster non-delivery notification").count(),
        1,
        "{log}"
    );
    assert!(
        !log.contains(&format!("{notice}: sender non-delivery")),
        "{log}"
    );
    assert!(
        log.contains(&format!("{notice}: from=<double-bounce@")),
        "{log}"
    );
}
