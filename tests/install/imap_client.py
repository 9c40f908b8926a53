#!/usr/bin/env python3
"""tests/install/imap_client.py: the installation test's IMAP client.

Python's imaplib against the installed package, verifying the server's
certificate: CAFILE is the certificate itself (Debian's self-signed snakeoil)
and NAME the name it is made out to, while the connection goes to 127.0.0.1.

Usage: imap_client.py ACTION MODE PORT CAFILE NAME USER PASSWORD [ARGS]
  MODE     starttls: IMAP, CAPABILITY (STARTTLS must be offered), then
                     STARTTLS;
           ssl:      IMAPS, TLS from the first byte.
  ACTION   read FILE SENT [UID]: FILE is the delivered message (a copy of
           the file in Maildir/new/, which SELECT moves to cur/), SENT the
           message as it was sent over SMTP. Log in (LOGIN), SELECT INBOX,
           find the message by its Message-ID (UID SEARCH HEADER), FETCH
           (RFC822.SIZE FLAGS BODY.PEEK[]): BODY[] must be FILE's bytes
           with CRLF line ends exactly, and SENT's exactly once the trace
           headers local delivery and smtpd put on top (Return-Path,
           Delivered-To, Authentication-Results, Received) are taken off;
           RFC822.SIZE its length;
           \\Seen not set. Print "UID <uid> <uidvalidity>" (which must equal
           UID when given), LOGOUT; the message stays.
           delete FILE SENT UID: the same, then UID STORE +FLAGS.SILENT
           (\\Deleted) and UID EXPUNGE (UIDPLUS): the message must be
           reported expunged; LOGOUT.
           idle: log in, SELECT INBOX, print "READY <exists>", IDLE: print
           "IDLING" once the server says "+ idling", wait (up to 120 s) for
           "* N EXISTS" with N above the count, print "EXISTS <N>", DONE,
           LOGOUT; print "DONE".
           fail: LOGIN with PASSWORD (a wrong one) and print
           "REPLY <status> <text>" of the tagged reply; close without LOGOUT.
Exits non-zero with the reason on any failure.
"""
import imaplib
import re
import socket
import ssl
import sys
import time


class IMAP4SAt(imaplib.IMAP4_SSL):
    """IMAPS to 127.0.0.1, verifying the certificate for another name."""

    def __init__(self, port, name, context):
        self.tls_name = name
        super().__init__("127.0.0.1", port, ssl_context=context, timeout=30)

    def _create_socket(self, timeout):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=self.tls_name)


def connect(mode, port, cafile, name):
    ctx = ssl.create_default_context(cafile=cafile)
    if mode == "ssl":
        return IMAP4SAt(port, name, ctx)
    if mode != "starttls":
        raise SystemExit(f"unknown mode {mode}")
    p = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    if "STARTTLS" not in p.capabilities:
        raise SystemExit(f"CAPABILITY before TLS does not offer STARTTLS: {p.capabilities}")
    p.host = name  # imaplib verifies STARTTLS against self.host
    p.starttls(ssl_context=ctx)
    return p


def crlf(data):
    """The file's bytes with every bare LF as CRLF: what BODY[] sends."""
    out = bytearray()
    for i, b in enumerate(data):
        if b == 0x0A and (i == 0 or data[i - 1] != 0x0D):
            out.append(0x0D)
        out.append(b)
    return bytes(out)


TRACE = (b"return-path:", b"delivered-to:", b"authentication-results:", b"received:")


def without_trace(msg):
    """The message less the trace header fields at its top (with their
    continuation lines)."""
    lines = msg.split(b"\r\n")
    i = 0
    while i < len(lines) and lines[i].lower().startswith(TRACE):
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    return b"\r\n".join(lines[i:])


def ok(what, typ, dat):
    if typ != "OK":
        raise SystemExit(f"{what}: {typ} {dat!r}")
    return dat


def login(p, user, password):
    caps = p.capabilities
    for need in ("IMAP4REV1", "AUTH=PLAIN", "SASL-IR", "ID", "IDLE"):
        if need not in caps:
            raise SystemExit(f"CAPABILITY over TLS lacks {need}: {caps}")
    for never in ("STARTTLS", "LOGINDISABLED"):
        if never in caps:
            raise SystemExit(f"CAPABILITY over TLS still says {never}: {caps}")
    ok("LOGIN", *p.login(user, password))
    # After the login the list is longer (RFC 3501 6.2.3 allows it to change).
    typ, dat = p.capability()
    after = dat[0].decode().upper().split()
    for need in ("IDLE", "UIDPLUS", "MOVE", "NAMESPACE", "SPECIAL-USE", "CONDSTORE"):
        if need not in after:
            raise SystemExit(f"CAPABILITY after login lacks {need}: {after}")
    if not any(c.startswith("APPENDLIMIT=") for c in after):
        raise SystemExit(f"CAPABILITY after login lacks APPENDLIMIT: {after}")


def select_inbox(p):
    dat = ok("SELECT INBOX", *p.select("INBOX"))
    exists = int(dat[0])
    _, v = p.response("UIDVALIDITY")
    if not v or v[0] is None:
        raise SystemExit("SELECT INBOX sent no [UIDVALIDITY]")
    return exists, int(v[0])


def find(p, want, sent):
    """The UID of the message whose BODY[] is `want`, found by Message-ID."""
    m = re.search(rb"^Message-ID: *(<[^>\r\n]*>)", sent, re.M | re.I)
    if not m:
        raise SystemExit("the sent message has no Message-ID")
    dat = ok("UID SEARCH", *p.uid("SEARCH", "HEADER", "Message-ID", '"%s"' % m.group(1).decode()))
    uids = dat[0].split()
    if len(uids) != 1:
        raise SystemExit(f"UID SEARCH HEADER Message-ID {m.group(1)!r}: {uids}")
    uid = int(uids[0])
    dat = ok("UID FETCH", *p.uid("FETCH", str(uid), "(RFC822.SIZE FLAGS BODY.PEEK[])"))
    body, meta = None, b""
    for part in dat:
        if isinstance(part, tuple):
            meta += part[0]
            body = part[1]
        elif part:
            meta += part
    if body is None:
        raise SystemExit(f"UID FETCH {uid}: no BODY[] in {dat!r}")
    size = re.search(rb"RFC822\.SIZE (\d+)", meta)
    flags = re.search(rb"FLAGS \(([^)]*)\)", meta)
    if body != want:
        raise SystemExit(f"BODY[] of UID {uid} ({len(body)} octets) is not the Maildir file ({len(want)} octets)")
    if without_trace(body) != sent:
        raise SystemExit(f"BODY[] of UID {uid} less its trace headers is not the message sent:\n{without_trace(body)!r}\n{sent!r}")
    if not size or int(size.group(1)) != len(body):
        raise SystemExit(f"RFC822.SIZE {size and size.group(1)!r}, BODY[] has {len(body)} octets")
    if not flags or b"\\Seen" in flags.group(1):
        raise SystemExit(f"FLAGS {flags and flags.group(1)!r} after BODY.PEEK[]")
    return uid


def main():
    action, mode, port, cafile, name, user, password = sys.argv[1:8]
    args = sys.argv[8:]
    port = int(port)
    want = sent = None
    if action in ("read", "delete"):
        with open(args[0], "rb") as f:
            want = crlf(f.read())
        with open(args[1], "rb") as f:
            sent = f.read()
    p = connect(mode, port, cafile, name)
    print("TLS", p.sock.version(), p.sock.cipher()[0])
    if action == "fail":
        typ, dat = p._simple_command("LOGIN", user, p._quote(password))
        print("REPLY", typ, dat[-1].decode())
        # Close without LOGOUT, as a client that gives up does: the log
        # line is then "Disconnected (auth failed, ...)", not "Aborted login".
        p.shutdown()
        if typ == "OK":
            raise SystemExit("a wrong password was accepted")
        return
    login(p, user, password)
    exists, uidvalidity = select_inbox(p)
    if action in ("read", "delete"):
        uid = find(p, want, sent)
        print("UID", uid, uidvalidity)
        if len(args) > 2 and args[2] != f"{uid} {uidvalidity}":
            raise SystemExit(f"UID {uid} {uidvalidity}, before {args[2]}")
        if action == "delete":
            ok("UID STORE", *p.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)"))
            ok("UID EXPUNGE", *p.uid("EXPUNGE", str(uid)))
            # imaplib keeps the untagged "* N EXPUNGE" for response().
            _, gone = p.response("EXPUNGE")
            if not gone or gone[0] is None:
                raise SystemExit(f"UID EXPUNGE {uid}: no EXPUNGE response")
            print("EXPUNGED", uid)
        typ, dat = p.logout()
        if typ != "BYE":
            raise SystemExit(f"LOGOUT: {typ} {dat!r}")
    elif action == "idle":
        print("READY", exists, flush=True)
        tag = p._new_tag()
        p.send(tag + b" IDLE\r\n")
        line = p.readline()
        if not line.startswith(b"+"):
            raise SystemExit(f"IDLE: {line!r}")
        print("IDLING", flush=True)
        p.sock.settimeout(120)
        deadline = time.monotonic() + 120
        seen = None
        while seen is None and time.monotonic() < deadline:
            line = p.readline()
            if not line:
                raise SystemExit("the connection closed during IDLE")
            m = re.match(rb"\* (\d+) EXISTS", line)
            if m and int(m.group(1)) > exists:
                seen = int(m.group(1))
        if seen is None:
            raise SystemExit(f"no EXISTS above {exists} during IDLE")
        print("EXISTS", seen, flush=True)
        p.send(b"DONE\r\n")
        while True:
            line = p.readline()
            if not line:
                raise SystemExit("the connection closed after DONE")
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise SystemExit(f"DONE: {line!r}")
                break
        p.logout()
        print("DONE")
    else:
        raise SystemExit(f"unknown action {action}")


if __name__ == "__main__":
    main()
