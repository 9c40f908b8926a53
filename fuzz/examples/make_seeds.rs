//! Writes the seed corpora in fuzz/corpus/TARGET/ from real artefacts.
//!
//! SMTP and POP3 seeds are the client side of smtpd's and pop3d's transcript
//! fixtures, SASL seeds a few exchanges; queue files
//! come from the spool writer; IPC frames from `write_frame`; main.cf and
//! master.cf are the shipped etc/ files plus a few that use the rest of the
//! syntax; the users file has one line per password scheme; auth requests
//! are frames as the dispatchers and smtpd write them, password fields
//! doveadm's. Run from fuzz/
//! with `cargo run --example make_seeds` after a format changes; the files
//! are committed.

use std::fs;
use std::path::{Path, PathBuf};

use common::auth::{AuthBody, AuthRequest, Credentials, Mechanism};
use common::ipc::{
    self, DeliverRecipient, DeliverReply, DeliverRequest, Handoff, RecipientResult, Status,
};
use common::spool::{Envelope, Queue, Spool};

fn main() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = fuzz.parent().expect("fuzz/ has a parent");
    let corpus = fuzz.join("corpus");
    let put = |target: &str, name: &str, data: &[u8]| {
        let dir = corpus.join(target);
        fs::create_dir_all(&dir).expect("corpus directory");
        fs::write(dir.join(name), data).expect("seed written");
    };

    // SMTP: the client side of every transcript.
    let mut transcripts: Vec<PathBuf> = fs::read_dir(root.join("smtpd/tests/transcripts"))
        .expect("transcripts")
        .map(|e| e.expect("entry").path())
        .collect();
    transcripts.sort();
    for path in &transcripts {
        let text = fs::read_to_string(path).expect("transcript");
        let client = client_bytes(&text);
        let stem = path.file_stem().expect("name").to_string_lossy();
        // smtpd_session: split seed, knobs (bit 5: trusted client), input.
        let trusted = text.contains("@client 10.");
        let small = text.contains("@size ");
        let knobs = u8::from(small) | if trusted { 32 } else { 0 };
        put(
            "smtpd_session",
            &format!("{stem}"),
            &[&[0, knobs][..], &client].concat(),
        );
        put(
            "smtpd_session",
            &format!("{stem}-bytewise"),
            &[&[1, knobs][..], &client].concat(),
        );
        put(
            "smtp_command",
            &format!("{stem}"),
            &[&[0][..], &client].concat(),
        );
        // smtp_data: what follows each DATA line, as DATA (mode 0) input.
        for (i, part) in split_after(&client, b"DATA\r\n").iter().enumerate() {
            put(
                "smtp_data",
                &format!("{stem}-{i}"),
                &[&[0x0e][..], part].concat(),
            );
        }
    }
    // smtp_reply: a server's side of a conversation, and odd replies.
    put(
        "smtp_reply",
        "conversation",
        b"\x07220 mx.example.org ESMTP\r\n250-mx.example.org\r\n250-SIZE 10240000\r\n\
          250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 STARTTLS\r\n\
          250 2.1.0 Ok\r\n550 5.1.1 <a@b>: Recipient address rejected: User unknown\r\n\
          354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as 4Fh2xK\r\n\
          221 2.0.0 Bye\r\n",
    );
    put(
        "smtp_reply",
        "odd",
        b"\x01421-4.7.0 first\n421 4.7.0 second\r\n250-a\r\n550 b\r\n",
    );
    // POP3: the client side of pop3d's transcripts, with the knobs their
    // settings stand for (fuzz/src/pop3.rs).
    for sub in ["login", "session"] {
        let mut files: Vec<PathBuf> = fs::read_dir(root.join("pop3d/tests/transcripts").join(sub))
            .expect("pop3d transcripts")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        for path in &files {
            let text = fs::read_to_string(path).expect("transcript");
            let client = client_bytes(&text);
            let stem = path.file_stem().expect("name").to_string_lossy();
            let has = |s: &str| text.lines().any(|l| l.starts_with(s));
            put(
                "pop3_command",
                &format!("{sub}-{stem}"),
                &[&[0][..], &client].concat(),
            );
            if sub == "login" {
                let knobs = u8::from(has("@tls"))
                    | if has("@cleartext") { 2 } else { 0 }
                    | if has("@client 127.") { 4 } else { 0 }
                    | if has("@apop") { 8 } else { 0 }
                    | if has("@rate") { 32 } else { 0 }
                    | if has("@no-tls") { 64 } else { 0 };
                for (split, suffix) in [(0u8, ""), (1, "-bytewise")] {
                    put(
                        "pop3_login",
                        &format!("{stem}{suffix}"),
                        &[&[split, knobs][..], &client].concat(),
                    );
                }
            } else {
                let knobs = if has("@trickle") { 2 } else { 0 }
                    | if has("@read-fail") { 4 } else { 0 }
                    | if has("@open-fail") { 8 } else { 0 }
                    | if has("@bad") { 16 } else { 0 }
                    | if has("@commit-fail") { 32 } else { 0 };
                let leftover = text
                    .lines()
                    .find_map(|l| l.strip_prefix("@leftover "))
                    .map(unescape)
                    .unwrap_or_default();
                let len = u8::try_from(leftover.len()).expect("a short leftover");
                for (split, suffix) in [(0u8, ""), (1, "-bytewise")] {
                    put(
                        "pop3_session",
                        &format!("{stem}{suffix}"),
                        &[&[split, knobs, len][..], &leftover, &client].concat(),
                    );
                }
            }
        }
    }
    // SASL: mode (bit 0 LOGIN, bit 1 initial response), then the lines.
    for (name, data) in [
        (
            "plain-initial",
            &b"\x02AGJvYkBleGFtcGxlLnRlc3QAc2VjcmV0"[..],
        ),
        ("plain-continued", b"\x00AGJvYkBleGFtcGxlLnRlc3QAc2VjcmV0"),
        ("plain-authzid", b"\x02Ym9iAGJvYkBleGFtcGxlLnRlc3QAc2VjcmV0"),
        ("plain-empty", b"\x02="),
        ("plain-raw", b"\x00\x00bob\x00secret"),
        ("login", b"\x01Ym9iQGV4YW1wbGUudGVzdA==\nc2VjcmV0"),
        ("login-initial", b"\x03Ym9iQGV4YW1wbGUudGVzdA==\nc2VjcmV0"),
        ("cancel", b"\x01Ym9i\n*"),
        ("bad-base64", b"\x00AGJvYgBzZWNyZXQ\n"),
    ] {
        put("sasl", name, data);
    }

    put("smtp_data", "empty", b"\x00.\r\n");
    put("smtp_data", "stuffed", b"\x00..\r\n.x\r\n\r\n.\r\nQUIT\r\n");
    put(
        "smtp_data",
        "smuggling",
        b"\x06a\r\n.\n\r\n.\rb\n.\r\nc\r\n.\r\n",
    );
    // BDAT (mode bit 0): size as u16 LE, then the chunk and what follows.
    put("smtp_data", "bdat", b"\x03\x06\x00.x\r\n\r\nNOOP\r\n");
    put("smtp_data", "bdat-short", b"\x05\x00\x01short");

    // Queue files from the spool writer.
    let tmp = std::env::temp_dir().join(format!("posthorn-seeds-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let spool = Spool::new(&tmp);
    spool.create_dirs().expect("spool");
    let envs = [
        (
            "one-recipient",
            Envelope {
                sender: "alice@example.org".into(),
                recipients: vec!["demo@example.test".into()],
                attrs: vec![
                    ("client_name".into(), "client.example".into()),
                    ("client_addr".into(), "192.0.2.1".into()),
                    ("helo".into(), "client.example".into()),
                    ("protocol".into(), "ESMTP".into()),
                ],
                ..Envelope::default()
            },
            &b"Subject: hi\r\n\r\nbody\r\n"[..],
        ),
        (
            "null-sender-two-recipients",
            Envelope {
                sender: String::new(),
                recipients: vec!["a@example.test".into(), "b@example.test".into()],
                attrs: vec![("protocol".into(), "SMTP".into())],
                ..Envelope::default()
            },
            &b""[..],
        ),
        (
            "dsn",
            Envelope {
                sender: "alice@example.org".into(),
                recipients: vec!["a@example.test".into(), "b@example.test".into()],
                attrs: vec![("protocol".into(), "ESMTP".into())],
                dsn: common::dsn::MessageDsn {
                    ret: Some(common::dsn::Ret::Hdrs),
                    envid: Some("QQ314159+2Bx".into()),
                },
                recipient_dsn: vec![
                    common::dsn::RecipientDsn {
                        notify: common::dsn::Notify::parse("SUCCESS,DELAY"),
                        orcpt: Some("rfc822;a+40example.test".into()),
                    },
                    common::dsn::RecipientDsn {
                        notify: Some(common::dsn::Notify::NEVER),
                        orcpt: None,
                    },
                ],
            },
            &b"Subject: dsn\r\n\r\nx\r\n"[..],
        ),
    ];
    for (name, env, body) in envs {
        let mut w = spool.create(&env).expect("queue file");
        w.write(body).expect("message");
        let id = w.commit().expect("commit");
        let bytes = fs::read(spool.path(Queue::Incoming, &id)).expect("read back");
        put("queue_file", name, &bytes);
        // The same with its first recipient done, as mark_done leaves it.
        if name == "null-sender-two-recipients" {
            let mut qf =
                common::spool::QueueFile::read(&spool.path(Queue::Incoming, &id)).expect("reads");
            qf.mark_done(&[0]).expect("mark");
            let bytes = fs::read(spool.path(Queue::Incoming, &id)).expect("read back");
            put("queue_file", "one-done", &bytes);
        }
        // With its delay warning sent, as qmgr leaves it.
        if name == "dsn" {
            let mut qf =
                common::spool::QueueFile::read(&spool.path(Queue::Incoming, &id)).expect("reads");
            qf.mark_warned(1_700_000_000).expect("mark");
            let bytes = fs::read(spool.path(Queue::Incoming, &id)).expect("read back");
            put("queue_file", "dsn-warned", &bytes);
        }
    }
    let _ = fs::remove_dir_all(&tmp);

    // IPC frames, as qmgr and local delivery write them.
    let mut frame = Vec::new();
    ipc::write_frame(
        &mut frame,
        &DeliverRequest {
            queue_id: "0123456789BCDF".into(),
            sender: "alice@example.org".into(),
            arrival: 1_700_000_000,
            nexthop: String::new(),
            recipients: vec![
                DeliverRecipient {
                    index: 0,
                    address: "demo@example.test".into(),
                },
                DeliverRecipient {
                    index: 2,
                    address: "root@localhost".into(),
                },
            ],
        },
    )
    .expect("frame");
    put("ipc_frame", "deliver-request", &frame);
    let mut frame = Vec::new();
    ipc::write_frame(
        &mut frame,
        &DeliverReply {
            results: vec![
                RecipientResult {
                    index: 0,
                    status: Status::Sent,
                    dsn: "2.0.0".into(),
                    text: "delivered to maildir".into(),
                    handoff: Handoff::Delivered,
                    forward: Vec::new(),
                },
                RecipientResult {
                    index: 2,
                    status: Status::Bounced,
                    dsn: "5.1.1".into(),
                    text: "unknown user".into(),
                    handoff: Handoff::Relayed,
                    forward: Vec::new(),
                },
                RecipientResult {
                    index: 3,
                    status: Status::Deferred,
                    dsn: "4.2.2".into(),
                    text: "mailbox full".into(),
                    handoff: Handoff::Passed,
                    forward: Vec::new(),
                },
            ],
        },
    )
    .expect("frame");
    put("ipc_frame", "deliver-reply", &frame);

    // main.cf: as shipped, with its examples uncommented, and the syntax.
    let main_cf = fs::read_to_string(root.join("etc/main.cf")).expect("etc/main.cf");
    put("main_cf", "etc-main.cf", main_cf.as_bytes());
    let uncommented: String = main_cf
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| l.starts_with(|c: char| c.is_ascii_lowercase()) && l.contains(" = "))
        .map(|l| format!("{l}\n"))
        .collect();
    put("main_cf", "uncommented.cf", uncommented.as_bytes());
    put(
        "text_table",
        "transport",
        b"# transport_maps\nexample.org      smtp:[mx.example.org]:2525\n\
          .example.org     relay:backup.example.net\njoe@example.com  local:\n\
          example.com      :[10.0.0.1]\nold.example      error:5.1.6 moved\n\
          held.example     retry:maintenance\nnovalue\nlong.example\n  smtp:[continued.example]\n\
          * smtp:[smarthost.example]\n",
    );
    // virtual_alias: knobs, recipients, table.
    let virtual_table = "alias.test  anything\n\
        info@alias.test  bob@example.test, carol@example.test\n\
        @alias.test  catch@example.test\n@old.test  @new.test\n\
        joe@x.test  joe@example.test\nroot  admin\n\
        team@x.test  a@x.test, b@x.test\na@x.test  a@x.test, archive@x.test\n\
        b@x.test  team@x.test, c@x.test\nloop1@x.test loop2@x.test\n\
        loop2@x.test loop1@x.test\n";
    for (name, knobs, rcpts) in [
        (
            "aliases",
            1u8,
            "info@alias.test who@alias.test u+e@old.test joe+x@x.test",
        ),
        (
            "loops",
            4,
            "team@x.test loop1@x.test root@localhost nobody@alias.test",
        ),
        (
            "delimiters",
            3,
            "joe-a+b@X.TEST root+x@mail.example.test @alias.test x",
        ),
    ] {
        let mut seed = vec![knobs];
        seed.extend_from_slice(format!("{rcpts}\n{virtual_table}").as_bytes());
        put("virtual_alias", name, &seed);
    }
    put(
        "main_cf",
        "syntax.cf",
        b"# comment\nmyhostname = mail.example.test\nmydomain = example.test\n\
          mydestination = $myhostname, localhost.$mydomain\n  localhost\n\
          relay = ${mydomain?yes} ${nothing:empty} $(myhostname) $$ $\n\
          message_size_limit = 10240000\nsmtpd_timeout = 5m\n\
          smtpd_forbid_bare_newline = yes\nmynetworks = 127.0.0.0/8 [::1]/128 10.0.0.0/8\n\
          virtual_mailbox_maps = passwd-file:/etc/posthorn/users\nloop = $loop\n",
    );

    // master.cf: as shipped, and with every column form.
    let master_cf = fs::read(root.join("etc/master.cf")).expect("etc/master.cf");
    put("master_cf", "etc-master.cf", &master_cf);
    put(
        "master_cf",
        "columns.cf",
        b"127.0.0.1:2525 inet n - n - 4 smtpd -o smtpd_timeout=10s\n\
          [::1]:submission inet n y - - - smtpd\n  -o message_size_limit=0 -v\n\
          qmgr unix - - n 300? 1 qmgr\nlocal unix - n n - 4 local\n",
    );

    // The users file: one line per password scheme, and the empty fields.
    put(
        "users_file",
        "schemes",
        b"# users\n\
          alice@example.org:{SHA512-CRYPT}$6$salt$hash:1000:1000::/home/alice::\n\
          bob@example.org:{SHA256-CRYPT}$5$salt$hash:::::: \n\
          carol@example.org:{BLF-CRYPT}$2y$05$abcdefghijklmnopqrstuu:::gecos:/var/mail/carol:/bin/false:\n\
          dave@example.org:{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA\n\
          erin@example.org:{SSHA512}aGFzaHNhbHQ=:5000:5000\n\
          frank@example.org:{CRAM-MD5}0123456789abcdef:::::userdb_quota_rule=*:storage=1G\n\
          Grace@Example.org:{PLAIN}secret\r\n\
          heidi@example.org\n",
    );
    let users = fs::read(root.join("etc/users")).expect("etc/users");
    put("users_file", "etc-users", &users);

    // maildrop: a client stream (seed byte 0) and a file (seed byte 1), as
    // sendmail and postdrop write them.
    {
        use postdrop::maildrop::{self as md, BodyType, Record};
        let recs = [
            Record::Sender("alice".into()),
            Record::FullName("Alice Example".into()),
            Record::Recipient("bob@example.org".into()),
            Record::Extract,
            Record::Notify(md::NOTIFY_SUCCESS | md::NOTIFY_FAILURE),
            Record::Body(BodyType::EightBitMime),
            Record::Data(
                b"To: Bob <bob@example.org>, group: c@x, \"d, e\" <d@y>;\r\nBcc: f@z\r\n\
                  Subject: seed\r\n\r\nbody\r\n.\r\n"
                    .to_vec(),
            ),
            Record::End,
        ];
        for (seed, uid) in [(0u8, None), (1u8, Some(1000u32))] {
            let mut v = vec![seed];
            v.extend_from_slice(md::MAGIC);
            if let Some(u) = uid {
                md::write(&mut v, &Record::Uid(u)).expect("memory");
            }
            for r in &recs {
                md::write(&mut v, r).expect("memory");
            }
            put(
                "maildrop",
                if uid.is_some() { "file" } else { "client" },
                &v,
            );
        }
    }

    // aliases: the shipped /etc/aliases, every destination kind, quoting,
    // continuations and errors; a .forward.
    let aliases = fs::read(root.join("etc/aliases")).expect("etc/aliases");
    put("aliases", "etc-aliases", &aliases);
    put(
        "aliases",
        "kinds",
        b"# every kind\n\
          list: alice, bob@example.org,\n  carol\n\
          prog: \"|/usr/bin/procmail -a, b\"\n\
          file: /var/log/mail.archive, /srv/maildir/\n\
          team: :include:/etc/mail/team\n\
          \"odd name\": \\root\n\
          broken line\n\
          empty:\n",
    );
    put(
        "aliases",
        "forward",
        b"\\alice\n\"|/usr/bin/vacation alice\"\nalice@elsewhere.example, /home/alice/Mail/\n",
    );

    // authenticate: the split byte, then a message as smtpd's checks see it
    // (a dkimpy Ed25519 signature, Authentication-Results ours and foreign,
    // an ARC set).
    put("authenticate", "signed", b"\0DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/simple;\r\n d=signed.example; i=@signed.example; q=dns/txt; s=ed; t=1796001035;\r\n h=from : to : subject : from;\r\n bh=Ck5SoRNWUpSR4X0COv7R5ub2pUTtl6xz4dTFz++ji4M=;\r\n b=9tw/nJ2iSF2ZRl+uFVzu2O36g/Y2cnt17PjDzryx6Rvph3bIBRT0h/SZo2X4DVLpEU8FR\r\n CCPL1MAvV70cbprBg==\r\nFrom: a@signed.example\r\nTo: b@x\r\nSubject: t\r\n\r\nbody\r\n");
    put(
        "authenticate",
        "forged",
        b"\x03Authentication-Results: mx.example.net; spf=pass smtp.mailfrom=a@b\r\n\
          Authentication-Results: (c) other.example;\r\n dkim=pass\r\n\
          authentication-results:\r\n MX.EXAMPLE.NET (x); dmarc=pass\r\n\
          Subject: s\r\n\r\nAuthentication-Results: mx.example.net; none\r\n",
    );
    put(
        "authenticate",
        "arc",
        b"\x05ARC-Seal: i=1; a=rsa-sha256; t=1; cv=none; d=example.org; s=s; b=AAAA\r\n\
          ARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org;\r\n s=s; h=from; bh=AAAA; b=AAAA\r\n\
          ARC-Authentication-Results: i=1; mx.example.org; spf=pass\r\n\
          From: a@example.org\r\n\r\nbody\r\n",
    );

    // peer_name: flags (bit 0: IPv6 client), the mask of names whose
    // addresses include the client, the mask of failing look-ups, PTR names.
    put("peer_name", "confirmed", b"\0\x01\0mail.example.org");
    put(
        "peer_name",
        "second-of-three",
        b"\x01\x02\x01gone.example\nmx1.example.net\nmx2.example.net",
    );
    put(
        "peer_name",
        "hostile",
        b"\0\xff\0evil\r\nx\x00.example\ncaf\xc3\xa9.example\n-a.example\n1.2.3.4\nunder_score.example\nok.example",
    );

    // dns_records: the expected record (0 MX, 1 SPF, 2 DKIM, 3 DMARC, 4
    // the report authorization, 5 MTA-STS, 6 TLS-RPT, 7 TLSA, 8.. SRV),
    // then found records a line each (0 TXT, 1 MX, 2 TLSA, 3 SRV).
    put(
        "dns_records",
        "mx",
        b"\0\x01mail.example.org\n\x01backup.example.net",
    );
    put(
        "dns_records",
        "spf",
        b"\x01\0v=spf1 mx -all\n\0google-site-verification=abc",
    );
    put(
        "dns_records",
        "dmarc-two",
        b"\x03\0v=DMARC1; p=none; rua=mailto:dmarc@reports.example.net\n\0v=DMARC1; p=reject",
    );
    put("dns_records", "mta-sts", b"\x05\0v=STSv1; id=20261130");
    put(
        "dns_records",
        "tlsrpt",
        b"\x06\0v=TLSRPTv1; rua=mailto:tls@example.org,https://r.example/",
    );
    put("dns_records", "tlsa", b"\x07\x02\xab\xcd");
    put("dns_records", "srv", b"\x08\x03\x03\xe1mail.example.org");
    put(
        "dns_records",
        "dkim-hostile",
        b"\x02\0v=DKIM1; p=\x1b[31m\r\n\0\xff\xfe",
    );

    // Hand-off frames as a sending process writes them: frames with an
    // ipc message, an empty one, and one claiming too much.
    let mut frames = Vec::new();
    ipc::write_frame(&mut frames, &b"USER demo\r\nSTAT\r\n".to_vec()).expect("frame");
    ipc::write_frame(&mut frames, &Vec::<u8>::new()).expect("frame");
    put("handoff_frames", "two", &[&[0][..], &frames].concat());
    put(
        "handoff_frames",
        "two-bytewise",
        &[&[1][..], &frames].concat(),
    );
    let mut over = frames.clone();
    over.extend_from_slice(&u32::MAX.to_le_bytes());
    over.extend_from_slice(b"never read");
    put("handoff_frames", "too-large", &[&[3][..], &over].concat());
    // auth_request: split byte, then request frames as the dispatchers and
    // smtpd send them (users of the harness's table).
    let verify =
        |id: u64, user: &str, password: &str, mechanism: Mechanism, secured: bool| AuthRequest {
            id,
            body: AuthBody::Verify(Credentials {
                service: "pop3".into(),
                mechanism,
                authzid: String::new(),
                user: user.into(),
                password: password.into(),
                client: Some("192.0.2.1".parse().expect("address")),
                local_port: 995,
                secured,
            }),
        };
    let lookup = |id: u64, user: &str| AuthRequest {
        id,
        body: AuthBody::Lookup { user: user.into() },
    };
    let frames = |reqs: &[AuthRequest]| {
        let mut b = Vec::new();
        for r in reqs {
            ipc::write_frame(&mut b, r).expect("frame");
        }
        b
    };
    put(
        "auth_request",
        "lookups",
        &[
            &[0][..],
            &frames(&[
                lookup(1, "plain@example.test"),
                lookup(2, "NOBODY@example.test"),
                lookup(3, "zero@example.test"),
            ]),
        ]
        .concat(),
    );
    put(
        "auth_request",
        "verify-schemes",
        &[
            &[3][..],
            &frames(&[
                verify(1, "sha256@example.test", "pw", Mechanism::Plain, true),
                verify(2, "sha256@example.test", "pw", Mechanism::Login, true),
                verify(3, "sha512@example.test", "wrong", Mechanism::UserPass, true),
                verify(4, "blf@example.test", "pw", Mechanism::Plain, true),
                verify(5, "argon2id@example.test", "pw", Mechanism::Plain, true),
                verify(6, "argon2i@example.test", "pw", Mechanism::Plain, true),
                verify(7, "nobody@example.test", "pw", Mechanism::Plain, true),
                verify(8, "odd@example.test", "pw", Mechanism::Plain, true),
            ]),
        ]
        .concat(),
    );
    let apop = Mechanism::Apop {
        challenge: "<1896.697170952@dbc.mtview.ca.us>".into(),
    };
    put(
        "auth_request",
        "refusals-and-apop",
        &[
            &[7][..],
            &frames(&[
                verify(1, "plain@example.test", "pw", Mechanism::Plain, false),
                verify(
                    2,
                    "plain@example.test",
                    "0123456789abcdef0123456789abcdef",
                    apop.clone(),
                    false,
                ),
                verify(3, "bad,name@example.test", "pw", Mechanism::Plain, true),
                verify(4, "zero@example.test", "pw", Mechanism::Plain, true),
                verify(5, "empty@example.test", "", apop, true),
            ]),
        ]
        .concat(),
    );
    put(
        "auth_request",
        "truncated",
        &[&[0][..], &frames(&[lookup(9, "x")])[..6]].concat(),
    );

    // password_hash: a field, a newline, a password (doveadm's hashes of
    // "correct horse", and cheap ones of "pw").
    for (name, field, password) in [
        ("argon2id", "{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1$ZnV6emZ1enpmdXp6ZnV6eg$z6lxJGH2hnggxBmUDa8d/kBT7tx3LD7lm4fV+cPq+FU", "pw"),
        ("argon2i-doveadm", "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$DkRyrE8qkCO/h7JbbKOYxg$L5iVhkGnNUN+vFFuM9mtZ18GXAlednlw1XzPmmu2p10", "correct horse"),
        ("sha512-crypt", "{SHA512-CRYPT}$6$rounds=1000$WoYo9JOshaFoB9AH$8mngmYMXbpYczee1cgLie.FT4ORd1CjPmNtjBM5uCS5iQ1GPf7s8qz3Vlw1P.o0ymQRX.ZQopR0an7.8tnzH9.", "pw"),
        ("sha256-crypt", "$5$rounds=1000$DecXjCgZNFPA4y8y$ZpLY/SP53zLRTn1olmpPfNC5CEQ3Uw7Xx9kef0p6qj.", "pw"),
        ("blf-crypt", "{BLF-CRYPT}$2y$04$l313bIvSeqRnCxLguaNCJ.Zyczp9nlaV84wcaIj3Hm5rBz51qILzy", "pw"),
        ("crypt-blf", "{CRYPT}$2y$05$159kDGIV.FUlI/Tau.MnQOuaSDcpoQYAv9UC3Kjf20tBg6cLfaHLS", "correct horse"),
        ("plain", "{PLAIN}tanstaaf", "<1896.697170952@dbc.mtview.ca.us>"),
        ("cleartext", "{cleartext}secret", "secret"),
        ("unknown", "{SSHA512}aGFzaHNhbHQ=", "x"),
        ("des", "abJnggxhB/yWI", "x"),
    ] {
        put("password_hash", name, format!("{field}\n{password}").as_bytes());
    }

    // dkim_sign: messages from example.org (signed), from elsewhere, with
    // several authors, with an earlier Authentication-Results and ARC set.
    for (name, msg) in [
        ("signed", &b"From: Alice <alice@example.org>\r\nTo: b@example.net\r\nSubject: hi\r\nDate: Mon, 30 Nov 2026 00:00:00 +0000\r\n\r\nHello.\r\n"[..]),
        ("other-domain", b"From: x@example.net\r\nSubject: s\r\n\r\nbody\r\n"),
        ("two-authors", b"From: a@example.org, b@example.org\r\n\r\nx\r\n"),
        ("no-body", b"From: a@example.org\r\nSubject: folded\r\n\tcontinued\r\n"),
        ("results", b"Authentication-Results: mx.example.org;\r\n\tdkim=pass header.d=example.net\r\nFrom: a@example.org\r\n\r\nforwarded\r\n"),
        ("arc-chain", b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=example.net; s=x; t=1; b=AAAA\r\nARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net; s=x; h=From; bh=AAAA; b=AAAA\r\nARC-Authentication-Results: i=1; mx.example.net; none\r\nFrom: a@example.org\r\n\r\nx\r\n"),
    ] {
        put("dkim_sign", name, msg);
    }
}

/// What the client sends in a transcript: C: lines with CRLF, R: lines raw.
fn client_bytes(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(c) = line.strip_prefix("C: ") {
            out.extend_from_slice(c.as_bytes());
            out.extend_from_slice(b"\r\n");
        } else if line == "C:" {
            out.extend_from_slice(b"\r\n");
        } else if let Some(r) = line.strip_prefix("R: ") {
            out.extend_from_slice(&unescape(r));
        } else if line.starts_with("T: ") {
            // The TLS handshake the transcript runner completes here.
            out.extend_from_slice(posthorn_fuzz::TLS_MARK);
        }
    }
    out
}

/// The transcript escapes: \r \n \t \0 \\ \xNN.
fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'0') => out.push(0),
            Some(b'x') => {
                let hex: String = it.by_ref().take(2).map(char::from).collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap_or(b'?'));
            }
            Some(o) => out.push(o),
            None => {}
        }
    }
    out
}

/// Every tail of `data` after an occurrence of `marker`.
fn split_after<'a>(data: &'a [u8], marker: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = data[i..].windows(marker.len()).position(|w| w == marker) {
        i += p + marker.len();
        out.push(&data[i..]);
    }
    out
}
