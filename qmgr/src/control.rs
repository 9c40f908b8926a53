//! Administrator operations on queued messages (`posthorn queue delete|hold|
//! release|requeue`, Postfix's postsuper -d, -h, -H, -r).
//!
//! Owns what each operation does to a message that no delivery holds (the
//! renames and removals, `apply`) and the control lines of private/qmgr
//! (`Request`, `Reply`). Does not own messages in flight: while the mail
//! system runs, qmgr answers `later` for a message in active/ and applies
//! the operation when its deliveries are back (queue.rs `retire`), so no
//! delivery result is lost; `posthorn queue` calls `apply` itself, with
//! active/ included, only while the system is stopped.
//!
//! Operations: delete removes the queue file (from incoming/, deferred/,
//! hold/, and active/ when stopped); hold moves it to hold/ (qmgr never
//! looks there); release moves it from hold/ to deferred/, due now;
//! requeue moves it from deferred/ or hold/ (or active/, stopped) to
//! incoming/, to be tried again now. An incoming/ file that is not complete
//! yet (smtpd still writing) is not touched. Moves never replace a file.
//!
//! Control lines (one request per line, a one-word reply line each, in
//! order): `delete ID`, `hold ID`, `release ID`, `requeue ID`; replies `ok`
//! (done), `later` (in flight: done when its delivery is back), `none`
//! (no such message where the operation applies), `error` (the spool
//! refused; qmgr logged why).
//!
//! Diagnostics: qmgr logs Postfix's postsuper lines, `ID: removed`, `ID:
//! placed on hold`, `ID: released from hold`, `ID: requeued`.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::time::SystemTime;

use common::spool::{Queue, QueueId, Spool};

/// An operation on a queued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Delete,
    Hold,
    Release,
    Requeue,
}

impl Op {
    /// The word of the control line (and of `posthorn queue`).
    pub fn word(self) -> &'static str {
        match self {
            Op::Delete => "delete",
            Op::Hold => "hold",
            Op::Release => "release",
            Op::Requeue => "requeue",
        }
    }

    pub fn parse(word: &str) -> Option<Op> {
        [Op::Delete, Op::Hold, Op::Release, Op::Requeue]
            .into_iter()
            .find(|o| o.word() == word)
    }

    /// The log line's words after `ID: ` (postsuper's).
    pub fn logged(self) -> &'static str {
        match self {
            Op::Delete => "removed",
            Op::Hold => "placed on hold",
            Op::Release => "released from hold",
            Op::Requeue => "requeued",
        }
    }
}

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Done.
    Ok,
    /// The message is in flight: done when its deliveries are back.
    Later,
    /// Not in a queue the operation applies to.
    None,
    /// The spool refused (logged by qmgr).
    Error,
}

impl Reply {
    pub fn word(self) -> &'static str {
        match self {
            Reply::Ok => "ok",
            Reply::Later => "later",
            Reply::None => "none",
            Reply::Error => "error",
        }
    }

    pub fn parse(word: &str) -> Option<Reply> {
        [Reply::Ok, Reply::Later, Reply::None, Reply::Error]
            .into_iter()
            .find(|r| r.word() == word)
    }
}

/// A control line: `OP ID`. None when the line is not one (then it is a
/// wake-up line, lib.rs).
pub fn request(line: &[u8]) -> Option<(Op, Option<QueueId>)> {
    let line = std::str::from_utf8(line).ok()?;
    let (word, id) = line.split_once(' ')?;
    Some((Op::parse(word)?, QueueId::parse(id)))
}

/// Do `op` to message `id`, which no delivery holds. `with_active`: look in
/// active/ too (only while the mail system is stopped). Returns the queue
/// it was found in, or None.
pub fn apply(spool: &Spool, id: &QueueId, op: Op, with_active: bool) -> io::Result<Option<Queue>> {
    let mut from = vec![Queue::Incoming, Queue::Deferred, Queue::Hold];
    if with_active {
        from.push(Queue::Active);
    }
    for q in from {
        if q == Queue::Incoming && !complete_file(spool, id) {
            continue;
        }
        let to = match (op, q) {
            (Op::Delete, _) => None,
            // Already there (incoming/ was checked above): requeued as
            // it is; a held message is not held again (not counted).
            (Op::Requeue, Queue::Incoming) => return Ok(Some(q)),
            (Op::Hold, Queue::Hold) => continue,
            (Op::Hold, _) => Some(Queue::Hold),
            (Op::Release, Queue::Hold) => Some(Queue::Deferred),
            (Op::Release, _) => continue,
            (Op::Requeue, _) => Some(Queue::Incoming),
        };
        let r = match to {
            None => fs::remove_file(spool.path(q, id)),
            Some(to) => spool.move_to(id, q, to).and_then(|p| {
                if op == Op::Release {
                    // Due now: a deferred message's mtime is its next attempt.
                    fs::File::options()
                        .write(true)
                        .custom_flags(nix::libc::O_NOFOLLOW)
                        .open(p)?
                        .set_modified(SystemTime::now())?;
                }
                Ok(())
            }),
        };
        match r {
            Ok(()) => return Ok(Some(q)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// A complete queue file of `id` in incoming/ (not one smtpd is writing).
fn complete_file(spool: &Spool, id: &QueueId) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::symlink_metadata(spool.path(Queue::Incoming, id))
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o100 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::spool::Envelope;

    fn spool(name: &str) -> Spool {
        let dir =
            std::env::temp_dir().join(format!("posthorn-control-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let s = Spool::new(&dir);
        s.create_dirs().unwrap();
        s
    }

    fn message(s: &Spool) -> QueueId {
        let mut w = s
            .create(&Envelope {
                sender: "a@example.org".into(),
                recipients: vec!["b@example.net".into()],
                ..Envelope::default()
            })
            .unwrap();
        w.write(b"x").unwrap();
        w.commit().unwrap()
    }

    fn where_is(s: &Spool, id: &QueueId) -> Vec<&'static str> {
        [Queue::Incoming, Queue::Active, Queue::Deferred, Queue::Hold]
            .into_iter()
            .filter(|q| s.path(*q, id).exists())
            .map(|q| q.name())
            .collect()
    }

    #[test]
    fn operations_move_or_remove_and_say_where_from() {
        let s = spool("ops");
        let id = message(&s);
        s.move_to(&id, Queue::Incoming, Queue::Deferred).unwrap();
        assert_eq!(
            apply(&s, &id, Op::Release, false).unwrap(),
            None,
            "not on hold"
        );
        assert_eq!(
            apply(&s, &id, Op::Hold, false).unwrap(),
            Some(Queue::Deferred)
        );
        assert_eq!(where_is(&s, &id), ["hold"]);
        assert_eq!(
            apply(&s, &id, Op::Hold, false).unwrap(),
            None,
            "already held"
        );
        assert_eq!(
            apply(&s, &id, Op::Release, false).unwrap(),
            Some(Queue::Hold)
        );
        assert_eq!(where_is(&s, &id), ["deferred"]);
        let due = fs::metadata(s.path(Queue::Deferred, &id))
            .unwrap()
            .modified()
            .unwrap();
        assert!(due <= SystemTime::now());
        assert_eq!(
            apply(&s, &id, Op::Requeue, false).unwrap(),
            Some(Queue::Deferred)
        );
        assert_eq!(where_is(&s, &id), ["incoming"]);
        // active/ only when asked (the system is stopped).
        s.move_to(&id, Queue::Incoming, Queue::Active).unwrap();
        assert_eq!(apply(&s, &id, Op::Delete, false).unwrap(), None);
        assert_eq!(
            apply(&s, &id, Op::Delete, true).unwrap(),
            Some(Queue::Active)
        );
        assert!(where_is(&s, &id).is_empty());
        assert_eq!(apply(&s, &id, Op::Delete, true).unwrap(), None);
        fs::remove_dir_all(s.root()).unwrap();
    }

    #[test]
    fn an_incomplete_incoming_file_is_not_touched() {
        let s = spool("incomplete");
        let mut w = s.create(&Envelope::default()).unwrap();
        w.write(b"x").unwrap();
        let id = w.id().clone();
        for op in [Op::Delete, Op::Hold, Op::Requeue] {
            assert_eq!(apply(&s, &id, op, true).unwrap(), None, "{op:?}");
        }
        assert_eq!(where_is(&s, &id), ["incoming"]);
        drop(w);
        fs::remove_dir_all(s.root()).unwrap();
    }

    #[test]
    fn control_lines() {
        let id = QueueId::parse("1M15JB86WC93b4").unwrap();
        assert_eq!(request(b"hold 1M15JB86WC93b4"), Some((Op::Hold, Some(id))));
        assert_eq!(request(b"delete nonsense"), Some((Op::Delete, None)));
        assert_eq!(request(b"flush"), None);
        assert_eq!(request(b"1M15JB86WC93b4"), None);
        assert_eq!(request(b"explode 1M15JB86WC93b4"), None);
        for r in [Reply::Ok, Reply::Later, Reply::None, Reply::Error] {
            assert_eq!(Reply::parse(r.word()), Some(r));
        }
    }
}
