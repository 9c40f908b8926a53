//! qmgr's failures: one variant per failure, each logged as exactly one line.
//!
//! Owns the text and severity of every problem qmgr reports about the queue;
//! does not own what happens next (queue.rs decides: leave the message where it
//! is, defer it, or quarantine it). qmgr has no client to answer, so a variant
//! maps to one log line (`QmgrError::log`) instead of a wire reply.
//!
//! Diagnostics: the Display text is the log line (prefixed `ID: ` where a
//! message is concerned, as Postfix's qmgr lines are); `level` says whether it
//! is a warning (someone else's doing, or a file we set aside), an error (the
//! spool misbehaved; the message stays and is retried) or fatal (qmgr cannot
//! run).

use std::io;

use common::config::ConfigError;
use common::log::Level;
use common::spool::QueueId;

/// Every failure qmgr logs.
#[derive(Debug, thiserror::Error)]
pub enum QmgrError {
    /// main.cf holds a bad scheduling parameter: qmgr does not start.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// poll, accept or the wake-up socket failed: qmgr exits, master restarts it.
    #[error("event loop: {0}")]
    EventLoop(#[source] common::server::ServerError),
    /// A queue directory could not be listed; it is scanned again later.
    #[error("cannot read {queue} queue: {source}")]
    ListQueue {
        queue: &'static str,
        #[source]
        source: io::Error,
    },
    /// At start: a file left in active/ could not go back to incoming/.
    #[error("{id}: cannot move back to incoming: {source}")]
    Recover {
        id: QueueId,
        #[source]
        source: io::Error,
    },
    /// Someone else (an admin tool) moved the file away first: not ours now.
    #[error("{id}: cannot move to active: {source}")]
    Activate {
        id: QueueId,
        #[source]
        source: io::Error,
    },
    /// The queue file is not one: it goes to corrupt/.
    #[error("{id}: {why}; moved to corrupt")]
    Corrupt { id: QueueId, why: String },
    /// ... and could not be moved there.
    #[error("{id}: cannot move to corrupt: {source}")]
    Quarantine {
        id: QueueId,
        #[source]
        source: io::Error,
    },
    /// The queue file could not be read; it goes back where it came from.
    #[error("{id}: cannot read queue file: {source}")]
    ReadQueueFile {
        id: QueueId,
        #[source]
        source: io::Error,
    },
    /// An agent answered for a message qmgr does not have active.
    #[error("{id}: results for a message that is not active")]
    NotActive { id: String },
    /// Delivered recipients of a message with jobs still out were not marked
    /// done: a crash now would deliver them again.
    #[error("{id}: cannot record delivered recipients: {source}")]
    RecordDelivered {
        id: QueueId,
        #[source]
        source: io::Error,
    },
    /// Before deferring: finished recipients were not marked done.
    #[error("{id}: cannot record finished recipients: {source}")]
    RecordFinished {
        id: QueueId,
        #[source]
        source: io::Error,
    },
    /// Every recipient is done but the file stays (delivered again after a restart).
    #[error("{id}: cannot remove queue file: {source}")]
    Remove {
        id: QueueId,
        #[source]
        source: io::Error,
    },
    /// The next attempt time (the file's mtime) was not set: retried sooner.
    #[error("{id}: cannot set next attempt time: {source}")]
    NextAttempt {
        id: QueueId,
        #[source]
        source: io::Error,
    },
    /// A deferred message stays in active/ until qmgr restarts.
    #[error("{id}: cannot move to deferred: {source}")]
    Defer {
        id: QueueId,
        #[source]
        source: io::Error,
    },
    /// A notification was not queued: a bounce's or a success notice's
    /// recipients are deferred, a delay warning is tried at the next
    /// attempt. `what`: non-delivery, delay or delivery status.
    #[error("{id}: cannot queue {what} notification: {source}")]
    QueueNotice {
        id: QueueId,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// The deferral reasons (for mailq) were not recorded.
    #[error("{id}: cannot record deferral reasons: {source}")]
    RecordReasons {
        id: QueueId,
        #[source]
        source: io::Error,
    },
    /// An administrator's operation (posthorn queue) failed; the message
    /// stays where it was.
    #[error("{id}: cannot {op}: {source}")]
    Control {
        id: QueueId,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// A recipient's forwarded copy (alias, .forward) was not queued: the
    /// recipient is deferred and delivered again later.
    #[error("{id}: cannot queue the copy forwarded for {rcpt}: {source}")]
    Forward {
        id: QueueId,
        rcpt: String,
        #[source]
        source: io::Error,
    },
    /// The delay warning was queued but the queue file does not say so: it
    /// may be sent again.
    #[error("{id}: cannot record the delay warning: {source}")]
    RecordWarning {
        id: QueueId,
        #[source]
        source: io::Error,
    },
}

impl QmgrError {
    /// How bad it is.
    pub fn level(&self) -> Level {
        match self {
            QmgrError::Config(_) | QmgrError::EventLoop(_) => Level::Fatal,
            QmgrError::Activate { .. }
            | QmgrError::Corrupt { .. }
            | QmgrError::NotActive { .. }
            | QmgrError::NextAttempt { .. } => Level::Warning,
            QmgrError::ListQueue { .. }
            | QmgrError::Recover { .. }
            | QmgrError::Quarantine { .. }
            | QmgrError::ReadQueueFile { .. }
            | QmgrError::RecordDelivered { .. }
            | QmgrError::RecordFinished { .. }
            | QmgrError::Remove { .. }
            | QmgrError::Defer { .. }
            | QmgrError::QueueNotice { .. }
            | QmgrError::Forward { .. }
            | QmgrError::RecordWarning { .. }
            | QmgrError::RecordReasons { .. }
            | QmgrError::Control { .. } => Level::Error,
        }
    }

    /// Write the one log line. Fatal errors are logged, not acted on: the
    /// caller exits.
    pub fn log(&self) {
        common::log::log(self.level(), format_args!("{self}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> QueueId {
        // A fixed, valid id (14 characters of the base-32 alphabet).
        QueueId::parse("00000000000000").expect("valid queue id")
    }

    #[test]
    fn one_line_each_with_the_queue_id_first() {
        let io = || io::Error::from(io::ErrorKind::PermissionDenied);
        let cases = [
            (
                QmgrError::Remove {
                    id: id(),
                    source: io(),
                },
                "00000000000000: cannot remove queue file: permission denied",
                Level::Error,
            ),
            (
                QmgrError::Corrupt {
                    id: id(),
                    why: "corrupt queue file: bad magic".into(),
                },
                "00000000000000: corrupt queue file: bad magic; moved to corrupt",
                Level::Warning,
            ),
            (
                QmgrError::ListQueue {
                    queue: "deferred",
                    source: io(),
                },
                "cannot read deferred queue: permission denied",
                Level::Error,
            ),
            (
                QmgrError::QueueNotice {
                    id: id(),
                    what: "non-delivery",
                    source: io(),
                },
                "00000000000000: cannot queue non-delivery notification: permission denied",
                Level::Error,
            ),
        ];
        for (e, text, level) in cases {
            assert_eq!(e.to_string(), text);
            assert!(!e.to_string().contains('\n'));
            assert_eq!(e.level(), level, "{e}");
        }
    }
}
