#!/usr/bin/env python3
"""Submit one message to posthorn with Python's smtplib, as a mail client
does: STARTTLS (or TLS from the first byte), certificate verified against
CA, AUTH with USER and PASSWORD, then MAIL FROM SENDER, RCPT TO each of TO.

Usage: smtp_submit.py starttls|tls PORT CA USER PASSWORD SENDER SUBJECT TO...
(SUBMIT_TLS_NAME: the name the certificate is for, default 127.0.0.1; the
connection always goes to 127.0.0.1.)

Prints one line and exits 0 whatever the server said:
  sent QUEUE-ID              the message was accepted (250 ... queued as ID)
  refused STAGE CODE TEXT    a reply refused it (STAGE: ehlo, auth, mail,
                             rcpt, data)
Exits non-zero (with the exception) for anything else: no TLS, a
certificate that does not verify, a lost connection.
"""
import os
import smtplib
import socket
import ssl
import sys


class Smtp(smtplib.SMTP):
    """Connects to 127.0.0.1 whatever name the certificate is checked for."""

    def _get_socket(self, host, port, timeout):
        return socket.create_connection(("127.0.0.1", port), timeout)


class SmtpTls(smtplib.SMTP_SSL):
    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection(("127.0.0.1", port), timeout)
        return self.context.wrap_socket(sock, server_hostname=host)


mode, port, ca, user, password, sender, subject = sys.argv[1:8]
rcpts = sys.argv[8:]
# The name the server's certificate must be for (the installed package's
# snakeoil certificate names the host); the connection goes to 127.0.0.1.
name = os.environ.get("SUBMIT_TLS_NAME", "127.0.0.1")
ctx = ssl.create_default_context(cafile=ca)
if mode == "tls":
    s = SmtpTls(name, int(port), timeout=30, context=ctx)
else:
    s = Smtp(name, int(port), timeout=30)
with s:
    s.ehlo("client.example.org")
    if mode == "starttls":
        s.starttls(context=ctx)
        s.ehlo("client.example.org")
    assert s.has_extn("auth"), "AUTH is offered under TLS"
    if user:
        try:
            s.login(user, password)
        except smtplib.SMTPAuthenticationError as e:
            print("refused auth", e.smtp_code, e.smtp_error.decode())
            sys.exit(0)
    body = (
        "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nsubmitted with smtplib\r\n"
        % (sender, rcpts[0], subject)
    ).encode()
    code, text = s.mail(sender)
    if code != 250:
        print("refused mail", code, text.decode())
        sys.exit(0)
    for r in rcpts:
        code, text = s.rcpt(r)
        if code not in (250, 251):
            print("refused rcpt", code, text.decode())
            sys.exit(0)
    code, text = s.data(body)
    if code != 250:
        print("refused data", code, text.decode())
        sys.exit(0)
    print("sent", text.decode().rsplit(" ", 1)[-1])
