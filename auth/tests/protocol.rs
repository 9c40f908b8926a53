//! Transcript tests of the auth protocol: request frames into the real
//! `AuthService` through the skeleton's `Service` calls, response frames
//! out, decoded and compared line by line. Each transcript is run whole
//! (all of a step's frames in one input) and byte by byte.
//!
//! Script lines:
//! - `main.cf NAME = VALUE`, `users LINE`: configuration and users-file
//!   lines; the service is rebuilt from them before the next request.
//! - `C: lookup ID USER` and `C: verify ID key=value...` (user, password,
//!   authzid, client, port, service, mech = plain|login|userpass|apop:CHALLENGE,
//!   and `secured`): a request.
//! - `S: ID REPLY`: the expected response, in the form `render` writes;
//!   ` [hashed]` at the end when a hash computation ran on the pool for it.
//! - `uid N`: the next connections come from uid N (default 0).
//! - `C! HEX`: raw bytes; `S: closed` expects the connection to be closed.
//!
//! The users file's hashes are doveadm's (SHA256-CRYPT of "correct horse",
//! cheap enough to run many times).

use std::path::PathBuf;

use common::auth::{self, AuthBody, AuthReply, AuthRequest, AuthResponse, Credentials, Mechanism};
use common::config::Config;
use common::ipc;
use common::server::{Next, Peer, Service};
use posthorn_auth::passdb::PassDb;
use posthorn_auth::service::{AuthConn, AuthService, Settings};

const HASH: &str = "{SHA256-CRYPT}$5$fJGysRZIZEd3E.fB$SrMJNBjxsd6W5PlW6hGlFQ1oboKbUjikM.DTTuTuux9";

const SCRIPT: &str = r#"
main.cf virtual_mailbox_base = /vmail
main.cf virtual_uid_maps = static:5000
main.cf virtual_gid_maps = static:5001
users demo@example.test:HASH::::::userdb_quota_rule=*:storage=1M
users homed@example.test:HASH:7:8::/srv/homed::
users zero@example.test:HASH:0:0::/srv/zero::
users plain@example.test:{PLAIN}tanstaaf::::::
users odd@example.test:{MD5-CRYPT}$1$x$y::::::

# Lookup: exists (any case), does not exist, over the bound.
C: lookup 1 demo@example.test
S: 1 Ok demo@example.test uid=5000 gid=5001 home=/vmail/example.test/demo maildir=/vmail/example.test/demo/Maildir quota=1048576/- default_privs=no
C: lookup 2 DEMO@Example.Test
S: 2 Ok demo@example.test uid=5000 gid=5001 home=/vmail/example.test/demo maildir=/vmail/example.test/demo/Maildir quota=1048576/- default_privs=no
C: lookup 3 nobody@example.test
S: 3 NotFound
C: lookup 4 LONG
S: 4 NotFound
C: lookup 5 homed@example.test
S: 5 Ok homed@example.test uid=7 gid=8 home=/srv/homed maildir=/srv/homed/Maildir quota=-/- default_privs=no

# Verify: right password (hashed once, then from the cache), wrong
# password and unknown user alike (same reason, growing delay per address).
C: verify 10 user=demo@example.test password=correct+horse client=192.0.2.1 secured
S: 10 Ok demo@example.test uid=5000 gid=5001 home=/vmail/example.test/demo maildir=/vmail/example.test/demo/Maildir quota=1048576/- default_privs=no [hashed]
C: verify 11 user=Demo@Example.TEST password=correct+horse client=192.0.2.1 secured
S: 11 Ok demo@example.test uid=5000 gid=5001 home=/vmail/example.test/demo maildir=/vmail/example.test/demo/Maildir quota=1048576/- default_privs=no
C: verify 12 user=demo@example.test password=wrong client=192.0.2.1 secured
S: 12 Failed 2000 Credentials [hashed]
C: verify 13 user=nobody@example.test password=wrong client=192.0.2.1 secured
S: 13 Failed 4000 Credentials [hashed]
C: verify 14 user=nobody@example.test password=wrong client=192.0.2.1 secured
S: 14 Failed 8000 Credentials [hashed]
C: verify 15 user=nobody@example.test password=wrong client=192.0.2.1 secured
S: 15 Failed 15000 Credentials [hashed]
C: verify 16 user=nobody@example.test password=wrong client=192.0.2.1 secured
S: 16 Failed 15000 Credentials [hashed]
C: verify 17 user=nobody@example.test password=wrong client=192.0.2.2 secured
S: 17 Failed 2000 Credentials [hashed]
C: verify 18 user=nobody@example.test password=wrong secured
S: 18 Failed 2000 Credentials [hashed]
# A success from the address starts it over.
C: verify 19 user=demo@example.test password=correct+horse client=192.0.2.1 secured
S: 19 Ok demo@example.test uid=5000 gid=5001 home=/vmail/example.test/demo maildir=/vmail/example.test/demo/Maildir quota=1048576/- default_privs=no
C: verify 20 user=demo@example.test password=wrong client=192.0.2.1 secured
S: 20 Failed 2000 Credentials [hashed]

# Refused without a hash: cleartext, authzid, bounds, characters.
C: verify 30 user=demo@example.test password=correct+horse client=192.0.2.3
S: 30 Failed 2000 CleartextRefused
C: verify 31 user=demo@example.test password=correct+horse client=192.0.2.4 secured authzid=other@example.test
S: 31 Failed 2000 AuthzidRefused
C: verify 32 user=demo@example.test password=correct+horse client=192.0.2.5 secured authzid=DEMO@example.test mech=login
S: 32 Ok demo@example.test uid=5000 gid=5001 home=/vmail/example.test/demo maildir=/vmail/example.test/demo/Maildir quota=1048576/- default_privs=no
C: verify 33 user=LONG password=x client=192.0.2.6 secured
S: 33 Failed 2000 Invalid
C: verify 34 user=demo@example.test password=LONGPASSWORD client=192.0.2.7 secured
S: 34 Failed 2000 Invalid
C: verify 35 user=demo,192.0.2.99@example.test password=x client=192.0.2.8 secured
S: 35 Failed 2000 Invalid
C: verify 36 user= password=x client=192.0.2.8 secured
S: 36 Failed 4000 Invalid

# Users who cannot log in: PLAIN refused by default, an unknown scheme.
C: verify 40 user=plain@example.test password=tanstaaf client=192.0.2.10 secured
S: 40 Failed 2000 Credentials [hashed]
C: verify 41 user=odd@example.test password=x client=192.0.2.11 secured
S: 41 Failed 2000 Credentials [hashed]

# uid 0 comes back with default_privs' ids.
C: verify 50 user=zero@example.test password=correct+horse client=192.0.2.12 secured
S: 50 Ok zero@example.test uid=NOBODY gid=NOGROUP home=/srv/zero maildir=/srv/zero/Maildir quota=-/- default_privs=yes [hashed]

# APOP (RFC 1939 7's example) needs a PLAIN password, and PLAIN allowed.
C: verify 60 user=plain@example.test password=c4c9334bac560ecc979e58001b3e22fb mech=apop:<1896.697170952@dbc.mtview.ca.us> client=192.0.2.13 secured
S: 60 Failed 2000 Credentials
main.cf auth_allow_plain_passwords = yes
C: verify 61 user=plain@example.test password=c4c9334bac560ecc979e58001b3e22fb mech=apop:<1896.697170952@dbc.mtview.ca.us> client=192.0.2.13 secured
S: 61 Ok plain@example.test uid=5000 gid=5001 home=/vmail/example.test/plain maildir=/vmail/example.test/plain/Maildir quota=-/- default_privs=no
C: verify 62 user=plain@example.test password=c4c9334bac560ecc979e58001b3e22fc mech=apop:<1896.697170952@dbc.mtview.ca.us> client=192.0.2.13 secured
S: 62 Failed 2000 Credentials
C: verify 63 user=demo@example.test password=c4c9334bac560ecc979e58001b3e22fb mech=apop:<1896.697170952@dbc.mtview.ca.us> client=192.0.2.14 secured
S: 63 Failed 2000 Credentials
C: verify 64 user=plain@example.test password=tanstaaf client=192.0.2.13 secured mech=userpass
S: 64 Ok plain@example.test uid=5000 gid=5001 home=/vmail/example.test/plain maildir=/vmail/example.test/plain/Maildir quota=-/- default_privs=no [hashed]

# Cleartext allowed; penalty off; cache off (every login hashes).
main.cf auth_allow_cleartext = yes
main.cf auth_failure_delay = 0
main.cf auth_cache_ttl = 0
C: verify 70 user=demo@example.test password=correct+horse client=192.0.2.20
S: 70 Ok demo@example.test uid=5000 gid=5001 home=/vmail/example.test/demo maildir=/vmail/example.test/demo/Maildir quota=1048576/- default_privs=no [hashed]
C: verify 71 user=demo@example.test password=correct+horse client=192.0.2.20
S: 71 Ok demo@example.test uid=5000 gid=5001 home=/vmail/example.test/demo maildir=/vmail/example.test/demo/Maildir quota=1048576/- default_privs=no [hashed]
C: verify 72 user=demo@example.test password=wrong client=192.0.2.20
S: 72 Failed 0 Credentials [hashed]

# A mailbox that cannot be resolved is a temporary failure.
main.cf default_privs = root
C: lookup 80 zero@example.test
S: 80 TempFail zero@example.test: default_privs "root" is a privileged user (uid 0 gid 0)

# Peers: another uid is refused; malformed and oversized frames close.
uid 12345
S: closed
uid 0
C! 0300000000ffff
S: closed
C! ffffff00
S: closed
C! 00000000
S: closed
"#;

/// Connections from this uid (the skeleton's SO_PEERCRED).
struct Harness {
    dir: PathBuf,
    main_cf: String,
    users: String,
    service: Option<AuthService>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Harness {
    fn service(&mut self) -> &mut AuthService {
        if self.service.is_none() {
            let cfg = Config::parse(&self.dir, "main.cf", &self.main_cf).expect("main.cf");
            let settings = Settings::from_config(&cfg).expect("settings");
            let mut db = PassDb::new(self.dir.join("users"), settings.allow_plain);
            db.load_text("users", &self.users).expect("users file");
            self.service = Some(AuthService::with_passdb(cfg, settings, db).expect("service"));
        }
        self.service.as_mut().expect("built above")
    }
}

/// Feed `bytes` (whole or byte by byte); run jobs inline as the pool
/// would. Returns the output and whether a job ran, or None when closed.
fn feed(
    svc: &mut AuthService,
    c: &mut AuthConn,
    bytes: &[u8],
    bytewise: bool,
) -> Option<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut hashed = false;
    let pieces: Vec<&[u8]> = if bytewise {
        bytes.chunks(1).collect()
    } else {
        vec![bytes]
    };
    for p in pieces {
        let mut next = svc.input(c, p, &mut out);
        loop {
            match next {
                Next::Continue => break,
                Next::Close => return None,
                Next::Pause(_) => panic!("auth never pauses"),
                Next::StartTls
                | Next::Produce
                | Next::HandOff { .. }
                | Next::Watch(_)
                | Next::Await { .. } => {
                    panic!("auth has no TLS, streaming, hand-off or watch")
                }
                Next::Run(job) => {
                    hashed = true;
                    let r = job();
                    next = svc.done(c, r, &mut out);
                }
            }
        }
    }
    Some((out, hashed))
}

fn render(r: &AuthResponse) -> String {
    let body = match &r.body {
        AuthReply::Ok(u) => {
            let q = |v: Option<u64>| v.map_or("-".to_string(), |n| n.to_string());
            format!(
                "Ok {} uid={} gid={} home={} maildir={} quota={}/{} default_privs={}",
                u.user,
                u.uid,
                u.gid,
                u.home.display(),
                u.maildir.display(),
                q(u.quota.storage),
                q(u.quota.messages),
                if u.default_privs { "yes" } else { "no" }
            )
        }
        AuthReply::NotFound => "NotFound".into(),
        AuthReply::Failed { delay_ms, reason } => format!("Failed {delay_ms} {reason:?}"),
        AuthReply::TempFail(t) => format!("TempFail {t}"),
    };
    format!("{} {body}", r.id)
}

fn request(line: &str) -> AuthRequest {
    let words: Vec<&str> = line.split(' ').collect();
    let id: u64 = words[1].parse().expect("id");
    let long_user = "u".repeat(auth::MAX_USER + 1);
    let fix = |v: &str| -> String {
        match v {
            "LONG" => long_user.clone(),
            "LONGPASSWORD" => "p".repeat(auth::MAX_PASSWORD + 1),
            v => v.replace('+', " "),
        }
    };
    match words[0] {
        "lookup" => AuthRequest {
            id,
            body: AuthBody::Lookup {
                user: fix(words[2]),
            },
        },
        "verify" => {
            let mut c = Credentials {
                service: "pop3".into(),
                mechanism: Mechanism::Plain,
                authzid: String::new(),
                user: String::new(),
                password: String::new(),
                client: None,
                local_port: 110,
                secured: false,
            };
            for w in &words[2..] {
                if *w == "secured" {
                    c.secured = true;
                    continue;
                }
                let (k, v) = w.split_once('=').expect("key=value");
                match k {
                    "user" => c.user = fix(v),
                    "password" => c.password = fix(v),
                    "authzid" => c.authzid = fix(v),
                    "client" => c.client = Some(v.parse().expect("address")),
                    "port" => c.local_port = v.parse().expect("port"),
                    "service" => c.service = v.into(),
                    "mech" => {
                        c.mechanism = match v.split_once(':') {
                            Some(("apop", ch)) => Mechanism::Apop {
                                challenge: ch.into(),
                            },
                            _ => match v {
                                "plain" => Mechanism::Plain,
                                "login" => Mechanism::Login,
                                "userpass" => Mechanism::UserPass,
                                m => panic!("mechanism {m}"),
                            },
                        }
                    }
                    k => panic!("key {k}"),
                }
            }
            AuthRequest {
                id,
                body: AuthBody::Verify(c),
            }
        }
        w => panic!("request {w}"),
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn run(bytewise: bool) -> usize {
    let nobody = common::privilege::lookup_user("nobody").expect("a nobody user");
    let dir = std::env::temp_dir().join(format!(
        "posthorn-auth-protocol-{}-{bytewise}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let mut h = Harness {
        dir,
        main_cf: String::new(),
        users: String::new(),
        service: None,
    };
    let mut uid = 0;
    let mut conn: Option<AuthConn> = None;
    let lines: Vec<&str> = SCRIPT.lines().collect();
    let mut steps = 0;
    let mut i = 0;
    while i < lines.len() {
        let (at, line) = (i + 1, lines[i]);
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(l) = line.strip_prefix("main.cf ") {
            h.main_cf.push_str(l);
            h.main_cf.push('\n');
            h.service = None;
            conn = None;
            continue;
        }
        if let Some(l) = line.strip_prefix("users ") {
            h.users.push_str(&l.replace("HASH", HASH));
            h.users.push('\n');
            h.service = None;
            conn = None;
            continue;
        }
        if let Some(u) = line.strip_prefix("uid ") {
            uid = u.parse().expect("uid");
            conn = None;
            let svc = h.service();
            let peer = Peer {
                uid: Some(uid),
                ..Peer::default()
            };
            let (c, next) = svc.open(peer, &mut Vec::new());
            match next {
                Next::Close => {
                    assert_eq!(
                        lines.get(i),
                        Some(&"S: closed"),
                        "line {at}: closed at open"
                    );
                    i += 1;
                    steps += 1;
                }
                _ => conn = Some(c),
            }
            continue;
        }
        let bytes = if let Some(raw) = line.strip_prefix("C! ") {
            hex(raw)
        } else if let Some(req) = line.strip_prefix("C: ") {
            let mut b = Vec::new();
            ipc::write_frame(&mut b, &request(req)).expect("frame");
            b
        } else {
            panic!("line {at}: {line:?}");
        };
        let svc = h.service();
        let c = conn.get_or_insert_with(|| {
            let peer = Peer {
                uid: Some(uid),
                ..Peer::default()
            };
            let (c, next) = svc.open(peer, &mut Vec::new());
            assert!(
                matches!(next, Next::Continue),
                "line {at}: connection refused"
            );
            c
        });
        let want = lines
            .get(i)
            .and_then(|l| l.strip_prefix("S: "))
            .unwrap_or_else(|| panic!("line {at}: no S: line"));
        i += 1;
        steps += 1;
        let Some((out, hashed)) = feed(svc, c, &bytes, bytewise) else {
            assert_eq!(want, "closed", "line {at}: the connection was closed");
            conn = None;
            continue;
        };
        let mut rd = &out[..];
        let resp: AuthResponse = ipc::read_frame(&mut rd)
            .expect("a response frame")
            .unwrap_or_else(|| panic!("line {at}: no response"));
        assert!(rd.is_empty(), "line {at}: one response");
        let got = format!("{}{}", render(&resp), if hashed { " [hashed]" } else { "" });
        let want = want
            .replace("NOBODY", &nobody.uid.to_string())
            .replace("NOGROUP", &nobody.gid.to_string());
        assert_eq!(got, want, "line {at}: {line}");
    }
    steps
}

#[test]
fn transcript_whole() {
    let n = run(false);
    assert!(n >= 39, "steps run: {n}");
}

#[test]
fn transcript_byte_by_byte() {
    let n = run(true);
    assert!(n >= 39, "steps run: {n}");
}

/// Two requests in one write: both answered in order, the second after the
/// first one's hash.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let dir = std::env::temp_dir().join(format!("posthorn-auth-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut h = Harness {
        dir,
        main_cf: "virtual_uid_maps = static:5000\nvirtual_gid_maps = static:5001\n".into(),
        users: format!("demo@example.test:{HASH}::::::\n"),
        service: None,
    };
    let svc = h.service();
    let (mut c, _) = svc.open(
        Peer {
            uid: Some(0),
            ..Peer::default()
        },
        &mut Vec::new(),
    );
    let mut b = Vec::new();
    ipc::write_frame(
        &mut b,
        &request("verify 1 user=demo@example.test password=x secured"),
    )
    .unwrap();
    ipc::write_frame(&mut b, &request("lookup 2 demo@example.test")).unwrap();
    let (out, hashed) = feed(svc, &mut c, &b, false).expect("open");
    assert!(hashed);
    let mut rd = &out[..];
    let a: AuthResponse = ipc::read_frame(&mut rd).unwrap().unwrap();
    let b: AuthResponse = ipc::read_frame(&mut rd).unwrap().unwrap();
    assert_eq!((a.id, b.id), (1, 2));
    assert!(matches!(a.body, AuthReply::Failed { .. }));
    assert!(matches!(b.body, AuthReply::Ok(_)));
}
