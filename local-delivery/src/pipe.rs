//! Delivery to a command (`|command` in an alias, .forward or :include:).
//!
//! Owns running the command: `/bin/sh -c COMMAND` with the rights of the
//! list that named it (`Privs`: never uid 0), in its own process group, in
//! "/" (Postfix's command_execution_directory is empty: posthorn does not
//! leave it in the queue directory), with Postfix local(8)'s environment and
//! nothing else: HOME, LOGNAME, USER, SHELL (the account of those rights),
//! SENDER, RECIPIENT, LOCAL, DOMAIN, EXTENSION (of the address whose entry
//! named the command), ORIGINAL_RECIPIENT (the queue file's recipient),
//! PATH=/usr/bin:/bin (Postfix's default path), and TZ and LANG when local
//! delivery has them (Postfix's export_environment). Standard input is the
//! message with `Return-Path:` and `Delivered-To:` prepended and LF line
//! ends, as a mailbox gets it; standard output and error go to one pipe of
//! which the first OUTPUT_KEPT bytes are kept.
//!
//! Results (Postfix's): exit 0 is delivered; 75 (EX_TEMPFAIL) and death by
//! a signal defer (4.3.0); any other status bounces (5.3.0) as `Command died
//! with status N: "COMMAND". Command output: FIRST LINE`. After
//! command_time_limit the process group is killed and the recipient is
//! deferred (`Command time limit exceeded: "COMMAND"`).
//!
//! Security: the command comes from the administrator (aliases) or the
//! user (.forward); it runs with their rights, never root's, with an
//! environment of our making. Its output is bounded; a command that leaves a
//! child holding the pipe is not waited for past the limit.

use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::privilege;

use crate::resolve::Privs;

/// Output bytes kept for the bounce reason.
const OUTPUT_KEPT: usize = 2048;

/// How a command delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Delivered,
    /// Try again later (4.3.0), with the reason.
    Deferred(String),
    /// Failed for good (5.3.0), with the reason.
    Bounced(String),
}

/// What the command's environment says.
#[derive(Debug, Clone)]
pub struct Env<'a> {
    pub sender: &'a str,
    /// The address whose alias or .forward entry named the command.
    pub recipient: &'a str,
    /// The queue file's recipient.
    pub original: &'a str,
    pub delimiter: &'a str,
}

/// Run `command` with `privs`, `message` on its standard input.
pub fn run(
    command: &str,
    privs: &Privs,
    env: &Env,
    limit: Duration,
    message: Box<dyn Read + Send>,
) -> io::Result<Ended> {
    if privilege::is_root() && (privs.uid == 0 || privs.gid == 0) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "refusing to run a command as root",
        ));
    }
    let (local, domain) = common::addr::split(env.recipient);
    let extension = match local.find(|c| !env.delimiter.is_empty() && env.delimiter.contains(c)) {
        Some(p) if p > 0 => &local[p + 1..],
        _ => "",
    };
    // One pipe for standard output and error (close-on-exec here; the
    // child's copies are its descriptors 1 and 2).
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let out_r = std::fs::File::from(out_r);
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .env_clear()
        .env("HOME", &privs.home)
        .env("LOGNAME", &privs.user)
        .env("USER", &privs.user)
        .env("SHELL", &privs.shell)
        .env("SENDER", env.sender)
        .env("RECIPIENT", env.recipient)
        .env("LOCAL", local)
        .env("DOMAIN", domain)
        .env("EXTENSION", extension)
        .env("ORIGINAL_RECIPIENT", env.original)
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::from(out_w.try_clone()?))
        .stderr(Stdio::from(out_w))
        .process_group(0);
    for name in ["TZ", "LANG"] {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    if privilege::is_root() {
        // std drops the supplementary groups when it changes the uid as root.
        cmd.uid(privs.uid).gid(privs.gid);
    }
    let mut child = cmd.spawn()?;
    // The write ends we gave the child are in `cmd`: closed here, so the
    // reader sees the end when the command's side closes.
    drop(cmd);
    let pid = child.id() as i32;
    let stdin = child.stdin.take();
    thread::spawn(move || {
        let mut message = message;
        if let Some(mut stdin) = stdin {
            // A command that does not read its input: EPIPE, not our problem.
            let _ = io::copy(&mut message, &mut stdin).and_then(|_| stdin.flush());
        }
    });
    let (out_tx, out_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut r = out_r;
        let mut kept = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = OUTPUT_KEPT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        let _ = out_tx.send(kept);
    });
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = match done_rx.recv_timeout(limit) {
        Ok(s) => s?,
        Err(_) => {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = done_rx.recv_timeout(Duration::from_secs(5));
            return Ok(Ended::Deferred(format!(
                "Command time limit exceeded: \"{command}\""
            )));
        }
    };
    // The output: whatever the command wrote before it ended (a child it
    // left running may keep the pipe open: not waited for long).
    let output = out_rx
        .recv_timeout(Duration::from_secs(1))
        .unwrap_or_default();
    let first = first_line(&output);
    let with_output = |mut s: String| {
        if !first.is_empty() {
            s.push_str(&format!(". Command output: {first}"));
        }
        s
    };
    Ok(match (status.code(), status.signal()) {
        (Some(0), _) => Ended::Delivered,
        (Some(75), _) => Ended::Deferred(with_output(format!(
            "Command died with status 75: \"{command}\""
        ))),
        (Some(n), _) => Ended::Bounced(with_output(format!(
            "Command died with status {n}: \"{command}\""
        ))),
        (None, Some(sig)) => Ended::Deferred(with_output(format!(
            "Command died with signal {sig}: \"{command}\""
        ))),
        (None, None) => Ended::Deferred(format!("Command ended oddly: \"{command}\"")),
    })
}

/// The first non-empty line of the output, printable ASCII only (a bounce
/// reason and a log line).
fn first_line(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    line.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn privs() -> Privs {
        let me = privilege::current_account();
        let (uid, gid) = if privilege::is_root() {
            let n = privilege::lookup_user("nobody").expect("nobody");
            (n.uid, n.gid)
        } else {
            (me.uid, me.gid)
        };
        Privs {
            uid,
            gid,
            user: "someone".into(),
            home: "/nonexistent".into(),
            shell: "/bin/sh".into(),
        }
    }

    fn env() -> Env<'static> {
        Env {
            sender: "a@example.org",
            recipient: "prog+ext@localhost",
            original: "list@localhost",
            delimiter: "+",
        }
    }

    fn go(cmd: &str, limit: u64) -> Ended {
        let msg: Box<dyn Read + Send> = Box::new(io::Cursor::new(b"Subject: x\n\nbody\n".to_vec()));
        run(cmd, &privs(), &env(), Duration::from_secs(limit), msg).unwrap()
    }

    #[test]
    fn statuses_map_as_postfix_maps_them() {
        assert_eq!(go("cat >/dev/null", 10), Ended::Delivered);
        assert_eq!(
            go("echo 'no such mailbox'; exit 1", 10),
            Ended::Bounced(
                "Command died with status 1: \"echo 'no such mailbox'; exit 1\". Command output: no such mailbox".into()
            )
        );
        assert!(matches!(go("exit 75", 10), Ended::Deferred(t) if t.contains("status 75")));
        assert!(matches!(go("kill -9 $$", 10), Ended::Deferred(t) if t.contains("signal 9")));
        assert_eq!(
            go("sleep 30", 1),
            Ended::Deferred("Command time limit exceeded: \"sleep 30\"".into())
        );
        // A command that writes a lot and reads nothing: bounded, no hang.
        assert!(
            matches!(go("yes | head -c 10000000; exit 3", 20), Ended::Bounced(t) if t.contains("Command output: y"))
        );
    }

    #[test]
    fn the_environment_is_postfixs() {
        let r = go(
            "test \"$RECIPIENT/$LOCAL/$DOMAIN/$EXTENSION/$ORIGINAL_RECIPIENT/$SENDER/$USER/$LOGNAME/$HOME/$SHELL/$PATH\" = 'prog+ext@localhost/prog+ext/localhost/ext/list@localhost/a@example.org/someone/someone//nonexistent//bin/sh//usr/bin:/bin' || { env; exit 1; }; grep -q '^body$'",
            10,
        );
        assert_eq!(r, Ended::Delivered);
        if privilege::is_root() {
            assert_eq!(go("test $(id -u) -ne 0", 10), Ended::Delivered);
        }
    }
}
