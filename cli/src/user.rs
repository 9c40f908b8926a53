//! `posthorn user add|del|passwd|list`: the virtual mailbox users.
//!
//! Edits the users file (virtual_mailbox_maps, Dovecot's passwd-file
//! format) through common::users::change: atomic and durable, under a lock,
//! mode kept (new files 0600). New passwords are `{ARGON2ID}` with
//! doveadm's parameters (posthorn_auth::scheme::hash), or the scheme named
//! by --scheme. The password comes from --password or the first line of
//! standard input. posthorn-auth sees a change within a second, without a
//! restart.
//!
//! Diagnostics: errors on standard error (`posthorn: ...`), exit status 1;
//! a warning when the domain is not in virtual_mailbox_domains, or the name
//! has characters a login name cannot have.

use std::io::BufRead;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use common::config::Config;
use common::users::{self, Change, EditError};
use posthorn_auth::scheme::{self, HashError, Scheme};

#[derive(Subcommand)]
pub enum UserCmd {
    /// Add a user (an error if the user exists).
    Add(PasswordArgs),
    /// Remove a user (the Maildir stays).
    Del {
        /// The address, user@domain.
        address: String,
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Change a user's password.
    Passwd(PasswordArgs),
    /// List the users, one address per line.
    List {
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct PasswordArgs {
    /// The address, user@domain (a domain of virtual_mailbox_domains).
    address: String,
    /// The password (default: one line from standard input).
    #[arg(long)]
    password: Option<String>,
    /// The password scheme: ARGON2ID (default), ARGON2I, SHA512-CRYPT,
    /// SHA256-CRYPT, BLF-CRYPT or PLAIN.
    #[arg(long, default_value = "ARGON2ID")]
    scheme: String,
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
}

/// Why a user command failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0:?} is not an address of the form user@domain")]
    BadAddress(String),
    #[error("empty password")]
    EmptyPassword,
    #[error("unknown password scheme {0:?} (known: ARGON2ID, ARGON2I, SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, PLAIN)")]
    UnknownScheme(String),
    #[error("cannot read the password from standard input: {0}")]
    Stdin(std::io::Error),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error(transparent)]
    Config(#[from] common::config::ConfigError),
}

pub fn run(cmd: UserCmd) -> i32 {
    match run_cmd(cmd) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("posthorn: {e}");
            1
        }
    }
}

fn run_cmd(cmd: UserCmd) -> Result<(), UserError> {
    match cmd {
        UserCmd::Add(a) => {
            let (cfg, scheme, password) = prepare(&a)?;
            let field = new_field(&cfg, &a.address, &password, scheme)?;
            users::change(&cfg.users_file(), &a.address, Change::Add(&field))?;
            println!(
                "posthorn: added {} to {}",
                a.address.to_ascii_lowercase(),
                cfg.users_file().display()
            );
        }
        UserCmd::Passwd(a) => {
            let (cfg, scheme, password) = prepare(&a)?;
            let field = new_field(&cfg, &a.address, &password, scheme)?;
            users::change(&cfg.users_file(), &a.address, Change::Passwd(&field))?;
            println!(
                "posthorn: changed the password of {} in {}",
                a.address.to_ascii_lowercase(),
                cfg.users_file().display()
            );
        }
        UserCmd::Del { address, config } => {
            let cfg = Config::load(&crate::config_dir(config))?;
            users::change(&cfg.users_file(), &address, Change::Delete)?;
            println!(
                "posthorn: removed {} from {} (its mailbox is left as it is)",
                address.to_ascii_lowercase(),
                cfg.users_file().display()
            );
        }
        UserCmd::List { config } => {
            let cfg = Config::load(&crate::config_dir(config))?;
            for a in users::list(&cfg.users_file())? {
                println!("{a}");
            }
        }
    }
    Ok(())
}

/// The configuration, the scheme and the password of add and passwd.
fn prepare(a: &PasswordArgs) -> Result<(Config, Scheme, String), UserError> {
    let cfg = Config::load(&crate::config_dir(a.config.clone()))?;
    let scheme =
        Scheme::from_name(&a.scheme).ok_or_else(|| UserError::UnknownScheme(a.scheme.clone()))?;
    let password = match &a.password {
        Some(p) => p.clone(),
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(UserError::Stdin)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    Ok((cfg, scheme, password))
}

/// Check the address and password; hash the password. Warns (stderr) when
/// the domain is not one of ours or the name cannot log in.
fn new_field(
    cfg: &Config,
    address: &str,
    password: &str,
    scheme: Scheme,
) -> Result<String, UserError> {
    let (local, domain) = common::addr::split(address);
    if local.is_empty() || domain.is_empty() || address.contains(char::is_whitespace) {
        return Err(UserError::BadAddress(address.to_string()));
    }
    if password.is_empty() {
        return Err(UserError::EmptyPassword);
    }
    if !common::addr::domain_in(domain, &cfg.list("virtual_mailbox_domains")) {
        eprintln!("posthorn: warning: {domain} is not in virtual_mailbox_domains; mail to {address} is not accepted until it is");
    }
    if !posthorn_auth::service::valid_login_name(address) {
        eprintln!("posthorn: warning: {address} has characters a login name cannot have (letters, digits and .-_@ only): it can receive mail but not log in");
    }
    Ok(scheme::hash(scheme, password)?)
}

/// Add a user, or set an existing user's password, with an ARGON2ID hash
/// (`posthorn dev`'s users). Ok(true) when the user existed.
pub fn set(cfg: &Config, address: &str, password: &str) -> Result<bool, UserError> {
    let field = new_field(cfg, address, password, Scheme::Argon2id)?;
    Ok(users::change(
        &cfg.users_file(),
        address,
        Change::Set(&field),
    )?)
}
