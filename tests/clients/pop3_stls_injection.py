#!/usr/bin/env python3
"""CVE-2011-0411 for POP3: a command pipelined after STLS in the same packet
must be discarded, never executed inside TLS.

Usage: pop3_stls_injection.py PORT CAFILE USER
Sends "STLS\\r\\nUSER <user>\\r\\n" in one write, completes the handshake,
then sends PASS. Had the injected USER been executed, PASS would be taken
as the second step of a login; discarded, PASS has no user. Prints the
reply to STLS and the first reply inside TLS.
"""
import socket
import ssl
import sys

port, cafile, user = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_connection(("127.0.0.1", port), timeout=30)
f = s.makefile("rb")
print("GREETING", f.readline().decode().rstrip())
s.sendall(b"STLS\r\nUSER " + user.encode() + b"\r\n")
print("STLS", f.readline().decode().rstrip())
ctx = ssl.create_default_context(cafile=cafile)
t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
tf = t.makefile("rb")
t.sendall(b"PASS wrong-or-right-it-does-not-matter\r\n")
print("AFTER", tf.readline().decode().rstrip())
t.sendall(b"QUIT\r\n")
print("QUIT", tf.readline().decode().rstrip())
