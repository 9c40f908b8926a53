//! The MTA-STS policy fetch's parsers (trust::https::read_response, then
//! trust::mta_sts::Policy::parse on the body, and on the bytes themselves):
//! what a policy host (anyone who holds mta-sts.DOMAIN) sends.

use posthorn_trust::https::{read_response, FetchError};
use posthorn_trust::mta_sts::{is_host_name, Mode, Policy, MAX_AGE_LIMIT};

/// The body limit the fetch uses, smaller so the fuzzer reaches it.
const LIMIT: usize = 512;

pub fn mta_sts_policy(data: &[u8]) {
    match read_response(&mut &data[..], "h", LIMIT) {
        Ok(r) => {
            assert!((100..600).contains(&r.status), "status {}", r.status);
            assert!(r.body.len() <= LIMIT, "body of {}", r.body.len());
            assert!(data.len() >= r.body.len(), "body out of nothing");
            check_policy(&r.body);
        }
        Err(FetchError::TooLarge(..) | FetchError::Http(..)) => {}
        Err(e) => panic!("unexpected error {e}"),
    }
    check_policy(data);
}

fn check_policy(text: &[u8]) {
    let Ok(p) = Policy::parse(text) else {
        return;
    };
    assert!(p.max_age <= MAX_AGE_LIMIT);
    assert!(p.mode == Mode::None || !p.mx.is_empty(), "no mx");
    for m in &p.mx {
        let name = m.strip_prefix("*.").unwrap_or(m);
        assert!(is_host_name(name), "mx {m:?}");
        assert_eq!(*m, m.to_ascii_lowercase());
        // A pattern matches what it names (RFC 8461 4.1).
        let host = match m.strip_prefix("*.") {
            Some(rest) => format!("mx.{rest}"),
            None => m.clone(),
        };
        assert!(p.matches(&host), "{m:?} does not match {host:?}");
    }
    // The policy's lines are the policy: parsed again, the same.
    let again = Policy::parse(p.lines.join("\r\n").as_bytes()).expect("its own lines parse");
    assert_eq!(again, p);
}
