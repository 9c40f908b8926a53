//! DKIM signing (RFC 6376, RFC 8463) and ARC sealing (RFC 8617) of
//! outbound mail: the keys in `dkim_key_directory`, the DKIM-Signature
//! header fields of a message, the ARC set of a forwarded copy, the DNS
//! TXT record of each key, and `posthorn dkim keygen`'s new keys.
//!
//! Owns key files and what is signed; does not own when to sign (the
//! outbound client, posthorn-smtp, decides: mail that is ours, at
//! delivery, over the bytes it sends) nor verification of inbound mail.
//!
//! Keys: `DIR/DOMAIN/SELECTOR.key`, a PEM private key (PKCS#8 `PRIVATE
//! KEY`, RSA or Ed25519, or PKCS#1 `RSA PRIVATE KEY`), owned by mail_owner
//! and mode 0600 (the directory 0700): only the signing process may read
//! it. Every key of a domain signs, so a domain with an RSA and an Ed25519
//! key gets two signatures (RFC 8463 3: verifiers that do not know Ed25519
//! use the RSA one). Keys are read for each message, so a new key signs
//! without a reload.
//!
//! Signatures: rsa-sha256 or ed25519-sha256, c=relaxed/relaxed, with t=,
//! over the header fields of `DEFAULT_HEADERS` (RFC 6376 5.4.1's list and
//! the MIME ones) that the message has, From once more than it has (RFC
//! 6376 8.15 "oversigning": a second From added later breaks the
//! signature).
//!
//! Standards: RFC 6376 (DKIM), RFC 8463 (Ed25519), RFC 8301 (rsa-sha256
//! only, keys of 2048 bits here), RFC 8617 (ARC), RFC 8601 (the results an
//! ARC-Authentication-Results copies).
//!
//! Security: a domain or selector names a file, so both are checked
//! (letters, digits, `-`, `_`, `.`, no leading dot) before they touch a
//! path; a From: domain that fails the check has no key. Messages are our
//! own queue files, bounded by message_size_limit.
//!
//! Diagnostics: every failure is a `SignError` naming the file or step;
//! the caller defers (4.7.0) and logs it.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair;
use base64::Engine;
use mail_auth::arc::ArcSealer;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use mail_auth::{AuthenticatedMessage, AuthenticationResults, DkimResult, MessageAuthenticator};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

/// The header fields signed when present (dkim_signature_headers empty):
/// RFC 6376 5.4.1's recommended set, then Message-ID and the MIME fields
/// (what OpenDKIM signs by default).
pub const DEFAULT_HEADERS: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Resent-Date",
    "Resent-From",
    "Resent-To",
    "Resent-Cc",
    "In-Reply-To",
    "References",
    "List-Id",
    "List-Help",
    "List-Unsubscribe",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// The longest header section looked at for the From: domain and the
/// header names (a message's own headers; more is not mail we sign).
const MAX_HEADER_SECTION: usize = 1024 * 1024;

/// Why a message cannot be signed or sealed, or a key not made.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] io::Error),
    #[error("{0}: not a usable private key: {1}")]
    BadKey(PathBuf, String),
    #[error("{0:?} is not a valid {1}")]
    BadName(String, &'static str),
    #[error("{0} exists: not overwritten")]
    Exists(PathBuf),
    #[error("{0}: {1}: refusing to write a key through it as root")]
    Unsafe(PathBuf, &'static str),
    #[error("cannot make the key: {0}")]
    Generate(String),
    #[error("cannot read the message: {0}")]
    Message(#[source] io::Error),
    #[error("signing failed: {0}")]
    Sign(String),
}

/// The algorithm of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Rsa,
    Ed25519,
}

impl Algorithm {
    /// The `k=` tag of its DNS record.
    pub fn tag(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa",
            Algorithm::Ed25519 => "ed25519",
        }
    }
}

/// One key of a domain.
pub struct Key {
    pub selector: String,
    pub algorithm: Algorithm,
    /// The p= value: base64 of the SubjectPublicKeyInfo (RSA) or the raw
    /// 32-byte public key (Ed25519, RFC 8463 4.2).
    pub public: String,
    pub path: PathBuf,
    signing: DkimKey,
}

impl Key {
    /// `SELECTOR._domainkey.DOMAIN.` and the TXT value to publish.
    pub fn record(&self, domain: &str) -> (String, String) {
        (
            format!("{}._domainkey.{}.", self.selector, domain),
            format!("v=DKIM1; k={}; p={}", self.algorithm.tag(), self.public),
        )
    }
}

/// A domain or selector that may name a file: letters, digits, `-`, `_`
/// and `.`, not starting with a dot, at most 253 bytes; lower-cased.
pub fn checked_name(s: &str, what: &'static str) -> Result<String, SignError> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && !s.starts_with('.')
        && !s.contains("..")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(SignError::BadName(s.to_string(), what))
    }
}

/// The keys of `domain` in `dir`, by selector name; none when the domain
/// has no directory. A key file that cannot be read or parsed is an error
/// (the message is deferred, never sent unsigned).
pub fn keys(dir: &Path, domain: &str) -> Result<Vec<Key>, SignError> {
    let domain = checked_name(domain.trim_end_matches('.'), "domain")?;
    let ddir = dir.join(&domain);
    let entries = match fs::read_dir(&ddir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SignError::Io(ddir, e)),
    };
    let mut names = Vec::new();
    for e in entries {
        let e = e.map_err(|e| SignError::Io(ddir.clone(), e))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(sel) = name.strip_suffix(".key") {
            if checked_name(sel, "selector").is_ok() {
                names.push(sel.to_string());
            }
        }
    }
    names.sort();
    names
        .into_iter()
        .map(|sel| load(&ddir.join(format!("{sel}.key")), &sel))
        .collect()
}

/// One key file.
pub fn load(path: &Path, selector: &str) -> Result<Key, SignError> {
    let bad = |e: String| SignError::BadKey(path.to_path_buf(), e);
    let pem = fs::read(path).map_err(|e| SignError::Io(path.to_path_buf(), e))?;
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| bad(e.to_string()))?;
    let (algorithm, public, signing) = match &der {
        PrivateKeyDer::Pkcs1(k) => {
            let pair = aws_lc_rs::rsa::KeyPair::from_der(k.secret_pkcs1_der())
                .map_err(|e| bad(e.to_string()))?;
            rsa_key(&pair, der.clone_key()).map_err(bad)?
        }
        PrivateKeyDer::Pkcs8(k) => {
            let bytes = k.secret_pkcs8_der();
            if let Ok(pair) = aws_lc_rs::rsa::KeyPair::from_pkcs8(bytes) {
                rsa_key(&pair, der.clone_key()).map_err(bad)?
            } else {
                let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes)
                    .map_err(|e| bad(format!("neither RSA nor Ed25519 ({e})")))?;
                let public = b64(pair.public_key().as_ref());
                let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(bytes)
                    .map_err(|e| bad(e.to_string()))?;
                (Algorithm::Ed25519, public, DkimKey::Ed25519(key))
            }
        }
        _ => return Err(bad("SEC1 keys are not DKIM keys".into())),
    };
    Ok(Key {
        selector: selector.to_ascii_lowercase(),
        algorithm,
        public,
        path: path.to_path_buf(),
        signing,
    })
}

fn rsa_key(
    pair: &aws_lc_rs::rsa::KeyPair,
    der: PrivateKeyDer<'static>,
) -> Result<(Algorithm, String, DkimKey), String> {
    // RFC 8301 3.2: at least 1024 bits; 2048 recommended.
    if pair.public_modulus_len() * 8 < 1024 {
        return Err("an RSA key of fewer than 1024 bits (RFC 8301 3.2)".into());
    }
    let spki = pair.public_key().as_der().map_err(|e| e.to_string())?;
    let key = RsaKey::<Sha256>::from_key_der(der).map_err(|e| e.to_string())?;
    Ok((Algorithm::Rsa, b64(spki.as_ref()), DkimKey::Rsa(key)))
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The DNS TXT record of every key of `domain`: (`SELECTOR._domainkey.
/// DOMAIN.`, `v=DKIM1; k=...; p=...`), by selector.
pub fn dns_records(dir: &Path, domain: &str) -> Result<Vec<(String, String)>, SignError> {
    let d = checked_name(domain.trim_end_matches('.'), "domain")?;
    Ok(keys(dir, &d)?.iter().map(|k| k.record(&d)).collect())
}

/// Make a key for `domain`: `DIR/DOMAIN/SELECTOR.key`, PKCS#8 PEM, mode
/// 0600, created exclusively (an existing key is never overwritten); the
/// domain's directory is made 0700 when missing. RSA keys of 2048, 3072 or
/// 4096 bits. Returns the key (its DNS record: `Key::record`).
///
/// `owner` (root making a key for mail_owner): the directories are made
/// 0755 and must be root's, real directories, writable by nobody else (a
/// root process never writes through a directory another account
/// controls); the key file itself is given to `owner` through its open
/// descriptor, before a byte of the key is in it.
pub fn keygen(
    dir: &Path,
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
    bits: u32,
    owner: Option<(u32, u32)>,
) -> Result<Key, SignError> {
    let domain = checked_name(domain.trim_end_matches('.'), "domain")?;
    let selector = checked_name(selector, "selector")?;
    let pkcs8 = match algorithm {
        Algorithm::Rsa => {
            let size = match bits {
                2048 => aws_lc_rs::rsa::KeySize::Rsa2048,
                3072 => aws_lc_rs::rsa::KeySize::Rsa3072,
                4096 => aws_lc_rs::rsa::KeySize::Rsa4096,
                b => {
                    return Err(SignError::Generate(format!(
                        "RSA keys are 2048, 3072 or 4096 bits, not {b}"
                    )))
                }
            };
            let pair = aws_lc_rs::rsa::KeyPair::generate(size)
                .map_err(|e| SignError::Generate(e.to_string()))?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'_> = pair
                .as_der()
                .map_err(|e| SignError::Generate(e.to_string()))?;
            der.as_ref().to_vec()
        }
        Algorithm::Ed25519 => {
            let pair = aws_lc_rs::signature::Ed25519KeyPair::generate()
                .map_err(|e| SignError::Generate(e.to_string()))?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'_> = pair
                .as_der()
                .map_err(|e| SignError::Generate(e.to_string()))?;
            der.as_ref().to_vec()
        }
    };
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64(&pkcs8).as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");

    let ddir = dir.join(&domain);
    if owner.is_some() {
        // Each directory checked before anything is made in it.
        for d in [dir, ddir.as_path()] {
            match fs::DirBuilder::new().mode(0o755).create(d) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(SignError::Io(d.into(), e))
                }
                _ => root_only_directory(d)?,
            }
        }
    } else {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&ddir)
            .map_err(|e| SignError::Io(ddir.clone(), e))?;
    }
    let path = ddir.join(format!("{selector}.key"));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => SignError::Exists(path.clone()),
            _ => SignError::Io(path.clone(), e),
        })?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
            .map_err(|e| SignError::Io(path.clone(), e))?;
    }
    f.write_all(pem.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| SignError::Io(path.clone(), e))?;
    load(&path, &selector)
}

/// `d` is a directory (not a symbolic link) of root's that no one else
/// may write to.
fn root_only_directory(d: &Path) -> Result<(), SignError> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::symlink_metadata(d).map_err(|e| SignError::Io(d.into(), e))?;
    if !m.file_type().is_dir() {
        return Err(SignError::Unsafe(d.into(), "not a directory"));
    }
    if m.uid() != 0 {
        return Err(SignError::Unsafe(d.into(), "not owned by root"));
    }
    if m.mode() & 0o022 != 0 {
        return Err(SignError::Unsafe(d.into(), "writable by group or others"));
    }
    Ok(())
}

/// What is wrong with the ownership or mode of a key file, for `posthorn
/// check`: readable or writable by group or others, or not owned by
/// `owner` (mail_owner's uid) when given.
pub fn key_file_problem(path: &Path, owner: Option<u32>) -> Option<String> {
    let m = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return Some(format!("{}: {e}", path.display())),
    };
    if m.mode() & 0o077 != 0 {
        return Some(format!(
            "{}: mode {:04o}: a DKIM key must be readable by its owner only (chmod 600)",
            path.display(),
            m.mode() & 0o7777
        ));
    }
    match owner {
        Some(uid) if m.uid() != uid => Some(format!(
            "{}: owned by uid {}, not mail_owner (uid {uid}): posthorn-smtp cannot read it",
            path.display(),
            m.uid()
        )),
        _ => None,
    }
}

/// The domain of the From: header of a header section (the first From:
/// with one address), lower-cased; None when there is none.
pub fn from_domain(headers: &[u8]) -> Option<String> {
    let msg = mail_parser::MessageParser::new().parse(headers)?;
    let from = msg.from()?;
    let mut addrs = from.iter();
    let addr = addrs.next()?.address()?;
    if addrs.next().is_some() {
        // RFC 7489 6.6.1: several authors, no single domain to sign for.
        return None;
    }
    let (_, domain) = addr.rsplit_once('@')?;
    checked_name(domain.trim_end_matches('.'), "domain").ok()
}

/// The header section of a message read from `r` (up to and including the
/// empty line, or all of it when it has none) and the rest of the first
/// chunk read past it.
fn header_section(r: &mut dyn Read) -> Result<(Vec<u8>, Vec<u8>), SignError> {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        if let Some(end) = end_of_headers(&buf) {
            let rest = buf.split_off(end);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_HEADER_SECTION {
            return Ok((buf, Vec::new()));
        }
        let n = read_some(r, &mut chunk)?;
        if n == 0 {
            return Ok((buf, Vec::new()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn end_of_headers(b: &[u8]) -> Option<usize> {
    if b.starts_with(b"\r\n") {
        return Some(2);
    }
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn read_some(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize, SignError> {
    loop {
        match r.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SignError::Message(e)),
        }
    }
}

/// The names of `wanted` that the header section has (each once, in
/// `wanted`'s order), then From again when present (oversigned).
fn present_headers(headers: &[u8], wanted: &[String]) -> Vec<String> {
    let mut present: Vec<String> = Vec::new();
    for line in headers.split(|&b| b == b'\n') {
        if line.first().is_none_or(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon]).trim().to_string();
        if let Some(w) = wanted.iter().find(|w| w.eq_ignore_ascii_case(&name)) {
            if !present.iter().any(|p| p.eq_ignore_ascii_case(w)) {
                present.push(w.clone());
            }
        }
    }
    present.sort_by_key(|p| wanted.iter().position(|w| w == p));
    // RFC 6376 5.4: From is always signed, whatever the list says.
    if !present.iter().any(|p| p.eq_ignore_ascii_case("from")) && has_field(headers, "From") {
        present.insert(0, "From".into());
    }
    if present.iter().any(|p| p.eq_ignore_ascii_case("from")) {
        // mail-auth signs every instance of a listed name and names a
        // listed one it did not find once more: the second From is that.
        present.push("From".into());
    }
    present
}

/// The DKIM-Signature fields made for a message.
#[derive(Debug)]
pub struct Signed {
    /// The fields, to put before the message.
    pub fields: Vec<u8>,
    /// d=, the From: domain.
    pub domain: String,
    /// s= of each signature, in the order of `fields`.
    pub selectors: Vec<String>,
}

/// What the outbound client puts before a message it signs: the
/// DKIM-Signature fields, one per key of the From: domain, over the
/// message read from `message` (the bytes it will send). `headers`: the
/// names to sign when present (DEFAULT_HEADERS when empty). Ok(None): the
/// From: domain has no key (or the message no single From: domain).
pub fn dkim_sign(
    dir: &Path,
    headers: &[String],
    message: &mut dyn Read,
) -> Result<Option<Signed>, SignError> {
    let (head, rest) = header_section(message)?;
    let Some(domain) = from_domain(&head) else {
        return Ok(None);
    };
    let keys = keys(dir, &domain)?;
    if keys.is_empty() {
        return Ok(None);
    }
    let wanted: Vec<String> = if headers.is_empty() {
        DEFAULT_HEADERS.iter().map(|s| s.to_string()).collect()
    } else {
        headers.to_vec()
    };
    let names = present_headers(&head, &wanted);
    let selectors: Vec<String> = keys.iter().map(|k| k.selector.clone()).collect();
    let signers: Vec<_> = keys
        .into_iter()
        .map(|k| {
            DkimSigner::from_key(k.signing)
                .domain(domain.clone())
                .selector(k.selector)
                .headers(names.clone())
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed)
        })
        .collect();
    let mut streams: Vec<_> = signers.iter().map(|s| s.sign_streaming()).collect();
    for s in &mut streams {
        s.write(&head);
        s.write(&rest);
    }
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = read_some(message, &mut chunk)?;
        if n == 0 {
            break;
        }
        for s in &mut streams {
            s.write(&chunk[..n]);
        }
    }
    let mut out = Vec::new();
    for s in streams {
        let sig = s.finish().map_err(|e| SignError::Sign(e.to_string()))?;
        out.extend_from_slice(sig.to_header().as_bytes());
    }
    Ok(Some(Signed {
        fields: out,
        domain,
        selectors,
    }))
}

/// How a forwarded copy is sealed (arc_seal_domain, arc_seal_selector).
pub struct ArcSettings {
    pub key_dir: PathBuf,
    pub domain: String,
    pub selector: String,
    /// Our authserv-id (the Authentication-Results we copy must carry it).
    pub authserv_id: String,
    /// The signed header names (DEFAULT_HEADERS when empty).
    pub headers: Vec<String>,
}

/// The outcome of sealing.
pub enum Sealed {
    /// ARC-Seal, ARC-Message-Signature and ARC-Authentication-Results to
    /// put before the message, and the cv= they carry.
    Set(Vec<u8>, &'static str),
    /// Not sealed, and why (a chain that already failed, or the chain could
    /// not be checked for want of DNS).
    Skipped(String),
}

/// Seal a forwarded copy (RFC 8617 5.1): the existing chain is verified
/// (cv=none without one, pass or fail after it; when DNS fails the copy is
/// not sealed rather than sealed with a wrong cv), the
/// ARC-Authentication-Results copy the message's topmost
/// Authentication-Results of our authserv-id (`ID; none` when it has
/// none), and the three fields are made with the key
/// `DIR/DOMAIN/SELECTOR.key`.
pub fn arc_seal(
    s: &ArcSettings,
    message: &[u8],
    verifier: Option<(&MessageAuthenticator, &tokio::runtime::Runtime)>,
) -> Result<Sealed, SignError> {
    let domain = checked_name(&s.domain, "arc_seal_domain")?;
    let selector = checked_name(&s.selector, "arc_seal_selector")?;
    let key = load(
        &s.key_dir.join(&domain).join(format!("{selector}.key")),
        &selector,
    )?;
    if key.algorithm != Algorithm::Rsa {
        // RFC 8617 4.1.3: ARC signs with rsa-sha256 only.
        return Err(SignError::BadKey(
            key.path,
            "ARC seals are rsa-sha256 only (RFC 8617): make an RSA key".into(),
        ));
    }
    let Some(msg) = AuthenticatedMessage::parse(message) else {
        return Ok(Sealed::Skipped("the message has no header section".into()));
    };
    let chain = if msg.ams_headers.is_empty() && msg.as_headers.is_empty() {
        mail_auth::ArcOutput::default()
    } else {
        let Some((auth, rt)) = verifier else {
            return Ok(Sealed::Skipped(
                "the ARC chain cannot be checked: no resolver".into(),
            ));
        };
        let out = rt.block_on(auth.verify_arc(&msg));
        if let DkimResult::TempError(e) = out.result() {
            return Ok(Sealed::Skipped(format!(
                "the ARC chain cannot be checked now: {e}"
            )));
        }
        out
    };
    if !chain.can_be_sealed() {
        return Ok(Sealed::Skipped(
            "the ARC chain has already failed (cv=fail)".into(),
        ));
    }
    let cv = if chain.sets().is_empty() {
        "none"
    } else if matches!(chain.result(), DkimResult::Pass) {
        "pass"
    } else {
        "fail"
    };
    // The A-R text as one line (what relaxed canonicalization makes of it:
    // mail-auth writes it unchanged into the canonical form).
    let ar = copied_results(message, &s.authserv_id);
    let results = AuthenticationResults::new(&ar);
    let wanted: Vec<String> = if s.headers.is_empty() {
        DEFAULT_HEADERS.iter().map(|s| s.to_string()).collect()
    } else {
        s.headers.clone()
    };
    let mut names = present_headers(message, &wanted);
    if message_has_header(message, "DKIM-Signature") {
        names.push("DKIM-Signature".into());
    }
    let sealer = ArcSealer::from_key(key.signing)
        .domain(domain)
        .selector(selector)
        .headers(names)
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed);
    let set = sealer
        .seal(&msg, &results, &chain)
        .map_err(|e| SignError::Sign(e.to_string()))?;
    Ok(Sealed::Set(set.to_header().into_bytes(), cv))
}

/// The value of the topmost Authentication-Results field whose authserv-id
/// is `id`, white space runs made one space, or `ID; none`: what the
/// ARC-Authentication-Results of a seal says (one line, no controls).
pub fn copied_results(message: &[u8], id: &str) -> String {
    let head = match end_of_headers(message) {
        Some(e) => &message[..e],
        None => message,
    };
    let mut fields: Vec<Vec<u8>> = Vec::new();
    for line in head.split_inclusive(|&b| b == b'\n') {
        match (line.first(), fields.last_mut()) {
            (Some(b' ' | b'\t'), Some(f)) => f.extend_from_slice(line),
            _ => fields.push(line.to_vec()),
        }
    }
    for f in fields {
        let Some(colon) = f.iter().position(|&b| b == b':') else {
            continue;
        };
        if !f[..colon]
            .trim_ascii()
            .eq_ignore_ascii_case(b"Authentication-Results")
        {
            continue;
        }
        let value = String::from_utf8_lossy(&f[colon + 1..]);
        let one: String = value.split_ascii_whitespace().collect::<Vec<_>>().join(" ");
        if one.chars().any(char::is_control) {
            continue;
        }
        let authserv = one.split(';').next().unwrap_or("").trim();
        // RFC 8601 2.2: the authserv-id may be followed by a version.
        let authserv = authserv.split(' ').next().unwrap_or("");
        if authserv.eq_ignore_ascii_case(id) && one.len() < 900 {
            return one;
        }
    }
    format!("{id}; none")
}

fn message_has_header(message: &[u8], name: &str) -> bool {
    let head = match end_of_headers(message) {
        Some(e) => &message[..e],
        None => message,
    };
    has_field(head, name)
}

/// Does the header section have a field `name`?
fn has_field(head: &[u8], name: &str) -> bool {
    head.split(|&b| b == b'\n').any(|l| {
        l.iter()
            .position(|&b| b == b':')
            .is_some_and(|c| l[..c].trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("posthorn-sign-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    const MSG: &[u8] = b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: hi\r\nDate: Mon, 30 Nov 2026 00:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nHello.\r\n";

    #[test]
    fn keygen_writes_an_exclusive_private_key_and_its_record() {
        let d = tempdir("keygen");
        let k = keygen(&d, "Example.ORG", "s1", Algorithm::Ed25519, 2048, None).unwrap();
        let path = d.join("example.org/s1.key");
        assert_eq!(k.path, path);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(d.join("example.org")).unwrap().mode() & 0o777,
            0o700
        );
        assert!(key_file_problem(&path, None).is_none());
        let (name, value) = k.record("example.org");
        assert_eq!(name, "s1._domainkey.example.org.");
        assert!(value.starts_with("v=DKIM1; k=ed25519; p="), "{value}");
        assert!(matches!(
            keygen(&d, "example.org", "s1", Algorithm::Ed25519, 2048, None),
            Err(SignError::Exists(_))
        ));
        let rsa = keygen(&d, "example.org", "r1", Algorithm::Rsa, 2048, None).unwrap();
        assert!(rsa
            .record("example.org")
            .1
            .starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"));
        let recs = dns_records(&d, "example.org").unwrap();
        assert_eq!(recs.len(), 2);
        assert!(matches!(
            keygen(&d, "example.org", "r2", Algorithm::Rsa, 1024, None),
            Err(SignError::Generate(_))
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(key_file_problem(&path, None).unwrap().contains("chmod 600"));
        fs::remove_dir_all(&d).unwrap();
    }

    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn names_that_could_leave_the_key_directory_are_refused() {
        for bad in ["", "../x", ".hidden", "a/b", "a..b", "a b", "é.org"] {
            assert!(checked_name(bad, "domain").is_err(), "{bad:?}");
        }
        assert_eq!(
            checked_name("Mail.Example.ORG", "domain").unwrap(),
            "mail.example.org"
        );
    }

    #[test]
    fn every_key_of_the_from_domain_signs_with_from_oversigned() {
        let d = tempdir("sign");
        keygen(&d, "example.org", "a", Algorithm::Rsa, 2048, None).unwrap();
        keygen(&d, "example.org", "b", Algorithm::Ed25519, 2048, None).unwrap();
        let out = dkim_sign(&d, &[], &mut &MSG[..]).unwrap().unwrap();
        assert_eq!(
            (out.domain.as_str(), out.selectors.len()),
            ("example.org", 2)
        );
        let text = String::from_utf8(out.fields).unwrap();
        assert_eq!(text.matches("DKIM-Signature:").count(), 2, "{text}");
        // RFC 5322 2.1.1: folded, no line over 998 octets (78 here).
        assert!(text.split("\r\n").all(|l| l.len() <= 998), "{text}");
        assert!(text.ends_with("\r\n"));
        assert!(text.contains("a=rsa-sha256") && text.contains("a=ed25519-sha256"));
        assert!(text.contains("c=relaxed/relaxed") && text.contains("t="));
        let unfolded: String = text.split_ascii_whitespace().collect();
        assert!(
            unfolded.contains("h=From:To:Subject:Date:Message-ID:From;")
                || unfolded.contains("h=Message-ID:Date:Subject:To:From:From;"),
            "{unfolded}"
        );
        // A list without From: From is signed all the same (RFC 6376 5.4).
        let only = dkim_sign(&d, &["Subject".into()], &mut &MSG[..])
            .unwrap()
            .unwrap();
        let text: String = String::from_utf8(only.fields)
            .unwrap()
            .split_ascii_whitespace()
            .collect();
        assert!(text.contains("h=Subject:From:From;"), "{text}");
        // Another domain, or none: not signed.
        let other = b"From: x@example.net\r\n\r\nbody\r\n";
        assert!(dkim_sign(&d, &[], &mut &other[..]).unwrap().is_none());
        assert!(dkim_sign(&d, &[], &mut &b"Subject: x\r\n\r\n"[..])
            .unwrap()
            .is_none());
        // An unreadable key is an error, not an unsigned message.
        fs::write(d.join("example.org/c.key"), "garbage").unwrap();
        assert!(matches!(
            dkim_sign(&d, &[], &mut &MSG[..]),
            Err(SignError::BadKey(..))
        ));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn results_are_copied_only_from_our_authserv_id() {
        let m = b"Authentication-Results: other.example; spf=pass\r\nAuthentication-Results: mx.example.org;\r\n\tdkim=pass header.d=example.net\r\nFrom: a@b\r\n\r\n";
        assert_eq!(
            copied_results(m, "mx.example.org"),
            "mx.example.org; dkim=pass header.d=example.net"
        );
        assert_eq!(copied_results(m, "mx.other"), "mx.other; none");
    }

    #[test]
    fn root_writes_keys_only_through_its_own_directories() {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("sign-rootdir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("real")).unwrap();
        std::os::unix::fs::symlink(d.join("real"), d.join("link")).unwrap();
        let is = |r: Result<(), SignError>, why: &str| {
            assert!(
                matches!(r, Err(SignError::Unsafe(_, w)) if w == why),
                "{why}"
            );
        };
        is(root_only_directory(&d.join("link")), "not a directory");
        // A key asked for through the link is refused before anything is written.
        let r = keygen(
            &d.join("link"),
            "example.org",
            "s",
            Algorithm::Ed25519,
            2048,
            Some((0, 0)),
        );
        assert!(matches!(r, Err(SignError::Unsafe(..))), "{:?}", r.err());
        assert!(
            !d.join("real/example.org").exists(),
            "nothing made through the link"
        );
        if common::privilege::is_root() {
            fs::set_permissions(d.join("real"), fs::Permissions::from_mode(0o777)).unwrap();
            is(
                root_only_directory(&d.join("real")),
                "writable by group or others",
            );
            fs::set_permissions(d.join("real"), fs::Permissions::from_mode(0o755)).unwrap();
            assert!(root_only_directory(&d.join("real")).is_ok());
        } else {
            is(root_only_directory(&d.join("real")), "not owned by root");
        }
        fs::remove_dir_all(&d).unwrap();
    }
}
