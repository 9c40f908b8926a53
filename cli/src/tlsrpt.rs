//! `posthorn tlsrpt DOMAIN [--date YYYY-MM-DD]`: the TLS-RPT report (RFC
//! 8460) of one policy domain for one UTC day, as JSON on stdout, from what
//! posthorn-smtp recorded in `$queue_directory/tlsrpt/` (trust::tlsrpt).
//! The day defaults to yesterday (a whole day, what a daily job sends).
//! organization-name and contact-info are tlsrpt_organization and
//! tlsrpt_contact. Sending the report (to the rua of the domain's
//! `_smtp._tls` record) is left to the administrator's job.
//!
//! Diagnostics: exit 1 with a message for a bad date or an unreadable
//! file; a day without sessions for the domain is a report without
//! policies (exit 0).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use posthorn_trust::tlsrpt::{self, Reporter};

pub fn run(dir: &Path, domain: &str, date: Option<&str>) -> i32 {
    let cfg = match common::config::Config::load(dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("posthorn: {e}");
            return 1;
        }
    };
    let day = match date {
        Some(d) => match tlsrpt::parse_day(d) {
            Some(t) => t,
            None => {
                eprintln!("posthorn: tlsrpt: {d:?} is not a date (YYYY-MM-DD)");
                return 1;
            }
        },
        None => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            (now / 86_400).saturating_sub(1) * 86_400
        }
    };
    let path = tlsrpt::day_file(&cfg.queue_dir().join("tlsrpt"), day);
    let sessions = match tlsrpt::read(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("posthorn: tlsrpt: {e}");
            return 1;
        }
    };
    let who = Reporter {
        organization: cfg.get("tlsrpt_organization"),
        contact: cfg.get("tlsrpt_contact"),
        hostname: cfg.get("myhostname"),
    };
    let report = tlsrpt::report(&sessions, domain, day, &who);
    println!("{}", report.to_json());
    0
}
