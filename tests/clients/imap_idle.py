#!/usr/bin/env python3
"""IDLE over IMAPS (through the login process's TLS relay), driven by the
caller.

Usage: imap_idle.py PORT CAFILE USER PASSWORD
Logs in over IMAPS verified against CAFILE, selects INBOX, sends IDLE and
prints "READY <continuation line>". Then prints every line the server
sends during IDLE as "LINE <line>" as soon as it arrives, until a line on
standard input asks for DONE; prints "DONE <tagged reply>" and logs out.
Exits non-zero on any failure.
"""
import select
import socket
import ssl
import sys

port, cafile, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
s = ctx.wrap_socket(
    socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname="127.0.0.1"
)
buf = b""


def line():
    """One line from the server (reads only as much as it needs)."""
    global buf
    while b"\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise SystemExit("the server closed the connection")
        buf += d
    l, buf = buf.split(b"\r\n", 1)
    return l.decode()


def command(tag, text):
    s.sendall(f"{tag} {text}\r\n".encode())
    while True:
        l = line()
        if l.startswith(tag + " "):
            if not l.startswith(tag + " OK"):
                raise SystemExit(l)
            return


line()
command("a", f"LOGIN {user} {password}")
command("b", "SELECT INBOX")
s.sendall(b"c IDLE\r\n")
print("READY", line(), flush=True)
while True:
    while b"\r\n" in buf:
        print("LINE", line(), flush=True)
    if s.pending():
        buf += s.recv(65536)
        continue
    r, _, _ = select.select([s, sys.stdin], [], [], 30)
    if not r:
        raise SystemExit("nothing for 30 s")
    if sys.stdin in r:
        sys.stdin.readline()
        break
    d = s.recv(65536)
    if not d:
        raise SystemExit("the server closed the connection")
    buf += d
s.sendall(b"DONE\r\n")
while True:
    l = line()
    if l.startswith("c "):
        print("DONE", l, flush=True)
        break
    print("LINE", l, flush=True)
command("d", "LOGOUT")
