//! A user's quota, as the users file's extra fields give it.
//!
//! Dovecot's form, so a Dovecot passwd-file carries over:
//! `userdb_quota_rule=*:storage=1G` and `userdb_quota_rule2=*:messages=1000`
//! (the `userdb_` prefix is optional; `quota_rule`, `quota_rule2`, ... each
//! hold one rule). Only the `*` (whole account) rules are used; a storage
//! limit takes the units B, k, M, G and T (powers of 1024, Dovecot's), a
//! missing unit meaning bytes; `storage=0`/`messages=0` mean no limit.
//!
//! Owns the parsing; mailstore owns the accounting (the Maildir++
//! `maildirsize` file) and local delivery the 4.2.2 reply.
//!
//! Diagnostics: a malformed rule is an error naming the rule, for the users
//! file reader to put a file and line in front.

/// Limits of one user; None is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Quota {
    /// Bytes of mail in all folders.
    pub storage: Option<u64>,
    /// Messages in all folders.
    pub messages: Option<u64>,
}

impl Quota {
    pub fn is_unlimited(&self) -> bool {
        self.storage.is_none() && self.messages.is_none()
    }

    /// Apply one extra field (`name=value`) if it is a quota rule; other
    /// fields are ignored. `Err` names what is wrong.
    pub fn apply_field(&mut self, field: &str) -> Result<(), String> {
        let Some((name, value)) = field.split_once('=') else {
            return Ok(());
        };
        let name = name.trim().to_ascii_lowercase();
        let name = name.strip_prefix("userdb_").unwrap_or(&name);
        let Some(n) = name.strip_prefix("quota_rule") else {
            return Ok(());
        };
        if !n.chars().all(|c| c.is_ascii_digit()) {
            return Ok(());
        }
        self.apply_rule(value.trim())
    }

    /// Apply one rule: `*:storage=1G`, `*:messages=100`, `*:ignore`, or
    /// both limits in one rule (`*:storage=1G:messages=100`).
    pub fn apply_rule(&mut self, rule: &str) -> Result<(), String> {
        let mut parts = rule.split(':');
        let mailbox = parts.next().unwrap_or("");
        if mailbox != "*" {
            // Per-folder rules (INBOX:storage=...) are Dovecot's; not kept.
            return Ok(());
        }
        for limit in parts {
            if limit.eq_ignore_ascii_case("ignore") || limit.eq_ignore_ascii_case("none") {
                continue;
            }
            let (key, v) = limit.split_once('=').ok_or_else(|| {
                format!("quota rule {rule:?}: expected storage=SIZE or messages=N")
            })?;
            match key.trim().to_ascii_lowercase().as_str() {
                "storage" | "bytes" => {
                    let n = parse_size(v.trim())
                        .ok_or_else(|| format!("quota rule {rule:?}: bad size {v:?}"))?;
                    self.storage = (n > 0).then_some(n);
                }
                "messages" => {
                    let n: u64 = v
                        .trim()
                        .parse()
                        .map_err(|_| format!("quota rule {rule:?}: bad count {v:?}"))?;
                    self.messages = (n > 0).then_some(n);
                }
                other => {
                    return Err(format!("quota rule {rule:?}: unknown limit {other:?}"));
                }
            }
        }
        Ok(())
    }
}

/// `1024`, `10k`, `5M`, `1G`, `2T`, `100B` (Dovecot's units: powers of 1024).
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" | "b" => 1,
        "k" | "K" | "kB" | "KB" => 1 << 10,
        "M" | "MB" | "m" => 1 << 20,
        "G" | "GB" | "g" => 1 << 30,
        "T" | "TB" | "t" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_rules() {
        let mut q = Quota::default();
        q.apply_field("userdb_quota_rule=*:storage=1G").unwrap();
        q.apply_field("quota_rule2=*:messages=1000").unwrap();
        q.apply_field("userdb_mail=maildir:~/Maildir").unwrap();
        assert_eq!(
            q,
            Quota {
                storage: Some(1 << 30),
                messages: Some(1000)
            }
        );
        let mut q = Quota::default();
        q.apply_field("quota_rule=*:storage=10M:messages=5")
            .unwrap();
        assert_eq!((q.storage, q.messages), (Some(10 << 20), Some(5)));
        q.apply_field("quota_rule=*:storage=0").unwrap();
        assert_eq!(q.storage, None);
        q.apply_field("quota_rule=INBOX:storage=1k").unwrap();
        assert_eq!(q.storage, None, "per-folder rules are not kept");
        assert!(q.apply_field("quota_rule=*:storage=lots").is_err());
        assert!(q.apply_field("quota_rule=*:frobs=1").is_err());
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("2k"), Some(2048));
        assert_eq!(parse_size("99999999999999999999T"), None);
    }
}
