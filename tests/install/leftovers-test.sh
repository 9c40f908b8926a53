#!/bin/sh
# tests/install/leftovers-test.sh — tests tests/install/leftovers.sh on a
# small fake package: posthorn's leftovers are caught (planted files under
# /etc/posthorn and /var/spool/posthorn, an init link, a packaged file, a
# directory the maintainer scripts create), the system's are not
# (/run/systemd/systemd-units-load, and a path a script only tests for).
# Needs dpkg-deb and python3; not root. Exits 1 on failure.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/posthorn-leftovers-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The fake package: one program, and a postinst naming some paths.
mkdir -p "$tmp/pkg/DEBIAN" "$tmp/pkg/usr/sbin" "$tmp/pkg/usr/share/doc/fakehorn"
echo '#!/bin/sh' >"$tmp/pkg/usr/sbin/fakehorn"
echo 'fake' >"$tmp/pkg/usr/share/doc/fakehorn/copyright"
cat >"$tmp/pkg/DEBIAN/control" <<'EOF'
Package: fakehorn
Version: 1.0
Architecture: all
Maintainer: posthorn tests <tests@example.invalid>
Description: leftovers.sh test package
EOF
cat >"$tmp/pkg/DEBIAN/postinst" <<'EOF'
#!/bin/sh
VHOSTS=/var/mail/vhosts
mkdir -p "$VHOSTS"
[ -d /run/systemd/system ] && systemctl daemon-reload
EOF
chmod 0755 "$tmp/pkg/DEBIAN/postinst" "$tmp/pkg/usr/sbin/fakehorn"
dpkg-deb --root-owner-group --build "$tmp/pkg" "$tmp/fake.deb" >/dev/null

cat >"$tmp/before" <<'EOF'
/etc
/etc/rc2.d
/run
/run/systemd
/run/systemd/system
/usr/sbin
/var/mail
EOF
# What a purge could leave: posthorn's and others'.
cat "$tmp/before" - <<'EOF' | sort >"$tmp/after"
/etc/posthorn
/etc/posthorn/planted
/etc/rc2.d/S01posthorn
/run/systemd/system/something-else.service
/run/systemd/systemd-units-load
/usr/sbin/fakehorn
/usr/share/doc/fakehorn
/var/mail/vhosts
/var/mail/vhosts/example.test
/var/spool/posthorn
/var/spool/posthorn/planted
EOF
sort -o "$tmp/before" "$tmp/before"

fails=0
rc=0
sh "$here/leftovers.sh" "$tmp/fake.deb" "$tmp/before" "$tmp/after" >"$tmp/out" 2>"$tmp/err" || rc=$?
expect_out='/etc/posthorn
/etc/posthorn/planted
/etc/rc2.d/S01posthorn
/usr/sbin/fakehorn
/usr/share/doc/fakehorn
/var/mail/vhosts
/var/mail/vhosts/example.test
/var/spool/posthorn
/var/spool/posthorn/planted'
expect_err="not posthorn's: /run/systemd/system/something-else.service
not posthorn's: /run/systemd/systemd-units-load"
if [ "$rc" != 1 ]; then
    echo "FAIL  leftovers.sh exits 1 when posthorn left something (exit $rc)"
    fails=1
fi
if [ "$(cat "$tmp/out")" != "$expect_out" ]; then
    printf 'FAIL  leftovers.sh names posthorn'"'"'s leftovers; got:\n%s\n' "$(cat "$tmp/out")"
    fails=1
fi
if [ "$(cat "$tmp/err")" != "$expect_err" ]; then
    printf 'FAIL  leftovers.sh lists the others apart; got:\n%s\n' "$(cat "$tmp/err")"
    fails=1
fi

# Only others' files new: success.
cat "$tmp/before" - <<'EOF' | sort >"$tmp/after2"
/run/systemd/systemd-units-load
EOF
rc=0
sh "$here/leftovers.sh" "$tmp/fake.deb" "$tmp/before" "$tmp/after2" >"$tmp/out" 2>/dev/null || rc=$?
if [ "$rc" != 0 ] || [ -s "$tmp/out" ]; then
    echo "FAIL  leftovers.sh passes when only systemd's file is new (exit $rc): $(cat "$tmp/out")"
    fails=1
fi

# /var/mail/vhosts existed before: an administrator's, not a leftover.
printf '/var/mail/vhosts\n' | cat "$tmp/before" - | sort >"$tmp/before3"
printf '/var/mail/vhosts/other.example\n' | cat "$tmp/before3" - | sort >"$tmp/after3"
rc=0
sh "$here/leftovers.sh" "$tmp/fake.deb" "$tmp/before3" "$tmp/after3" >"$tmp/out" 2>/dev/null || rc=$?
if [ "$rc" != 0 ]; then
    echo "FAIL  a script path that existed before is not posthorn's (exit $rc): $(cat "$tmp/out")"
    fails=1
fi

[ "$fails" = 0 ] && echo "PASS  leftovers.sh: catches posthorn's leftovers, ignores systemd's"
exit "$fails"
