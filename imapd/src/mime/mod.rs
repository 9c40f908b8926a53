//! The IMAP view of a message: ENVELOPE, BODYSTRUCTURE, BODY[section] and
//! BINARY (RFC 3501 7.4.2, RFC 9051 7.5.2, RFC 3516).
