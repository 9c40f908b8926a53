#!/usr/bin/env python3
"""Verify a message's DKIM signatures or ARC chain with dkimpy (Debian's
python3-dkim, the library behind dkimverify and arcverify), with the TXT
records given on the command line instead of DNS.

Usage: dkim_check.py dkim|arc MESSAGE-FILE NAME=VALUE...
  NAME: e.g. sel._domainkey.example.org (no final dot); VALUE: the record.

Prints one line per DKIM signature (`dkim 0 pass`, `dkim 1 fail`) or one
for the ARC chain (`arc pass`, `arc fail REASON`), and exits 0; exits
non-zero when dkimpy is missing or the message has no signature.
"""
import sys

import dkim

mode, path = sys.argv[1:3]
records = {}
for a in sys.argv[3:]:
    name, value = a.split("=", 1)
    records[name.lower().rstrip(".")] = value.encode()


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    return records.get(name.lower().rstrip("."))


msg = open(path, "rb").read()
if mode == "dkim":
    d = dkim.DKIM(msg)
    n = sum(1 for h in d.headers if h[0].lower() == b"dkim-signature")
    if n == 0:
        sys.exit("no DKIM-Signature")
    for i in range(n):
        try:
            ok = d.verify(idx=i, dnsfunc=dnsfunc)
        except dkim.DKIMException as e:
            ok = False
        print("dkim", i, "pass" if ok else "fail")
else:
    cv, results, reason = dkim.arc_verify(msg, dnsfunc=dnsfunc)
    print("arc", cv.decode() if isinstance(cv, bytes) else cv, reason)
