//! MTA-STS (RFC 8461) in posthorn-smtp and TLS-RPT (RFC 8460) in
//! `posthorn tlsrpt`, against the whole suite.
//!
//! The test brings a CA of its own (rcgen), an HTTPS server on loopback
//! serving policies by Host (posthorn is pointed at its port with the
//! testing-only smtp_mta_sts_port), the loopback DNS server with the
//! `_mta-sts` TXT records, MX and A records, and the SMTP sink of
//! outbound.rs offering STARTTLS with a certificate chosen by SNI: a valid
//! one for mx.good.example, one for another name (wrong.example) for every
//! other MX host. Domains:
//!
//! - enforce.example: mode enforce, bad certificate: deferred (4.7.5),
//!   never sent; a certificate-host-mismatch failure recorded.
//! - good.example: mode enforce, good certificate: delivered, "Verified";
//!   a second message uses the cached policy (one fetch).
//! - testing.example: mode testing, bad certificate: delivered, the
//!   failure logged and recorded.
//! - mismatch.example: mode enforce, its MX host not in the policy:
//!   deferred (4.7.5) without a connection.
//! - broken.example: a TXT record but no policy to fetch (404): delivered
//!   as without a policy, sts-policy-fetch-error recorded.
//!
//! `posthorn tlsrpt DOMAIN --date DAY` then shows the successes and
//! failures per domain in RFC 8460's JSON.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::dns::{serve, Rr, Zone};
use crate::harness::{Smtp, Suite, BIN};
use crate::outbound::{sink, wait_for, Shared};

/// The test's CA: writes ca.pem into `dir`; issues certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(dir: &Path) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "sts test CA");
        let cert = p.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        Ca { cert, key }
    }

    /// A certificate for `names` and its key, as rustls takes them.
    fn issue(
        &self,
        names: &[&str],
    ) -> (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        PrivateKeyDer<'static>,
    ) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

/// The sink's certificate by SNI: the good one for mx.good.example, the
/// wrong name for everyone else.
#[derive(Debug)]
struct BySni {
    good: Arc<CertifiedKey>,
    wrong: Arc<CertifiedKey>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            if hello.server_name() == Some("mx.good.example") {
                &self.good
            } else {
                &self.wrong
            },
        ))
    }
}

fn certified(
    (certs, key): (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        PrivateKeyDer<'static>,
    ),
) -> Arc<CertifiedKey> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider.key_provider.load_private_key(key).unwrap();
    Arc::new(CertifiedKey::new(certs, signing))
}

fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(resolver),
    )
}

#[derive(Debug)]
struct One(Arc<CertifiedKey>);

impl ResolvesServerCert for One {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// Fetches per Host.
type Fetches = Arc<Mutex<HashMap<String, usize>>>;

/// The policy server: GET /.well-known/mta-sts.txt by Host (404 for a host
/// without a policy). Its port.
fn policy_server(
    config: Arc<ServerConfig>,
    policies: HashMap<String, String>,
    fetches: Fetches,
) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let policies = Arc::new(policies);
    std::thread::spawn(move || {
        for tcp in l.incoming().flatten() {
            let (config, policies, fetches) = (
                Arc::clone(&config),
                Arc::clone(&policies),
                Arc::clone(&fetches),
            );
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)));
                let mut s = StreamOwned::new(ServerConnection::new(config).unwrap(), tcp);
                let mut req = Vec::new();
                let mut b = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16384 {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&req).into_owned();
                let host = req
                    .lines()
                    .find_map(|l| l.strip_prefix("Host: "))
                    .unwrap_or("")
                    .trim()
                    .to_string();
                *fetches.lock().unwrap().entry(host.clone()).or_default() += 1;
                let found = req
                    .starts_with("GET /.well-known/mta-sts.txt HTTP/1.1\r\n")
                    .then(|| policies.get(&host))
                    .flatten();
                let reply = match found {
                    Some(p) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{p}",
                        p.len()
                    ),
                    None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
                };
                let _ = s.write_all(reply.as_bytes());
                s.conn.send_close_notify();
                let _ = s.flush();
            });
        }
    });
    port
}

fn policy(mode: &str, mx: &str) -> String {
    format!("version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n")
}

/// The TLS-RPT report of `domain` for every day posthorn-smtp recorded
/// (the test may run across midnight): (successes, failures, result
/// types without repeats). A deferred message may have been tried again
/// by now, and a connection kept for the next message is one session:
/// the counts are at least what the test caused.
pub(crate) fn tlsrpt(s: &Suite, domain: &str, kind: &str) -> (u64, u64, Vec<String>) {
    let mut out = (0, 0, Vec::new());
    let mut days: Vec<PathBuf> = std::fs::read_dir(s.dir.join("spool/tlsrpt"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    days.sort();
    assert!(!days.is_empty(), "no TLS-RPT day file");
    for day in days {
        let date = day.file_stem().unwrap().to_str().unwrap().to_string();
        let o = Command::new(BIN)
            .args(["tlsrpt", domain, "--date", &date, "-c"])
            .arg(&s.dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        if kind == "sts" {
            assert_eq!(r["organization-name"], "sts-test.example", "{r}");
            assert_eq!(r["contact-info"], "tlsrpt@sts-test.example", "{r}");
        }
        assert_eq!(
            r["date-range"]["start-datetime"],
            format!("{date}T00:00:00Z")
        );
        for p in r["policies"].as_array().unwrap() {
            assert_eq!(p["policy"]["policy-domain"], domain);
            assert_eq!(p["policy"]["policy-type"], kind);
            out.0 += p["summary"]["total-successful-session-count"]
                .as_u64()
                .unwrap();
            out.1 += p["summary"]["total-failure-session-count"]
                .as_u64()
                .unwrap();
            for f in p["failure-details"].as_array().unwrap() {
                let t = f["result-type"].as_str().unwrap().to_string();
                if !out.2.contains(&t) {
                    out.2.push(t);
                }
            }
        }
    }
    out
}

#[test]
fn mta_sts_enforce_defers_on_a_bad_certificate_testing_reports_and_tlsrpt_shows_both() {
    let certs = std::env::temp_dir().join(format!("posthorn-sts-ca-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&certs);
    std::fs::create_dir_all(&certs).unwrap();
    let ca = Ca::new(&certs);

    // The policy server, for every mta-sts.DOMAIN.
    let domains = ["enforce", "good", "testing", "mismatch", "broken"];
    let sts_names: Vec<String> = domains
        .iter()
        .map(|d| format!("mta-sts.{d}.example"))
        .collect();
    let sts_refs: Vec<&str> = sts_names.iter().map(String::as_str).collect();
    let mut policies = HashMap::new();
    policies.insert(
        "mta-sts.enforce.example".into(),
        policy("enforce", "mx.enforce.example"),
    );
    policies.insert(
        "mta-sts.good.example".into(),
        policy("enforce", "*.good.example"),
    );
    policies.insert(
        "mta-sts.testing.example".into(),
        policy("testing", "mx.testing.example"),
    );
    policies.insert(
        "mta-sts.mismatch.example".into(),
        policy("enforce", "mx.elsewhere.example"),
    );
    let fetches: Fetches = Arc::default();
    let https_port = policy_server(
        server_config(Arc::new(One(certified(ca.issue(&sts_refs))))),
        policies,
        Arc::clone(&fetches),
    );

    // The SMTP sink: the MX host of every domain.
    let state: Shared = Arc::default();
    state.lock().unwrap().tls = Some(server_config(Arc::new(BySni {
        good: certified(ca.issue(&["mx.good.example"])),
        wrong: certified(ca.issue(&["wrong.example"])),
    })));
    let smtp_port = sink(Arc::clone(&state));

    let zone: Zone = Arc::default();
    {
        let mut z = zone.lock().unwrap();
        let lo = || Rr::Addr("127.0.0.1".parse().unwrap());
        for d in domains {
            z.insert(
                format!("{d}.example"),
                vec![Rr::Mx(10, format!("mx.{d}.example"))],
            );
            z.insert(format!("mx.{d}.example"), vec![lo()]);
            z.insert(format!("mta-sts.{d}.example"), vec![lo()]);
            z.insert(
                format!("_mta-sts.{d}.example"),
                vec![Rr::Txt("v=STSv1; id=20261130T000000;".into())],
            );
        }
    }
    let dns = serve(Arc::clone(&zone));
    let s = Suite::start(
        "trust-sts",
        &[],
        &[
            &format!("dns_servers={dns}"),
            &format!("smtp_tcp_port={smtp_port}"),
            &format!("smtp_mta_sts_port={https_port}"),
            &format!("smtp_tls_CAfile={}", certs.join("ca.pem").display()),
            "mynetworks=127.0.0.0/8",
            "tlsrpt_organization=sts-test.example",
            "tlsrpt_contact=tlsrpt@sts-test.example",
        ],
    );
    let mut c = Smtp::connect(s.port);
    c.cmd("EHLO trusted.example.org", 250);

    // enforce, bad certificate: deferred, why logged, nothing sent.
    let id = c.mail(
        "demo@example.test",
        &["a@enforce.example"],
        b"Subject: e\r\n\r\nx\r\n",
    );
    s.wait_log(&format!(
        "{id}: to=<a@enforce.example>, relay=mx.enforce.example:{smtp_port}, "
    ));
    s.wait_log(&format!(
        "dsn=4.7.5, status=deferred (MTA-STS policy of enforce.example (enforce): TLS handshake with 127.0.0.1:{smtp_port} failed: invalid peer certificate: "
    ));
    s.wait_log(
        "MTA-STS policy for enforce.example: mode enforce, id 20261130T000000, max_age 86400",
    );

    // enforce, good certificate: delivered under verified TLS; twice, the
    // second time from the cache.
    for rcpt in ["b@good.example", "b2@good.example"] {
        c.mail("demo@example.test", &[rcpt], b"Subject: g\r\n\r\nx\r\n");
        let got = wait_for(&state, &s, rcpt);
        assert!(got.iter().find(|m| m.rcpts[0] == rcpt).unwrap().tls);
    }
    s.wait_log(&format!(
        "Verified TLS connection established to mx.good.example[127.0.0.1]:{smtp_port}: TLSv1.3"
    ));
    assert_eq!(
        fetches.lock().unwrap()["mta-sts.good.example"],
        1,
        "the policy is cached"
    );
    let cached = std::fs::read_to_string(s.dir.join("spool/mta-sts/good.example")).unwrap();
    assert!(cached.contains("\"id\":\"20261130T000000\""), "{cached}");

    // testing, bad certificate: delivered, the failure logged.
    c.mail(
        "demo@example.test",
        &["t@testing.example"],
        b"Subject: t\r\n\r\nx\r\n",
    );
    wait_for(&state, &s, "t@testing.example");
    s.wait_log("MTA-STS policy of testing.example (testing) not met: certificate of mx.testing.example: invalid peer certificate: ");

    // enforce, the MX host not in the policy: deferred, no connection.
    let id = c.mail(
        "demo@example.test",
        &["m@mismatch.example"],
        b"Subject: m\r\n\r\nx\r\n",
    );
    s.wait_log(&format!(
        "{id}: to=<m@mismatch.example>, relay=none, delay="
    ));
    s.wait_log("dsn=4.7.5, status=deferred (MTA-STS policy of mismatch.example (enforce): no MX host matches the policy (MX: mx.mismatch.example; policy mx: mx.elsewhere.example))");

    // A TXT record without a policy to fetch: delivered as without one.
    c.mail(
        "demo@example.test",
        &["f@broken.example"],
        b"Subject: f\r\n\r\nx\r\n",
    );
    wait_for(&state, &s, "f@broken.example");
    s.wait_log("MTA-STS policy for broken.example cannot be fetched: mta-sts.broken.example: HTTP status 404");

    // The barrier: good.example's and later mail arrived, enforce.example's
    // and mismatch.example's never did.
    let got = state.lock().unwrap().messages.clone();
    for never in ["a@enforce.example", "m@mismatch.example"] {
        assert!(
            !got.iter().any(|m| m.rcpts.iter().any(|r| r == never)),
            "{never} was sent"
        );
    }

    let failed = |domain: &str, result: &str| {
        let (ok, failed, types) = tlsrpt(&s, domain, "sts");
        assert!(ok == 0 && failed >= 1, "{domain}: {ok} {failed}");
        assert_eq!(types, [result], "{domain}");
    };
    failed("enforce.example", "certificate-host-mismatch");
    failed("testing.example", "certificate-host-mismatch");
    failed("mismatch.example", "validation-failure");
    failed("broken.example", "sts-policy-fetch-error");
    let (ok, failed, types) = tlsrpt(&s, "good.example", "sts");
    assert!((1..=2).contains(&ok) && failed == 0 && types.is_empty());
    // A domain without sessions: a report without policies.
    assert_eq!(tlsrpt(&s, "nothing.example", "sts"), (0, 0, Vec::new()));
    // A bad date is refused.
    let o = Command::new(BIN)
        .args(["tlsrpt", "good.example", "--date", "2026-02-30", "-c"])
        .arg(&s.dir)
        .output()
        .unwrap();
    assert!(!o.status.success());
    drop(s);
    let _ = std::fs::remove_dir_all(&certs);
}
