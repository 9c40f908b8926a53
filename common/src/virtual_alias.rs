//! Virtual alias expansion: Postfix's virtual_alias_maps and
//! virtual_alias_domains (virtual(5)).
//!
//! Owns rewriting one envelope recipient into the recipients it stands
//! for, as Postfix's cleanup does before a message is queued: the lookups
//! in Postfix's order, `@domain` catch-alls, `@domain` -> `@otherdomain`
//! domain aliases, recipient_delimiter extensions, recursion with its
//! bounds, and which domains are virtual alias domains (domains with no
//! mailboxes, where an address without an entry does not exist). Does not
//! own reading the tables (table.rs: text files, reloaded when they
//! change), the SMTP replies (smtpd's policy), or delivery. Independent of
//! any daemon: smtpd calls it at RCPT, local submission may call it too.
//!
//! Lookups for `user+ext@domain`, in order, first table to answer wins:
//! `user+ext@domain`, `user@domain`, then, only when the domain is
//! $myorigin or one of $mydestination, `user+ext` and `user`, then
//! `@domain`. A value is a list of addresses (commas or white space); a
//! value `@other` keeps the local part and replaces the domain; a value
//! without `@` gets `@$myorigin`. When the key that matched had no
//! extension and propagate_unmatched_extensions names `virtual`, the
//! extension goes on to the results (`bob@x` -> `bob+ext@x`). Each result
//! is expanded again, up to virtual_alias_recursion_limit deep; an address
//! that maps to itself is kept and expanded no further; the whole
//! expansion holds at most virtual_alias_expansion_limit addresses;
//! duplicates (domain and local part compared without case) are dropped.
//!
//! virtual_alias_domains: domain names, and tables (texthash:/path,
//! hash:/path, a path) in which a domain is looked up as a key. Postfix's
//! default `$virtual_alias_maps` so makes a domain a virtual alias domain
//! when the alias table has a line for the domain itself
//! (`example.com  anything`).
//!
//! Security: addresses and table text are untrusted (the table is the
//! administrator's, but a bad line must not stop mail): everything is
//! bounded by the two limits above, a loop (`a -> b -> a`) ends in an error
//! rather than a hang, and nothing panics (fuzzed: fuzz target
//! `virtual_alias`).
//!
//! Diagnostics: `warning: FILE, line N: ...` for bad table lines (table.rs);
//! the errors say what went wrong in Postfix's words (`unreasonable
//! virtual_alias_maps map expansion size for <a>`, `... map nesting for
//! <a>`), for the caller to log.

use crate::addr;
use crate::config::Config;
use crate::table::Tables;

/// What a recipient stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    /// The final recipients, in order, each once. One address, the one
    /// asked for, when no entry matched.
    pub recipients: Vec<String>,
    /// Some entry matched (the address is listed in virtual_alias_maps,
    /// even when it maps to itself).
    pub rewritten: bool,
}

/// Why a recipient cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VirtualError {
    /// A virtual alias domain with no entry for the address.
    #[error("<{0}>: User unknown in virtual alias table")]
    Unknown(String),
    /// A table cannot be read now (temporary).
    #[error("virtual_alias_maps: table {0} cannot be read")]
    Table(String),
    /// More than virtual_alias_expansion_limit addresses (temporary, as in
    /// Postfix: the administrator fixes the table).
    #[error("unreasonable virtual_alias_maps map expansion size for <{0}>")]
    TooMany(String),
    /// Deeper than virtual_alias_recursion_limit, or a loop (temporary).
    #[error("unreasonable virtual_alias_maps map nesting for <{0}>")]
    TooDeep(String),
}

impl VirtualError {
    /// Temporary: the same address may expand later (4xx), else 5xx.
    pub fn is_temporary(&self) -> bool {
        !matches!(self, VirtualError::Unknown(_))
    }
}

/// virtual_alias_maps and virtual_alias_domains, read from the
/// configuration (tables reloaded when their files change).
#[derive(Debug)]
pub struct VirtualAlias {
    maps: Tables<Vec<String>>,
    domain_names: Vec<String>,
    domain_tables: Tables<()>,
    /// $myorigin and $mydestination: where bare `user` keys apply.
    local_domains: Vec<String>,
    myorigin: String,
    delimiter: String,
    propagate: bool,
    recursion_limit: usize,
    expansion_limit: usize,
}

/// The settings of a `VirtualAlias` besides its tables.
#[derive(Debug, Clone)]
pub struct Settings {
    /// virtual_alias_maps (table specs).
    pub maps: String,
    /// virtual_alias_domains (domains and table specs).
    pub domains: String,
    pub myorigin: String,
    pub mydestination: Vec<String>,
    pub recipient_delimiter: String,
    /// propagate_unmatched_extensions names `virtual`.
    pub propagate: bool,
    pub recursion_limit: usize,
    pub expansion_limit: usize,
}

impl Settings {
    /// From main.cf (the defaults in common::params).
    pub fn from_config(cfg: &Config) -> Result<Settings, crate::config::ConfigError> {
        let limit = |name: &str| -> Result<usize, crate::config::ConfigError> {
            Ok(usize::try_from(cfg.int(name)?).unwrap_or(usize::MAX))
        };
        Ok(Settings {
            maps: cfg.get_checked("virtual_alias_maps")?,
            domains: cfg.get_checked("virtual_alias_domains")?,
            myorigin: cfg.get_checked("myorigin")?,
            mydestination: cfg.list("mydestination"),
            recipient_delimiter: cfg.get("recipient_delimiter"),
            propagate: cfg
                .list("propagate_unmatched_extensions")
                .iter()
                .any(|c| c.eq_ignore_ascii_case("virtual")),
            recursion_limit: limit("virtual_alias_recursion_limit")?,
            expansion_limit: limit("virtual_alias_expansion_limit")?,
        })
    }
}

/// A table value: the addresses it lists.
fn parse_value(v: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> = crate::config::split_list(v);
    if list.is_empty() {
        return Err("no address".into());
    }
    if let Some(bad) = list.iter().find(|a| !valid_value(a)) {
        return Err(format!("bad address {bad:?}"));
    }
    Ok(list)
}

/// A value address: `local@domain`, `local` (gets @$myorigin) or
/// `@domain`, the local part a dot-string (RFC 5321 4.1.2, leniently as
/// proto; quoted local parts are not supported here), the domain a domain
/// name or an address literal, at most 254 octets in all (RFC 5321
/// 4.5.3.1.3 less the brackets).
fn valid_value(a: &str) -> bool {
    use proto::smtp::{is_address_literal, is_domain};
    let (local, domain) = match a.rsplit_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (a, None),
    };
    let local_ok = local.chars().all(|c| {
        c == '.'
            || c.is_ascii_alphanumeric()
            || "!#$%&'*+-/=?^_`{|}~".contains(c)
            || (!c.is_ascii() && !c.is_control())
    });
    let domain_ok = domain.is_none_or(|d| is_domain(d) || is_address_literal(d));
    a.len() <= 254 && local_ok && domain_ok && (!local.is_empty() || domain.is_some())
}

/// A table spec in a domain list (as Postfix's match lists: `type:name`
/// or an absolute path).
fn is_table(item: &str) -> bool {
    item.starts_with('/') || item.contains(':')
}

impl VirtualAlias {
    /// From main.cf: reads the tables now.
    pub fn from_config(cfg: &Config) -> Result<VirtualAlias, crate::config::ConfigError> {
        Ok(VirtualAlias::new(Settings::from_config(cfg)?))
    }

    pub fn new(s: Settings) -> VirtualAlias {
        let items = crate::config::split_list(&s.domains);
        let (tables, names): (Vec<String>, Vec<String>) =
            items.into_iter().partition(|i| is_table(i));
        let mut local_domains = s.mydestination;
        local_domains.push(s.myorigin.clone());
        VirtualAlias {
            maps: Tables::new(&s.maps, parse_value),
            domain_names: names,
            domain_tables: Tables::new(&tables.join(" "), |_| Ok(())),
            local_domains,
            myorigin: s.myorigin,
            delimiter: s.recipient_delimiter,
            propagate: s.propagate,
            recursion_limit: s.recursion_limit.max(1),
            expansion_limit: s.expansion_limit.max(1),
        }
    }

    /// No virtual_alias_maps: every address stands for itself.
    pub fn is_empty(&self) -> bool {
        self.maps.is_empty() && self.domain_names.is_empty() && self.domain_tables.is_empty()
    }

    /// Is `domain` a virtual alias domain?
    pub fn is_alias_domain(&mut self, domain: &str) -> bool {
        self.domain_tables.refresh();
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        !d.is_empty()
            && (addr::domain_in(&d, &self.domain_names) || self.domain_tables.get(&d).is_some())
    }

    /// The recipients `rcpt` stands for. `Err(Unknown)` for an address in
    /// a virtual alias domain that no entry matches.
    pub fn expand(&mut self, rcpt: &str) -> Result<Expansion, VirtualError> {
        self.maps.refresh();
        if let Some(t) = self.maps.unreadable() {
            return Err(VirtualError::Table(t.display().to_string()));
        }
        // Depth first, each result in its table order; `depth` counts the
        // rewrites that led to an address. An address is looked up once
        // (so a loop ends and a shared member is expanded once).
        // A work item: address, depth, and whether it is final (it mapped
        // to itself).
        let mut work: Vec<(String, usize, bool)> = vec![(rcpt.to_string(), 0, false)];
        let mut seen: Vec<String> = Vec::new();
        let mut done: Vec<String> = Vec::new();
        let mut rewritten = false;
        let bound = self.expansion_limit.saturating_add(self.recursion_limit);
        while let Some((a, depth, fin)) = work.pop() {
            if fin {
                if !done.iter().any(|d| same(d, &a)) {
                    done.push(a);
                }
                continue;
            }
            if seen.iter().any(|s| same(s, &a)) {
                continue;
            }
            seen.push(a.clone());
            if seen.len() > bound {
                return Err(VirtualError::TooMany(rcpt.to_string()));
            }
            let Some(results) = self.lookup(&a) else {
                done.push(a);
                if done.len() > self.expansion_limit {
                    return Err(VirtualError::TooMany(rcpt.to_string()));
                }
                continue;
            };
            rewritten = true;
            if depth >= self.recursion_limit {
                return Err(VirtualError::TooDeep(rcpt.to_string()));
            }
            let mut next: Vec<(String, usize, bool)> = Vec::new();
            for r in results {
                if next.iter().any(|(n, _, _)| same(n, &r)) {
                    continue;
                }
                // An address that maps to itself is final.
                let fin = same(&r, &a);
                next.push((r, depth + 1, fin));
            }
            if work.len() + next.len() + done.len() > self.expansion_limit {
                return Err(VirtualError::TooMany(rcpt.to_string()));
            }
            // Reversed onto the stack, so taken off in the table's order.
            work.extend(next.into_iter().rev());
        }
        if rewritten && done.is_empty() {
            // Nothing but a loop (a -> b -> a).
            return Err(VirtualError::TooDeep(rcpt.to_string()));
        }
        if !rewritten {
            let (_, domain) = addr::split(rcpt);
            if self.is_alias_domain(domain) {
                return Err(VirtualError::Unknown(rcpt.to_string()));
            }
        }
        Ok(Expansion {
            recipients: done,
            rewritten,
        })
    }

    /// The addresses one lookup of `a` gives (None: no entry), with
    /// `@domain` values and unqualified values completed and an unmatched
    /// extension propagated.
    fn lookup(&self, a: &str) -> Option<Vec<String>> {
        let (local, domain) = addr::split(a);
        let local_lc = local.to_ascii_lowercase();
        let domain_lc = domain.trim_end_matches('.').to_ascii_lowercase();
        let base = addr::strip_extension(&local_lc, &self.delimiter);
        let ext = &local[base.len()..];
        let mut keys: Vec<(String, bool)> = Vec::new();
        let at = |l: &str| {
            if domain_lc.is_empty() {
                l.to_string()
            } else {
                format!("{l}@{domain_lc}")
            }
        };
        keys.push((at(&local_lc), false));
        if !ext.is_empty() {
            keys.push((at(base), true));
        }
        if !domain_lc.is_empty() && addr::domain_in(&domain_lc, &self.local_domains) {
            keys.push((local_lc.clone(), false));
            if !ext.is_empty() {
                keys.push((base.to_string(), true));
            }
        }
        if !domain_lc.is_empty() {
            keys.push((format!("@{domain_lc}"), !ext.is_empty()));
        }
        let (values, unmatched_ext) = keys
            .iter()
            .find_map(|(k, stripped)| self.maps.get(k).map(|v| (v, *stripped)))?;
        let out = values
            .iter()
            .map(|v| {
                if let Some(other) = v.strip_prefix('@') {
                    // A domain alias: the whole local part, extension and all.
                    format!("{local}@{other}")
                } else {
                    let v = if v.contains('@') {
                        v.clone()
                    } else {
                        format!("{v}@{}", self.myorigin)
                    };
                    if unmatched_ext && self.propagate {
                        let (l, d) = addr::split(&v);
                        format!("{l}{ext}@{d}")
                    } else {
                        v
                    }
                }
            })
            .collect();
        Some(out)
    }

    /// Envelope recipients after virtual aliasing, for mail that did not
    /// come through smtpd's RCPT (pickup's local submissions, copies that
    /// local delivery forwards): Postfix's cleanup does this for all mail.
    /// Each final address once (without regard to case) with `notify`, and
    /// the address it came from as its ORCPT when that differs (so a bounce
    /// names what the sender wrote). An address unknown in a virtual alias
    /// domain stays as it is: qmgr returns it ("User unknown in virtual
    /// alias table"). A temporary error (a table unreadable, a limit) is
    /// returned for the caller to try again later.
    pub fn rewrite_envelope(
        &mut self,
        rcpts: &[String],
        notify: Option<crate::dsn::Notify>,
    ) -> Result<Vec<(String, crate::dsn::RecipientDsn)>, VirtualError> {
        let mut out: Vec<(String, crate::dsn::RecipientDsn)> = Vec::new();
        for r in rcpts {
            let finals = match self.expand(r) {
                Ok(e) => e.recipients,
                Err(VirtualError::Unknown(_)) => vec![r.clone()],
                Err(e) => return Err(e),
            };
            for f in finals {
                if out.iter().any(|(a, _)| a.eq_ignore_ascii_case(&f)) {
                    continue;
                }
                let orcpt = (!f.eq_ignore_ascii_case(r) && r.is_ascii())
                    .then(|| crate::dsn::default_orcpt(r));
                out.push((f, crate::dsn::RecipientDsn { notify, orcpt }));
            }
        }
        Ok(out)
    }
}

/// The same recipient: local part without case too (lookups fold it).
fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn setup(name: &str, table: &str, domains: &str) -> (Dir, VirtualAlias) {
        let dir =
            std::env::temp_dir().join(format!("posthorn-virtual-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("virtual");
        std::fs::write(&path, table).unwrap();
        let maps = format!("texthash:{}", path.display());
        let v = VirtualAlias::new(Settings {
            domains: domains.replace("$virtual_alias_maps", &maps),
            maps,
            myorigin: "mail.example.test".into(),
            mydestination: vec!["mail.example.test".into(), "localhost".into()],
            recipient_delimiter: "+".into(),
            propagate: true,
            recursion_limit: 1000,
            expansion_limit: 1000,
        });
        (Dir(dir), v)
    }

    fn rcpts(v: &mut VirtualAlias, a: &str) -> Vec<String> {
        v.expand(a).unwrap().recipients
    }

    #[test]
    fn rewrite_envelope_for_local_submissions() {
        let (_d, mut v) = setup(
            "envelope",
            "team@alias.test  a@example.test, B@example.test\nb@example.test  b@example.test\n",
            "alias.test strict.test",
        );
        let notify = Some(crate::dsn::Notify::FAILURE);
        let got = v
            .rewrite_envelope(
                &[
                    "team@alias.test".to_string(),
                    "b@example.test".to_string(),
                    "who@strict.test".to_string(),
                    "x@elsewhere.test".to_string(),
                ],
                notify,
            )
            .unwrap();
        let addrs: Vec<&str> = got.iter().map(|(a, _)| a.as_str()).collect();
        // b@ once (the alias's B@ is looked up again, and b@ maps to
        // itself); the unknown one kept for qmgr to return; other
        // addresses untouched, without an ORCPT.
        assert_eq!(
            addrs,
            [
                "a@example.test",
                "b@example.test",
                "who@strict.test",
                "x@elsewhere.test"
            ]
        );
        assert_eq!(got[0].1.orcpt.as_deref(), Some("rfc822;team@alias.test"));
        assert_eq!(got[0].1.notify, notify);
        assert_eq!(got[2].1.orcpt, None);
        assert_eq!(got[3].1.orcpt, None);
    }

    #[test]
    fn entries_catch_all_and_domain_alias() {
        let (_d, mut v) = setup(
            "basic",
            "info@alias.test  bob@example.test, Carol@Example.Test\n\
             @alias.test  catchall@example.test\n\
             @old.test  @new.test\n\
             sales@old.test  boss@example.test\n\
             root  admin@example.test\n",
            "alias.test old.test",
        );
        assert_eq!(
            v.expand("Info@Alias.Test").unwrap(),
            Expansion {
                recipients: vec!["bob@example.test".into(), "Carol@Example.Test".into()],
                rewritten: true
            }
        );
        assert_eq!(
            rcpts(&mut v, "nobody@alias.test"),
            ["catchall@example.test"]
        );
        assert_eq!(rcpts(&mut v, "Joe@old.test"), ["Joe@new.test"]);
        assert_eq!(
            rcpts(&mut v, "sales@old.test"),
            ["boss@example.test"],
            "a user entry before the domain's"
        );
        // No entry, not an alias domain: itself, not rewritten.
        assert_eq!(
            v.expand("x@example.test").unwrap(),
            Expansion {
                recipients: vec!["x@example.test".into()],
                rewritten: false
            }
        );
        // Bare keys only for $myorigin and $mydestination.
        assert_eq!(rcpts(&mut v, "root@localhost"), ["admin@example.test"]);
        assert_eq!(rcpts(&mut v, "root@example.test"), ["root@example.test"]);
    }

    #[test]
    fn bad_values_are_skipped() {
        for good in [
            "a@b.test",
            "@b.test",
            "a",
            "a.b+c@[192.0.2.1]",
            "j\u{f6}rg@b.test",
        ] {
            assert!(valid_value(good), "{good}");
        }
        for bad in [
            "@",
            "a@",
            "a@@b.test",
            "@@b.test",
            "a b@c",
            "a<b@c",
            "\"q\"@b.test",
            "a@-b",
        ] {
            assert!(!valid_value(bad), "{bad}");
        }
        let (_d, mut v) = setup(
            "bad",
            "a@x.test  b@x.test, c@@x.test\nd@x.test e@x.test\n",
            "",
        );
        assert_eq!(
            rcpts(&mut v, "a@x.test"),
            ["a@x.test"],
            "the bad line is skipped"
        );
        assert_eq!(rcpts(&mut v, "d@x.test"), ["e@x.test"]);
    }

    #[test]
    fn unknown_in_an_alias_domain() {
        let (_d, mut v) = setup("unknown", "a@alias.test b@example.test\n", "alias.test");
        assert_eq!(
            v.expand("nobody@ALIAS.test."),
            Err(VirtualError::Unknown("nobody@ALIAS.test.".into()))
        );
        assert!(!VirtualError::Unknown(String::new()).is_temporary());
        assert_eq!(rcpts(&mut v, "a@alias.test"), ["b@example.test"]);
    }

    #[test]
    fn alias_domains_from_the_table_as_postfix_default() {
        let (_d, mut v) = setup(
            "default",
            "alias.test  anything\nx@alias.test y@example.test\n",
            "$virtual_alias_maps",
        );
        assert!(v.is_alias_domain("Alias.Test"));
        assert!(!v.is_alias_domain("example.test"));
        assert!(matches!(
            v.expand("z@alias.test"),
            Err(VirtualError::Unknown(_))
        ));
        assert_eq!(rcpts(&mut v, "x@alias.test"), ["y@example.test"]);
    }

    #[test]
    fn recursion_self_reference_and_duplicates() {
        let (_d, mut v) = setup(
            "recurse",
            "team@x.test  a@x.test, b@x.test, a@x.test\n\
             a@x.test  a@x.test, archive@x.test\n\
             b@x.test  c@x.test\n\
             c@x.test  archive@x.test, d@x.test\n\
             loop1@x.test loop2@x.test\n\
             loop2@x.test loop1@x.test\n",
            "",
        );
        assert_eq!(
            rcpts(&mut v, "team@x.test"),
            ["a@x.test", "archive@x.test", "d@x.test"]
        );
        assert_eq!(rcpts(&mut v, "a@x.test"), ["a@x.test", "archive@x.test"]);
        assert_eq!(
            v.expand("loop1@x.test"),
            Err(VirtualError::TooDeep("loop1@x.test".into()))
        );
    }

    #[test]
    fn limits() {
        let mut table = String::from("big@x.test");
        for i in 0..20 {
            table.push_str(&format!(" u{i}@x.test"));
        }
        table.push('\n');
        for i in 0..5 {
            table.push_str(&format!("d{i}@x.test d{}@x.test\n", i + 1));
        }
        let (_d, mut v) = setup("limits", &table, "");
        v.expansion_limit = 10;
        v.recursion_limit = 3;
        assert_eq!(
            v.expand("big@x.test"),
            Err(VirtualError::TooMany("big@x.test".into()))
        );
        assert!(VirtualError::TooMany(String::new()).is_temporary());
        assert_eq!(rcpts(&mut v, "d2@x.test"), ["d5@x.test"]);
        assert_eq!(
            v.expand("d0@x.test"),
            Err(VirtualError::TooDeep("d0@x.test".into()))
        );
    }

    #[test]
    fn extensions() {
        let (_d, mut v) = setup(
            "ext",
            "joe@x.test  joe@example.test\n\
             joe+list@x.test  lists@example.test\n\
             @c.test  one@example.test\n\
             @old.test  @new.test\n\
             plain  local\n",
            "",
        );
        assert_eq!(rcpts(&mut v, "joe+list@x.test"), ["lists@example.test"]);
        assert_eq!(
            rcpts(&mut v, "joe+misc@x.test"),
            ["joe+misc@example.test"],
            "propagated"
        );
        assert_eq!(rcpts(&mut v, "who+x@c.test"), ["one+x@example.test"]);
        assert_eq!(rcpts(&mut v, "who+x@old.test"), ["who+x@new.test"]);
        assert_eq!(
            rcpts(&mut v, "plain+y@localhost"),
            ["local+y@mail.example.test"],
            "unqualified: @$myorigin"
        );
        v.propagate = false;
        assert_eq!(rcpts(&mut v, "joe+misc@x.test"), ["joe@example.test"]);
    }

    #[test]
    fn table_errors_and_reload() {
        let (d, mut v) = setup("reload", "a@x.test b@x.test\n", "");
        assert_eq!(rcpts(&mut v, "a@x.test"), ["b@x.test"]);
        let path = d.0.join("virtual");
        std::fs::write(&path, "a@x.test c@x.test, d@x.test\n").unwrap();
        v.maps.refresh_now();
        assert_eq!(rcpts(&mut v, "a@x.test"), ["c@x.test", "d@x.test"]);
        std::fs::remove_file(&path).unwrap();
        v.maps.refresh_now();
        assert!(matches!(v.expand("a@x.test"), Err(VirtualError::Table(_))));
        // No tables at all: nothing to do.
        let mut none = VirtualAlias::new(Settings {
            maps: String::new(),
            domains: String::new(),
            myorigin: "m".into(),
            mydestination: vec![],
            recipient_delimiter: String::new(),
            propagate: true,
            recursion_limit: 1000,
            expansion_limit: 1000,
        });
        assert!(none.is_empty());
        assert_eq!(rcpts(&mut none, "a@x.test"), ["a@x.test"]);
    }
}
