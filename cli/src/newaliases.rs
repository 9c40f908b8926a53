//! `newaliases`: check the alias_maps tables.
//!
//! posthorn reads aliases(5) text files directly and reads them again when
//! they change, so there is no database to build (Postfix's newaliases runs
//! postalias to make aliases.db). What is left is the check: every table of
//! alias_maps is read and each problem printed as
//! `newaliases: FILE, line N: why`; the exit status is 1 when there was
//! one, 0 otherwise. `sendmail -bi` runs this too.
//!
//! Usage: `newaliases [-c CONFIG_DIR]` (else $POSTHORN_CONFIG_DIR, else
//! /etc/posthorn).

use std::path::{Path, PathBuf};

use common::config::Config;

/// The program's entry point under the name newaliases.
pub fn main() -> i32 {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "-c" => match args.next() {
                Some(d) => dir = Some(PathBuf::from(d)),
                None => {
                    eprintln!("newaliases: -c needs a directory");
                    return 2;
                }
            },
            _ if a.starts_with("-c") => dir = Some(PathBuf::from(&a[2..])),
            _ => {
                eprintln!("usage: newaliases [-c config_directory]");
                return 2;
            }
        }
    }
    run(&crate::config_dir(dir))
}

/// Check every alias_maps table of the configuration in `config_dir`;
/// print each problem; 0 when there was none, 1 otherwise.
pub fn run(config_dir: &Path) -> i32 {
    let cfg = match Config::load(config_dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("newaliases: {e}");
            return 1;
        }
    };
    let errors = common::aliases::check(&cfg.list("alias_maps"));
    for e in &errors {
        eprintln!("newaliases: {e}");
    }
    i32::from(!errors.is_empty())
}
