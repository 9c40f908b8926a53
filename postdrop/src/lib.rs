//! postdrop: the only way a local user's mail reaches the spool, and the
//! maildrop record format.
//!
//! Owns `postdrop [-c config_dir] [-r]` (sendmail runs it; installed setgid
//! postdrop at /usr/sbin/postdrop, maildrop/ being mode 1730 group postdrop)
//! and the record stream (`maildrop`). Does not own the queue file (pickup
//! turns a maildrop file into one) or option parsing for users (sendmail).
//!
//! What it does: reads the record stream on standard input and validates it
//! whole (`maildrop::Reader`, bounds from main.cf: message_size_limit, and
//! MAX_RECIPIENTS), writing it as it goes to `maildrop/T.PID.NANOS`
//! (O_CREAT|O_EXCL|O_NOFOLLOW, relative to the maildrop directory: postdrop
//! works with maildrop/ as its current directory, entered through a
//! descriptor opened O_NOFOLLOW), with the submitter's uid (getuid) as its
//! first record; then fsyncs the file, renames it to `M.SECS.NANOS.PID`
//! (never replacing: renameat2 RENAME_NOREPLACE), makes the rename durable
//! (fsync of maildrop/ where the caller may read it, else syncfs), and pokes
//! pickup through `public/pickup` (a non-blocking connect: a busy pickup
//! finds the file in its next scan). On any error the temporary file is
//! removed and postdrop exits non-zero with one line on standard error:
//! nothing half-written is ever under a final name. The file belongs to the
//! caller's uid (postdrop is setgid only).
//!
//! Configuration directory: -c, else $MAIL_CONFIG, else
//! $POSTHORN_CONFIG_DIR, else /etc/posthorn. Another than /etc/posthorn is
//! honoured for root, for a caller postdrop gives nothing to (not setgid or
//! setuid: development mode, or a user running an unprivileged copy), or
//! when it is listed in alternate_config_directories of
//! /etc/posthorn/main.cf (Postfix's rule); otherwise exit 77.
//!
//! Exit status (sysexits.h): 0 queued; 64 usage; 65 bad input (the stream
//! is malformed or the message too big); 71 system error; 75 the spool
//! could not be written (try again later); 77 configuration directory not
//! allowed; 78 main.cf unreadable.
//!
//! Security: no TLS, DNS or MIME code is linked (see Cargo.toml); the
//! input is parsed by the strict reader before a byte of it is trusted;
//! temporary files are invisible to pickup (it takes `M.` names only).

pub mod conf;
pub mod maildrop;

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use maildrop::{FormatError, Limits, Reader, Record, Source};

/// sysexits.h.
pub const EX_USAGE: i32 = 64;
pub const EX_DATAERR: i32 = 65;
pub const EX_OSERR: i32 = 71;
pub const EX_TEMPFAIL: i32 = 75;
pub const EX_NOPERM: i32 = 77;
pub const EX_CONFIG: i32 = 78;

/// The configuration directory every program uses by default.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/posthorn";

/// The prefix of complete maildrop files (pickup takes only these).
pub const FINAL_PREFIX: &str = "M.";
/// The prefix of files being written.
pub const TEMP_PREFIX: &str = "T.";

/// Why postdrop refused or failed; each maps to one exit status.
#[derive(Debug, thiserror::Error)]
pub enum PostdropError {
    #[error("usage: postdrop [-c config_dir] [-r]")]
    Usage,
    #[error("not allowed to use configuration directory {0} (not in alternate_config_directories of {DEFAULT_CONFIG_DIR}/main.cf)")]
    ConfigDirNotAllowed(PathBuf),
    #[error("{0}/main.cf: {1}")]
    Config(PathBuf, io::Error),
    #[error("bad message_size_limit {0:?} in main.cf")]
    SizeLimit(String),
    #[error("bad input: {0}")]
    Input(#[from] FormatError),
    #[error("{0}: {1}")]
    Spool(PathBuf, io::Error),
    #[error("{0}")]
    System(io::Error),
}

impl PostdropError {
    pub fn exit_code(&self) -> i32 {
        match self {
            PostdropError::Usage => EX_USAGE,
            PostdropError::ConfigDirNotAllowed(_) => EX_NOPERM,
            PostdropError::Config(..) | PostdropError::SizeLimit(_) => EX_CONFIG,
            PostdropError::Input(FormatError::Io(_)) => EX_TEMPFAIL,
            PostdropError::Input(_) => EX_DATAERR,
            PostdropError::Spool(..) => EX_TEMPFAIL,
            PostdropError::System(_) => EX_OSERR,
        }
    }
}

/// The program's entry point (the postdrop binary, and the multi-call
/// binary under the name postdrop).
pub fn main() -> ! {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args, io::stdin().lock()) {
        Ok(_) => std::process::exit(0),
        Err(e) => {
            eprintln!("postdrop: fatal: {e}");
            std::process::exit(e.exit_code())
        }
    }
}

/// Parse `-c DIR` and `-r`; return the configuration directory asked for.
fn parse_args(args: &[String]) -> Result<Option<PathBuf>, PostdropError> {
    let mut dir = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" => dir = Some(PathBuf::from(it.next().ok_or(PostdropError::Usage)?)),
            "-r" | "-v" => {}
            _ => return Err(PostdropError::Usage),
        }
    }
    Ok(dir)
}

/// Does this process run with privileges its caller lacks (setgid/setuid)?
fn privileged() -> bool {
    nix::unistd::getegid() != nix::unistd::getgid()
        || nix::unistd::geteuid() != nix::unistd::getuid()
}

/// The configuration directory, after Postfix's rule (see the header).
pub fn config_dir(asked: Option<PathBuf>) -> Result<PathBuf, PostdropError> {
    let asked = asked
        .or_else(|| std::env::var_os("MAIL_CONFIG").map(PathBuf::from))
        .or_else(|| std::env::var_os("POSTHORN_CONFIG_DIR").map(PathBuf::from));
    let Some(dir) = asked else {
        return Ok(PathBuf::from(DEFAULT_CONFIG_DIR));
    };
    let norm = |p: &Path| p.to_string_lossy().trim_end_matches('/').to_string();
    if norm(&dir) == DEFAULT_CONFIG_DIR || nix::unistd::getuid().is_root() || !privileged() {
        return Ok(dir);
    }
    // No default main.cf: no alternate directories either.
    let default = match conf::MainCf::load(Path::new(DEFAULT_CONFIG_DIR)) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => conf::MainCf::default(),
        Err(e) => return Err(PostdropError::Config(PathBuf::from(DEFAULT_CONFIG_DIR), e)),
    };
    let allowed = default.get("alternate_config_directories");
    if allowed
        .split([',', ' ', '\t'])
        .filter(|s| !s.is_empty())
        .any(|a| a.trim_end_matches('/') == norm(&dir))
    {
        Ok(dir)
    } else {
        Err(PostdropError::ConfigDirNotAllowed(dir))
    }
}

/// Queue what `input` holds; returns the maildrop file's name.
pub fn run(args: &[String], input: impl io::Read) -> Result<String, PostdropError> {
    let dir = config_dir(parse_args(args)?)?;
    let cf = conf::MainCf::load(&dir).map_err(|e| PostdropError::Config(dir.clone(), e))?;
    let size = cf.get("message_size_limit");
    let limits = Limits {
        message_size: size
            .trim()
            .parse()
            .map_err(|_| PostdropError::SizeLimit(size.clone()))?,
        recipients: maildrop::MAX_RECIPIENTS,
    };
    let queue = PathBuf::from(cf.get("queue_directory"));
    let maildrop = queue.join("maildrop");
    let spool_err = |e: io::Error| PostdropError::Spool(maildrop.clone(), e);
    // Entered through a descriptor (O_PATH: the directory is not readable
    // for group postdrop), so every name below is relative to it.
    let dir_fd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&maildrop)
        .map_err(spool_err)?;
    nix::unistd::fchdir(dir_fd.as_raw_fd()).map_err(|e| spool_err(e.into()))?;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let pid = std::process::id();
    let tmp = format!("{TEMP_PREFIX}{pid}.{}", now.as_nanos());
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(spool_err)?;
    // 0644 whatever the caller's umask: pickup (mail_owner) reads it; the
    // directory (1730) keeps everybody else out.
    let result = file
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(spool_err)
        .and_then(|()| copy(input, &file, limits))
        .and_then(|()| {
            file.sync_all().map_err(spool_err)?;
            let name = format!(
                "{FINAL_PREFIX}{}.{:09}.{pid}",
                now.as_secs(),
                now.subsec_nanos()
            );
            rename_noreplace(&tmp, &name).map_err(spool_err)?;
            Ok(name)
        });
    let name = match result {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // The rename is durable before we say "queued".
    match File::open(".") {
        Ok(d) => d.sync_all(),
        Err(_) => nix::unistd::syncfs(file.as_raw_fd()).map_err(io::Error::from),
    }
    .map_err(spool_err)?;
    poke(&queue.join("public").join("pickup"));
    Ok(name)
}

/// Validate `input` record by record and write it (uid first) to `file`.
fn copy(input: impl io::Read, file: &File, limits: Limits) -> Result<(), PostdropError> {
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    let w = |out: &mut BufWriter<&File>, r: &Record| {
        maildrop::write(out, r).map_err(|e| PostdropError::Spool(PathBuf::from("maildrop"), e))
    };
    out.write_all(maildrop::MAGIC)
        .map_err(|e| PostdropError::Spool(PathBuf::from("maildrop"), e))?;
    w(&mut out, &Record::Uid(nix::unistd::getuid().as_raw()))?;
    let mut reader = Reader::new(
        BufReader::with_capacity(64 * 1024, input),
        Source::Client,
        limits,
    );
    while let Some(rec) = reader.next_record()? {
        w(&mut out, &rec)?;
    }
    out.flush()
        .map_err(|e| PostdropError::Spool(PathBuf::from("maildrop"), e))
}

/// rename(2) that never replaces (link and unlink where renameat2 is not
/// supported).
fn rename_noreplace(from: &str, to: &str) -> io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    match nix::fcntl::renameat2(
        None,
        from,
        None,
        to,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    ) {
        Ok(()) => return Ok(()),
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS | nix::errno::Errno::ENOTSUP) => {
        }
        Err(e) => return Err(e.into()),
    }
    std::fs::hard_link(from, to)?;
    std::fs::remove_file(from)
}

/// Wake pickup: connect to public/pickup without blocking and write one
/// byte. Any failure is fine (pickup scans maildrop/ periodically).
fn poke(path: &Path) {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let Ok(fd) = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return;
    };
    let Ok(addr) = UnixAddr::new(path) else {
        return;
    };
    if connect(fd.as_raw_fd(), &addr).is_ok() {
        let _ = nix::unistd::write(&fd, b"W");
    }
}
