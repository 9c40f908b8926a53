#!/usr/bin/env python3
"""CVE-2011-0411 for IMAP: a command pipelined after STARTTLS in the same
packet must be discarded, never executed inside TLS.

Usage: imap_starttls_injection.py PORT CAFILE USER PASSWORD
Sends "a STARTTLS\\r\\nb LOGIN <user> <password>\\r\\n" in one write,
completes the handshake (verified against CAFILE), then sends "c NOOP" and
"d SELECT INBOX". Had the injected LOGIN been executed, there would be a
"b" reply and SELECT would work. Prints each line the server sent.
"""
import socket
import ssl
import sys

port, cafile, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
s = socket.create_connection(("127.0.0.1", port), timeout=30)
f = s.makefile("rb")
print("GREETING", f.readline().decode().rstrip())
s.sendall(b"a STARTTLS\r\nb LOGIN " + user.encode() + b" " + password.encode() + b"\r\n")
print("STARTTLS", f.readline().decode().rstrip())
ctx = ssl.create_default_context(cafile=cafile)
t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
tf = t.makefile("rb")
t.sendall(b"c NOOP\r\n")
print("AFTER", tf.readline().decode().rstrip())
t.sendall(b"d SELECT INBOX\r\n")
print("AFTER", tf.readline().decode().rstrip())
t.sendall(b"e LOGOUT\r\n")
print("AFTER", tf.readline().decode().rstrip())
print("AFTER", tf.readline().decode().rstrip())
