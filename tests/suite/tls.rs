//! TLS in the whole suite: `posthorn dev`'s CA and certificate, STARTTLS
//! with clients that verify it (swaks, Python's smtplib, rustls), the
//! STARTTLS command injection (CVE-2011-0411) over a real socket, and a
//! reload that keeps sessions (plain and TLS) while new connections get the
//! new configuration and certificate.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::harness::{self, read, Smtp, Suite, BIN};

/// One SMTP conversation over any stream: commands out, replies in.
struct Chat<S: Read + Write> {
    r: BufReader<S>,
}

impl<S: Read + Write> Chat<S> {
    fn reply(&mut self) -> (u16, Vec<String>) {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            let n = self.r.read_line(&mut l).expect("read reply");
            assert!(n > 0, "server closed the connection; got so far: {lines:?}");
            let l = l.trim_end().to_string();
            let more = l.as_bytes().get(3) == Some(&b'-');
            lines.push(l);
            if !more {
                break;
            }
        }
        (lines[0][..3].parse().expect("numeric reply"), lines)
    }

    fn raw(&mut self, bytes: &[u8]) {
        let w = self.r.get_mut();
        w.write_all(bytes).unwrap();
        w.flush().unwrap();
    }

    fn cmd(&mut self, line: &str, code: u16) -> Vec<String> {
        self.raw(format!("{line}\r\n").as_bytes());
        let (c, lines) = self.reply();
        assert_eq!(c, code, "{line}: {lines:?}");
        lines
    }
}

type Tls = Chat<StreamOwned<ClientConnection, TcpStream>>;

/// A client configuration that trusts these CA files.
fn trusting(cas: &[&Path]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        for c in CertificateDer::pem_file_iter(ca).expect("CA file") {
            roots.add(c.expect("CA certificate")).unwrap();
        }
    }
    Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Connect, EHLO, STARTTLS (sending `after` in the same write), and verify
/// the server as 127.0.0.1 with `config`.
fn starttls(port: u16, config: Arc<ClientConfig>, after: &[u8]) -> Tls {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut plain = Chat {
        r: BufReader::new(tcp),
    };
    assert_eq!(plain.reply().0, 220);
    let ehlo = plain.cmd("EHLO client.example.org", 250);
    assert!(ehlo.iter().any(|l| l.ends_with("STARTTLS")), "{ehlo:?}");
    let mut line = b"STARTTLS\r\n".to_vec();
    line.extend_from_slice(after);
    plain.raw(&line);
    let (code, lines) = plain.reply();
    assert_eq!(
        (code, lines[0].as_str()),
        (220, "220 2.0.0 Ready to start TLS")
    );
    // Nothing else in the clear: an answer to the injected command would be
    // here, or would break the handshake below.
    assert!(plain.r.buffer().is_empty(), "{:?}", plain.r.buffer());
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = ClientConnection::new(config, name).unwrap();
    let mut tls = Chat {
        r: BufReader::new(StreamOwned::new(conn, plain.r.into_inner())),
    };
    let ehlo = tls.cmd("EHLO client.example.org", 250);
    assert!(
        !ehlo.iter().any(|l| l.contains("STARTTLS")),
        "not offered under TLS: {ehlo:?}"
    );
    tls
}

/// The certificate the server presented.
fn peer_cert(c: &Tls) -> Vec<u8> {
    c.r.get_ref()
        .conn
        .peer_certificates()
        .expect("a certificate")[0]
        .to_vec()
}

fn ca_file(s: &Suite) -> PathBuf {
    s.dir.join("tls/ca.pem")
}

fn mail(c: &mut Chat<impl Read + Write>, subject: &str) {
    c.cmd("MAIL FROM:<alice@example.org>", 250);
    c.cmd("RCPT TO:<demo@example.test>", 250);
    c.cmd("DATA", 354);
    c.raw(format!("Subject: {subject}\r\n\r\nbody\r\n.\r\n").as_bytes());
    assert_eq!(c.reply().0, 250);
}

/// The delivered message whose Subject is `subject`.
fn delivered(s: &Suite, n: usize, subject: &str) -> String {
    let files = s.wait_mail("demo@example.test", n);
    files
        .iter()
        .map(|p| String::from_utf8_lossy(&read(p)).into_owned())
        .find(|m| m.contains(&format!("Subject: {subject}\n")))
        .unwrap_or_else(|| panic!("no message {subject:?} in {files:?}"))
}

fn assert_esmtps(m: &str) {
    assert!(m.contains(") with ESMTPS id "), "{m}");
    assert!(m.contains("\n\t(using TLSv1.3 with cipher TLS_"), "{m}");
}

#[test]
fn dev_makes_a_ca_and_mail_arrives_over_verified_starttls() {
    let s = Suite::start("tls", &[], &[]);
    let ca = ca_file(&s);
    let stdout = std::fs::read_to_string(s.dir.join("stdout")).unwrap();
    assert!(
        stdout.contains(&format!("  CA file:       {}", ca.display())),
        "{stdout}"
    );
    use std::os::unix::fs::PermissionsExt;
    for key in ["key.pem", "ca-key.pem"] {
        let mode = std::fs::metadata(s.dir.join("tls").join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }

    // Python's smtplib with a verifying context (hostname and CA).
    let script = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30) as s:
    s.ehlo("python.example.org")
    assert s.has_extn("starttls")
    s.starttls(context=ctx)
    s.ehlo("python.example.org")
    assert not s.has_extn("starttls")
    refused = s.sendmail("py@example.org", ["demo@example.test"],
                         b"Subject: via smtplib starttls\r\n\r\nsecret\r\n")
    assert refused == {}, refused
print("ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script, &s.port.to_string()])
        .arg(&ca)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "smtplib: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let m = delivered(&s, 1, "via smtplib starttls");
    assert_esmtps(&m);
    s.wait_log(&format!(
        "Anonymous TLS connection established from {}: TLSv1.3 with cipher TLS_",
        harness::local_client()
    ));

    // swaks, verifying the certificate against the dev CA.
    if Command::new("swaks").arg("--version").output().is_err() {
        eprintln!("swaks not installed: skipped");
        return;
    }
    let out = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &s.port.to_string()])
        .args(["--from", "sender@example.org", "--to", "demo@example.test"])
        .args([
            "--header",
            "Subject: via swaks tls",
            "--tls",
            "--tls-verify",
        ])
        .arg("--tls-ca-path")
        .arg(&ca)
        .output()
        .expect("swaks runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "swaks failed:\n{text}");
    assert!(text.contains("<~  250 2.0.0 Ok: queued as"), "{text}");
    assert_esmtps(&delivered(&s, 2, "via swaks tls"));
}

/// CVE-2011-0411 over a real socket: a command pipelined after STARTTLS in
/// the clear is never answered, and does not run under TLS.
#[test]
fn starttls_injection_is_discarded() {
    let s = Suite::start("tlsinject", &[], &[]);
    let config = trusting(&[&ca_file(&s)]);
    let mut c = starttls(s.port, config, b"MAIL FROM:<injected@example.org>\r\n");
    let (code, lines) = {
        c.raw(b"RCPT TO:<demo@example.test>\r\n");
        c.reply()
    };
    assert_eq!(
        (code, lines[0].as_str()),
        (503, "503 5.5.1 Error: need MAIL command"),
        "the injected MAIL never ran"
    );
    mail(&mut c, "after injection");
    c.cmd("QUIT", 221);
    assert_esmtps(&delivered(&s, 1, "after injection"));
    s.wait_log(&format!(
        "improper command pipelining after STARTTLS from {}: MAIL FROM:<injected@example.org>",
        harness::local_client()
    ));
}

/// A CA and a certificate for 127.0.0.1 it signed, for the reload test.
fn second_certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "second test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let paths = (
        dir.join("second-ca.pem"),
        dir.join("second-cert.pem"),
        dir.join("second-key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

fn config_e(s: &Suite, settings: &[String]) {
    let out = Command::new(BIN)
        .args(["config", "-c"])
        .arg(&s.dir)
        .arg("-e")
        .args(settings)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `posthorn reload` drops no session: a plain SMTP transaction begun
/// before it and a TLS session begun before it (with the old certificate)
/// both finish after it, while a new connection gets the new certificate;
/// the old smtpd processes exit once their sessions have ended.
#[test]
fn reload_keeps_sessions_and_switches_the_certificate() {
    let s = Suite::start("tlsreload", &[], &[]);
    let (ca2, cert2, key2) = second_certificate(&s.dir);
    let config = trusting(&[&ca_file(&s), &ca2]);

    let mut plain = Smtp::connect(s.port);
    plain.cmd("EHLO before.example.org", 250);
    plain.cmd("MAIL FROM:<alice@example.org>", 250);
    plain.cmd("RCPT TO:<demo@example.test>", 250);
    let mut tls = starttls(s.port, Arc::clone(&config), b"");
    let old_cert = peer_cert(&tls);
    let old_workers = s.workers("posthorn-smtpd");
    assert!(!old_workers.is_empty());

    config_e(
        &s,
        &[
            format!("smtpd_tls_cert_file={}", cert2.display()),
            format!("smtpd_tls_key_file={}", key2.display()),
        ],
    );
    let reloads = s.log().matches("reload -- version").count();
    s.reload();
    let t = Instant::now();
    while s.log().matches("reload -- version").count() <= reloads {
        assert!(t.elapsed() < Duration::from_secs(30), "master reloaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A new connection gets the new certificate (once the new smtpd runs;
    // the old ones accept nothing more).
    let t = Instant::now();
    let mut fresh = loop {
        let c = starttls(s.port, Arc::clone(&config), b"");
        if peer_cert(&c) != old_cert {
            break c;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "a new connection never got the new certificate"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let new_cert = std::fs::read(&cert2).unwrap();
    let want: Vec<u8> = CertificateDer::from_pem_slice(&new_cert).unwrap().to_vec();
    assert_eq!(peer_cert(&fresh), want);

    // The sessions from before the reload carry on.
    plain.cmd("DATA", 354);
    plain.raw(b"Subject: begun before the reload\r\n\r\nx\r\n.\r\n");
    plain.expect(250);
    plain.cmd("QUIT", 221);
    mail(&mut tls, "tls session from before the reload");
    assert_eq!(peer_cert(&tls), old_cert);
    tls.cmd("QUIT", 221);
    mail(&mut fresh, "after the reload");
    fresh.cmd("QUIT", 221);
    for subject in [
        "begun before the reload",
        "tls session from before the reload",
        "after the reload",
    ] {
        delivered(&s, 3, subject);
    }
    // With their sessions over, the old smtpd processes have drained away.
    let t = Instant::now();
    while s
        .workers("posthorn-smtpd")
        .iter()
        .any(|p| old_workers.contains(p))
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "old smtpd processes still running: {old_workers:?}; log:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// As root, the key stays readable by root only, and smtpd, which runs as
/// mail_owner, still serves TLS: it read the key before dropping privileges.
#[test]
fn as_root_smtpd_reads_its_key_before_dropping_privileges() {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("as_root_smtpd_reads_its_key_before_dropping_privileges: needs root; skipped");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    let s = Suite::start("tlsroot", &[], &["mail_owner=nobody"]);
    let key = std::fs::metadata(s.dir.join("tls/key.pem")).unwrap();
    assert_eq!((key.uid(), key.mode() & 0o777), (0, 0o600));
    let workers = s.workers("posthorn-smtpd");
    assert!(!workers.is_empty());
    for pid in &workers {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        assert_eq!(uid, Some(nobody.uid.as_raw()), "smtpd {pid} runs as nobody");
    }
    let mut c = starttls(s.port, trusting(&[&ca_file(&s)]), b"");
    c.cmd("NOOP", 250);
    c.cmd("QUIT", 221);
    s.wait_log(&format!(
        "Anonymous TLS connection established from {}",
        harness::local_client()
    ));
}
