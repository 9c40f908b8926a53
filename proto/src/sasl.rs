//! SASL on the server side, protocol-neutral: the PLAIN and LOGIN exchanges
//! and the base64 they travel in.
//!
//! Owns the exchange from the mechanism name and optional initial response
//! to complete credentials (authorization id, user, password): which
//! challenge comes next, how each response decodes, and every way a
//! response can be malformed. It does not own the protocol framing (POP3
//! and IMAP send a challenge as `+ text`, SMTP as `334 text`; each protocol
//! reads its response lines), which mechanisms a connection may use, nor
//! checking the password (the auth service does).
//!
//! Standards: RFC 4422 3 (exchanges, initial responses, 3.5 aborting),
//! RFC 4616 2 (PLAIN: `[authzid] NUL authcid NUL passwd`, UTF-8, each field
//! up to 255 octets accepted), draft-murchison-sasl-login (LOGIN: the
//! "Username:" and "Password:" challenges), RFC 4648 4 (base64 with
//! canonical padding), RFC 5034 4 / RFC 4954 4 / RFC 9051 6.2.2 (`=` as
//! an empty initial response, `*` to cancel).
//!
//! Security: responses are untrusted. Base64 is decoded strictly (no
//! whitespace, canonical padding); a response longer than MAX_RESPONSE or a
//! field longer than MAX_FIELD is refused before it is kept; fields must be
//! UTF-8 without NUL; user and password must not be empty. `Debug` on
//! credentials hides the password.
//!
//! Diagnostics: nothing is logged; every failure is one `SaslError`.

use std::fmt;

use base64::Engine as _;

/// The longest response accepted, in base64 characters (RFC 4954 4 asks
/// SMTP servers to take 12288 octets per line; POP3 and IMAP lines are
/// bounded tighter by their line buffers).
pub const MAX_RESPONSE: usize = 12288;

/// The longest authorization id, user name or password accepted, in octets
/// (RFC 4616 2 requires at least 255).
pub const MAX_FIELD: usize = 1024;

/// The LOGIN mechanism's first challenge, "Username:".
const LOGIN_USER: &[u8] = b"Username:";
/// The LOGIN mechanism's second challenge, "Password:".
const LOGIN_PASSWORD: &[u8] = b"Password:";

/// Why an exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// RFC 4422 3.5: the client sent `*`.
    #[error("authentication aborted by the client")]
    Cancelled,
    /// The mechanism is not one of PLAIN and LOGIN.
    #[error("unsupported authentication mechanism")]
    UnsupportedMechanism,
    /// RFC 4648 4: not base64, or padding not canonical.
    #[error("invalid base64 in response")]
    BadBase64,
    /// A response or a field longer than this module accepts.
    #[error("response too long")]
    TooLong,
    /// RFC 4616 2: a PLAIN message without its two NUL separators.
    #[error("PLAIN response without two NUL separators")]
    MissingNul,
    /// A NUL inside a field (a PLAIN password, a LOGIN user name or password).
    #[error("NUL inside a field")]
    NulInField,
    /// RFC 4616 2: the fields are UTF-8.
    #[error("field is not UTF-8")]
    NotUtf8,
    /// The user name (authcid) is empty.
    #[error("empty user name")]
    EmptyUser,
    /// RFC 4616 2: `passwd = 1*SAFE`.
    #[error("empty password")]
    EmptyPassword,
    /// `step` after the exchange ended.
    #[error("exchange already complete")]
    Finished,
}

/// The mechanisms this module speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// draft-murchison-sasl-login.
    Login,
}

impl Mechanism {
    /// The mechanism named `name` (case-insensitive, RFC 4422 3.1).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case("PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case("LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }

    /// The registered name.
    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

/// What an exchange produced: the password and who it is for.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    /// RFC 4616 2: the identity to act as; empty for the user itself.
    pub authzid: String,
    /// The user name (authentication identity), never empty.
    pub user: String,
    /// The password, never empty.
    pub password: String,
}

/// Never shows the password.
impl fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("authzid", &self.authzid)
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// The next thing to do after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Send this challenge (already base64; empty for an empty challenge)
    /// and pass the client's next response line to `step`.
    Challenge(String),
    /// The credentials are complete.
    Done(SaslCredentials),
}

#[derive(Debug, Clone)]
enum State {
    /// PLAIN without an initial response: waiting for the message.
    PlainMessage,
    /// LOGIN: waiting for the user name.
    LoginUser,
    /// LOGIN: waiting for the password of `user`.
    LoginPassword {
        user: String,
    },
    Done,
}

/// One server-side exchange.
#[derive(Debug, Clone)]
pub struct Exchange {
    mechanism: Mechanism,
    state: State,
}

impl Exchange {
    /// Begin an exchange. `initial` is the initial response as sent (base64,
    /// `=` for an empty one, RFC 4422 3 / RFC 5034 4), None when the client
    /// sent none. LOGIN takes an initial response as the user name, as
    /// common clients send it so.
    pub fn start(
        mechanism: Mechanism,
        initial: Option<&[u8]>,
    ) -> Result<(Exchange, Progress), SaslError> {
        let mut ex = Exchange {
            mechanism,
            state: match mechanism {
                Mechanism::Plain => State::PlainMessage,
                Mechanism::Login => State::LoginUser,
            },
        };
        let progress = match initial {
            None => match mechanism {
                // RFC 4616 2: the client sends first; an empty challenge.
                Mechanism::Plain => Progress::Challenge(String::new()),
                Mechanism::Login => Progress::Challenge(encode_base64(LOGIN_USER)),
            },
            Some(b"=") => ex.take(Vec::new())?,
            Some(text) => ex.take(decode_base64(text)?)?,
        };
        Ok((ex, progress))
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The client's response line (without its CRLF): base64, or `*` to
    /// cancel (RFC 4422 3.5). An empty line is an empty response.
    pub fn step(&mut self, response: &[u8]) -> Result<Progress, SaslError> {
        if matches!(self.state, State::Done) {
            return Err(SaslError::Finished);
        }
        if response == b"*" {
            self.state = State::Done;
            return Err(SaslError::Cancelled);
        }
        let data = decode_base64(response).inspect_err(|_| self.state = State::Done)?;
        self.take(data)
    }

    /// Use one decoded response; any error ends the exchange.
    fn take(&mut self, data: Vec<u8>) -> Result<Progress, SaslError> {
        let state = std::mem::replace(&mut self.state, State::Done);
        match state {
            State::PlainMessage => decode_plain(&data).map(Progress::Done),
            State::LoginUser => {
                let user = field(&data)?;
                if user.is_empty() {
                    return Err(SaslError::EmptyUser);
                }
                self.state = State::LoginPassword { user };
                Ok(Progress::Challenge(encode_base64(LOGIN_PASSWORD)))
            }
            State::LoginPassword { user } => {
                let password = field(&data)?;
                if password.is_empty() {
                    return Err(SaslError::EmptyPassword);
                }
                Ok(Progress::Done(SaslCredentials {
                    authzid: String::new(),
                    user,
                    password,
                }))
            }
            State::Done => Err(SaslError::Finished),
        }
    }
}

/// RFC 4616 2: `message = [authzid] UTF8NUL authcid UTF8NUL passwd`.
pub fn decode_plain(message: &[u8]) -> Result<SaslCredentials, SaslError> {
    let mut parts = message.splitn(3, |&b| b == 0);
    let (Some(authzid), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::MissingNul);
    };
    // passwd = 1*SAFE: a third NUL is inside the password.
    let password = field(password)?;
    let (authzid, user) = (field(authzid)?, field(user)?);
    if user.is_empty() {
        return Err(SaslError::EmptyUser);
    }
    if password.is_empty() {
        return Err(SaslError::EmptyPassword);
    }
    Ok(SaslCredentials {
        authzid,
        user,
        password,
    })
}

/// One field: bounded, UTF-8, no NUL.
fn field(bytes: &[u8]) -> Result<String, SaslError> {
    if bytes.len() > MAX_FIELD {
        return Err(SaslError::TooLong);
    }
    if bytes.contains(&0) {
        return Err(SaslError::NulInField);
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| SaslError::NotUtf8)
}

/// RFC 4648 4 base64 with canonical padding; nothing else (no whitespace).
/// An empty text is empty data. Longer than MAX_RESPONSE is `TooLong`.
pub fn decode_base64(text: &[u8]) -> Result<Vec<u8>, SaslError> {
    if text.len() > MAX_RESPONSE {
        return Err(SaslError::TooLong);
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| SaslError::BadBase64)
}

/// RFC 4648 4 base64 with padding.
pub fn encode_base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(authzid: &str, user: &str, password: &str) -> SaslCredentials {
        SaslCredentials {
            authzid: authzid.into(),
            user: user.into(),
            password: password.into(),
        }
    }

    #[test]
    fn plain_table() {
        let table: &[(&[u8], Result<SaslCredentials, SaslError>)] = &[
            (b"\0bob\0secret", Ok(creds("", "bob", "secret"))),
            (b"admin\0bob\0secret", Ok(creds("admin", "bob", "secret"))),
            (b"\0bob\0two words", Ok(creds("", "bob", "two words"))),
            (
                "\0j\u{f6}rg\0p\u{e4}ss".as_bytes(),
                Ok(creds("", "j\u{f6}rg", "p\u{e4}ss")),
            ),
            (b"", Err(SaslError::MissingNul)),
            (b"bob", Err(SaslError::MissingNul)),
            (b"\0bob", Err(SaslError::MissingNul)),
            (b"bob\0secret", Err(SaslError::MissingNul)),
            (b"\0bob\0se\0cret", Err(SaslError::NulInField)),
            (b"\0bob\0secret\0", Err(SaslError::NulInField)),
            (b"\0\0secret", Err(SaslError::EmptyUser)),
            (b"\0bob\0", Err(SaslError::EmptyPassword)),
            (b"\0\0", Err(SaslError::EmptyUser)),
            (b"\0b\xffb\0secret", Err(SaslError::NotUtf8)),
            (b"\0bob\0\xc3", Err(SaslError::NotUtf8)),
            (b"\xff\0bob\0secret", Err(SaslError::NotUtf8)),
        ];
        for (msg, want) in table {
            assert_eq!(&decode_plain(msg), want, "{msg:?}");
        }
        let long = [b"\0bob\0".as_slice(), &[b'p'; MAX_FIELD + 1]].concat();
        assert_eq!(decode_plain(&long), Err(SaslError::TooLong));
        let fits = [b"\0bob\0".as_slice(), &[b'p'; MAX_FIELD]].concat();
        assert!(decode_plain(&fits).is_ok());
    }

    #[test]
    fn base64_is_strict() {
        type Case<'a> = (&'a [u8], Result<&'a [u8], SaslError>);
        let table: &[Case<'_>] = &[
            (b"", Ok(b"")),
            (b"AGJvYgBzZWNyZXQ=", Ok(b"\0bob\0secret")),
            (b"Ym9i", Ok(b"bob")),
            (b"Ym9", Err(SaslError::BadBase64)),
            (b"Ym9=", Err(SaslError::BadBase64)), // non-canonical trailing bits
            (b"Ym8", Err(SaslError::BadBase64)),  // padding required
            (b"Ym8=", Ok(b"bo")),
            (b"Ym8==", Err(SaslError::BadBase64)),
            (b"=", Err(SaslError::BadBase64)),
            (b"Ym9i ", Err(SaslError::BadBase64)),
            (b" Ym9i", Err(SaslError::BadBase64)),
            (b"Ym\r9i", Err(SaslError::BadBase64)),
            (b"Ym9i*", Err(SaslError::BadBase64)),
            (b"Ym-_", Err(SaslError::BadBase64)), // URL-safe alphabet
        ];
        for (text, want) in table {
            assert_eq!(
                decode_base64(text).as_deref().map_err(|e| *e),
                *want,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
        let long = vec![b'A'; MAX_RESPONSE + 4];
        assert_eq!(decode_base64(&long), Err(SaslError::TooLong));
        assert_eq!(encode_base64(b"Username:"), "VXNlcm5hbWU6");
        assert_eq!(encode_base64(b"Password:"), "UGFzc3dvcmQ6");
    }

    #[test]
    fn plain_exchanges() {
        // With an initial response.
        let (_, p) = Exchange::start(Mechanism::Plain, Some(b"AGJvYgBzZWNyZXQ=")).expect("ok");
        assert_eq!(p, Progress::Done(creds("", "bob", "secret")));
        // Without: an empty challenge, then the message.
        let (mut ex, p) = Exchange::start(Mechanism::Plain, None).expect("ok");
        assert_eq!(p, Progress::Challenge(String::new()));
        assert_eq!(
            ex.step(b"AGJvYgBzZWNyZXQ="),
            Ok(Progress::Done(creds("", "bob", "secret")))
        );
        assert_eq!(ex.step(b"AGJvYgBzZWNyZXQ="), Err(SaslError::Finished));
        // "=" is an empty initial response: a PLAIN message cannot be empty.
        assert_eq!(
            Exchange::start(Mechanism::Plain, Some(b"=")).map(|r| r.1),
            Err(SaslError::MissingNul)
        );
        assert_eq!(
            Exchange::start(Mechanism::Plain, Some(b"!!")).map(|r| r.1),
            Err(SaslError::BadBase64)
        );
        // An initial response cannot cancel: "*" is bad base64 there.
        assert_eq!(
            Exchange::start(Mechanism::Plain, Some(b"*")).map(|r| r.1),
            Err(SaslError::BadBase64)
        );
        // Cancel, and errors, end the exchange.
        let (mut ex, _) = Exchange::start(Mechanism::Plain, None).expect("ok");
        assert_eq!(ex.step(b"*"), Err(SaslError::Cancelled));
        assert_eq!(ex.step(b"AGJvYgBzZWNyZXQ="), Err(SaslError::Finished));
        let (mut ex, _) = Exchange::start(Mechanism::Plain, None).expect("ok");
        assert_eq!(ex.step(b"x"), Err(SaslError::BadBase64));
        assert_eq!(ex.step(b"AGJvYgBzZWNyZXQ="), Err(SaslError::Finished));
        // An empty response line is an empty message.
        let (mut ex, _) = Exchange::start(Mechanism::Plain, None).expect("ok");
        assert_eq!(ex.step(b""), Err(SaslError::MissingNul));
    }

    #[test]
    fn login_exchanges() {
        let (mut ex, p) = Exchange::start(Mechanism::Login, None).expect("ok");
        assert_eq!(ex.mechanism(), Mechanism::Login);
        assert_eq!(p, Progress::Challenge("VXNlcm5hbWU6".into()));
        assert_eq!(
            ex.step(b"Ym9i"),
            Ok(Progress::Challenge("UGFzc3dvcmQ6".into()))
        );
        assert_eq!(
            ex.step(b"c2VjcmV0"),
            Ok(Progress::Done(creds("", "bob", "secret")))
        );
        // The user name as initial response.
        let (mut ex, p) = Exchange::start(Mechanism::Login, Some(b"Ym9i")).expect("ok");
        assert_eq!(p, Progress::Challenge("UGFzc3dvcmQ6".into()));
        assert_eq!(
            ex.step(b"c2VjcmV0"),
            Ok(Progress::Done(creds("", "bob", "secret")))
        );
        let table: &[(&[u8], &[u8], SaslError)] = &[
            (b"", b"c2VjcmV0", SaslError::EmptyUser),
            (b"Ym9i", b"", SaslError::EmptyPassword),
            (b"Ym9iAA==", b"c2VjcmV0", SaslError::NulInField), // "bob\0"
            (b"Ym9i", b"c2UAY3JldA==", SaslError::NulInField), // "se\0cret"
            (b"/w==", b"c2VjcmV0", SaslError::NotUtf8),
            (b"Ym9i", b"*", SaslError::Cancelled),
            (b"*", b"", SaslError::Cancelled),
            (b"Ym9i", b"c2VjcmV0=", SaslError::BadBase64),
        ];
        for (user, pass, want) in table {
            let (mut ex, _) = Exchange::start(Mechanism::Login, None).expect("ok");
            let got = ex.step(user).and_then(|_| ex.step(pass));
            assert_eq!(got, Err(*want), "{user:?} {pass:?}");
        }
        assert_eq!(
            Exchange::start(Mechanism::Login, Some(b"=")).map(|r| r.1),
            Err(SaslError::EmptyUser)
        );
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(Mechanism::from_name("plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::from_name("LOGIN"), Some(Mechanism::Login));
        assert_eq!(Mechanism::from_name("CRAM-MD5"), None);
        assert_eq!(Mechanism::from_name(""), None);
        assert_eq!(Mechanism::Plain.name(), "PLAIN");
    }

    #[test]
    fn debug_hides_password() {
        let shown = format!("{:?}", creds("", "bob", "hunter2"));
        assert!(
            shown.contains("bob") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    /// No response may panic, whatever the state.
    #[test]
    fn never_panics() {
        let responses: &[&[u8]] = &[
            b"",
            b"*",
            b"=",
            b"==",
            b"AA==",
            b"AAA=",
            b"AAAA",
            b"AGJvYgBzZWNyZXQ=",
            b"\xff",
            b"Ym9i\0",
            b"////",
            b"AA=A",
        ];
        for mech in [Mechanism::Plain, Mechanism::Login] {
            for first in responses {
                let _ = Exchange::start(mech, Some(first));
                for second in responses {
                    for third in responses {
                        let Ok((mut ex, _)) = Exchange::start(mech, None) else {
                            continue;
                        };
                        let _ = ex.step(first);
                        let _ = ex.step(second);
                        let _ = ex.step(third);
                    }
                }
            }
        }
    }
}
