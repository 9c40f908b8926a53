//! The resolver behind SPF, DKIM, DMARC and MTA-STS look-ups: common::dns's
//! (hickory 0.26, the version mail-auth is built on, so both are one), with
//! the name servers of `dns_servers`, or /etc/resolv.conf's when that is
//! empty, and the same time-out and attempts as the rest of posthorn.

use mail_auth::MessageAuthenticator;

pub use common::dns::{resolver, servers as config, DnsError};

/// mail-auth's verifier on common::dns's resolver for `servers`.
pub fn authenticator(servers: &[String]) -> Result<MessageAuthenticator, DnsError> {
    Ok(MessageAuthenticator(resolver(servers)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authenticator_uses_the_servers_given() {
        assert!(authenticator(&["127.0.0.1:5353".into()]).is_ok());
        assert!(matches!(
            authenticator(&["example.org".into()]),
            Err(DnsError::BadServer(_))
        ));
    }
}
