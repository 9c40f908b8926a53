//! `posthorn dkim keygen DOMAIN` and `posthorn dkim show DOMAIN`: DKIM
//! keys in dkim_key_directory and the DNS TXT records that publish them
//! (the keys themselves: posthorn_trust::sign).
//!
//! keygen writes `DIR/DOMAIN/SELECTOR.key` (PKCS#8 PEM, created
//! exclusively, mode 0600, never overwriting a key; given to mail_owner
//! through its descriptor when root runs it, in root's 0755 directories, as
//! posthorn-smtp reads it as mail_owner) and prints
//! its record. The default selector is the year and month (`YYYYMM`, as
//! Google and many sites use), so a later key gets a new name and both
//! can be published while mail signed with the old one is in transit.
//!
//! Diagnostics: `posthorn: dkim: ...` on standard error, exit status 1.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use posthorn_trust::sign::{self, Algorithm};

#[derive(Subcommand)]
pub enum DkimCmd {
    /// Make a key for DOMAIN and print the DNS TXT record to publish.
    Keygen {
        domain: String,
        /// The selector (default: the current year and month, YYYYMM).
        #[arg(long, short = 's')]
        selector: Option<String>,
        /// rsa (rsa-sha256) or ed25519 (RFC 8463).
        #[arg(long, short = 'a', value_enum, default_value = "rsa")]
        algorithm: Alg,
        /// RSA key size: 2048, 3072 or 4096.
        #[arg(long, short = 'b', default_value_t = 2048)]
        bits: u32,
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Print the DNS TXT record of every key of DOMAIN.
    Show {
        domain: String,
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Alg {
    Rsa,
    Ed25519,
}

pub fn run(cmd: DkimCmd) -> i32 {
    match cmd {
        DkimCmd::Keygen {
            domain,
            selector,
            algorithm,
            bits,
            config,
        } => {
            let Some((cfg, dir)) = key_dir(config) else {
                return 1;
            };
            let selector = selector.unwrap_or_else(default_selector);
            let alg = match algorithm {
                Alg::Rsa => Algorithm::Rsa,
                Alg::Ed25519 => Algorithm::Ed25519,
            };
            let owner = if common::privilege::is_root() {
                match common::privilege::lookup_user(&cfg.get("mail_owner")) {
                    Some(o) => Some((o.uid, o.gid)),
                    None => {
                        eprintln!(
                            "posthorn: dkim: mail_owner {:?} is no user",
                            cfg.get("mail_owner")
                        );
                        return 1;
                    }
                }
            } else {
                None
            };
            match sign::keygen(&dir, &domain, &selector, alg, bits, owner) {
                Ok(k) => {
                    let d = domain.trim_end_matches('.').to_ascii_lowercase();
                    eprintln!("posthorn: dkim: wrote {}", k.path.display());
                    print_record(k.record(&d));
                    0
                }
                Err(e) => {
                    eprintln!("posthorn: dkim: {e}");
                    1
                }
            }
        }
        DkimCmd::Show { domain, config } => {
            let Some((_, dir)) = key_dir(config) else {
                return 1;
            };
            match sign::dns_records(&dir, &domain) {
                Ok(r) if r.is_empty() => {
                    eprintln!("posthorn: dkim: no key for {domain} in {}", dir.display());
                    1
                }
                Ok(r) => {
                    r.into_iter().for_each(print_record);
                    0
                }
                Err(e) => {
                    eprintln!("posthorn: dkim: {e}");
                    1
                }
            }
        }
    }
}

fn key_dir(config: Option<PathBuf>) -> Option<(common::config::Config, PathBuf)> {
    let dir = crate::config_dir(config);
    match common::config::Config::load(&dir) {
        Ok(cfg) => {
            let d = PathBuf::from(cfg.get("dkim_key_directory"));
            Some((cfg, d))
        }
        Err(e) => {
            eprintln!("posthorn: {e}");
            None
        }
    }
}

/// `NAME. IN TXT "..."`, the value split into strings of at most 255
/// bytes (RFC 1035 3.3.14; RFC 6376 3.6.2.2: a verifier joins them).
fn print_record((name, value): (String, String)) {
    let parts: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    println!("{name} IN TXT {}", parts.join(" "));
}

/// YYYYMM of today (UTC).
fn default_selector() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Days to civil date (Howard Hinnant's algorithm).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_selector_is_a_year_and_month() {
        let s = super::default_selector();
        assert_eq!(s.len(), 6);
        assert!(s.starts_with("20"), "{s}");
        let m: u32 = s[4..].parse().unwrap();
        assert!((1..=12).contains(&m));
    }
}
