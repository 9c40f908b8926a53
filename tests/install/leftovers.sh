#!/bin/sh
# tests/install/leftovers.sh — which files new since before the installation
# are posthorn's leftovers.
#
# Usage: leftovers.sh DEB BEFORE AFTER
#   DEB     the package that was installed and purged
#   BEFORE  sorted list of paths before the installation (one per line)
#   AFTER   the same list after the purge
#
# Prints the new paths that posthorn could have created and exits 1 when
# there is one. A path is posthorn's when
#   1. it is in the package's file list (dpkg-deb -c DEB);
#   2. one of its components names posthorn: its directories (/etc/posthorn,
#      /var/spool/posthorn, /run/posthorn, /var/lib/posthorn), the init links
#      (/etc/rc2.d/S01posthorn), systemd's posthorn.service links and
#      deb-systemd-helper's state for it;
#   3. it is, or is below, a path that the maintainer scripts (postinst,
#      prerm, postrm from dpkg-deb -e DEB) name and that did not exist before
#      the installation (e.g. /var/mail/vhosts).
# Other new paths are not posthorn's doing (systemctl creates
# /run/systemd/systemd-units-load, for one): they are listed on stderr as
# "not posthorn's: PATH" and do not fail.
#
# Needs dpkg-deb and python3; not root. tests/install/leftovers-test.sh
# tests it.
set -eu

[ $# = 3 ] || { echo "usage: leftovers.sh DEB BEFORE AFTER" >&2; exit 2; }
deb=$1 before=$2 after=$3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/posthorn-leftovers.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# dpkg-deb -c prints tar's listing: mode owner size date time ./path [-> target].
dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's|^\./|/|; s|/$||' | grep -v '^$' >"$tmp/files" || true
dpkg-deb -e "$deb" "$tmp/control"
for s in preinst postinst prerm postrm; do
    [ -f "$tmp/control/$s" ] || continue
    grep -oE '/(etc|var|run|usr|lib|srv|opt|home)(/[A-Za-z0-9_.+-]+)+' "$tmp/control/$s" || true
done | sort -u >"$tmp/scripts"

python3 - "$before" "$after" "$tmp/files" "$tmp/scripts" <<'PY'
import sys

def lines(p):
    with open(p) as f:
        return {l.rstrip("\n") for l in f if l.strip()}

before, after, files, scripts = (lines(p) for p in sys.argv[1:5])
# Script paths that existed before are the system's (/run/systemd/system,
# /usr/sbin/nologin); only those the installation brought are posthorn's.
roots = sorted(p for p in scripts if p not in before)

def posthorns(p):
    if p in files:
        return True
    if any("posthorn" in c for c in p.split("/")):
        return True
    return any(p == r or p.startswith(r + "/") for r in roots)

bad = 0
for p in sorted(after - before):
    if posthorns(p):
        print(p)
        bad = 1
    else:
        print(f"not posthorn's: {p}", file=sys.stderr)
sys.exit(bad)
PY
