//! One SMTP client session: a message to one server, a verdict per
//! recipient.
//!
//! Owns the conversation (RFC 5321 3.3): the greeting, EHLO (HELO when the
//! server does not know EHLO), STARTTLS when offered and TLS is wanted
//! (then EHLO again, RFC 3207 4.2), the SIZE check (a message the server
//! would refuse is not sent, RFC 1870 6), MAIL FROM with SIZE, BODY=8BITMIME
//! and SMTPUTF8 as the message needs and the server offers, one RCPT per
//! recipient, DATA with the message dot-stuffed (or, when the server offers
//! CHUNKING, RFC 3030, one `BDAT size LAST` with the message as it is), QUIT. A timeout on every
//! step (PIPELINING when offered). Replies are read with
//! proto::smtp::client. Does not own which
//! server (route.rs), retrying (qmgr) or logging (lib.rs).
//!
//! Verdicts: 2xx sent, 4xx deferred, 5xx bounced, each with the server's
//! reply; a reply to MAIL FROM or DATA applies to every recipient still
//! standing. A failure before any verdict (no connection, a greeting other
//! than 220, a broken TLS handshake, the connection lost or timed out) is
//! a `Failure`: the caller tries the next address or defers. A message
//! with 8-bit content for a server without 8BITMIME is converted to 7-bit
//! (downgrade.rs) and sent without BODY=, or bounces (5.6.3) when it
//! cannot be; an address that needs SMTPUTF8 for one without it bounces
//! (5.6.7). Header fields the caller makes from the bytes to send
//! (`Message::stamp`: DKIM-Signature, an ARC set) go before the message,
//! counted in SIZE and BDAT; when it cannot make them, nothing is sent.
//!
//! Standards: RFC 5321, RFC 1870 (SIZE), RFC 3030 (CHUNKING), RFC 2920 (PIPELINING: MAIL, the
//! RCPTs and DATA in one write, their replies in order), RFC 3207 (STARTTLS), RFC 3463, RFC 6152
//! (8BITMIME), RFC 6531 (SMTPUTF8), RFC 3461 (DSN: to a server that offers
//! it, RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT as the sender gave
//! them, and ORCPT=rfc822;RECIPIENT for a recipient without one, as
//! Postfix does; UTF-8 in ENVID and ORCPT only under SMTPUTF8, RFC 6533
//! 3; a sent verdict says whether NOTIFY went on with the message (RFC
//! 3461 5.2), so qmgr knows whether to tell of "relayed").

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::dsn::{self, MessageDsn, RecipientDsn};
use common::ipc::Handoff;
use common::tls::TlsInfo;
use proto::smtp::client::{
    write_bdat, write_hello, write_mail, write_rcpt, write_simple, Capabilities, DotStuffer,
    MailOptions, ReplyReader, ServerReply,
};
use proto::smtp::xtext;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::downgrade;

/// The longest wait for the reply to QUIT.
const QUIT_WAIT: Duration = Duration::from_secs(5);

/// How a session runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// smtp_helo_name.
    pub helo_name: String,
    /// smtp_connect_timeout.
    pub connect_timeout: Duration,
    /// smtp_helo_timeout: the wait for each reply but the last.
    pub reply_timeout: Duration,
    /// smtp_data_done_timeout: the wait for the reply to the message.
    pub data_done_timeout: Duration,
    /// STARTTLS with this configuration when offered
    /// (smtp_tls_security_level).
    pub tls: Option<Arc<ClientConfig>>,
    /// No mail without TLS (encrypt, verify, secure).
    pub tls_required: bool,
    /// The level's name, for the log (`Untrusted` or `Verified`).
    pub tls_verified: bool,
    /// 8-bit mail for a server without 8BITMIME is converted to 7-bit
    /// (not disable_mime_output_conversion).
    pub mime_output_conversion: bool,
}

/// What became of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `handoff`: the server took NOTIFY on (it offered DSN) or not.
    Sent {
        dsn: String,
        text: String,
        handoff: Handoff,
    },
    Deferred {
        dsn: String,
        text: String,
    },
    Bounced {
        dsn: String,
        text: String,
    },
}

impl Verdict {
    /// From a server's reply: 2xx sent, 4xx deferred, else bounced.
    fn of(r: &ServerReply, what: &str) -> Verdict {
        let text = format!("host said: {r} (in reply to {what})");
        if r.is_positive() {
            Verdict::Sent {
                dsn: r.dsn(),
                text: r.to_string(),
                handoff: Handoff::Relayed,
            }
        } else if r.is_transient() {
            Verdict::Deferred { dsn: r.dsn(), text }
        } else {
            Verdict::Bounced { dsn: r.dsn(), text }
        }
    }
}

/// Why a session gave no verdicts.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("connect to {0}: {1}")]
    Connect(SocketAddr, io::Error),
    #[error("host refused to talk to me: {0}")]
    Greeting(ServerReply),
    #[error("TLS handshake with {0} failed: {1}")]
    Tls(SocketAddr, io::Error),
    #[error("TLS is required, but was not offered by host {0}")]
    TlsNotOffered(SocketAddr),
    #[error("lost connection with {addr} while {stage}: {err}")]
    Lost {
        addr: SocketAddr,
        stage: &'static str,
        err: io::Error,
    },
    #[error("cannot read queue file: {0}")]
    QueueFile(io::Error),
    #[error("protocol error with {addr} while {stage}: {why}")]
    Protocol {
        addr: SocketAddr,
        stage: &'static str,
        why: String,
    },
}

/// What a session did: a verdict per recipient, and the TLS it used.
#[derive(Debug)]
pub struct Outcome {
    pub verdicts: Vec<Verdict>,
    pub tls: Option<TlsInfo>,
}

/// The message to send.
pub struct Message<'a> {
    pub sender: &'a str,
    pub recipients: &'a [String],
    /// RET and ENVID of the message.
    pub dsn: &'a MessageDsn,
    /// NOTIFY and ORCPT of each of `recipients` (none past its end).
    pub rcpt_dsn: &'a [RecipientDsn],
    pub size: u64,
    /// It has bytes above 127 (needs BODY=8BITMIME).
    pub eight_bit: bool,
    pub body: &'a mut dyn Read,
    /// Header fields to put before the message (DKIM-Signature, an ARC
    /// set), made from the bytes that will be sent: the 7-bit form when it
    /// was converted (given), else the message as queued. Err: the verdict
    /// of every recipient (the message is not sent).
    pub stamp: Option<&'a Stamp<'a>>,
}

/// See `Message::stamp`.
pub type Stamp<'a> = dyn Fn(Option<&[u8]>) -> Result<Vec<u8>, Verdict> + 'a;

enum Wire {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Wire {
    fn tcp(&self) -> &TcpStream {
        match self {
            Wire::Plain(s) => s,
            Wire::Tls(t) => &t.sock,
        }
    }
}

impl Read for Wire {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Wire::Plain(s) => s.read(b),
            Wire::Tls(t) => t.read(b),
        }
    }
}

impl Write for Wire {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Wire::Plain(s) => s.write(b),
            Wire::Tls(t) => t.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Wire::Plain(s) => s.flush(),
            Wire::Tls(t) => t.flush(),
        }
    }
}

struct Conversation {
    wire: Wire,
    reader: ReplyReader,
    addr: SocketAddr,
    settings: Settings,
    /// A transaction was left open (the server may still hold MAIL and
    /// RCPT): not to be used for another message.
    dirty: bool,
}

impl Conversation {
    fn lost(&self, stage: &'static str, err: io::Error) -> Failure {
        Failure::Lost {
            addr: self.addr,
            stage,
            err,
        }
    }

    fn send(&mut self, bytes: &[u8], stage: &'static str) -> Result<(), Failure> {
        self.wire
            .write_all(bytes)
            .and_then(|()| self.wire.flush())
            .map_err(|e| self.lost(stage, e))
    }

    fn reply(&mut self, stage: &'static str, timeout: Duration) -> Result<ServerReply, Failure> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(r) = self.reader.next_reply() {
                return r.map_err(|e| Failure::Protocol {
                    addr: self.addr,
                    stage,
                    why: e.to_string(),
                });
            }
            self.wire
                .tcp()
                .set_read_timeout(Some(timeout))
                .map_err(|e| self.lost(stage, e))?;
            match self.wire.read(&mut buf) {
                Ok(0) => {
                    return Err(self.lost(
                        stage,
                        io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"),
                    ))
                }
                Ok(n) => self.reader.feed(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.lost(stage, e)),
            }
        }
    }

    fn command(&mut self, line: &[u8], stage: &'static str) -> Result<ServerReply, Failure> {
        self.send(line, stage)?;
        let t = self.settings.reply_timeout;
        self.reply(stage, t)
    }

    /// EHLO, or HELO when EHLO is refused: the server's offers.
    fn hello(&mut self) -> Result<Capabilities, Failure> {
        let mut line = Vec::new();
        write_hello(&mut line, true, &self.settings.helo_name);
        let r = self.command(&line, "sending EHLO")?;
        if r.is_positive() {
            return Ok(Capabilities::from_ehlo(&r));
        }
        line.clear();
        write_hello(&mut line, false, &self.settings.helo_name);
        let r = self.command(&line, "sending HELO")?;
        if r.is_positive() {
            Ok(Capabilities::default())
        } else {
            Err(Failure::Greeting(r))
        }
    }
}

/// An open session: greeted, EHLO (and STARTTLS) done, ready for a
/// message; after one, ready for the next (connection reuse, when the
/// caller keeps it).
pub struct Session {
    c: Conversation,
    caps: Capabilities,
    /// The TLS in use, if any.
    pub tls: Option<TlsInfo>,
    /// Messages sent (attempted) over it.
    pub deliveries: u32,
}

/// Deliver `m` to the server at `addr` (named `host` for TLS) over a new
/// connection, then QUIT.
pub fn deliver(
    settings: &Settings,
    addr: SocketAddr,
    host: &str,
    m: &mut Message<'_>,
) -> Result<Outcome, Failure> {
    let mut s = open(settings, addr, host)?;
    let verdicts = s.send(m)?;
    let tls = s.tls.take();
    s.quit();
    Ok(Outcome { verdicts, tls })
}

/// Connect to `addr` (named `host` for TLS): the greeting, EHLO (or HELO),
/// STARTTLS as the settings want.
pub fn open(settings: &Settings, addr: SocketAddr, host: &str) -> Result<Session, Failure> {
    let tcp = TcpStream::connect_timeout(&addr, settings.connect_timeout)
        .map_err(|e| Failure::Connect(addr, e))?;
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_write_timeout(Some(settings.reply_timeout));
    let mut c = Conversation {
        wire: Wire::Plain(tcp),
        reader: ReplyReader::new(),
        addr,
        settings: settings.clone(),
        dirty: false,
    };
    let greeting = c.reply(
        "receiving the initial server greeting",
        settings.reply_timeout,
    )?;
    if greeting.code != 220 {
        return Err(Failure::Greeting(greeting));
    }
    let mut caps = c.hello()?;
    let mut tls = None;
    if settings.tls_required && (!caps.starttls || settings.tls.is_none()) {
        return Err(Failure::TlsNotOffered(addr));
    }
    if let (true, Some(config)) = (caps.starttls, settings.tls.clone()) {
        let r = c.command(b"STARTTLS\r\n", "sending STARTTLS")?;
        if r.code != 220 && settings.tls_required {
            return Err(Failure::TlsNotOffered(addr));
        }
        if r.code == 220 {
            if c.reader.buffered() > 0 {
                // RFC 3207 5: nothing may come in the clear after the 220.
                return Err(Failure::Protocol {
                    addr,
                    stage: "starting TLS",
                    why: "the server sent more after 220 to STARTTLS".into(),
                });
            }
            let tcp = match c.wire {
                Wire::Plain(tcp) => tcp,
                Wire::Tls(_) => {
                    return Err(Failure::Protocol {
                        addr,
                        stage: "starting TLS",
                        why: "STARTTLS offered under TLS".into(),
                    })
                }
            };
            let name = ServerName::try_from(host.to_string())
                .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()));
            let conn = ClientConnection::new(config, name)
                .map_err(|e| Failure::Tls(addr, io::Error::other(e)))?;
            let mut stream = StreamOwned::new(conn, tcp);
            while stream.conn.is_handshaking() {
                stream
                    .conn
                    .complete_io(&mut stream.sock)
                    .map_err(|e| Failure::Tls(addr, e))?;
            }
            tls = TlsInfo::of(&stream.conn);
            c.wire = Wire::Tls(Box::new(stream));
            caps = c.hello()?;
        }
    }
    Ok(Session {
        c,
        caps,
        tls,
        deliveries: 0,
    })
}

impl Session {
    /// The certificates the server presented under TLS (end entity
    /// first); empty without TLS. MTA-STS testing checks them after the
    /// fact (lib.rs).
    pub fn peer_certificates(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        match &self.c.wire {
            Wire::Tls(t) => t
                .conn
                .peer_certificates()
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
            Wire::Plain(_) => Vec::new(),
        }
    }

    /// One message: a verdict per recipient. After an error the session is
    /// not to be used again.
    pub fn send(&mut self, m: &mut Message<'_>) -> Result<Vec<Verdict>, Failure> {
        self.deliveries += 1;
        transaction(&mut self.c, &self.caps, m)
    }

    /// Can it take another message: no transaction left open, nothing
    /// unread from the server (a 421 before closing, say), the connection
    /// not closed by the server?
    pub fn usable(&self) -> bool {
        use nix::sys::socket::{recv, MsgFlags};
        use std::os::fd::AsRawFd;
        if self.c.dirty || self.c.reader.buffered() > 0 {
            return false;
        }
        if let Wire::Tls(t) = &self.c.wire {
            if t.conn.wants_write() {
                return false;
            }
        }
        let mut b = [0u8; 1];
        matches!(
            recv(
                self.c.wire.tcp().as_raw_fd(),
                &mut b,
                MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
            ),
            Err(nix::errno::Errno::EAGAIN)
        )
    }

    /// QUIT (its reply waited for a few seconds at most: the verdicts
    /// stand whatever it brings) and close.
    pub fn quit(mut self) {
        let mut quit = Vec::new();
        write_simple(&mut quit, "QUIT");
        if self.c.send(&quit, "sending QUIT").is_ok() {
            let t = self.c.settings.reply_timeout.min(QUIT_WAIT);
            let _ = self.c.reply("sending QUIT", t);
        }
    }
}

/// RET and ENVID for MAIL FROM: only to a server that offers DSN (RFC
/// 3461 4.3, 4.4). UTF-8 in ENVID only in an SMTPUTF8 transaction (RFC
/// 6533 3): outside one it goes as plain xtext, its bytes hex-encoded, and
/// is left out when that is longer than the 100 characters allowed.
fn mail_dsn(d: &MessageDsn, offered: bool, utf8: bool) -> (Option<String>, Option<String>) {
    if !offered {
        return (None, None);
    }
    let envid = d.envid.as_deref().and_then(|e| {
        if e.is_ascii() || utf8 {
            Some(e.to_string())
        } else {
            d.envid_text()
                .map(|t| xtext::encode(&t))
                .filter(|x| x.len() <= 100)
        }
    });
    (d.ret.map(|r| r.as_str().to_string()), envid)
}

/// NOTIFY and ORCPT for RCPT TO: only to a server that offers DSN (RFC
/// 3461 4.1, 4.2). Without the sender's ORCPT, `rfc822;` and the recipient
/// as queued (the original one), as Postfix's smtp_proto.c sends it. An
/// ORCPT that is not ASCII only in an SMTPUTF8 transaction (RFC 6533 3).
fn rcpt_dsn(
    d: &RecipientDsn,
    rcpt: &str,
    offered: bool,
    utf8: bool,
) -> (Option<String>, Option<String>) {
    if !offered {
        return (None, None);
    }
    let orcpt = d
        .orcpt
        .clone()
        .or_else(|| rcpt.is_ascii().then(|| dsn::default_orcpt(rcpt)))
        .filter(|o| o.is_ascii() || utf8);
    (d.notify.map(|n| n.to_string()), orcpt)
}

/// MAIL, RCPT, DATA: a verdict per recipient.
fn transaction(
    c: &mut Conversation,
    caps: &Capabilities,
    m: &mut Message<'_>,
) -> Result<Vec<Verdict>, Failure> {
    let n = m.recipients.len();
    let all = |v: Verdict| vec![v; n];
    // RFC 6152 3: no 8-bit content to a server without 8BITMIME; it is
    // converted to 7-bit MIME (downgrade.rs) and sent without BODY=.
    let converted = if m.eight_bit && !caps.eight_bit_mime {
        let result = match c.settings.mime_output_conversion {
            true => downgrade::read_and_convert(m.body, m.size),
            false => Err(downgrade::Error::Disabled),
        };
        match result {
            Ok(b) => Some(b),
            Err(e) if e.is_transient() => {
                let text = e.to_string();
                return Ok(all(Verdict::Deferred {
                    dsn: "4.3.0".into(),
                    text,
                }));
            }
            Err(e) => {
                let text = format!("8-bit content for a server without 8BITMIME: {e}");
                return Ok(all(Verdict::Bounced {
                    dsn: "5.6.3".into(),
                    text,
                }));
            }
        }
    } else {
        None
    };
    // DKIM and ARC cover exactly the bytes sent: made after any conversion,
    // before MAIL FROM (whose SIZE counts them).
    let prefix = match m.stamp {
        Some(stamp) => match stamp(converted.as_deref()) {
            Ok(p) => p,
            Err(v) => return Ok(all(v)),
        },
        None => Vec::new(),
    };
    let size = converted.as_ref().map_or(m.size, |b| b.len() as u64) + prefix.len() as u64;
    if caps.refuses_size(size) {
        return Ok(all(Verdict::Bounced {
            dsn: "5.3.4".into(),
            text: format!(
                "message size {} exceeds size limit {} of server",
                size,
                caps.size.unwrap_or(0)
            ),
        }));
    }
    let utf8 = !m.sender.is_ascii() || m.recipients.iter().any(|r| !r.is_ascii());
    if utf8 && !caps.smtputf8 {
        return Ok(all(Verdict::Bounced {
            dsn: "5.6.7".into(),
            text: "SMTPUTF8 is required, but was not offered by the host".into(),
        }));
    }
    let mut line = Vec::new();
    let (ret, envid) = mail_dsn(m.dsn, caps.dsn, utf8);
    write_mail(
        &mut line,
        m.sender,
        &MailOptions {
            size: caps.size.map(|_| size),
            eight_bit: m.eight_bit && converted.is_none(),
            smtputf8: utf8,
            ret,
            envid,
        },
    );
    // RFC 2920: with PIPELINING, MAIL, every RCPT and DATA go in one write
    // and their replies are read in order; without, one at a time.
    let mut rcpt_lines = Vec::with_capacity(n);
    for (i, rcpt) in m.recipients.iter().enumerate() {
        let mut l = Vec::new();
        let d = m.rcpt_dsn.get(i).cloned().unwrap_or_default();
        let (notify, orcpt) = rcpt_dsn(&d, rcpt, caps.dsn, utf8);
        write_rcpt(&mut l, rcpt, notify.as_deref(), orcpt.as_deref());
        rcpt_lines.push(l);
    }
    // RFC 3030: with CHUNKING the message goes as one BDAT ... LAST after
    // the RCPT replies (no DATA, no dot-stuffing).
    let bdat = caps.chunking;
    let (mail_reply, rcpt_replies, data_reply) = if caps.pipelining {
        let mut all = line.clone();
        rcpt_lines.iter().for_each(|l| all.extend_from_slice(l));
        if !bdat {
            all.extend_from_slice(b"DATA\r\n");
        }
        c.send(&all, "sending MAIL FROM")?;
        let t = c.settings.reply_timeout;
        let mail = c.reply("sending MAIL FROM", t)?;
        let mut rcpts = Vec::with_capacity(n);
        for _ in 0..n {
            rcpts.push(c.reply("sending RCPT TO", t)?);
        }
        let data = if bdat {
            None
        } else {
            Some(c.reply("sending DATA", t)?)
        };
        (mail, rcpts, data)
    } else {
        let mail = c.command(&line, "sending MAIL FROM")?;
        let mut rcpts = Vec::with_capacity(n);
        if mail.is_positive() {
            for l in &rcpt_lines {
                rcpts.push(c.command(l, "sending RCPT TO")?);
            }
        }
        (mail, rcpts, None)
    };
    if !mail_reply.is_positive() {
        if data_reply.as_ref().is_some_and(|d| d.code == 354) {
            // A server that took DATA anyway: an empty message, dropped.
            c.send(b".\r\n", "sending end of data")?;
            let t = c.settings.reply_timeout;
            let _ = c.reply("sending end of data", t);
        }
        return Ok(all(Verdict::of(&mail_reply, "MAIL FROM")));
    }
    let verdicts: Vec<Option<Verdict>> = rcpt_replies
        .iter()
        .map(|r| (!r.is_positive()).then(|| Verdict::of(r, "RCPT TO")))
        .collect();
    let accepted = verdicts.iter().filter(|v| v.is_none()).count();
    let finish = |verdicts: Vec<Option<Verdict>>, v: Verdict| -> Vec<Verdict> {
        verdicts
            .into_iter()
            .map(|x| x.unwrap_or_else(|| v.clone()))
            .collect()
    };
    if accepted == 0 {
        if data_reply.as_ref().is_some_and(|d| d.code == 354) {
            c.send(b".\r\n", "sending end of data")?;
            let t = c.settings.reply_timeout;
            let _ = c.reply("sending end of data", t);
        }
        line.clear();
        write_simple(&mut line, "RSET");
        let _ = c.command(&line, "sending RSET");
        return Ok(verdicts.into_iter().flatten().collect());
    }
    if bdat {
        let body: &mut dyn Read = &mut *m.body;
        let r = send_bdat(c, &prefix, converted, body, size)?;
        if !r.is_positive() {
            // RFC 3030 2: the transaction failed; RSET before another.
            c.dirty = true;
        }
        let mut sent = Verdict::of(&r, "end of BDAT");
        if let Verdict::Sent { handoff, .. } = &mut sent {
            if caps.dsn {
                *handoff = Handoff::Passed;
            }
        }
        return Ok(finish(verdicts, sent));
    }
    let r = match data_reply {
        Some(r) => r,
        None => c.command(b"DATA\r\n", "sending DATA")?,
    };
    if r.code != 354 {
        // MAIL and RCPT stand: this connection takes no other message.
        c.dirty = true;
        let v = if r.is_positive() {
            Verdict::Deferred {
                dsn: "4.5.0".into(),
                text: format!("host said: {r} (in reply to DATA: not 354)"),
            }
        } else {
            Verdict::of(&r, "DATA")
        };
        return Ok(finish(verdicts, v));
    }
    let mut kept;
    let body: &mut dyn Read = match converted {
        Some(b) => {
            kept = io::Cursor::new(b);
            &mut kept
        }
        None => &mut *m.body,
    };
    let mut stuffer = DotStuffer::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut wire = Vec::with_capacity(chunk.len() + 1024);
    if !prefix.is_empty() {
        stuffer.stuff(&prefix, &mut wire);
        c.send(&wire, "sending message body")?;
    }
    loop {
        let got = read_chunk(body, &mut chunk)?;
        if got == 0 {
            break;
        }
        wire.clear();
        stuffer.stuff(&chunk[..got], &mut wire);
        c.send(&wire, "sending message body")?;
    }
    wire.clear();
    stuffer.finish(&mut wire);
    c.send(&wire, "sending end of data")?;
    let t = c.settings.data_done_timeout;
    let r = c.reply("sending end of data", t)?;
    let mut sent = Verdict::of(&r, "end of DATA");
    if let Verdict::Sent { handoff, .. } = &mut sent {
        if caps.dsn {
            *handoff = Handoff::Passed;
        }
    }
    Ok(finish(verdicts, sent))
}

/// The next bytes of the message (0 at its end).
fn read_chunk(body: &mut dyn Read, buf: &mut [u8]) -> Result<usize, Failure> {
    loop {
        match body.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::QueueFile(e)),
        }
    }
}

/// The message as one `BDAT SIZE LAST` (RFC 3030 2): exactly `size` bytes
/// of `converted` (the 7-bit form) or of `body`; the reply.
fn send_bdat(
    c: &mut Conversation,
    prefix: &[u8],
    converted: Option<Vec<u8>>,
    body: &mut dyn Read,
    size: u64,
) -> Result<ServerReply, Failure> {
    let mut head = Vec::new();
    write_bdat(&mut head, size, true);
    head.extend_from_slice(prefix);
    c.send(&head, "sending BDAT")?;
    let mut kept;
    let body: &mut dyn Read = match converted {
        Some(b) => {
            kept = io::Cursor::new(b);
            &mut kept
        }
        None => body,
    };
    let mut chunk = vec![0u8; 64 * 1024];
    let mut sent = prefix.len() as u64;
    loop {
        let got = read_chunk(body, &mut chunk)?;
        if got == 0 {
            break;
        }
        if sent + got as u64 > size {
            return Err(Failure::QueueFile(io::Error::other(
                "the message is longer than its recorded size",
            )));
        }
        c.send(&chunk[..got], "sending message body")?;
        sent += got as u64;
    }
    if sent != size {
        // The server waits for the rest: this connection is lost.
        return Err(Failure::QueueFile(io::Error::other(
            "the message is shorter than its recorded size",
        )));
    }
    let t = c.settings.data_done_timeout;
    c.reply("sending end of data", t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::dsn::{Notify, Ret};

    #[test]
    fn dsn_parameters_only_to_a_server_with_dsn() {
        let m = MessageDsn {
            ret: Some(Ret::Hdrs),
            envid: Some("QQ+2B1".into()),
        };
        assert_eq!(mail_dsn(&m, false, false), (None, None));
        assert_eq!(
            mail_dsn(&m, true, false),
            (Some("HDRS".into()), Some("QQ+2B1".into()))
        );
        assert_eq!(mail_dsn(&MessageDsn::default(), true, false), (None, None));
        let r = RecipientDsn {
            notify: Notify::parse("SUCCESS,FAILURE"),
            orcpt: Some("rfc822;orig+40example.org".into()),
        };
        assert_eq!(rcpt_dsn(&r, "a@example.org", false, false), (None, None));
        assert_eq!(
            rcpt_dsn(&r, "a@example.org", true, false),
            (
                Some("SUCCESS,FAILURE".into()),
                Some("rfc822;orig+40example.org".into())
            )
        );
    }

    #[test]
    fn orcpt_made_from_the_recipient_when_none_was_given() {
        let none = RecipientDsn::default();
        assert_eq!(
            rcpt_dsn(&none, "a+b@example.org", true, false),
            (None, Some("rfc822;a+2Bb@example.org".into()))
        );
        // Not for an address that needs SMTPUTF8.
        assert_eq!(
            rcpt_dsn(&none, "j\u{f6}rg@example.org", true, true),
            (None, None)
        );
    }

    #[test]
    fn utf8_in_dsn_values_only_with_smtputf8() {
        let m = MessageDsn {
            ret: None,
            envid: Some("caf\u{e9}".into()),
        };
        assert_eq!(mail_dsn(&m, true, true).1.as_deref(), Some("caf\u{e9}"));
        assert_eq!(mail_dsn(&m, true, false).1.as_deref(), Some("caf+C3+A9"));
        let long = MessageDsn {
            ret: None,
            envid: Some("\u{e9}".repeat(50)),
        };
        assert_eq!(mail_dsn(&long, true, false).1, None, "too long as xtext");
        let r = RecipientDsn {
            notify: None,
            orcpt: Some("rfc822;j\u{f6}rg@example.org".into()),
        };
        assert_eq!(
            rcpt_dsn(&r, "a@example.org", true, true).1.as_deref(),
            Some("rfc822;j\u{f6}rg@example.org")
        );
        assert_eq!(rcpt_dsn(&r, "a@example.org", true, false).1, None);
    }
}
