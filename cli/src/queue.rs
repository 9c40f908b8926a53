//! `mailq` and `posthorn queue list|show|delete|hold|release|requeue`:
//! Postfix's mailq (postqueue -p, -j), postcat -q and postsuper -d, -h,
//! -H, -r.
//!
//! Owns reading the queue for people (the listing in Postfix's layout,
//! one JSON object per message for scripts, one message as postcat shows
//! it) and sending operations. Does not own what an operation does
//! (posthorn_qmgr::control): while the mail system runs, qmgr owns the
//! queue, so each operation goes to it over private/qmgr and a message in
//! flight is handled when its delivery is back; while it is stopped, this
//! command applies them itself.
//!
//! Who may: root and mail_owner. posthorn shows the queue to nobody else
//! (Postfix shows it to every local user by default; queued mail names
//! senders and recipients, so posthorn does not).
//!
//! Diagnostics: errors on standard error as `posthorn: ...`, exit 1; an
//! operation prints `posthorn: ID: removed` (postsuper's words) per message
//! and the count (`posthorn: Deleted: 3 messages`); an id that is not a
//! queue id or is not queued is an error (exit 1).

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use clap::{Args, Subcommand};
use nix::fcntl::OFlag;

use common::config::Config;
use common::spool::{Queue, QueueFile, QueueId, Spool};
use posthorn_qmgr::control::{self, Op, Reply};

/// The queues listed, in Postfix's showq order.
const LISTED: [Queue; 4] = [Queue::Hold, Queue::Incoming, Queue::Active, Queue::Deferred];

#[derive(Subcommand)]
pub enum QueueCmd {
    /// List queued messages as mailq does (postqueue -p), or as JSON (postqueue -j).
    List {
        #[arg(short = 'c', long = "config")]
        config: Option<std::path::PathBuf>,
        /// One JSON object per message per line (postqueue -j's fields).
        #[arg(long)]
        json: bool,
        /// Only this queue (hold, incoming, active, deferred).
        queue: Option<String>,
    },
    /// Print a message's envelope and headers as postcat -q does.
    Show {
        #[arg(short = 'c', long = "config")]
        config: Option<std::path::PathBuf>,
        /// The body too.
        #[arg(long)]
        body: bool,
        id: String,
    },
    /// Delete messages (postsuper -d): IDs, ALL [QUEUE], or - (ids on standard input).
    Delete(OpArgs),
    /// Put messages on hold (postsuper -h): qmgr leaves them alone until released.
    Hold(OpArgs),
    /// Release held messages (postsuper -H) into deferred/, due now.
    Release(OpArgs),
    /// Try messages again now (postsuper -r): back to incoming/.
    Requeue(OpArgs),
}

#[derive(Args)]
pub struct OpArgs {
    #[arg(short = 'c', long = "config")]
    config: Option<std::path::PathBuf>,
    /// Queue ids, or ALL followed by an optional queue name (ALL deferred), or - to read ids from standard input.
    #[arg(required = true)]
    ids: Vec<String>,
}

/// Why a queue command failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{0}")]
    Config(#[from] common::config::ConfigError),
    #[error("the queue is open to root and mail_owner ({0}) only")]
    NotAllowed(String),
    #[error("{0}: not a queue name (hold, incoming, active, deferred)")]
    BadQueue(String),
    #[error("{0}: not a queue id")]
    BadId(String),
    #[error("{0}: no such message in the queue")]
    NoMessage(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}: corrupt queue file: {1}")]
    Corrupt(String, String),
    #[error("the queue manager ({path}) did not answer: {source}")]
    Qmgr {
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `mailq` (argv[0]), and `sendmail -bp`: the queue in Postfix's layout.
pub fn mailq(config_dir: &Path) -> i32 {
    report(list(config_dir, false, None))
}

pub fn run(cmd: QueueCmd) -> i32 {
    let dir = |c: Option<std::path::PathBuf>| crate::config_dir(c);
    match cmd {
        QueueCmd::List {
            config,
            json,
            queue,
        } => report(list(&dir(config), json, queue.as_deref())),
        QueueCmd::Show { config, body, id } => report(show(&dir(config), &id, body)),
        QueueCmd::Delete(a) => operate(&dir(a.config), Op::Delete, &a.ids),
        QueueCmd::Hold(a) => operate(&dir(a.config), Op::Hold, &a.ids),
        QueueCmd::Release(a) => operate(&dir(a.config), Op::Release, &a.ids),
        QueueCmd::Requeue(a) => operate(&dir(a.config), Op::Requeue, &a.ids),
    }
}

fn report(r: Result<(), QueueError>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("posthorn: {e}");
            1
        }
    }
}

/// The configuration, if this user may see the queue.
fn open(config_dir: &Path) -> Result<(Config, Spool), QueueError> {
    let cfg = Config::load(config_dir)?;
    let owner = cfg.get("mail_owner");
    let me = nix::unistd::Uid::current().as_raw();
    let allowed = common::privilege::is_root()
        || common::privilege::lookup_user(&owner).is_some_and(|a| a.uid == me);
    if !allowed {
        return Err(QueueError::NotAllowed(owner));
    }
    let spool = Spool::new(cfg.queue_dir());
    Ok((cfg, spool))
}

fn queue_named(name: &str) -> Option<Queue> {
    LISTED
        .into_iter()
        .chain([Queue::Corrupt])
        .find(|q| q.name() == name)
}

/// A queue file, read-only, never through a link.
fn read(spool: &Spool, q: Queue, id: &QueueId) -> Result<QueueFile, QueueError> {
    let path = spool.path(q, id);
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    let file = common::privilege::open_at(None, &path, flags, 0).map_err(io_at(&path))?;
    QueueFile::from_file(file, path.clone()).map_err(|e| match e {
        common::spool::SpoolError::Io(source) => QueueError::Io {
            path: path.display().to_string(),
            source,
        },
        common::spool::SpoolError::Corrupt(why) => QueueError::Corrupt(id.to_string(), why),
    })
}

/// The messages of the listed queues (or of one), in order; files that went
/// away meanwhile are skipped.
fn messages(spool: &Spool, only: Option<Queue>) -> Result<Vec<(Queue, QueueFile)>, QueueError> {
    let mut out = Vec::new();
    for q in LISTED {
        if only.is_some_and(|o| o != q) {
            continue;
        }
        let ids = spool.list(q).map_err(io_at(&spool.dir(q)))?;
        for id in ids {
            match read(spool, q, &id) {
                Ok(qf) => out.push((q, qf)),
                Err(QueueError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => eprintln!("posthorn: warning: {e}"),
            }
        }
    }
    if only == Some(Queue::Corrupt) {
        for id in spool
            .list(Queue::Corrupt)
            .map_err(io_at(&spool.dir(Queue::Corrupt)))?
        {
            if let Ok(qf) = read(spool, Queue::Corrupt, &id) {
                out.push((Queue::Corrupt, qf));
            }
        }
    }
    Ok(out)
}

fn list(config_dir: &Path, json: bool, queue: Option<&str>) -> Result<(), QueueError> {
    let (_, spool) = open(config_dir)?;
    let only = match queue {
        Some(n) => Some(queue_named(n).ok_or_else(|| QueueError::BadQueue(n.to_string()))?),
        None => None,
    };
    let msgs = messages(&spool, only)?;
    let text = if json {
        msgs.iter().map(|(q, qf)| json_line(*q, qf)).collect()
    } else {
        mailq_text(&msgs)
    };
    let mut out = io::stdout().lock();
    // A closed pipe (mailq | head) is not an error worth a message.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    Ok(())
}

/// The queue id (file name) of a queue file.
fn id_of(qf: &QueueFile) -> String {
    qf.path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("?")
        .to_string()
}

/// Postfix's showq layout (postqueue -p): a heading, an entry per message
/// with a blank line between, the total. The id has `*` in active/ and
/// `!` in hold/; a deferred recipient's reason comes before it in
/// parentheses (once for several with the same reason).
pub fn mailq_text(msgs: &[(Queue, QueueFile)]) -> String {
    if msgs.is_empty() {
        return "Mail queue is empty\n".into();
    }
    let mut s = String::new();
    // Postfix's STRING_FORMAT ("%-11s %7s %-20s %s") of the four titles.
    s.push_str("-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
    let mut total: u64 = 0;
    for (n, (q, qf)) in msgs.iter().enumerate() {
        if n > 0 {
            s.push('\n');
        }
        let mark = match q {
            Queue::Active => "*",
            Queue::Hold => "!",
            _ => "",
        };
        let sender = if qf.sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            &qf.sender
        };
        // asctime's first 20 characters, its trailing space included.
        let arrival = format!("{} ", common::log::asctime_utc(qf.arrival));
        let _ = writeln!(
            s,
            "{:<11} {:>7} {:20.20} {}",
            format!("{}{mark}", id_of(qf)),
            qf.message_size(),
            arrival,
            printable(sender)
        );
        let mut last: Option<&str> = None;
        for r in qf.recipients.iter().filter(|r| !r.done) {
            if let Some(why) = r.reason.as_deref() {
                if last != Some(why) {
                    let why = printable(why);
                    let pad = 76usize.saturating_sub(why.chars().count());
                    let _ = writeln!(s, "{:pad$}({why})", "");
                }
            }
            last = r.reason.as_deref();
            let _ = writeln!(s, "{:41}{}", "", printable(&r.address));
        }
        total += qf.message_size();
    }
    let n = msgs.len();
    let _ = writeln!(
        s,
        "\n-- {} Kbytes in {n} Request{}.",
        total / 1024,
        if n == 1 { "" } else { "s" }
    );
    s
}

/// Control characters as `?` (showq's printable()).
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// One message as postqueue -j prints it.
pub fn json_line(q: Queue, qf: &QueueFile) -> String {
    let mut s = format!(
        "{{\"queue_name\": {}, \"queue_id\": {}, \"arrival_time\": {}, \"message_size\": {}, \"sender\": {}, \"recipients\": [",
        json_str(q.name()),
        json_str(&id_of(qf)),
        qf.arrival,
        qf.message_size(),
        json_str(&qf.sender)
    );
    for (n, r) in qf.recipients.iter().filter(|r| !r.done).enumerate() {
        if n > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{{\"address\": {}", json_str(&r.address));
        if let Some(why) = &r.reason {
            let _ = write!(s, ", \"delay_reason\": {}", json_str(why));
        }
        s.push('}');
    }
    s.push_str("]}\n");
    s
}

/// A JSON string (RFC 8259 7).
fn json_str(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// `posthorn queue show ID`: the envelope, then the header section (and
/// with `body` the body), as postcat -q prints them.
fn show(config_dir: &Path, id: &str, body: bool) -> Result<(), QueueError> {
    let (_, spool) = open(config_dir)?;
    let qid = QueueId::parse(id).ok_or_else(|| QueueError::BadId(id.to_string()))?;
    let found =
        LISTED
            .into_iter()
            .chain([Queue::Corrupt])
            .find_map(|q| match read(&spool, q, &qid) {
                Err(QueueError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    None
                }
                r => Some((q, r)),
            });
    let Some((q, qf)) = found else {
        return Err(QueueError::NoMessage(id.to_string()));
    };
    let qf = qf?;
    let mut text = envelope_text(q, &qf);
    let at = format!("{}/{id}", q.name());
    let _ = writeln!(text, "*** MESSAGE CONTENTS {at} ***");
    let mut message = Vec::new();
    qf.message()
        .and_then(|r| r.take(qf.message_size()).read_to_end(&mut message))
        .map_err(io_at(&qf.path))?;
    let mut out = io::stdout().lock();
    let mut shown = header_section(&message);
    if body {
        shown = &message;
    }
    let lf: Vec<u8> = crlf_to_lf(shown);
    let _ = out
        .write_all(text.as_bytes())
        .and_then(|()| out.write_all(&lf))
        .and_then(|()| writeln!(out, "*** MESSAGE FILE END {at} ***"))
        .and_then(|()| out.flush());
    Ok(())
}

/// The envelope records, one `name: value` line each (postcat's names).
pub fn envelope_text(q: Queue, qf: &QueueFile) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "*** ENVELOPE RECORDS {}/{} ***", q.name(), id_of(qf));
    let _ = writeln!(s, "message_size: {}", qf.message_size());
    let _ = writeln!(
        s,
        "message_arrival_time: {}",
        common::log::asctime_utc(qf.arrival)
    );
    let _ = writeln!(s, "sender: {}", printable(&qf.sender));
    if let Some(ret) = qf.dsn.ret {
        let _ = writeln!(s, "dsn_ret: {ret:?}");
    }
    if let Some(envid) = &qf.dsn.envid {
        let _ = writeln!(s, "dsn_envid: {envid}");
    }
    for (k, v) in &qf.attrs {
        let _ = writeln!(s, "named_attribute: {}={}", printable(k), printable(v));
    }
    for r in &qf.recipients {
        if let Some(orcpt) = &r.dsn.orcpt {
            let _ = writeln!(s, "dsn_orig_rcpt: {orcpt}");
        }
        let kind = if r.done {
            "done_recipient"
        } else {
            "recipient"
        };
        let _ = writeln!(s, "{kind}: {}", printable(&r.address));
        if let Some(why) = r.reason.as_deref().filter(|_| !r.done) {
            let _ = writeln!(s, "delay_reason: {}", printable(why));
        }
    }
    s
}

/// The header section of a message, with the empty line that ends it.
fn header_section(m: &[u8]) -> &[u8] {
    let mut at = 0;
    for line in m.split_inclusive(|&b| b == b'\n') {
        at += line.len();
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    &m[..at]
}

fn crlf_to_lf(m: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(m.len());
    for line in m.split_inclusive(|&b| b == b'\n') {
        match line.strip_suffix(b"\r\n") {
            Some(l) => {
                v.extend_from_slice(l);
                v.push(b'\n');
            }
            None => v.extend_from_slice(line),
        }
    }
    v
}

/// The queues an operation on ALL looks in (postsuper's defaults).
fn all_queues(op: Op) -> &'static [Queue] {
    match op {
        Op::Release => &[Queue::Hold],
        Op::Hold => &[Queue::Incoming, Queue::Active, Queue::Deferred],
        Op::Delete | Op::Requeue => &[Queue::Hold, Queue::Incoming, Queue::Active, Queue::Deferred],
    }
}

/// `posthorn queue delete|hold|release|requeue`: the ids (or ALL [QUEUE],
/// or - for standard input), to qmgr while the system runs, else here.
fn operate(config_dir: &Path, op: Op, args: &[String]) -> i32 {
    let (cfg, spool) = match open(config_dir) {
        Ok(v) => v,
        Err(e) => return report(Err(e)),
    };
    let mut errors = 0;
    // (id, explicitly named): a named id that is not queued is an error.
    let mut ids: Vec<(QueueId, bool)> = Vec::new();
    let mut named = |word: &str, ids: &mut Vec<(QueueId, bool)>| match QueueId::parse(word) {
        Some(id) => ids.push((id, true)),
        None => {
            eprintln!("posthorn: {}", QueueError::BadId(word.to_string()));
            errors += 1;
        }
    };
    match args.first().map(String::as_str) {
        Some("ALL") => {
            let queues: Vec<Queue> = match args.get(1) {
                Some(n) => match queue_named(n) {
                    Some(q) if args.len() == 2 => vec![q],
                    _ => return report(Err(QueueError::BadQueue(args[1..].join(" ")))),
                },
                None => all_queues(op).to_vec(),
            };
            for q in queues {
                match spool.list(q) {
                    Ok(v) => ids.extend(v.into_iter().map(|id| (id, false))),
                    Err(e) => return report(Err(io_at(&spool.dir(q))(e))),
                }
            }
        }
        Some("-") if args.len() == 1 => {
            for line in io::stdin().lock().lines() {
                match line {
                    Ok(l) if l.trim().is_empty() => {}
                    Ok(l) => named(l.trim(), &mut ids),
                    Err(e) => return report(Err(io_at(Path::new("standard input"))(e))),
                }
            }
        }
        _ => {
            for a in args {
                named(a, &mut ids);
            }
        }
    }
    let replies = if crate::admin::running(&cfg).is_some() {
        match to_qmgr(&spool, op, &ids) {
            Ok(r) => r,
            Err(e) => return report(Err(e)),
        }
    } else {
        ids.iter()
            .map(|(id, _)| match control::apply(&spool, id, op, true) {
                Ok(Some(_)) => Reply::Ok,
                Ok(None) => Reply::None,
                Err(e) => {
                    eprintln!("posthorn: {id}: cannot {}: {e}", op.word());
                    Reply::Error
                }
            })
            .collect()
    };
    let mut count = 0;
    for ((id, explicit), reply) in ids.iter().zip(replies) {
        match reply {
            Reply::Ok => {
                eprintln!("posthorn: {id}: {}", op.logged());
                count += 1;
            }
            Reply::Later => {
                eprintln!(
                    "posthorn: {id}: in delivery now: {} when its delivery is done",
                    op.logged()
                );
                count += 1;
            }
            Reply::None if *explicit => {
                let why = match op {
                    Op::Release => "not on hold",
                    _ => "no such message in the queue",
                };
                eprintln!("posthorn: {id}: {why}");
                errors += 1;
            }
            Reply::None => {}
            Reply::Error => errors += 1,
        }
    }
    if count > 0 {
        let what = match op {
            Op::Delete => "Deleted",
            Op::Hold => "Placed on hold",
            Op::Release => "Released from hold",
            Op::Requeue => "Requeued",
        };
        let s = if count == 1 { "" } else { "s" };
        eprintln!("posthorn: {what}: {count} message{s}");
    }
    i32::from(errors > 0)
}

/// Send the operations to qmgr (private/qmgr): a line each, then read a
/// reply line each.
fn to_qmgr(spool: &Spool, op: Op, ids: &[(QueueId, bool)]) -> Result<Vec<Reply>, QueueError> {
    let path = spool.private("qmgr");
    let err = |source| QueueError::Qmgr {
        path: path.display().to_string(),
        source,
    };
    let mut replies = Vec::with_capacity(ids.len());
    let stream = UnixStream::connect(&path).map_err(err)?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .map_err(err)?;
    let mut reader = BufReader::new(stream.try_clone().map_err(err)?);
    let mut w = &stream;
    // In pieces, so neither side's buffer fills while the other writes.
    for chunk in ids.chunks(256) {
        let mut req = String::new();
        for (id, _) in chunk {
            let _ = writeln!(req, "{} {id}", op.word());
        }
        w.write_all(req.as_bytes()).map_err(err)?;
        for _ in chunk {
            let mut line = String::new();
            if reader.read_line(&mut line).map_err(err)? == 0 {
                return Err(err(io::ErrorKind::UnexpectedEof.into()));
            }
            let reply = Reply::parse(line.trim_end())
                .ok_or_else(|| err(io::Error::other(format!("unexpected reply {line:?}"))))?;
            replies.push(reply);
        }
    }
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::spool::Envelope;

    fn spool(name: &str) -> Spool {
        let dir = std::env::temp_dir().join(format!("posthorn-cliq-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = Spool::new(&dir);
        s.create_dirs().unwrap();
        s
    }

    fn message(s: &Spool, sender: &str, rcpts: &[&str], body: &[u8]) -> QueueFile {
        let mut w = s
            .create(&Envelope {
                sender: sender.into(),
                recipients: rcpts.iter().map(|r| r.to_string()).collect(),
                ..Envelope::default()
            })
            .unwrap();
        w.write(body).unwrap();
        let id = w.commit().unwrap();
        QueueFile::read(&s.path(Queue::Incoming, &id)).unwrap()
    }

    #[test]
    fn mailq_layout_is_postfix_s() {
        let s = spool("layout");
        let mut a = message(
            &s,
            "",
            &["x@far.example", "y@far.example", "z@far.example"],
            &[b'x'; 2000],
        );
        a.arrival = 1_795_989_109; // Sun Nov 29 21:51:49 2026
        a.record_reasons(&[
            (0, "connect to far.example: Connection refused"),
            (1, "connect to far.example: Connection refused"),
        ])
        .unwrap();
        let a = {
            let mut q = QueueFile::read(&a.path).unwrap();
            q.arrival = 1_795_989_109;
            q
        };
        let mut b = message(&s, "alice@example.org", &["bob@example.net"], b"hi");
        b.arrival = 1_796_089_109;
        let (ia, ib) = (id_of(&a), id_of(&b));
        let text = mailq_text(&[(Queue::Deferred, a), (Queue::Active, b)]);
        let reason = "(connect to far.example: Connection refused)";
        let want = format!(
            "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n\
             {ia}    2000 Sun Nov 29 21:51:49  MAILER-DAEMON\n\
             {:pad$}{reason}\n\
             {:41}x@far.example\n\
             {:41}y@far.example\n\
             {:41}z@far.example\n\
             \n\
             {ib}*       2 Tue Dec  1 01:38:29  alice@example.org\n\
             {:41}bob@example.net\n\
             \n\
             -- 1 Kbytes in 2 Requests.\n",
            "",
            "",
            "",
            "",
            "",
            pad = 78 - reason.len()
        );
        assert_eq!(text, want);
        assert_eq!(mailq_text(&[]), "Mail queue is empty\n");
        std::fs::remove_dir_all(s.root()).unwrap();
    }

    #[test]
    fn json_lines_have_postqueue_s_fields() {
        let s = spool("json");
        let mut a = message(
            &s,
            "a\"b@example.org",
            &["x@far.example", "y@far.example"],
            b"abc",
        );
        a.record_reasons(&[(1, "4.4.1 said: \"no\"\tnow")]).unwrap();
        a.mark_done(&[0]).unwrap();
        let a = QueueFile::read(&a.path).unwrap();
        let line = json_line(Queue::Deferred, &a);
        assert_eq!(
            line,
            format!(
                "{{\"queue_name\": \"deferred\", \"queue_id\": \"{}\", \"arrival_time\": {}, \"message_size\": 3, \"sender\": \"a\\\"b@example.org\", \"recipients\": [{{\"address\": \"y@far.example\", \"delay_reason\": \"4.4.1 said: \\\"no\\\"\\tnow\"}}]}}\n",
                id_of(&a),
                a.arrival
            )
        );
        std::fs::remove_dir_all(s.root()).unwrap();
    }

    #[test]
    fn show_prints_the_envelope_and_headers() {
        let s = spool("show");
        let a = message(
            &s,
            "a@example.org",
            &["x@far.example"],
            b"Subject: s\r\n\r\nbody\r\n",
        );
        let env = envelope_text(Queue::Incoming, &a);
        assert!(env.starts_with(&format!(
            "*** ENVELOPE RECORDS incoming/{} ***\n",
            id_of(&a)
        )));
        assert!(
            env.contains("\nsender: a@example.org\nrecipient: x@far.example\n"),
            "{env}"
        );
        assert_eq!(
            header_section(b"Subject: s\r\n\r\nbody\r\n"),
            b"Subject: s\r\n\r\n"
        );
        assert_eq!(header_section(b"no end"), b"no end");
        std::fs::remove_dir_all(s.root()).unwrap();
    }
}
