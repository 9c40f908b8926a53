//! posthorn's shared plumbing: configuration, spool, IPC, logging,
//! privileges, TLS set-up and the worker skeleton.
//!
//! Each module's header says what it owns. The RFCs the suite implements and
//! the crate owning each are listed in doc/rfc-index.md.

pub mod addr;
pub mod agent;
pub mod aliases;
pub mod auth;
pub mod config;
pub mod daemon;
pub mod dns;
pub mod dsn;
pub mod durable;
pub mod ipc;
pub mod log;
pub mod login;
pub mod mastercf;
pub mod net;
pub mod params;
pub mod privilege;
pub mod quota;
pub mod server;
pub mod spool;
pub mod status;
pub mod table;
pub mod tls;
pub mod users;
pub mod virtual_alias;
