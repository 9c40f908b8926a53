#!/bin/sh
# Regenerates the expected outputs in this directory from Dovecot 2.3
# (Debian's dovecot-imapd; the system service can stay stopped).
#
# Each case is a directory holding message.eml (stored as the posthorn store
# hands it over: CRLF, except bare-lf/) and, optionally, `items`: extra FETCH
# items for that case, one per line. default-items applies to every case.
# For every item, the value Dovecot sends in `* 1 FETCH (ITEM VALUE)` is
# written byte for byte to expected/<item with [] () <> spaces mapped>; an
# item Dovecot refuses is written as its tagged NO/BAD line.
#
# How: one throw-away Maildir per case under a temp dir, and Dovecot's imap
# binary run directly in PREAUTH mode on stdin/stdout (no listeners, no auth
# process) as uid 65534, one command at a time, so no config outside the temp dir is used.
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
cases=${*:-$(cd "$here" && ls -d */ | tr -d /)}
for c in $cases; do
	rm -rf "$tmp/mail" "$tmp/run" "$tmp/state" "$tmp/home"
	mkdir -p "$tmp/mail/cur" "$tmp/mail/new" "$tmp/mail/tmp" "$tmp/run" "$tmp/state" "$tmp/home"
	cp "$here/$c/message.eml" "$tmp/mail/cur/1000000000.M1P1.golden:2,S"
	chown -R 65534:65534 "$tmp"
	items="$tmp/items"
	cat "$here/default-items" >"$items"
	[ -f "$here/$c/items" ] && cat "$here/$c/items" >>"$items"
	rm -rf "$here/$c/expected"
	mkdir -p "$here/$c/expected"
	python3 - "$items" "$here/$c/expected" "$tmp" "$imap" <<'PY'
import re, subprocess, sys
items = [l.rstrip("\n") for l in open(sys.argv[1]) if l.strip()]
outdir, tmp, imap = sys.argv[2], sys.argv[3], sys.argv[4]
# imap wants a pipe on stdin (it polls it), not a file
p = subprocess.Popen(
    ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
     "env", "-i", "USER=golden", "HOME=%s/home" % tmp, imap,
     "-c", "%s/dovecot.conf" % tmp],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE)

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

def fname(item):
    s = item.lower().replace(".peek", "")
    return re.sub(r"[\[\]()<> ]+", "_", s).strip("_")

command(b"x", b"EXAMINE INBOX")
for i, it in enumerate(items):
    tag = b"f%d" % i
    lines = command(tag, b"FETCH 1 (%s)" % it.encode())
    value = None
    for l in lines[:-1]:
        if l.startswith(b"* 1 FETCH ("):
            body = l[len(b"* 1 FETCH ("):-1]
            # the value follows the echoed item name, whose [...] may hold spaces
            close = body.find(b"]")
            sp = body.index(b" ", close if close >= 0 else 0)
            value = body[sp + 1:]
    tagged = lines[-1][len(tag) + 1:]
    if not tagged.startswith(b"OK"):
        value = re.sub(rb" \(\d+\.\d+ \+ .*secs\)\.$", b"", tagged)
    if value is None:
        value = b"(no FETCH response)"
    open("%s/%s" % (outdir, fname(it)), "wb").write(value)
command(b"z", b"LOGOUT")
p.wait()
PY
	echo "$c: $(ls "$here/$c/expected" | wc -l) items"
done
