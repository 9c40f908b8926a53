#!/usr/bin/env python3
"""Read a mailbox with Python's poplib (a real client) and print what it saw.

Usage: poplib_dump.py MODE PORT CAFILE USER PASSWORD
  MODE stls: plain POP3, then STLS with a context that verifies the server
             certificate against CAFILE (and the name 127.0.0.1);
  MODE ssl:  POP3S (implicit TLS), verified the same way.

Prints one line per fact, for the test to check:
  TLS <protocol> <cipher>
  CAPA <capability>            (after TLS, before login)
  STAT <count> <octets>
  LIST <n> <octets>
  UIDL <n> <uidl>
  RETR <n> <octets counted by the client> <hex of the message, CRLF line ends>
Exits non-zero with the exception on any failure.
"""
import poplib
import ssl
import sys

mode, port, cafile, user, password = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=cafile)
if mode == "stls":
    p = poplib.POP3("127.0.0.1", int(port), timeout=30)
    p.stls(context=ctx)
elif mode == "ssl":
    p = poplib.POP3_SSL("127.0.0.1", int(port), context=ctx, timeout=30)
else:
    raise SystemExit(f"unknown mode {mode}")
sock = p.sock
print("TLS", sock.version(), sock.cipher()[0])
for cap, args in sorted(p.capa().items()):
    print("CAPA", cap, *args)
p.user(user)
p.pass_(password)
count, octets = p.stat()
print("STAT", count, octets)
_, listing, _ = p.list()
for entry in listing:
    n, size = entry.decode().split()
    print("LIST", n, size)
_, uidls, _ = p.uidl()
for entry in uidls:
    n, uid = entry.decode().split()
    print("UIDL", n, uid)
for n in range(1, count + 1):
    _, lines, client_octets = p.retr(n)
    body = b"".join(line + b"\r\n" for line in lines)
    print("RETR", n, client_octets, body.hex())
p.quit()
