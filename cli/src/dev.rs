//! `posthorn dev`: the whole suite in the foreground, as the current user.
//!
//! Writes main.cf and master.cf into the state directory (every run, from the
//! flags), creates the spool, the users and their Maildirs (with the
//! special-use folders Drafts, Sent, Trash, Junk and Archive, subscribed),
//! and runs master in
//! the foreground with logs on standard error. Everything listens on
//! 127.0.0.1 only. The code paths are production's: only privilege and ports
//! differ.
//!
//! Ports (plus --port-offset): SMTP 2525, POP3 2110 (STLS) and POP3S 2995,
//! IMAP 2143 (STARTTLS) and IMAPS 2993, submission 2587 (STARTTLS, AUTH)
//! and submissions 2465 (TLS from the first byte, AUTH).
//!
//! Mail for postmaster and root goes to the first user's Maildir: dev writes
//! an aliases file (`postmaster: root`, `root: FIRST-USER`) named by
//! alias_maps, and mydestination includes $myhostname so that bare
//! `postmaster` (queued as postmaster@$myhostname) is local. Run as root,
//! no mailbox is written as root: virtual mailboxes belong to default_privs
//! (virtual_uid_maps/virtual_gid_maps), and the Maildirs made here are made
//! as that user.
//!
//! TLS: dev keeps a CA of its own in STATE/tls/ (dev/ca.rs) and points
//! smtpd_tls_cert_file/smtpd_tls_key_file at a server certificate it signs
//! for 127.0.0.1, localhost and $myhostname; it prints the CA file, for
//! clients that verify (`swaks --tls-ca-path`, `curl --cacert`).

mod ca;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;

use common::config::Config;

#[derive(Args)]
pub struct DevArgs {
    /// State directory: configuration, spool, mailboxes.
    #[arg(long, default_value = "./posthorn-dev")]
    state: PathBuf,
    /// The virtual mailbox domain.
    #[arg(long, default_value = "example.test")]
    domain: String,
    /// A user as ADDRESS:PASSWORD (repeatable). Default: demo@DOMAIN:demo.
    #[arg(long = "user")]
    users: Vec<String>,
    /// Added to every port number (to run several instances side by side).
    #[arg(long, default_value_t = 0)]
    port_offset: u16,
    /// Extra main.cf settings, name=value (repeatable).
    #[arg(short = 'o')]
    overrides: Vec<String>,
}

/// The ports of the suite's services in development mode.
pub const DEV_PORTS: &[(&str, u16)] = &[
    ("smtp", 2525),
    ("submission", 2587),
    ("smtps", 2465),
    ("imap", 2143),
    ("imaps", 2993),
    ("pop3", 2110),
    ("pop3s", 2995),
];

pub fn run(a: DevArgs) -> i32 {
    match prepare(&a) {
        Ok(state) => {
            let opts = posthorn_master::Options {
                config_dir: state.clone(),
                daemonize: false,
            };
            let r = posthorn_master::run(&opts, |listening| {
                for l in listening {
                    println!("  listening:     {l}");
                }
                let reserved: Vec<String> = DEV_PORTS[1..3]
                    .iter()
                    .map(|(n, p)| format!("{n} {}", p + a.port_offset))
                    .collect();
                println!("  reserved:      {}", reserved.join(", "));
                println!("  Ctrl-C stops everything.");
            });
            match r {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("posthorn: fatal: {e}");
                    1
                }
            }
        }
        Err(e) => {
            eprintln!("posthorn: {e}");
            1
        }
    }
}

fn prepare(a: &DevArgs) -> Result<PathBuf, String> {
    std::fs::create_dir_all(&a.state).map_err(|e| format!("{}: {e}", a.state.display()))?;
    let state =
        std::fs::canonicalize(&a.state).map_err(|e| format!("{}: {e}", a.state.display()))?;
    if a.domain.is_empty() || a.domain.contains(['/', ' ', '@']) {
        return Err(format!("--domain {:?} is not a domain name", a.domain));
    }
    let me = common::privilege::current_account();
    // As root, virtual mailboxes belong to default_privs (nobody), never root.
    let vowner = if common::privilege::is_root() {
        let name = a
            .overrides
            .iter()
            .rev()
            .find_map(|o| {
                o.split_once('=')
                    .filter(|(k, _)| k.trim() == "default_privs")
            })
            .map_or("nobody".to_string(), |(_, v)| v.trim().to_string());
        let acct = common::privilege::lookup_user(&name)
            .ok_or_else(|| format!("default_privs {name:?} is not a user"))?;
        Some((acct.uid, acct.gid))
    } else {
        None
    };
    let main_cf = main_cf(&state, &a.domain, &me.name, vowner, &a.overrides)?;
    let smtp_port = 2525 + u32::from(a.port_offset);
    // The highest port in use is POP3S's.
    if 2995 + u32::from(a.port_offset) > 65535 {
        return Err("--port-offset too large".into());
    }
    let master_cf = master_cf(smtp_port as u16, a.port_offset);
    write(&state.join("main.cf"), &main_cf)?;
    write(&state.join("master.cf"), &master_cf)?;
    let cfg = Config::load(&state).map_err(|e| e.to_string())?;
    if let Some(e) = cfg.validate().into_iter().next() {
        return Err(e.to_string());
    }
    let tls = ca::DevTls::new(&state.join("tls"));
    let issued = tls
        .ensure(&cfg.get("myhostname"))
        .map_err(|e| e.to_string())?;
    common::spool::Spool::new(cfg.queue_dir())
        .create_dirs()
        .map_err(|e| format!("spool: {e}"))?;
    let users: Vec<(String, String)> = if a.users.is_empty() {
        vec![(format!("demo@{}", a.domain), "demo".to_string())]
    } else {
        a.users
            .iter()
            .map(|u| match u.split_once(':') {
                Some((addr, pw)) if addr.contains('@') && !pw.is_empty() => {
                    Ok((addr.to_string(), pw.to_string()))
                }
                _ => Err(format!("--user {u:?}: expected ADDRESS:PASSWORD")),
            })
            .collect::<Result<_, _>>()?
    };
    println!(
        "posthorn {} development mode (as user {})",
        posthorn_master::VERSION,
        me.name
    );
    println!("  main.cf:       {}", state.join("main.cf").display());
    println!("  master.cf:     {}", state.join("master.cf").display());
    println!("  users file:    {}", cfg.users_file().display());
    println!(
        "  CA file:       {}{}",
        tls.ca.display(),
        if issued {
            "  (server certificate issued)"
        } else {
            ""
        }
    );
    let aliases = state.join("aliases");
    write(
        &aliases,
        &format!(
            "# Written by `posthorn dev` on every start (alias_maps).\npostmaster: root\nroot: {}\n",
            users[0].0
        ),
    )?;
    println!("  aliases:       postmaster, root -> {}", users[0].0);
    for (addr, pw) in &users {
        crate::user::set(&cfg, addr, pw).map_err(|e| e.to_string())?;
        let (local, domain) = common::addr::split(addr);
        let home = PathBuf::from(cfg.get("virtual_mailbox_base"))
            .join(domain.to_ascii_lowercase())
            .join(local.to_ascii_lowercase());
        let md = home.join("Maildir");
        make_maildir(&home, vowner).map_err(|e| format!("{}: {e}", md.display()))?;
        println!("  user:          {addr}  password: {pw}");
        println!("  mailbox:       {}", md.display());
    }
    Ok(state)
}

/// Make a virtual user's home and Maildir as local delivery would: the
/// home given to `owner` (when root), the Maildir made as that owner, with
/// the special-use folders (Drafts, Sent, Trash, Junk, Archive), all
/// subscribed, as a new user's mailbox has them.
fn make_maildir(home: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    use common::privilege::{self, DirCreate};
    let store_err = |e: mailstore::StoreError| std::io::Error::other(e.to_string());
    let Some((uid, gid)) = owner else {
        return mailstore::Store::create_user(&home.join("Maildir"), Default::default())
            .map(drop)
            .map_err(store_err);
    };
    let parent = home.parent().unwrap_or(Path::new("/"));
    let name = home
        .file_name()
        .ok_or_else(|| std::io::Error::other("home has no name"))?;
    let pdir = privilege::open_dir_path(
        parent,
        Some(DirCreate {
            mode: 0o755,
            owner: None,
        }),
    )?;
    match privilege::make_dir_at(&pdir, name, 0o700, Some((uid, gid))) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let hdir = privilege::walk_dirs(&pdir, Path::new(name), None)?;
    privilege::as_user(uid, gid, || {
        mailstore::Store::create_user_at(
            &hdir,
            Path::new("Maildir"),
            home.join("Maildir"),
            Default::default(),
        )
        .map(drop)
        .map_err(store_err)
    })
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn main_cf(
    state: &Path,
    domain: &str,
    user: &str,
    vowner: Option<(u32, u32)>,
    overrides: &[String],
) -> Result<String, String> {
    let s = state.display();
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# posthorn development configuration, written by `posthorn dev` on every start."
    );
    let _ = writeln!(
        t,
        "# Use -o name=value to change it, or copy it and run `posthorn start -c DIR`."
    );
    let _ = writeln!(t, "config_directory = {s}");
    let _ = writeln!(t, "queue_directory = {s}/spool");
    let _ = writeln!(t, "data_directory = {s}/data");
    let _ = writeln!(t, "pid_directory = {s}/run");
    let _ = writeln!(
        t,
        "# Empty: master runs this executable under each worker's name."
    );
    let _ = writeln!(t, "daemon_directory =");
    let _ = writeln!(t, "mail_owner = {user}");
    let _ = writeln!(
        t,
        "# Login processes run as the same user here (no separation in development mode)."
    );
    let _ = writeln!(t, "login_user = {user}");
    let _ = writeln!(t, "myhostname = mail.{domain}");
    let _ = writeln!(t, "mydomain = {domain}");
    let _ = writeln!(t, "mydestination = $myhostname, localhost");
    let _ = writeln!(t, "virtual_mailbox_domains = {domain}");
    let _ = writeln!(t, "virtual_mailbox_base = {s}/mail");
    let _ = writeln!(t, "virtual_mailbox_maps = passwd-file:{s}/users");
    let _ = writeln!(t, "# postmaster and root go to the first user.");
    let _ = writeln!(t, "alias_maps = hash:{s}/aliases");
    if let Some((uid, gid)) = vowner {
        let _ = writeln!(
            t,
            "# Run as root: mailboxes belong to default_privs, never to root."
        );
        let _ = writeln!(t, "virtual_uid_maps = static:{uid}");
        let _ = writeln!(t, "virtual_gid_maps = static:{gid}");
    }
    let _ = writeln!(t, "inet_interfaces = loopback-only");
    let _ = writeln!(t, "inet_protocols = ipv4");
    let _ = writeln!(
        t,
        "# Nobody relays in development mode: mail goes only to {domain} and localhost."
    );
    let _ = writeln!(t, "mynetworks =");
    let _ = writeln!(
        t,
        "# STARTTLS with a certificate of dev's own CA ({s}/tls/ca.pem)."
    );
    let _ = writeln!(t, "smtpd_tls_cert_file = {s}/tls/cert.pem");
    let _ = writeln!(t, "smtpd_tls_key_file = {s}/tls/key.pem");
    for o in overrides {
        let Some((k, v)) = o.split_once('=') else {
            return Err(format!("-o {o:?}: expected name=value"));
        };
        let _ = writeln!(t, "{} = {}", k.trim(), v.trim());
    }
    Ok(t)
}

fn master_cf(smtp_port: u16, offset: u16) -> String {
    let (pop3, pop3s) = (2110 + offset, 2995 + offset);
    let (imap, imaps) = (2143 + offset, 2993 + offset);
    let (submission, submissions) = (2587 + offset, 2465 + offset);
    format!(
        "# posthorn development services, written by `posthorn dev`.\n\
         # service          type  private unpriv  chroot  wakeup  maxproc command + args\n\
         127.0.0.1:{smtp_port}     inet  n       -       n       -       2       smtpd\n\
         127.0.0.1:{submission}     inet  n       -       n       -       1       smtpd\n  \
           -o smtpd_tls_security_level=encrypt -o smtpd_sasl_auth_enable=yes\n  \
           -o smtpd_client_restrictions=permit_sasl_authenticated,reject\n  \
           -o smtpd_sender_restrictions=reject_sender_login_mismatch\n\
         127.0.0.1:{submissions}     inet  n       -       n       -       1       smtpd\n  \
           -o smtpd_tls_wrappermode=yes -o smtpd_sasl_auth_enable=yes\n  \
           -o smtpd_client_restrictions=permit_sasl_authenticated,reject\n  \
           -o smtpd_sender_restrictions=reject_sender_login_mismatch\n\
         127.0.0.1:{pop3}     inet  n       -       n       -       1       pop3-login\n\
         127.0.0.1:{pop3s}     inet  n       -       n       -       1       pop3-login\n  \
           -o pop3d_tls_wrappermode=yes\n\
         login/pop3         unix  -       n       n       -       1       pop3d\n\
         127.0.0.1:{imap}     inet  n       -       n       -       1       imap-login\n\
         127.0.0.1:{imaps}     inet  n       -       n       -       1       imap-login\n  \
           -o imapd_tls_wrappermode=yes\n\
         login/imap         unix  -       n       n       -       1       imapd\n\
         qmgr               unix  -       -       n       300     1       qmgr\n\
         pickup             unix  n       -       n       60      1       pickup\n\
         local              unix  -       n       n       -       8       local\n\
         smtp               unix  -       -       n       -       4       smtp\n\
         anvil              unix  -       -       n       -       1       anvil\n\
         auth               unix  -       n       n       -       1       auth\n"
    )
}
