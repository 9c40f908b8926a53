#!/usr/bin/env bash
# tests/install/run.sh — the Debian package installation test (issue 3).
#
# As root on a Debian machine: build target/debian/posthorn_VERSION_ARCH.deb,
# install it with apt-get, make sure rsyslog runs, configure a virtual domain
# and user and a system user, start posthorn with its init script, send mail
# over SMTP to port 25, find it in both Maildirs with the right owner and mode,
# check the process owners (ps), the delivery lines in /var/log/mail.log and
# `posthorn check`; read the virtual user's mail over POP3 with STLS (port
# 110) and POP3S (995) with Python's poplib verifying the snakeoil certificate
# the postinst configured (byte-exact RETR, UIDL, DELE + QUIT), check the
# owners of the POP3 processes while a session is open, a wrong password
# (reply, log line, fail2ban's dovecot filter); read it over IMAP with
# STARTTLS (port 143) and IMAPS (993) with Python's imaplib, again verifying
# the certificate (LOGIN, SELECT INBOX, FETCH byte-exact against the Maildir
# file and, less the trace headers, against what was sent; UID EXPUNGE),
# check the owners of the IMAP processes while a session IDLEs and that new
# mail reaches it, a wrong password (NO [AUTHENTICATIONFAILED], the log line,
# fail2ban's dovecot filter); restart and reload through the init script
# (mail must flow after each, a POP3 session open across the reload must go
# on working, and an IMAP session IDLEing across it must be told of mail
# sent after it), stop, purge, and check that nothing of posthorn's was left
# behind (tests/install/leftovers.sh decides what is posthorn's from the
# .deb's file list and maintainer scripts; other programs' new files, such as
# systemctl's /run/systemd/systemd-units-load, are only noted; files planted
# under /etc/posthorn and /var/spool/posthorn show the check can fail).
# Finally the man pages are linted (tests/install/lint-man.sh).
# Submit mail as that user on 587 (STARTTLS) and 465 (TLS) with
# smtplib, verifying the certificate and logging in with AUTH; a wrong
# password gets 535 5.7.8 and smtpd's fail2ban-readable log line.
#
# Prints PASS/FAIL per step and a summary; exits 1 when any step failed.
# Cleans up on any exit (purge, test user, test mailboxes, and it reinstalls an
# MTA package that installing posthorn replaced), and first cleans up what an
# earlier interrupted run left (recorded in $STATE_FILE), so it can be run
# again at any time.
#
# Environment:
#   DEB=path.deb      test this package instead of building one
#   RESTORE_MTA=0     do not reinstall the MTA package posthorn replaced
#   KEEP_LOG=1        keep the work directory with the detailed log
#
# Needs: root, apt-get/dpkg, python3, ss (iproute2), openssl, fail2ban-regex
# (package fail2ban; .ci/run installs it); rsyslog, mandoc and ssl-cert (the
# snakeoil certificate) are installed with apt-get when missing.
set -u -o pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

STATE_FILE=/var/tmp/posthorn-install-test.state
CFG=/etc/posthorn
P=/usr/sbin/posthorn
INIT=/etc/init.d/posthorn
PIDFILE=/run/posthorn/master.pid
MAILLOG=/var/log/mail.log
VHOSTS=/var/mail/vhosts
DOMAIN=example.test
VUSER=alice@$DOMAIN
VMAILDIR=$VHOSTS/$DOMAIN/alice/Maildir
VPASS=secret-1
SNAKEOIL_CERT=/etc/ssl/certs/ssl-cert-snakeoil.pem
SNAKEOIL_KEY=/etc/ssl/private/ssl-cert-snakeoil.key
POP3=tests/install/pop3_client.py
IMAP=tests/install/imap_client.py
SYSUSER=phsys
SYSUSER_GECOS="posthorn install test"
STARTED=$(date +%s)
WORK=$(mktemp -d /tmp/posthorn-install.XXXXXX)
LOG=$WORK/run.log
export DEBIAN_FRONTEND=noninteractive

RESULTS=()
FAILS=0

note() { echo "      $*"; }
pass() {
    RESULTS+=("PASS  $1")
    echo "PASS  $1"
}
fail() {
    RESULTS+=("FAIL  $1")
    FAILS=$((FAILS + 1))
    echo "FAIL  $1"
    if [ -n "${2:-}" ]; then
        printf '%s\n' "$2" | tail -n 25 | sed 's/^/      /'
    fi
}
# check NAME COMMAND...: PASS when COMMAND succeeds; its output goes to the
# log, and is shown on failure.
check() {
    local name=$1 out rc
    shift
    out=$("$@" 2>&1)
    rc=$?
    printf '== %s (exit %s)\n%s\n' "$name" "$rc" "$out" >>"$LOG"
    if [ "$rc" = 0 ]; then
        pass "$name"
        return 0
    fi
    fail "$name" "$out"
    return 1
}
# check_here NAME COMMAND...: the same, with COMMAND run in this shell (not
# in a subshell), for steps that start or wait for background processes.
check_here() {
    local name=$1 rc
    shift
    "$@" >"$WORK/step.out" 2>&1
    rc=$?
    printf '== %s (exit %s)\n%s\n' "$name" "$rc" "$(cat "$WORK/step.out")" >>"$LOG"
    if [ "$rc" = 0 ]; then
        pass "$name"
        return 0
    fi
    fail "$name" "$(cat "$WORK/step.out")"
    return 1
}
# wait_for SECONDS COMMAND...: retry COMMAND every 0.2 s until it succeeds.
wait_for() {
    local limit=$(($1 * 5)) i=0
    shift
    while [ "$i" -lt "$limit" ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
        i=$((i + 1))
    done
    "$@"
}
record() {
    echo "$1" >>"$STATE_FILE"
    cp "$STATE_FILE" "$WORK/state.copy"
}
recorded() { grep -qx "$1" "$STATE_FILE" 2>/dev/null; }
pkg_status() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null; }
pkg_present() { pkg_status "$1" | grep -Eq 'installed|config-files|half|unpacked'; }
master_pid() { tr -dc '0-9' <"$PIDFILE" 2>/dev/null; }
# pid user comm of every process (comm is at most 15 characters).
procs() { ps -eo pid=,ppid=,user:20=,comm= ; }
# Processes running the package's programs (not, say, a development
# instance or the workspace's own tests running at the same time).
package_procs() {
    local pid exe
    for pid in $(ps -eo pid=,comm= | awk '$2 ~ /^posthorn/ { print $1 }'); do
        exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
        case $exe in
            /usr/sbin/posthorn* | /usr/lib/posthorn/*) ps -o pid=,user=,comm=,args= -p "$pid" ;;
        esac
    done
}
no_package_procs() {
    local p
    p=$(package_procs)
    [ -z "$p" ] || { echo "still running:"; echo "$p"; return 1; }
}

# --- cleanup -----------------------------------------------------------------

stop_posthorn() {
    if [ -x "$P" ]; then
        "$P" stop -c "$CFG" >/dev/null 2>&1 || true
    fi
    # A master whose program is gone: signal it by its pid file.
    local pid
    pid=$(master_pid)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_for 15 sh -c "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null || true
    fi
}

# Undo what this run (or an interrupted earlier one) recorded in $STATE_FILE.
undo_state() {
    if pkg_present posthorn; then
        stop_posthorn
        apt-get purge -y -q posthorn || dpkg --purge posthorn || true
    fi
    if recorded "pkg-installed:ssl-cert" && pkg_present ssl-cert; then
        apt-get purge -y -q ssl-cert || true
    fi
    if recorded "user:$SYSUSER" && getent passwd "$SYSUSER" >/dev/null; then
        userdel -r "$SYSUSER" 2>/dev/null || userdel "$SYSUSER" || true
    fi
    if recorded "vhosts:created"; then
        rm -rf "$VHOSTS"
    elif recorded "vhosts:existed"; then
        rm -rf "${VHOSTS:?}/$DOMAIN/alice"
        rmdir "$VHOSTS/$DOMAIN" 2>/dev/null || true
    fi
    if [ "${RESTORE_MTA:-1}" = 1 ]; then
        for p in $(sed -n 's/^mta-removed://p' "$STATE_FILE" 2>/dev/null); do
            pkg_status "$p" | grep -q 'ok installed' && continue
            echo "reinstalling $p, which posthorn replaced"
            apt-get install -y -q "$p" || echo "could not reinstall $p"
        done
    fi
    local pid
    pid=$(sed -n 's/^rsyslog-started://p' "$STATE_FILE" 2>/dev/null | tail -n 1)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
    fi
    rm -f "$STATE_FILE"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "${HOLD_PID:-}" ]; then
        kill "$HOLD_PID" 2>/dev/null || true
    fi
    if [ -n "${IDLE_PID:-}" ]; then
        kill "$IDLE_PID" 2>/dev/null || true
    fi
    echo "== cleanup" >>"$LOG"
    undo_state >>"$LOG" 2>&1
    if [ -n "$(sed -n 's/^mta-removed://p' "$WORK/state.copy" 2>/dev/null)" ]; then
        for p in $(sed -n 's/^mta-removed://p' "$WORK/state.copy"); do
            if pkg_status "$p" | grep -q 'ok installed'; then
                echo "cleanup: reinstalled $p, which posthorn had replaced"
            else
                echo "cleanup: could not reinstall $p (see $LOG)"
            fi
        done
    fi
    if [ "${KEEP_LOG:-0}" = 1 ] || [ "$FAILS" -gt 0 ]; then
        echo "detailed log: $LOG"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}

summary() {
    local secs=$(($(date +%s) - STARTED))
    echo
    echo "== summary (${secs}s)"
    printf '%s\n' "${RESULTS[@]}"
    if [ "$FAILS" -gt 0 ]; then
        echo "RESULT: FAIL ($FAILS of ${#RESULTS[@]} steps failed)"
        return 1
    fi
    echo "RESULT: PASS (${#RESULTS[@]} steps)"
}

# --- preflight ---------------------------------------------------------------

echo "== posthorn package installation test ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
if [ "$(id -u)" != 0 ]; then
    echo "FAIL  run as root (installs a package, binds port 25)"
    exit 1
fi
for tool in dpkg apt-get python3 ss ps openssl; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "FAIL  $tool is required"
        exit 1
    fi
done

# Leftovers of an interrupted earlier run first (they may hold port 25).
if [ -f "$STATE_FILE" ]; then
    echo "cleaning up after an earlier run ($STATE_FILE)"
    undo_state >>"$LOG" 2>&1
fi
trap cleanup EXIT
trap 'echo "FAIL  interrupted"; FAILS=$((FAILS + 1)); summary; exit 130' INT TERM
: >"$STATE_FILE"
if pkg_present posthorn; then
    echo "posthorn is installed already: purging it first"
    stop_posthorn >>"$LOG" 2>&1
    apt-get purge -y -q posthorn >>"$LOG" 2>&1 || dpkg --purge posthorn >>"$LOG" 2>&1
fi
if getent passwd "$SYSUSER" >/dev/null; then
    if [ "$(getent passwd "$SYSUSER" | cut -d: -f5)" = "$SYSUSER_GECOS" ]; then
        userdel -r "$SYSUSER" >>"$LOG" 2>&1 || true
    else
        fail "preflight: user $SYSUSER exists and was not made by this test"
        summary
        exit 1
    fi
fi

listeners=$(ss -Hltnp '( sport = :25 or sport = :110 or sport = :995 or sport = :143 or sport = :993 or sport = :587 or sport = :465 )' 2>/dev/null)
if [ -n "$listeners" ]; then
    fail "preflight: ports 25, 110, 995, 143, 993, 587 and 465 are free" "a port is taken by another program on this machine; stop it first:
$listeners"
    summary
    exit 1
fi
pass "preflight: root, tools, ports 25, 110, 995, 143, 993, 587 and 465 free"

check "the leftover rule (tests/install/leftovers-test.sh)" sh tests/install/leftovers-test.sh

# --- build -------------------------------------------------------------------

if [ -n "${DEB:-}" ]; then
    check "package given: $DEB" test -f "$DEB" || { summary; exit 1; }
else
    if check "build the package (packaging/build-deb.sh)" sh packaging/build-deb.sh; then
        DEB=$(tail -n 1 "$LOG" | tr -d '\r')
    fi
    if [ -z "${DEB:-}" ] || [ ! -f "$DEB" ]; then
        summary
        exit 1
    fi
fi
note "package: $DEB ($(du -h "$DEB" | cut -f1))"
check "dpkg-deb reads the package" dpkg-deb --info "$DEB"

# --- rsyslog -----------------------------------------------------------------

rsyslog_running() {
    local pid
    pid=$(cat /run/rsyslogd.pid 2>/dev/null)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}
ensure_rsyslog() {
    if ! command -v rsyslogd >/dev/null 2>&1; then
        apt-get install -y -q rsyslog || return 1
    fi
    rsyslog_running && return 0
    if [ -x /etc/init.d/rsyslog ]; then
        /etc/init.d/rsyslog start </dev/null >/dev/null 2>&1 || true
    fi
    rsyslog_running || rsyslogd </dev/null >/dev/null 2>&1 || true
    wait_for 10 rsyslog_running || return 1
    record "rsyslog-started:$(cat /run/rsyslogd.pid)"
}
check "rsyslog installed and running" ensure_rsyslog
marker="posthorn-install-test-marker-$$-$STARTED"
logger -p mail.info -t posthorn-install-test "$marker" 2>/dev/null
check "rsyslog writes facility mail to $MAILLOG" wait_for 10 grep -q "$marker" "$MAILLOG"
# Log checks look only at what this run adds to the log.
LOGSTART=$(stat -c %s "$MAILLOG" 2>/dev/null || echo 0)
log_has() { tail -c +"$((LOGSTART + 1))" "$MAILLOG" | grep -q -- "$1"; }

# --- the snakeoil certificate ----------------------------------------------------

# The postinst points TLS at it, as Debian's postfix does; the POP3 steps
# verify the server's certificate against it.
ensure_snakeoil() {
    if [ ! -f "$SNAKEOIL_CERT" ] || [ ! -f "$SNAKEOIL_KEY" ]; then
        pkg_status ssl-cert | grep -q 'ok installed' || record "pkg-installed:ssl-cert"
        apt-get install -y -q ssl-cert || return 1
        [ -f "$SNAKEOIL_CERT" ] || make-ssl-cert generate-default-snakeoil || return 1
    fi
    openssl x509 -in "$SNAKEOIL_CERT" -noout -subject -ext subjectAltName
    ls -l "$SNAKEOIL_KEY"
}
check "the ssl-cert snakeoil certificate exists ($SNAKEOIL_CERT)" ensure_snakeoil
# The name it is made out to (its subject's CN), which clients verify.
TLSNAME=$(openssl x509 -in "$SNAKEOIL_CERT" -noout -subject -nameopt RFC2253 2>/dev/null |
    sed -n 's/^subject=.*CN=\([^,]*\).*/\1/p')
note "snakeoil certificate for: ${TLSNAME:-?}"

# --- what the machine looked like before -------------------------------------

accounts() { { getent passwd | cut -d: -f1 | sed 's/^/user /'; getent group | cut -d: -f1 | sed 's/^/group /'; } | sort; }
SNAP_ROOTS=(/etc /usr/sbin /usr/lib /usr/share/man /usr/share/doc /lib/systemd/system /var/spool /var/lib /var/mail /run)
snapshot() {
    find "${SNAP_ROOTS[@]}" -xdev \
        \( -path /var/lib/dpkg -o -path /var/lib/apt -o -path /var/lib/ucf -o -path /var/lib/systemd/deb-systemd-helper-masked \
        -o -path /run/rsyslogd.pid -o -path "$VHOSTS" -o -path /var/lib/python3 \) -prune -o -print 2>/dev/null |
        grep -Ev '^/etc/(passwd|group|shadow|gshadow|subuid|subgid)-?$|^/var/lib/systemd/deb-systemd-helper-enabled$' | sort
}
accounts >"$WORK/accounts.before"
snapshot >"$WORK/files.before"
if [ -d "$VHOSTS" ]; then record "vhosts:existed"; else record "vhosts:created"; fi
for p in $(dpkg-query -W -f='${Package} ${Status} ${Provides}\n' 2>/dev/null |
    awk '/ok installed/ && /mail-transport-agent/ { print $1 }'); do
    [ "$p" = posthorn ] && continue
    record "mta-removed:$p"
    note "installed MTA $p will be replaced by posthorn (Conflicts: mail-transport-agent) and reinstalled afterwards"
done

# --- install -----------------------------------------------------------------

if ! check "apt-get install ./$(basename "$DEB")" apt-get install -y -q "$DEB"; then
    summary
    exit 1
fi
check "dpkg: posthorn is installed" sh -c "dpkg-query -W -f='\${Status}' posthorn | grep -qx 'install ok installed'"
for p in $(sed -n 's/^mta-removed://p' "$STATE_FILE"); do
    check "the replaced MTA $p was removed" sh -c "! dpkg-query -W -f='\${Status}' $p 2>/dev/null | grep -q 'ok installed'"
done

files_present() {
    local f missing=""
    for f in /usr/sbin/posthorn /usr/lib/posthorn/posthorn-master /usr/lib/posthorn/posthorn-smtpd \
        /usr/lib/posthorn/posthorn-qmgr /usr/lib/posthorn/posthorn-local /usr/lib/posthorn/posthorn-smtp \
        /usr/lib/posthorn/posthorn-anvil /usr/share/man/man8/posthorn-smtp.8.gz \
        /usr/lib/posthorn/posthorn-auth /usr/lib/posthorn/posthorn-pop3d /usr/lib/posthorn/posthorn-pop3-login \
        /usr/share/man/man1/posthorn.1.gz /usr/share/man/man5/main.cf.5.gz /usr/share/man/man5/master.cf.5.gz \
        /usr/share/man/man5/posthorn-users.5.gz /usr/share/man/man7/posthorn.7.gz \
        /usr/share/man/man8/posthorn-master.8.gz /usr/share/man/man8/posthorn-smtpd.8.gz \
        /usr/share/man/man8/posthorn-qmgr.8.gz /usr/share/man/man8/posthorn-local.8.gz \
        /usr/share/man/man8/posthorn-auth.8.gz /usr/share/man/man8/posthorn-pop3-login.8.gz \
        /usr/share/man/man8/posthorn-pop3d.8.gz /usr/lib/posthorn/posthorn-imapd \
        /usr/lib/posthorn/posthorn-imap-login /usr/share/man/man8/posthorn-imap-login.8.gz \
        /usr/share/man/man8/posthorn-imapd.8.gz /usr/lib/posthorn/posthorn-pickup \
        /usr/share/man/man8/posthorn-pickup.8.gz /usr/share/man/man1/sendmail.1.gz \
        /usr/share/man/man1/postdrop.1.gz /usr/sbin/sendmail /usr/lib/sendmail /usr/sbin/postdrop \
        $CFG/main.cf $CFG/master.cf $CFG/users $INIT /lib/systemd/system/posthorn.service \
        /usr/share/doc/posthorn/copyright /usr/share/posthorn/aliases /etc/aliases \
        /usr/bin/newaliases /usr/share/man/man1/newaliases.1.gz; do
        [ -e "$f" ] || missing="$missing $f"
    done
    [ -z "$missing" ] || { echo "missing:$missing"; return 1; }
    [ -x /usr/sbin/posthorn ] && [ -x /usr/lib/posthorn/posthorn-master ] && [ -x "$INIT" ]
}
check "installed files (programs, daemons, man pages, conffiles, init script, unit)" files_present
daemons_are_links() {
    local d
    for d in master smtpd qmgr local smtp anvil auth pop3d pop3-login imapd imap-login pickup; do
        [ "$(readlink -f "/usr/lib/posthorn/posthorn-$d")" = /usr/sbin/posthorn ] ||
            { echo "/usr/lib/posthorn/posthorn-$d is not a link to /usr/sbin/posthorn"; return 1; }
    done
}
check "every daemon in /usr/lib/posthorn is the multi-call /usr/sbin/posthorn" daemons_are_links
check "newaliases finds no error in /etc/aliases" newaliases
conffiles_ok() {
    local c
    c=$(dpkg-query -W -f='${Conffiles}\n' posthorn)
    echo "$c"
    for f in $CFG/main.cf $CFG/master.cf $CFG/users $INIT; do
        echo "$c" | grep -q " $f " || return 1
    done
}
check "conffiles registered: main.cf master.cf users init script" conffiles_ok
if command -v man >/dev/null 2>&1; then
    check "man finds main.cf(5), posthorn-smtpd(8), posthorn-pop3d(8) and posthorn-imapd(8)" sh -c 'man -w 5 main.cf && man -w 8 posthorn-smtpd && man -w 8 posthorn-pop3d && man -w 8 posthorn-imapd'
fi

accounts_ok() {
    local pw
    pw=$(getent passwd posthorn) || { echo "no user posthorn"; return 1; }
    echo "$pw"
    getent group postdrop || { echo "no group postdrop"; return 1; }
    [ "$(echo "$pw" | cut -d: -f6)" = /var/spool/posthorn ] || { echo "home is not /var/spool/posthorn"; return 1; }
    case $(echo "$pw" | cut -d: -f7) in */nologin | /bin/false) ;; *) echo "login shell"; return 1 ;; esac
    [ "$(echo "$pw" | cut -d: -f3)" -lt 1000 ] || { echo "not a system uid"; return 1; }
    # system_account USER HOME: a system account with no login shell.
    system_account() {
        local a
        a=$(getent passwd "$1") || { echo "no user $1"; return 1; }
        echo "$a"
        getent group "$1" || { echo "no group $1"; return 1; }
        [ "$(echo "$a" | cut -d: -f4)" = "$(getent group "$1" | cut -d: -f3)" ] || { echo "$1: not in group $1"; return 1; }
        [ "$(echo "$a" | cut -d: -f6)" = "$2" ] || { echo "$1: home is not $2"; return 1; }
        case $(echo "$a" | cut -d: -f7) in */nologin | /bin/false) ;; *) echo "$1: login shell"; return 1 ;; esac
        [ "$(echo "$a" | cut -d: -f3)" -lt 1000 ] || { echo "$1: not a system uid"; return 1; }
    }
    system_account posthorn-login /nonexistent || return 1
    system_account posthorn-vmail "$VHOSTS" || return 1
    [ "$(id -u posthorn-vmail)" != "$(id -u posthorn)" ] || { echo "posthorn-vmail shares posthorn's uid"; return 1; }
}
check "accounts: system users posthorn (home /var/spool/posthorn), posthorn-login, posthorn-vmail (home $VHOSTS), nologin; group postdrop" accounts_ok

# path mode owner group
perms_are() {
    local got
    got=$(stat -c '%a %U %G' "$1" 2>&1) || { echo "$1: $got"; return 1; }
    [ "$got" = "$2 $3 $4" ] || { echo "$1: $got, expected $2 $3 $4"; return 1; }
}
spool_ok() {
    local bad=0
    perms_are /var/spool/posthorn 755 root root || bad=1
    perms_are /var/spool/posthorn/maildrop 1730 posthorn postdrop || bad=1
    perms_are /var/spool/posthorn/public 710 posthorn postdrop || bad=1
    for d in incoming active deferred hold corrupt private; do
        perms_are /var/spool/posthorn/$d 700 posthorn posthorn || bad=1
    done
    perms_are /var/spool/posthorn/login 750 posthorn posthorn-login || bad=1
    perms_are /var/spool/posthorn/pid 755 root posthorn || bad=1
    perms_are "$VHOSTS" 755 root root || recorded "vhosts:existed" || bad=1
    perms_are $CFG/users 600 root root || bad=1
    return $bad
}
check "spool tree, $VHOSTS and users file owners and modes (postinst)" spool_ok
if command -v systemd-analyze >/dev/null 2>&1; then
    unit_ok() {
        local out
        out=$(systemd-analyze verify /lib/systemd/system/posthorn.service 2>&1)
        echo "$out"
        ! echo "$out" | grep -q 'posthorn.service'
    }
    check "systemd-analyze verify posthorn.service" unit_ok
fi
check "init script registered (update-rc.d links)" sh -c 'ls /etc/rc2.d/S*posthorn && ls /etc/rc0.d/K*posthorn'

# The postinst's settings: TLS with the snakeoil pair, virtual mailboxes
# owned by posthorn-vmail.
postinst_settings_ok() {
    local set want
    set=$("$P" config -n -c "$CFG") || return 1
    echo "$set"
    want="smtpd_tls_cert_file = $SNAKEOIL_CERT
smtpd_tls_key_file = $SNAKEOIL_KEY
virtual_uid_maps = static:$(id -u posthorn-vmail)
virtual_gid_maps = static:$(getent group posthorn-vmail | cut -d: -f3)"
    [ "$(echo "$set" | grep -E '^(smtpd_tls_(cert|key)_file|virtual_[ug]id_maps) =')" = "$want" ] ||
        { echo "expected:"; echo "$want"; return 1; }
}
check "postinst set smtpd_tls_cert_file/key_file to the snakeoil pair and virtual_uid_maps/gid_maps to posthorn-vmail" postinst_settings_ok

# --- configure ---------------------------------------------------------------

if "$P" config -c "$CFG" -e "myhostname=mail.$DOMAIN" "virtual_mailbox_domains=$DOMAIN" >>"$LOG" 2>&1; then
    pass "posthorn config -e myhostname=mail.$DOMAIN virtual_mailbox_domains=$DOMAIN"
else
    fail "posthorn config -e (falling back to editing main.cf with sed)"
    printf 'myhostname = mail.%s\nvirtual_mailbox_domains = %s\n' "$DOMAIN" "$DOMAIN" >>$CFG/main.cf
fi
check "posthorn config shows the settings" sh -c "$P config -c $CFG myhostname virtual_mailbox_domains | tee /dev/stderr | grep -qx 'virtual_mailbox_domains = $DOMAIN'"
check "posthorn config -d prints computed defaults (myhostname is not @hostname@)" sh -c "! $P config -d -c $CFG myhostname mydomain | grep '@'"
check "mydomain follows myhostname (main.cf(5): \$myhostname less its first label)" sh -c "$P config -c $CFG mydomain | grep -qx 'mydomain = $DOMAIN'"
check "posthorn user add $VUSER" "$P" user add "$VUSER" --password "$VPASS" -c "$CFG"
check "users file lists $VUSER with an ARGON2ID hash" grep -q "^$VUSER:{ARGON2ID}\\\$argon2id\\\$" $CFG/users
check "users file still root:root 0600 after posthorn user add (only auth and local read it)" perms_are $CFG/users 600 root root
check "useradd -m $SYSUSER (a system user)" useradd -m -c "$SYSUSER_GECOS" -s /bin/sh "$SYSUSER" && record "user:$SYSUSER"
check_clean() {
    local out rc
    out=$("$P" check -c "$CFG" 2>&1)
    rc=$?
    echo "$out"
    [ "$rc" = 0 ] && ! echo "$out" | grep -Eq 'error|warning'
}
check "posthorn check: exit 0, no errors or warnings" check_clean

# --- start -------------------------------------------------------------------

running() { "$P" status -c "$CFG" >/dev/null 2>&1; }
listening25() { [ -n "$(ss -Hltn 'sport = :25')" ]; }
check "$INIT start" "$INIT" start
check "$INIT status says running (exit 0)" "$INIT" status
check "master.pid names a live process" sh -c "kill -0 \$(tr -dc 0-9 < $PIDFILE)"
check "port 25 is listening" wait_for 10 listening25
check "master logged 'daemon started' to $MAILLOG" wait_for 10 log_has 'posthorn/master\[[0-9]*\]: daemon started'

# ps: master as root, smtpd and qmgr as posthorn, local as root.
workers_ok() {
    local m list
    m=$(master_pid)
    list=$(procs | awk -v m="$m" '$1 == m || $2 == m')
    echo "$list"
    echo "$list" | awk -v m="$m" '$1 == m && $3 == "root" { f = 1 } END { exit !f }' || { echo "master is not root"; return 1; }
    for w in posthorn-smtpd posthorn-qmgr; do
        echo "$list" | awk -v w="$w" '$4 == w { n++ } END { exit !n }' || { echo "no $w"; return 1; }
        echo "$list" | awk -v w="$w" '$4 == w && $3 != "posthorn" { bad = 1 } END { exit bad }' || { echo "$w not as posthorn"; return 1; }
    done
    echo "$list" | awk '$4 == "posthorn-local" { n++ } END { exit !n }' || { echo "no posthorn-local"; return 1; }
    echo "$list" | awk '$4 == "posthorn-local" && $3 != "root" { bad = 1 } END { exit bad }' || { echo "local not as root"; return 1; }
}
check "ps: master runs as root, posthorn-smtpd and posthorn-qmgr as posthorn, posthorn-local as root" wait_for 10 workers_ok
master_named() {
    local m
    m=$(master_pid)
    ps -o pid=,user=,comm=,args= -p "$m"
    [ "$(ps -o comm= -p "$m")" = posthorn-master ]
}
check "ps: the master process is named posthorn-master" master_named

# --- mail --------------------------------------------------------------------

# send_mail TOKEN: one message to the virtual and the system user over SMTP on
# port 25; prints the queue id. The message as sent is kept in
# $WORK/sent-TOKEN.eml (the IMAP steps compare what they fetch with it).
send_mail() {
    python3 - "$WORK/sent-$1.eml" "$1" "$VUSER" "$SYSUSER@localhost" <<'PY'
import re, smtplib, sys
sent, tok, rcpts = sys.argv[1], sys.argv[2], sys.argv[3:]
msg = (f"From: tester@example.org\r\nTo: {', '.join(rcpts)}\r\nSubject: {tok}\r\n"
       f"Message-ID: <{tok}@example.org>\r\n\r\nThis is {tok}.\r\n").encode()
with open(sent, "wb") as f:
    f.write(msg)
with smtplib.SMTP("127.0.0.1", 25, timeout=30) as s:
    code, _ = s.ehlo("client.example.org")
    assert code == 250, code
    code, text = s.mail("tester@example.org")
    assert code == 250, (code, text)
    for r in rcpts:
        code, text = s.rcpt(r)
        assert code == 250, (r, code, text)
    code, text = s.data(msg)
    assert code == 250, (code, text)
    m = re.search(rb"queued as (\S+)", text)
    assert m, text
    print(m.group(1).decode())
PY
}
# maildir_file DIR TOKEN: the file in DIR/new holding TOKEN.
maildir_file() { grep -l -- "$2" "$1"/new/* 2>/dev/null | head -n 1; }
# arrived DIR TOKEN: there is one (for wait_for, which runs its command again
# each time; a $(...) in its arguments would be looked at only once).
arrived() { [ -n "$(maildir_file "$1" "$2")" ]; }
# deliver ROUND: send, find both deliveries, check owners, modes and the log.
# Sets VFILE to the virtual user's new message file and VTOKEN to its token.
VFILE='' VTOKEN=''
deliver() {
    local round=$1 tok qid f
    tok="posthorn-install-test-$round-$$-$STARTED"
    if ! qid=$(send_mail "$tok" 2>&1); then
        fail "$round: SMTP to port 25 accepts mail for $VUSER and $SYSUSER@localhost" "$qid"
        return 1
    fi
    pass "$round: SMTP to port 25 accepted mail for $VUSER and $SYSUSER@localhost (queued as $qid)"
    if wait_for 30 arrived "$VMAILDIR" "$tok"; then
        f=$(maildir_file "$VMAILDIR" "$tok")
        VFILE=$f VTOKEN=$tok
        check "$round: $VUSER's message is in $VMAILDIR/new, owner posthorn-vmail, mode 0600" perms_are "$f" 600 posthorn-vmail posthorn-vmail
        check "$round: $VUSER's Maildir is owner posthorn-vmail, mode 0700" perms_are "$VMAILDIR/new" 700 posthorn-vmail posthorn-vmail
    else
        fail "$round: $VUSER's message arrives in $VMAILDIR/new" "$(ls -la "$VMAILDIR/new" 2>&1; tail -n 20 "$MAILLOG")"
    fi
    local home
    home=$(getent passwd "$SYSUSER" | cut -d: -f6)
    if wait_for 30 arrived "$home/Maildir" "$tok"; then
        f=$(maildir_file "$home/Maildir" "$tok")
        check "$round: $SYSUSER's message is in ~$SYSUSER/Maildir/new, owner $SYSUSER, mode 0600" perms_are "$f" 600 "$SYSUSER" "$SYSUSER"
        check "$round: message starts with Return-Path and Delivered-To" sh -c "head -n 2 '$f' | tr '\n' ' ' | grep -q '^Return-Path: <tester@example.org> Delivered-To: $SYSUSER@localhost'"
    else
        fail "$round: $SYSUSER's message arrives in ~$SYSUSER/Maildir/new" "$(ls -la "$home/Maildir/new" 2>&1; tail -n 20 "$MAILLOG")"
    fi
    check "$round: $MAILLOG has status=sent for both recipients" wait_for 15 sh -c \
        "grep -q 'posthorn/local\[[0-9]*\]: $qid: to=<$VUSER>, relay=virtual, .*status=sent' $MAILLOG &&
         grep -q 'posthorn/local\[[0-9]*\]: $qid: to=<$SYSUSER@localhost>, relay=local, .*status=sent' $MAILLOG"
    check "$round: $MAILLOG has smtpd's client= and qmgr's queue active lines for $qid" wait_for 15 sh -c \
        "grep -q 'posthorn/smtpd\[[0-9]*\]: $qid: client=' $MAILLOG && grep -q 'posthorn/qmgr\[[0-9]*\]: $qid: from=<tester@example.org>, size=[0-9]*, nrcpt=2 (queue active)' $MAILLOG"
    check "$round: qmgr removed $qid (every recipient done)" wait_for 15 grep -q "posthorn/qmgr\[[0-9]*\]: $qid: removed" "$MAILLOG"
}
deliver "first start"

# --- sendmail, postdrop, pickup (local submission) ---------------------------

check "/usr/sbin/postdrop is root:postdrop 2755 (setgid postdrop)" perms_are /usr/sbin/postdrop 2755 root postdrop
check "/usr/sbin/sendmail is the multi-call /usr/sbin/posthorn" sh -c '[ "$(readlink -f /usr/sbin/sendmail)" = /usr/sbin/posthorn ]'
check "postdrop links no TLS, DNS or MIME code (small, setgid)" sh -c \
    '! strings /usr/sbin/postdrop | grep -qiE "rustls|hickory|mail_parser"'
# sendmail_as_nobody TOKEN: sendmail -t -i as user nobody, to $VUSER with a
# Bcc: to $SYSUSER@localhost.
sendmail_as_nobody() {
    printf 'To: %s\nBcc: %s@localhost\nSubject: %s\n\nfrom cron\n.\nlast line' "$VUSER" "$SYSUSER" "$1" |
        (cd / && runuser -u nobody -- /usr/sbin/sendmail -t -i)
}
SMTOK="posthorn-install-sendmail-$$-$STARTED"
check "as nobody: sendmail -t -i exits 0" sendmail_as_nobody "$SMTOK"
if wait_for 30 arrived "$VMAILDIR" "$SMTOK"; then
    f=$(maildir_file "$VMAILDIR" "$SMTOK")
    check "as nobody: the message reached $VUSER with Received: from userid $(id -u nobody), the lone dot kept, Bcc: removed" sh -c \
        "grep -q 'from userid $(id -u nobody))' '$f' && grep -qx '\.' '$f' && ! grep -q '^Bcc:' '$f' && tail -n 1 '$f' | grep -qx 'last line'"
    check "as nobody: $MAILLOG has pickup's 'uid=$(id -u nobody) from=<nobody@...>' line" \
        grep -q "posthorn/pickup\[[0-9]*\]: [0-9A-Za-z]*: uid=$(id -u nobody) from=<nobody@" "$MAILLOG"
else
    fail "as nobody: the sendmail message reaches $VUSER" "$(ls -la "$VMAILDIR/new" 2>&1; tail -n 20 "$MAILLOG")"
fi
home=$(getent passwd "$SYSUSER" | cut -d: -f6)
check "as nobody: the Bcc: recipient $SYSUSER got it too" wait_for 30 arrived "$home/Maildir" "$SMTOK"
check "as nobody: ls of the spool's maildrop/ and incoming/ is refused" sh -c \
    '! runuser -u nobody -- ls /var/spool/posthorn/maildrop && ! runuser -u nobody -- ls /var/spool/posthorn/incoming'
# A file as postdrop leaves it (mode 0644; T.* is never taken by pickup).
cat_refused() {
    local f=/var/spool/posthorn/maildrop/T.install-test.$$
    echo secret >"$f" && chmod 0644 "$f"
    ! runuser -u nobody -- cat "$f" 2>/dev/null
    local r=$?
    rm -f "$f"
    return $r
}
check "as nobody: cat of a (mode 0644) file in maildrop/ is refused" cat_refused
check "as nobody: postdrop refuses another configuration directory (exit 77)" sh -c \
    'echo | runuser -u nobody -- /usr/sbin/postdrop -c /tmp; [ $? -eq 77 ]'

# --- POP3 --------------------------------------------------------------------

# pop3 ACTION MODE PORT [ARGS]: tests/install/pop3_client.py as $VUSER,
# verifying the snakeoil certificate for $TLSNAME.
pop3() {
    local action=$1 mode=$2 port=$3
    shift 3
    python3 "$POP3" "$action" "$mode" "$port" "$SNAKEOIL_CERT" "$TLSNAME" "$VUSER" "$VPASS" "$@"
}
listening_pop3() { [ -n "$(ss -Hltn 'sport = :110')" ] && [ -n "$(ss -Hltn 'sport = :995')" ]; }
check "POP3 (110) and POP3S (995) are listening" wait_for 10 listening_pop3
# The delivered file as it is now: the first login moves it to cur/ under
# another name.
first_file='' first_token=$VTOKEN
if [ -n "$VFILE" ] && cp "$VFILE" "$WORK/first.msg"; then
    first_file=$WORK/first.msg
fi
UIDL=
pop3_read_stls() {
    local out
    out=$(pop3 read stls 110 "$first_file") || { echo "$out"; return 1; }
    echo "$out"
    UIDL=$(echo "$out" | sed -n 's/^UIDL //p')
    echo "UIDL: $UIDL"
    # Dovecot's %08Xu%08Xv: UID and UIDVALIDITY, eight lower-case hex digits each.
    echo "$UIDL" | grep -Eqx '[0-9a-f]{16}' || { echo "UIDL $UIDL is not Dovecot's format"; return 1; }
}
if [ -n "$first_file" ]; then
    # In this shell: it sets UIDL.
    check_here "POP3 STLS on port 110: poplib verifies the snakeoil certificate ($TLSNAME), logs in as $VUSER, RETR is the Maildir file byte for byte (CRLF), UIDL in Dovecot's format" pop3_read_stls
else
    fail "POP3: no delivered message to read"
fi
check "TLS verification is real: the certificate is refused for another name" sh -c \
    "python3 $POP3 badname ssl 995 $SNAKEOIL_CERT not-$TLSNAME.invalid $VUSER x | grep '^REFUSED'"

# A session held open in the background: tests/install/pop3_client.py hold,
# its stdin a FIFO that this shell keeps open (HOLD_FD), its output in a file.
HOLD_PID='' HOLD_FD=''
# hold_start MODE PORT: open the session; fails unless it logs in.
hold_start() {
    rm -f "$WORK/hold.in" "$WORK/hold.out"
    mkfifo "$WORK/hold.in" || return 1
    pop3 hold "$1" "$2" <"$WORK/hold.in" >"$WORK/hold.out" 2>&1 &
    HOLD_PID=$!
    exec {HOLD_FD}>"$WORK/hold.in"
    wait_for 30 grep -q '^READY' "$WORK/hold.out"
    local rc=$?
    cat "$WORK/hold.out"
    return $rc
}
# hold_finish: let the held session go on (STAT, RETR every message, NOOP,
# QUIT) and end.
hold_finish() {
    local rc
    [ -n "$HOLD_PID" ] || { echo "no session is held"; return 1; }
    echo go >&"$HOLD_FD"
    exec {HOLD_FD}>&-
    wait "$HOLD_PID"
    rc=$?
    HOLD_PID=
    cat "$WORK/hold.out"
    [ "$rc" = 0 ] && grep -q '^DONE' "$WORK/hold.out"
}
pop3_procs_ok() {
    local m list disp bad=0
    m=$(master_pid)
    list=$(ps -eo pid=,ppid=,user:20=,args=)
    echo "$list" | awk -v m="$m" '$1 == m || $2 == m'
    # pop3-login: the two services' processes (maxproc 2 each), as posthorn-login.
    echo "$list" | awk -v m="$m" '$2 == m && $4 == "posthorn-pop3-login" { n++; if ($3 != "posthorn-login") bad = 1 }
        END { exit !(n >= 4 && !bad) }' || { echo "posthorn-pop3-login: not 4 processes as posthorn-login"; bad=1; }
    disp=$(echo "$list" | awk -v m="$m" '$2 == m && $4 == "posthorn-pop3d" { print $1 }')
    [ "$(echo "$disp" | wc -w)" = 1 ] || { echo "not one dispatcher: $disp"; return 1; }
    echo "$list" | awk -v d="$disp" '$1 == d && $3 == "root" { f = 1 } END { exit !f }' ||
        { echo "the dispatcher posthorn-pop3d is not root"; bad=1; }
    echo "mailbox processes (children of the dispatcher $disp):"
    echo "$list" | awk -v d="$disp" '$2 == d'
    echo "$list" | awk -v d="$disp" '$2 == d && $4 == "posthorn-pop3d" { n++; if ($3 != "posthorn-vmail") bad = 1 }
        END { exit !(n >= 1 && !bad) }' || { echo "no mailbox process as posthorn-vmail"; bad=1; }
    echo "$list" | awk -v m="$m" '$2 == m && $4 == "posthorn-auth" && $3 == "root" { f = 1 } END { exit !f }' ||
        { echo "posthorn-auth is not running as root"; bad=1; }
    return $bad
}
if check_here "POP3 STLS session held open (logged in)" hold_start stls 110; then
    check "ps: posthorn-pop3-login as posthorn-login, the dispatcher posthorn-pop3d as root, its child mailbox process posthorn-pop3d as posthorn-vmail, posthorn-auth as root" wait_for 10 pop3_procs_ok
    check_here "the held session goes on: STAT, RETR, NOOP, QUIT" hold_finish
fi
check "the users file is 0600 root:root (only auth and local read it)" perms_are "$CFG/users" 600 root root
check "$VUSER's Maildir belongs to posthorn-vmail (mode 0700)" perms_are "$VMAILDIR" 700 posthorn-vmail posthorn-vmail
pop3_delete_ssl() {
    pop3 delete ssl 995 "$first_file" "$UIDL" || return 1
    # QUIT deleted it from the Maildir.
    if grep -rl -- "$first_token" "$VMAILDIR/new" "$VMAILDIR/cur" 2>/dev/null; then
        echo "still in the Maildir"
        return 1
    fi
}
if [ -n "$first_file" ] && [ -n "$UIDL" ]; then
    check "POP3S on port 995: the same UIDL, RETR byte for byte, DELE + QUIT deletes the message from the Maildir" pop3_delete_ssl
else
    fail "POP3S on port 995: DELE + QUIT (no message or no UIDL from the STLS step)"
fi

# A wrong password: Dovecot's reply after the delay, its log line, fail2ban.
wrong_password() {
    local out
    out=$(python3 "$POP3" fail stls 110 "$SNAKEOIL_CERT" "$TLSNAME" "$VUSER" wrong-password) || { echo "$out"; return 1; }
    echo "$out"
    echo "$out" | grep -qx 'REPLY -ERR \[AUTH\] Authentication failed\.'
}
check "POP3 with a wrong password: -ERR [AUTH] Authentication failed." wrong_password
check "$MAILLOG has pop3-login's 'Disconnected (auth failed, 1 attempts in N secs): user=<$VUSER>, method=PLAIN, rip=127.0.0.1' line" \
    wait_for 15 log_has "posthorn/pop3-login\[[0-9]*\]: Disconnected (auth failed, 1 attempts in [0-9]* secs): user=<$VUSER>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, TLS"
check "$MAILLOG has pop3-login's 'Login: user=<$VUSER>, method=PLAIN, rip=127.0.0.1' line and pop3d's 'Disconnected: Logged out' line" sh -c \
    "tail -c +$((LOGSTART + 1)) $MAILLOG | grep -q 'posthorn/pop3-login\[[0-9]*\]: Login: user=<$VUSER>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, TLS' &&
     tail -c +$((LOGSTART + 1)) $MAILLOG | grep -q 'posthorn/pop3d\[[0-9]*\]: pop3($VUSER): Disconnected: Logged out top=0/0, retr=1/[0-9]*, del=1/[0-9]*, size=[0-9]*'"
fail2ban_matches() {
    local out n
    command -v fail2ban-regex >/dev/null 2>&1 || { echo "fail2ban-regex is not installed (package fail2ban; .ci/run installs it)"; return 1; }
    tail -c +"$((LOGSTART + 1))" "$MAILLOG" >"$WORK/mail.log.run"
    out=$(fail2ban-regex "$WORK/mail.log.run" 'dovecot[_daemon=posthorn/\S+]' 2>&1)
    echo "$out"
    n=$(echo "$out" | sed -n 's/^Lines: .* \([0-9][0-9]*\) matched.*/\1/p')
    [ "${n:-0}" -ge 1 ]
}
check "fail2ban-regex: the dovecot filter (_daemon=posthorn/\S+) matches the failed login in $MAILLOG" fail2ban_matches

# --- IMAP --------------------------------------------------------------------

# imap ACTION MODE PORT [ARGS]: tests/install/imap_client.py as $VUSER,
# verifying the snakeoil certificate for $TLSNAME.
imap() {
    local action=$1 mode=$2 port=$3
    shift 3
    python3 "$IMAP" "$action" "$mode" "$port" "$SNAKEOIL_CERT" "$TLSNAME" "$VUSER" "$VPASS" "$@"
}
listening_imap() { [ -n "$(ss -Hltn 'sport = :143')" ] && [ -n "$(ss -Hltn 'sport = :993')" ]; }
check "IMAP (143) and IMAPS (993) are listening" wait_for 10 listening_imap
# A message of its own: the POP3 steps deleted the first one.
deliver "for IMAP"
imap_file='' imap_token=$VTOKEN
if [ -n "$VFILE" ] && cp "$VFILE" "$WORK/imap.msg"; then
    imap_file=$WORK/imap.msg
fi
IMAPUID=
imap_read_starttls() {
    local out
    out=$(imap read starttls 143 "$imap_file" "$WORK/sent-$imap_token.eml") || { echo "$out"; return 1; }
    echo "$out"
    IMAPUID=$(echo "$out" | sed -n 's/^UID //p')
    echo "$IMAPUID" | grep -Eqx '[0-9]+ [0-9]+' || { echo "no UID and UIDVALIDITY"; return 1; }
}
if [ -n "$imap_file" ]; then
    # In this shell: it sets IMAPUID.
    check_here "IMAP STARTTLS on port 143: imaplib verifies the snakeoil certificate ($TLSNAME), LOGIN as $VUSER, SELECT INBOX, UID SEARCH finds the message, FETCH BODY.PEEK[] is the Maildir file byte for byte (CRLF) and, less Return-Path/Delivered-To/Authentication-Results/Received, the message sent" imap_read_starttls
else
    fail "IMAP: no delivered message to read"
fi

# A session IDLEs in the background: the process owners while it is open,
# then new mail must reach it as "* N EXISTS" (inotify, the skeleton's
# Next::Watch).
IDLE_PID=''
idle_start() {
    rm -f "$WORK/idle.out"
    imap idle ssl 993 >"$WORK/idle.out" 2>&1 &
    IDLE_PID=$!
    wait_for 30 grep -q '^IDLING' "$WORK/idle.out"
    local rc=$?
    cat "$WORK/idle.out"
    return $rc
}
idle_finish() {
    local rc
    [ -n "$IDLE_PID" ] || { echo "no session is idling"; return 1; }
    wait "$IDLE_PID"
    rc=$?
    IDLE_PID=
    cat "$WORK/idle.out"
    [ "$rc" = 0 ] && grep -q '^EXISTS' "$WORK/idle.out" && grep -q '^DONE' "$WORK/idle.out"
}
imap_procs_ok() {
    local m list disp bad=0
    m=$(master_pid)
    list=$(ps -eo pid=,ppid=,user:20=,args=)
    echo "$list" | awk -v m="$m" '$1 == m || $2 == m'
    # imap-login: the two services' processes (maxproc 2 each), as posthorn-login.
    echo "$list" | awk -v m="$m" '$2 == m && $4 == "posthorn-imap-login" { n++; if ($3 != "posthorn-login") bad = 1 }
        END { exit !(n >= 4 && !bad) }' || { echo "posthorn-imap-login: not 4 processes as posthorn-login"; bad=1; }
    disp=$(echo "$list" | awk -v m="$m" '$2 == m && $4 == "posthorn-imapd" { print $1 }')
    [ "$(echo "$disp" | wc -w)" = 1 ] || { echo "not one dispatcher: $disp"; return 1; }
    echo "$list" | awk -v d="$disp" '$1 == d && $3 == "root" { f = 1 } END { exit !f }' ||
        { echo "the dispatcher posthorn-imapd is not root"; bad=1; }
    echo "mailbox processes (children of the dispatcher $disp):"
    echo "$list" | awk -v d="$disp" '$2 == d'
    echo "$list" | awk -v d="$disp" '$2 == d && $4 == "posthorn-imapd" { n++; if ($3 != "posthorn-vmail") bad = 1 }
        END { exit !(n >= 1 && !bad) }' || { echo "no mailbox process as posthorn-vmail"; bad=1; }
    return $bad
}
if check_here "IMAPS session on 993: logged in, INBOX selected, IDLE" idle_start; then
    check "ps: posthorn-imap-login as posthorn-login, the dispatcher posthorn-imapd as root, its child mailbox process posthorn-imapd as posthorn-vmail" wait_for 10 imap_procs_ok
    # Not `deliver`: the idling session may move the file from new/ to cur/
    # before deliver looks for it there.
    check "during IDLE: SMTP to port 25 accepts mail for $VUSER and $SYSUSER@localhost" \
        send_mail "posthorn-install-test-idle-$$-$STARTED"
    check_here "the IDLEing session is told of the new mail (* N EXISTS), then DONE and LOGOUT" idle_finish
else
    [ -z "$IDLE_PID" ] || kill "$IDLE_PID" 2>/dev/null
    IDLE_PID=
fi
imap_delete_ssl() {
    imap delete ssl 993 "$imap_file" "$WORK/sent-$imap_token.eml" "$IMAPUID" || return 1
    # UID EXPUNGE removed it from the Maildir.
    if grep -rl -- "$imap_token" "$VMAILDIR/new" "$VMAILDIR/cur" 2>/dev/null; then
        echo "still in the Maildir"
        return 1
    fi
}
if [ -n "$imap_file" ] && [ -n "$IMAPUID" ]; then
    check "IMAPS on port 993: the same UID and UIDVALIDITY, FETCH byte for byte, UID STORE \\Deleted + UID EXPUNGE removes the message from the Maildir" imap_delete_ssl
else
    fail "IMAPS on port 993: UID EXPUNGE (no message or no UID from the STARTTLS step)"
fi

# A wrong password: Dovecot's reply after the delay, its log line, fail2ban.
imap_wrong_password() {
    local out
    out=$(python3 "$IMAP" fail starttls 143 "$SNAKEOIL_CERT" "$TLSNAME" "$VUSER" wrong-password) || { echo "$out"; return 1; }
    echo "$out"
    echo "$out" | grep -qx 'REPLY NO \[AUTHENTICATIONFAILED\] Authentication failed\.'
}
check "IMAP with a wrong password: NO [AUTHENTICATIONFAILED] Authentication failed." imap_wrong_password
check "$MAILLOG has imap-login's 'Disconnected (auth failed, 1 attempts in N secs): user=<$VUSER>, method=PLAIN, rip=127.0.0.1' line" \
    wait_for 15 log_has "posthorn/imap-login\[[0-9]*\]: Disconnected (auth failed, 1 attempts in [0-9]* secs): user=<$VUSER>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, TLS"
check "$MAILLOG has imap-login's 'Login: user=<$VUSER>, method=PLAIN, rip=127.0.0.1' line and imapd's 'imap($VUSER): Disconnected: Logged out in=N out=M' line" sh -c \
    "tail -c +$((LOGSTART + 1)) $MAILLOG | grep -q 'posthorn/imap-login\[[0-9]*\]: Login: user=<$VUSER>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, TLS' &&
     tail -c +$((LOGSTART + 1)) $MAILLOG | grep -q 'posthorn/imapd\[[0-9]*\]: imap($VUSER): Disconnected: Logged out in=[0-9]* out=[0-9]*'"
# Only imap-login's lines: the POP3 failure matched already.
fail2ban_matches_imap() {
    local out n
    command -v fail2ban-regex >/dev/null 2>&1 || { echo "fail2ban-regex is not installed (package fail2ban; .ci/run installs it)"; return 1; }
    tail -c +"$((LOGSTART + 1))" "$MAILLOG" | grep 'posthorn/imap-login\[' >"$WORK/mail.log.imap"
    out=$(fail2ban-regex "$WORK/mail.log.imap" 'dovecot[_daemon=posthorn/\S+]' 2>&1)
    echo "$out"
    n=$(echo "$out" | sed -n 's/^Lines: .* \([0-9][0-9]*\) matched.*/\1/p')
    [ "${n:-0}" -ge 1 ]
}
check "fail2ban-regex: the dovecot filter (_daemon=posthorn/\S+) matches imap-login's failed login in $MAILLOG" fail2ban_matches_imap

# --- restart and reload ------------------------------------------------------

before=$(master_pid)
# --- submission -------------------------------------------------------------------
# tests/clients/smtp_submit.py as $VUSER (smtplib: STARTTLS on 587, TLS on
# 465, the snakeoil certificate verified for $TLSNAME, AUTH through
# posthorn-auth) to $VUSER; the message must arrive in the Maildir.
submit() {
    SUBMIT_TLS_NAME="$TLSNAME" python3 tests/clients/smtp_submit.py "$1" "$2" "$SNAKEOIL_CERT" \
        "$VUSER" "$3" "$VUSER" "$4" "$VUSER"
}
listening_submission() { [ -n "$(ss -Hltn 'sport = :587')" ] && [ -n "$(ss -Hltn 'sport = :465')" ]; }
check "submission (587) and submissions (465) are listening" wait_for 10 listening_submission
submitted() {
    local out subject="submitted over $1 $$"
    out=$(submit "$1" "$2" "$VPASS" "$subject") || { echo "$out"; return 1; }
    echo "$out"
    case $out in "sent "*) ;; *) return 1 ;; esac
    wait_for 20 grep -rqs "^Subject: $subject\$" "$VMAILDIR/new" "$VMAILDIR/cur" || { echo "not in $VMAILDIR"; return 1; }
}
check "submission: smtplib STARTTLS on 587, AUTH as $VUSER, delivered to the Maildir" submitted starttls 587
check "submissions: smtplib TLS on 465, AUTH as $VUSER, delivered to the Maildir" submitted tls 465
submit_refused() {
    local out
    out=$(submit starttls 587 "not-the-password" "refused") || { echo "$out"; return 1; }
    echo "$out"
    [ "$out" = "refused auth 535 5.7.8 Error: authentication failed: authentication failure" ]
}
check "submission with a wrong password: 535 5.7.8" submit_refused
check "$MAILLOG has smtpd's 'SASL PLAIN authentication failed' line (fail2ban's postfix-sasl filter)" \
    wait_for 10 log_has 'posthorn/smtpd\[[0-9]*\]: warning: [A-Za-z0-9.-]*\[127\.0\.0\.1\]: SASL PLAIN authentication failed: authentication failure'

check "$INIT restart" "$INIT" restart
after=$(master_pid)
check "restart: a new master (pid $before -> ${after:-none})" test -n "$after" -a "$after" != "$before"
check "restart: port 25 is listening" wait_for 10 listening25
deliver "after restart"

smtpd_pids() { procs | awk -v m="$(master_pid)" '$2 == m && $4 == "posthorn-smtpd" { print $1 }' | sort | tr '\n' ' '; }
# The POP3 workers: pop3-login (comm is cut to 15 characters) and the dispatcher.
pop3_pids() { procs | awk -v m="$(master_pid)" '$2 == m && $4 ~ /^posthorn-pop3/ { print $1 }' | sort | tr '\n' ' '; }
before=$(master_pid)
old_smtpd=$(smtpd_pids)
# A POP3S session (TLS relayed by its login process) open across the reload.
held=0
check_here "reload: a POP3S session on 995 is open (logged in)" hold_start ssl 995 && held=1
# And an IMAPS session in IDLE (relayed by its imap-login process).
idle_held=0
if check_here "reload: an IMAPS session on 993 is open and IDLEs" idle_start; then
    idle_held=1
else
    [ -z "$IDLE_PID" ] || kill "$IDLE_PID" 2>/dev/null
    IDLE_PID=
fi
old_pop3=$(pop3_pids)
check "$INIT reload" "$INIT" reload
check "reload: the same master (pid $before)" test "$(master_pid)" = "$before"
check "reload: master logged the reload" wait_for 10 log_has "posthorn/master\[[0-9]*\]: reload -- "
check "master's log lines carry master's pid ($before)" log_has "posthorn/master\[$before\]: reload -- "
smtpd_replaced() {
    local now
    now=$(smtpd_pids)
    [ -n "$now" ] && [ "$now" != "$old_smtpd" ]
}
check "reload: smtpd workers replaced (were: $old_smtpd)" wait_for 15 smtpd_replaced
# New pop3-login processes (2 per service) and a new dispatcher.
pop3_restarted() {
    local now p n=0
    now=$(pop3_pids)
    echo "now: $now"
    for p in $now; do
        case " $old_pop3 " in *" $p "*) ;; *) n=$((n + 1)) ;; esac
    done
    [ "$n" -ge 5 ]
}
# Every old one has exited.
pop3_old_gone() {
    local p left=""
    for p in $old_pop3; do
        kill -0 "$p" 2>/dev/null && left="$left $p"
    done
    [ -z "$left" ] || { echo "still running:$left"; ps -o pid=,user=,args= -p "${left# }"; return 1; }
}
check "reload: new pop3-login and pop3d workers started (the old ones: $old_pop3)" wait_for 15 pop3_restarted
if [ "$held" = 1 ]; then
    check_here "reload: the POP3S session opened before it goes on (STAT, RETR every message, NOOP, QUIT)" hold_finish
fi
if [ "$idle_held" = 1 ]; then
    check "reload: SMTP to port 25 accepts mail for $VUSER while the IMAPS session opened before the reload IDLEs" \
        send_mail "posthorn-install-test-reload-idle-$$-$STARTED"
    check_here "reload: the IMAPS session opened before it is told of the new mail (* N EXISTS), then DONE and LOGOUT" idle_finish
fi
check "reload: the old pop3-login and pop3d workers have exited once their sessions ended" wait_for 20 pop3_old_gone
check "reload: a new POP3S session after it logs in and reads" sh -c \
    "python3 $POP3 hold ssl 995 $SNAKEOIL_CERT $TLSNAME $VUSER $VPASS </dev/null | grep '^DONE'"
deliver "after reload"
check "$INIT force-reload" "$INIT" force-reload
check "posthorn check is still clean" check_clean

# --- stop ----------------------------------------------------------------------

check "$INIT stop" "$INIT" stop
status_rc() { "$INIT" status >/dev/null 2>&1; [ $? = 3 ]; }
check "$INIT status says not running (exit 3)" status_rc
check "no posthorn process is left" no_package_procs
check "port 25 is closed" sh -c "[ -z \"\$(ss -Hltn 'sport = :25')\" ]"
check "$INIT stop when stopped succeeds" "$INIT" stop

# --- purge ---------------------------------------------------------------------

check "apt-get purge posthorn" apt-get purge -y -q posthorn
check "dpkg: posthorn is gone (not even config-files)" sh -c '! dpkg-query -W -f="\${Status}" posthorn 2>/dev/null | grep -Eq "installed|config-files"'
gone() {
    local left=""
    for f in "$@"; do
        [ -e "$f" ] || [ -L "$f" ] && left="$left $f"
    done
    [ -z "$left" ] || { echo "left behind:$left"; return 1; }
}
check "purge removed /etc/posthorn /var/spool/posthorn /run/posthorn /var/lib/posthorn /usr/lib/posthorn /usr/sbin/posthorn" \
    gone /etc/posthorn /var/spool/posthorn /run/posthorn /var/lib/posthorn /usr/lib/posthorn /usr/sbin/posthorn \
    $INIT /lib/systemd/system/posthorn.service /etc/systemd/system/multi-user.target.wants/posthorn.service
check "purge removed the init links" sh -c '! ls /etc/rc?.d/*posthorn 2>/dev/null | grep -q .'
check "no posthorn process after purge" no_package_procs
check "purge kept $VHOSTS: it holds $VUSER's mail" sh -c "find $VMAILDIR/new $VMAILDIR/cur -type f | grep -q ."

userdel -r "$SYSUSER" >>"$LOG" 2>&1
accounts >"$WORK/accounts.after"
accounts_same() {
    diff "$WORK/accounts.before" "$WORK/accounts.after"
}
check "accounts after purge are those before install (posthorn, posthorn-login, posthorn-vmail, postdrop removed unless they existed)" accounts_same
snapshot >"$WORK/files.after"
# Only what posthorn could have made counts (its package's files, paths
# naming posthorn, and what its maintainer scripts create); other programs'
# new files (systemctl's /run/systemd/systemd-units-load) are noted.
# tests/install/leftovers.sh explains the rule.
no_new_files() {
    local left rc=0
    left=$(sh tests/install/leftovers.sh "$DEB" "$WORK/files.before" "$1" 2>"$WORK/foreign") || rc=$?
    if [ -s "$WORK/foreign" ]; then
        echo "new, but not posthorn's (ignored):"
        cat "$WORK/foreign"
    fi
    [ "$rc" = 0 ] || { echo "posthorn left behind:"; echo "$left"; return 1; }
}
check "no file or directory of posthorn's left behind (compared with before the installation)" no_new_files "$WORK/files.after"
if [ -s "$WORK/foreign" ]; then
    note "new files that are not posthorn's, ignored: $(sed 's/^not posthorn.s: //' "$WORK/foreign" | tr '\n' ' ')"
fi
# The check above must be able to fail: plant leftovers where posthorn
# lives and one where it does not, and see that exactly posthorn's are caught.
planted_leftovers_caught() {
    local out rc=0 foreign
    foreign=/run/phtest-foreign.$$
    mkdir -p /etc/posthorn /var/spool/posthorn/deferred
    touch /etc/posthorn/planted /var/spool/posthorn/deferred/planted "$foreign"
    snapshot >"$WORK/files.planted"
    out=$(no_new_files "$WORK/files.planted" 2>&1) || rc=$?
    rm -rf /etc/posthorn /var/spool/posthorn "$foreign"
    echo "$out"
    [ "$rc" != 0 ] &&
        echo "$out" | grep -qx /etc/posthorn/planted &&
        echo "$out" | grep -qx /var/spool/posthorn/deferred/planted &&
        echo "$out" | grep -q "not posthorn's: $foreign" &&
        ! echo "$out" | grep -qx "$foreign"
}
check "the leftover check catches planted /etc/posthorn and /var/spool/posthorn files, and only those" planted_leftovers_caught

# --- man pages -----------------------------------------------------------------

check "mandoc -T lint on every man page (tests/install/lint-man.sh)" sh tests/install/lint-man.sh

summary
