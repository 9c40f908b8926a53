//! DKIM signing and ARC sealing of outbound mail (issue 11): keys made
//! with `posthorn dkim keygen`, their TXT records served by the tests' DNS
//! server; mail submitted on 587 and relayed to the sink carries one
//! DKIM-Signature per key (RSA and Ed25519) that verifies with dkimpy
//! (python3-dkim) and with mail-auth, and fails both once its body is
//! changed; mail from a client outside mynetworks, forwarded by an alias
//! to a remote address, is not DKIM-signed but carries an ARC set that
//! verifies; forwarded again, the chain goes on with cv=pass (cv=fail once
//! the body has changed).

use std::process::Command;
use std::sync::Arc;

use mail_auth::{AuthenticatedMessage, DkimResult};

use crate::dns::{serve, Rr, Zone};
use crate::harness::{tool, Smtp, Suite, BIN};
use crate::outbound::{sink, wait_for, Shared};

/// `posthorn dkim keygen` for the suite: the (name, value) of the printed
/// record.
fn keygen(s: &Suite, domain: &str, args: &[&str]) -> (String, String) {
    let out = Command::new(BIN)
        .args(["dkim", "keygen", domain, "-c"])
        .arg(&s.dir)
        .args(args)
        .output()
        .expect("posthorn runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let records = parse_records(&text);
    assert_eq!(records.len(), 1, "{text}");
    records.into_iter().next().unwrap()
}

/// `NAME. IN TXT "a" "b"` lines: (NAME without the dot, "ab").
fn parse_records(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|l| {
            let (name, rest) = l.split_once(" IN TXT ").expect("a TXT line");
            let value: String = rest
                .split('"')
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, p)| p)
                .collect();
            (name.trim_end_matches('.').to_string(), value)
        })
        .collect()
}

fn publish(zone: &Zone, (name, value): &(String, String)) {
    zone.lock()
        .unwrap()
        .entry(name.to_ascii_lowercase())
        .or_default()
        .push(Rr::Txt(value.clone()));
}

/// dkimpy's verdicts (tests/clients/dkim_check.py), one line each.
fn dkimpy(mode: &str, s: &Suite, msg: &[u8], records: &[(String, String)]) -> Vec<String> {
    assert!(tool("dkimverify"), "python3-dkim is installed");
    let f = s.dir.join(format!("check-{mode}.eml"));
    std::fs::write(&f, msg).unwrap();
    // Debian's python, whose library python3-dkim is (a python3 earlier in
    // PATH, such as pyenv's, does not have it).
    let out = Command::new("/usr/bin/python3")
        .arg(format!(
            "{}/../tests/clients/dkim_check.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(mode)
        .arg(&f)
        .args(records.iter().map(|(n, v)| format!("{n}={v}")))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// mail-auth's DKIM verdicts, through the tests' DNS server.
fn mail_auth_dkim(dns: &str, msg: &[u8]) -> Vec<String> {
    let auth = posthorn_trust::dns::authenticator(&[dns.to_string()]).unwrap();
    let m = AuthenticatedMessage::parse(msg).expect("a message");
    runtime()
        .block_on(auth.verify_dkim(&m))
        .iter()
        .map(|o| match o.result() {
            DkimResult::Pass => "pass".to_string(),
            r => format!("{r:?}"),
        })
        .collect()
}

/// A header field's unfolded value (the first of its name).
fn field(msg: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut out: Option<String> = None;
    for line in head.split("\r\n") {
        if let Some(v) = &mut out {
            if line.starts_with([' ', '\t']) {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case(name) {
                out = Some(v.trim().to_string());
            }
        }
    }
    out
}

/// The body changed by one character.
fn tampered(msg: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(msg).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(body.contains("submitted"), "{body}");
    format!(
        "{head}\r\n\r\n{}",
        body.replacen("submitted", "Submitted", 1)
    )
    .into_bytes()
}

#[test]
fn submitted_mail_is_signed_with_every_key_and_verifies() {
    let zone = Zone::default();
    let dns = serve(Arc::clone(&zone));
    let state: Shared = Arc::default();
    let port = sink(Arc::clone(&state));
    let s = Suite::start(
        "dkim-sign",
        &[],
        &[
            &format!("relayhost=[127.0.0.1]:{port}"),
            &format!("dns_servers={dns}"),
        ],
    );
    let rsa = keygen(&s, "example.test", &["--selector", "rsa1"]);
    let ed = keygen(
        &s,
        "example.test",
        &["--selector", "ed1", "--algorithm", "ed25519"],
    );
    assert_eq!(rsa.0, "rsa1._domainkey.example.test");
    assert!(rsa.1.starts_with("v=DKIM1; k=rsa; p="), "{}", rsa.1);
    assert!(ed.1.starts_with("v=DKIM1; k=ed25519; p="), "{}", ed.1);
    let key = s.dir.join("dkim/example.test/rsa1.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    // An existing key is never overwritten.
    let again = Command::new(BIN)
        .args(["dkim", "keygen", "example.test", "--selector", "rsa1", "-c"])
        .arg(&s.dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    assert_eq!(std::fs::read_to_string(&key).unwrap(), pem);
    // `dkim show` prints both records, as keygen did.
    let show = Command::new(BIN)
        .args(["dkim", "show", "example.test", "-c"])
        .arg(&s.dir)
        .output()
        .unwrap();
    let shown = parse_records(&String::from_utf8_lossy(&show.stdout));
    assert_eq!(shown, vec![ed.clone(), rsa.clone()]);
    let records = vec![rsa.clone(), ed.clone()];
    publish(&zone, &rsa);
    publish(&zone, &ed);

    let out = Command::new("python3")
        .arg(format!(
            "{}/../tests/clients/smtp_submit.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args(["starttls", &(2587 + s.offset).to_string()])
        .arg(s.dir.join("tls/ca.pem"))
        .args([
            "demo@example.test",
            "demo",
            "demo@example.test",
            "signed",
            "bob@elsewhere.example",
        ])
        .output()
        .expect("python3 runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("sent "), "{said}");
    let id = said.trim().trim_start_matches("sent ").to_string();
    let got = wait_for(&state, &s, "bob@elsewhere.example");
    let msg = got
        .iter()
        .find(|m| m.rcpts.iter().any(|r| r == "bob@elsewhere.example"))
        .unwrap()
        .data
        .clone();
    let text = String::from_utf8_lossy(&msg).into_owned();
    assert!(text.starts_with("DKIM-Signature: "), "{text}");
    assert_eq!(text.matches("DKIM-Signature: ").count(), 2, "{text}");
    let unfolded: String = text.split_ascii_whitespace().collect();
    assert!(unfolded.contains("a=rsa-sha256"), "{text}");
    assert!(unfolded.contains("a=ed25519-sha256"), "{text}");
    assert!(unfolded.contains("c=relaxed/relaxed"), "{text}");
    assert!(unfolded.contains("d=example.test"), "{text}");
    // From is oversigned: named once more than the message has it.
    let sig = field(&msg, "DKIM-Signature").unwrap();
    let h: String = sig
        .split(';')
        .find_map(|t| t.trim().strip_prefix("h="))
        .unwrap()
        .split_ascii_whitespace()
        .collect();
    assert_eq!(
        h.split(':')
            .filter(|n| n.eq_ignore_ascii_case("from"))
            .count(),
        2,
        "{h}"
    );
    s.wait_log(&format!(
        "{id}: DKIM-Signature field added (d=example.test, s=ed1 rsa1)"
    ));

    assert_eq!(
        dkimpy("dkim", &s, &msg, &records),
        ["dkim 0 pass", "dkim 1 pass"]
    );
    assert_eq!(mail_auth_dkim(&dns, &msg), ["pass", "pass"]);
    let bad = tampered(&msg);
    assert_eq!(
        dkimpy("dkim", &s, &bad, &records),
        ["dkim 0 fail", "dkim 1 fail"]
    );
    let verdicts = mail_auth_dkim(&dns, &bad);
    assert_eq!(verdicts.len(), 2);
    assert!(verdicts.iter().all(|v| v != "pass"), "{verdicts:?}");
}

#[test]
fn forwarded_outside_mail_is_not_signed_but_arc_sealed() {
    let zone = Zone::default();
    let dns = serve(Arc::clone(&zone));
    let state: Shared = Arc::default();
    let port = sink(Arc::clone(&state));
    let s = Suite::start(
        "arc-seal",
        &[],
        &[
            &format!("relayhost=[127.0.0.1]:{port}"),
            &format!("dns_servers={dns}"),
            "mynetworks=127.0.0.1/32",
            "arc_seal_domain=example.test",
            "arc_seal_selector=seal",
        ],
    );
    // The From: domain has a DKIM key: what is not signed is not signed
    // because the mail is not ours.
    let dkim = keygen(&s, "example.test", &["--selector", "k1"]);
    let seal = keygen(&s, "example.test", &["--selector", "seal"]);
    publish(&zone, &dkim);
    publish(&zone, &seal);
    let p = s.dir.join("aliases");
    let mut aliases = std::fs::read_to_string(&p).unwrap();
    aliases.push_str(
        "far: faraway@elsewhere.example\n\
         again: again@elsewhere.example\n\
         broken: broken@elsewhere.example\n",
    );
    std::fs::write(&p, aliases).unwrap();

    // A client outside mynetworks (127.0.0.2) writes to the alias.
    let mut c = Smtp::greeted(crate::harness::connect_from(
        "127.0.0.2".parse().unwrap(),
        s.port,
    ));
    c.cmd("EHLO outside.example.org", 250);
    let id = c.mail(
        "demo@example.test",
        &["far@localhost"],
        b"From: Demo <demo@example.test>\r\nTo: far@localhost\r\nSubject: forwarded\r\nMessage-ID: <fwd-1@example.test>\r\n\r\nsubmitted from outside\r\n",
    );
    c.cmd("QUIT", 221);
    let got = wait_for(&state, &s, "faraway@elsewhere.example");
    let msg = got
        .iter()
        .find(|m| m.rcpts.iter().any(|r| r == "faraway@elsewhere.example"))
        .unwrap()
        .data
        .clone();
    let text = String::from_utf8_lossy(&msg).into_owned();
    assert!(!text.contains("DKIM-Signature:"), "{text}");
    assert!(!s.log().contains(&format!("{id}: DKIM-Signature")));
    let seal_field = field(&msg, "ARC-Seal").expect("an ARC-Seal");
    let unfolded: String = seal_field.split_ascii_whitespace().collect();
    assert!(unfolded.contains("i=1;"), "{seal_field}");
    assert!(unfolded.contains("cv=none"), "{seal_field}");
    assert!(unfolded.contains("d=example.test"), "{seal_field}");
    assert!(unfolded.contains("s=seal"), "{seal_field}");
    let aar = field(&msg, "ARC-Authentication-Results").expect("an AAR");
    assert!(aar.starts_with("i=1; "), "{aar}");
    assert!(field(&msg, "ARC-Message-Signature").is_some(), "{text}");
    s.wait_log("ARC set added (d=example.test, s=seal, cv=none)");

    // mail-auth's and dkimpy's verdicts on the chain.
    let auth = posthorn_trust::dns::authenticator(std::slice::from_ref(&dns)).unwrap();
    let m = AuthenticatedMessage::parse(&msg).unwrap();
    let arc = runtime().block_on(auth.verify_arc(&m));
    assert_eq!(arc.result(), &DkimResult::Pass, "{text}");
    let records = vec![dkim, seal];
    let v = dkimpy("arc", &s, &msg, &records);
    assert!(v[0].starts_with("arc pass"), "{v:?}\n{text}");
    // A changed body breaks the chain.
    let bad = String::from_utf8_lossy(&msg).replacen("submitted from", "Submitted from", 1);
    let v = dkimpy("arc", &s, bad.as_bytes(), &records);
    assert!(v[0].starts_with("arc fail"), "{v:?}");

    // The sealed copy comes back and is forwarded again: the chain is
    // verified (through dns_servers) and continued with i=2, cv=pass; the
    // changed one is continued with cv=fail.
    let mut c = Smtp::greeted(crate::harness::connect_from(
        "127.0.0.2".parse().unwrap(),
        s.port,
    ));
    c.cmd("EHLO outside.example.org", 250);
    c.mail("demo@example.test", &["again@localhost"], &msg);
    c.mail("demo@example.test", &["broken@localhost"], bad.as_bytes());
    c.cmd("QUIT", 221);
    wait_for(&state, &s, "again@elsewhere.example");
    let got = wait_for(&state, &s, "broken@elsewhere.example");
    let data = |rcpt: &str| {
        got.iter()
            .find(|m| m.rcpts.iter().any(|r| r == rcpt))
            .unwrap()
            .data
            .clone()
    };
    let again = data("again@elsewhere.example");
    let seal2: String = field(&again, "ARC-Seal")
        .unwrap()
        .split_ascii_whitespace()
        .collect();
    assert!(
        seal2.contains("i=2;") && seal2.contains("cv=pass"),
        "{seal2}"
    );
    let m = AuthenticatedMessage::parse(&again).unwrap();
    let arc = runtime().block_on(auth.verify_arc(&m));
    assert_eq!(arc.result(), &DkimResult::Pass);
    let v = dkimpy("arc", &s, &again, &records);
    assert!(v[0].starts_with("arc pass"), "{v:?}");
    let broken = data("broken@elsewhere.example");
    let seal3: String = field(&broken, "ARC-Seal")
        .unwrap()
        .split_ascii_whitespace()
        .collect();
    assert!(
        seal3.contains("i=2;") && seal3.contains("cv=fail"),
        "{seal3}"
    );
    s.wait_log("ARC set added (d=example.test, s=seal, cv=pass)");
    s.wait_log("ARC set added (d=example.test, s=seal, cv=fail)");
}

#[test]
fn signatures_cover_converted_and_chunked_mail_and_a_bad_key_defers() {
    let zone = Zone::default();
    let dns = serve(Arc::clone(&zone));
    let state: Shared = Arc::default();
    state.lock().unwrap().no_8bitmime = true;
    let port = sink(Arc::clone(&state));
    let s = Suite::start(
        "dkim-7bit",
        &[],
        &[
            &format!("relayhost=[127.0.0.1]:{port}"),
            &format!("dns_servers={dns}"),
            "mynetworks=127.0.0.0/8",
            "minimal_backoff_time=1s",
            "maximal_backoff_time=2s",
            "queue_run_delay=1s",
            // A new connection (and EHLO) for the chunked message.
            "smtp_connection_cache_time_limit=0s",
        ],
    );
    let ed = keygen(
        &s,
        "example.test",
        &["--selector", "ed1", "--algorithm", "ed25519"],
    );
    publish(&zone, &ed);
    let records = vec![ed];
    // A key that cannot be used: mail of its domain waits, never unsigned.
    let broken = s.dir.join("dkim/broken.example");
    std::fs::create_dir_all(&broken).unwrap();
    let bad_key = broken.join("k.key");
    std::fs::write(
        &bad_key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &bad_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    // posthorn check names a key others may read.
    let check = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&s.dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(
        said.contains(&format!(
            "{}: mode 0644, expected 0600: run chmod 0600",
            bad_key.display()
        )) || said.contains(&format!("{}: mode 0644, expected 0600", bad_key.display())),
        "{said}"
    );
    assert!(!check.status.success());

    // From a client in mynetworks, 8-bit, to a server without 8BITMIME:
    // converted to quoted-printable, then signed.
    let mut c = Smtp::connect(s.port);
    c.cmd("EHLO trusted.example.org", 250);
    let broken_id = c.mail(
        "x@broken.example",
        &["held@far.example"],
        b"From: <x@broken.example>\r\nSubject: held\r\n\r\nsubmitted, never sent unsigned\r\n",
    );
    c.mail(
        "demo@example.test",
        &["bob@far.example"],
        "From: <demo@example.test>\r\nTo: <bob@far.example>\r\nSubject: 8-bit\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nsubmitted: Gr\u{fc}\u{df}e aus K\u{f6}ln\r\n"
            .as_bytes(),
    );
    let got = wait_for(&state, &s, "bob@far.example");
    let m = got
        .iter()
        .find(|m| m.rcpts == ["bob@far.example"])
        .unwrap()
        .clone();
    assert!(m.data.is_ascii(), "{}", String::from_utf8_lossy(&m.data));
    let text = String::from_utf8_lossy(&m.data).into_owned();
    assert!(text.contains("quoted-printable"), "{text}");
    assert!(text.starts_with("DKIM-Signature: "), "{text}");
    assert_eq!(dkimpy("dkim", &s, &m.data, &records), ["dkim 0 pass"]);
    assert_eq!(mail_auth_dkim(&dns, &m.data), ["pass"]);

    // To a server with CHUNKING: one BDAT with the signature counted.
    {
        let mut st = state.lock().unwrap();
        st.no_8bitmime = false;
        st.chunking = true;
    }
    c.mail(
        "demo@example.test",
        &["carol@far.example"],
        b"From: <demo@example.test>\r\nTo: <carol@far.example>\r\nSubject: chunked\r\n\r\nsubmitted as BDAT\r\n.a line with a dot\r\n",
    );
    c.cmd("QUIT", 221);
    let got = wait_for(&state, &s, "carol@far.example");
    let m = got
        .iter()
        .find(|m| m.rcpts == ["carol@far.example"])
        .unwrap()
        .clone();
    assert!(m.bdat, "sent with BDAT");
    assert_eq!(dkimpy("dkim", &s, &m.data, &records), ["dkim 0 pass"]);
    assert_eq!(mail_auth_dkim(&dns, &m.data), ["pass"]);

    // The message with the broken key was deferred with the reason, and
    // did not reach the sink (which has taken the two sent after it).
    s.wait_log(&format!(
        "{broken_id}: to=<held@far.example>, relay=127.0.0.1[127.0.0.1]:{port}"
    ));
    let log = s.log();
    assert!(
        log.lines().any(
            |l| l.contains(&format!("{broken_id}: to=<held@far.example>"))
                && l.contains("dsn=4.7.0, status=deferred (DKIM signing failed: ")
                && l.contains("broken.example/k.key")
        ),
        "{log}"
    );
    let st = state.lock().unwrap();
    assert!(
        !st.messages
            .iter()
            .any(|m| m.rcpts.iter().any(|r| r == "held@far.example")),
        "the message with an unusable key was sent"
    );
}
