//! transport_maps: per-address and per-domain routes (Postfix's transport(5)).
//!
//! Owns the meaning of the tables' keys and values (reading them is
//! common::table's: text files, read again when they change) and
//! answering, for a recipient, the transport and next hop. Deciding what
//! to do with the answer is the queue's (queue.rs).
//!
//! Keys, tried in this order, the first table that has one winning:
//! `user@domain` (the whole address, lower case), `domain`, `.parent` for
//! each parent domain (`.example.org` matches `a.b.example.org`, not
//! `example.org`: Postfix's default, parent_domain_matches_transport_maps
//! does not list transport_maps), and `*`.
//!
//! Values: `transport:nexthop`, `transport:` or `transport` (the default
//! next hop: relayhost, else the recipient's domain), `:nexthop` (the
//! default transport, smtp). Transports: `smtp` (and `relay`, the same
//! here) with a next hop as relayhost's syntax (`[host]:port`, `host:port`,
//! `host`); `local`; `error:text` (the recipient bounces with the text);
//! `retry:text` (deferred with the text).
//!
//! Diagnostics: a bad line is skipped with `warning: FILE, line N: ...`
//! (the rest of the table stands); a table that cannot be read is a warning
//! and routes nothing until it can.

use common::addr::NextHop;
use common::table::{domain_keys, Tables};

/// Where a recipient goes, by the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The local delivery agent.
    Local,
    /// posthorn-smtp; the next hop when the entry names one.
    Smtp(Option<String>),
    /// Bounce with this text (`error:`).
    Error(String),
    /// Defer with this text (`retry:`).
    Retry(String),
}

/// transport_maps: its tables, in order.
#[derive(Debug)]
pub struct TransportMaps {
    tables: Tables<Route>,
}

impl Default for TransportMaps {
    fn default() -> Self {
        TransportMaps::new("")
    }
}

impl TransportMaps {
    /// The tables the parameter's value names.
    pub fn new(value: &str) -> TransportMaps {
        TransportMaps {
            tables: Tables::new(value, route),
        }
    }

    /// Read again the tables whose files changed (at most once a second).
    pub fn refresh(&mut self) {
        self.tables.refresh();
    }

    /// The route of `address` (`user@domain`), if a table has one.
    pub fn lookup(&self, address: &str) -> Option<Route> {
        if self.tables.is_empty() {
            return None;
        }
        let address = address.to_ascii_lowercase();
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        let mut keys = vec![address.clone()];
        keys.extend(domain_keys(domain));
        keys.push("*".to_string());
        self.tables.find(keys.iter().map(String::as_str)).cloned()
    }
}

/// A value: `transport:nexthop` and its short forms.
pub fn route(value: &str) -> Result<Route, String> {
    let (transport, nexthop) = value.split_once(':').unwrap_or((value, ""));
    match transport {
        "" | "smtp" | "relay" => {
            if nexthop.is_empty() {
                Ok(Route::Smtp(None))
            } else if NextHop::parse(nexthop, 25).is_some() {
                Ok(Route::Smtp(Some(nexthop.to_string())))
            } else {
                Err(format!(
                    "bad next hop {nexthop:?}: expected [host]:port, host:port or host"
                ))
            }
        }
        "local" => Ok(Route::Local),
        "error" => Ok(Route::Error(if nexthop.is_empty() {
            "mail for this destination is refused".into()
        } else {
            nexthop.to_string()
        })),
        "retry" => Ok(Route::Retry(if nexthop.is_empty() {
            "mail for this destination is held".into()
        } else {
            nexthop.to_string()
        })),
        other => Err(format!(
            "unknown transport {other:?} (smtp, relay, local, error or retry)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_bad_lines() {
        let mut warnings = Vec::new();
        let m = common::table::parse_table(
            "/etc/posthorn/transport",
            "# comment\n\
             example.org      smtp:[mx.example.org]:2525\n\
             .example.org     relay:backup.example.net\n\
             joe@example.com  local:\n\
             example.com      :[10.0.0.1]\n\
             old.example      error:mailbox moved to new.example\n\
             held.example     retry:maintenance\n\
             nothing\n\
             bad.example      smtp:[unclosed\n\
             odd.example      uucp:host\n\
             long.example\n  smtp:[continued.example]\n",
            route,
            |w| warnings.push(w),
        );
        assert_eq!(
            m["example.org"],
            Route::Smtp(Some("[mx.example.org]:2525".into()))
        );
        assert_eq!(
            m[".example.org"],
            Route::Smtp(Some("backup.example.net".into()))
        );
        assert_eq!(m["joe@example.com"], Route::Local);
        assert_eq!(m["example.com"], Route::Smtp(Some("[10.0.0.1]".into())));
        assert_eq!(
            m["old.example"],
            Route::Error("mailbox moved to new.example".into())
        );
        assert_eq!(m["held.example"], Route::Retry("maintenance".into()));
        assert_eq!(
            m["long.example"],
            Route::Smtp(Some("[continued.example]".into())),
            "a line that starts with white space continues the last"
        );
        assert_eq!(
            warnings,
            [
                "/etc/posthorn/transport, line 8: expected format: key whitespace value",
                "/etc/posthorn/transport, line 9: bad next hop \"[unclosed\": expected [host]:port, host:port or host",
                "/etc/posthorn/transport, line 10: unknown transport \"uucp\" (smtp, relay, local, error or retry)",
            ]
        );
    }

    #[test]
    fn lookup_order_and_reload() {
        let dir = std::env::temp_dir().join(format!("posthorn-transport-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("transport");
        std::fs::write(
            &path,
            "example.org smtp:[a.example]\n.example.org smtp:[b.example]\n\
             joe@example.org local\n* smtp:[smarthost.example]\n",
        )
        .unwrap();
        let mut m = TransportMaps::new(&format!("texthash:{}", path.display()));
        assert!(m.lookup("a@b").is_some(), "* matches");
        let smtp = |h: &str| Some(Route::Smtp(Some(h.to_string())));
        assert_eq!(m.lookup("Ann@Example.ORG"), smtp("[a.example]"));
        assert_eq!(m.lookup("joe@example.org"), Some(Route::Local));
        assert_eq!(m.lookup("x@mail.sub.example.org"), smtp("[b.example]"));
        assert_eq!(m.lookup("x@other.example"), smtp("[smarthost.example]"));
        // Changed on disk: read again (size differs, so even a same-second
        // change is seen).
        std::fs::write(&path, "example.org error:gone away\n").unwrap();
        m.tables.refresh_now();
        assert_eq!(
            m.lookup("ann@example.org"),
            Some(Route::Error("gone away".into()))
        );
        assert_eq!(m.lookup("x@other.example"), None);
        assert!(TransportMaps::new("").lookup("a@b").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
