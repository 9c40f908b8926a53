//! Password schemes of the users file, spelled as Dovecot spells them.
//!
//! A password field is `{SCHEME}data` or, without a scheme, a crypt(3) hash
//! recognised by its `$id$` prefix (Dovecot's CRYPT default for
//! passwd-file). Schemes (names case-insensitive):
//!
//! | scheme | data | crate |
//! |---|---|---|
//! | ARGON2ID, ARGON2I | PHC string `$argon2id$v=19$m=..,t=..,p=..$salt$hash` | argon2 |
//! | SHA512-CRYPT, SHA256-CRYPT | `$6$[rounds=N$]salt$hash`, `$5$...` | sha-crypt |
//! | BLF-CRYPT | `$2y$NN$...` (also `$2b$`, `$2a$`) | bcrypt |
//! | PLAIN (CLEAR, CLEARTEXT) | the password itself | |
//! | CRYPT | any of the crypt hashes above | |
//!
//! Owns parsing a field into a `Stored` password (once, when the file is
//! read), verifying a password against it, APOP digests against a PLAIN
//! one, and making new fields for `posthorn user` (`hash`). Does not own
//! the users file (common::users) or the policy for PLAIN passwords
//! (passdb.rs).
//!
//! Standards: Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512"
//! (rounds 1000..=999999999, clamped; salt at most 16 characters); the PHC
//! string format and RFC 9106 (Argon2); RFC 1939 7 (APOP: MD5 of the
//! challenge and the secret, as lower-case hex).
//!
//! Security: comparisons are constant-time (the crates' `subtle`, or
//! `subtle` on SHA-256 digests for PLAIN and APOP, so the length of a PLAIN
//! password does not show either). Costs are bounded at parse time
//! (MAX_ARGON2_M_KIB, MAX_ARGON2_T, bcrypt cost <= 31) so a field cannot
//! make one verification allocate more than 4 GiB. Malformed fields are
//! errors, never panics (fuzz target `password_hash`).
//!
//! Diagnostics: `SchemeError` says what is wrong with a field; passdb.rs
//! puts the file and line in front.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use md5::Md5;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The largest Argon2 memory cost accepted, in KiB (4 GiB; doveadm's
/// `-r 4` makes 1 GiB).
pub const MAX_ARGON2_M_KIB: u32 = 4 << 20;
/// The largest Argon2 time cost accepted.
pub const MAX_ARGON2_T: u32 = 1000;
/// The largest Argon2 parallelism accepted.
pub const MAX_ARGON2_P: u32 = 64;

/// New ARGON2ID hashes: doveadm pw -s ARGON2ID's parameters (libsodium's
/// "interactive" limits): 64 MiB, 3 passes, 1 lane, 16-byte salt, 32-byte hash.
pub const ARGON2ID_PARAMS: (u32, u32, u32) = (65536, 3, 1);
/// New ARGON2I hashes: doveadm's (32 MiB, 4 passes, 1 lane).
pub const ARGON2I_PARAMS: (u32, u32, u32) = (32768, 4, 1);
/// New BLF-CRYPT hashes: cost 10 (doveadm's default is 5, too cheap today).
pub const BCRYPT_COST: u32 = 10;
/// New SHA*-CRYPT hashes: the default 5000 rounds (no `rounds=` field),
/// 16 salt characters, as doveadm makes them.
pub const SHA_CRYPT_ROUNDS: usize = 5000;

const CRYPT_B64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A password scheme posthorn knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Argon2id,
    Argon2i,
    Sha512Crypt,
    Sha256Crypt,
    BlfCrypt,
    Plain,
}

impl Scheme {
    /// Every scheme, in the order `posthorn user --scheme` lists them.
    pub const ALL: [Scheme; 6] = [
        Scheme::Argon2id,
        Scheme::Argon2i,
        Scheme::Sha512Crypt,
        Scheme::Sha256Crypt,
        Scheme::BlfCrypt,
        Scheme::Plain,
    ];

    /// Dovecot's name.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Argon2id => "ARGON2ID",
            Scheme::Argon2i => "ARGON2I",
            Scheme::Sha512Crypt => "SHA512-CRYPT",
            Scheme::Sha256Crypt => "SHA256-CRYPT",
            Scheme::BlfCrypt => "BLF-CRYPT",
            Scheme::Plain => "PLAIN",
        }
    }

    /// A scheme by Dovecot's name or alias, any case. CRYPT is not one
    /// scheme: `parse` looks at the hash.
    pub fn from_name(name: &str) -> Option<Scheme> {
        let n = name.to_ascii_uppercase();
        Some(match n.as_str() {
            "ARGON2ID" => Scheme::Argon2id,
            "ARGON2I" => Scheme::Argon2i,
            "SHA512-CRYPT" => Scheme::Sha512Crypt,
            "SHA256-CRYPT" => Scheme::Sha256Crypt,
            "BLF-CRYPT" => Scheme::BlfCrypt,
            "PLAIN" | "CLEAR" | "CLEARTEXT" => Scheme::Plain,
            _ => return None,
        })
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A password from the users file, parsed and checked once.
#[derive(Clone, PartialEq, Eq)]
pub enum Stored {
    /// A PHC string whose algorithm is the scheme's.
    Argon2 {
        scheme: Scheme,
        phc: String,
        work: u64,
    },
    /// `$6$` (sha512) or `$5$`: rounds (clamped), salt (<= 16), hash.
    ShaCrypt {
        sha512: bool,
        rounds: usize,
        salt: String,
        hash: String,
    },
    /// The whole `$2y$NN$...` string.
    Bcrypt { hash: String, cost: u32 },
    /// PLAIN: the password itself.
    Plain(String),
}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Stored({})", self.scheme())
    }
}

/// What is wrong with a password field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    #[error("no password")]
    Empty,
    #[error("unknown password scheme {0:?}")]
    Unknown(String),
    #[error("{scheme}: malformed hash: {why}")]
    Malformed { scheme: &'static str, why: String },
    #[error("{scheme}: {why}")]
    TooCostly { scheme: &'static str, why: String },
}

/// Why a new hash could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("no randomness for the salt: {0}")]
    Random(getrandom::Error),
    #[error("{0}: {1}")]
    Scheme(Scheme, String),
    #[error("':' and control characters cannot be stored in a PLAIN password")]
    PlainCharacters,
}

/// Parse a users-file password field.
pub fn parse(field: &str) -> Result<Stored, SchemeError> {
    let field = field.trim();
    if field.is_empty() {
        return Err(SchemeError::Empty);
    }
    let (scheme, data) = match field.strip_prefix('{').and_then(|r| r.split_once('}')) {
        Some((name, data)) => (Some(name), data),
        None => (None, field),
    };
    match scheme {
        None => parse_crypt(data, "CRYPT"),
        Some(n) if n.eq_ignore_ascii_case("CRYPT") => parse_crypt(data, "CRYPT"),
        Some(n) => match Scheme::from_name(n) {
            Some(Scheme::Plain) => Ok(Stored::Plain(data.to_string())),
            Some(Scheme::Argon2id) => parse_argon2(data, Scheme::Argon2id),
            Some(Scheme::Argon2i) => parse_argon2(data, Scheme::Argon2i),
            Some(s @ (Scheme::Sha512Crypt | Scheme::Sha256Crypt)) => {
                parse_sha_crypt(data, s.name(), s == Scheme::Sha512Crypt)
            }
            Some(Scheme::BlfCrypt) => parse_bcrypt(data, "BLF-CRYPT"),
            None => Err(SchemeError::Unknown(n.to_string())),
        },
    }
}

/// A crypt(3) hash recognised by its prefix.
fn parse_crypt(data: &str, label: &'static str) -> Result<Stored, SchemeError> {
    if data.starts_with("$6$") {
        parse_sha_crypt(data, label, true)
    } else if data.starts_with("$5$") {
        parse_sha_crypt(data, label, false)
    } else if data.starts_with("$2y$") || data.starts_with("$2b$") || data.starts_with("$2a$") {
        parse_bcrypt(data, label)
    } else if data.starts_with("$argon2id$") {
        parse_argon2(data, Scheme::Argon2id)
    } else if data.starts_with("$argon2i$") {
        parse_argon2(data, Scheme::Argon2i)
    } else {
        let id = data
            .strip_prefix('$')
            .and_then(|r| r.split_once('$'))
            .map_or("DES", |(id, _)| id);
        Err(SchemeError::Unknown(format!(
            "CRYPT with ${}$",
            id.chars().take(16).collect::<String>()
        )))
    }
}

fn parse_argon2(data: &str, scheme: Scheme) -> Result<Stored, SchemeError> {
    let bad = |why: String| SchemeError::Malformed {
        scheme: scheme.name(),
        why,
    };
    let h = PasswordHash::new(data).map_err(|e| bad(e.to_string()))?;
    let want = match scheme {
        Scheme::Argon2i => argon2::ARGON2I_IDENT,
        _ => argon2::ARGON2ID_IDENT,
    };
    if h.algorithm != want {
        return Err(bad(format!(
            "algorithm {} in a {} field",
            h.algorithm, scheme
        )));
    }
    let Some(out) = h.hash else {
        return Err(bad("no hash".into()));
    };
    if h.salt.is_none() {
        return Err(bad("no salt".into()));
    }
    // The bounds first: argon2's Params multiplies p by 8 without a check
    // (an overflow panic under overflow checks; found by the fuzz harness).
    // Every occurrence counts: a repeated key (`p=4,p=1111111111`) is
    // refused, or argon2 might read the one not checked.
    let mut seen: Vec<&str> = Vec::new();
    for (ident, value) in h.params.iter() {
        let key = ident.as_str();
        if seen.contains(&key) {
            return Err(bad(format!("parameter {key} given twice")));
        }
        seen.push(key);
        let max = match key {
            "m" => MAX_ARGON2_M_KIB,
            "t" => MAX_ARGON2_T,
            "p" => MAX_ARGON2_P,
            _ => continue,
        };
        match value.decimal() {
            Ok(v) if v > max => {
                return Err(SchemeError::TooCostly {
                    scheme: scheme.name(),
                    why: format!("{key}={v} is over the bound ({key} <= {max})"),
                })
            }
            Ok(_) => {}
            Err(e) => return Err(bad(format!("{key}: {e}"))),
        }
    }
    let p = Params::try_from(&h).map_err(|e| bad(e.to_string()))?;
    if p.m_cost() > MAX_ARGON2_M_KIB || p.t_cost() > MAX_ARGON2_T || p.p_cost() > MAX_ARGON2_P {
        return Err(SchemeError::TooCostly {
            scheme: scheme.name(),
            why: format!(
                "m={},t={},p={} is over the bounds (m <= {MAX_ARGON2_M_KIB}, t <= {MAX_ARGON2_T}, p <= {MAX_ARGON2_P})",
                p.m_cost(),
                p.t_cost(),
                p.p_cost()
            ),
        });
    }
    if out.len() < Params::MIN_OUTPUT_LEN {
        return Err(bad("hash too short".into()));
    }
    Ok(Stored::Argon2 {
        scheme,
        phc: data.to_string(),
        work: u64::from(p.m_cost()) * u64::from(p.t_cost()),
    })
}

fn parse_sha_crypt(data: &str, label: &'static str, sha512: bool) -> Result<Stored, SchemeError> {
    let bad = |why: &str| SchemeError::Malformed {
        scheme: label,
        why: why.to_string(),
    };
    let prefix = if sha512 { "$6$" } else { "$5$" };
    let rest = data
        .strip_prefix(prefix)
        .ok_or_else(|| bad(&format!("does not start with {prefix}")))?;
    let mut parts: Vec<&str> = rest.split('$').collect();
    // Drepper: "rounds=N" is optional; out-of-range values are clamped.
    let rounds = match parts.first().and_then(|p| p.strip_prefix("rounds=")) {
        Some(n) => {
            let n: u64 = n.parse().map_err(|_| bad("rounds= is not a number"))?;
            parts.remove(0);
            n.clamp(1000, 999_999_999) as usize
        }
        None => SHA_CRYPT_ROUNDS,
    };
    let [salt, hash] = parts[..] else {
        return Err(bad("expected salt$hash"));
    };
    let want = if sha512 { 86 } else { 43 };
    if hash.len() != want || !hash.bytes().all(|b| CRYPT_B64.contains(&b)) {
        return Err(bad(&format!(
            "the hash is not {want} crypt base64 characters"
        )));
    }
    // The salt ends at '$' (split above) and is cut to 16 characters.
    let salt: String = salt.chars().take(16).collect();
    Ok(Stored::ShaCrypt {
        sha512,
        rounds,
        salt,
        hash: hash.to_string(),
    })
}

fn parse_bcrypt(data: &str, label: &'static str) -> Result<Stored, SchemeError> {
    let bad = |why: &str| SchemeError::Malformed {
        scheme: label,
        why: why.to_string(),
    };
    let parts: Vec<&str> = data.split('$').collect();
    let ["", version, cost, rest] = parts[..] else {
        return Err(bad("expected $2y$NN$ and 53 characters"));
    };
    if !matches!(version, "2y" | "2b" | "2a") {
        return Err(bad("version is not 2y, 2b or 2a"));
    }
    let cost: u32 = cost
        .parse()
        .ok()
        .filter(|c| (4..=31).contains(c) && cost.len() == 2)
        .ok_or_else(|| bad("cost is not 04..31"))?;
    if rest.len() != 53 || !rest.bytes().all(|b| CRYPT_B64.contains(&b)) {
        return Err(bad("salt and hash are not 53 bcrypt base64 characters"));
    }
    Ok(Stored::Bcrypt {
        hash: data.to_string(),
        cost,
    })
}

impl Stored {
    pub fn scheme(&self) -> Scheme {
        match self {
            Stored::Argon2 { scheme, .. } => *scheme,
            Stored::ShaCrypt { sha512: true, .. } => Scheme::Sha512Crypt,
            Stored::ShaCrypt { sha512: false, .. } => Scheme::Sha256Crypt,
            Stored::Bcrypt { .. } => Scheme::BlfCrypt,
            Stored::Plain(_) => Scheme::Plain,
        }
    }

    /// A rough measure of one verification's cost (Argon2: KiB times
    /// passes; SHA-crypt: rounds; bcrypt: 2^cost), for the fuzz target.
    pub fn work(&self) -> u64 {
        match self {
            Stored::Argon2 { work, .. } => *work,
            Stored::ShaCrypt { rounds, .. } => *rounds as u64,
            Stored::Bcrypt { cost, .. } => 1u64 << cost,
            Stored::Plain(_) => 1,
        }
    }

    /// Does `password` match? Constant-time in the comparison.
    pub fn verify(&self, password: &str) -> bool {
        match self {
            Stored::Argon2 { phc, .. } => match PasswordHash::new(phc) {
                Ok(h) => Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok(),
                Err(_) => false,
            },
            Stored::ShaCrypt {
                sha512,
                rounds,
                salt,
                hash,
            } => {
                let computed = if *sha512 {
                    sha_crypt::Sha512Params::new(*rounds).and_then(|p| {
                        sha_crypt::sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &p)
                    })
                } else {
                    sha_crypt::Sha256Params::new(*rounds).and_then(|p| {
                        sha_crypt::sha256_crypt_b64(password.as_bytes(), salt.as_bytes(), &p)
                    })
                };
                match computed {
                    Ok(c) => c.as_bytes().ct_eq(hash.as_bytes()).into(),
                    Err(_) => false,
                }
            }
            Stored::Bcrypt { hash, .. } => bcrypt::verify(password, hash).unwrap_or(false),
            Stored::Plain(p) => digest_eq(p.as_bytes(), password.as_bytes()),
        }
    }

    /// RFC 1939 7: does `digest` (hex, any case) equal MD5(challenge ||
    /// secret)? Only a PLAIN password can tell; any other is false.
    pub fn verify_apop(&self, challenge: &str, digest: &str) -> bool {
        let Stored::Plain(secret) = self else {
            return false;
        };
        let mut md5 = Md5::new();
        md5.update(challenge.as_bytes());
        md5.update(secret.as_bytes());
        let want = hex(&md5.finalize());
        digest_eq(want.as_bytes(), digest.to_ascii_lowercase().as_bytes())
    }
}

/// Constant-time equality that does not show the lengths either: compare
/// SHA-256 digests.
fn digest_eq(a: &[u8], b: &[u8]) -> bool {
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new password field for the users file, `{SCHEME}...`, with a fresh
/// random salt (the parameters are the constants above).
pub fn hash(scheme: Scheme, password: &str) -> Result<String, HashError> {
    let mut raw = [0u8; 16];
    getrandom::getrandom(&mut raw).map_err(HashError::Random)?;
    let err = |e: String| HashError::Scheme(scheme, e);
    let data = match scheme {
        Scheme::Argon2id | Scheme::Argon2i => {
            let ((m, t, p), alg) = if scheme == Scheme::Argon2id {
                (ARGON2ID_PARAMS, Algorithm::Argon2id)
            } else {
                (ARGON2I_PARAMS, Algorithm::Argon2i)
            };
            let params = Params::new(m, t, p, Some(32)).map_err(|e| err(e.to_string()))?;
            let salt = SaltString::encode_b64(&raw).map_err(|e| err(e.to_string()))?;
            use argon2::PasswordHasher;
            Argon2::new(alg, Version::V0x13, params)
                .hash_password(password.as_bytes(), &salt)
                .map_err(|e| err(e.to_string()))?
                .to_string()
        }
        Scheme::Sha512Crypt | Scheme::Sha256Crypt => {
            let salt: String = raw
                .iter()
                .map(|b| CRYPT_B64[(*b & 63) as usize] as char)
                .collect();
            if scheme == Scheme::Sha512Crypt {
                let p = sha_crypt::Sha512Params::new(SHA_CRYPT_ROUNDS)
                    .map_err(|e| err(format!("{e:?}")))?;
                let h = sha_crypt::sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &p)
                    .map_err(|e| err(format!("{e:?}")))?;
                format!("$6${salt}${h}")
            } else {
                let p = sha_crypt::Sha256Params::new(SHA_CRYPT_ROUNDS)
                    .map_err(|e| err(format!("{e:?}")))?;
                let h = sha_crypt::sha256_crypt_b64(password.as_bytes(), salt.as_bytes(), &p)
                    .map_err(|e| err(format!("{e:?}")))?;
                format!("$5${salt}${h}")
            }
        }
        Scheme::BlfCrypt => bcrypt::hash_with_salt(password, BCRYPT_COST, raw)
            .map_err(|e| err(e.to_string()))?
            .format_for_version(bcrypt::Version::TwoY),
        Scheme::Plain => {
            if password.contains(|c: char| c == ':' || c.is_control()) {
                return Err(HashError::PlainCharacters);
            }
            password.to_string()
        }
    };
    Ok(format!("{{{}}}{data}", scheme.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by Dovecot 2.3.19.1's `doveadm pw -s SCHEME -p 'correct horse'`
    /// (and `-r` for the rounds and costs), on Debian 12.
    const DOVEADM: &[(&str, Scheme)] = &[
        ("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$LpEjiuxG3WMa+VieIQtJnQ$kSpD2tZXOhjlV0NT+6VcmBVfiwCsOEdWvkrtxtW1EOg", Scheme::Argon2id),
        ("{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$DkRyrE8qkCO/h7JbbKOYxg$L5iVhkGnNUN+vFFuM9mtZ18GXAlednlw1XzPmmu2p10", Scheme::Argon2i),
        ("{SHA512-CRYPT}$6$/7GByWMM1s2JxGVx$7.kXQBNGV6qZh9w57lRyzNwTp.Cftp0sua1RVlpEea75N0BWTiosbs1.FmzX13ign5FpxDHzI.MPYBkuBzOqk1", Scheme::Sha512Crypt),
        ("{SHA256-CRYPT}$5$fJGysRZIZEd3E.fB$SrMJNBjxsd6W5PlW6hGlFQ1oboKbUjikM.DTTuTuux9", Scheme::Sha256Crypt),
        ("{BLF-CRYPT}$2y$05$Fa3DS93UySHC5IStc5c32ObZvws81dtRYGph5F2VjUNOwGUaJ.C02", Scheme::BlfCrypt),
        ("{CRYPT}$2y$05$159kDGIV.FUlI/Tau.MnQOuaSDcpoQYAv9UC3Kjf20tBg6cLfaHLS", Scheme::BlfCrypt),
        ("{PLAIN}correct horse", Scheme::Plain),
        ("{CLEAR}correct horse", Scheme::Plain),
        ("{cleartext}correct horse", Scheme::Plain),
    ];

    /// doveadm pw -r: rounds and costs other than the defaults.
    const DOVEADM_ROUNDS: &[(&str, Scheme)] = &[
        ("{SHA512-CRYPT}$6$rounds=10000$iig6P.nAS90y2J4V$s73oq3IupyNWeVoqUCUZPlOvT6zjdUN.TGZEnAb3wYah8zD.kjmO1AcOhjNjmQnTJYiwSwRBFzgHF9T3JXk2U.", Scheme::Sha512Crypt),
        ("{BLF-CRYPT}$2y$05$6Hyj6PRz1U.HQ6hbfmH1LOw1Ih376NFTGoZUWBIxV7szXS0D2nrp2", Scheme::BlfCrypt),
    ];

    #[test]
    fn argon2_parallelism_that_overflows_is_refused_not_a_panic() {
        // Found by the fuzz harness: argon2's Params computes 8 * p.
        let field = "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1111111111$DkRyrE8qkCO/h7JbbKOYxg$L5iVhkGnNUN+vFFuM9mtZ18GXAlednlw1XzPmmu2p10";
        assert!(matches!(parse(field), Err(SchemeError::TooCostly { .. })));
        // And when the key comes twice (the second run's find).
        let field = "{ARGON2I}$argon2i$v=19$m=32768,p=4,p=1111111111$DkRyrE8qkCO/h7JbbKOYxg$L5iVhkGnNUN+vFFuM9mtZ18GXAlednlw1XzPmmu2p10";
        assert!(parse(field).is_err());
    }

    #[test]
    fn doveadm_hashes_verify() {
        for (field, scheme) in DOVEADM {
            let s = parse(field).unwrap_or_else(|e| panic!("{field}: {e}"));
            assert_eq!(s.scheme(), *scheme, "{field}");
            assert!(s.verify("correct horse"), "{field}");
            assert!(!s.verify("correct horsE"), "{field}");
        }
        for (field, scheme) in DOVEADM_ROUNDS {
            let s = parse(field).unwrap();
            assert_eq!(s.scheme(), *scheme);
            assert!(s.verify("x"), "{field}");
            assert!(!s.verify("y"), "{field}");
        }
        // The same hashes without {SCHEME}: recognised by $id$ (the
        // Argon2 ones only parsed: each verification takes a while).
        for (field, scheme) in DOVEADM.iter().take(5) {
            let bare = field.split_once('}').unwrap().1;
            let s = parse(bare).unwrap();
            assert_eq!(s.scheme(), *scheme);
            assert!(matches!(s, Stored::Argon2 { .. }) || s.verify("correct horse"));
        }
        // Scheme names in any case.
        assert!(parse("{sha512-crypt}$6$/7GByWMM1s2JxGVx$7.kXQBNGV6qZh9w57lRyzNwTp.Cftp0sua1RVlpEea75N0BWTiosbs1.FmzX13ign5FpxDHzI.MPYBkuBzOqk1").unwrap().verify("correct horse"));
    }

    #[test]
    fn new_hashes_verify_and_look_like_doveadm_s() {
        for scheme in Scheme::ALL {
            let f = hash(scheme, "pass word").unwrap();
            assert!(f.starts_with(&format!("{{{}}}", scheme.name())), "{f}");
            let s = parse(&f).unwrap();
            assert_eq!(s.scheme(), scheme);
            assert!(s.verify("pass word"), "{f}");
            assert!(!s.verify("pass Word"), "{f}");
        }
        let a = hash(Scheme::Argon2id, "x").unwrap();
        assert!(
            a.starts_with("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$"),
            "{a}"
        );
        assert_ne!(a, hash(Scheme::Argon2id, "x").unwrap(), "salted");
        assert!(hash(Scheme::BlfCrypt, "x")
            .unwrap()
            .starts_with("{BLF-CRYPT}$2y$10$"));
        assert!(matches!(
            hash(Scheme::Plain, "a:b"),
            Err(HashError::PlainCharacters)
        ));
    }

    #[test]
    fn malformed_fields_are_errors() {
        let cases: &[(&str, &str)] = &[
            ("", "no password"),
            ("{MD5-CRYPT}$1$abc$def", "unknown password scheme \"MD5-CRYPT\""),
            ("$1$abc$def", "unknown password scheme \"CRYPT with $1$\""),
            ("abcdefghijklm", "unknown password scheme \"CRYPT with $DES$\""),
            ("{SHA512-CRYPT}$5$aaaa$bbbb", "SHA512-CRYPT: malformed hash: does not start with $6$"),
            ("{SHA512-CRYPT}$6$salt$short", "SHA512-CRYPT: malformed hash: the hash is not 86 crypt base64 characters"),
            ("{SHA512-CRYPT}$6$rounds=x$salt$h", "SHA512-CRYPT: malformed hash: rounds= is not a number"),
            ("{SHA256-CRYPT}$5$a$b$c", "SHA256-CRYPT: malformed hash: expected salt$hash"),
            ("{BLF-CRYPT}$2x$05$Fa3DS93UySHC5IStc5c32ObZvws81dtRYGph5F2VjUNOwGUaJ.C02", "BLF-CRYPT: malformed hash: version is not 2y, 2b or 2a"),
            ("{BLF-CRYPT}$2y$32$Fa3DS93UySHC5IStc5c32ObZvws81dtRYGph5F2VjUNOwGUaJ.C02", "BLF-CRYPT: malformed hash: cost is not 04..31"),
            ("{BLF-CRYPT}$2y$5$Fa3DS93UySHC5IStc5c32ObZvws81dtRYGph5F2VjUNOwGUaJ.C02", "BLF-CRYPT: malformed hash: cost is not 04..31"),
            ("{BLF-CRYPT}$2y$05$Fa3DS93UySHC5IStc5c32ObZvws81dtRYGph5F2VjUNOwGUaJ.C0", "BLF-CRYPT: malformed hash: salt and hash are not 53 bcrypt base64 characters"),
            ("{ARGON2ID}$argon2i$v=19$m=32768,t=4,p=1$DkRyrE8qkCO/h7JbbKOYxg$L5iVhkGnNUN+vFFuM9mtZ18GXAlednlw1XzPmmu2p10", "ARGON2ID: malformed hash: algorithm argon2i in a ARGON2ID field"),
            ("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$LpEjiuxG3WMa+VieIQtJnQ", "ARGON2ID: malformed hash: no hash"),
            ("{ARGON2ID}nonsense", "ARGON2ID: malformed hash: "),
            ("{ARGON2ID}$argon2id$v=19$m=4294967295,t=3,p=1$LpEjiuxG3WMa+VieIQtJnQ$kSpD2tZXOhjlV0NT+6VcmBVfiwCsOEdWvkrtxtW1EOg", "ARGON2ID: m=4294967295 is over the bound"),
            ("{NOPE}x", "unknown password scheme \"NOPE\""),
        ];
        for (field, want) in cases {
            let e = parse(field).unwrap_err().to_string();
            assert!(e.starts_with(want), "{field}: {e}");
        }
        // rounds= out of range is clamped, as glibc does.
        match parse("$6$rounds=10$s$s73oq3IupyNWeVoqUCUZPlOvT6zjdUN.TGZEnAb3wYah8zD.kjmO1AcOhjNjmQnTJYiwSwRBFzgHF9T3JXk2U.").unwrap() {
            Stored::ShaCrypt { rounds, .. } => assert_eq!(rounds, 1000),
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn apop_needs_a_plain_password() {
        // RFC 1939 7's example: the secret "tanstaaf".
        let s = parse("{PLAIN}tanstaaf").unwrap();
        let challenge = "<1896.697170952@dbc.mtview.ca.us>";
        assert!(s.verify_apop(challenge, "c4c9334bac560ecc979e58001b3e22fb"));
        assert!(s.verify_apop(challenge, "C4C9334BAC560ECC979E58001B3E22FB"));
        assert!(!s.verify_apop(challenge, "c4c9334bac560ecc979e58001b3e22fc"));
        assert!(!s.verify_apop("<other@x>", "c4c9334bac560ecc979e58001b3e22fb"));
        let h = parse(&hash(Scheme::Sha256Crypt, "tanstaaf").unwrap()).unwrap();
        assert!(!h.verify_apop(challenge, "c4c9334bac560ecc979e58001b3e22fb"));
    }
}
