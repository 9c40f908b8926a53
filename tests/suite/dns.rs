//! A DNS server for the tests, on loopback UDP: answers MX, A, AAAA, PTR,
//! TXT and TLSA questions (and any type given raw) from a table (RFC 1035 4.1 messages, one question each),
//! NXDOMAIN for names it does not know, an empty answer for a known name
//! without records of the type asked, and nothing at all for a name with
//! `Rr::Silent` (a dead server, as far as that name goes). posthorn is
//! pointed at it with `dns_servers`. Nothing leaves the machine.
//!
//! DNSSEC, for DANE (RFC 4033-4035): one zone key, of the root, made once
//! per test process (ECDSA P-256, algorithm 13); `trust_anchor` is its
//! DNSKEY for dnssec_trust_anchor_file. A name with `Rr::Signed` has every
//! answer signed by it (RRSIG, signer "."); a name with `Rr::Nsec(types)`
//! answers a question with no records with a signed NSEC record of those
//! types in the authority section (a secure NODATA; types NS without DS:
//! an insecure delegation, RFC 4035 5.2). The root's DNSKEY is answered
//! signed. `Rr::Forged`: signed, each signature with a bit flipped (a
//! bogus answer). Everything else stays unsigned, as before.

use std::collections::HashMap;
use std::net::{IpAddr, UdpSocket};
use std::sync::{Arc, Mutex};

/// One record of the table.
#[derive(Debug, Clone)]
pub enum Rr {
    Mx(u16, String),
    Addr(IpAddr),
    /// A PTR record (the table's name is the IN-ADDR.ARPA or IP6.ARPA one:
    /// `reverse`). Its labels may hold any octets but dots.
    Ptr(String),
    /// A TXT record: one string, cut into character-strings of at most
    /// 255 octets (RFC 1035 3.3.14), as DKIM keys are published.
    Txt(String),
    /// A TLSA record (RFC 6698 2.1): usage, selector, matching type, data.
    Tlsa(u8, u8, u8, Vec<u8>),
    /// Any other record: its type and RDATA as they go on the wire.
    Raw(u16, Vec<u8>),
    /// Questions about this name get no answer.
    Silent,
    /// The answers for this name are signed with the root key.
    Signed,
    /// As Signed, but each signature has one bit flipped (bogus).
    Forged,
    /// A question with no records here gets a signed NSEC record of these
    /// types (RFC 4034 4): its denial.
    Nsec(Vec<u16>),
}

/// The zone key of the test root: made once, with its DNSKEY RDATA.
struct ZoneKey {
    pair: aws_lc_rs::signature::EcdsaKeyPair,
    dnskey: Vec<u8>,
    tag: u16,
}

fn zone_key() -> &'static ZoneKey {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    static KEY: std::sync::OnceLock<ZoneKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        // Flags 257 (zone key, SEP), protocol 3, algorithm 13; the point
        // without its 0x04 prefix (RFC 6605 4).
        let mut dnskey = vec![0x01, 0x01, 3, 13];
        dnskey.extend_from_slice(&pair.public_key().as_ref()[1..]);
        // RFC 4034 Appendix B.
        let mut acc: u32 = 0;
        for (i, b) in dnskey.iter().enumerate() {
            acc += if i & 1 == 0 {
                u32::from(*b) << 8
            } else {
                u32::from(*b)
            };
        }
        acc += (acc >> 16) & 0xffff;
        ZoneKey {
            pair,
            dnskey,
            tag: (acc & 0xffff) as u16,
        }
    })
}

/// The root key as a trust anchor file has it (a DNSKEY record in zone-file
/// form).
pub fn trust_anchor() -> String {
    use base64::Engine;
    let k = zone_key();
    format!(
        ". 3600 IN DNSKEY 257 3 13 {}\n",
        base64::engine::general_purpose::STANDARD.encode(&k.dnskey[4..])
    )
}

/// The RRSIG RDATA over the RRset `rdatas` of `name` and `ty` (RFC 4034
/// 3.1.8.1: the RRSIG fields, then each record in canonical form and
/// order).
fn rrsig(name: &str, ty: u16, rdatas: &[Vec<u8>]) -> Vec<u8> {
    let k = zone_key();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let labels = name.split('.').filter(|l| !l.is_empty()).count() as u8;
    let mut sig = ty.to_be_bytes().to_vec();
    sig.extend_from_slice(&[13, labels]);
    sig.extend_from_slice(&TTL.to_be_bytes());
    sig.extend_from_slice(&(now + 86400).to_be_bytes()); // expiration
    sig.extend_from_slice(&(now - 3600).to_be_bytes()); // inception
    sig.extend_from_slice(&k.tag.to_be_bytes());
    sig.push(0); // signer: the root
    let mut signed = sig.clone();
    let mut sorted = rdatas.to_vec();
    sorted.sort();
    sorted.dedup();
    for rdata in &sorted {
        name_bytes(name, &mut signed);
        signed.extend_from_slice(&ty.to_be_bytes());
        signed.extend_from_slice(&1u16.to_be_bytes());
        signed.extend_from_slice(&TTL.to_be_bytes());
        signed.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        signed.extend_from_slice(rdata);
    }
    let rng = aws_lc_rs::rand::SystemRandom::new();
    sig.extend_from_slice(k.pair.sign(&rng, &signed).unwrap().as_ref());
    sig
}

/// An NSEC RDATA: `next`, then the type bitmap (RFC 4034 4.1.2).
fn nsec(next: &str, types: &[u16]) -> Vec<u8> {
    let mut d = Vec::new();
    name_bytes(next, &mut d);
    let mut windows: std::collections::BTreeMap<u8, [u8; 32]> = Default::default();
    for t in types.iter().chain(&[46, 47]) {
        let w = windows.entry((t >> 8) as u8).or_insert([0; 32]);
        w[((t & 0xff) / 8) as usize] |= 0x80 >> (t % 8);
    }
    for (n, bits) in windows {
        let len = bits.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        d.push(n);
        d.push(len as u8);
        d.extend_from_slice(&bits[..len]);
    }
    d
}

const TTL: u32 = 60;

/// The IN-ADDR.ARPA name of an IPv4 address, as the table keys it (RFC
/// 1035 3.5).
pub fn reverse(ip: std::net::Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa")
}

/// The zone: lower-case name without the final dot -> records.
pub type Zone = Arc<Mutex<HashMap<String, Vec<Rr>>>>;

/// Start the server: its address (127.0.0.1:PORT).
pub fn serve(zone: Zone) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                return;
            };
            if let Some(reply) = answer(&buf[..n], &zone) {
                let _ = sock.send_to(&reply, peer);
            }
        }
    });
    addr
}

fn name_bytes(name: &str, out: &mut Vec<u8>) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

fn answer(q: &[u8], zone: &Zone) -> Option<Vec<u8>> {
    if q.len() < 12 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    // The question: labels, type, class.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question = &q[12..i + 4];
    let name = labels.join(".");
    let zone = zone.lock().unwrap();
    let records = zone.get(&name);
    if records.is_some_and(|r| r.iter().any(|rr| matches!(rr, Rr::Silent))) {
        return None;
    }
    let mut answers: Vec<Vec<u8>> = Vec::new();
    let signed = records.is_some_and(|r| r.iter().any(|rr| matches!(rr, Rr::Signed | Rr::Forged)));
    let forged = records.is_some_and(|r| r.iter().any(|rr| matches!(rr, Rr::Forged)));
    let mut rdatas: Vec<(u16, Vec<u8>)> = Vec::new();
    // The root's DNSKEY, signed.
    if name.is_empty() && qtype == 48 {
        rdatas.push((48, zone_key().dnskey.clone()));
    }
    for rr in records.into_iter().flatten() {
        let (ty, rdata) = match (rr, qtype) {
            (Rr::Mx(pref, host), 15) => {
                let mut d = pref.to_be_bytes().to_vec();
                name_bytes(host, &mut d);
                (15u16, d)
            }
            (Rr::Ptr(host), 12) => {
                let mut d = Vec::new();
                name_bytes(host, &mut d);
                (12, d)
            }
            (Rr::Addr(IpAddr::V4(a)), 1) => (1, a.octets().to_vec()),
            (Rr::Addr(IpAddr::V6(a)), 28) => (28, a.octets().to_vec()),
            (Rr::Txt(text), 16) => {
                let mut d = Vec::new();
                for chunk in text.as_bytes().chunks(255) {
                    d.push(chunk.len() as u8);
                    d.extend_from_slice(chunk);
                }
                if text.is_empty() {
                    d.push(0);
                }
                (16, d)
            }
            (Rr::Tlsa(usage, selector, matching, data), 52) => {
                let mut d = vec![*usage, *selector, *matching];
                d.extend_from_slice(data);
                (52, d)
            }
            (Rr::Raw(ty, rdata), q) if *ty == q => (*ty, rdata.clone()),
            _ => continue,
        };
        rdatas.push((ty, rdata));
    }
    let record = |ty: u16, rdata: &[u8]| {
        let mut a = vec![0xc0, 12]; // the question's name
        a.extend_from_slice(&ty.to_be_bytes());
        a.extend_from_slice(&1u16.to_be_bytes()); // IN
        a.extend_from_slice(&TTL.to_be_bytes());
        a.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        a.extend_from_slice(rdata);
        a
    };
    for (ty, rdata) in &rdatas {
        answers.push(record(*ty, rdata));
    }
    if (signed || name.is_empty()) && !rdatas.is_empty() {
        let ty = rdatas[0].0;
        let set: Vec<Vec<u8>> = rdatas.iter().map(|(_, d)| d.clone()).collect();
        let mut sig = rrsig(&name, ty, &set);
        if forged {
            *sig.last_mut().unwrap() ^= 1;
        }
        answers.push(record(46, &sig));
    }
    // A denial: the name's NSEC record, signed.
    let mut authority: Vec<Vec<u8>> = Vec::new();
    if rdatas.is_empty() {
        if let Some(types) = records.into_iter().flatten().find_map(|rr| match rr {
            Rr::Nsec(t) => Some(t),
            _ => None,
        }) {
            let d = nsec(&name, types);
            authority.push(record(46, &rrsig(&name, 47, std::slice::from_ref(&d))));
            authority.insert(0, record(47, &d));
        }
    }
    let rcode = if records.is_none() && !(name.is_empty() && qtype == 48) {
        3 // NXDOMAIN
    } else {
        0
    };
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&q[0..2]); // id
    out.push(0x84 | (q[2] & 0x01)); // QR, AA, RD as asked
    out.push(0x80 | rcode); // RA
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&(authority.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(question);
    answers.iter().for_each(|a| out.extend_from_slice(a));
    authority.iter().for_each(|a| out.extend_from_slice(a));
    Some(out)
}
