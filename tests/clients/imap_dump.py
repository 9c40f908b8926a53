#!/usr/bin/env python3
"""Read a mailbox with Python's imaplib (a real client) and print what it saw.

Usage: imap_dump.py MODE PORT CAFILE USER PASSWORD
  MODE stls: plain IMAP, then STARTTLS with a context that verifies the
             server certificate against CAFILE (and the name 127.0.0.1);
  MODE ssl:  IMAPS (implicit TLS), verified the same way.

Prints one line per fact, for the test to check:
  PRECAPA <capability>...      (before TLS; stls only)
  TLS <protocol> <cipher>
  CAPA <capability>...         (after TLS, before login)
  LOGIN <response text>
  POSTCAPA <capability>...     (CAPABILITY after login)
  SELECT <EXISTS> <UIDVALIDITY> <UIDNEXT>
  MSG <uid> <RFC822.SIZE> <flags, comma-separated> <INTERNALDATE> <hex of BODY.PEEK[]>
Exits non-zero with the exception on any failure.
"""
import imaplib
import re
import ssl
import sys

mode, port, cafile, user, password = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=cafile)
if mode == "stls":
    m = imaplib.IMAP4("127.0.0.1", int(port), timeout=30)
    print("PRECAPA", *m.capabilities)
    typ, _ = m.starttls(ssl_context=ctx)
    assert typ == "OK", typ
elif mode == "ssl":
    m = imaplib.IMAP4_SSL("127.0.0.1", int(port), ssl_context=ctx, timeout=30)
else:
    raise SystemExit(f"unknown mode {mode}")
print("TLS", m.sock.version(), m.sock.cipher()[0])
print("CAPA", *m.capabilities)
typ, data = m.login(user, password)
assert typ == "OK", (typ, data)
print("LOGIN", data[0].decode())
typ, data = m.capability()
assert typ == "OK", (typ, data)
print("POSTCAPA", *data[0].decode().upper().split())
typ, data = m.select("INBOX", readonly=True)
assert typ == "OK", (typ, data)
exists = int(data[0])
uidvalidity = m.untagged_responses.get("UIDVALIDITY", [b"?"])[0].decode()
uidnext = m.untagged_responses.get("UIDNEXT", [b"?"])[0].decode()
print("SELECT", exists, uidvalidity, uidnext)
typ, data = m.uid("FETCH", "1:*", "(UID RFC822.SIZE FLAGS INTERNALDATE BODY.PEEK[])")
assert typ == "OK", (typ, data)
for item in data:
    if not isinstance(item, tuple):
        continue
    meta, body = item
    meta = meta.decode()
    uid = re.search(r"UID (\d+)", meta).group(1)
    size = re.search(r"RFC822\.SIZE (\d+)", meta).group(1)
    flags = re.search(r"FLAGS \(([^)]*)\)", meta).group(1)
    date = re.search(r'INTERNALDATE "([^"]*)"', meta).group(1)
    print("MSG", uid, size, ",".join(flags.split()) or "-", date.replace(" ", "_"), body.hex())
typ, _ = m.logout()
assert typ == "BYE", typ
