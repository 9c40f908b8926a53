//! posthorn-imapd and posthorn-imap-login: IMAP4rev1 and IMAP4rev2 (RFC 3501,
//! RFC 9051) with the extensions clients rely on, split as doc/mail-access.md
//! draws it for POP3: a login process (TLS and the protocol before
//! authentication, as login_user), the post-login dispatcher
//! (common::login::dispatch) and per-user mailbox processes.
//!
//! Under construction (issue 8): the message model (mime/: ENVELOPE,
//! BODYSTRUCTURE, sections) comes first; the programs are not yet in
//! master.cf.

pub mod mime;
