//! The main.cf parameter table: every parameter posthorn knows, defined once.
//!
//! Each entry has its name, its default (which may use `$name` expansion, as
//! Postfix's defaults do), and a one-paragraph description. `posthorn config`
//! prints from this table, `posthorn config -d` prints the defaults, and a test
//! in cli/ fails when man/man5/main.cf.5 and this table disagree (Postfix's
//! check-postconf-undocumented).
//!
//! Names and meanings follow Postfix wherever Postfix has the feature, so an
//! administrator's knowledge carries over. Defaults marked `@hostname@` are
//! computed at run time (see `config::builtin_default`).

/// One main.cf parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

macro_rules! params {
    ($( $name:literal = $default:literal ; $doc:literal ;)*) => {
        /// All parameters, in the order main.cf(5) documents them.
        pub const PARAMS: &[Param] = &[ $( Param { name: $name, default: $default, doc: $doc } ),* ];
    };
}

params! {
    "config_directory" = "/etc/posthorn";
        "The directory with main.cf, master.cf and the users file. Set by the -c option of every program; the value in main.cf is informational.";
    "queue_directory" = "/var/spool/posthorn";
        "The spool: maildrop, incoming, active, deferred, hold, corrupt, private, public and pid live below it.";
    "daemon_directory" = "/usr/lib/posthorn";
        "Where master finds the worker programs (posthorn-smtpd, posthorn-qmgr, posthorn-local). When a program is missing there, master runs its own executable under the worker's name.";
    "data_directory" = "/var/lib/posthorn";
        "Writable state that is not mail: caches and the like.";
    "pid_directory" = "/run/posthorn";
        "Where master keeps master.pid, its lock against a second master on the same configuration.";
    "mail_owner" = "posthorn";
        "The unprivileged user that every worker except master and local delivery runs as, and that owns the queue. Ignored when posthorn is started by an ordinary user: everything then runs as that user.";
    "setgid_group" = "postdrop";
        "The group that owns maildrop/ and public/, through which local submission reaches the queue.";
    "alternate_config_directories" = "";
        "Configuration directories other than the default that postdrop (installed setgid) accepts from an ordinary user through sendmail -C, $MAIL_CONFIG or $POSTHORN_CONFIG_DIR. Read only from the default /etc/posthorn/main.cf; root may name any directory. Separated by commas or white space.";
    "mail_name" = "posthorn";
        "The mail system name used in the SMTP greeting and in delivery status notifications.";
    "syslog_name" = "posthorn";
        "The prefix of every log line: posthorn/smtpd[pid]: ...";
    "syslog_facility" = "mail";
        "The syslog facility for log lines when posthorn runs in the background.";
    "maillog_file" = "";
        "When set, log lines are appended to this file instead of syslog (Postfix 3.4's maillog_file). In the foreground they always go to standard error.";
    "myhostname" = "@hostname@";
        "This host's fully qualified domain name: the SMTP greeting, the Received: header, Message-IDs of bounces. The default is the system's host name.";
    "mydomain" = "@domain@";
        "This host's domain: $myhostname less its first label, or localdomain.";
    "myorigin" = "$myhostname";
        "The domain that locally posted mail appears to come from.";
    "mydestination" = "$myhostname, localhost.$mydomain, localhost";
        "Domains delivered to system users (getpwnam) into their home_mailbox. Separated by commas or white space.";
    "inet_interfaces" = "all";
        "The addresses that inet services in master.cf listen on when their service name is only a port: all, loopback-only, or a list of addresses.";
    "inet_protocols" = "all";
        "ipv4, ipv6 or all: which address families inet services use with inet_interfaces = all.";
    "mynetworks" = "127.0.0.0/8 [::1]/128";
        "Clients in these networks (address/prefix, separated by commas or white space) may relay mail to any domain. Everyone else may only send to our domains.";
    "virtual_mailbox_domains" = "";
        "Domains whose users are virtual mailbox users listed in virtual_mailbox_maps, delivered into Maildir below virtual_mailbox_base.";
    "virtual_mailbox_maps" = "passwd-file:$config_directory/users";
        "The virtual users, in Dovecot's passwd-file format (user@domain:{SCHEME}hash:uid:gid:gecos:home:shell:extra). posthorn-auth reads the password hashes and answers smtpd's recipient checks; local delivery reads the names and the uid, gid, home and quota fields.";
    "virtual_mailbox_base" = "/var/mail/vhosts";
        "Virtual users whose users-file entry has no home get the home $virtual_mailbox_base/DOMAIN/LOCALPART; their mail goes to Maildir/ below the home.";
    "virtual_uid_maps" = "";
        "static:UID, the owner of virtual mailboxes whose users-file entry has no uid. Empty: the mail_owner user.";
    "virtual_gid_maps" = "";
        "static:GID, the group of virtual mailboxes whose users-file entry has no gid. Empty: the mail_owner's group.";
    "home_mailbox" = "Maildir/";
        "For system users of mydestination: the mailbox below the home directory. A trailing slash means Maildir, otherwise an mbox file. Empty: an mbox file named after the user in mail_spool_directory (Postfix's default).";
    "mail_spool_directory" = "/var/mail";
        "Where system users' mbox files are when home_mailbox is empty: $mail_spool_directory/USER. The file is made (mode 0600) and locked with the user's uid and the directory's group as effective ids, so a root:mail 2775 spool (Debian's /var/mail) needs no root.";
    "mailbox_delivery_lock" = "fcntl, dotlock";
        "How local delivery locks an mbox file while it appends: any of fcntl (a POSIX record lock on the whole file), flock (flock(2)) and dotlock (FILE.lock, in the file's directory). The default is what mutt, mailx and Dovecot use on Linux.";
    "deliver_lock_attempts" = "20";
        "How many times local delivery tries each mbox lock before it defers the message (4.2.0 mailbox busy).";
    "deliver_lock_delay" = "1s";
        "The wait between two tries of an mbox lock.";
    "stale_lock_time" = "500s";
        "A dot-lock that, with its mbox, has not changed for this long is removed (so is one whose process of this host has gone).";
    "recipient_delimiter" = "";
        "Characters that separate a user name from an address extension (user+ext@domain). Empty: no extensions.";
    "recipient_delimiter_folder" = "no";
        "yes: mail for a Maildir user's address with an extension (user+ext@domain) is filed in the user's folder named ext when it exists (Maildir++ .ext; a nested folder as a/b or a.b; the case as the user created it, when only the case differs); otherwise, and always for a name that is not a valid folder name, it goes to INBOX. Folders are never created from addresses. Dovecot's lmtp_save_to_detail_mailbox.";
    "virtual_alias_maps" = "";
        "Aliases for envelope recipients of any domain (virtual(5)), applied by smtpd at RCPT before the message is queued: text tables, texthash:/path (hash:/path and a bare path also name the text file; no postmap step: a table is read again when it changes). Keys user@domain, user (only for $myorigin and $mydestination), @domain (a catch-all); with recipient_delimiter, user+ext@domain is looked up as itself first. Values: addresses separated by commas or white space; @otherdomain keeps the local part (a domain alias); an address without a domain gets @$myorigin. Results are expanded again; an address that maps to itself is kept. Each final recipient is queued with the original as its DSN ORCPT, so notices name the address the sender used. A bad line is skipped with a warning naming the file and line; a table that cannot be read makes smtpd answer 451.";
    "virtual_alias_domains" = "$virtual_alias_maps";
        "Domains with no mailboxes whose every address is an alias in virtual_alias_maps: domain names, and tables in which a domain is looked up as a key (the default: a domain is a virtual alias domain when virtual_alias_maps has a line for the domain itself, Postfix's example.com anything). A recipient there that no entry matches is refused with 550 5.1.1 User unknown in virtual alias table. smtpd accepts mail for these domains from any client (they are ours, not relaying). Do not list a domain here and in mydestination or virtual_mailbox_domains.";
    "virtual_alias_recursion_limit" = "1000";
        "The most times one address is rewritten by virtual_alias_maps on the way to a final recipient. More (or an alias loop with no final recipient) makes smtpd answer 451 and log unreasonable virtual_alias_maps map nesting.";
    "virtual_alias_expansion_limit" = "1000";
        "The most addresses one recipient may expand into through virtual_alias_maps. More makes smtpd answer 451 and log unreasonable virtual_alias_maps map expansion size. smtpd_recipient_limit counts the recipients the client sends, not their expansions.";
    "propagate_unmatched_extensions" = "canonical, virtual";
        "Where an address extension that no table key matched (user+ext@domain found as user@domain) goes on to the result: with virtual, a virtual_alias_maps result user2@domain2 becomes user2+ext@domain2. canonical is accepted for Postfix compatibility (posthorn has no canonical_maps).";
    "message_size_limit" = "10240000";
        "The largest message, in bytes, that smtpd accepts; advertised in the SIZE extension and enforced while the message streams in.";
    "smtpd_banner" = "$myhostname ESMTP $mail_name";
        "The text after 220 in the SMTP greeting.";
    "smtpd_recipient_limit" = "1000";
        "The most recipients smtpd accepts in one message; 0 means no limit.";
    "smtpd_timeout" = "300s";
        "How long smtpd waits for the client to send a command or a piece of the message before it says 421 and closes.";
    "smtpd_recipient_overshoot_limit" = "1000";
        "RCPT commands past smtpd_recipient_limit get 452 4.5.3 and keep the recipients already accepted; only after this many such RCPT commands in one message does each further one count as an error.";
    "smtpd_soft_error_limit" = "10";
        "When a session has made more errors than this, smtpd delays its reply to each further error by smtpd_error_sleep_time.";
    "smtpd_error_sleep_time" = "1s";
        "The delay of a reply to an error once a session has made more than smtpd_soft_error_limit errors. smtpd serves other sessions meanwhile.";
    "smtpd_hard_error_limit" = "20";
        "After this many errors in one session smtpd says 421 and disconnects.";
    "smtpd_junk_command_limit" = "100";
        "Each NOOP, VRFY and RSET past this many in one session counts as an error, so a client cannot hold a connection with them forever. A message received successfully forgives earlier errors and junk commands.";
    "smtpd_client_connection_count_limit" = "50";
        "The most simultaneous connections one client address may hold to one smtpd process. 0 means no limit.";
    "smtpd_max_connections" = "1000";
        "The most simultaneous connections one smtpd process serves; more wait in the listen queue.";
    "smtpd_peername_lookup" = "yes";
        "Look up the client's name before the greeting (Postfix's parameter): the names of its address (/etc/hosts, then PTR records from the name servers of dns_servers), kept only when the name's own addresses (A or AAAA) include the client's, so logs and the Received: header say name[address]; otherwise, and with no, unknown[address]. Only host names (letters, digits, hyphens) are kept. The name decides nothing; it is for logs and the Received: header. Look-ups run on a thread of their own, at most 64 at once per smtpd process (more clients are unknown at once), and never hold up other sessions.";
    "smtpd_peername_lookup_timeout" = "5s";
        "How long smtpd_peername_lookup may take for one client, its address's names and their addresses together; then the client is unknown and greeted.";
    "smtpd_authentication_checks" = "spf, dkim, dmarc, arc";
        "The checks smtpd makes at the end of DATA on mail from clients that did not AUTH (SASL-authenticated submissions are not checked): spf (RFC 7208: the MAIL FROM identity, the HELO name for the null sender; 10 DNS look-ups and 2 void look-ups at most, then permerror), dkim (RFC 6376 and RFC 8463: RSA-SHA256 and Ed25519, the first 10 signatures of a message; rsa-sha1 is reported as policy and never counts, RFC 8301), dmarc (RFC 7489: alignment relaxed or strict as the domain publishes; observations for aggregate reports are kept in $queue_directory/dmarc) and arc (RFC 8617: the chain's validity). The results go into one Authentication-Results header with authserv_id, kept in the queue file and prepended where the message leaves the queue, and into one log line per message (ID: spf=pass dkim=pass (example.org) dmarc=pass (p=reject) arc=none). DNS failures are temperror results and never refuse or lose a message. The checks run on a thread of their own and never hold up other sessions; messages over 32 MB get SPF only. Empty: no checks.";
    "authserv_id" = "$myhostname";
        "The authserv-id of the Authentication-Results header smtpd adds (RFC 8601 2.5). Authentication-Results headers arriving at smtpd that claim it are removed from the message (RFC 8601 5), from every client; a header naming another id stays.";
    "dmarc_enforce" = "no";
        "no: DMARC results are recorded (Authentication-Results, the log, the report observations) and the message is accepted whatever the policy. yes: a message that fails DMARC where the domain publishes p=reject (not in testing mode, t=y) is refused at the end of DATA with 550 5.7.1 and not queued. A failure under p=quarantine is delivered either way, with dmarc=fail in Authentication-Results and a log line saying so.";
    "smtpd_forbid_bare_newline" = "yes";
        "Reject a message (550 5.5.2) whose content (DATA or BDAT) contains a bare LF, one not preceded by CR, from clients outside mynetworks: such line ends are how SMTP smuggling hides a second message from a downstream server. A bare CR is accepted, as Postfix does. no: accept and pass them on unchanged.";
    "smtpd_vrfy_reply" = "252";
        "VRFY answers 252 2.0.0 (cannot verify, but will accept) with 252, or reports 502 5.5.1 (disabled) with 502.";
    "smtpd_tls_cert_file" = "";
        "The PEM file with smtpd's TLS certificate, followed by any intermediate certificates (the chain). Empty: no TLS. Read as root before smtpd drops privileges; a file that cannot be loaded is a configuration error. posthorn dev sets it to a certificate of its own CA.";
    "smtpd_tls_key_file" = "$smtpd_tls_cert_file";
        "The PEM file with the private key of smtpd_tls_cert_file (PKCS#8, PKCS#1 or SEC1). The default means: the key is in the certificate file. It must match the certificate.";
    "smtpd_tls_security_level" = "may";
        "none: no STARTTLS. may: STARTTLS is offered (RFC 3207) when smtpd_tls_cert_file is set. encrypt: it must be set, and MAIL, RCPT, DATA, BDAT and AUTH before STARTTLS get 530 5.7.0 (for submission; never on port 25, where senders may not have TLS).";
    "smtpd_tls_wrappermode" = "no";
        "yes: TLS from the first byte (implicit TLS, the smtps service on port 465, RFC 8314), with smtpd_tls_cert_file. Usually set per service in master.cf with -o.";
    "relayhost" = "";
        "Where posthorn-smtp sends mail for other domains: [host]:port or [address]:port (that host; the brackets say: no MX look-up), or host[:port] (the hosts of its MX records). Empty: each recipient domain's MX hosts (RFC 5321 5.1), on smtp_tcp_port. transport_maps entries come first. qmgr reads it; a value that does not parse is a configuration error.";
    "transport_maps" = "";
        "Per-address and per-domain routes (transport(5)): text tables, texthash:/path (hash:/path and a bare path also name the text file; no postmap step: qmgr reads a table again when it changes). Keys user@domain, domain, .parent-domain, *; values smtp:[host]:port, smtp:host, :nexthop, local, error:text (bounce), retry:text (defer). Consulted before mydestination, virtual_mailbox_domains and relayhost. A bad line is skipped with a warning naming the file and line.";
    "default_destination_concurrency_limit" = "20";
        "The most deliveries qmgr has in flight to one destination at once.";
    "smtp_destination_concurrency_limit" = "$default_destination_concurrency_limit";
        "The most posthorn-smtp deliveries to one next hop (relayhost, a transport_maps next hop, or a recipient domain) at once; the destinations with mail waiting take turns for the free agents, so a slow or dead one holds at most this many. 0: no limit but the smtp service's maxproc.";
    "smtp_connection_cache_time_limit" = "2s";
        "How long posthorn-smtp keeps an idle SMTP connection open after a delivery, for the next message to the same next hop (qmgr sends it to the agent that has it). 0: close after each delivery.";
    "smtp_connection_reuse_time_limit" = "300s";
        "How long posthorn-smtp uses one SMTP connection for new deliveries after it was opened.";
    "smtp_connection_reuse_count_limit" = "0";
        "How many deliveries posthorn-smtp makes over one SMTP connection; 0: no limit but smtp_connection_reuse_time_limit.";
    "smtp_tcp_port" = "25";
        "The port posthorn-smtp connects to on MX hosts (relayhost names its own port).";
    "dns_servers" = "";
        "The name servers posthorn asks (posthorn-smtp: MX, A and AAAA records; smtpd: the clients' names, PTR, A and AAAA, after /etc/hosts): ADDR or ADDR:PORT, separated by commas or spaces. Empty: those of /etc/resolv.conf.";
    "smtp_helo_name" = "$myhostname";
        "The name posthorn-smtp gives in EHLO (or HELO).";
    "smtp_connect_timeout" = "30s";
        "How long posthorn-smtp waits for a TCP connection to the next hop; then it tries the next address.";
    "smtp_helo_timeout" = "300s";
        "How long posthorn-smtp waits for the server's greeting and for the reply to each command (EHLO, STARTTLS, MAIL, RCPT, DATA, QUIT).";
    "smtp_data_done_timeout" = "600s";
        "How long posthorn-smtp waits for the reply after the whole message was sent.";
    "smtp_tls_security_level" = "may";
        "TLS from posthorn-smtp to the next hop. may: STARTTLS when the server offers it, its certificate not checked (opportunistic, RFC 7435); a failed handshake is tried again without TLS. encrypt: TLS required (else deferred), the certificate not checked. verify, secure: TLS required and the certificate must chain to smtp_tls_CAfile and name the host (the MX host, or relayhost's). dane: DANE (RFC 7672) where the host has DNSSEC-secure, usable TLSA records (_PORT._tcp.HOST, validated by posthorn-smtp itself): TLS required and the certificate must match them (DANE-EE 3, or DANE-TA 2 with the next hop's or the secure MX host's name); else as may. dane-only: DANE required, a host without usable TLSA records is not used. A host that fails DANE is never sent to in the clear (deferred, 4.7.5). none: never.";
    "smtp_tls_policy_maps" = "";
        "The TLS level per next hop (Postfix's tls_policy(5)), text tables as transport_maps: keys are the next hop as written ([host]:port of relayhost or transport_maps) or, for MX delivery, the domain and .parent-domain; values none, may, encrypt, verify, secure, dane, dane-only (no attributes; fingerprint is not supported). No entry: smtp_tls_security_level.";
    "dnssec_trust_anchor_file" = "";
        "The DNSSEC trust anchors posthorn-smtp validates DANE's TLSA and MX look-ups from: DNSKEY records in zone-file form (for a private root, or tests). Empty: the root zone's keys built into hickory (KSK 20326 and 38696).";
    "smtp_tls_CAfile" = "/etc/ssl/certs/ca-certificates.crt";
        "The CA certificates (PEM) posthorn-smtp trusts at smtp_tls_security_level verify and secure. Read when posthorn-smtp starts.";
    "smtp_mta_sts" = "yes";
        "MTA-STS (RFC 8461) in posthorn-smtp: for MX delivery to a recipient domain that publishes a policy (_mta-sts TXT record, https://mta-sts.DOMAIN/.well-known/mta-sts.txt, checked against smtp_tls_CAfile), cached in $queue_directory/mta-sts. enforce: only the MX hosts the policy names, TLS with a certificate that chains to smtp_tls_CAfile and names the MX host, else deferred (4.7.5), never plain text. testing: delivered as without it, the failures logged and recorded for TLS-RPT. Not for relayhost or transport_maps next hops; DANE, where the destination has it, takes precedence.";
    "smtp_mta_sts_port" = "443";
        "The TCP port of MTA-STS policy fetches. For testing only: RFC 8461 fetches from port 443, and any other value breaks MTA-STS with the rest of the world.";
    "tlsrpt_organization" = "$mydomain";
        "The organization-name of the TLS-RPT reports (RFC 8460) posthorn tlsrpt prints.";
    "tlsrpt_contact" = "postmaster@$mydomain";
        "The contact-info of the TLS-RPT reports posthorn tlsrpt prints.";
    "disable_mime_output_conversion" = "no";
        "no: posthorn-smtp converts a message with 8-bit content for a server that does not offer 8BITMIME to 7-bit MIME (each 8-bit part quoted-printable if text, base64 otherwise; RFC 6152 3), as Postfix does. A message whose headers have 8-bit text, or that is over 256 KiB, cannot be converted and bounces (5.6.3). yes: such a message bounces.";
    "dkim_key_directory" = "$config_directory/dkim";
        "DKIM keys (RFC 6376, RFC 8463): DOMAIN/SELECTOR.key, a PEM private key (PKCS#8, RSA or Ed25519; or PKCS#1 RSA), owned by mail_owner, mode 0600, the directories 0700 (posthorn check warns otherwise). posthorn-smtp signs mail that is ours (submitted with AUTH, posted locally, our own bounces, or from a client in mynetworks) whose From: domain has a directory here, once with every key of it (RSA and Ed25519 both when both exist), relaxed/relaxed with t=, at delivery over the bytes it sends. A key that cannot be read defers the message (4.7.0). posthorn dkim keygen makes keys; posthorn dkim show prints their DNS records.";
    "dkim_signature_headers" = "";
        "The header fields a DKIM signature covers when the message has them, separated by commas or white space; From is always signed once more than it occurs (oversigned). Empty: RFC 6376 5.4.1's list (From, Reply-To, Subject, Date, To, Cc, Resent-Date, Resent-From, Resent-To, Resent-Cc, In-Reply-To, References, List-Id, List-Help, List-Unsubscribe, List-Subscribe, List-Post, List-Owner, List-Archive) and Message-ID, MIME-Version, Content-Type, Content-Transfer-Encoding.";
    "arc_seal_domain" = "";
        "When not empty, posthorn-smtp adds an ARC set (RFC 8617: ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results) with this d= to every forwarded copy (aliases, .forward) it relays, signed with the key $dkim_key_directory/DOMAIN/$arc_seal_selector.key. The ARC-Authentication-Results copies the topmost Authentication-Results of our authserv-id (none when it has none); cv= is none without an earlier chain, else pass or fail after verifying it; when the chain cannot be verified for want of DNS, or has already failed, the copy goes unsealed. A key that cannot be read defers the copy (4.7.0). Empty: no sealing.";
    "arc_seal_selector" = "arc";
        "The selector (s=) of ARC seals and the name of their key file in $dkim_key_directory/$arc_seal_domain/.";
    "smtpd_sasl_auth_enable" = "no";
        "yes: smtpd offers AUTH PLAIN and LOGIN (RFC 4954, with SASL-IR) and has posthorn-auth verify the password, as for POP3 and IMAP; a failure is 535 5.7.8 after auth_failure_delay and the log line fail2ban's postfix-sasl filter matches. An authenticated client may relay. The submission services of master.cf set it with -o.";
    "smtpd_tls_auth_only" = "yes";
        "yes: AUTH is offered and accepted only under TLS (538 5.7.11 before STARTTLS). no: also in the clear from loopback clients (and from anywhere with auth_allow_cleartext = yes).";
    "smtpd_client_restrictions" = "";
        "Who may send mail, checked at MAIL FROM, first match wins: permit, reject, permit_mynetworks, permit_sasl_authenticated. A reject is 530 5.7.0 Authentication required when AUTH is offered and the client has not used it, else 554 5.7.1. Submission uses permit_sasl_authenticated, reject (set with -o in master.cf). Empty: everyone.";
    "smtpd_sender_restrictions" = "";
        "Checked at MAIL FROM after smtpd_client_restrictions: the same names, and reject_sender_login_mismatch (or reject_authenticated_sender_login_mismatch): an authenticated user may send only as its own address, with or without a recipient_delimiter extension (553 5.7.1 not owned by user); the null sender is allowed. Submission sets reject_sender_login_mismatch with -o in master.cf.";
    "smtpd_sender_login_maps" = "";
        "Who owns which sender address, for reject_sender_login_mismatch: text tables as transport_maps (texthash:/path, read again when changed), keys the address, the address without its recipient_delimiter extension, or @domain; values the logins, separated by commas or spaces. A logged-in user may always send as its own login address too. With reject_sender_login_mismatch, an address the maps give an owner may not be used without logging in.";
    "mailbox_tls_cert_file" = "$smtpd_tls_cert_file";
        "The PEM certificate file of the mailbox services (the POP3 and IMAP login processes; STLS, STARTTLS and their implicit-TLS ports). By default the same certificate as smtpd's.";
    "mailbox_tls_key_file" = "$smtpd_tls_key_file";
        "The private key of mailbox_tls_cert_file.";
    "default_process_limit" = "100";
        "The maxproc of master.cf entries whose maxproc column is '-'.";
    "queue_run_delay" = "300s";
        "How often qmgr scans deferred/ for messages whose next attempt is due (and incoming/ for messages whose notification was lost).";
    "minimal_backoff_time" = "300s";
        "The shortest time a deferred message waits before its next attempt.";
    "maximal_backoff_time" = "4000s";
        "The longest time a deferred message waits before its next attempt. Between the two, the wait doubles with the message's age.";
    "maximal_queue_lifetime" = "5d";
        "A message still undeliverable after this long is returned to its sender.";
    "bounce_queue_lifetime" = "5d";
        "The same as maximal_queue_lifetime for bounces (messages from the null sender).";
    "delay_warning_time" = "0h";
        "When a message is still deferred this long after it arrived, qmgr sends its sender one delay warning (RFC 3464, Action: delayed, the last reason; subject Delayed Mail (still being retried)) for the recipients that did not ask otherwise with NOTIFY (RFC 3461: without NOTIFY, or with DELAY), and records it in the queue file so it goes once. Never to the null sender. 0 turns warnings off. A number without a unit is hours, as in Postfix.";
    "qmgr_message_active_limit" = "20000";
        "The most messages qmgr keeps in active/ at once; the rest wait in incoming/ and deferred/.";
    "alias_maps" = "hash:/etc/aliases";
        "The aliases(5) tables local delivery consults for recipients of mydestination (hash:PATH, texthash:PATH or PATH; all read the text file PATH directly, read again when it changes: newaliases only checks them). Destinations: addresses (local ones resolved in turn, others forwarded as a new message through qmgr), |command, /file (mbox; /dir/ is a Maildir) and :include:/file, commands and files with the rights of the table's owner, default_privs when that is root. smtpd accepts the names as local recipients. A postmaster that is neither an alias nor a user goes to root.";
    "allow_mail_to_commands" = "alias, forward";
        "Where local delivery runs |command destinations: alias (alias_maps), forward (~/.forward), include (:include: files). Any other is bounced (5.7.1, mail to command is restricted).";
    "allow_mail_to_files" = "alias, forward";
        "Where local delivery writes /file destinations: alias, forward, include, as for allow_mail_to_commands. Any other is bounced (5.7.1, mail to file is restricted).";
    "command_time_limit" = "1000s";
        "The longest a |command delivery may run; then its process group is killed and the recipient deferred (Command time limit exceeded).";
    "forward_path" = "$home/.forward${recipient_delimiter}${extension}, $home/.forward";
        "The .forward files local delivery looks for, in order, for a system user of mydestination that is not an alias: $home, $user, $local, $domain, $extension, $recipient, $shell and ${recipient_delimiter} (empty without an extension) are expanded, ${name?text} and ${name:text} as in Postfix; an item with any other $name is skipped. The first that exists is read with the user's rights; it must belong to the user and not be group or world writable (else it is ignored with a warning). Its destinations are those of aliases, run or written with the user's rights; \\user or the user's own name is the user's mailbox.";
    "default_privs" = "nobody";
        "The rights local delivery uses instead of uid 0 or gid 0: mail for root (and any mailbox owner with uid or gid 0) is written as this user, never as root. Must not be a privileged user. Alias root to a real user in alias_maps.";
    "hopcount_limit" = "50";
        "Local delivery returns a message with more Received: headers than this, as a mail loop.";
    "double_bounce_sender" = "double-bounce";
        "The local part of the sender of the notices to postmaster about notifications that could not be delivered (double bounces); a failure of such a notice is dropped, never reported.";
    "auth_allow_cleartext" = "no";
        "Dovecot's name. no: posthorn-auth refuses to verify a password sent over a connection that is neither TLS nor from the loopback interface (the login processes refuse before asking). yes: allow it.";
    "auth_allow_plain_passwords" = "no";
        "Whether users-file entries with a {PLAIN} (or {CLEAR}, {CLEARTEXT}) password may log in. no: such users cannot log in, and posthorn-auth says so once each time it reads the file. APOP needs PLAIN passwords.";
    "auth_failure_delay" = "2s";
        "After a failed login the client waits this long before it is told, doubled with each further consecutive failure from its address, up to 15s (Dovecot's auth_failure_delay and auth penalty). A success, or 10 minutes without failures, starts over. 0 turns the delay off.";
    "auth_worker_max_count" = "2";
        "The most password hash computations posthorn-auth runs at once (Dovecot's auth worker count). Look-ups and cached logins are answered meanwhile.";
    "auth_cache_ttl" = "1h";
        "How long posthorn-auth remembers a successful login (user and a salted digest of the password, never the password), so that the next login with the same password skips the hash computation. Dropped whenever the users file changes. 0 turns the cache off.";
    "login_user" = "posthorn-login";
        "The unprivileged account of the login processes (pop3-login, later imap-login), which speak the protocol before authentication and TLS: it owns nothing, so a compromised login process can read no mailbox, no queue file and no password hash (Dovecot's default_login_user, dovenull). Its group may reach the post-login sockets in $queue_directory/login/. Ignored when posthorn is started by an ordinary user.";
    "mailbox_client_limit" = "1000";
        "The most sessions (POP3, later IMAP) one mailbox process serves. A mailbox process runs as the mailbox owner's uid and serves only that owner's mailboxes; with more sessions than this, the dispatcher starts another process for the same owner.";
    "mailbox_owner_process_count" = "0";
        "The mailbox processes one owner's users are spread over (0: one per CPU). Virtual users who share one uid would otherwise share one process, and so one CPU; a user's sessions always go to the same one of them (sharing its state and its per user and address count). More than this many are started only when each has mailbox_client_limit sessions.";
    "mailbox_idle_timeout" = "600s";
        "A mailbox process that has had no session for this long is told to finish; the next login of its owner starts a new one.";
    "pop3d_timeout" = "600s";
        "How long a POP3 session may be idle before it is closed (RFC 1939 section 3 asks for at least 10 minutes).";
    "pop3d_tls_wrappermode" = "no";
        "yes: the POP3 listener speaks TLS from the first byte (POP3S, port 995; set with -o in master.cf). no: plain POP3 with STLS (port 110).";
    "pop3d_max_connections" = "1000";
        "The most simultaneous connections one pop3-login process serves, including those it relays for TLS after login.";
    "pop3d_client_connection_count_limit" = "50";
        "The most simultaneous POP3 connections one client address may hold (per pop3-login process: login_user cannot reach anvil). 0 means no limit.";
    "pop3d_apop" = "no";
        "yes: offer APOP (RFC 1939 section 7): a timestamp in the greeting and the APOP command. It works only for users whose password is stored in the PLAIN scheme, which auth refuses unless auth_allow_plain_passwords is yes; leave it off.";
    "pop3d_uidl_format" = "%08Xu%08Xv";
        "The UIDL of a message, as Dovecot's pop3_uidl_format: %u is the IMAP UID, %v the UIDVALIDITY, %08Xu and %08Xv the same as eight hex digits (lower case, as Dovecot prints them), %f the Maildir file name's base, %% a percent sign. A UIDL that Dovecot recorded in the uid list (its P field) is kept. Change it only before clients have seen the old UIDLs: they download everything again.";
    "imapd_hibernate_timeout" = "2s";
        "An IMAP session that has sent no command for this long lets go of its selected mailbox's message list (file names, sizes), keeping only the UIDs, flags and mod-sequences it needs to tell the client what changed; its next command lists the mailbox again first. 0 keeps everything. Like Dovecot's imap_hibernate_timeout, for the same reason: thousands of idle clients (phones in IDLE) then hold a few bytes per message each instead of about 250.";
    "imapd_timeout" = "30m";
        "How long an IMAP session after login may be idle before it is closed (RFC 3501 section 5.4 asks for at least 30 minutes; IDLE counts as activity only when the client renews it, as RFC 2177 says clients do every 29 minutes).";
    "imapd_login_timeout" = "180s";
        "How long an IMAP connection may stay idle before it has logged in.";
    "imapd_tls_wrappermode" = "no";
        "yes: the IMAP listener speaks TLS from the first byte (IMAPS, port 993; set with -o in master.cf). no: plain IMAP with STARTTLS (port 143).";
    "imapd_max_connections" = "1000";
        "The most simultaneous connections one imap-login process serves, including those it relays for TLS after login.";
    "imapd_client_connection_count_limit" = "50";
        "The most simultaneous IMAP connections one client address may hold (per imap-login process: login_user cannot reach anvil). 0 means no limit.";
    "imapd_append_limit" = "67108864";
        "The largest message a client may APPEND, in bytes (announced as APPENDLIMIT, RFC 7889). A larger one is refused before the client sends it; a MULTIAPPEND may carry at most this much in all.";
    "imapd_max_userip_connections" = "10";
        "The most simultaneous IMAP sessions one user may have from one client address (Dovecot's mail_max_userip_connections); one more is refused at login with NO [LIMIT]. 0 means no limit.";
    "imapd_max_line_length" = "65536";
        "The longest IMAP command in bytes, literals of commands other than APPEND included (Dovecot's imap_max_line_length). A longer one is answered BAD and discarded.";
    "dmarc_report_address" = "postmaster@$mydomain";
        "Where other receivers send DMARC aggregate reports about mail from the domains this host serves: the rua=mailto: of the _dmarc record that `posthorn dns` prints (empty: none), and the contact address in the reports `posthorn dmarc report` makes. When its domain is not the mail domain or one above or below it, `posthorn dns` also prints the authorization record RFC 7489 7.1 asks of the report domain.";
    "dmarc_report_organization" = "$mydomain";
        "The org_name of the DMARC aggregate reports that `posthorn dmarc report` makes (RFC 7489 7.2.1.1).";
    "tlsrpt_report_address" = "postmaster@$mydomain";
        "Where senders send TLS reports (RFC 8460) about their connections to this host: the rua=mailto: of the _smtp._tls record that `posthorn dns` prints (empty: no such record).";
    "mta_sts_mode" = "testing";
        "The mode of the MTA-STS policy (RFC 8461) that `posthorn dns` prints and writes: testing (senders report failures but deliver), enforce (they deliver only over TLS with a valid certificate for an mx of the policy) or none (withdraw the policy).";
    "mta_sts_max_age" = "604800";
        "The max_age of the MTA-STS policy in seconds: how long senders keep it (RFC 8461 3.2; at most 31557600).";
}

/// Look up a parameter by name.
pub fn find(name: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|p| p.name == name)
}
