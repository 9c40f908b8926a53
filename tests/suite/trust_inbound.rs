//! Issue 11, inbound: SPF, DKIM, DMARC and ARC of mail arriving at smtpd,
//! with the tests' DNS server publishing the senders' records. Every
//! message comes from 127.0.0.1 and is checked by its delivered
//! Authentication-Results header (authserv_id mx.suite.test), by smtpd's
//! log line, and, for DMARC, by the observations in $queue_directory/dmarc.
//! DKIM signatures are made by an independent signer, Debian's dkimpy
//! (`dknewkey`, `dkimsign`).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::dns::{self, Rr, Zone};
use crate::harness::{read, tool, Smtp, Suite};

const ID: &str = "mx.suite.test";

fn zone(records: &[(&str, Rr)]) -> Zone {
    let mut z: HashMap<String, Vec<Rr>> = HashMap::new();
    for (name, rr) in records {
        z.entry(name.to_string()).or_default().push(rr.clone());
    }
    Arc::new(Mutex::new(z))
}

fn txt(s: &str) -> Rr {
    Rr::Txt(s.to_string())
}

/// Our Authentication-Results header (authserv-id ID) of a delivered file
/// (unfolded: its lines joined with single spaces), or None; there must
/// not be two.
fn auth_results(file: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(file);
    let head = text.split("\n\n").next().unwrap_or("");
    let mut found = None;
    let mut lines = head.lines().peekable();
    while let Some(l) = lines.next() {
        if let Some(v) = l.strip_prefix("Authentication-Results: ") {
            let mut h = v.trim().to_string();
            while let Some(c) = lines.peek().filter(|c| c.starts_with([' ', '\t'])) {
                h.push(' ');
                h.push_str(c.trim());
                lines.next();
            }
            if h.starts_with(ID) {
                assert!(
                    found.is_none(),
                    "two Authentication-Results headers:\n{text}"
                );
                found = Some(h);
            }
        }
    }
    found
}

/// Send `message` from `from` (after HELO `helo`) to demo: its queue id.
fn send(s: &Suite, helo: &str, from: &str, message: &[u8]) -> String {
    let mut c = Smtp::connect(s.port);
    c.cmd(&format!("EHLO {helo}"), 250);
    let id = c.mail(from, &["demo@example.test"], message);
    c.cmd("QUIT", 221);
    id
}

/// The delivered files by their Subject:.
fn by_subject(files: &[PathBuf]) -> HashMap<String, Vec<u8>> {
    files
        .iter()
        .map(|p| {
            let f = read(p);
            let subject = String::from_utf8_lossy(&f)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
                .unwrap_or_default();
            (subject, f)
        })
        .collect()
}

fn message(from: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: demo@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@suite.test>\r\n\r\nHello.\r\n"
    )
    .into_bytes()
}

#[test]
fn spf_every_result_include_chains_and_the_lookup_limits() {
    let mut records =
        vec![
        ("pass.example", txt("v=spf1 ip4:127.0.0.1 -all")),
        ("fail.example", txt("v=spf1 ip4:192.0.2.1 -all")),
        ("soft.example", txt("v=spf1 ip4:192.0.2.1 ~all")),
        ("neutral.example", txt("v=spf1 ?all")),
        ("nospf.example", Rr::Addr("192.0.2.9".parse().unwrap())),
        ("include.example", txt("v=spf1 include:a.include.example -all")),
        ("a.include.example", txt("v=spf1 include:b.include.example -all")),
        ("b.include.example", txt("v=spf1 ip4:127.0.0.0/8 -all")),
        ("helo.example", txt("v=spf1 ip4:127.0.0.1 -all")),
        (
            "void.example",
            txt("v=spf1 a:v1.void.example a:v2.void.example a:v3.void.example ip4:127.0.0.1 -all"),
        ),
        ("dead.example", Rr::Silent),
    ];
    // Eleven includes deep: the eleventh look-up is past RFC 7208 4.6.4's
    // limit of 10, even though the last record would pass.
    let names: Vec<String> = (0..=11).map(|i| format!("l{i}.limit.example")).collect();
    for i in 0..11 {
        let rec = format!("v=spf1 include:{} -all", names[i + 1]);
        records.push((Box::leak(names[i].clone().into_boxed_str()), txt(&rec)));
    }
    records.push((
        Box::leak(names[11].clone().into_boxed_str()),
        txt("v=spf1 ip4:127.0.0.1 -all"),
    ));
    let server = dns::serve(zone(&records));
    let s = Suite::start(
        "spf",
        &[],
        &[
            &format!("dns_servers={server}"),
            &format!("authserv_id={ID}"),
        ],
    );
    let cases = [
        ("a@pass.example", "spf=pass smtp.mailfrom=a@pass.example"),
        ("a@fail.example", "spf=fail smtp.mailfrom=a@fail.example"),
        (
            "a@soft.example",
            "spf=softfail smtp.mailfrom=a@soft.example",
        ),
        (
            "a@neutral.example",
            "spf=neutral smtp.mailfrom=a@neutral.example",
        ),
        ("a@nospf.example", "spf=none smtp.mailfrom=a@nospf.example"),
        (
            "a@include.example",
            "spf=pass smtp.mailfrom=a@include.example",
        ),
        (
            "a@l0.limit.example",
            "spf=permerror smtp.mailfrom=a@l0.limit.example",
        ),
        (
            "a@void.example",
            "spf=permerror smtp.mailfrom=a@void.example",
        ),
        (
            "a@dead.example",
            "spf=temperror smtp.mailfrom=a@dead.example",
        ),
        // The null sender: the HELO name is the identity (RFC 7208 2.4).
        ("", "spf=pass smtp.helo=helo.example"),
    ];
    for (i, (from, _)) in cases.iter().enumerate() {
        let m = message("x@nodmarc.example", &format!("spf-{i}"));
        send(&s, "helo.example", from, &m);
    }
    let got = by_subject(&s.wait_mail("demo@example.test", cases.len()));
    for (i, (from, want)) in cases.iter().enumerate() {
        let file = &got[&format!("spf-{i}")];
        let ar = auth_results(file).expect("an Authentication-Results header");
        assert!(
            ar.starts_with(&format!("{ID}; {want};")),
            "{from:?}: {ar:?} does not start with {want:?}"
        );
        // Nothing signed, no DMARC record, no ARC chain.
        assert!(ar.contains("dkim=none"), "{ar}");
        assert!(ar.contains("dmarc=none"), "{ar}");
        assert!(ar.ends_with("arc=none"), "{ar}");
    }
    // The log line per message, OpenDMARC's shape.
    s.wait_log(": spf=softfail dkim=none dmarc=none arc=none");
    s.wait_log(": spf=permerror dkim=none dmarc=none arc=none");
}

/// dkimpy's key pair `name` (rsa or ed25519) in `dir`: its key file and
/// its TXT record.
fn keygen(dir: &Path, name: &str, ktype: &str) -> (PathBuf, String) {
    let st = Command::new("dknewkey")
        .arg("--ktype")
        .arg(ktype)
        .arg(name)
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .expect("dknewkey runs");
    assert!(st.success(), "dknewkey {ktype}");
    let record = std::fs::read_to_string(dir.join(format!("{name}.dns"))).unwrap();
    (dir.join(format!("{name}.key")), record.trim().to_string())
}

/// `message` signed by dkimsign.
fn sign(key: &Path, selector: &str, domain: &str, alg: &str, message: &[u8]) -> Vec<u8> {
    let mut child = Command::new("dkimsign")
        .arg("--signalg")
        .arg(alg)
        .arg(selector)
        .arg(domain)
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("dkimsign runs");
    child.stdin.take().unwrap().write_all(message).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "dkimsign");
    assert!(out.stdout.starts_with(b"DKIM-Signature:"));
    out.stdout
}

/// `message` with an ARC set (RFC 8617) by dkimpy's `arc_sign`, sealing
/// the message's Authentication-Results of `domain`. (Through Debian's
/// python3, which has python3-dkim: the arcsign script of dkimpy 1.1.4
/// reads the message as text and seals something else.)
fn arc_seal(key: &Path, selector: &str, domain: &str, message: &[u8]) -> Vec<u8> {
    const SEAL: &str = "import sys, dkim\n\
        m = sys.stdin.buffer.read()\n\
        key = open(sys.argv[3], 'rb').read()\n\
        sig = dkim.arc_sign(m, sys.argv[1].encode(), sys.argv[2].encode(), key, sys.argv[2].encode())\n\
        sys.stdout.buffer.write(b''.join(sig) + m)\n";
    let mut child = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(SEAL)
        .arg(selector)
        .arg(domain)
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(message).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "dkim.arc_sign");
    assert!(
        out.stdout.starts_with(b"ARC-Seal:"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    out.stdout
}

#[test]
fn dkim_and_dmarc_alignment_from_an_independent_signer() {
    assert!(tool("dkimsign") && tool("dknewkey") && tool("arcsign"));
    let keys = std::env::temp_dir().join(format!("posthorn-dkim-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&keys);
    std::fs::create_dir_all(&keys).unwrap();
    let (rsa_key, rsa_txt) = keygen(&keys, "rsa", "rsa");
    let (ed_key, ed_txt) = keygen(&keys, "ed", "ed25519");
    let records = vec![
        ("rsa._domainkey.signed.example", txt(&rsa_txt)),
        ("ed._domainkey.signed.example", txt(&ed_txt)),
        ("_dmarc.signed.example", txt("v=DMARC1; p=reject")),
        // SPF passes for the envelope domain, which is not the From: one.
        ("bounces.example", txt("v=spf1 ip4:127.0.0.1 -all")),
        ("relaxed.example", txt("v=spf1 ip4:127.0.0.1 -all")),
        (
            "_dmarc.relaxed.example",
            txt("v=DMARC1; p=reject; aspf=r; adkim=r"),
        ),
        ("strict.example", txt("v=spf1 ip4:127.0.0.1 -all")),
        (
            "_dmarc.strict.example",
            txt("v=DMARC1; p=reject; aspf=s; adkim=s"),
        ),
        ("quarantine.example", txt("v=spf1 -all")),
        ("_dmarc.quarantine.example", txt("v=DMARC1; p=quarantine")),
        // A forwarder that seals with ARC (its own key, the RSA one).
        ("rsa._domainkey.fwd.example", txt(&rsa_txt)),
    ];
    let server = dns::serve(zone(&records));
    let s = Suite::start(
        "dkim",
        &[],
        &[
            &format!("dns_servers={server}"),
            &format!("authserv_id={ID}"),
        ],
    );
    let plain = |subject: &str| message("alice@signed.example", subject);
    let rsa = sign(
        &rsa_key,
        "rsa",
        "signed.example",
        "rsa-sha256",
        &plain("rsa"),
    );
    let ed = sign(
        &ed_key,
        "ed",
        "signed.example",
        "ed25519-sha256",
        &plain("ed"),
    );
    let sha1 = sign(
        &rsa_key,
        "rsa",
        "signed.example",
        "rsa-sha1",
        &plain("sha1"),
    );
    let mut tampered = sign(
        &rsa_key,
        "rsa",
        "signed.example",
        "rsa-sha256",
        &plain("tampered"),
    );
    let at = tampered.len() - "Hello.\r\n".len();
    tampered[at..].copy_from_slice(b"Hellx.\r\n");
    // Both algorithms at once (RFC 8463 recommends it): two results.
    let both = sign(
        &ed_key,
        "ed",
        "signed.example",
        "ed25519-sha256",
        &sign(
            &rsa_key,
            "rsa",
            "signed.example",
            "rsa-sha256",
            &plain("both"),
        ),
    );
    let forwarded = |subject: &str| {
        let m = [
            &b"Authentication-Results: fwd.example; spf=pass smtp.mailfrom=a@signed.example\r\n"[..],
            &plain(subject),
        ]
        .concat();
        arc_seal(&rsa_key, "rsa", "fwd.example", &m)
    };
    let arc = forwarded("arc");
    let mut arc_broken = forwarded("arc-broken");
    let at = arc_broken.len() - "Hello.\r\n".len();
    arc_broken[at..].copy_from_slice(b"Hellx.\r\n");
    let sends: Vec<(&str, Vec<u8>)> = vec![
        ("x@bounces.example", rsa),
        ("x@bounces.example", ed),
        ("x@bounces.example", sha1),
        ("x@bounces.example", tampered),
        ("x@bounces.example", both),
        // SPF alignment: relaxed takes the organizational domain, strict
        // the exact one.
        (
            "x@relaxed.example",
            message("a@news.relaxed.example", "relaxed"),
        ),
        (
            "x@strict.example",
            message("a@news.strict.example", "strict"),
        ),
        (
            "x@quarantine.example",
            message("a@quarantine.example", "quarantine"),
        ),
        ("x@bounces.example", arc),
        ("x@bounces.example", arc_broken),
    ];
    for (from, m) in &sends {
        send(&s, "client.example.org", from, m);
    }
    let got = by_subject(&s.wait_mail("demo@example.test", sends.len()));
    let ar = |subject: &str| auth_results(&got[subject]).expect("Authentication-Results");
    let has = |subject: &str, want: &[&str]| {
        let a = ar(subject);
        for w in want {
            assert!(a.contains(w), "{subject}: {w:?} not in {a:?}");
        }
    };
    has(
        "rsa",
        &[
            "spf=pass smtp.mailfrom=x@bounces.example",
            "dkim=pass header.d=signed.example header.s=rsa",
            "dmarc=pass (p=reject) header.from=signed.example",
        ],
    );
    has(
        "ed",
        &[
            "dkim=pass header.d=signed.example header.s=ed",
            "dmarc=pass (p=reject) header.from=signed.example",
        ],
    );
    has(
        "sha1",
        &[
            "dkim=policy (weak algorithm rsa-sha1) header.d=signed.example",
            "dmarc=fail (p=reject) header.from=signed.example",
        ],
    );
    has(
        "tampered",
        &[
            "dkim=fail (",
            "header.d=signed.example header.s=rsa",
            "dmarc=fail (p=reject) header.from=signed.example",
        ],
    );
    has(
        "both",
        &[
            "dkim=pass header.d=signed.example header.s=ed",
            "dkim=pass header.d=signed.example header.s=rsa",
            "dmarc=pass",
        ],
    );
    has(
        "relaxed",
        &[
            "spf=pass",
            "dmarc=pass (p=reject) header.from=news.relaxed.example",
        ],
    );
    // dmarc_enforce is off: recorded, delivered.
    has(
        "strict",
        &[
            "spf=pass",
            "dmarc=fail (p=reject) header.from=news.strict.example",
        ],
    );
    has(
        "quarantine",
        &[
            "spf=fail",
            "dmarc=fail (p=quarantine) header.from=quarantine.example",
        ],
    );
    // ARC (RFC 8617): a valid chain passes, a body changed after the seal
    // fails it.
    has("arc", &["arc=pass"]);
    has("arc-broken", &["arc=fail"]);
    s.wait_log(": spf=pass dkim=pass (signed.example) dmarc=pass (p=reject) arc=none");
    s.wait_log(": DMARC policy quarantine: delivered");
    // The observations for aggregate reports: one per DMARC-evaluated
    // message, with the policy domain and the disposition applied.
    let dir = s.dir.join("spool/dmarc");
    let lines: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flat_map(|e| {
            std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(lines.len(), sends.len(), "{lines:#?}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("\"news.strict.example\""))
            .count(),
        1,
        "{lines:#?}"
    );
    let _ = std::fs::remove_dir_all(&keys);
}

#[test]
fn forged_authentication_results_are_removed_foreign_ones_stay() {
    let s = Suite::start("forged-ar", &[], &[&format!("authserv_id={ID}")]);
    let m = format!(
        "Authentication-Results: {ID}; dkim=pass header.d=bank.example\r\n\
         Authentication-Results: other.example; spf=pass smtp.mailfrom=a@b.example\r\n\
         Authentication-Results:\r\n MX.Suite.Test; dmarc=pass\r\n\
         From: a@bank.example\r\nSubject: forged\r\n\r\nPay now.\r\n"
    );
    send(&s, "client.example.org", "a@bank.example", m.as_bytes());
    let files = s.wait_mail("demo@example.test", 1);
    let text = String::from_utf8_lossy(&read(&files[0])).into_owned();
    // Ours once (the one posthorn added, first), the foreign one kept.
    assert_eq!(
        text.matches(&format!("Authentication-Results: {ID};"))
            .count(),
        1,
        "{text}"
    );
    assert!(!text.contains("header.d=bank.example"), "{text}");
    assert!(!text.contains("MX.Suite.Test"), "{text}");
    assert!(
        text.contains("Authentication-Results: other.example; spf=pass smtp.mailfrom=a@b.example"),
        "{text}"
    );
    s.wait_log(&format!(
        "removed 2 Authentication-Results header(s) claiming authserv-id {ID}"
    ));
}

#[test]
fn dmarc_enforce_refuses_p_reject_failures_at_the_end_of_data() {
    let records = vec![
        ("strict.example", txt("v=spf1 ip4:127.0.0.1 -all")),
        ("_dmarc.strict.example", txt("v=DMARC1; p=reject; aspf=s")),
        ("testing.example", txt("v=spf1 -all")),
        ("_dmarc.testing.example", txt("v=DMARC1; p=reject; t=y")),
    ];
    let server = dns::serve(zone(&records));
    let s = Suite::start(
        "dmarc-enforce",
        &[],
        &[
            &format!("dns_servers={server}"),
            &format!("authserv_id={ID}"),
            "dmarc_enforce=yes",
        ],
    );
    let mut c = Smtp::connect(s.port);
    c.cmd("EHLO client.example.org", 250);
    c.cmd("MAIL FROM:<x@strict.example>", 250);
    c.cmd("RCPT TO:<demo@example.test>", 250);
    c.cmd("DATA", 354);
    c.raw(&message("ceo@news.strict.example", "refused"));
    c.raw(b".\r\n");
    let r = c.expect(550);
    assert!(
        r[0].starts_with("550 5.7.1 rejected by DMARC policy for news.strict.example"),
        "{r:?}"
    );
    // The session goes on: the next message (t=y: testing mode, where
    // reject is applied as quarantine, so it is delivered).
    c.mail(
        "x@testing.example",
        &["demo@example.test"],
        &message("a@testing.example", "testing"),
    );
    c.cmd("QUIT", 221);
    let files = s.barrier(&["demo@example.test"]);
    let got = by_subject(&files);
    assert!(!got.contains_key("refused"), "{:?}", got.keys());
    let ar = auth_results(&got["testing"]).unwrap();
    assert!(
        ar.contains("dmarc=fail (p=quarantine) header.from=testing.example"),
        "{ar}"
    );
    s.wait_log("reject: END-OF-MESSAGE from ");
    // The refusal is in the observations, as a reject.
    let day = std::fs::read_dir(s.dir.join("spool/dmarc"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    let refused = day
        .lines()
        .find(|l| l.contains("news.strict.example"))
        .expect("an observation of the refused message");
    assert!(
        refused.contains("\"reject\"") || refused.contains("\"Reject\""),
        "{refused}"
    );
}

#[test]
fn an_empty_check_list_adds_no_header() {
    let s = Suite::start(
        "no-checks",
        &[],
        &["smtpd_authentication_checks=", &format!("authserv_id={ID}")],
    );
    send(
        &s,
        "client.example.org",
        "a@pass.example",
        &message("a@pass.example", "off"),
    );
    let files = s.wait_mail("demo@example.test", 1);
    assert_eq!(auth_results(&read(&files[0])), None);
}
