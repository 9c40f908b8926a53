//! posthorn wire protocols without I/O.
//!
//! Owns the byte-level grammar of the protocols posthorn speaks: command
//! parsers, reply types and their wire encoding, and the receivers that turn a
//! stream of bytes into message content ("need more bytes" / "done"). It does
//! not own sockets, files, policy or session state: daemons feed it bytes and
//! act on what it returns. Cargo.toml keeps it free of networking and I/O
//! dependencies (base64 and thiserror only) so that the dependency graph
//! enforces the boundary.
//!
//! Standards: see the header of each module.
//!
//! Security: everything here parses untrusted network input. Every function
//! either returns a value or a reply describing the error; none panics on
//! input, and every buffer is bounded by a limit the caller chooses.
//!
//! Diagnostics: nothing is logged here. Errors are returned as protocol
//! replies (`smtp::Reply`) or small error types the caller maps to one.

pub mod imap;
pub mod pop3;
pub mod sasl;
pub mod smtp;
