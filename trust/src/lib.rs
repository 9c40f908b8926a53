//! Trust on the wire (issue 11): what posthorn checks on inbound mail (SPF,
//! DKIM, DMARC and ARC through the mail-auth crate, recorded in one
//! Authentication-Results header), what it adds to outbound mail (DKIM
//! signatures, ARC seals when it forwards), and what the outbound client
//! asks of a destination's TLS (MTA-STS, DANE), with the reports both sides
//! produce (DMARC aggregate, TLS-RPT).
//!
//! Each part is a module of its own; the daemons (smtpd, pickup, qmgr,
//! posthorn-smtp) and the admin command call into them.
pub mod authres;
pub mod cache;
pub mod daylog;
pub mod dmarc_report;
pub mod dmarc_store;
pub mod dns;
pub mod https;
pub mod mta_sts;
pub mod records;
pub mod records_check;
pub mod sign;
pub mod tlsrpt;
pub mod verify;

/// The crate behind the trust logic, for callers that need its types (the
/// admin command's tests read reports back with it).
pub use mail_auth;
