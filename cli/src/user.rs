//! `posthorn user add ADDRESS [--password P]`: virtual mailbox users.
//!
//! Writes the users file (virtual_mailbox_maps, Dovecot passwd-file format)
//! with a `{SHA512-CRYPT}` hash, atomically. The password comes from
//! --password or the first line of standard input.

use std::io::BufRead;
use std::path::PathBuf;

use clap::Subcommand;

use common::config::Config;

#[derive(Subcommand)]
pub enum UserCmd {
    /// Add a user, or set an existing user's password.
    Add {
        /// The address, user@domain (a domain of virtual_mailbox_domains).
        address: String,
        /// The password (default: read one line from standard input).
        #[arg(long)]
        password: Option<String>,
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
}

pub fn run(cmd: UserCmd) -> i32 {
    match cmd {
        UserCmd::Add {
            address,
            password,
            config,
        } => {
            let dir = crate::config_dir(config);
            let cfg = match Config::load(&dir) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("posthorn: {e}");
                    return 1;
                }
            };
            let password = match password {
                Some(p) => p,
                None => {
                    let mut line = String::new();
                    if std::io::stdin().lock().read_line(&mut line).is_err() {
                        eprintln!("posthorn: cannot read the password from standard input");
                        return 1;
                    }
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            match add(&cfg, &address, &password) {
                Ok(replaced) => {
                    let verb = if replaced { "updated" } else { "added" };
                    println!(
                        "posthorn: {verb} {address} in {}",
                        cfg.users_file().display()
                    );
                    0
                }
                Err(e) => {
                    eprintln!("posthorn: {e}");
                    1
                }
            }
        }
    }
}

/// Add or update a user. Ok(true) when the user existed.
pub fn add(cfg: &Config, address: &str, password: &str) -> Result<bool, String> {
    let (local, domain) = common::addr::split(address);
    if local.is_empty() || domain.is_empty() || address.contains(char::is_whitespace) {
        return Err(format!(
            "{address:?} is not an address of the form user@domain"
        ));
    }
    if password.is_empty() {
        return Err("empty password".into());
    }
    if !common::addr::domain_in(domain, &cfg.list("virtual_mailbox_domains")) {
        eprintln!("posthorn: warning: {domain} is not in virtual_mailbox_domains; mail to {address} is not accepted until it is");
    }
    let hash = hash_password(password)?;
    common::users::upsert(
        &cfg.users_file(),
        address,
        &format!("{{SHA512-CRYPT}}{hash}"),
    )
    .map_err(|e| format!("{}: {e}", cfg.users_file().display()))
}

/// `$6$salt$hash` (SHA-crypt, 5000 rounds: what Dovecot's SHA512-CRYPT reads).
pub fn hash_password(password: &str) -> Result<String, String> {
    const SALT_CHARS: &[u8; 64] =
        b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut raw = [0u8; 16];
    getrandom::getrandom(&mut raw).map_err(|e| format!("no randomness for the salt: {e}"))?;
    let salt: String = raw
        .iter()
        .map(|b| SALT_CHARS[(*b & 63) as usize] as char)
        .collect();
    let params = sha_crypt::Sha512Params::new(5000).map_err(|e| format!("{e:?}"))?;
    let hash = sha_crypt::sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &params)
        .map_err(|e| format!("{e:?}"))?;
    Ok(format!("$6${salt}${hash}"))
}
