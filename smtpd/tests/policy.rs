//! Policy tests without the protocol: main.cf lines, virtual users and
//! RCPT events against the real `policy::AccessPolicy`, with the exact reply
//! expected (Postfix's smtpd_check tests, .in/.ref style, in one table).
//!
//! Script lines: `main.cf NAME = VALUE` adds a main.cf line, `users ADDRESS`
//! a virtual user, `alias LINE` a line of the aliases file (alias_maps, in
//! the test's directory unless main.cf names others), `auth down`/`auth up`
//! makes the user table fail or answer;
//! `virtual KEY VALUE` a line of the virtual_alias_maps table (a file in
//! the test's directory, named by virtual_alias_maps once a line exists),
//! `virtual gone` removes that file;
//! the policy is rebuilt from them before the next event. `rcpt CLIENT
//! ADDRESS` asks `check_recipient` (`rcpt-auth` as an authenticated
//! client: one that used AUTH), `trusted CLIENT` asks `trusted`; the next
//! line, `> REPLY`, is the expected answer (`OK`, `OK` and the final
//! recipients of an alias, `yes`/`no`, or the whole reply line). The virtual users are an in-memory table behind the
//! `UserLookup` trait (in production posthorn-auth answers it; its own tests
//! cover that side).

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

use common::addr::Domains;
use common::config::Config;
use common::net::Networks;
use common::virtual_alias::VirtualAlias;
use posthorn_smtpd::policy::{AccessPolicy, LookupError, UserLookup};
use posthorn_smtpd::session::{Accepted, Policy};

const SCRIPT: &str = r#"
main.cf myhostname = mail.example.test
main.cf mydestination = $myhostname, localhost
main.cf virtual_mailbox_domains = example.test, other.test
main.cf mynetworks = 127.0.0.0/8 10.0.0.0/8 [2001:db8:1::]/48
users demo@example.test
users Bob@Other.Test

# Virtual users: known (any case), unknown.
rcpt 192.0.2.1 demo@example.test
> OK
rcpt 192.0.2.1 DEMO@Example.TEST
> OK
rcpt 192.0.2.1 bob@other.test
> OK
rcpt 192.0.2.1 nobody@example.test
> 550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table
rcpt 192.0.2.1 demo@other.test
> 550 5.1.1 <demo@other.test>: Recipient address rejected: User unknown in virtual mailbox table
rcpt 10.1.2.3 nobody@example.test
> 550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table
rcpt 192.0.2.1 demo+tag@example.test
> 550 5.1.1 <demo+tag@example.test>: Recipient address rejected: User unknown in virtual mailbox table

# System users of mydestination (root exists on every Unix).
rcpt 192.0.2.1 root@localhost
> OK
rcpt 192.0.2.1 root@MAIL.example.test
> OK
rcpt 192.0.2.1 root
> OK
rcpt 192.0.2.1 no-such-user-posthorn@localhost
> 550 5.1.1 <no-such-user-posthorn@localhost>: Recipient address rejected: User unknown in local recipient table

# Relay control: only mynetworks may send elsewhere.
rcpt 192.0.2.1 someone@elsewhere.org
> 554 5.7.1 <someone@elsewhere.org>: Relay access denied
rcpt 10.1.2.3 someone@elsewhere.org
> OK
rcpt 127.0.0.1 someone@elsewhere.org
> OK
rcpt ::ffff:10.9.9.9 someone@elsewhere.org
> OK
rcpt 2001:db8:1::25 someone@elsewhere.org
> OK
rcpt 2001:db8:2::25 someone@elsewhere.org
> 554 5.7.1 <someone@elsewhere.org>: Relay access denied
rcpt 11.0.0.1 someone@elsewhere.org
> 554 5.7.1 <someone@elsewhere.org>: Relay access denied
# A client that logged in (AUTH) relays from anywhere; it still may not
# send to users that do not exist here.
rcpt-auth 11.0.0.1 someone@elsewhere.org
> OK
rcpt-auth 11.0.0.1 nobody-here@example.test
> 550 5.1.1 <nobody-here@example.test>: Recipient address rejected: User unknown in virtual mailbox table
trusted 10.255.255.255
> yes
trusted 192.0.2.1
> no

# RFC 5321 4.5.1: postmaster, bare or at any of our domains, in any case,
# with no such user; postmaster elsewhere is relaying like anyone else.
rcpt 192.0.2.1 postmaster
> OK
rcpt 192.0.2.1 PostMaster
> OK
rcpt 192.0.2.1 postmaster@example.test
> OK
rcpt 192.0.2.1 POSTMASTER@Other.Test
> OK
rcpt 192.0.2.1 postmaster@localhost
> OK
rcpt 192.0.2.1 Postmaster@mail.example.test
> OK
rcpt 192.0.2.1 postmaster@elsewhere.org
> 554 5.7.1 <postmaster@elsewhere.org>: Relay access denied
rcpt 10.1.2.3 postmaster@elsewhere.org
> OK
rcpt 192.0.2.1 postmasters@example.test
> 550 5.1.1 <postmasters@example.test>: Recipient address rejected: User unknown in virtual mailbox table

# recipient_delimiter: the extension is removed before the look-up.
main.cf recipient_delimiter = +
rcpt 192.0.2.1 demo+tag@example.test
> OK
rcpt 192.0.2.1 no-such-user-posthorn+x@localhost
> 550 5.1.1 <no-such-user-posthorn+x@localhost>: Recipient address rejected: User unknown in local recipient table

# Users that cannot be looked up now are a temporary failure, not
# "unknown"; postmaster, system users and relaying do not need the table.
auth down
rcpt 192.0.2.1 demo@example.test
> 451 4.3.0 <demo@example.test>: Temporary lookup failure
rcpt 192.0.2.1 nobody@example.test
> 451 4.3.0 <nobody@example.test>: Temporary lookup failure
rcpt 192.0.2.1 postmaster@example.test
> OK
rcpt 192.0.2.1 root@localhost
> OK
rcpt 192.0.2.1 someone@elsewhere.org
> 554 5.7.1 <someone@elsewhere.org>: Relay access denied
auth up
rcpt 192.0.2.1 demo@example.test
> OK

# alias_maps names are local recipients too (Postfix's local_recipient_maps
# default), with or without an extension; not in virtual domains.
alias team: demo@example.test, "|/usr/bin/procmail"
rcpt 192.0.2.1 team@localhost
> OK
rcpt 192.0.2.1 Team+x@mail.example.test
> OK
rcpt 192.0.2.1 team@example.test
> 550 5.1.1 <team@example.test>: Recipient address rejected: User unknown in virtual mailbox table
rcpt 192.0.2.1 teams@localhost
> 550 5.1.1 <teams@localhost>: Recipient address rejected: User unknown in local recipient table
# A table that cannot be used: a temporary failure for names that are not
# users.
main.cf alias_maps = ldap:/etc/nothing
rcpt 192.0.2.1 team@localhost
> 451 4.3.0 <team@localhost>: Temporary lookup failure
rcpt 192.0.2.1 root@localhost
> OK
# The aliases file usable again for what follows.
main.cf alias_maps =

# virtual_alias_maps: an entry is accepted as what it expands to, even
# where no such mailbox user exists; virtual_alias_domains are ours (no
# relaying needed), and an address there needs an entry; an entry for
# another domain's address does not open relaying.
virtual info@example.test  bob@other.test, info@example.test
virtual @alias.test  demo@example.test
virtual vip@alias.test  vip@elsewhere.org
virtual a@strict.test  demo@example.test
virtual someone@elsewhere.org  demo@example.test
main.cf virtual_alias_domains = alias.test strict.test
rcpt 192.0.2.1 info@example.test
> OK bob@other.test info@example.test
rcpt 192.0.2.1 Whoever+x@Alias.Test
> OK demo+x@example.test
rcpt 192.0.2.1 vip@alias.test
> OK vip@elsewhere.org
rcpt 192.0.2.1 a@strict.test
> OK demo@example.test
rcpt 192.0.2.1 nobody@strict.test
> 550 5.1.1 <nobody@strict.test>: Recipient address rejected: User unknown in virtual alias table
rcpt 192.0.2.1 postmaster@strict.test
> 550 5.1.1 <postmaster@strict.test>: Recipient address rejected: User unknown in virtual alias table
rcpt 192.0.2.1 someone@elsewhere.org
> 554 5.7.1 <someone@elsewhere.org>: Relay access denied
rcpt 10.1.2.3 someone@elsewhere.org
> OK demo@example.test
rcpt 192.0.2.1 demo@example.test
> OK
# Postfix's default: a domain is a virtual alias domain when the table
# has a line for it.
main.cf virtual_alias_domains = $virtual_alias_maps
virtual byline.test  anything
rcpt 192.0.2.1 nobody@byline.test
> 550 5.1.1 <nobody@byline.test>: Recipient address rejected: User unknown in virtual alias table
rcpt 192.0.2.1 nobody@strict.test
> 554 5.7.1 <nobody@strict.test>: Relay access denied
# A table that cannot be read: 451 for everyone (no entry cannot be told
# from an entry unread), relay control still first.
virtual gone
rcpt 192.0.2.1 demo@example.test
> 451 4.3.0 <demo@example.test>: Temporary lookup failure
rcpt 192.0.2.1 someone@elsewhere.org
> 554 5.7.1 <someone@elsewhere.org>: Relay access denied
"#;

/// A temporary configuration directory, removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The virtual users in memory: lower-case addresses, or unavailable.
struct MemoryUsers {
    users: HashSet<String>,
    down: bool,
}

impl UserLookup for MemoryUsers {
    fn exists(&mut self, key: &str) -> Result<bool, LookupError> {
        if self.down {
            return Err(LookupError::TempFail("auth is down (test)".into()));
        }
        Ok(self.users.contains(key))
    }
}

fn build(
    dir: &TempDir,
    main_cf: &str,
    users: &HashSet<String>,
    down: bool,
    aliases: Option<&str>,
    gone: bool,
) -> AccessPolicy {
    let mut cfg = Config::parse(&dir.0, "main.cf", main_cf).expect("test main.cf parses");
    let table = dir.0.join("virtual");
    if let Some(text) = aliases {
        // `virtual gone`: the setting stays, the file does not.
        if gone {
            let _ = std::fs::remove_file(&table);
        } else {
            std::fs::write(&table, text).expect("virtual table written");
        }
        cfg.set(
            "virtual_alias_maps",
            &format!("texthash:{}", table.display()),
            "test",
        );
    }
    AccessPolicy {
        domains: Domains::from_config(&cfg),
        mynetworks: Networks::parse(&cfg.get("mynetworks")).expect("test mynetworks parses"),
        users: Box::new(MemoryUsers {
            users: users.clone(),
            down,
        }),
        local_aliases: common::aliases::Aliases::new(&if main_cf.contains("alias_maps") {
            cfg.list("alias_maps")
        } else {
            vec![format!("hash:{}/aliases", dir.0.display())]
        }),
        virtual_aliases: VirtualAlias::from_config(&cfg).expect("test virtual alias settings"),
    }
}

fn client(s: &str, at: usize) -> IpAddr {
    s.parse()
        .unwrap_or_else(|_| panic!("line {at}: bad client {s:?}"))
}

#[test]
fn policy_script() {
    let dir =
        TempDir(std::env::temp_dir().join(format!("posthorn-smtpd-policy-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("temporary directory");
    let mut main_cf = String::new();
    let mut users = HashSet::new();
    let mut down = false;
    let mut aliases = String::new();
    let mut gone = false;
    let mut policy: Option<AccessPolicy> = None;
    let mut events = 0;
    let lines: Vec<&str> = SCRIPT.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let (at, line) = (i + 1, lines[i]);
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(l) = line.strip_prefix("main.cf ") {
            main_cf.push_str(l);
            main_cf.push('\n');
            policy = None;
            continue;
        }
        if let Some(u) = line.strip_prefix("users ") {
            users.insert(u.to_ascii_lowercase());
            policy = None;
            continue;
        }
        if let Some(l) = line.strip_prefix("alias ") {
            let p = dir.0.join("aliases");
            let mut text = std::fs::read_to_string(&p).unwrap_or_default();
            text.push_str(l);
            text.push('\n');
            std::fs::write(&p, text).expect("aliases file");
            policy = None;
            continue;
        }
        if let Some(entry) = line.strip_prefix("virtual ") {
            if entry == "gone" {
                gone = true;
            } else {
                aliases.push_str(entry);
                aliases.push('\n');
            }
            policy = None;
            continue;
        }
        if let Some(state) = line.strip_prefix("auth ") {
            down = state == "down";
            policy = None;
            continue;
        }
        let want = lines
            .get(i)
            .and_then(|l| l.strip_prefix("> "))
            .unwrap_or_else(|| panic!("line {at}: no '> reply' line after {line:?}"));
        i += 1;
        let p = policy.get_or_insert_with(|| {
            let table = (!aliases.is_empty()).then_some(aliases.as_str());
            build(&dir, &main_cf, &users, down, table, gone)
        });
        let got = match line.split(' ').collect::<Vec<_>>().as_slice() {
            [verb @ ("rcpt" | "rcpt-auth"), c, rcpt] => {
                match p.check_recipient(Some(client(c, at)), rcpt, *verb == "rcpt-auth") {
                    Ok(Accepted::Itself) => "OK".to_string(),
                    Ok(Accepted::Aliased(list)) => format!("OK {}", list.join(" ")),
                    Err(r) => r.to_string(),
                }
            }
            ["trusted", c] => if p.trusted(Some(client(c, at))) {
                "yes"
            } else {
                "no"
            }
            .to_string(),
            _ => panic!("line {at}: bad event {line:?}"),
        };
        assert_eq!(got, want, "line {at}: {line}");
        events += 1;
    }
    assert!(events >= 30, "events run: {events}");
}
