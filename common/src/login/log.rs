//! What the login session's log lines say: Dovecot's `Disconnected (...)`
//! and `Login:` lines, and the record they are made from.
//!
//! Owns the facts a login session keeps only for its log lines (the last
//! user named, the mechanism and count of attempts, how the last one ended,
//! when the connection and the first attempt began, why the session ended)
//! and their rendering in Dovecot 2.3's shape: its reasons in parentheses
//! and its login_log_format_elements. It does not own when a line is logged
//! (the session does, once). Shared by pop3-login and imap-login.
//!
//! Standards: none; the shape is Dovecot's (login-common), which fail2ban's
//! dovecot filter matches: `^(?:Aborted login|Disconnected)(?:: [^(]+)?
//! \((?:auth failed, \d+ attempts(?: in \d+ secs)?|tried to use
//! (?:disabled|disallowed) \S+ auth)\):(?: user=<[^>]*>,)?(?: method=\S+,)?
//! rip=HOST`.
//!
//! Security: the user name is client text. Characters that could end the
//! `user=<...>` field or fake another field (`<`, `>`, `,`, white space,
//! controls) become `?`, so a name cannot forge a `rip=` for a log
//! analyser; it is cut at 255 characters.
//!
//! Diagnostics: this module renders lines; the session logs them.

use std::net::IpAddr;
use std::time::Instant;

/// Why the session ended, for the line's first words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client went away (or the caller closed without saying why).
    Disconnected,
    /// QUIT.
    Quit,
    BadCommands,
    AuthFailures,
    Inactivity,
    InputOverflow,
}

impl End {
    fn text(self) -> &'static str {
        match self {
            End::Disconnected => "Disconnected",
            End::Quit => "Aborted login",
            End::BadCommands => "Disconnected: Too many bad commands",
            End::AuthFailures => "Disconnected: Too many authentication failures",
            End::Inactivity => "Disconnected: Inactivity",
            End::InputOverflow => "Disconnected: Input buffer full",
        }
    }
}

/// What the session was waiting for, for the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The client's next SASL response.
    Sasl,
    /// Auth's answer.
    Auth,
}

/// How the last authentication attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Failed,
    Aborted,
}

/// The connection as the line names it.
pub struct Peer {
    pub rip: Option<IpAddr>,
    pub lip: Option<IpAddr>,
    pub tls: bool,
    /// On this host (loopback, or our own address): Dovecot's "secured".
    pub secured: bool,
}

/// The facts the log lines are made of.
pub struct Record {
    /// The last user name the client named.
    pub user: String,
    /// The user auth logged in.
    pub logged_in: Option<String>,
    /// A plaintext login was refused (Dovecot names this above all else).
    pub tried_plaintext: bool,
    /// The mechanism of the last attempt.
    method: Option<&'static str>,
    attempts: u32,
    last: Option<Attempt>,
    created: Instant,
    first_attempt: Option<Instant>,
    end: Option<End>,
    /// What the session waited for when it ended.
    wait_at_end: Option<Wait>,
    logged: bool,
}

impl Default for Record {
    fn default() -> Record {
        Record::new()
    }
}

impl Record {
    pub fn new() -> Record {
        Record {
            user: String::new(),
            logged_in: None,
            tried_plaintext: false,
            method: None,
            attempts: 0,
            last: None,
            created: Instant::now(),
            first_attempt: None,
            end: None,
            wait_at_end: None,
            logged: false,
        }
    }

    /// A login attempt begins (`method` None when there is no mechanism to
    /// name: USER refused, an unknown mechanism).
    pub fn attempt(&mut self, method: Option<&'static str>) {
        self.attempts = self.attempts.saturating_add(1);
        self.first_attempt.get_or_insert_with(Instant::now);
        self.method = method;
    }

    pub fn failed(&mut self) {
        self.last = Some(Attempt::Failed);
    }

    pub fn aborted(&mut self) {
        self.last = Some(Attempt::Aborted);
    }

    /// The session ends (the first reason given stands), `waiting` for this.
    pub fn end(&mut self, end: End, waiting: Option<Wait>) {
        if self.end.is_none() {
            self.end = Some(end);
            self.wait_at_end = waiting;
        }
    }

    /// True the first time only: a session logs one line.
    pub fn first_log(&mut self) -> bool {
        !std::mem::replace(&mut self.logged, true)
    }

    /// `Disconnected (REASON): ELEMENTS`, or None after a login. `waiting`
    /// is what the session waits for now.
    pub fn disconnect_line(&self, waiting: Option<Wait>, peer: &Peer) -> Option<String> {
        if self.logged_in.is_some() {
            return None;
        }
        let end = self.end.unwrap_or(End::Disconnected);
        Some(format!(
            "{} ({}): {}",
            end.text(),
            self.reason(waiting.or(self.wait_at_end)),
            self.elements(None, peer)
        ))
    }

    /// `Login: ELEMENTS` with `mpid=`, or None before a login.
    pub fn login_line(&self, mpid: Option<u32>, peer: &Peer) -> Option<String> {
        self.logged_in
            .as_ref()
            .map(|_| format!("Login: {}", self.elements(mpid, peer)))
    }

    /// Dovecot's reason in parentheses (its 2.3 rules, which log analysers
    /// and fail2ban filters know).
    fn reason(&self, waiting: Option<Wait>) -> String {
        let since = |t: Instant| t.elapsed().as_secs();
        let Some(first) = self.first_attempt.filter(|_| self.attempts > 0) else {
            return format!("no auth attempts in {} secs", since(self.created));
        };
        if self.tried_plaintext {
            return "tried to use disallowed plaintext auth".into();
        }
        match waiting {
            Some(Wait::Sasl) => format!(
                "client didn't finish SASL auth, waited {} secs",
                since(first)
            ),
            Some(Wait::Auth) => format!(
                "disconnected while authenticating, waited {} secs",
                since(first)
            ),
            None if self.attempts == 1 && self.last == Some(Attempt::Aborted) => {
                "aborted authentication".into()
            }
            None => format!(
                "auth failed, {} attempts in {} secs",
                self.attempts,
                since(first)
            ),
        }
    }

    /// Dovecot's login_log_format_elements: `user=<U>, method=M, rip=R,
    /// lip=L, mpid=P, TLS`, the empty ones left out.
    fn elements(&self, mpid: Option<u32>, peer: &Peer) -> String {
        let user = self.logged_in.as_deref().unwrap_or(&self.user);
        let mut parts = vec![format!("user=<{}>", log_safe(user))];
        if let Some(m) = self.method {
            parts.push(format!("method={m}"));
        }
        if let Some(ip) = peer.rip {
            parts.push(format!("rip={ip}"));
        }
        if let Some(ip) = peer.lip {
            parts.push(format!("lip={ip}"));
        }
        if let Some(pid) = mpid {
            parts.push(format!("mpid={pid}"));
        }
        if peer.tls {
            parts.push("TLS".into());
        } else if peer.secured {
            parts.push("secured".into());
        }
        parts.join(", ")
    }
}

/// A user name as it may appear between `<` and `>` in a log line.
fn log_safe(user: &str) -> String {
    user.chars()
        .take(255)
        .map(|c| {
            if c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | ',') {
                '?'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `N secs` as `S secs`: the seconds depend on the clock.
    fn secs_free(line: &str) -> String {
        let words: Vec<&str> = line.split(' ').collect();
        (0..words.len())
            .map(|i| {
                let secs = words.get(i + 1).is_some_and(|n| n.starts_with("secs"));
                if secs && words[i].bytes().all(|b| b.is_ascii_digit()) {
                    "S"
                } else {
                    words[i]
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn peer() -> Peer {
        Peer {
            rip: Some([192, 0, 2, 1].into()),
            lip: Some([192, 0, 2, 2].into()),
            tls: false,
            secured: false,
        }
    }

    /// Each of Dovecot's reasons, in the order its rules try them.
    #[test]
    fn reasons() {
        let mut r = Record::new();
        let line = |r: &Record, w| secs_free(&r.disconnect_line(w, &peer()).expect("a line"));
        assert_eq!(
            line(&r, None),
            "Disconnected (no auth attempts in S secs): user=<>, rip=192.0.2.1, lip=192.0.2.2"
        );
        r.attempt(Some("PLAIN"));
        assert_eq!(
            line(&r, Some(Wait::Sasl)),
            "Disconnected (client didn't finish SASL auth, waited S secs): user=<>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2"
        );
        assert!(line(&r, Some(Wait::Auth))
            .contains("(disconnected while authenticating, waited S secs)"));
        r.aborted();
        assert!(line(&r, None).contains("(aborted authentication)"));
        r.attempt(None);
        r.failed();
        assert!(line(&r, None)
            .starts_with("Disconnected (auth failed, 2 attempts in S secs): user=<>, rip="));
        r.tried_plaintext = true;
        r.end(End::Quit, None);
        r.end(End::Inactivity, Some(Wait::Auth));
        assert!(
            line(&r, None).starts_with("Aborted login (tried to use disallowed plaintext auth): ")
        );
        r.logged_in = Some("bob".into());
        assert_eq!(r.disconnect_line(None, &peer()), None);
        assert_eq!(
            r.login_line(None, &peer()).expect("a line"),
            "Login: user=<bob>, rip=192.0.2.1, lip=192.0.2.2"
        );
        assert!(r.first_log());
        assert!(!r.first_log());
    }

    /// A user name cannot fake a field.
    #[test]
    fn user_is_log_safe() {
        let mut r = Record::new();
        r.user = "x>, rip=6.6.6.6, <\u{1b}".into();
        let p = Peer {
            tls: true,
            ..peer()
        };
        assert_eq!(
            secs_free(&r.disconnect_line(None, &p).expect("a line")),
            "Disconnected (no auth attempts in S secs): user=<x???rip=6.6.6.6????>, rip=192.0.2.1, lip=192.0.2.2, TLS"
        );
        let p = Peer {
            secured: true,
            ..peer()
        };
        assert!(r
            .disconnect_line(None, &p)
            .expect("a line")
            .ends_with(", secured"));
        assert_eq!(log_safe(&"u".repeat(300)).len(), 255);
    }
}
