#!/usr/bin/env python3
"""Send one message to posthorn with Python's smtplib, with DSN parameters
(RFC 3461) on MAIL FROM and on each RCPT TO, as a mail client asking for
delivery status notifications does.

Usage: smtplib_dsn.py PORT SENDER "MAIL-OPTIONS" SUBJECT TO "RCPT-OPTIONS" [TO "RCPT-OPTIONS"]...
(options separated by spaces, e.g. "RET=HDRS ENVID=QQ314159" and
"NOTIFY=SUCCESS ORCPT=rfc822;bob+40example.test").

Prints "sent" and exits 0 when the message was accepted; exits non-zero
(with the exception) otherwise, or when the server does not offer DSN.
"""
import smtplib
import sys

port, sender, mail_options, subject = sys.argv[1:5]
pairs = sys.argv[5:]
assert pairs and len(pairs) % 2 == 0, "TO and RCPT-OPTIONS come in pairs"
with smtplib.SMTP("127.0.0.1", int(port), timeout=30) as s:
    code, _ = s.ehlo("python.example.org")
    assert code == 250
    assert s.has_extn("dsn"), "DSN is offered"
    code, reply = s.mail(sender, mail_options.split())
    assert code == 250, (code, reply)
    for to, options in zip(pairs[0::2], pairs[1::2]):
        code, reply = s.rcpt(to, options.split())
        assert code == 250, (to, code, reply)
    body = (
        "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nthe body, sent with smtplib\r\n"
        % (sender, pairs[0], subject)
    )
    code, reply = s.data(body.encode())
    assert code == 250, (code, reply)
print("sent")
