//! master.cf: the list of services master runs.
//!
//! Postfix's column layout, one service per line (continuation lines begin
//! with white space):
//!
//! ```text
//! # service  type  private unpriv  chroot  wakeup  maxproc command + args
//! smtp       inet  n       -       n       -       1       smtpd
//! qmgr       unix  -       -       n       300     1       qmgr
//! local      unix  -       n       n       -       4       local
//! ```
//!
//! `-` means the default: private y, unpriv y, chroot n, wakeup 0, maxproc
//! $default_process_limit. `-o name=value` arguments override main.cf for that
//! service only. Owns the syntax; master owns what happens to each service.
//!
//! Diagnostics: errors name the file and line (`master.cf line 7: ...`).

use std::net::{IpAddr, SocketAddr};

use crate::config::ConfigError;

/// The worker programs master knows how to run (the command column).
pub const KNOWN_COMMANDS: &[&str] = &[
    "smtpd",
    "qmgr",
    "local",
    "smtp",
    "anvil",
    "auth",
    "pop3-login",
    "pop3d",
    "imap-login",
    "imapd",
    "pickup",
];

/// Commands whose `-u` means "drop to login_user" (pre-authentication
/// protocol and TLS; doc/mail-access.md) rather than mail_owner.
pub const LOGIN_COMMANDS: &[&str] = &["pop3-login", "imap-login"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    /// A TCP listener; the service name is `port`, `host:port` or a name like `smtp`.
    Inet,
    /// A Unix stream socket `private/NAME` (or `public/NAME` when not
    /// private). A service named `login/NAME` is `login/NAME`: the
    /// post-login dispatcher's socket, which login processes reach.
    Unix,
}

/// One master.cf entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub kind: ServiceType,
    pub private: bool,
    pub unprivileged: bool,
    pub chroot: bool,
    pub wakeup: u64,
    pub maxproc: u32,
    pub command: String,
    /// Arguments after the command other than `-o name=value`.
    pub args: Vec<String>,
    pub overrides: Vec<(String, String)>,
    pub line: usize,
}

impl Service {
    /// The key that identifies a service across reloads.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.name,
            if self.kind == ServiceType::Inet {
                "inet"
            } else {
                "unix"
            }
        )
    }
}

/// Well-known service names for inet entries (the few /etc/services names we need).
pub fn service_port(name: &str) -> Option<u16> {
    Some(match name {
        "smtp" => 25,
        "submission" => 587,
        "submissions" | "smtps" => 465,
        "imap" | "imap2" => 143,
        "imaps" => 993,
        "pop3" => 110,
        "pop3s" => 995,
        _ => return name.parse().ok().filter(|p| *p != 0),
    })
}

/// Resolve an inet service name to the addresses to bind, given inet_interfaces
/// (`all`, `loopback-only` or a list of addresses) and inet_protocols.
pub fn inet_addresses(
    name: &str,
    interfaces: &[String],
    protocols: &str,
) -> Result<Vec<SocketAddr>, String> {
    // [v6]:port, host:port, or port alone.
    let (host, port) = match name.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => (Some(h), p),
        _ => (None, name),
    };
    let port = service_port(port).ok_or_else(|| format!("unknown port or service {port:?}"))?;
    let hosts: Vec<IpAddr> = match host {
        Some(h) => {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            if h == "localhost" {
                vec![IpAddr::from([127, 0, 0, 1])]
            } else {
                vec![h.parse().map_err(|_| format!("bad listen address {h:?}"))?]
            }
        }
        None => {
            let want4 = protocols != "ipv6";
            let want6 = protocols == "ipv6" || protocols == "all";
            let mut v = Vec::new();
            let ifs: Vec<&str> = interfaces.iter().map(String::as_str).collect();
            match ifs.as_slice() {
                [] | ["all"] => {
                    if want6 {
                        // A dual-stack [::] socket takes IPv4 too.
                        v.push(IpAddr::from([0u16; 8]));
                    } else if want4 {
                        v.push(IpAddr::from([0, 0, 0, 0]));
                    }
                }
                ["loopback-only"] => {
                    if want4 {
                        v.push(IpAddr::from([127, 0, 0, 1]));
                    }
                    if want6 {
                        v.push(IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]));
                    }
                }
                list => {
                    for i in list {
                        let i = i.trim_start_matches('[').trim_end_matches(']');
                        let i = if i == "localhost" { "127.0.0.1" } else { i };
                        v.push(
                            i.parse()
                                .map_err(|_| format!("bad inet_interfaces address {i:?}"))?,
                        );
                    }
                }
            }
            v
        }
    };
    Ok(hosts
        .into_iter()
        .map(|h| SocketAddr::new(h, port))
        .collect())
}

/// Parse master.cf text. `file` names it in errors.
pub fn parse(
    file: &str,
    text: &str,
    default_process_limit: u32,
) -> Result<Vec<Service>, ConfigError> {
    let err = |line: usize, message: String| ConfigError {
        location: format!("{file} line {line}"),
        message,
    };
    // Join continuation lines, remembering the first line of each entry.
    let mut entries: Vec<(usize, String)> = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match entries.last_mut() {
                Some((_, e)) => {
                    e.push(' ');
                    e.push_str(trimmed);
                }
                None => {
                    return Err(err(
                        idx + 1,
                        "continuation line without a service before it".into(),
                    ))
                }
            }
        } else {
            entries.push((idx + 1, trimmed.to_string()));
        }
    }
    let mut services: Vec<Service> = Vec::new();
    for (line, entry) in entries {
        let fields: Vec<&str> = entry.split_whitespace().collect();
        if fields.len() < 8 {
            return Err(err(line, format!("expected 8 or more fields (service type private unpriv chroot wakeup maxproc command), found {}", fields.len())));
        }
        let yn = |i: usize, what: &str, default: bool| -> Result<bool, ConfigError> {
            match fields[i] {
                "-" => Ok(default),
                "y" => Ok(true),
                "n" => Ok(false),
                v => Err(err(line, format!("{what} must be y, n or -, not {v:?}"))),
            }
        };
        let kind = match fields[1] {
            "inet" => ServiceType::Inet,
            "unix" => ServiceType::Unix,
            t => {
                return Err(err(
                    line,
                    format!("unknown service type {t:?} (inet or unix)"),
                ))
            }
        };
        let private = yn(2, "private", true)?;
        let unprivileged = yn(3, "unpriv", true)?;
        let chroot = yn(4, "chroot", false)?;
        if chroot {
            return Err(err(
                line,
                "chroot y is not supported yet; use n or -".into(),
            ));
        }
        let wakeup = match fields[5].trim_end_matches('?') {
            "-" => 0,
            w => w
                .parse()
                .map_err(|_| err(line, format!("wakeup must be a number or -, not {w:?}")))?,
        };
        let maxproc = match fields[6] {
            "-" => default_process_limit,
            m => m
                .parse()
                .map_err(|_| err(line, format!("maxproc must be a number or -, not {m:?}")))?,
        };
        if maxproc == 0 {
            return Err(err(
                line,
                "maxproc 0 (unlimited) is not supported; give a number".into(),
            ));
        }
        let command = fields[7].to_string();
        if !KNOWN_COMMANDS.contains(&command.as_str()) {
            return Err(err(
                line,
                format!(
                    "unknown command {command:?} (known: {})",
                    KNOWN_COMMANDS.join(", ")
                ),
            ));
        }
        if let Some(rest) = fields[0].strip_prefix("login/") {
            if kind != ServiceType::Unix || rest.is_empty() || rest.contains('/') {
                return Err(err(
                    line,
                    format!(
                        "{:?}: a login/NAME service is a unix socket with a plain NAME",
                        fields[0]
                    ),
                ));
            }
        } else if kind == ServiceType::Unix && fields[0].contains('/') {
            return Err(err(
                line,
                format!(
                    "{:?}: a unix service name has no '/' (except login/NAME)",
                    fields[0]
                ),
            ));
        }
        for (dispatcher, login) in [("pop3d", "pop3-login"), ("imapd", "imap-login")] {
            if command == dispatcher && !fields[0].starts_with("login/") {
                let proto = &dispatcher[..dispatcher.len() - 1];
                return Err(err(
                    line,
                    format!(
                        "{dispatcher} is the post-login dispatcher: its service is login/{proto} (unix)"
                    ),
                ));
            }
            if command == login && kind != ServiceType::Inet {
                return Err(err(line, format!("{login} is an inet service")));
            }
        }
        // smtpd and the others wake qmgr through private/qmgr.
        if command == "qmgr" && (kind != ServiceType::Unix || !private) {
            return Err(err(
                line,
                "qmgr must be a private unix service (type unix, private - or y)".into(),
            ));
        }
        // One qmgr owns active/: a second one would move the first one's
        // messages back from active/ at its start and deliver them again.
        // `-` means $default_process_limit, so it is refused too (unless that is 1).
        if command == "qmgr" && maxproc != 1 {
            return Err(err(
                line,
                format!(
                    "qmgr maxproc must be 1, not {}: two queue managers would deliver each other's messages twice",
                    fields[6]
                ),
            ));
        }
        let mut args = Vec::new();
        let mut overrides = Vec::new();
        let mut rest = fields[8..].iter();
        while let Some(a) = rest.next() {
            if *a == "-o" {
                let Some(kv) = rest.next() else {
                    return Err(err(line, "-o without name=value".into()));
                };
                let Some((k, v)) = kv.split_once('=') else {
                    return Err(err(line, format!("-o {kv:?}: expected name=value")));
                };
                overrides.push((k.to_string(), v.to_string()));
            } else {
                args.push(a.to_string());
            }
        }
        let name = fields[0].to_string();
        if kind == ServiceType::Inet {
            if let Err(e) = inet_addresses(&name, &["all".into()], "all") {
                return Err(err(line, e));
            }
        } else if name.strip_prefix("login/").unwrap_or(&name).contains('/')
            || name.starts_with('.')
            || name.starts_with("login/.")
        {
            return Err(err(line, format!("bad unix service name {name:?}")));
        }
        let svc = Service {
            name,
            kind,
            private,
            unprivileged,
            chroot,
            wakeup,
            maxproc,
            command,
            args,
            overrides,
            line,
        };
        if let Some(prev) = services.iter().find(|s| s.key() == svc.key()) {
            return Err(err(
                line,
                format!(
                    "service {} is already defined at line {}",
                    svc.key(),
                    prev.line
                ),
            ));
        }
        services.push(svc);
    }
    Ok(services)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# comment\n127.0.0.1:2525 inet n - n - 1 smtpd\n  -o smtpd_banner=hi\nqmgr unix - - n 300 1 qmgr\nlocal unix - n n - 4 local\n";

    #[test]
    fn parses_sample() {
        let s = parse("master.cf", SAMPLE, 100).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].kind, ServiceType::Inet);
        assert_eq!(
            s[0].overrides,
            vec![("smtpd_banner".to_string(), "hi".to_string())]
        );
        assert!(s[1].unprivileged && !s[2].unprivileged);
        assert_eq!((s[1].wakeup, s[2].maxproc, s[2].line), (300, 4, 5));
    }

    #[test]
    fn errors_have_lines() {
        let e = parse(
            "master.cf",
            "smtp inet n - n - 1 smtpd\nsmtp inet n - n - 1 smtpd\n",
            100,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "master.cf line 2: service smtp/inet is already defined at line 1"
        );
        let e = parse("master.cf", "x tcp n - n - 1 smtpd\n", 100).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("master.cf line 1: unknown service type"));
        let e = parse("master.cf", "smtp inet n - n - 1 frobd\n", 100).unwrap_err();
        assert!(e.message.contains("unknown command"));
        let e = parse("master.cf", "\nsmtp inet n\n", 100).unwrap_err();
        assert_eq!(e.location, "master.cf line 2");
        assert!(parse("m", "nosuch inet n - n - 1 smtpd\n", 1).is_err());
        let e = parse("master.cf", "qmgr unix n - n 300 1 qmgr\n", 100).unwrap_err();
        assert!(
            e.message.starts_with("qmgr must be a private unix service"),
            "{e}"
        );
    }

    #[test]
    fn qmgr_maxproc_must_be_one() {
        for (maxproc, shown) in [("2", "2"), ("-", "-"), ("100", "100")] {
            let text = format!("smtp inet n - n - 1 smtpd\nqmgr unix - - n 300 {maxproc} qmgr\n");
            let e = parse("master.cf", &text, 100).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("master.cf line 2: qmgr maxproc must be 1, not {shown}: two queue managers would deliver each other's messages twice")
            );
        }
        // 0 (unlimited) is refused for every service, qmgr included.
        let e = parse("master.cf", "qmgr unix - - n 300 0 qmgr\n", 100).unwrap_err();
        assert_eq!(e.location, "master.cf line 1");
        assert!(e.message.starts_with("maxproc 0 (unlimited)"), "{e}");
        // 1 is fine, and `-` is fine where default_process_limit is 1.
        assert_eq!(
            parse("m", "qmgr unix - - n 300 1 qmgr\n", 100).unwrap()[0].maxproc,
            1
        );
        assert_eq!(
            parse("m", "qmgr unix - - n 300 - qmgr\n", 1).unwrap()[0].maxproc,
            1
        );
        // Other services may have more than one process.
        assert_eq!(
            parse("m", "local unix - n n - 4 local\n", 100).unwrap()[0].maxproc,
            4
        );
    }

    #[test]
    fn login_services() {
        let s = parse(
            "m",
            "pop3 inet n - n - 2 pop3-login\nlogin/pop3 unix - n n - 1 pop3d\n",
            100,
        )
        .unwrap();
        assert_eq!(s[1].name, "login/pop3");
        assert_eq!(s[1].key(), "login/pop3/unix");
        for (text, want) in [
            (
                "login/pop3 inet n - n - 1 pop3d\n",
                "a login/NAME service is a unix socket",
            ),
            (
                "login/ unix - n n - 1 pop3d\n",
                "a login/NAME service is a unix socket",
            ),
            (
                "login/a/b unix - n n - 1 pop3d\n",
                "a login/NAME service is a unix socket",
            ),
            (
                "private/x unix - n n - 1 local\n",
                "a unix service name has no '/'",
            ),
            (
                "pop3 unix - n n - 1 pop3d\n",
                "pop3d is the post-login dispatcher",
            ),
            (
                "pop3 unix - - n - 1 pop3-login\n",
                "pop3-login is an inet service",
            ),
        ] {
            let e = parse("master.cf", text, 100).unwrap_err();
            assert!(e.message.contains(want), "{text:?}: {e}");
            assert_eq!(e.location, "master.cf line 1");
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(
            inet_addresses("127.0.0.1:2525", &[], "all").unwrap(),
            vec!["127.0.0.1:2525".parse().unwrap()]
        );
        assert_eq!(
            inet_addresses("[::1]:25", &[], "all").unwrap(),
            vec!["[::1]:25".parse().unwrap()]
        );
        assert_eq!(
            inet_addresses("smtp", &["loopback-only".into()], "ipv4").unwrap(),
            vec!["127.0.0.1:25".parse().unwrap()]
        );
        assert_eq!(
            inet_addresses("2525", &["all".into()], "ipv4").unwrap(),
            vec!["0.0.0.0:2525".parse().unwrap()]
        );
    }
}
