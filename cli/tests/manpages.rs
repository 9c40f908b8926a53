//! The man pages and the packaged configuration stay in step with the code.
//!
//! Postfix's check-postconf-undocumented in Rust form: every parameter of
//! `common::params::PARAMS` has an entry in man/man5/main.cf.5 with the same
//! default, the page documents no parameter that does not exist, and
//! etc/main.cf mentions every parameter. Also: every man page the package
//! ships exists and is well formed, each master.cf command has its
//! posthorn-COMMAND(8) page, posthorn(1) documents every subcommand and flag
//! the program has, etc/master.cf parses, and the postinst's spool table
//! matches `common::spool::SPOOL_DIRS`.
//!
//! The entry format in main.cf.5 (one `.TP` per parameter):
//!
//! ```text
//! .TP
//! \fBname\fR (default: \fIvalue\fR)
//! ```
//!
//! with `(default: empty)` for an empty default and
//! `(default: see "posthorn config \-d" output)` for a default computed at
//! run time (`@hostname@`, `@domain@` in the table).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::mastercf::{self, ServiceType, KNOWN_COMMANDS};
use common::params::PARAMS;

/// Every man page the package ships, below man/.
const PAGES: &[&str] = &[
    "man1/posthorn.1",
    "man1/mailq.1",
    "man1/sendmail.1",
    "man1/postdrop.1",
    "man1/newaliases.1",
    "man5/main.cf.5",
    "man5/master.cf.5",
    "man5/posthorn-users.5",
    "man7/posthorn.7",
    "man8/posthorn-master.8",
    "man8/posthorn-smtpd.8",
    "man8/posthorn-qmgr.8",
    "man8/posthorn-local.8",
    "man8/posthorn-smtp.8",
    "man8/posthorn-anvil.8",
    "man8/posthorn-auth.8",
    "man8/posthorn-pop3-login.8",
    "man8/posthorn-pop3d.8",
    "man8/posthorn-imap-login.8",
    "man8/posthorn-imapd.8",
    "man8/posthorn-pickup.8",
];

/// What main.cf.5 says for a default computed at run time.
const COMPUTED_DEFAULT: &str = "see \"posthorn config -d\" output";

fn root() -> PathBuf {
    // CARGO_MANIFEST_DIR is cli/; the workspace is its parent.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let p = root().join(rel);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Undo the roff escapes the pages use in values.
fn unroff(s: &str) -> String {
    s.replace("\\-", "-")
        .replace("\\(dq", "\"")
        .replace("\\&", "")
        .replace("\\e", "\\")
}

/// The parameter entries of main.cf.5: name -> (documented default, line).
fn main_cf_5_entries() -> (BTreeMap<String, (String, usize)>, Vec<String>) {
    let text = read("man/man5/main.cf.5");
    let lines: Vec<&str> = text.lines().collect();
    let mut entries = BTreeMap::new();
    let mut problems = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix("\\fB") else {
            continue;
        };
        let Some((name, rest)) = rest.split_once("\\fR (default: ") else {
            continue;
        };
        let lineno = i + 1;
        if i == 0 || lines[i - 1] != ".TP" {
            problems.push(format!(
                "main.cf.5 line {lineno}: entry for {name} does not follow a .TP line"
            ));
        }
        let Some(value) = rest.strip_suffix(')') else {
            problems.push(format!(
                "main.cf.5 line {lineno}: entry for {name} does not end in ')'"
            ));
            continue;
        };
        let value = if value == "empty" {
            String::new()
        } else if let Some(v) = value
            .strip_prefix("\\fI")
            .and_then(|v| v.strip_suffix("\\fR"))
        {
            unroff(v)
        } else {
            unroff(value)
        };
        if let Some((_, first)) = entries.insert(name.to_string(), (value, lineno)) {
            problems.push(format!(
                "main.cf.5 line {lineno}: {name} is documented twice (also line {first})"
            ));
        }
    }
    (entries, problems)
}

/// How main.cf.5 must show a table default.
fn documented_default(default: &str) -> String {
    if default.len() > 2 && default.starts_with('@') && default.ends_with('@') {
        COMPUTED_DEFAULT.to_string()
    } else {
        default.to_string()
    }
}

#[test]
fn main_cf_5_documents_every_parameter_with_its_default() {
    let (entries, mut problems) = main_cf_5_entries();
    assert!(
        !entries.is_empty(),
        "main.cf.5 has no parameter entries in the expected format"
    );
    for p in PARAMS {
        match entries.get(p.name) {
            None => problems.push(format!(
                "{} is in common/src/params.rs but has no entry in man/man5/main.cf.5",
                p.name
            )),
            Some((doc, line)) => {
                let want = documented_default(p.default);
                if *doc != want {
                    problems.push(format!(
                        "main.cf.5 line {line}: {} default is {doc:?}, the table says {want:?}",
                        p.name
                    ));
                }
            }
        }
    }
    for name in entries.keys() {
        if common::params::find(name).is_none() {
            problems.push(format!("man/man5/main.cf.5 documents {name}, which is not a parameter in common/src/params.rs"));
        }
    }
    assert!(
        problems.is_empty(),
        "main.cf.5 and the parameter table disagree:\n  {}",
        problems.join("\n  ")
    );
}

/// A `name = value` line of etc/main.cf: name, value, line number.
type Setting = (String, String, usize);

/// `name = value` lines of etc/main.cf: (set, commented out as `#name = value`).
fn etc_main_cf() -> (Vec<Setting>, Vec<Setting>) {
    let text = read("etc/main.cf");
    let mut set = Vec::new();
    let mut commented = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let (target, body) = match line.strip_prefix('#') {
            Some(b) => (&mut commented, b),
            None => (&mut set, line),
        };
        if body.starts_with([' ', '\t']) {
            continue; // prose, or a continuation line
        }
        let Some((name, value)) = body.split_once('=') else {
            continue;
        };
        let name = name.trim();
        if !name.is_empty()
            && name
                .bytes()
                // Postfix's names are lower case but for a few such as
                // smtp_tls_CAfile.
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            target.push((name.to_string(), value.trim().to_string(), i + 1));
        }
    }
    (set, commented)
}

#[test]
fn etc_main_cf_mentions_every_parameter() {
    let (set, commented) = etc_main_cf();
    let mut problems = Vec::new();
    for p in PARAMS {
        let first = commented
            .iter()
            .chain(set.iter())
            .filter(|(n, _, _)| n == p.name)
            .min_by_key(|(_, _, l)| *l);
        match first {
            None => problems.push(format!(
                "{} does not appear in etc/main.cf (add it, commented out with its default)",
                p.name
            )),
            // The first mention shows the default, unless it is computed at run time.
            Some((_, value, line)) if !p.default.starts_with('@') && value != p.default => problems
                .push(format!(
                "etc/main.cf line {line}: first mention of {} shows {value:?}, the default is {:?}",
                p.name, p.default
            )),
            Some(_) => {}
        }
    }
    for (name, _, line) in &set {
        if common::params::find(name).is_none() {
            problems.push(format!(
                "etc/main.cf line {line}: {name} is set but is not a parameter"
            ));
        }
    }
    let cfg = common::config::Config::parse(
        Path::new("/etc/posthorn"),
        "etc/main.cf",
        &read("etc/main.cf"),
    )
    .unwrap_or_else(|e| panic!("etc/main.cf does not parse: {e}"));
    for e in cfg.validate() {
        problems.push(format!("etc/main.cf: {e}"));
    }
    assert!(
        problems.is_empty(),
        "etc/main.cf:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn etc_master_cf_parses_and_runs_every_command() {
    let text = read("etc/master.cf");
    let services = mastercf::parse("etc/master.cf", &text, 100).unwrap_or_else(|e| panic!("{e}"));
    let smtp = services
        .iter()
        .find(|s| s.name == "smtp" && s.kind == ServiceType::Inet);
    assert!(
        smtp.is_some_and(|s| s.command == "smtpd"),
        "etc/master.cf has no smtp inet service running smtpd"
    );
    let qmgr = services
        .iter()
        .find(|s| s.command == "qmgr")
        .expect("etc/master.cf runs qmgr");
    assert!(
        qmgr.private && qmgr.name == "qmgr",
        "qmgr must be the private unix service qmgr (smtpd wakes private/qmgr)"
    );
    let local = services
        .iter()
        .find(|s| s.command == "local")
        .expect("etc/master.cf runs local");
    assert!(
        !local.unprivileged,
        "local must run with unpriv n: it writes mailboxes as their owners"
    );
    for cmd in KNOWN_COMMANDS {
        assert!(
            services.iter().any(|s| s.command == *cmd),
            "etc/master.cf has no service running {cmd}"
        );
    }
    // Submission (587, STARTTLS required) and submissions (465, TLS from
    // the first byte): smtpd with AUTH, mail only after it, as the user's
    // own address.
    for name in ["submission", "submissions"] {
        let s = services
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("etc/master.cf has no {name} service"));
        assert_eq!(s.command, "smtpd", "{name}");
        let opt = |k: &str| {
            s.overrides
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(opt("smtpd_sasl_auth_enable"), Some("yes"), "{name}");
        assert_eq!(
            opt("smtpd_client_restrictions"),
            Some("permit_sasl_authenticated,reject"),
            "{name}"
        );
        assert_eq!(
            opt("smtpd_sender_restrictions"),
            Some("reject_sender_login_mismatch"),
            "{name}"
        );
        let tls = if name == "submission" {
            opt("smtpd_tls_security_level") == Some("encrypt")
        } else {
            opt("smtpd_tls_wrappermode") == Some("yes")
        };
        assert!(tls, "{name}: TLS required");
    }
}

#[test]
fn every_man_page_exists_and_names_itself() {
    let mut problems = Vec::new();
    let listed: BTreeSet<&str> = PAGES.iter().copied().collect();
    for cmd in KNOWN_COMMANDS {
        let page = format!("man8/posthorn-{cmd}.8");
        if !listed.contains(page.as_str()) {
            problems.push(format!(
                "master.cf command {cmd} has no man page {page} in PAGES"
            ));
        }
    }
    for page in PAGES {
        let path = root().join("man").join(page);
        let Ok(text) = fs::read_to_string(&path) else {
            problems.push(format!("man/{page} is missing"));
            continue;
        };
        let file = page.rsplit('/').next().unwrap_or(page);
        let (name, section) = file.rsplit_once('.').unwrap_or((file, ""));
        let th = text.lines().find(|l| l.starts_with(".TH "));
        let want = format!(".TH {} {section} ", name.to_ascii_uppercase());
        if !th.is_some_and(|l| l.starts_with(&want)) {
            problems.push(format!(
                "man/{page}: the .TH line should begin {want:?}, found {th:?}"
            ));
        }
        if !page.starts_with(&format!("man{section}/")) {
            problems.push(format!(
                "man/{page}: section {section} page outside man{section}/"
            ));
        }
        let name_roff = name.replace('-', "\\-");
        if !text.contains(&format!("\n.SH NAME\n{name_roff} \\- ")) {
            problems.push(format!(
                "man/{page}: NAME section should read \"{name_roff} \\- ...\""
            ));
        }
    }
    // Every page under man/ is listed, so the package and this test see them all.
    for dir in fs::read_dir(root().join("man"))
        .expect("man/ exists")
        .flatten()
    {
        for f in fs::read_dir(dir.path()).into_iter().flatten().flatten() {
            let rel = format!(
                "{}/{}",
                dir.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            );
            if !listed.contains(rel.as_str()) {
                problems.push(format!(
                    "man/{rel} is not listed in PAGES of cli/tests/manpages.rs"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "man pages:\n  {}",
        problems.join("\n  ")
    );
}

/// Run the posthorn binary of this package with `args`, returning stdout.
fn posthorn(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_posthorn"))
        .args(args)
        .output()
        .expect("run posthorn");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The subcommand names of a clap help text.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// The long and short options of a clap help text (`--state`, `-o`).
fn options(help: &str) -> Vec<String> {
    let mut v = Vec::new();
    for l in help
        .lines()
        .skip_while(|l| !l.starts_with("Options:"))
        .skip(1)
    {
        for word in l.split_whitespace().take_while(|w| w.starts_with('-')) {
            let w = word.trim_end_matches(',');
            let flag = w.split(['=', ' ']).next().unwrap_or(w);
            if !matches!(flag, "-h" | "--help" | "-V" | "--version") {
                v.push(flag.to_string());
            }
        }
    }
    v
}

#[test]
fn posthorn_1_documents_every_subcommand_and_option() {
    let page = read("man/man1/posthorn.1");
    let mut problems = Vec::new();
    let top = posthorn(&["--help"]);
    let cmds = subcommands(&top);
    assert!(
        cmds.iter().any(|c| c == "start"),
        "cannot read the subcommands from posthorn --help:\n{top}"
    );
    let mut helps = Vec::new();
    for cmd in &cmds {
        let help = posthorn(&[cmd, "--help"]);
        let subs = subcommands(&help);
        if subs.is_empty() {
            helps.push((cmd.clone(), help));
        }
        for sub in subs {
            let h = posthorn(&[cmd, &sub, "--help"]);
            helps.push((format!("{cmd} {sub}"), h));
        }
    }
    for (cmd, help) in &helps {
        if !page.contains(&format!("\n.B {cmd}\n")) {
            problems.push(format!("posthorn.1 has no \".B {cmd}\" entry in COMMANDS"));
        }
        for opt in options(help) {
            if !page.contains(&opt.replace('-', "\\-")) {
                problems.push(format!(
                    "posthorn.1 does not mention {opt} of posthorn {cmd}"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "posthorn(1) and the program disagree:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn postinst_spool_table_matches_the_code() {
    let text = read("packaging/deb/postinst");
    let start = text
        .find("SPOOL_DIRS=\"")
        .expect("postinst has a SPOOL_DIRS table")
        + "SPOOL_DIRS=\"".len();
    let end = start + text[start..].find('"').expect("the SPOOL_DIRS table ends");
    let table: Vec<(String, u32)> = text[start..end]
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4).then(|| {
                (
                    f[0].to_string(),
                    u32::from_str_radix(f[1], 8).expect("octal mode"),
                )
            })
        })
        .collect();
    let code: Vec<(String, u32)> = common::spool::SPOOL_DIRS
        .iter()
        .map(|(n, m)| (n.to_string(), *m))
        .collect();
    assert_eq!(
        table, code,
        "packaging/deb/postinst SPOOL_DIRS differs from common::spool::SPOOL_DIRS"
    );
}

#[test]
fn mandoc_lint_is_clean() {
    let files: Vec<PathBuf> = PAGES.iter().map(|p| root().join("man").join(p)).collect();
    let out = match Command::new("mandoc")
        .args(["-T", "lint", "-W", "warning"])
        .args(&files)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: mandoc is not installed ({e}); apt-get install mandoc");
            return;
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "mandoc -T lint -W warning:\n{text}"
    );
}
