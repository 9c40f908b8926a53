//! `posthorn dns [DOMAIN] [--check] [--mta-sts-policy FILE] [--autoconfig
//! FILE]`: the DNS records a mail domain served by this host publishes
//! (trust::records: MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, TLSA, SRV), in
//! zone-file syntax with a comment per group; with --check, each one looked
//! up through dns_servers and judged (trust::records_check), one line
//! each; the MTA-STS policy file and Thunderbird's autoconfig file for the
//! web server.
//!
//! Diagnostics: errors go to standard error as `posthorn: ...` with exit
//! 1; --check exits 0 only when every record is ok.

use std::path::{Path, PathBuf};

use clap::Args;

use common::config::Config;
use posthorn_trust::records::{self, Site, Verdict, CLIENT_SERVICES};

#[derive(Args)]
pub struct DnsArgs {
    /// The mail domain (default: the first of virtual_mailbox_domains, else $mydomain).
    pub domain: Option<String>,
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// Look each record up (dns_servers) and print ok, missing or wrong for each.
    #[arg(long = "check")]
    pub check: bool,
    /// Write the MTA-STS policy file (.well-known/mta-sts.txt) here.
    #[arg(long = "mta-sts-policy", value_name = "FILE")]
    pub mta_sts_policy: Option<PathBuf>,
    /// Write the Thunderbird autoconfig file (config-v1.1.xml) here.
    #[arg(long = "autoconfig", value_name = "FILE")]
    pub autoconfig: Option<PathBuf>,
}

pub fn run(a: &DnsArgs) -> i32 {
    let dir = crate::config_dir(a.config.clone());
    let cfg = match Config::load(&dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("posthorn: {e}");
            return 1;
        }
    };
    let virtual_domains = cfg.list("virtual_mailbox_domains");
    let domain = a
        .domain
        .clone()
        .or_else(|| virtual_domains.first().cloned())
        .unwrap_or_else(|| cfg.get("mydomain"));
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if !is_domain(&domain) {
        eprintln!("posthorn: {domain:?} is not a domain name");
        return 1;
    }
    let site = match site(&cfg, &domain) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("posthorn: {e}");
            return 1;
        }
    };
    if a.check {
        return check(&cfg, &site);
    }
    println!(
        "; DNS records for mail to and from {domain}, served by {}",
        site.host
    );
    println!(
        "; {0} itself needs an A (and AAAA) record, and its address a PTR back to {0}.",
        site.host
    );
    for g in site.groups() {
        for c in &g.comment {
            println!("; {c}");
        }
        for r in &g.records {
            println!("{}", r.zone_line());
        }
    }
    if let Some(path) = &a.mta_sts_policy {
        if let Err(e) = std::fs::write(path, site.mta_sts.text()) {
            eprintln!("posthorn: {}: {e}", path.display());
            return 1;
        }
        println!(
            "; The MTA-STS policy is {}: serve it as https://mta-sts.{domain}/.well-known/mta-sts.txt.",
            path.display()
        );
    }
    if let Some(path) = &a.autoconfig {
        // Virtual users log in with their address, system users with
        // their name (mydestination).
        let user = if virtual_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(&domain))
        {
            "%EMAILADDRESS%"
        } else {
            "%EMAILLOCALPART%"
        };
        let xml = autoconfig_xml(&domain, &site.host, user);
        if let Err(e) = std::fs::write(path, xml) {
            eprintln!("posthorn: {}: {e}", path.display());
            return 1;
        }
        println!(
            "; Thunderbird's account setup file is {}: serve it as \
             https://autoconfig.{domain}/mail/config-v1.1.xml (and \
             https://{domain}/.well-known/autoconfig/mail/config-v1.1.xml).",
            path.display()
        );
    }
    0
}

/// The records' inputs from main.cf.
fn site(cfg: &Config, domain: &str) -> Result<Site, String> {
    let mode = cfg
        .one_of("mta_sts_mode", &["enforce", "testing", "none"])
        .map_err(|e| e.to_string())?;
    let max_age = cfg.int("mta_sts_max_age").map_err(|e| e.to_string())?;
    if max_age > 31_557_600 {
        return Err("mta_sts_max_age: more than 31557600 seconds (RFC 8461 3.2)".into());
    }
    let host = cfg.get("myhostname").trim_end_matches('.').to_string();
    let cert = cfg.get("smtpd_tls_cert_file");
    let spki = if cert.trim().is_empty() {
        None
    } else {
        Some(records::cert_spki(Path::new(cert.trim())).map_err(|e| e.to_string())?)
    };
    // DKIM: one record per key in dkim_key_directory
    // ($config_directory/dkim/DOMAIN/SELECTOR.key, trust::sign's);
    // --check compares each record's p= with DNS.
    let dkim = records::dkim_records(
        posthorn_trust::sign::dns_records(Path::new(&cfg.get("dkim_key_directory")), domain)
            .map_err(|e| e.to_string())?,
    );
    Ok(Site {
        domain: domain.to_string(),
        mta_sts: records::MtaStsPolicy {
            mode,
            mx: vec![host.clone()],
            max_age,
        },
        host,
        dmarc_rua: cfg.get("dmarc_report_address").trim().to_string(),
        tlsrpt_rua: cfg.get("tlsrpt_report_address").trim().to_string(),
        spki,
        dkim,
    })
}

/// `--check`: one line per record, `LABEL NAME.: VERDICT`.
fn check(cfg: &Config, site: &Site) -> i32 {
    let rt = match common::dns::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("posthorn: {e}");
            return 1;
        }
    };
    let records = site.records();
    let verdicts = rt.block_on(async {
        let resolver = posthorn_trust::dns::resolver(&cfg.list("dns_servers"))?;
        Ok::<_, posthorn_trust::dns::DnsError>(
            posthorn_trust::records_check::check(&resolver, &site.host, &records).await,
        )
    });
    let verdicts = match verdicts {
        Ok(v) => v,
        Err(e) => {
            eprintln!("posthorn: {e}");
            return 1;
        }
    };
    let mut bad = 0;
    for (r, v) in records.iter().zip(&verdicts) {
        println!("{} {}.: {v}", r.kind.label(), r.name);
        if *v != Verdict::Ok {
            bad += 1;
        }
    }
    if bad > 0 {
        eprintln!(
            "posthorn: {bad} of {} records of {} are not as they should be",
            records.len(),
            site.domain
        );
        1
    } else {
        0
    }
}

/// Letters, digits and hyphens in dot-separated labels of at most 63
/// octets (RFC 1035 2.3.1), at most 253 in all.
fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Thunderbird's autoconfig file (clientConfig version 1.1), the names
/// escaped for XML.
fn autoconfig_xml(domain: &str, host: &str, user: &str) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let (domain, host) = (esc(domain), esc(host));
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str("<clientConfig version=\"1.1\">\n");
    x.push_str(&format!("  <emailProvider id=\"{domain}\">\n"));
    x.push_str(&format!("    <domain>{domain}</domain>\n"));
    x.push_str(&format!("    <displayName>{domain} mail</displayName>\n"));
    x.push_str(&format!(
        "    <displayShortName>{domain}</displayShortName>\n"
    ));
    for (_, port, element, kind, socket) in CLIENT_SERVICES {
        x.push_str(&format!("    <{element} type=\"{kind}\">\n"));
        x.push_str(&format!("      <hostname>{host}</hostname>\n"));
        x.push_str(&format!("      <port>{port}</port>\n"));
        x.push_str(&format!("      <socketType>{socket}</socketType>\n"));
        x.push_str("      <authentication>password-cleartext</authentication>\n");
        x.push_str(&format!("      <username>{user}</username>\n"));
        x.push_str(&format!("    </{element}>\n"));
    }
    x.push_str("  </emailProvider>\n</clientConfig>\n");
    x
}
