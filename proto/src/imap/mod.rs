//! IMAP4rev1 / IMAP4rev2 wire grammar without I/O (RFC 3501, RFC 9051).
