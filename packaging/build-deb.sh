#!/bin/sh
# packaging/build-deb.sh — build target/debian/posthorn_VERSION_ARCH.deb.
#
# Builds the release program (multi-call: the daemons in /usr/lib/posthorn
# are symbolic links to /usr/sbin/posthorn), assembles a staging tree under
# target/debian/stage (programs, daemons, gzipped man pages, /etc/posthorn
# conffiles, init script, systemd unit, copyright) and runs
# dpkg-deb --build --root-owner-group. Needs cargo, dpkg-deb and gzip; strip
# and objdump (binutils) are used when present. Run it from anywhere; it
# prints the path of the .deb on its last line.
#
# Environment: SKIP_CARGO_BUILD=1 packages whatever the profile's directory
# holds; CARGO_TARGET_DIR, when set, is where cargo puts the build (and the
# .deb); POSTHORN_PROFILE=dev packages the debug build (stripped) instead of
# the release one: the same code and files, for tests/run.sh's installation
# test on CI, where the debug build already exists (the shipped package is
# always built with the default, release).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

DAEMONS="master smtpd qmgr local smtp anvil auth pop3d pop3-login imapd imap-login pickup"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$TARGET/debian
STAGE=$OUT/stage
PKG=posthorn

die() {
    echo "build-deb: $*" >&2
    exit 1
}

for tool in cargo dpkg-deb gzip; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

# The version of [workspace.package] in the workspace Cargo.toml.
VERSION=$(awk '
    /^\[/ { section = $0 }
    section == "[workspace.package]" && $1 == "version" {
        gsub(/"/, "", $3); print $3; exit
    }' Cargo.toml)
[ -n "$VERSION" ] || die "no version in [workspace.package] of Cargo.toml"
ARCH=$(dpkg --print-architecture)
PROFILE=${POSTHORN_PROFILE:-release}
case $PROFILE in
release) PROFILE_DIR=release ;;
dev) PROFILE_DIR=debug ;;
*) die "POSTHORN_PROFILE must be release or dev" ;;
esac

if [ "${SKIP_CARGO_BUILD:-0}" != 1 ]; then
    # One program: /usr/sbin/posthorn is multi-call (it runs as the worker
    # its argv[0] names), and every daemon in /usr/lib/posthorn is a
    # symbolic link to it. The same binary the benches measure, one
    # link-time optimisation instead of twelve.
    # postdrop is its own small program: it is installed setgid postdrop.
    cargo build --profile "$PROFILE" --locked -p posthorn-cli -p postdrop
fi
REL=$TARGET/$PROFILE_DIR
[ -x "$REL/posthorn" ] || die "$REL/posthorn is missing"
[ -x "$REL/postdrop" ] || die "$REL/postdrop is missing"

rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN"
umask 022

# Programs.
install -d "$STAGE/usr/sbin" "$STAGE/usr/lib/posthorn"
install -m 0755 "$REL/posthorn" "$STAGE/usr/sbin/posthorn"
for d in $DAEMONS; do
    ln -s ../../sbin/posthorn "$STAGE/usr/lib/posthorn/posthorn-$d"
done
# sendmail is the multi-call program under that name (/usr/lib/sendmail
# for old scripts). postdrop goes in mode 0755 root:root; postinst makes it
# root:postdrop 2755 once the group exists (never setgid root meanwhile).
ln -s posthorn "$STAGE/usr/sbin/sendmail"
install -d "$STAGE/usr/lib"
ln -s ../sbin/sendmail "$STAGE/usr/lib/sendmail"
install -m 0755 "$REL/postdrop" "$STAGE/usr/sbin/postdrop"
# newaliases: the multi-call program under that name (checks alias_maps).
install -d "$STAGE/usr/bin"
ln -s ../sbin/posthorn "$STAGE/usr/bin/newaliases"
if command -v strip >/dev/null 2>&1; then
    strip --strip-unneeded "$STAGE/usr/sbin/posthorn" "$STAGE/usr/sbin/postdrop"
fi

# Man pages, gzipped without time stamps.
pages=0
for src in man/man[1-8]/*.[1-8]; do
    [ -f "$src" ] || continue
    sec=${src##*.}
    install -d "$STAGE/usr/share/man/man$sec"
    gzip -9n <"$src" >"$STAGE/usr/share/man/man$sec/$(basename "$src").gz"
    chmod 0644 "$STAGE/usr/share/man/man$sec/$(basename "$src").gz"
    pages=$((pages + 1))
done
[ "$pages" -gt 0 ] || die "no man pages under man/"

# Configuration (conffiles). users is 0600 root: only auth and local read it.
install -d "$STAGE/etc/posthorn" "$STAGE/etc/init.d" "$STAGE/lib/systemd/system"
install -m 0644 etc/main.cf "$STAGE/etc/posthorn/main.cf"
install -m 0644 etc/master.cf "$STAGE/etc/posthorn/master.cf"
install -m 0600 etc/users "$STAGE/etc/posthorn/users"
install -m 0755 etc/init.d/posthorn "$STAGE/etc/init.d/posthorn"
# /etc/aliases is every MTA's (postfix, exim and sendmail read it too), so
# it is no conffile of ours: postinst copies this one there when there is
# none, and never replaces or removes one (Debian's postfix does the same).
install -d "$STAGE/usr/share/posthorn"
install -m 0644 etc/aliases "$STAGE/usr/share/posthorn/aliases"
install -m 0644 etc/posthorn.service "$STAGE/lib/systemd/system/posthorn.service"

# Documentation: copyright, with the Rust crates linked into the programs.
DOC=$STAGE/usr/share/doc/$PKG
install -d "$DOC"
crates=$(cargo tree --locked --offline -e normal,no-proc-macro --prefix none -f '{p}|{l}' \
    -p posthorn-cli \
    2>/dev/null | sed 's/ (\*)$//' | grep -v '^$' | grep -v " ($ROOT" | sort -u) || crates=
while IFS= read -r line; do
    if [ "$line" = @CRATES@ ]; then
        [ -n "$crates" ] || continue
        echo "Comment: The programs are statically linked with these Rust crates from"
        echo " crates.io, each under the license named:"
        echo "$crates" | awk -F'|' '{ printf " %s: %s\n", $1, $2 }'
    else
        printf '%s\n' "$line"
    fi
done <packaging/deb/copyright >"$DOC/copyright"
chmod 0644 "$DOC/copyright"
DATE=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")
printf '%s (%s) unstable; urgency=medium\n\n  * Built from the posthorn workspace.\n\n -- posthorn developers <posthorn@example.invalid>  %s\n' \
    "$PKG" "$VERSION" "$DATE" | gzip -9n >"$DOC/changelog.Debian.gz"
chmod 0644 "$DOC/changelog.Debian.gz"

# Maintainer scripts and control files.
for s in postinst prerm postrm; do
    install -m 0755 "packaging/deb/$s" "$STAGE/DEBIAN/$s"
done
cat >"$STAGE/DEBIAN/conffiles" <<EOF
/etc/posthorn/main.cf
/etc/posthorn/master.cf
/etc/posthorn/users
/etc/init.d/posthorn
EOF

# Dependencies: the newest glibc symbol version the programs use.
LIBC_DEP=libc6
if command -v objdump >/dev/null 2>&1; then
    glibc=$(objdump -T "$STAGE/usr/sbin/posthorn" 2>/dev/null |
        grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
    [ -n "$glibc" ] && LIBC_DEP="libc6 (>= $glibc)"
fi
DEPENDS="$LIBC_DEP, libgcc-s1"
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)

cat >"$STAGE/DEBIAN/control" <<EOF
Package: $PKG
Version: $VERSION
Architecture: $ARCH
Maintainer: posthorn developers <posthorn@example.invalid>
Installed-Size: $SIZE
Depends: $DEPENDS
Recommends: ssl-cert
Provides: mail-transport-agent
Conflicts: mail-transport-agent
Replaces: mail-transport-agent
Section: mail
Priority: optional
Description: mail system: SMTP server, local delivery, POP3 and IMAP server
 posthorn is a mail system shaped like Postfix and Dovecot: a master process
 supervises privilege-separated workers that talk over Unix sockets and a
 spool directory. This version receives mail over SMTP (port 25, STARTTLS),
 delivers it into Maildirs of virtual users (a Dovecot passwd-file) and of
 system users, and serves the virtual users' mailboxes over POP3 (port 110
 with STLS, POP3S on port 995) and IMAP (port 143 with STARTTLS, IMAPS on
 port 993).
 .
 Configuration is in /etc/posthorn/main.cf with Postfix's parameter names;
 see posthorn(7) for an overview.
EOF

(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
    xargs md5sum) >"$STAGE/DEBIAN/md5sums"
chmod 0644 "$STAGE/DEBIAN/control" "$STAGE/DEBIAN/conffiles" "$STAGE/DEBIAN/md5sums"

DEB=$OUT/${PKG}_${VERSION}_${ARCH}.deb
dpkg-deb --build --root-owner-group -Zxz "$STAGE" "$DEB" >&2
echo "$DEB"
