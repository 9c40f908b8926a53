#!/bin/sh
# Regenerates the expected outputs in this directory from Dovecot 2.3
# (Debian's dovecot-imapd; the system service can stay stopped).
#
# Each case is a directory holding message.eml (stored as the posthorn store
# hands it over: CRLF, except bare-lf/) and, optionally, `items`: extra FETCH
# items for that case, one per line (default-items applies to every case),
# and `searches`: SEARCH criteria, one per line, answered in
# expected/searches with 1 (message matched) or 0. A directory with
# `criteria` instead is a SORT case (see sort_case below).
# For every item, the value Dovecot sends in `* 1 FETCH (ITEM VALUE)` is
# written byte for byte to expected/<item with [] () <> spaces mapped>; an
# item Dovecot refuses is written as its tagged NO/BAD line.
#
# How: one throw-away Maildir per case under a temp dir, and Dovecot's imap
# binary run directly in PREAUTH mode on stdin/stdout (no listeners, no auth
# process) as uid 65534, a fresh Maildir and session for every item, so no config outside the temp dir is used.
#
# Usage: sh regen.sh [case...]   (as root, or as a user that may setpriv)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
imap=${DOVECOT_IMAP:-/usr/lib/dovecot/imap}
tmp=$(mktemp -d /tmp/golden-dovecot.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
cat >"$tmp/dovecot.conf" <<CONF
base_dir = $tmp/run
state_dir = $tmp/state
log_path = $tmp/log
protocols = imap
ssl = no
mail_location = maildir:$tmp/mail
mail_uid = 65534
mail_gid = 65534
CONF
# A SORT case: NN.eml appended in order to one mailbox, then
# `SORT <criteria> UTF-8 ALL` for each line of `criteria` (a line
# THREAD=<algorithm> sends `THREAD <algorithm> UTF-8 ALL`); expected/sort
# gets "criteria<TAB>sequence numbers" (or the thread list).
sort_case() {
	rm -rf "$here/$1/expected"
	mkdir -p "$here/$1/expected"
	python3 - "$here/$1" "$tmp" "$imap" <<'PY'
import glob, os, re, shutil, subprocess, sys
case, tmp, imap = sys.argv[1], sys.argv[2], sys.argv[3]
for d in ("mail", "run", "state", "home"):
    shutil.rmtree(os.path.join(tmp, d), ignore_errors=True)
for d in ("mail/cur", "mail/new", "mail/tmp", "run", "state", "home"):
    os.makedirs(os.path.join(tmp, d))
subprocess.run(["chown", "-R", "65534:65534", tmp], check=True)
p = subprocess.Popen(
    ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
     "env", "-i", "USER=golden", "HOME=%s/home" % tmp, imap,
     "-c", "%s/dovecot.conf" % tmp],
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
    lines = command(b"a%d" % i, b"APPEND INBOX {%d+}\r\n" % len(data) + data)
    assert lines[-1].startswith(b"a%d OK" % i), lines[-1]
command(b"x", b"SELECT INBOX")
out = []
for i, crit in enumerate(open(os.path.join(case, "criteria")).read().splitlines()):
    if crit.startswith("THREAD="):
        # THREAD=<algorithm>: the THREAD response instead
        lines = command(b"s%d" % i, b"THREAD %s UTF-8 ALL" % crit[7:].encode())
        found = [l for l in lines if l.startswith(b"* THREAD")]
        out.append("%s\t%s\n" % (crit, found[0][len(b"* THREAD"):].strip().decode()))
        continue
    lines = command(b"s%d" % i, b"SORT %s UTF-8 ALL" % crit.encode())
    found = [l for l in lines if l.startswith(b"* SORT")]
    out.append("%s\t%s\n" % (crit, found[0][len(b"* SORT"):].strip().decode()))
command(b"z", b"LOGOUT")
p.wait()
open(os.path.join(case, "expected", "sort"), "w").write("".join(out))
PY
	echo "$1: $(wc -l <"$here/$1/expected/sort") sorts"
}

cases=${*:-$(cd "$here" && ls -d */ | tr -d /)}
for c in $cases; do
	if [ -f "$here/$c/criteria" ]; then
		sort_case "$c"
		continue
	fi
	items="$tmp/items"
	cat "$here/default-items" >"$items"
	[ -f "$here/$c/items" ] && cat "$here/$c/items" >>"$items"
	rm -rf "$here/$c/expected"
	mkdir -p "$here/$c/expected"
	python3 - "$items" "$here/$c" "$tmp" "$imap" <<'PY'
import os, re, shutil, subprocess, sys
items = [l.rstrip("\n") for l in open(sys.argv[1]) if l.strip()]
case, tmp, imap = sys.argv[2], sys.argv[3], sys.argv[4]

def fname(item):
    s = item.lower().replace(".peek", "").replace("[]", "_full")
    return re.sub(r"[\[\]()<> ]+", "_", s).strip("_")

def session(item):
    """A fresh Maildir and imap process per item: Dovecot's caches (its
    index cache, its binary cache) must not make one answer depend on
    the items fetched before it."""
    for d in ("mail", "run", "state", "home"):
        shutil.rmtree(os.path.join(tmp, d), ignore_errors=True)
    for d in ("mail/cur", "mail/new", "mail/tmp", "run", "state", "home"):
        os.makedirs(os.path.join(tmp, d))
    shutil.copy(os.path.join(case, "message.eml"),
                os.path.join(tmp, "mail/cur/1000000000.M1P1.golden:2,S"))
    subprocess.run(["chown", "-R", "65534:65534", tmp], check=True)
    # imap wants a pipe on stdin (it polls it), not a file
    p = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         "env", "-i", "USER=golden", "HOME=%s/home" % tmp, imap,
         "-c", "%s/dovecot.conf" % tmp],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def line():
        """One response line with its literals, as raw bytes."""
        out = b""
        while True:
            l = p.stdout.readline()
            if not l:
                raise SystemExit("imap closed the connection")
            out += l
            m = re.search(rb"~?\{(\d+)\}\r\n$", l)
            if not m:
                return out[:-2]
            out += p.stdout.read(int(m.group(1)))

    def command(tag, cmd):
        p.stdin.write(b"%s %s\r\n" % (tag, cmd))
        p.stdin.flush()
        lines = []
        while True:
            l = line()
            lines.append(l)
            if l.startswith(tag + b" "):
                return lines

    command(b"x", b"EXAMINE INBOX")
    if item.startswith("__SEARCH__ "):
        lines = command(b"s", b"SEARCH CHARSET UTF-8 %s" % item[11:].encode())
        command(b"z", b"LOGOUT")
        p.wait()
        found = [l for l in lines if l.startswith(b"* SEARCH")]
        if not lines[-1].startswith(b"s OK") or not found:
            return lines[-1]
        return b"1" if found[0].strip() == b"* SEARCH 1" else b"0"
    lines = command(b"f", b"FETCH 1 (%s)" % item.encode())
    command(b"z", b"LOGOUT")
    p.wait()
    value = None
    for l in lines[:-1]:
        if l.startswith(b"* 1 FETCH ("):
            body = l[len(b"* 1 FETCH ("):-1]
            # the value follows the echoed item name, whose [...] may hold spaces
            close = body.find(b"]") if "[" in item else -1
            sp = body.index(b" ", close if close >= 0 else 0)
            value = body[sp + 1:]
    tagged = lines[-1][2:]
    if not tagged.startswith(b"OK"):
        value = re.sub(rb" \(\d+\.\d+ \+ .*secs\)\.$", b"", tagged)
    if value is None:
        value = b"(no FETCH response)"
    return value

for item in items:
    open(os.path.join(case, "expected", fname(item)), "wb").write(session(item))

# SEARCH: one criterion per line of `searches`; expected/searches gets
# "criterion<TAB>1" when message 1 matched, "<TAB>0" when not. Strings
# with 8-bit characters go as LITERAL+ literals, with CHARSET UTF-8.
path = os.path.join(case, "searches")
if os.path.exists(path):
    out = []
    for crit in open(path, encoding="utf-8").read().splitlines():
        if not crit.strip():
            continue
        def lit(m):
            raw = m.group(1).encode()
            return "{%d+}\r\n" % len(raw) + m.group(1) if any(b > 127 for b in raw) else m.group(0)
        wire = re.sub(r'"([^"]*)"', lit, crit)
        value = session("__SEARCH__ " + wire)
        out.append("%s\t%s\n" % (crit, value.decode()))
    open(os.path.join(case, "expected", "searches"), "w", encoding="utf-8").write("".join(out))
PY
	echo "$c: $(ls "$here/$c/expected" | wc -l) items"
done
