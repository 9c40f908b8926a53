//! posthorn: the administration command, and the multi-call entry point.
//!
//! Run as `posthorn` it is the admin command (see posthorn(1)): `dev`,
//! `start`, `stop`, `reload`, `status`, `check`, `config`, `dkim`, `dns`,
//! `dmarc report`, `tlsrpt`, `user add`.
//! Run under a worker's name (`posthorn-smtpd`, ...) it is that worker:
//! master runs daemon_directory/posthorn-NAME, which the package makes a
//! symbolic link to /usr/sbin/posthorn, or (in development mode, or when
//! that file is missing) this executable with that name as argv[0]. There
//! is no other program: `cargo run --bin posthorn` is the whole suite.
//! Run as `sendmail` (or `posthorn sendmail`) it is the sendmail-compatible
//! command (sendmail.rs); as `postdrop`, postdrop (also its own small
//! setgid binary, the postdrop crate).
//! Run as `newaliases` it checks the alias_maps tables (newaliases.rs).

mod admin;
mod check;
mod dev;
mod dkim;
mod dmarc;
mod dns;
mod newaliases;
mod queue;
mod sendmail;
mod tlsrpt;
mod user;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "posthorn",
    version,
    about = "posthorn mail system administration"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the whole suite in the foreground as the current user, on a generated configuration.
    Dev(dev::DevArgs),
    /// Start the mail system in the background.
    Start(admin::DirArg),
    /// Stop the mail system (SIGTERM to master, wait until it has gone).
    Stop(admin::DirArg),
    /// Re-read main.cf and master.cf (SIGHUP to master).
    Reload(admin::DirArg),
    /// Try every deferred message now (postqueue -f).
    Flush(admin::DirArg),
    /// Say whether the mail system is running.
    Status(admin::DirArg),
    /// Check main.cf, master.cf, the users file and the spool.
    Check(admin::DirArg),
    /// Print parameters, as postconf does.
    Config(admin::ConfigArgs),
    /// Print the DNS records to publish for a mail domain (MX, SPF, DKIM,
    /// DMARC, MTA-STS, TLS-RPT, TLSA, SRV), or check them with --check.
    Dns(dns::DnsArgs),
    /// DMARC aggregate reports (RFC 7489) from the results smtpd recorded.
    Dmarc {
        #[command(subcommand)]
        command: dmarc::DmarcCmd,
    },
    /// Make DKIM keys and print their DNS records.
    Dkim {
        #[command(subcommand)]
        command: dkim::DkimCmd,
    },
    /// Print the TLS-RPT report (RFC 8460, JSON) of a policy domain for one day.
    Tlsrpt {
        /// The policy domain (a recipient domain with an MTA-STS policy).
        domain: String,
        /// The UTC day, YYYY-MM-DD (default: yesterday).
        #[arg(long = "date")]
        date: Option<String>,
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// List, show, delete, hold, release and requeue queued messages.
    Queue {
        #[command(subcommand)]
        command: queue::QueueCmd,
    },
    /// Manage virtual mailbox users.
    User {
        #[command(subcommand)]
        command: user::UserCmd,
    },
}

fn main() {
    let argv0 = std::env::args().next().unwrap_or_default();
    let name = std::path::Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_string();
    match name.as_str() {
        "posthorn-master" => std::process::exit(posthorn_master::main_with_args(
            std::env::args().skip(1).collect(),
        )),
        "posthorn-smtpd" => return posthorn_smtpd::main(),
        "posthorn-qmgr" => return posthorn_qmgr::main(),
        "posthorn-local" => return posthorn_local::main(),
        "posthorn-smtp" => return posthorn_smtp::main(),
        "posthorn-anvil" => return posthorn_anvil::main(),
        "posthorn-pop3d" => return posthorn_pop3d::main(),
        "posthorn-pop3-login" => return posthorn_pop3d::login_main(),
        "posthorn-imapd" => return posthorn_imapd::main(),
        "posthorn-imap-login" => return posthorn_imapd::login_main(),
        "posthorn-auth" => return posthorn_auth::main(),
        "mailq" => std::process::exit(mailq_main()),
        "posthorn-pickup" => return posthorn_pickup::main(),
        "postdrop" => postdrop::main(),
        "sendmail" => std::process::exit(sendmail::main(std::env::args().skip(1).collect())),
        "newaliases" => std::process::exit(newaliases::main()),
        _ => {}
    }
    // `posthorn sendmail ARGS`: the same as sendmail ARGS (tests, and hosts
    // without the sendmail link).
    if std::env::args().nth(1).as_deref() == Some("sendmail") {
        std::process::exit(sendmail::main(std::env::args().skip(2).collect()));
    }
    let cli = Cli::parse();
    let code = match cli.command {
        Cmd::Dev(a) => dev::run(a),
        Cmd::Start(a) => admin::start(&a.dir()),
        Cmd::Stop(a) => admin::stop(&a.dir()),
        Cmd::Reload(a) => admin::reload(&a.dir()),
        Cmd::Flush(a) => admin::flush(&a.dir()),
        Cmd::Status(a) => admin::status(&a.dir()),
        Cmd::Check(a) => admin::check(&a.dir()),
        Cmd::Config(a) => admin::config(&a),
        Cmd::Dns(a) => dns::run(&a),
        Cmd::Dmarc { command } => dmarc::run(command),
        Cmd::Dkim { command } => dkim::run(command),
        Cmd::Tlsrpt {
            domain,
            date,
            config,
        } => tlsrpt::run(&config_dir(config), &domain, date.as_deref()),
        Cmd::Queue { command } => queue::run(command),
        Cmd::User { command } => user::run(command),
    };
    std::process::exit(code);
}

/// `mailq [-C DIR]` (-c too): the queue as Postfix's mailq prints it.
fn mailq_main() -> i32 {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "-C" | "-c" => dir = args.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("usage: mailq [-C config_directory]\nList the mail queue (see mailq(1)).");
                return 0;
            }
            _ => {
                eprintln!("mailq: unknown argument {a:?}; usage: mailq [-C config_directory]");
                return 64;
            }
        }
    }
    queue::mailq(&config_dir(dir))
}

/// The configuration directory: -c, else $POSTHORN_CONFIG_DIR, else /etc/posthorn.
pub fn config_dir(arg: Option<PathBuf>) -> PathBuf {
    arg.or_else(|| std::env::var_os("POSTHORN_CONFIG_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/etc/posthorn"))
}
