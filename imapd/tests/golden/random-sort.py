#!/usr/bin/env python3
"""Random mailboxes for SORT and THREAD, answered by Dovecot 2.3.

Usage (as root, Debian's dovecot-imapd installed, as regen.sh needs):

    python3 imapd/tests/golden/random-sort.py DIR [SEED] [CASES]
    POSTHORN_SORT_CASES=DIR cargo test -p posthorn-imapd --test sort -- --ignored

Writes DIR/cNN/ cases (NN.eml, criteria, expected/sort) like regen.sh's
sort cases: random Message-ID, References, In-Reply-To (loops, missing
parents, duplicates), subjects with reply markers and blobs, addresses
(display names, groups, encoded words), dates with zones. Every message
has a Date: a message without one sorts by INTERNALDATE, the second its
APPEND happened in, which differs between two runs.
"""
import glob, os, random, shutil, subprocess, sys, tempfile

out_dir = sys.argv[1]
random.seed(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
cases = int(sys.argv[3]) if len(sys.argv) > 3 else 40
imap = os.environ.get("DOVECOT_IMAP", "/usr/lib/dovecot/imap")

SUBJECTS = ["a", "Re: a", "RE: a", "b", "Fwd: b", "b (fwd)", "", "[x] c",
            "Re: [x] c", "d", "[fwd: d]", "Re: Re: e", "e", "Ärger", "a_b"]
ADDRS = ["a@x.org", "Bob <bob@x.org>", "\"Zed, Z\" <Zed@y.org>",
         "=?utf-8?q?=C3=89mile?= <emile@x.org>", "carl@x.org (Carl C)",
         "group: g1@x.org, g2@x.org;", "undisclosed:;", "\"\" <empty@x.org>",
         "<angle@x.org>", "Ötzi <oetzi@x.org>", "x@y, Y <y@z>", "Äda <ada@x.org>"]
CRITERIA = ["(SUBJECT DATE)", "(FROM DATE)", "(REVERSE TO)", "(CC)", "(DISPLAYFROM)",
            "(DISPLAYTO)", "(SIZE)", "(REVERSE DATE)", "THREAD=ORDEREDSUBJECT",
            "THREAD=REFERENCES"]


def message(i):
    h = []
    for name in ("From", "To", "Cc"):
        if random.random() < 0.8:
            h.append("%s: %s" % (name, random.choice(ADDRS)))
    s = random.choice(SUBJECTS)
    if s or random.random() < 0.5:
        h.append("Subject: " + s)
    h.append("Date: Mon, %d Jun 2026 %02d:00:00 %s" % (
        random.randint(1, 3), random.randint(0, 3), random.choice(["+0000", "-0500", "+1400"])))
    if random.random() < 0.85:
        h.append("Message-ID: <%d@x>" % random.randint(0, 20))
    if random.random() < 0.6:
        h.append("References: " + " ".join(
            "<%d@x>" % random.randint(0, 20) for _ in range(random.randint(1, 4))))
    elif random.random() < 0.4:
        h.append("In-Reply-To: <%d@x>" % random.randint(0, 20))
    return "\r\n".join(h) + "\r\n\r\n" + "b" * random.randint(0, 5) + "\r\n"


def answer(case, tmp):
    for d in ("mail", "run", "state", "home"):
        shutil.rmtree(os.path.join(tmp, d), ignore_errors=True)
    for d in ("mail/cur", "mail/new", "mail/tmp", "run", "state", "home"):
        os.makedirs(os.path.join(tmp, d))
    subprocess.run(["chown", "-R", "65534:65534", tmp], check=True)
    p = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", "-i",
         "USER=golden", "HOME=%s/home" % tmp, imap, "-c", "%s/dovecot.conf" % tmp],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def command(tag, cmd):
        p.stdin.write(tag + b" " + cmd + b"\r\n")
        p.stdin.flush()
        lines = []
        while True:
            l = p.stdout.readline()
            if not l:
                raise SystemExit("imap closed the connection")
            lines.append(l.rstrip(b"\r\n"))
            if l.startswith(tag + b" "):
                return lines

    for i, f in enumerate(sorted(glob.glob(os.path.join(case, "[0-9]*.eml")))):
        data = open(f, "rb").read()
        command(b"a%d" % i, b"APPEND INBOX {%d+}\r\n" % len(data) + data)
    command(b"x", b"SELECT INBOX")
    out = []
    for i, crit in enumerate(CRITERIA):
        if crit.startswith("THREAD="):
            cmd, name = b"THREAD %s UTF-8 ALL" % crit[7:].encode(), b"* THREAD"
        else:
            cmd, name = b"SORT %s UTF-8 ALL" % crit.encode(), b"* SORT"
        found = [l for l in command(b"s%d" % i, cmd) if l.startswith(name)]
        out.append("%s\t%s\n" % (crit, found[0][len(name):].strip().decode()))
    command(b"z", b"LOGOUT")
    p.wait()
    os.makedirs(os.path.join(case, "expected"), exist_ok=True)
    open(os.path.join(case, "expected", "sort"), "w").write("".join(out))


tmp = tempfile.mkdtemp(prefix="random-sort.")
os.chmod(tmp, 0o755)
open(os.path.join(tmp, "dovecot.conf"), "w").write(
    "base_dir = %s/run\nstate_dir = %s/state\nlog_path = %s/log\nprotocols = imap\n"
    "ssl = no\nmail_location = maildir:%s/mail\nmail_uid = 65534\nmail_gid = 65534\n"
    % (tmp, tmp, tmp, tmp))
try:
    for n in range(cases):
        case = os.path.join(out_dir, "c%02d" % n)
        shutil.rmtree(case, ignore_errors=True)
        os.makedirs(case)
        for i in range(1, random.randint(1, 25) + 1):
            open(os.path.join(case, "%02d.eml" % i), "w", newline="", encoding="utf-8").write(message(i))
        open(os.path.join(case, "criteria"), "w").write("\n".join(CRITERIA) + "\n")
        answer(case, tmp)
finally:
    shutil.rmtree(tmp)
print("%d cases in %s" % (cases, out_dir))
