//! `posthorn dmarc report [--date YYYY-MM-DD] [--domain D] [--output DIR]`:
//! the DMARC aggregate reports (RFC 7489 7.2) of one UTC day (default:
//! yesterday) from `$queue_directory/dmarc/DATE.jsonl` (trust::dmarc_store,
//! written by smtpd), one gzip-compressed XML file per policy domain
//! (trust::dmarc_report), each path printed; with --mail each is also
//! mailed (mail-auth's RFC 5322 form, through sendmail) to the rua
//! addresses of its domain's DMARC record that RFC 7489 7.1 allows.
//!
//! Diagnostics: errors go to standard error as `posthorn: ...` with exit
//! 1; a day without observations is said on standard error, exit 0.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use common::config::Config;
use posthorn_trust::{dmarc_report, dmarc_store};

#[derive(Subcommand)]
pub enum DmarcCmd {
    /// Write the DMARC aggregate reports of one day, one file per policy domain.
    Report(ReportArgs),
}

#[derive(Args)]
pub struct ReportArgs {
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// The UTC day (default: yesterday).
    #[arg(long = "date", value_name = "YYYY-MM-DD")]
    pub date: Option<String>,
    /// Only this policy domain's report.
    #[arg(long = "domain", value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Where the reports are written (default: the current directory).
    #[arg(long = "output", value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Also mail each report to its domain's rua addresses (through sendmail).
    #[arg(long = "mail")]
    pub mail: bool,
}

pub fn run(cmd: DmarcCmd) -> i32 {
    match cmd {
        DmarcCmd::Report(a) => report(&a),
    }
}

fn report(a: &ReportArgs) -> i32 {
    let dir = crate::config_dir(a.config.clone());
    let cfg = match Config::load(&dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("posthorn: {e}");
            return 1;
        }
    };
    let store = cfg.queue_dir().join("dmarc");
    let begin = match &a.date {
        Some(d) => match dmarc_report::day_start(d) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("posthorn: --date: {e}");
                return 1;
            }
        },
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            (now / 86_400).saturating_sub(1) * 86_400
        }
    };
    let file = dmarc_store::day_file(&store, begin);
    let date = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let observations = match dmarc_store::read(&file) {
        Ok(o) => o,
        Err(dmarc_store::StoreError::Io(_, e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Vec::new()
        }
        Err(e) => {
            eprintln!("posthorn: {e}");
            return 1;
        }
    };
    let reporter = dmarc_report::Reporter {
        org_name: cfg.get("dmarc_report_organization"),
        email: cfg.get("dmarc_report_address"),
        receiver: cfg.get("mydomain"),
        host: cfg.get("myhostname"),
    };
    let only = a
        .domain
        .as_deref()
        .map(|d| d.trim_end_matches('.').to_ascii_lowercase());
    let reports = dmarc_report::reports(&observations, begin, &reporter, only.as_deref());
    if reports.is_empty() {
        eprintln!(
            "posthorn: no DMARC observations{} for {date} in {}",
            only.map(|d| format!(" of {d}")).unwrap_or_default(),
            file.display()
        );
        return 0;
    }
    let out = a.output.clone().unwrap_or_else(|| PathBuf::from("."));
    let mut code = 0;
    for r in &reports {
        match dmarc_report::write(&out, r) {
            Ok(path) => println!(
                "{}: {}, {} messages in {} rows",
                path.display(),
                r.domain,
                r.messages,
                r.report.records().len()
            ),
            Err(e) => {
                eprintln!("posthorn: {e}");
                code = 1;
            }
        }
    }
    if a.mail && mail(&dir, &cfg, &reporter, &reports) > 0 {
        code = 1;
    }
    code
}

/// `--mail`: each report to its domain's allowed rua addresses, through
/// sendmail (this program as `posthorn sendmail -C DIR -i -f FROM -- TO...`).
/// Returns the number of reports that could not be sent.
fn mail(
    dir: &Path,
    cfg: &Config,
    reporter: &dmarc_report::Reporter,
    reports: &[dmarc_report::DomainReport],
) -> usize {
    if reporter.email.trim().is_empty() {
        eprintln!(
            "posthorn: dmarc_report_address is empty: the reports have no sender to be mailed from"
        );
        return reports.len();
    }
    let rt = match common::dns::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("posthorn: {e}");
            return reports.len();
        }
    };
    let resolver =
        match rt.block_on(async { posthorn_trust::dns::resolver(&cfg.list("dns_servers")) }) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("posthorn: {e}");
                return reports.len();
            }
        };
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("posthorn"));
    let mut failed = 0;
    for r in reports {
        let (to, refused) = match rt.block_on(dmarc_report::destinations(&resolver, &r.domain)) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("posthorn: {}: DMARC record: {e}: report not sent", r.domain);
                failed += 1;
                continue;
            }
        };
        for addr in &refused {
            eprintln!(
                "posthorn: {}: not sending to {addr}: its domain publishes no {}._report._dmarc record (RFC 7489 7.1)",
                r.domain, r.domain
            );
        }
        if to.is_empty() {
            eprintln!("posthorn: {}: no report address (rua) to send to", r.domain);
            continue;
        }
        let message = match r.report.to_rfc5322(
            &reporter.receiver,
            (reporter.org_name.as_str(), reporter.email.as_str()),
            to.iter().map(String::as_str),
        ) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("posthorn: {}: {e}", r.domain);
                failed += 1;
                continue;
            }
        };
        let sent = std::process::Command::new(&exe)
            .arg("sendmail")
            .arg("-C")
            .arg(dir)
            .args(["-i", "-f", &reporter.email, "--"])
            .args(&to)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                if let Some(mut stdin) = child.stdin.take() {
                    stdin.write_all(message.as_bytes())?;
                }
                child.wait()
            });
        match sent {
            Ok(status) if status.success() => {
                println!("{}: report sent to {}", r.domain, to.join(", "))
            }
            Ok(status) => {
                eprintln!("posthorn: {}: sendmail: {status}", r.domain);
                failed += 1;
            }
            Err(e) => {
                eprintln!("posthorn: {}: sendmail: {e}", r.domain);
                failed += 1;
            }
        }
    }
    failed
}
