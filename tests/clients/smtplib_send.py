#!/usr/bin/env python3
"""Send two messages to posthorn with Python's smtplib (a real client).

Usage: smtplib_send.py PORT. Exits non-zero (with the exception) on failure.
"""
import smtplib
import sys
from email.message import EmailMessage

port = int(sys.argv[1])
with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
    code, _ = s.ehlo("python.example.org")
    assert code == 250
    assert s.has_extn("8bitmime") and s.has_extn("pipelining") and s.has_extn("smtputf8")
    body = "Subject: via smtplib\r\nFrom: py@example.org\r\n\r\nGrüße, 8bit body\r\n".encode()
    refused = s.sendmail("py@example.org", ["demo@example.test"], body, mail_options=["BODY=8BITMIME"])
    assert refused == {}, refused
    msg = EmailMessage()
    msg["Subject"] = "via smtplib send_message"
    msg["From"] = "py@example.org"
    msg["To"] = "demo@example.test"
    msg.set_content("hello from send_message\n")
    s.send_message(msg)
    try:
        s.sendmail("py@example.org", ["nobody@example.test"], b"Subject: x\r\n\r\nx\r\n")
        raise SystemExit("unknown user was accepted")
    except smtplib.SMTPRecipientsRefused as e:
        code, text = e.recipients["nobody@example.test"]
        assert code == 550 and text.startswith(b"5.1.1"), (code, text)
print("ok")
