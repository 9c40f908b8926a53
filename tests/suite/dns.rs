//! A DNS server for the tests, on loopback UDP: answers MX, A, AAAA, PTR,
//! TXT and TLSA questions (and any type given raw) from a table (RFC 1035 4.1 messages, one question each),
//! NXDOMAIN for names it does not know, an empty answer for a known name
//! without records of the type asked, and nothing at all for a name with
//! `Rr::Silent` (a dead server, as far as that name goes). posthorn is
//! pointed at it with `dns_servers`. Nothing leaves the machine.

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
}

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
        let mut a = vec![0xc0, 12]; // the question's name
        a.extend_from_slice(&ty.to_be_bytes());
        a.extend_from_slice(&1u16.to_be_bytes()); // IN
        a.extend_from_slice(&60u32.to_be_bytes());
        a.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        a.extend_from_slice(&rdata);
        answers.push(a);
    }
    let rcode = if records.is_none() { 3 } else { 0 }; // NXDOMAIN
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&q[0..2]); // id
    out.push(0x84 | (q[2] & 0x01)); // QR, AA, RD as asked
    out.push(0x80 | rcode); // RA
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    answers.iter().for_each(|a| out.extend_from_slice(a));
    Some(out)
}
