//! Golden tests for imapd's message model: every case under
//! tests/golden/ is a message and Dovecot 2.3's answers to FETCH items and
//! SEARCH criteria about it, and sort/ holds a mailbox and Dovecot's SORT
//! orders (all made by tests/golden/regen.sh, see its README.md); ours must
//! match byte for byte. Also: truncated, mutated and spliced messages never
//! panic, and the part limits hold.
//!
//! Standards: RFC 3501 6.4.4, 6.4.5 and 7.4.2, RFC 3516, RFC 5256 (what the
//! items, criteria and sort keys mean).
//!
//! Diagnostics: a failing case prints the item, Dovecot's bytes and ours.

use std::fs;
use std::path::{Path, PathBuf};

use posthorn_imapd::mime::{partial, BinaryError, ParsedMessage, Section, SectionText};

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The file name regen.sh stores an item's answer under.
fn file_name(item: &str) -> String {
    let s = item
        .to_lowercase()
        .replace(".peek", "")
        .replace("[]", "_full");
    let mut out = String::new();
    let mut sep = false;
    for c in s.chars() {
        if "[]()<> ".contains(c) {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('_');
            }
            sep = false;
            out.push(c);
        }
    }
    out
}

/// "1.2.HEADER.FIELDS (A B)" to a Section.
fn parse_section(spec: &str) -> Section {
    let mut part = Vec::new();
    let mut rest = spec;
    loop {
        let end = rest.find('.').unwrap_or(rest.len());
        match rest[..end].parse::<u32>() {
            Ok(n) => {
                part.push(n);
                rest = rest.get(end + 1..).unwrap_or("");
            }
            Err(_) => break,
        }
        if rest.is_empty() {
            break;
        }
    }
    let upper = rest.to_ascii_uppercase();
    let names = |s: &str| -> Vec<String> {
        let open = s.find('(').expect("field list");
        s[open + 1..s.len() - 1]
            .split(' ')
            .map(str::to_string)
            .collect()
    };
    let text = if upper.is_empty() {
        None
    } else if upper == "HEADER" {
        Some(SectionText::Header)
    } else if upper == "TEXT" {
        Some(SectionText::Text)
    } else if upper == "MIME" {
        Some(SectionText::Mime)
    } else if upper.starts_with("HEADER.FIELDS.NOT") {
        Some(SectionText::HeaderFieldsNot(names(rest)))
    } else if upper.starts_with("HEADER.FIELDS") {
        Some(SectionText::HeaderFields(names(rest)))
    } else {
        panic!("section {spec}")
    };
    Section { part, text }
}

/// "[spec]<o.c>" to (spec, partial).
fn split_item(item: &str) -> (String, Option<(u64, u64)>) {
    let open = item.find('[').expect("[");
    let close = item.rfind(']').expect("]");
    let spec = item[open + 1..close].to_string();
    let tail = &item[close + 1..];
    let p = tail
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .map(|t| {
            let (o, c) = t.split_once('.').expect("origin.count");
            (o.parse().expect("origin"), c.parse().expect("count"))
        });
    (spec, p)
}

fn literal(prefix: &str, data: &[u8]) -> Vec<u8> {
    let mut v = format!("{prefix}{{{}}}\r\n", data.len()).into_bytes();
    v.extend_from_slice(data);
    v
}

/// What the server would send as the value of `item`.
fn answer(m: &ParsedMessage, item: &str) -> Vec<u8> {
    const UNKNOWN_CTE: &[u8] = b"NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding";
    const PARSE: &[u8] = b"NO [PARSE] Invalid data in MIME part";
    let upper = item.to_ascii_uppercase();
    if upper == "ENVELOPE" {
        return m.envelope();
    }
    if upper == "BODYSTRUCTURE" {
        return m.body_structure(true);
    }
    if upper == "BODY" {
        return m.body_structure(false);
    }
    let (spec, part) = split_item(item);
    if upper.starts_with("BODY") {
        let data = m.section(&parse_section(&spec)).unwrap_or_default();
        let data = match part {
            Some((o, c)) => partial(&data, o, Some(c)),
            None => &data[..],
        };
        return literal("", data);
    }
    let numbers: Vec<u32> = if spec.is_empty() {
        Vec::new()
    } else {
        spec.split('.')
            .map(|n| n.parse().expect("part number"))
            .collect()
    };
    if upper.starts_with("BINARY.SIZE") {
        return match m.binary_size(&numbers) {
            Ok(n) => n.to_string().into_bytes(),
            Err(BinaryError::UnknownCte) => UNKNOWN_CTE.to_vec(),
            Err(BinaryError::Parse) => PARSE.to_vec(),
        };
    }
    if upper.starts_with("BINARY") {
        return match m.binary(&numbers) {
            None => literal("", b""),
            Some(Err(BinaryError::UnknownCte)) => UNKNOWN_CTE.to_vec(),
            Some(Err(BinaryError::Parse)) => PARSE.to_vec(),
            Some(Ok(b)) => {
                let data = match part {
                    Some((o, c)) => partial(&b.data, o, Some(c)),
                    None => &b.data[..],
                };
                literal(if b.literal8 { "~" } else { "" }, data)
            }
        };
    }
    panic!("item {item}")
}

/// "3-Mar-2026" as days since 1970-01-01.
fn day(date: &str) -> i64 {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let mut it = date.split('-');
    let d: i64 = it.next().and_then(|v| v.parse().ok()).expect("day");
    let m = it
        .next()
        .map(str::to_ascii_lowercase)
        .and_then(|m| MONTHS.iter().position(|x| *x == m))
        .expect("month");
    let y: i64 = it.next().and_then(|v| v.parse().ok()).expect("year");
    // days from civil (Howard Hinnant's algorithm)
    let (y, m) = if m < 2 {
        (y - 1, m as i64 + 10)
    } else {
        (y, m as i64 - 2)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One SEARCH criterion of a `searches` file against the message.
fn search(m: &ParsedMessage, crit: &str) -> bool {
    let (key, rest) = crit.split_once(' ').expect("criterion");
    let quoted = |s: &str| s.trim().trim_matches('"').to_string();
    match key.to_ascii_uppercase().as_str() {
        "BODY" => m.body_contains(&quoted(rest)),
        "TEXT" => m.text_contains(&quoted(rest)),
        "SUBJECT" | "FROM" | "TO" | "CC" | "BCC" => m.header_contains(key, &quoted(rest)),
        "HEADER" => {
            let (field, needle) = rest.split_once(' ').expect("header criterion");
            m.header_contains(field, &quoted(needle))
        }
        "SENTON" => m.sent_day() == day(rest),
        "SENTBEFORE" => m.sent_day() < day(rest),
        "SENTSINCE" => m.sent_day() >= day(rest),
        other => panic!("search key {other}"),
    }
}

fn items(dir: &Path) -> Vec<String> {
    let mut text = fs::read_to_string(golden().join("default-items")).expect("default-items");
    if let Ok(more) = fs::read_to_string(dir.join("items")) {
        text.push_str(&more);
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn golden_messages_match_dovecot() {
    let mut cases: Vec<PathBuf> = fs::read_dir(golden())
        .expect("golden dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("message.eml").exists())
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "golden cases missing");
    let mut failures = Vec::new();
    let mut checked = 0;
    for dir in &cases {
        let raw = fs::read(dir.join("message.eml")).expect("message.eml");
        let m = ParsedMessage::parse(&raw);
        for item in items(dir) {
            let want =
                fs::read(dir.join("expected").join(file_name(&item))).expect("expected file");
            let got = answer(&m, &item);
            checked += 1;
            if got != want {
                failures.push(format!(
                    "{} {item}\n  dovecot: {}\n  ours:    {}",
                    dir.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    String::from_utf8_lossy(&want).escape_debug(),
                    String::from_utf8_lossy(&got).escape_debug()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} items differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every golden message cut short at every byte, and with bytes flipped:
/// parsing and every item must not panic, and sections stay in bounds.
#[test]
fn truncated_and_mutated_messages_never_panic() {
    let items = [
        "ENVELOPE",
        "BODYSTRUCTURE",
        "BODY",
        "BODY[HEADER]",
        "BODY[TEXT]",
        "BODY[1]",
        "BODY[1.MIME]",
        "BODY[2.1]",
        "BODY[2.HEADER.FIELDS (From)]",
        "BODY[HEADER.FIELDS.NOT (From)]",
        "BINARY[1]",
        "BINARY.SIZE[2]",
    ];
    for name in [
        "rfc822",
        "nested",
        "mixed-attachment",
        "malformed-addresses",
        "quoted-strings",
    ] {
        let raw = fs::read(golden().join(name).join("message.eml")).expect("message.eml");
        let step = (raw.len() / 300).max(1);
        for cut in (0..raw.len()).step_by(step) {
            let m = ParsedMessage::parse(&raw[..cut]);
            for item in items {
                let _ = answer(&m, item);
            }
            let _ = (
                m.text_contains("x"),
                m.sort_keys(),
                m.thread_keys(),
                m.sent_date(),
            );
            let mut mutated = raw.clone();
            for (k, b) in [b'\n', b'-', b'"', b'(', b'<', 0, b'=', b':', b'\\']
                .iter()
                .enumerate()
            {
                let at = (cut + k * 7) % mutated.len();
                mutated[at] = *b;
            }
            let m = ParsedMessage::parse(&mutated);
            for item in items {
                let _ = answer(&m, item);
            }
            let _ = (m.text_contains("x"), m.sort_keys(), m.thread_keys());
        }
    }
}

/// Dovecot's limits: 10,000 parts at most, 100 levels of nesting, and
/// neither many parts nor deep nesting costs native stack.
#[test]
fn many_parts_and_deep_nesting_are_bounded() {
    let mut many = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
    for _ in 0..12_000 {
        many.extend_from_slice(b"--b\r\n\r\nx\r\n");
    }
    many.extend_from_slice(b"--b--\r\n");
    let m = ParsedMessage::parse(&many);
    let bs = m.body_structure(true);
    let count = bs.windows(6).filter(|w| w == b"\"text\"").count();
    assert_eq!(
        count,
        posthorn_imapd::mime::MAX_TOTAL - 1,
        "parts after the limit are not split"
    );
    assert!(m
        .section(&Section {
            part: vec![9999],
            text: None
        })
        .is_some());
    assert!(m
        .section(&Section {
            part: vec![10_000],
            text: None
        })
        .is_none());

    // message/rfc822 inside message/rfc822, 5,000 deep
    let mut deep = Vec::new();
    for _ in 0..5000 {
        deep.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    deep.extend_from_slice(b"Subject: bottom\r\n\r\nbody\r\n");
    let m = ParsedMessage::parse(&deep);
    let bs = m.body_structure(true);
    let levels = bs.windows(8).filter(|w| w == b"\"rfc822\"").count();
    assert_eq!(levels, posthorn_imapd::mime::MAX_NESTED - 1);
    assert!(bs.windows(14).any(|w| w == b"\"octet-stream\""));
}

#[test]
fn bare_lf_is_read_as_crlf() {
    let lf = ParsedMessage::parse(b"Subject: x\n\nline one\nline two\n");
    let crlf = ParsedMessage::parse(b"Subject: x\r\n\r\nline one\r\nline two\r\n");
    assert_eq!(lf.body_structure(true), crlf.body_structure(true));
    assert_eq!(lf.raw(), crlf.raw());
    assert_eq!(
        lf.section(&Section {
            part: vec![],
            text: Some(SectionText::Text)
        })
        .as_deref(),
        Some(&b"line one\r\nline two\r\n"[..])
    );
}

#[test]
fn partial_slices_like_rfc3501() {
    assert_eq!(partial(b"0123456789", 2, Some(3)), b"234");
    assert_eq!(partial(b"0123456789", 8, Some(10)), b"89");
    assert_eq!(partial(b"0123456789", 10, Some(1)), b"");
    assert_eq!(partial(b"0123456789", 3, None), b"3456789");
    assert_eq!(partial(b"0123456789", u64::MAX, Some(u64::MAX)), b"");
}

#[test]
fn nul_in_a_section_is_sent_as_0x80() {
    let m = ParsedMessage::parse(b"Subject: x\r\n\r\na\0b\r\n");
    assert_eq!(
        m.section(&Section {
            part: vec![1],
            text: None
        })
        .as_deref(),
        Some(&b"a\x80b\r\n"[..])
    );
    assert_eq!(
        m.binary(&[1])
            .and_then(Result::ok)
            .map(|b| b.data.into_owned()),
        Some(b"a\0b\r\n".to_vec())
    );
}

/// Each case's `searches`: SEARCH criteria and whether Dovecot matched.
#[test]
fn golden_searches_match_dovecot() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for entry in fs::read_dir(golden()).expect("golden dir") {
        let dir = entry.expect("entry").path();
        let Ok(expected) = fs::read_to_string(dir.join("expected/searches")) else {
            continue;
        };
        let m = ParsedMessage::parse(&fs::read(dir.join("message.eml")).expect("message.eml"));
        for line in expected.lines() {
            let (crit, want) = line.rsplit_once('\t').expect("criterion<TAB>answer");
            let got = if search(&m, crit) { "1" } else { "0" };
            checked += 1;
            if got != want {
                failures.push(format!(
                    "{}: {crit}: dovecot {want}, ours {got}",
                    dir.display()
                ));
            }
        }
    }
    assert!(checked >= 50, "search cases missing");
    assert!(
        failures.is_empty(),
        "{} of {checked} searches differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The sort/ case: NN.eml in one mailbox and Dovecot's SORT answers.
#[test]
fn golden_sorts_match_dovecot() {
    use posthorn_imapd::mime::SortKeys;
    let dir = golden().join("sort");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("sort dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    let keys: Vec<SortKeys> = files
        .iter()
        .map(|f| ParsedMessage::parse(&fs::read(f).expect("eml")).sort_keys())
        .collect();
    let expected = fs::read_to_string(dir.join("expected/sort")).expect("expected/sort");
    let mut failures = Vec::new();
    for line in expected.lines() {
        let (crit, want) = line.split_once('\t').expect("criteria<TAB>order");
        if crit == "THREAD=ORDEREDSUBJECT" {
            let got = ordered_subject(&keys);
            if got != want {
                failures.push(format!("{crit}: dovecot {want}, ours {got}"));
            }
            continue;
        }
        if crit.starts_with("THREAD=") {
            // REFERENCES is the imapd THREAD code's to check; stored for it
            continue;
        }
        let words: Vec<String> = crit
            .trim_matches(|c| c == '(' || c == ')')
            .split(' ')
            .map(str::to_ascii_uppercase)
            .collect();
        let mut order: Vec<usize> = (0..keys.len()).collect();
        // RFC 5256 3: criteria in turn, then the sequence number
        order.sort_by(|&a, &b| {
            let mut reverse = false;
            for w in &words {
                if w == "REVERSE" {
                    reverse = true;
                    continue;
                }
                let (ka, kb) = (&keys[a], &keys[b]);
                let ord = match w.as_str() {
                    "SUBJECT" => ka.subject.cmp(&kb.subject),
                    "FROM" => ka.from.cmp(&kb.from),
                    "TO" => ka.to.cmp(&kb.to),
                    "CC" => ka.cc.cmp(&kb.cc),
                    "DATE" => ka.date.cmp(&kb.date),
                    "DISPLAYFROM" => ka.display_from.cmp(&kb.display_from),
                    "DISPLAYTO" => ka.display_to.cmp(&kb.display_to),
                    other => panic!("sort key {other}"),
                };
                let ord = if reverse { ord.reverse() } else { ord };
                reverse = false;
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
            }
            a.cmp(&b)
        });
        let got = order
            .iter()
            .map(|i| (i + 1).to_string())
            .collect::<Vec<_>>()
            .join(" ");
        if got != want {
            failures.push(format!("{crit}: dovecot {want}, ours {got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "sorts differ:\n{}",
        failures.join("\n")
    );
}

/// Random splices of the golden messages (a cheap fuzzer without a
/// dependency): `cargo test -p posthorn-imapd -- --ignored` runs 20,000.
#[test]
#[ignore = "slow; run by hand after parser changes"]
fn random_splices_never_panic() {
    let mut corpus = Vec::new();
    for entry in fs::read_dir(golden()).expect("golden dir") {
        let p = entry.expect("entry").path().join("message.eml");
        if let Ok(raw) = fs::read(p) {
            corpus.push(raw);
        }
    }
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) as usize) % n.max(1)
    };
    let items = [
        "ENVELOPE",
        "BODYSTRUCTURE",
        "BODY[1.1]",
        "BODY[2.HEADER]",
        "BINARY[1]",
        "BINARY[]",
    ];
    for _ in 0..20_000 {
        let mut msg = Vec::new();
        for _ in 0..1 + next(4) {
            let src = &corpus[next(corpus.len())];
            let a = next(src.len());
            let b = a + next(src.len() - a + 1);
            msg.extend_from_slice(&src[a..b]);
        }
        let m = ParsedMessage::parse(&msg);
        for item in items {
            let _ = answer(&m, item);
        }
        let _ = (
            m.text_contains("a"),
            m.sort_keys(),
            m.thread_keys(),
            m.binary_size(&[2]),
        );
    }
}

/// RFC 5256 THREAD=ORDEREDSUBJECT from our keys: messages sorted by base
/// subject then sent date; each subject's first message is the parent of
/// the rest; threads ordered by their first message's date. Written as
/// Dovecot writes it ("(3 (1)(2))", "(4 8)").
fn ordered_subject(keys: &[posthorn_imapd::mime::SortKeys]) -> String {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| {
        keys[a]
            .subject
            .cmp(&keys[b].subject)
            .then(keys[a].date.cmp(&keys[b].date))
            .then(a.cmp(&b))
    });
    let mut threads: Vec<Vec<usize>> = Vec::new();
    for i in order {
        match threads.last_mut() {
            Some(t) if keys[t[0]].subject == keys[i].subject => t.push(i),
            _ => threads.push(vec![i]),
        }
    }
    threads.sort_by(|a, b| keys[a[0]].date.cmp(&keys[b[0]].date).then(a[0].cmp(&b[0])));
    let mut out = String::new();
    for t in threads {
        out.push_str(&format!("({}", t[0] + 1));
        match t.len() {
            1 => {}
            2 => out.push_str(&format!(" {}", t[1] + 1)),
            _ => {
                out.push(' ');
                for c in &t[1..] {
                    out.push_str(&format!("({})", c + 1));
                }
            }
        }
        out.push(')');
    }
    out
}
