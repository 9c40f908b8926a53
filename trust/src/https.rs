//! A minimal HTTPS GET for MTA-STS policies (RFC 8461 3.3): one request
//! over rustls (the caller's client configuration: webpki validation
//! against smtp_tls_CAfile), one bounded response.
//!
//! Why not an HTTP client crate: the policy fetch needs one GET, no
//! redirects (RFC 8461 3.3 forbids following them), no cookies, no
//! proxies, a small size bound and time-outs; the well-kept clients (ureq,
//! reqwest) bring an HTTP stack many times this file, and ureq's rustls
//! feature brings ring beside the aws-lc-rs provider the workspace already
//! uses. So this is HTTP/1.1 with `Connection: close`, and a response read
//! with Content-Length, chunked transfer coding, or to the end of the
//! connection.
//!
//! Security: the response head is bounded (`HEAD_LIMIT`), the body by the
//! caller's limit (a larger body is an error, not truncated); every read
//! and the connect have the caller's time-out; nothing in the response
//! can make it allocate past those bounds or loop.
//!
//! Diagnostics: `FetchError`, one variant per failure; a certificate that
//! does not validate is `Certificate` (TLS-RPT's sts-webpki-invalid).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// The longest response head (status line and header fields).
pub const HEAD_LIMIT: usize = 16 * 1024;

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The Content-Type field, if any.
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Why a GET gave no response.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("connect to {0}: {1}")]
    Connect(SocketAddr, io::Error),
    #[error("{0:?} is not a host name")]
    BadName(String),
    #[error("the certificate of {0} is not valid: {1}")]
    Certificate(String, rustls::Error),
    #[error("TLS with {0}: {1}")]
    Tls(String, io::Error),
    #[error("bad HTTP response from {0}: {1}")]
    Http(String, &'static str),
    #[error("the response of {0} is larger than {1} bytes")]
    TooLarge(String, usize),
}

/// `GET https://HOST:PORT/PATH` from the first of `addrs` that takes a
/// connection; `limit`: the largest body taken.
pub fn get(
    addrs: &[SocketAddr],
    host: &str,
    path: &str,
    tls: Arc<ClientConfig>,
    timeout: Duration,
    limit: usize,
) -> Result<Response, FetchError> {
    let name =
        ServerName::try_from(host.to_string()).map_err(|_| FetchError::BadName(host.into()))?;
    let mut last = None;
    let mut tcp = None;
    for a in addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(t) => {
                tcp = Some(t);
                break;
            }
            Err(e) => last = Some(FetchError::Connect(*a, e)),
        }
    }
    let Some(tcp) = tcp else {
        return Err(last.unwrap_or_else(|| {
            FetchError::Connect(
                SocketAddr::from(([0, 0, 0, 0], 0)),
                io::Error::new(io::ErrorKind::NotFound, format!("no address for {host}")),
            )
        }));
    };
    let tls_err = |e: io::Error| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(r @ rustls::Error::InvalidCertificate(_)) => {
            FetchError::Certificate(host.into(), r.clone())
        }
        _ => FetchError::Tls(host.into(), e),
    };
    tcp.set_read_timeout(Some(timeout))
        .and_then(|()| tcp.set_write_timeout(Some(timeout)))
        .map_err(tls_err)?;
    let conn = ClientConnection::new(tls, name)
        .map_err(|e| FetchError::Tls(host.into(), io::Error::other(e)))?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).map_err(tls_err)?;
    }
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: posthorn\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes())
        .and_then(|()| s.flush())
        .map_err(tls_err)?;
    read_response(&mut s, host, limit)
}

/// Read until the end of the connection, at most `limit` bytes more than
/// `have` (None: past it). A connection closed without TLS close_notify
/// counts as the end (many servers do that).
fn read_to_end(r: &mut impl Read, buf: &mut Vec<u8>, limit: usize) -> io::Result<bool> {
    let mut chunk = [0u8; 4096];
    loop {
        match r.read(&mut chunk) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > limit {
                    return Ok(false);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(true),
            Err(e) => return Err(e),
        }
    }
}

/// The response on `r`.
pub fn read_response(r: &mut impl Read, host: &str, limit: usize) -> Result<Response, FetchError> {
    let bad = |why| FetchError::Http(host.into(), why);
    // Everything there is, up to head + body limits (Connection: close).
    let mut all = Vec::new();
    let whole = read_to_end(r, &mut all, HEAD_LIMIT + limit + 64 * 1024)
        .map_err(|e| FetchError::Tls(host.into(), e))?;
    let Some(end) = find(&all, b"\r\n\r\n").filter(|&e| e <= HEAD_LIMIT) else {
        return Err(if all.len() > HEAD_LIMIT {
            bad("response head too long")
        } else {
            bad("response head incomplete")
        });
    };
    let head = std::str::from_utf8(&all[..end]).map_err(|_| bad("response head not text"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut words = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (words.next(), words.next()) else {
        return Err(bad("no status line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad("not HTTP/1.x"));
    }
    let status = match code.parse::<u16>() {
        Ok(c) if (100..600).contains(&c) && code.len() == 3 => c,
        _ => return Err(bad("bad status code")),
    };
    let mut content_type = None;
    let mut length = None;
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            return Err(bad("bad header field"));
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-type") {
            content_type = Some(v.to_string());
        } else if k.eq_ignore_ascii_case("content-length") {
            length = Some(v.parse::<usize>().map_err(|_| bad("bad Content-Length"))?);
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            if !chunked {
                return Err(bad("unknown transfer coding"));
            }
        }
    }
    let rest = &all[end + 4..];
    let body = if chunked {
        dechunk(rest, limit).map_err(|why| match why {
            Dechunk::TooLarge => FetchError::TooLarge(host.into(), limit),
            Dechunk::Bad(w) => bad(w),
        })?
    } else if let Some(n) = length {
        if n > limit {
            return Err(FetchError::TooLarge(host.into(), limit));
        }
        if rest.len() < n {
            return Err(bad("body shorter than Content-Length"));
        }
        rest[..n].to_vec()
    } else {
        if rest.len() > limit || !whole {
            return Err(FetchError::TooLarge(host.into(), limit));
        }
        rest.to_vec()
    };
    Ok(Response {
        status,
        content_type,
        body,
    })
}

enum Dechunk {
    TooLarge,
    Bad(&'static str),
}

/// RFC 9112 7.1: chunk-size [ext] CRLF data CRLF ... 0 CRLF [trailers] CRLF.
fn dechunk(mut b: &[u8], limit: usize) -> Result<Vec<u8>, Dechunk> {
    let mut out = Vec::new();
    loop {
        let eol = find(b, b"\r\n").ok_or(Dechunk::Bad("chunk size line incomplete"))?;
        let line = std::str::from_utf8(&b[..eol]).map_err(|_| Dechunk::Bad("bad chunk size"))?;
        let size = line.split(';').next().unwrap_or("").trim();
        if size.is_empty() || size.len() > 8 {
            return Err(Dechunk::Bad("bad chunk size"));
        }
        let n = usize::from_str_radix(size, 16).map_err(|_| Dechunk::Bad("bad chunk size"))?;
        b = &b[eol + 2..];
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > limit {
            return Err(Dechunk::TooLarge);
        }
        if b.len() < n + 2 || &b[n..n + 2] != b"\r\n" {
            return Err(Dechunk::Bad("chunk incomplete"));
        }
        out.extend_from_slice(&b[..n]);
        b = &b[n + 2..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> Result<Response, FetchError> {
        read_response(&mut &b[..], "h", 100)
    }

    #[test]
    fn responses() {
        let r = parse(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloXX",
        )
        .unwrap();
        assert_eq!(
            (r.status, r.content_type.as_deref(), &r.body[..]),
            (200, Some("text/plain"), &b"hello"[..])
        );
        let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.body, b"abcde");
        let r = parse(b"HTTP/1.0 404 Not Found\r\n\r\ngone").unwrap();
        assert_eq!((r.status, &r.body[..]), (404, &b"gone"[..]));
    }

    #[test]
    fn bad_responses_are_errors_not_panics() {
        for b in [
            &b""[..],
            b"HTTP/1.1 200 OK\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n",
        ] {
            assert!(parse(b).is_err(), "{:?}", String::from_utf8_lossy(b));
        }
        let big = [b"HTTP/1.1 200 OK\r\n\r\n".as_slice(), &[b'x'; 101]].concat();
        assert!(matches!(parse(&big), Err(FetchError::TooLarge(..))));
        let big = b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n";
        assert!(matches!(parse(big), Err(FetchError::TooLarge(..))));
        let big = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n";
        assert!(matches!(parse(big), Err(FetchError::TooLarge(..))));
        let long_head = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; HEAD_LIMIT]].concat();
        assert!(parse(&long_head).is_err());
    }
}
