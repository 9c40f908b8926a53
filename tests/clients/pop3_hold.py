#!/usr/bin/env python3
"""Hold a logged-in POP3 session across an event the caller causes.

Usage: pop3_hold.py MODE PORT CAFILE USER PASSWORD
  MODE ssl: POP3S verified against CAFILE; plain: POP3 without TLS.
Logs in, prints "READY <count> <octets>", waits for a line on standard
input, then STAT, RETR 1 and QUIT on the same session and prints
"AFTER <count> <octets> <bytes of RETR 1>". Exits non-zero on any failure.
"""
import poplib
import ssl
import sys

mode, port, cafile, user, password = sys.argv[1:6]
if mode == "ssl":
    ctx = ssl.create_default_context(cafile=cafile)
    p = poplib.POP3_SSL("127.0.0.1", int(port), context=ctx, timeout=30)
else:
    p = poplib.POP3("127.0.0.1", int(port), timeout=30)
p.user(user)
p.pass_(password)
count, octets = p.stat()
print("READY", count, octets, flush=True)
sys.stdin.readline()
count, octets = p.stat()
_, lines, _ = p.retr(1)
print("AFTER", count, octets, sum(len(l) + 2 for l in lines), flush=True)
p.quit()
