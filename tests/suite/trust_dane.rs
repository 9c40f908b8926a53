//! DANE in posthorn-smtp (RFC 7672), against the suite's DNS server with
//! DNSSEC (dns.rs: a test root key, given to posthorn as
//! dnssec_trust_anchor_file) and the outbound sink (outbound.rs, with
//! posthorn dev's certificate). smtp_tls_security_level = dane; the MX
//! hosts all lead to the sink, on its port (smtp_tcp_port), so the TLSA
//! names are `_PORT._tcp.MXHOST`:
//! - dane.test: signed MX and a signed TLSA 3 1 1 of the sink's key:
//!   delivered, `Verified TLS`, the log names the record that matched;
//! - bad.test: signed, a TLSA 3 1 1 of another key: deferred 4.7.5, and
//!   nothing arrives (a later message to dane.test is the barrier);
//! - plain.test: an insecure delegation (signed NSEC without DS), TLSA
//!   unsigned: DANE does not apply, `may`: delivered over untrusted TLS;
//! - forged.test: signed MX, a TLSA 3 1 1 of the sink's key whose
//!   signature is broken (bogus): the records are not believed, deferred
//!   4.7.5, nothing sent;
//! - pkix.test: signed, only a PKIX-EE TLSA record (unusable, RFC 7672
//!   3.1.3): TLS required but not authenticated, delivered `Untrusted`;
//!   pkixonly.test, the same at dane-only: deferred;
//! - bogusmx.test: its MX records' signature is broken: deferred;
//! - notlsa.test, dane-only in smtp_tls_policy_maps: signed, a signed
//!   denial of its TLSA records: deferred 4.7.5, nothing sent.

use std::sync::Arc;

use crate::dns::{serve, trust_anchor, Rr, Zone};
use crate::harness::Suite;
use crate::outbound::{rustls_config, sink, wait_for, Shared};

fn sha256(b: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)
        .as_ref()
        .to_vec()
}

fn name(host: &str) -> Vec<u8> {
    let mut d = Vec::new();
    for l in host.split('.') {
        d.push(l.len() as u8);
        d.extend_from_slice(l.as_bytes());
    }
    d.push(0);
    d
}

#[test]
fn dane_ee_match_mismatch_insecure_fallback_and_dane_only() {
    let state: Shared = Arc::default();
    let port = sink(Arc::clone(&state));
    let zone: Zone = Arc::default();
    let lo = Rr::Addr("127.0.0.1".parse().unwrap());
    {
        let mut z = zone.lock().unwrap();
        for d in [
            "dane.test",
            "bad.test",
            "notlsa.test",
            "forged.test",
            "pkix.test",
            "pkixonly.test",
        ] {
            z.insert(d.into(), vec![Rr::Mx(10, format!("mx.{d}")), Rr::Signed]);
            z.insert(format!("mx.{d}"), vec![lo.clone(), Rr::Signed]);
        }
        // The TLSA records of dane.test and bad.test come once the sink's
        // key is known; notlsa.test's name exists with none (a signed NSEC).
        z.insert(
            format!("_{port}._tcp.mx.notlsa.test"),
            vec![Rr::Nsec(Vec::new())],
        );
        for d in ["pkix.test", "pkixonly.test"] {
            z.insert(
                format!("_{port}._tcp.mx.{d}"),
                vec![Rr::Tlsa(1, 1, 1, vec![0xbb; 32]), Rr::Signed],
            );
        }
        z.insert(
            "bogusmx.test".into(),
            vec![Rr::Mx(10, "mx.dane.test".into()), Rr::Forged],
        );
        // plain.test: delegated without DS (RFC 4035 5.2), unsigned.
        z.insert(
            "plain.test".into(),
            vec![
                Rr::Mx(10, "mx.plain.test".into()),
                Rr::Raw(2, name("ns.plain.test")),
                Rr::Nsec(vec![2]),
            ],
        );
        z.insert("mx.plain.test".into(), vec![lo.clone()]);
        z.insert(
            format!("_{port}._tcp.mx.plain.test"),
            vec![Rr::Tlsa(3, 1, 1, vec![0xaa; 32])],
        );
    }
    let dns = serve(Arc::clone(&zone));
    let dir = std::env::temp_dir().join(format!("posthorn-dane-suite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let anchor = dir.join("root.key");
    std::fs::write(&anchor, trust_anchor()).unwrap();
    let policy = dir.join("tls_policy");
    std::fs::write(&policy, "notlsa.test dane-only\npkixonly.test dane-only\n").unwrap();
    let s = Suite::start(
        "trust-dane",
        &[],
        &[
            &format!("dns_servers={dns}"),
            &format!("smtp_tcp_port={port}"),
            &format!("dnssec_trust_anchor_file={}", anchor.display()),
            &format!("smtp_tls_policy_maps=texthash:{}", policy.display()),
            "smtp_tls_security_level=dane",
            "mynetworks=127.0.0.0/8",
        ],
    );
    state.lock().unwrap().tls = Some(rustls_config(&s));
    // TLSA 3 1 1: SHA-256 of the SubjectPublicKeyInfo of the sink's key.
    let key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(s.dir.join("tls/key.pem")).unwrap())
            .unwrap();
    let spki = sha256(&key.public_key_der());
    let other = sha256(&rcgen::KeyPair::generate().unwrap().public_key_der());
    {
        let mut z = zone.lock().unwrap();
        z.insert(
            format!("_{port}._tcp.mx.dane.test"),
            vec![Rr::Tlsa(3, 1, 1, spki.clone()), Rr::Signed],
        );
        z.insert(
            format!("_{port}._tcp.mx.bad.test"),
            vec![Rr::Tlsa(3, 1, 1, other), Rr::Signed],
        );
        z.insert(
            format!("_{port}._tcp.mx.forged.test"),
            vec![Rr::Tlsa(3, 1, 1, spki.clone()), Rr::Forged],
        );
    }

    let mut c = crate::harness::Smtp::connect(s.port);
    c.cmd("EHLO trusted.example.org", 250);
    let msg = b"Subject: dane\r\n\r\nx\r\n";
    let id = c.mail("a@example.org", &["a@dane.test"], msg);
    let got = wait_for(&state, &s, "a@dane.test");
    assert!(got[0].tls, "{}", s.log());
    s.wait_log(&format!(
        "Verified TLS connection established to mx.dane.test[127.0.0.1]:{port}: TLSv1.3"
    ));
    s.wait_log(&format!(
        "mx.dane.test[127.0.0.1]:{port}: dane: TLSA 3 1 1 matched the server certificate"
    ));
    s.wait_log(&format!(
        "{id}: to=<a@dane.test>, relay=mx.dane.test[127.0.0.1]:{port}, "
    ));

    // A TLSA record of another key: deferred, never sent in the clear.
    let id = c.mail("a@example.org", &["b@bad.test"], msg);
    s.wait_log(&format!(
        "{id}: to=<b@bad.test>, relay=mx.bad.test:{port}, "
    ));
    s.wait_log("dsn=4.7.5, status=deferred (TLS handshake with 127.0.0.1:");
    s.wait_log("DANE: no TLSA record (3 1 1) matched the certificate chain");

    // Insecure: DANE does not apply; may.
    let id = c.mail("a@example.org", &["c@plain.test"], msg);
    let got = wait_for(&state, &s, "c@plain.test");
    assert!(got.iter().any(|m| m.rcpts == ["c@plain.test"] && m.tls));
    s.wait_log(&format!(
        "Untrusted TLS connection established to mx.plain.test[127.0.0.1]:{port}: TLSv1.3"
    ));
    s.wait_log(&format!(
        "{id}: to=<c@plain.test>, relay=mx.plain.test[127.0.0.1]:{port}, "
    ));

    // A bogus TLSA RRset, although it names the right key: deferred.
    let id = c.mail("a@example.org", &["f@forged.test"], msg);
    s.wait_log(&format!(
        "{id}: to=<f@forged.test>, relay=mx.forged.test:{port}, "
    ));
    s.wait_log(&format!(
        "dsn=4.7.5, status=deferred (TLSA lookup error for mx.forged.test:{port}: "
    ));

    // Secure TLSA records, none usable: TLS, unauthenticated.
    let id = c.mail("a@example.org", &["p@pkix.test"], msg);
    let got = wait_for(&state, &s, "p@pkix.test");
    assert!(got.iter().any(|m| m.rcpts == ["p@pkix.test"] && m.tls));
    s.wait_log(&format!(
        "Untrusted TLS connection established to mx.pkix.test[127.0.0.1]:{port}: TLSv1.3"
    ));
    s.wait_log(&format!(
        "{id}: to=<p@pkix.test>, relay=mx.pkix.test[127.0.0.1]:{port}, "
    ));

    // The same at dane-only: deferred.
    let id = c.mail("a@example.org", &["q@pkixonly.test"], msg);
    s.wait_log(&format!(
        "{id}: to=<q@pkixonly.test>, relay=mx.pkixonly.test:{port}, "
    ));
    s.wait_log("status=deferred (no usable TLSA records for mx.pkixonly.test (smtp_tls_security_level dane-only))");

    // Bogus MX records: deferred before any connection.
    let id = c.mail("a@example.org", &["m@bogusmx.test"], msg);
    s.wait_log(&format!("{id}: to=<m@bogusmx.test>, relay=none, "));
    s.wait_log("dsn=4.7.5, status=deferred (MX lookup error for bogusmx.test (DNSSEC): ");

    // dane-only without TLSA records: deferred.
    let id = c.mail("a@example.org", &["d@notlsa.test"], msg);
    s.wait_log(&format!(
        "{id}: to=<d@notlsa.test>, relay=mx.notlsa.test:{port}, "
    ));
    s.wait_log(
        "dsn=4.7.5, status=deferred (no usable TLSA records for mx.notlsa.test (smtp_tls_security_level dane-only))",
    );

    // The barrier: a later message arrives; the deferred ones never did.
    c.mail("a@example.org", &["z@dane.test"], msg);
    let got = wait_for(&state, &s, "z@dane.test");
    for m in &got {
        for r in &m.rcpts {
            assert!(
                ![
                    "b@bad.test",
                    "d@notlsa.test",
                    "f@forged.test",
                    "m@bogusmx.test",
                    "q@pkixonly.test",
                ]
                .contains(&r.as_str()),
                "{r} arrived: {}",
                s.log()
            );
        }
    }
    // TLS-RPT (RFC 8460): DANE's sessions (a kept connection is one) and
    // failures, policy type tlsa, per next hop; insecure plain.test has no
    // policy and no entry.
    let report = |d| crate::trust_sts::tlsrpt(&s, d, "tlsa");
    let (ok, failed, types) = report("dane.test");
    assert!(
        ok >= 1 && failed == 0 && types.is_empty(),
        "{ok} {failed} {types:?}"
    );
    for (d, result) in [
        ("bad.test", "validation-failure"),
        ("forged.test", "dnssec-invalid"),
        ("bogusmx.test", "dnssec-invalid"),
        ("pkixonly.test", "dane-required"),
        ("notlsa.test", "dane-required"),
    ] {
        let (ok, failed, types) = report(d);
        assert!(ok == 0 && failed >= 1, "{d}: {ok} {failed}");
        assert_eq!(types, [result], "{d}");
    }
    assert_eq!(report("plain.test"), (0, 0, Vec::new()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// DANE-TA (RFC 7672 3.1.2): a TLSA 2 0 1 record of a private CA that the
/// server sends in its chain, a server certificate from it naming the
/// (secure) MX host: delivered, `Verified`, the log naming the record and
/// the name checked. A second domain whose MX records are insecure and
/// name the same host: the host's name is no reference identifier there
/// (RFC 7672 2.2.1), the certificate names no other: deferred.
#[test]
fn dane_ta_checks_the_chain_and_the_mx_name() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["mx.ta.test".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone(), ca.der().clone()];
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, PrivateKeyDer::Pkcs8(key.serialize_der().into()))
    .unwrap();
    let state: Shared = Arc::default();
    state.lock().unwrap().tls = Some(Arc::new(tls));
    let port = sink(Arc::clone(&state));

    let zone: Zone = Arc::default();
    {
        let mut z = zone.lock().unwrap();
        z.insert(
            "ta.test".into(),
            vec![Rr::Mx(10, "mx.ta.test".into()), Rr::Signed],
        );
        z.insert(
            "mx.ta.test".into(),
            vec![Rr::Addr("127.0.0.1".parse().unwrap())],
        );
        z.insert(
            format!("_{port}._tcp.mx.ta.test"),
            vec![Rr::Tlsa(2, 0, 1, sha256(ca.der())), Rr::Signed],
        );
        // other.test: unsigned, delegated without DS; its MX is mx.ta.test.
        z.insert(
            "other.test".into(),
            vec![
                Rr::Mx(10, "mx.ta.test".into()),
                Rr::Raw(2, name("ns.other.test")),
                Rr::Nsec(vec![2]),
            ],
        );
    }
    let dns = serve(Arc::clone(&zone));
    let dir = std::env::temp_dir().join(format!("posthorn-dane-ta-suite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let anchor = dir.join("root.key");
    std::fs::write(&anchor, trust_anchor()).unwrap();
    let s = Suite::start(
        "trust-dane-ta",
        &[],
        &[
            &format!("dns_servers={dns}"),
            &format!("smtp_tcp_port={port}"),
            &format!("dnssec_trust_anchor_file={}", anchor.display()),
            "smtp_tls_security_level=dane",
            "mynetworks=127.0.0.0/8",
        ],
    );
    let mut c = crate::harness::Smtp::connect(s.port);
    c.cmd("EHLO trusted.example.org", 250);
    let msg = b"Subject: dane-ta\r\n\r\nx\r\n";
    let id = c.mail("a@example.org", &["a@ta.test"], msg);
    let got = wait_for(&state, &s, "a@ta.test");
    assert!(got[0].tls);
    s.wait_log(&format!(
        "Verified TLS connection established to mx.ta.test[127.0.0.1]:{port}: TLSv1.3"
    ));
    s.wait_log(&format!(
        "mx.ta.test[127.0.0.1]:{port}: dane: TLSA 2 0 1 matched a trust anchor, name mx.ta.test"
    ));
    s.wait_log(&format!(
        "{id}: to=<a@ta.test>, relay=mx.ta.test[127.0.0.1]:{port}, "
    ));

    let id = c.mail("a@example.org", &["b@other.test"], msg);
    s.wait_log(&format!(
        "{id}: to=<b@other.test>, relay=mx.ta.test:{port}, "
    ));
    s.wait_log("dsn=4.7.5, status=deferred (TLS handshake with 127.0.0.1:");
    s.wait_log("DANE: no TLSA record (2 0 1) matched the certificate chain for other.test");
    // The barrier: a later message arrives, the deferred one never did.
    c.mail("a@example.org", &["z@ta.test"], msg);
    let got = wait_for(&state, &s, "z@ta.test");
    assert!(
        got.iter()
            .all(|m| !m.rcpts.iter().any(|r| r == "b@other.test")),
        "{}",
        s.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
