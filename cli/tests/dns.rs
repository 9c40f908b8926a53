//! `posthorn dns`: the records printed (MX, SPF, DMARC, RFC 6186 SRV) and
//! the Thunderbird autoconfig file, read back with Python's XML parser the
//! way Thunderbird's account setup reads it (clientConfig version 1.1:
//! emailProvider, incomingServer and outgoingServer with hostname, port,
//! socketType, authentication, username).

use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_posthorn");

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("posthorn-dns-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What Thunderbird takes from the file (comm-central's readFromXML.js):
/// one line per server, in the file's order.
const READER: &str = r#"
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "clientConfig" and root.get("version") == "1.1", root.tag
providers = root.findall("emailProvider")
assert len(providers) == 1
p = providers[0]
print("provider", p.get("id"), [d.text for d in p.findall("domain")], p.findtext("displayName"))
for el in p:
    if el.tag not in ("incomingServer", "outgoingServer"):
        continue
    port = int(el.findtext("port"))
    assert 0 < port < 65536
    socket = el.findtext("socketType")
    assert socket in ("plain", "SSL", "STARTTLS"), socket
    auth = [a.text for a in el.findall("authentication")]
    assert all(a in ("password-cleartext", "password-encrypted", "OAuth2", "client-IP-address", "none") for a in auth), auth
    print(el.tag, el.get("type"), el.findtext("hostname"), port, socket, auth, el.findtext("username"))
"#;

#[test]
fn records_and_thunderbird_autoconfig() {
    let d = temp("autoconfig");
    std::fs::write(
        d.join("main.cf"),
        "myhostname = mail.example.org\nmydomain = example.org\nvirtual_mailbox_domains = example.org\n",
    )
    .unwrap();
    let xml = d.join("config-v1.1.xml");
    let out = Command::new(BIN)
        .args(["dns", "-c"])
        .arg(&d)
        .arg("example.org")
        .arg("--autoconfig")
        .arg(&xml)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "example.org.\tIN MX 10 mail.example.org.",
        "_imaps._tcp.example.org.\tIN SRV 0 1 993 mail.example.org.",
        "_imap._tcp.example.org.\tIN SRV 10 1 143 mail.example.org.",
        "_pop3s._tcp.example.org.\tIN SRV 0 1 995 mail.example.org.",
        "_submissions._tcp.example.org.\tIN SRV 0 1 465 mail.example.org.",
        "_submission._tcp.example.org.\tIN SRV 10 1 587 mail.example.org.",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    assert!(
        text.contains("https://autoconfig.example.org/mail/config-v1.1.xml"),
        "{text}"
    );
    let read = Command::new("python3")
        .args(["-c", READER])
        .arg(&xml)
        .output()
        .expect("python3 runs");
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert_eq!(
        String::from_utf8(read.stdout).unwrap(),
        "provider example.org ['example.org'] example.org mail\n\
         incomingServer imap mail.example.org 993 SSL ['password-cleartext'] %EMAILADDRESS%\n\
         incomingServer imap mail.example.org 143 STARTTLS ['password-cleartext'] %EMAILADDRESS%\n\
         incomingServer pop3 mail.example.org 995 SSL ['password-cleartext'] %EMAILADDRESS%\n\
         outgoingServer smtp mail.example.org 465 SSL ['password-cleartext'] %EMAILADDRESS%\n\
         outgoingServer smtp mail.example.org 587 STARTTLS ['password-cleartext'] %EMAILADDRESS%\n"
    );

    // A mydestination domain: system users log in with their name.
    let out = Command::new(BIN)
        .args(["dns", "-c"])
        .arg(&d)
        .arg("other.example")
        .arg("--autoconfig")
        .arg(&xml)
        .output()
        .unwrap();
    assert!(out.status.success());
    let read = Command::new("python3")
        .args(["-c", READER])
        .arg(&xml)
        .output()
        .unwrap();
    let text = String::from_utf8(read.stdout).unwrap();
    assert!(
        text.lines()
            .skip(1)
            .all(|l| l.ends_with(" %EMAILLOCALPART%")),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
