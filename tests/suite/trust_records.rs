//! Issue 11's DNS records and DMARC aggregate reports: `posthorn dns`
//! prints every record of a running dev suite's domain (the TLSA digest and
//! the MTA-STS id computed here with openssl, not by posthorn);
//! `posthorn dns --check` against the tests' loopback DNS server says ok
//! for each when the zone has them, and names the missing and the wrong
//! ones otherwise (exit 1); `posthorn dmarc report` turns observations
//! into gzip-compressed RFC 7489 reports that mail-auth reads back with
//! the right counts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use posthorn_trust::dmarc_store::{self, Observation};
use posthorn_trust::mail_auth::report::{
    ActionDisposition, DmarcResult, PolicyPublished, Record, Report,
};

use crate::dns::{serve, Rr};
use crate::harness::{tool, Suite, BIN};

fn posthorn(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("posthorn runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `sh -c CMD`'s standard output, trimmed; the command must succeed.
fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(out.status.success(), "{cmd}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

/// SRV RDATA (RFC 2782): priority, weight, port, target.
fn srv(priority: u16, port: u16, target: &str) -> Rr {
    let mut d = Vec::new();
    d.extend_from_slice(&priority.to_be_bytes());
    d.extend_from_slice(&1u16.to_be_bytes());
    d.extend_from_slice(&port.to_be_bytes());
    for label in target.split('.') {
        d.push(label.len() as u8);
        d.extend_from_slice(label.as_bytes());
    }
    d.push(0);
    Rr::Raw(33, d)
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn dns_records_printed_and_checked() {
    if !tool("openssl") {
        return;
    }
    let zone: crate::dns::Zone = Arc::new(Mutex::new(HashMap::new()));
    let server = serve(zone.clone());
    let mut s = Suite::start(
        "dns-records",
        &[],
        &[&format!("dns_servers={server}"), "mta_sts_mode=enforce"],
    );
    let dir = s.dir.display().to_string();
    let cert = s.dir.join("tls/cert.pem");
    // RFC 6698 2.1: selector 1 = the DER SubjectPublicKeyInfo, matching
    // type 1 = its SHA-256.
    let tlsa = sh(&format!(
        "openssl x509 -in {} -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r",
        cert.display()
    ));
    let tlsa = tlsa.split_whitespace().next().unwrap().to_string();
    assert_eq!(tlsa.len(), 64, "{tlsa}");

    // A DKIM key, made by posthorn dkim keygen (trust::sign); its record
    // as that command prints it.
    let out = posthorn(&[
        "dkim",
        "keygen",
        "-c",
        &dir,
        "-s",
        "s1",
        "-a",
        "ed25519",
        "example.test",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let keygen = text(&out.stdout);
    let dkim = keygen
        .lines()
        .find_map(|l| l.strip_prefix("s1._domainkey.example.test. IN TXT \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{keygen}"))
        .to_string();
    assert!(dkim.starts_with("v=DKIM1; k=ed25519; p="), "{dkim}");

    let policy_file = s.dir.join("mta-sts.txt");
    let out = posthorn(&[
        "dns",
        "-c",
        &dir,
        "--mta-sts-policy",
        policy_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let policy = std::fs::read_to_string(&policy_file).unwrap();
    assert_eq!(
        policy,
        "version: STSv1\r\nmode: enforce\r\nmx: mail.example.test\r\nmax_age: 604800\r\n"
    );
    let id = sh(&format!(
        "openssl dgst -sha256 -r {}",
        policy_file.display()
    ));
    let id = &id[..32];
    let records = [
        "example.test.\tIN MX 10 mail.example.test.".to_string(),
        "example.test.\tIN TXT \"v=spf1 mx -all\"".into(),
        format!("s1._domainkey.example.test.\tIN TXT \"{dkim}\""),
        "_dmarc.example.test.\tIN TXT \"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test\"".into(),
        format!("_mta-sts.example.test.\tIN TXT \"v=STSv1; id={id}\""),
        "_smtp._tls.example.test.\tIN TXT \"v=TLSRPTv1; rua=mailto:postmaster@example.test\"".into(),
        format!("_25._tcp.mail.example.test.\tIN TLSA 3 1 1 {tlsa}"),
        "_imaps._tcp.example.test.\tIN SRV 0 1 993 mail.example.test.".into(),
        "_imap._tcp.example.test.\tIN SRV 10 1 143 mail.example.test.".into(),
        "_pop3s._tcp.example.test.\tIN SRV 0 1 995 mail.example.test.".into(),
        "_submissions._tcp.example.test.\tIN SRV 0 1 465 mail.example.test.".into(),
        "_submission._tcp.example.test.\tIN SRV 10 1 587 mail.example.test.".into(),
    ];
    // Every record, in this order, and nothing else but comments.
    let got: Vec<&str> = printed.lines().filter(|l| !l.starts_with(';')).collect();
    assert_eq!(got, records, "{printed}");
    for comment in [
        "; MX: mail for example.test goes to mail.example.test.",
        "; DKIM: one key record per selector.",
    ] {
        assert!(printed.lines().any(|l| l == comment), "{printed}");
    }

    // The zone as printed: every check is ok.
    {
        let mut z = zone.lock().unwrap();
        let mut add = |name: &str, rr: Rr| z.entry(name.to_string()).or_default().push(rr);
        add("example.test", Rr::Mx(10, "mail.example.test".into()));
        add("example.test", Rr::Txt("v=spf1 mx -all".into()));
        add("example.test", Rr::Txt("unrelated=1".into()));
        add("s1._domainkey.example.test", Rr::Txt(dkim.clone()));
        add("mail.example.test", Rr::Addr("127.0.0.1".parse().unwrap()));
        add("mail.example.test", Rr::Addr("::1".parse().unwrap()));
        add(
            "_dmarc.example.test",
            Rr::Txt("v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test".into()),
        );
        add(
            "_mta-sts.example.test",
            Rr::Txt(format!("v=STSv1; id={id}")),
        );
        add(
            "_smtp._tls.example.test",
            Rr::Txt("v=TLSRPTv1; rua=mailto:postmaster@example.test".into()),
        );
        add(
            "_25._tcp.mail.example.test",
            Rr::Tlsa(3, 1, 1, unhex(&tlsa)),
        );
        for (name, prio, port) in [
            ("_imaps._tcp", 0, 993),
            ("_imap._tcp", 10, 143),
            ("_pop3s._tcp", 0, 995),
            ("_submissions._tcp", 0, 465),
            ("_submission._tcp", 10, 587),
        ] {
            add(
                &format!("{name}.example.test"),
                srv(prio, port, "mail.example.test"),
            );
        }
    }
    let out = posthorn(&["dns", "-c", &dir, "--check", "example.test"]);
    assert_eq!(
        text(&out.stdout),
        "MX example.test.: ok\n\
         SPF example.test.: ok\n\
         DKIM s1._domainkey.example.test.: ok\n\
         DMARC _dmarc.example.test.: ok\n\
         MTA-STS _mta-sts.example.test.: ok\n\
         TLS-RPT _smtp._tls.example.test.: ok\n\
         TLSA _25._tcp.mail.example.test.: ok\n\
         SRV _imaps._tcp.example.test.: ok\n\
         SRV _imap._tcp.example.test.: ok\n\
         SRV _pop3s._tcp.example.test.: ok\n\
         SRV _submissions._tcp.example.test.: ok\n\
         SRV _submission._tcp.example.test.: ok\n",
        "{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // TLS-RPT gone, TLSA of another key, an SPF record that parses but
    // does not let this host (127.0.0.1 and ::1) send, another DKIM key.
    {
        let mut z = zone.lock().unwrap();
        z.remove("_smtp._tls.example.test");
        z.insert(
            "s1._domainkey.example.test".into(),
            vec![Rr::Txt("v=DKIM1; k=ed25519; p=AAAA".into())],
        );
        z.insert(
            "_25._tcp.mail.example.test".into(),
            vec![Rr::Tlsa(3, 1, 1, vec![0xab; 32])],
        );
        z.insert(
            "example.test".into(),
            vec![
                Rr::Mx(10, "mail.example.test".into()),
                Rr::Txt("v=spf1 ip4:192.0.2.1 -all".into()),
            ],
        );
    }
    let out = posthorn(&["dns", "-c", &dir, "--check"]);
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 12, "{stdout}");
    assert_eq!(
        lines[1],
        "SPF example.test.: wrong: found \"v=spf1 ip4:192.0.2.1 -all\" (127.0.0.1 gets fail, \
         ::1 gets fail), expected \"v=spf1 mx -all\""
    );
    assert_eq!(
        lines[2],
        format!(
            "DKIM s1._domainkey.example.test.: wrong: found \"v=DKIM1; k=ed25519; p=AAAA\", \
             expected \"{dkim}\""
        )
    );
    assert_eq!(lines[5], "TLS-RPT _smtp._tls.example.test.: missing");
    assert_eq!(
        lines[6],
        format!(
            "TLSA _25._tcp.mail.example.test.: wrong: found 3 1 1 {}, expected 3 1 1 {tlsa}",
            "ab".repeat(32)
        )
    );
    for (i, l) in lines.iter().enumerate() {
        if ![1, 2, 5, 6].contains(&i) {
            assert!(l.ends_with(": ok"), "{stdout}");
        }
    }
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("4 of 12 records of example.test are not as they should be"),
        "{}",
        text(&out.stderr)
    );
    s.stop();
}

fn observation(time: u64, domain: &str, ip: &str, dkim: DmarcResult) -> Observation {
    let policy = PolicyPublished {
        domain: domain.into(),
        ..Default::default()
    };
    let mut record = Record::default();
    record.row.count = 1;
    record.row.source_ip = Some(ip.parse::<IpAddr>().unwrap());
    record.row.policy_evaluated.dkim = dkim;
    record.row.policy_evaluated.spf = DmarcResult::Pass;
    record.row.policy_evaluated.disposition = ActionDisposition::None;
    record.identifiers.header_from = domain.into();
    record.identifiers.envelope_from = domain.into();
    Observation {
        time,
        policy,
        record,
    }
}

fn read_report(path: &Path) -> Report {
    use std::io::Read;
    let gz = std::fs::read(path).unwrap();
    let mut xml = Vec::new();
    posthorn_trust::mail_auth::flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut xml)
        .unwrap();
    Report::parse_xml(&xml).unwrap()
}

#[test]
fn dmarc_aggregate_reports_from_observations() {
    let base = std::env::temp_dir().join(format!("posthorn-dmarc-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("spool/dmarc")).unwrap();
    std::fs::create_dir_all(base.join("out")).unwrap();
    std::fs::write(
        base.join("main.cf"),
        format!(
            "queue_directory = {}/spool\nmyhostname = mail.posthorn.test\nmydomain = posthorn.test\n\
             dmarc_report_organization = Posthorn Test\n",
            base.display()
        ),
    )
    .unwrap();
    let store = base.join("spool/dmarc");
    // 2026-11-29 (UTC): 1795910400 .. 1795996799; one the day after.
    let day = 1_795_910_400;
    for o in [
        observation(day + 10, "a.example", "192.0.2.1", DmarcResult::Pass),
        observation(day + 20, "a.example", "192.0.2.1", DmarcResult::Pass),
        observation(day + 30, "a.example", "192.0.2.2", DmarcResult::Fail),
        observation(day + 40, "b.example", "198.51.100.7", DmarcResult::Pass),
        observation(day + 50, "a.example", "192.0.2.1", DmarcResult::Pass),
        observation(day + 86_400, "c.example", "192.0.2.3", DmarcResult::Pass),
    ] {
        dmarc_store::append(&store, &o).unwrap();
    }
    let dir = base.display().to_string();
    let out_dir = base.join("out");
    let out = posthorn(&[
        "dmarc",
        "report",
        "-c",
        &dir,
        "--date",
        "2026-11-29",
        "--output",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let a_file = out_dir.join("posthorn.test!a.example!1795910400!1795996799.xml.gz");
    let b_file = out_dir.join("posthorn.test!b.example!1795910400!1795996799.xml.gz");
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}: a.example, 4 messages in 2 rows\n{}: b.example, 1 messages in 1 rows\n",
            a_file.display(),
            b_file.display()
        )
    );
    let a = read_report(&a_file);
    assert_eq!(a.domain(), "a.example");
    assert_eq!(a.org_name(), "Posthorn Test");
    assert_eq!(a.email(), "postmaster@posthorn.test");
    assert_eq!(
        (a.date_range_begin(), a.date_range_end()),
        (1_795_910_400, 1_795_996_799)
    );
    let rows: Vec<(String, u32, DmarcResult)> = a
        .records()
        .iter()
        .map(|r| {
            (
                r.source_ip().unwrap().to_string(),
                r.count(),
                r.dmarc_dkim_result(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("192.0.2.1".to_string(), 3, DmarcResult::Pass),
            ("192.0.2.2".to_string(), 1, DmarcResult::Fail)
        ]
    );
    let b = read_report(&b_file);
    assert_eq!(b.records().len(), 1);
    assert_eq!(b.records()[0].count(), 1);

    // One domain only; a day without observations writes nothing.
    std::fs::remove_file(&a_file).unwrap();
    let out = posthorn(&[
        "dmarc",
        "report",
        "-c",
        &dir,
        "--date",
        "2026-11-30",
        "--domain",
        "C.example.",
        "--output",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(
            "posthorn.test!c.example!1795996800!1796083199.xml.gz: c.example, 1 messages in 1 rows"
        ),
        "{}",
        text(&out.stdout)
    );
    let out = posthorn(&[
        "dmarc",
        "report",
        "-c",
        &dir,
        "--date",
        "2026-11-28",
        "--output",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(text(&out.stdout).is_empty());
    assert!(text(&out.stderr).contains("no DMARC observations for 2026-11-28"));
    let out = posthorn(&["dmarc", "report", "-c", &dir, "--date", "2026-02-30"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 2);
    let _ = std::fs::remove_dir_all(&base);
}

/// The subject and the gzip attachment (decompressed into `xml`) of a
/// delivered report, as Python's email package reads them.
const ATTACHMENT: &str = r#"
import sys, gzip, email
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=policy.default)
print(m["Subject"])
print(m["Auto-Submitted"])
parts = [p for p in m.walk() if p.get_content_type() == "application/gzip"]
assert len(parts) == 1, [p.get_content_type() for p in m.walk()]
print(parts[0].get_filename())
open(sys.argv[2], "wb").write(gzip.decompress(parts[0].get_payload(decode=True)))
"#;

#[test]
fn dmarc_reports_mailed_to_the_allowed_rua() {
    if !tool("python3") {
        return;
    }
    let zone: crate::dns::Zone = Arc::new(Mutex::new(HashMap::new()));
    {
        let mut z = zone.lock().unwrap();
        z.insert(
            "_dmarc.a.example".into(),
            vec![Rr::Txt(
                "v=DMARC1; p=none; rua=mailto:demo@example.test,mailto:spy@elsewhere.example"
                    .into(),
            )],
        );
        // RFC 7489 7.1: example.test takes a.example's reports,
        // elsewhere.example does not.
        z.insert(
            "a.example._report._dmarc.example.test".into(),
            vec![Rr::Txt("v=DMARC1".into())],
        );
        z.insert(
            "_dmarc.b.example".into(),
            vec![Rr::Txt("v=DMARC1; p=reject".into())],
        );
    }
    let server = serve(zone);
    let mut s = Suite::start("dmarc-mail", &[], &[&format!("dns_servers={server}")]);
    let store = s.dir.join("spool/dmarc");
    std::fs::create_dir_all(&store).unwrap();
    let day = 1_795_910_400;
    for o in [
        observation(day + 1, "a.example", "192.0.2.1", DmarcResult::Pass),
        observation(day + 2, "b.example", "192.0.2.5", DmarcResult::Fail),
        observation(day + 3, "a.example", "192.0.2.1", DmarcResult::Pass),
    ] {
        dmarc_store::append(&store, &o).unwrap();
    }
    let out_dir = s.dir.join("reports");
    std::fs::create_dir_all(&out_dir).unwrap();
    let dir = s.dir.display().to_string();
    let out = posthorn(&[
        "dmarc",
        "report",
        "-c",
        &dir,
        "--date",
        "2026-11-29",
        "--output",
        out_dir.to_str().unwrap(),
        "--mail",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l == "a.example: report sent to demo@example.test"),
        "{stdout}"
    );
    assert!(
        stderr.contains(
            "a.example: not sending to spy@elsewhere.example: its domain publishes no \
             a.example._report._dmarc record"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("b.example: no report address (rua) to send to"),
        "{stderr}"
    );
    let mail = s.wait_mail("demo@example.test", 1);
    let xml = s.dir.join("report.xml");
    let read = Command::new("python3")
        .args(["-c", ATTACHMENT])
        .arg(&mail[0])
        .arg(&xml)
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", text(&read.stderr));
    let head = text(&read.stdout);
    let lines: Vec<&str> = head.lines().collect();
    assert!(
        lines[0].starts_with("Report Domain: a.example Submitter: example.test Report-ID: <"),
        "{head}"
    );
    assert_eq!(lines[1], "auto-generated");
    assert_eq!(
        lines[2],
        "example.test!a.example!1795910400!1795996799.xml.gz"
    );
    let report = Report::parse_xml(&std::fs::read(&xml).unwrap()).unwrap();
    assert_eq!(report.domain(), "a.example");
    assert_eq!(report.records().len(), 1);
    assert_eq!(report.records()[0].count(), 2);
    // Nothing else arrived: the barrier message is the next one.
    let after = s.barrier(&["demo@example.test"]);
    assert_eq!(after.len(), 1, "{after:?}");
    s.stop();
}
