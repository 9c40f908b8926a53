//! The DNS-records harness: trust::records::judge, which `posthorn dns
//! --check` runs on what name servers answer (TXT, MX, TLSA and SRV data),
//! and the zone-file text of what it found.
//!
//! Owns what the `dns_records` target feeds and the properties it checks
//! beyond "does not panic": the verdict line is one line of printable ASCII
//! (what a hostile zone serves reaches the administrator's terminal only
//! escaped); "missing" only when no record of the expected type was
//! found; "ok" for TLSA only when a found record equals the expected one;
//! the same verdict for the records in reverse order, where the kind takes
//! any of several records. Does not own the look-ups (hickory's) or the
//! record parsers (mail-auth's SPF, DMARC, MTA-STS and TLS-RPT).
//!
//! Standards: RFC 1035 5.1 (escapes), RFC 7208 4.5, RFC 7489 6.6.3, RFC
//! 8461 3.1, RFC 8460 3 (one record of a kind).
//!
//! Security: the records are the attacker's octets, as a hostile zone
//! serves them; a panic, an abort or a hang is a finding.
//!
//! Diagnostics: a failed property panics with what differed.

use posthorn_trust::records::{judge, Kind, MtaStsPolicy, Rdata, Site, Verdict};

/// The site whose records are checked: every kind has one record.
fn site() -> Site {
    Site {
        domain: "example.org".into(),
        host: "mail.example.org".into(),
        dmarc_rua: "dmarc@reports.example.net".into(),
        tlsrpt_rua: "tls@example.org".into(),
        mta_sts: MtaStsPolicy {
            mode: "enforce".into(),
            mx: vec!["mail.example.org".into()],
            max_age: 86_400,
        },
        spki: Some(b"spki".to_vec()),
        dkim: vec![posthorn_trust::records::Record {
            kind: Kind::Dkim,
            name: "s._domainkey.example.org".into(),
            data: Rdata::Txt(
                "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".into(),
            ),
        }],
    }
}

/// The first byte picks the expected record (modulo their number); the
/// rest is found records, one per line: a first byte of 0 makes the line a
/// TXT record, 1 an MX (preference 10), 2 a TLSA 3 1 1, 3 an SRV (port from
/// the next two bytes), anything else a TXT of the whole line.
pub fn dns_records(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let records = site().records();
    let expected = &records[usize::from(pick) % records.len()];
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let found: Vec<Rdata> = rest
        .split(|&b| b == b'\n')
        .take(64)
        .map(|line| match line.split_first() {
            Some((0, t)) => Rdata::Txt(text(t)),
            Some((1, h)) => Rdata::Mx(10, text(h)),
            Some((2, d)) => Rdata::Tlsa(3, 1, 1, d.to_vec()),
            Some((3, s)) if s.len() >= 2 => {
                Rdata::Srv(0, 1, u16::from_be_bytes([s[0], s[1]]), text(&s[2..]))
            }
            _ => Rdata::Txt(text(line)),
        })
        .collect();
    let verdict = judge(expected, &found);
    let line = verdict.to_string();
    assert!(
        line.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "verdict line with unprintable octets: {line:?}"
    );
    let same_type = found
        .iter()
        .any(|r| std::mem::discriminant(r) == std::mem::discriminant(&expected.data));
    if verdict == Verdict::Missing {
        assert!(
            !same_type || matches!(expected.data, Rdata::Txt(_)),
            "missing, but found {found:?} for {expected:?}"
        );
    }
    if expected.kind == Kind::Tlsa && verdict == Verdict::Ok {
        assert!(found.contains(&expected.data), "TLSA ok without a match");
    }
    let mut reversed = found.clone();
    reversed.reverse();
    assert_eq!(
        judge(expected, &reversed) == Verdict::Ok,
        verdict == Verdict::Ok,
        "order changed the verdict on {found:?}"
    );
}
