#!/usr/bin/env python3
"""tests/install/pop3_client.py: the installation test's POP3 client.

Python's poplib against the installed package, verifying the server's
certificate: CAFILE is the certificate itself (Debian's self-signed snakeoil)
and NAME the name it is made out to, while the connection goes to 127.0.0.1.

Usage: pop3_client.py ACTION MODE PORT CAFILE NAME USER PASSWORD [ARGS]
  MODE     stls: POP3, CAPA (STLS must be offered), then STLS;
           ssl:  POP3S, TLS from the first byte.
  ACTION   read FILE [UIDL]: read FILE (a message in Maildir/new/, which
           the login moves to cur/), log in, find the message whose CRLF
           form is exactly FILE's bytes (RETR), print "UIDL <uidl>" (which must equal
           UIDL when given), QUIT; the message stays.
           delete FILE UIDL: the same, then DELE it and QUIT: the reply must
           say the messages were deleted.
           hold: log in, print "READY <count> <octets>", wait for a line on
           stdin, then STAT, RETR every message, NOOP, QUIT; print
           "DONE <count>".
           fail: log in with PASSWORD (a wrong one) and print
           "REPLY <the server's reply>"; close without QUIT.
           badname: connect verifying against NAME (a wrong one): print
           "REFUSED <reason>" when the certificate is refused.
Exits non-zero with the reason on any failure.
"""
import poplib
import socket
import ssl
import sys


class POP3SAt(poplib.POP3_SSL):
    """POP3S to 127.0.0.1, verifying the certificate for another name."""

    def __init__(self, port, name, context):
        self.tls_name = name
        super().__init__("127.0.0.1", port, context=context, timeout=30)

    def _create_socket(self, timeout):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout)
        return self.context.wrap_socket(sock, server_hostname=self.tls_name)


def connect(mode, port, cafile, name):
    ctx = ssl.create_default_context(cafile=cafile)
    if mode == "ssl":
        return POP3SAt(port, name, ctx)
    if mode != "stls":
        raise SystemExit(f"unknown mode {mode}")
    p = poplib.POP3("127.0.0.1", port, timeout=30)
    caps = p.capa()
    if "STLS" not in caps:
        raise SystemExit(f"CAPA before TLS does not offer STLS: {sorted(caps)}")
    p.host = name  # poplib verifies STLS against self.host
    p.stls(context=ctx)
    return p


def crlf(data):
    """The file's bytes with every bare LF as CRLF: what RETR sends."""
    out = bytearray()
    for i, b in enumerate(data):
        if b == 0x0A and (i == 0 or data[i - 1] != 0x0D):
            out.append(0x0D)
        out.append(b)
    return bytes(out)


def login(p, user, password):
    caps = p.capa()
    for need in ("USER", "UIDL", "TOP", "PIPELINING"):
        if need not in caps:
            raise SystemExit(f"CAPA over TLS lacks {need}: {sorted(caps)}")
    if caps.get("SASL") != ["PLAIN", "LOGIN"]:
        raise SystemExit(f"CAPA over TLS: SASL {caps.get('SASL')}, expected PLAIN LOGIN")
    if "STLS" in caps:
        raise SystemExit("CAPA still offers STLS under TLS")
    p.user(user)
    r = p.pass_(password)
    if r != b"+OK Logged in.":
        raise SystemExit(f"PASS: {r!r}")


def find(p, want):
    """The number and UIDL of the message whose bytes are `want`."""
    count, octets = p.stat()
    _, listing, _ = p.list()
    sizes = dict(tuple(map(int, e.split())) for e in listing)
    _, uidls, _ = p.uidl()
    ids = {int(n): u.decode() for n, u in (e.split() for e in uidls)}
    if len(sizes) != count or len(ids) != count or sum(sizes.values()) != octets:
        raise SystemExit(f"STAT {count} {octets}, LIST {sizes}, UIDL {ids} disagree")
    for n in range(1, count + 1):
        resp, lines, got = p.retr(n)
        body = b"".join(line + b"\r\n" for line in lines)
        if body == want:
            if resp != f"+OK {len(want)} octets".encode() or sizes[n] != len(want):
                raise SystemExit(f"RETR {n}: {resp!r}, LIST says {sizes[n]}, the message has {len(want)} octets")
            return n, ids[n]
    raise SystemExit(f"none of the {count} messages is byte for byte the Maildir file ({len(want)} octets)")


def main():
    action, mode, port, cafile, name, user, password = sys.argv[1:8]
    args = sys.argv[8:]
    port = int(port)
    if action == "badname":
        try:
            p = connect(mode, port, cafile, name)
        except ssl.SSLCertVerificationError as e:
            print("REFUSED", e.verify_message)
            return
        p.quit()
        raise SystemExit(f"the certificate was accepted for {name}")
    # The file moves from new/ to cur/ (and is renamed) at the login.
    want = None
    if action in ("read", "delete"):
        with open(args[0], "rb") as f:
            want = crlf(f.read())
    p = connect(mode, port, cafile, name)
    tls = p.sock
    print("TLS", tls.version(), tls.cipher()[0])
    if action == "fail":
        p.user(user)
        try:
            r = p.pass_(password)
        except poplib.error_proto as e:
            print("REPLY", e.args[0].decode())
            p.close()
            return
        raise SystemExit(f"a wrong password was accepted: {r!r}")
    login(p, user, password)
    if action in ("read", "delete"):
        n, uidl = find(p, want)
        print("UIDL", uidl)
        if len(args) > 1 and args[1] != uidl:
            raise SystemExit(f"UIDL {uidl}, before {args[1]}")
        if action == "delete":
            r = p.dele(n)
            if r != b"+OK Marked to be deleted.":
                raise SystemExit(f"DELE: {r!r}")
            r = p.quit()
            if r != b"+OK Logging out, messages deleted.":
                raise SystemExit(f"QUIT: {r!r}")
            print("DELETED", n)
        else:
            p.quit()
    elif action == "hold":
        count, octets = p.stat()
        print("READY", count, octets, flush=True)
        sys.stdin.readline()
        again = p.stat()
        if again != (count, octets):
            raise SystemExit(f"STAT {again} after the wait, {(count, octets)} before")
        for n in range(1, count + 1):
            p.retr(n)
        p.noop()
        r = p.quit()
        if r != b"+OK Logging out.":
            raise SystemExit(f"QUIT: {r!r}")
        print("DONE", count)
    else:
        raise SystemExit(f"unknown action {action}")


if __name__ == "__main__":
    main()
