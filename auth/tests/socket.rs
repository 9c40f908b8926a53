//! The auth service on a real Unix socket, on the real skeleton, asked by
//! the real blocking client (`common::auth::AuthClient`): look-ups are
//! answered while a hash is being computed, the cache answers the second
//! login, and (as root) a process of another uid is refused by SO_PEERCRED.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::auth::{AuthClient, AuthReply, Credentials, FailReason, Mechanism};
use common::config::Config;
use common::daemon::Listener;
use common::server::{Limits, LocalCounter, Server};
use posthorn_auth::service::{AuthService, Settings};

/// doveadm pw -s ARGON2ID -p 'correct horse' (64 MiB, 3 passes: slow on purpose).
const ARGON2ID: &str = "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$LpEjiuxG3WMa+VieIQtJnQ$kSpD2tZXOhjlV0NT+6VcmBVfiwCsOEdWvkrtxtW1EOg";

struct Running {
    dir: PathBuf,
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(name: &str, users: &str, workers: u32) -> Running {
    let dir = std::env::temp_dir().join(format!("posthorn-auth-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("users"), users).unwrap();
    let main_cf = format!(
        "virtual_mailbox_maps = passwd-file:{}/users\nvirtual_mailbox_base = /vmail\nvirtual_uid_maps = static:5000\nvirtual_gid_maps = static:5001\nauth_worker_max_count = {workers}\n",
        dir.display()
    );
    let cfg = Config::parse(&dir, "main.cf", &main_cf).unwrap();
    let settings = Settings::from_config(&cfg).unwrap();
    let socket = dir.join("auth");
    let listener = UnixListener::bind(&socket).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        let server = Server::<AuthService>::new(settings.workers).unwrap();
        let mut svc = AuthService::new(cfg, settings).unwrap();
        let limits = Limits::default();
        server
            .run(
                Listener::Unix(listener),
                &mut svc,
                &limits,
                &mut LocalCounter::default(),
                &stop2,
                &stop2,
            )
            .unwrap();
    });
    Running {
        dir,
        socket,
        stop,
        thread: Some(thread),
    }
}

fn creds(user: &str, password: &str) -> Credentials {
    Credentials {
        service: "pop3".into(),
        mechanism: Mechanism::Plain,
        authzid: String::new(),
        user: user.into(),
        password: password.into(),
        client: Some("192.0.2.1".parse().unwrap()),
        local_port: 995,
        secured: true,
    }
}

#[test]
fn lookups_are_answered_while_a_hash_runs_and_the_cache_answers_again() {
    let r = start(
        "socket",
        &format!("demo@example.test:{ARGON2ID}::::::\n"),
        1,
    );
    let path = r.socket.clone();
    let hashing = std::thread::spawn(move || {
        let mut c = AuthClient::connect(&path).unwrap();
        let reply = c
            .verify(&creds("demo@example.test", "correct horse"))
            .unwrap();
        (reply, Instant::now())
    });
    // Give the verification time to reach the pool, then look up.
    std::thread::sleep(Duration::from_millis(100));
    let mut c = AuthClient::connect(&r.socket).unwrap();
    let reply = c.lookup("demo@example.test").unwrap();
    let looked_up = Instant::now();
    assert!(
        matches!(&reply, AuthReply::Ok(u) if u.user == "demo@example.test" && u.uid == 5000),
        "{reply:?}"
    );
    assert_eq!(
        c.lookup("nobody@example.test").unwrap(),
        AuthReply::NotFound
    );
    let (verified, at) = hashing.join().unwrap();
    assert!(
        matches!(&verified, AuthReply::Ok(u) if u.maildir == Path::new("/vmail/example.test/demo/Maildir")),
        "{verified:?}"
    );
    assert!(looked_up < at, "the look-up did not wait for the hash");
    // Cached: answered without a hash (well under one Argon2 run).
    let t = Instant::now();
    let again = c
        .verify(&creds("Demo@Example.Test", "correct horse"))
        .unwrap();
    assert!(matches!(again, AuthReply::Ok(_)), "{again:?}");
    let cached = t.elapsed();
    let t = Instant::now();
    let wrong = c.verify(&creds("demo@example.test", "wrong")).unwrap();
    let hashed = t.elapsed();
    assert_eq!(
        wrong,
        AuthReply::Failed {
            delay_ms: 2000,
            reason: FailReason::Credentials
        }
    );
    assert!(cached < hashed, "cache hit {cached:?}, hash {hashed:?}");
    // The users file changes: the cache is dropped, the new password works
    // and the old does not (the file is looked at once a second).
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(
        r.dir.join("users"),
        "demo@example.test:{SHA256-CRYPT}$5$fJGysRZIZEd3E.fB$SrMJNBjxsd6W5PlW6hGlFQ1oboKbUjikM.DTTuTuux9::::::\nnew@example.test:{SHA256-CRYPT}$5$fJGysRZIZEd3E.fB$SrMJNBjxsd6W5PlW6hGlFQ1oboKbUjikM.DTTuTuux9::::::\n",
    )
    .unwrap();
    assert!(matches!(
        c.lookup("new@example.test").unwrap(),
        AuthReply::Ok(_)
    ));
    assert!(matches!(
        c.verify(&creds("demo@example.test", "correct horse"))
            .unwrap(),
        AuthReply::Ok(_)
    ));
}

#[test]
fn another_uid_is_refused() {
    if !common::privilege::is_root() {
        eprintln!("not root: cannot run a client as another uid; skipped");
        return;
    }
    let nobody = common::privilege::lookup_user("nobody").expect("a nobody user");
    let r = start("peercred", "", 1);
    std::fs::set_permissions(&r.socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    // A Lookup frame from nobody: the service closes without an answer.
    let mut frame = Vec::new();
    common::ipc::write_frame(
        &mut frame,
        &common::auth::AuthRequest {
            id: 1,
            body: common::auth::AuthBody::Lookup { user: "x".into() },
        },
    )
    .unwrap();
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    let script = format!(
        "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect({:?})\ns.settimeout(10)\ntry:\n s.sendall(bytes.fromhex({hex:?}))\n d=s.recv(100)\nexcept (BrokenPipeError, ConnectionResetError):\n d=b''\nsys.stdout.write('closed' if d==b'' else 'answered')\n",
        r.socket.display().to_string()
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .uid(nobody.uid)
        .gid(nobody.gid)
        .output()
        .expect("python3 runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "closed",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Root (this process) is served.
    let mut c = AuthClient::connect(&r.socket).unwrap();
    assert_eq!(c.lookup("x").unwrap(), AuthReply::NotFound);
}
