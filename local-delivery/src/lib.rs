//! posthorn-local: the local delivery agent.
//!
//! Serves `private/local`: qmgr connects, sends `DeliverRequest`s (queue id
//! and recipients of a message in active/), and gets one `DeliverReply` per
//! request with a result per recipient. One connection at a time per process;
//! master runs maxproc processes and qmgr opens as many connections.
//!
//! Runs as root (master.cf unpriv `n`) so it can write each mailbox as its
//! owner: the effective uid and gid are switched for each delivery (Postfix's
//! set_eugid). Started by an ordinary user, it writes as that user. No
//! mailbox is written as uid 0: root's mail is written with the rights of
//! default_privs (see resolve.rs), and aliases send root's and
//! postmaster's mail to a real user.
//!
//! Aliases and .forward (Postfix's local(8)): resolve.rs expands a
//! recipient of mydestination through alias_maps (common::aliases) and the
//! user's ~/.forward (forward.rs, forward_path) into destinations: mailboxes,
//! `|command` (pipe.rs: /bin/sh -c with Postfix's environment and exit
//! codes, command_time_limit), `/file` or `/dir/` (file.rs: mbox or
//! Maildir), `:include:` files, and addresses delivered elsewhere. Those go
//! back to qmgr in the recipient's result (`RecipientResult::forward`):
//! qmgr writes them as a new queue file, with `Delivered-To:` prepended,
//! before it records the recipient as done, so local delivery (root) never
//! writes into the spool. Commands and files get the rights of the list
//! that named them (alias table owner or default_privs, the .forward's
//! user, the :include: file's owner), never root's; allow_mail_to_commands
//! and allow_mail_to_files say where they are allowed.
//!
//! Each delivery prepends `Return-Path:` (RFC 5321 4.4) and `Delivered-To:`
//! (Postfix's loop detection), converts CRLF to LF, and is durable before the
//! result is sent (Maildir: fsync file, rename, fsync new/). qmgr may send
//! several requests in one write (a batch, under load): their files are
//! written and fsynced in tmp/ one after the other, then renamed into new/
//! (each new/ fsynced once), and then every result is logged and the
//! replies go out in order. A crash while a batch is written leaves nothing
//! in new/, so it duplicates no more than a crash between two requests.
//!
//! An mbox (home_mailbox without a trailing slash, or empty: the file
//! `$mail_spool_directory/USER`) is appended to in mboxrd form under the
//! locks mailbox_delivery_lock names (fcntl and a dot-lock by default), each
//! tried in a bounded wait; a lock that stays is "4.2.0 mailbox busy"
//! (mailstore::mbox). The mail spool is written with the user's uid and the
//! spool directory's group. With recipient_delimiter_folder, `user+folder`
//! is filed in that Maildir folder when the user has it (deliver.rs).
//!
//! Parameters: virtual_mailbox_domains, virtual_mailbox_maps,
//! virtual_mailbox_base, virtual_uid_maps, virtual_gid_maps, mydestination,
//! home_mailbox, mail_spool_directory, mailbox_delivery_lock,
//! deliver_lock_attempts, deliver_lock_delay, stale_lock_time,
//! recipient_delimiter, recipient_delimiter_folder, hopcount_limit,
//! queue_directory, alias_maps, default_privs, forward_path,
//! allow_mail_to_commands, allow_mail_to_files, command_time_limit.
//!
//! Diagnostics: one log line per recipient, Postfix's shape:
//! `ID: to=<a@b>, relay=virtual, delay=0.12, dsn=2.0.0, status=sent (delivered to maildir)`
//! (`delivered to command: CMD`, `delivered to file: PATH`), with
//! `, orig_to=<x@y>` after `to=` when the recipient's ORCPT names another
//! address (a virtual alias's original); a recipient only forwarded gets
//! qmgr's `to=<fwd>, orig_to=<a@b>, ... (forwarded as ID)` lines instead.
//! Security: requests are validated (queue id syntax, recipient index and
//! address must match the queue file); a bad request closes the connection.

pub use common::aliases;
pub mod deliver;
pub mod file;
pub mod forward;
pub mod pipe;
pub mod resolve;

use std::io::{self, Write};
use std::os::unix::net::UnixStream;

use common::agent::{next_request, peer_gone};
use common::daemon::{self, Listener};
use common::ipc::{self, DeliverReply, DeliverRequest};
use common::users::UserTable;
use common::warning;

/// The program's entry point (posthorn-local).
pub fn main() {
    let worker = daemon::start("local");
    let Listener::Unix(listener) = &worker.listener else {
        common::fatal!("local must be a unix service in master.cf");
    };
    let mut agent = deliver::Agent {
        users: UserTable::new(worker.config.users_file()),
        aliases: aliases::Aliases::new(&worker.config.list("alias_maps")),
        spool: common::spool::Spool::new(worker.config.queue_dir()),
        config: worker.config.clone(),
        maildirs: deliver::MaildirCache::new(),
        active: deliver::ActiveDir::default(),
    };
    common::agent::accept_loop(listener, &worker, |stream| {
        serve(&mut agent, stream, &worker)
    });
}

/// Serve one qmgr connection until it closes or we are told to stop.
fn serve(
    agent: &mut deliver::Agent,
    mut stream: UnixStream,
    worker: &daemon::Worker,
) -> io::Result<()> {
    common::agent::prepare(&stream)?;
    // One buffer for the connection: a read usually takes a whole request.
    let mut frames = ipc::FrameReader::new();
    while let Some(req) = next_request(&stream, &mut frames, worker)? {
        // A batch: this request and those that came with it (qmgr writes a
        // batch in one write), delivered with one fsync of each new/.
        let mut batch = vec![req];
        while batch.len() < MAX_BATCH && frames.has_frame() {
            match frames.read::<_, DeliverRequest>(&mut &stream)? {
                Some(req) => batch.push(req),
                None => break,
            }
        }
        // Requests left in the socket by a qmgr that has since died (they
        // were queued before we accepted): their messages are back in
        // incoming/ and will be requested again, so delivering now would
        // only duplicate.
        if peer_gone(&stream) {
            for req in &batch {
                warning!("{}: requester has gone; not delivered", req.queue_id);
            }
            return Ok(());
        }
        // Every result only after every mailbox of the batch is durable;
        // the replies in one write, in the order of the requests. A qmgr
        // that went away meanwhile gets nothing published (it would only be
        // delivered again).
        let gone = std::cell::Cell::new(false);
        let wanted = || {
            gone.set(peer_gone(&stream));
            !gone.get()
        };
        let (results, bad) = agent.deliver_batch(&batch, &wanted);
        if gone.get() {
            for req in &batch {
                warning!("{}: requester has gone; not delivered", req.queue_id);
            }
            return Ok(());
        }
        let mut out = Vec::new();
        for results in results {
            ipc::encode_frame(&mut out, &DeliverReply { results })?;
        }
        stream.write_all(&out)?;
        if let Some(e) = bad {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
    Ok(())
}

/// Most requests delivered as one batch (qmgr sends at most 16).
const MAX_BATCH: usize = 64;
