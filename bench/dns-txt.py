#!/usr/bin/env python3
"""A loopback DNS server for bench/run.sh's verify mode: answers TXT
questions from a zone file of `NAME TEXT...` lines (the text may be longer
than 255 octets: it is cut into character-strings, RFC 1035 3.3.14),
NXDOMAIN for other names, an empty answer for other types of a known name
(both negative answers with an SOA record of the name's top-level label, as
real servers send, RFC 2308). One question per message (RFC 1035 4.1), UDP
only. Usage: dns-txt.py PORT ZONEFILE
(prints "ready" once bound)."""

import os
import socket
import struct
import sys

# DNS_TXT_LOG=1: each question (name and type) on standard error.
LOG = os.environ.get("DNS_TXT_LOG") == "1"


def load(path):
    zone = {}
    with open(path, encoding="ascii") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, text = line.split(None, 1)
            zone.setdefault(name.lower().rstrip("."), []).append(text.encode())
    return zone


def answer(q, zone):
    if len(q) < 12 or struct.unpack(">H", q[4:6])[0] != 1:
        return None
    i, labels = 12, []
    while True:
        if i >= len(q):
            return None
        n = q[i]
        i += 1
        if n == 0:
            break
        labels.append(q[i:i + n].decode("ascii", "replace").lower())
        i += n
    if i + 4 > len(q):
        return None
    qtype = struct.unpack(">H", q[i:i + 2])[0]
    question = q[12:i + 4]
    if LOG:
        print(".".join(labels), qtype, file=sys.stderr, flush=True)
    records = zone.get(".".join(labels))
    answers = b""
    count = 0
    if records is not None and qtype == 16:
        for text in records:
            rdata = b"".join(bytes([len(text[k:k + 255])]) + text[k:k + 255]
                             for k in range(0, max(len(text), 1), 255))
            answers += b"\xc0\x0c" + struct.pack(">HHIH", 16, 1, 3600, len(rdata)) + rdata
            count += 1
    rcode = 3 if records is None else 0
    flags = 0x8400 | ((q[2] & 1) << 8) | 0x80 | rcode
    authority, nauth = b"", 0
    if count == 0 and labels:
        # A negative answer carries the zone's SOA (RFC 2308 3), so
        # resolvers cache it for the SOA's minimum (300 s), as they would
        # a real server's.
        apex = labels[-1]
        rdata = (name(["ns", apex]) + name(["hostmaster", apex])
                 + struct.pack(">IIIII", 1, 3600, 600, 86400, 300))
        authority = name([apex]) + struct.pack(">HHIH", 6, 1, 300, len(rdata)) + rdata
        nauth = 1
    return (q[0:2] + struct.pack(">HHHHH", flags, 1, count, nauth, 0) + question
            + answers + authority)


def name(labels):
    return b"".join(bytes([len(l)]) + l.encode("ascii") for l in labels) + b"\0"


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    zone = load(path)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    print("ready", flush=True)
    while True:
        q, peer = s.recvfrom(1500)
        a = answer(q, zone)
        if a is not None:
            s.sendto(a, peer)


if __name__ == "__main__":
    main()
