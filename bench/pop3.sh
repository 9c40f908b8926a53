#!/usr/bin/env bash
# bench/pop3.sh — POP3 throughput, latency, CPU and memory of posthorn next to Dovecot.
#
# Run from the repository root, as root:   bench/pop3.sh
#
# Builds posthorn-pop3-bench (the POP3 load generator in bench/src/pop3) and
# posthorn, installs Debian's dovecot-pop3d if missing (the package's own
# system instance is stopped, and disabled when this script installed it),
# generates BENCH_USERS mailboxes of BENCH_MESSAGES messages once and copies
# them for each system onto a loop-mounted journaled ext4, then runs a
# private Dovecot instance on 127.0.0.1:2210 and `posthorn dev` (POP3 on
# 127.0.0.1:2310) against the same users file, one after the other. For each
# system: a warm-up (one full download of every mailbox, which also builds
# the indexes), then for each level of concurrent clients BENCH_SESSIONS
# sessions (connect, USER, PASS, STAT, LIST, UIDL, BENCH_RETR x RETR, QUIT),
# measuring sessions/s, commands/s, session latency p50/p99, the CPU time of
# the server's whole process tree per session, and its peak memory. Prints
# both side by side and writes bench/results-pop3-latest.txt. See the POP3
# section of bench/README.md for what each figure means.
#
# posthorn's POP3 service is detected by trying its port: when `posthorn dev`
# does not answer POP3 there, posthorn is reported "not available" (with the
# reason) and only Dovecot's figures are printed.
#
# Environment:
#   BENCH_LEVELS="1 10 50"    concurrent POP3 clients, one level each
#   BENCH_SESSIONS=2000       successful sessions per level
#   BENCH_SECONDS=            if set: run each level this many seconds instead
#   BENCH_USERS=10            mailboxes; raised to the largest level unless
#                             set (each client needs a mailbox of its own, see
#                             BENCH_SHARED_MAILBOXES)
#   BENCH_SHARED_MAILBOXES=0  1: let concurrent sessions share a mailbox
#                             (Dovecot allows it by default; a server that
#                             locks the mailbox answers -ERR [IN-USE])
#   BENCH_MESSAGES=1000       messages per mailbox
#   BENCH_MIN_SIZE=1024       smallest message in octets
#   BENCH_MAX_SIZE=12288      largest message in octets
#   BENCH_RETR=3              RETRs of random messages per session
#   BENCH_SEED=1              seed of the messages and of the RETR choices
#   BENCH_AUTH_CACHE=10M      Dovecot's auth_cache_size (0: Dovecot's default,
#                             no cache)
#   BENCH_ONLY=both           both | dovecot | posthorn
#   BENCH_SKIP_BUILD=0        1: use the binaries already built
#   BENCH_BIN=...             load generator (default target/release/posthorn-pop3-bench)
#   POSTHORN_BIN=...          posthorn binary (default target/release/posthorn)
#   BENCH_POSTHORN_OPTS=""    extra flags for `posthorn dev`, e.g. "-o name=value"
#   BENCH_KEEP=0              1: keep the temp directory (logs, image)
#   BENCH_MEM=rss             rss: sum of VmRSS; pss: sum of Pss
#   BENCH_FS=loop             loop: mailboxes on a loop-mounted journaled ext4;
#                             tmp: on the temp directory's file system
#   BENCH_FS_SIZE=4G          size of the (sparse) ext4 image
#
# Traffic goes to 127.0.0.1 only. Everything started here is stopped on exit,
# error or interrupt (trap EXIT); the image is unmounted and the temp
# directory removed unless BENCH_KEEP=1 or the run failed.

set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

LEVELS=${BENCH_LEVELS:-"1 10 50"}
SESSIONS=${BENCH_SESSIONS:-2000}
DURATION=${BENCH_SECONDS:-}
SHARED=${BENCH_SHARED_MAILBOXES:-0}
MESSAGES=${BENCH_MESSAGES:-1000}
MIN_SIZE=${BENCH_MIN_SIZE:-1024}
MAX_SIZE=${BENCH_MAX_SIZE:-12288}
RETR=${BENCH_RETR:-3}
SEED=${BENCH_SEED:-1}
AUTH_CACHE=${BENCH_AUTH_CACHE:-10M}
ONLY=${BENCH_ONLY:-both}
MEM=${BENCH_MEM:-rss}
FS_MODE=${BENCH_FS:-loop}
FS_SIZE=${BENCH_FS_SIZE:-4G}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BENCH_BIN=${BENCH_BIN:-$TARGET/release/posthorn-pop3-bench}
POSTHORN_BIN=${POSTHORN_BIN:-$TARGET/release/posthorn}
RESULTS=$ROOT/bench/results-pop3-latest.txt

DOMAIN=example.test
PATTERN="user%d@$DOMAIN"
PASSWORD=bench-pop3-secret
DV_PORT=2210       # Dovecot pop3 (plain, STLS)
DV_PORT_TLS=2211   # Dovecot pop3s (listening, not measured)
PH_OFFSET=200      # posthorn dev --port-offset: pop3 2310, pop3s 3195, smtp 2725
PH_PORT=$((2110 + PH_OFFSET))
PH_SMTP_PORT=$((2525 + PH_OFFSET))
POP3_WAIT=10       # seconds posthorn gets to answer POP3 once it listens for SMTP
SETTLE=0.5         # seconds after a level before the CPU sample (last exits reaped)
SAMPLE_INTERVAL=0.2
LOG_TAG=bench-pop3

TMP=""
DV_PID=""
DV_INSTALLED=0
PH_PID=""
GEN_PID=""
SAMPLER_PID=""
USERS_FILE=""

# log, die, the /proc accounting, wait_port, the bench file system, ratio.
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

case $ONLY in both | dovecot | posthorn) ;; *) die "BENCH_ONLY must be both, dovecot or posthorn" ;; esac
case $MEM in rss | pss) ;; *) die "BENCH_MEM must be rss or pss" ;; esac
case $FS_MODE in loop | tmp) ;; *) die "BENCH_FS must be loop or tmp" ;; esac
MEM_LABEL=${MEM^^}
[ "$(id -u)" -eq 0 ] || die "run as root (installs dovecot-pop3d, runs a private Dovecot instance, loop-mounts an image)"
for n in $LEVELS $SESSIONS $MESSAGES $MIN_SIZE $MAX_SIZE $RETR $SEED ${BENCH_USERS:-}; do
    [[ $n =~ ^[0-9]+$ ]] || die "not a number: $n (BENCH_LEVELS, BENCH_SESSIONS, BENCH_MESSAGES, ...)"
done
for n in $LEVELS ${BENCH_USERS:-}; do
    [ "$n" -ge 1 ] || die "BENCH_LEVELS and BENCH_USERS must be at least 1"
done
[ -z "$DURATION" ] || [[ $DURATION =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "BENCH_SECONDS is not a number: $DURATION"
MAX_LEVEL=$(tr ' ' '\n' <<<"$LEVELS" | sort -n | tail -n 1)
if [ -n "${BENCH_USERS:-}" ]; then
    USERS=$BENCH_USERS
    if [ "$SHARED" != 1 ] && [ "$USERS" -lt "$MAX_LEVEL" ]; then
        log "warning: $USERS mailboxes for up to $MAX_LEVEL clients: at most $USERS sessions run at once" \
            "(one per mailbox); BENCH_SHARED_MAILBOXES=1 lets them share"
    fi
elif [ "$SHARED" != 1 ] && [ "$MAX_LEVEL" -gt 10 ]; then
    USERS=$MAX_LEVEL
    log "$USERS mailboxes (not 10): one per client at the level of $MAX_LEVEL clients, as real POP3" \
        "clients each poll their own mailbox; posthorn locks a mailbox per session (-ERR [IN-USE])"
else
    USERS=10
fi
SHARED_FLAG=()
[ "$SHARED" = 1 ] && SHARED_FLAG=(--shared-mailboxes)
CLK_TCK=$(getconf CLK_TCK)

# --- cleanup ------------------------------------------------------------------

cleanup() {
    local rc=$? where
    set +e
    trap - ERR
    if [ -n "$GEN_PID" ]; then
        kill -TERM "$GEN_PID" 2>/dev/null
        wait "$GEN_PID" 2>/dev/null
    fi
    stop_sampler
    [ -n "$DV_PID" ] && stop_dovecot
    [ -n "$PH_PID" ] && stop_posthorn
    [ "$FS_MOUNTED" = 1 ] && unmount_fs
    if [ "$FS_MOUNTED" = 1 ]; then
        log "left $TMP in place: $FS is still mounted (umount $FS; rm -r $TMP)"
    elif [ -n "$TMP" ] && [ -d "$TMP" ]; then
        if [ "${BENCH_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
            if [ -f "$TMP/fs.img" ]; then
                where="in the image $TMP/fs.img (mount -o loop $TMP/fs.img $TMP/fs)"
            else
                where="in $TMP/fs"
            fi
            log "kept $TMP (logs: $TMP/dovecot/dovecot.log, $TMP/posthorn.log, $TMP/gen-*;" \
                "mailboxes $where)"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

# --- helpers ------------------------------------------------------------------

# kv KEY LINE: the value of KEY=value in a generator result line.
kv() {
    awk -v k="$1" '{ for (i = 1; i <= NF; i++) { n = index($i, "="); if (substr($i, 1, n - 1) == k) print substr($i, n + 1) } }' <<<"$2"
}

# children_cpu: sets CHILD_CPU to the user + system seconds of this shell's
# reaped children (bash's `times`, second line: "0m1.230s 0m0.450s"). Not
# in a pipe or $(...): a forked subshell would count its own children.
children_cpu() {
    times >"$TMP/times"
    CHILD_CPU=$(awk 'NR == 2 {
        s = 0
        for (i = 1; i <= 2; i++) { split($i, t, "m"); sub("s", "", t[2]); s += t[1] * 60 + t[2] }
        printf "%.3f\n", s
    }' "$TMP/times")
}

# pop3_greets PORT SECONDS PID: true once 127.0.0.1:PORT answers with a POP3
# greeting (+OK) within SECONDS; false if not, or if PID dies meanwhile.
pop3_greets() {
    local port=$1 secs=$2 pid=$3 i line
    for ((i = 0; i < secs * 5; i++)); do
        if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
            line=""
            IFS= read -r -t 5 line <&3 || true
            # Closed without QUIT: writing to a socket the server may have
            # closed could kill this shell with SIGPIPE.
            exec 3<&- 3>&-
            [[ $line == "+OK"* ]] && return 0
            log "127.0.0.1:$port answered ${line:-nothing} instead of a POP3 greeting"
            return 1
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}

# --- the users file and the mailboxes -----------------------------------------

# make_data: TMP/users (passwd-file, {SHA512-CRYPT}, uid/gid of nobody, no
# home: each system puts homes under its own base as BASE/DOMAIN/LOCAL) and
# the mailboxes in TMP/maildirs, generated once and copied for each system.
make_data() {
    local uid gid i hash
    uid=$(id -u nobody)
    gid=$(id -g nobody)
    USERS_FILE=$TMP/users
    for ((i = 1; i <= USERS; i++)); do
        # 5000 rounds, what `posthorn user add` and `doveadm pw` both write.
        if command -v doveadm >/dev/null; then
            hash=$(doveadm pw -s SHA512-CRYPT -p "$PASSWORD")
        else
            hash="{SHA512-CRYPT}$(openssl passwd -6 "$PASSWORD")"
        fi
        printf 'user%d@%s:%s:%s:%s::::\n' "$i" "$DOMAIN" "$hash" "$uid" "$gid"
    done >"$USERS_FILE"
    # Dovecot's auth process runs as user dovecot and reads it.
    if getent group dovecot >/dev/null; then
        chown root:dovecot "$USERS_FILE"
    fi
    chmod 0640 "$USERS_FILE"
    log "users file $USERS_FILE: $USERS users user1..user$USERS@$DOMAIN, {SHA512-CRYPT}, uid $uid gid $gid"
    local out
    out=$("$BENCH_BIN" make-maildirs --dir "$TMP/maildirs" --users "$USERS" --user-pattern "$PATTERN" \
        --messages "$MESSAGES" --min-size "$MIN_SIZE" --max-size "$MAX_SIZE" --seed "$SEED") ||
        die "make-maildirs failed"
    log "mailboxes generated: $out"
    DATA_OCTETS=$(kv octets "$out")
}

# copy_mail DEST: the generated mailboxes into DEST (DEST/DOMAIN/LOCAL/Maildir),
# owned by nobody, flushed to the bench file system before any measurement.
copy_mail() {
    local dest=$1
    mkdir -p "$dest"
    chmod 0755 "$dest"
    cp -a "$TMP/maildirs/." "$dest/"
    chown -R "$(id -u nobody):$(id -g nobody)" "$dest/$DOMAIN"
    chmod 0755 "$dest/$DOMAIN"
    chmod 0700 "$dest/$DOMAIN"/*
    sync -f "$dest"
    check_fs "mailboxes" "$dest/$DOMAIN/user1/Maildir/new"
}

# --- one measurement ----------------------------------------------------------

# run_load SYSTEM LABEL PORT ROOT_PID PGID GENERATOR-FLAGS...
# Runs the generator against 127.0.0.1:PORT and sets L_SPS (sessions/s),
# L_CPS (commands/s), L_P50, L_P99 (session ms), L_OK, L_FAILED, L_ERRS (the
# nonzero err_ keys), L_CPU (user+sys ms of the server tree per session),
# L_USR, L_SYS, L_NPROC, L_RSS (peak MB), L_LINE (the whole result line).
run_load() {
    local sys=$1 label=$2 port=$3 root=$4 pg=$5
    shift 5
    local out=$TMP/gen-$sys-$label.out err=$TMP/gen-$sys-$label.err rssfile=$TMP/rss-$sys-$label
    local cpu0 cpu1 rc=0 n gen0 gen1
    start_sampler "$root" "$pg" "$rssfile"
    cpu0=$(tree_cpu "$root" "$pg")
    children_cpu
    gen0=$CHILD_CPU
    # In the background and waited for, so that a signal to this script
    # interrupts the wait and the EXIT trap stops everything at once.
    "$BENCH_BIN" --host 127.0.0.1 --port "$port" --users "$USERS" --user-pattern "$PATTERN" \
        --password "$PASSWORD" --seed "$SEED" "${SHARED_FLAG[@]}" "$@" >"$out" 2>"$err" &
    GEN_PID=$!
    wait "$GEN_PID" || rc=$?
    GEN_PID=""
    # Only the generator was reaped since gen0 (the sampler is still running).
    children_cpu
    gen1=$CHILD_CPU
    # Let the last sessions' processes exit and be reaped, so their CPU is
    # in their parent's cutime/cstime when we look.
    sleep "$SETTLE"
    cpu1=$(tree_cpu "$root" "$pg")
    stop_sampler
    L_LINE=$(grep '^result ' "$out" || true)
    [ -n "$L_LINE" ] || { cat "$err" >&2; die "$sys $label: the load generator printed no result (exit $rc)"; }
    L_OK=$(kv sessions "$L_LINE")
    L_FAILED=$(kv failed "$L_LINE")
    L_SPS=$(kv sessions_per_s "$L_LINE")
    L_CPS=$(kv commands_per_s "$L_LINE")
    L_P50=$(kv session_p50_ms "$L_LINE")
    L_P99=$(kv session_p99_ms "$L_LINE")
    L_ERRS=$(tr ' ' '\n' <<<"$L_LINE" | awk -F= '/^err_/ && $2 != 0 { printf "%s%s=%s", sep, substr($1, 5), $2; sep = " " }')
    L_RSS=$(awk -v kb="$(cat "$rssfile")" 'BEGIN { printf "%.1f", kb / 1024 }')
    n=$((L_OK + L_FAILED))
    read -r L_USR L_SYS L_CPU L_NPROC < <(awk -v a="$cpu0" -v b="$cpu1" \
        -v n="$n" -v hz="$CLK_TCK" 'BEGIN {
            split(a, x, " "); split(b, y, " ")
            if (n < 1) n = 1
            u = (y[1] - x[1]) * 1000 / hz / n; s = (y[2] - x[2]) * 1000 / hz / n
            printf "%.3f %.3f %.3f %d\n", u, s, u + s, y[3]
        }')
    L_GEN=$(awk -v a="$gen0" -v b="$gen1" -v n="$n" 'BEGIN { if (n < 1) n = 1; printf "%.3f", (b - a) * 1000 / n }')
    log "$sys $label: $(grep -E '^[0-9]+ sessions ok' "$out" || true); generator CPU ${L_GEN} ms/session"
    log "$sys $label: session p50 ${L_P50} ms p99 ${L_P99} ms; cpu_ms/session=$L_CPU" \
        "(user $L_USR, sys $L_SYS; $L_NPROC processes) peak_${MEM}_mb=$L_RSS errors: ${L_ERRS:-none}"
    if [ "$L_FAILED" != 0 ]; then
        log "$sys $label: $L_FAILED failed sessions; first ones:"
        head -n 5 "$err" >&2
    fi
}

declare -A SPS CPS P50 P99 CPU USR SYS NPROC RSS ERRS LINES GEN

# bench_system SYSTEM PORT ROOT_PID PGID: the warm-up, then every level.
bench_system() {
    local sys=$1 port=$2 root=$3 pg=$4 level label
    local -a amount
    if [ -n "$DURATION" ]; then amount=(--seconds "$DURATION"); else amount=(--sessions "$SESSIONS"); fi
    # Warm-up: each mailbox once, every message retrieved (one client, in
    # order): indexes built, every message seen. Reported as "first".
    run_load "$sys" first "$port" "$root" "$pg" --clients 1 --sessions "$USERS" --retr-all
    store "$sys" first
    for level in $LEVELS; do
        run_load "$sys" "$level" "$port" "$root" "$pg" --clients "$level" "${amount[@]}" --retr "$RETR"
        store "$sys" "$level"
    done
}

# store SYSTEM LABEL: keeps run_load's figures (read through cell's nameref).
# shellcheck disable=SC2034
store() {
    local k=$1,$2
    SPS[$k]=$L_SPS
    CPS[$k]=$L_CPS
    P50[$k]=$L_P50
    P99[$k]=$L_P99
    CPU[$k]=$L_CPU
    USR[$k]=$L_USR
    SYS[$k]=$L_SYS
    NPROC[$k]=$L_NPROC
    RSS[$k]=$L_RSS
    ERRS[$k]=${L_ERRS:-}
    GEN[$k]=$L_GEN
    LINES[$k]=$L_LINE
}

# --- Dovecot ------------------------------------------------------------------

# stop_system_dovecot: the package's own instance must not run (it would
# hold ports 110/995 and take CPU during the measurements).
stop_system_dovecot() {
    local pid=""
    [ -s /run/dovecot/master.pid ] && pid=$(tr -d ' \n' </run/dovecot/master.pid)
    if [ -d /run/systemd/system ]; then
        if systemctl is-active --quiet dovecot.service dovecot.socket 2>/dev/null; then
            log "stopping the system Dovecot instance (systemctl stop dovecot)"
            systemctl stop dovecot.service dovecot.socket >&2 || true
        fi
        if [ "$DV_INSTALLED" = 1 ]; then
            log "disabling the system Dovecot instance the package installed (systemctl disable dovecot)"
            systemctl disable dovecot.service dovecot.socket >&2 || true
        fi
    elif [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        log "stopping the system Dovecot instance (master pid $pid)"
        if [ -x /etc/init.d/dovecot ]; then /etc/init.d/dovecot stop >&2 || true; fi
        kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
        local i
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
    fi
    if [ "$DV_INSTALLED" = 1 ] && [ ! -d /run/systemd/system ] && command -v update-rc.d >/dev/null; then
        log "disabling the system Dovecot instance the package installed (update-rc.d dovecot disable)"
        update-rc.d dovecot disable >&2 2>/dev/null || true
    fi
    local p
    for p in 110 995; do
        port_listening "$p" && die "something listens on port $p (a system Dovecot?); stop it first"
    done
    return 0
}

ensure_dovecot() {
    if [ ! -x /usr/sbin/dovecot ] || [ ! -x /usr/lib/dovecot/pop3 ] || [ ! -x /usr/lib/dovecot/pop3-login ]; then
        log "installing Debian's dovecot-pop3d (and dovecot-core)"
        if ! apt-cache policy dovecot-pop3d 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            apt-get update >&2
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y dovecot-pop3d >&2
        DV_INSTALLED=1
        sleep 1
    fi
    stop_system_dovecot
}

# The settings of the private instance that differ from Debian's defaults
# (doveconf -n of a fresh dovecot-core + dovecot-pop3d), and why; printed in
# the log and the results.
dovecot_differences() {
    cat <<EOF
Dovecot settings that differ from Debian's defaults (everything else is Dovecot's default:
  a pop3-login process and a pop3 process per connection (service_count = 1), mail_fsync =
  optimized, pop3_lock_session = no, mail_max_userip_connections = 10, index files in the Maildir):
  protocols = pop3 ($(dovecot_protocols_debian)): only POP3 is measured
  listen = 127.0.0.1, pop3 port $DV_PORT, pop3s port $DV_PORT_TLS (Debian: *, 110, 995): a private instance on loopback
  instance_name, base_dir, state_dir in the temp directory (Debian: /run/dovecot, /var/lib/dovecot): private
  log_path = a file (Debian: syslog): logs go somewhere, as posthorn dev's go to a file
  passdb and userdb passwd-file on the shared users file (Debian: PAM, /etc/passwd): posthorn's virtual users
  userdb default_fields home=MAILBOXES/%d/%n, mail_location = maildir:~/Maildir
    (Debian: mbox:~/mail:INBOX=/var/mail/%u): posthorn's Maildir layout, virtual_mailbox_base/DOMAIN/LOCAL
  auth_cache_size = $AUTH_CACHE (Dovecot's default: 0, no cache): set so that both systems would cache
    verified logins, as posthorn's auth does by default. It has no effect here: Dovecot 2.3's passwd-file
    passdb and userdb define no cache key (src/auth/passdb-passwd-file.c), so every Dovecot login runs
    SHA512-CRYPT (${HASH_MS:-?} ms of CPU here) and its auth process counts no cache lookups ("dovecot auth").
    Like for like: BENCH_POSTHORN_OPTS="-o auth_cache_ttl=0" runs posthorn without its cache.
  Debian's namespace inbox with special-use folders: not included (POP3 reads only INBOX)
EOF
}

dovecot_protocols_debian() {
    local p
    # The files say "protocols = $protocols imap": take the names after it.
    # shellcheck disable=SC2016
    p=$(cat /usr/share/dovecot/protocols.d/*.protocol 2>/dev/null | sed -n 's/^protocols = \$protocols //p' | tr '\n' ' ')
    echo "Debian: ${p% }"
}

start_dovecot() {
    local dir=$TMP/dovecot ssl
    DV_MAIL=$FS/dovecot/mail
    mkdir -p "$dir/run" "$dir/state"
    chmod 0755 "$dir" "$dir/run"
    copy_mail "$DV_MAIL"
    # Debian's certificate and DH parameters, as its 10-ssl.conf has them.
    if [ -r /etc/dovecot/private/dovecot.pem ] && [ -r /etc/dovecot/private/dovecot.key ]; then
        ssl="ssl = yes
ssl_cert = </etc/dovecot/private/dovecot.pem
ssl_key = </etc/dovecot/private/dovecot.key"
        [ -r /usr/share/dovecot/dh.pem ] && ssl="$ssl
ssl_dh = </usr/share/dovecot/dh.pem"
    else
        ssl="ssl = no"
        log "no /etc/dovecot/private/dovecot.pem: the private instance runs without TLS (not measured anyway)"
    fi
    cat >"$dir/dovecot.conf" <<EOF
# Private Dovecot instance for bench/pop3.sh: Dovecot's defaults except these
# lines (see the script's output for why each differs from Debian's).
instance_name = posthorn-bench-pop3
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
protocols = pop3
listen = 127.0.0.1
$ssl
mail_location = maildir:~/Maildir
auth_cache_size = $AUTH_CACHE
passdb {
  driver = passwd-file
  args = $USERS_FILE
}
userdb {
  driver = passwd-file
  args = $USERS_FILE
  default_fields = home=$DV_MAIL/%d/%n
}
service pop3-login {
  inet_listener pop3 {
    port = $DV_PORT
  }
  inet_listener pop3s {
    port = $DV_PORT_TLS
  }
}
EOF
    doveconf -c "$dir/dovecot.conf" -n >"$dir/doveconf-n.txt" 2>&1 ||
        { cat "$dir/doveconf-n.txt" >&2; die "doveconf rejects $dir/dovecot.conf"; }
    port_listening "$DV_PORT" && die "port $DV_PORT is already in use"
    port_listening "$DV_PORT_TLS" && die "port $DV_PORT_TLS is already in use"
    # -F: master in the foreground, our child; setsid: its own process group.
    setsid /usr/sbin/dovecot -F -c "$dir/dovecot.conf" >"$dir/master.out" 2>&1 &
    DV_PID=$!
    wait_port "$DV_PORT" 30 "$DV_PID" "dovecot"
    DV_VERSION=$(/usr/sbin/dovecot --version | awk '{ print $1 }')
    log "dovecot $DV_VERSION master pid $DV_PID on 127.0.0.1:$DV_PORT (config $dir/dovecot.conf)"
}

stop_dovecot() {
    local i
    kill -TERM "$DV_PID" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$DV_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$DV_PID" 2>/dev/null; then
        log "dovecot master $DV_PID did not stop on SIGTERM within 10s; killing it"
        kill -KILL "$DV_PID" 2>/dev/null || true
    fi
    wait "$DV_PID" 2>/dev/null || true
    if group_alive "$DV_PID"; then
        log "dovecot children outlived the master; stopping them"
        kill -TERM -- "-$DV_PID" 2>/dev/null || true
        sleep 1
        kill -KILL -- "-$DV_PID" 2>/dev/null || true
    fi
    DV_PID=""
}

# dovecot_auth_cache: Dovecot's own count of auth cache hits (its auth
# process logs them on SIGUSR2), to show the cache did its work.
dovecot_auth_cache() {
    local pid i
    for pid in $(tree_stat "$DV_PID" "$DV_PID" | awk '{ print $1 }'); do
        if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = auth ]; then
            kill -USR2 "$pid" 2>/dev/null || true
            break
        fi
    done
    for ((i = 0; i < 10; i++)); do
        grep -q 'cache hits' "$TMP/dovecot/dovecot.log" && break
        sleep 0.2
    done
    DV_CACHE=$(grep -h 'cache hits' "$TMP/dovecot/dovecot.log" | tail -n 1 | sed 's/.*Info: //')
    log "dovecot auth: ${DV_CACHE:-no cache statistics logged}"
}

bench_dovecot() {
    ensure_dovecot
    start_dovecot
    dovecot_differences | while IFS= read -r l; do log "$l"; done
    bench_system dovecot "$DV_PORT" "$DV_PID" "$DV_PID"
    dovecot_auth_cache
    stop_dovecot
}

# --- posthorn -----------------------------------------------------------------

# start_posthorn: `posthorn dev` on the bench file system with the shared
# users file; returns 1 (PH_STATUS says why) when it does not serve POP3.
start_posthorn() {
    local i
    port_listening "$PH_SMTP_PORT" && die "port $PH_SMTP_PORT is already in use"
    port_listening "$PH_PORT" && die "port $PH_PORT is already in use"
    # --user: dev adds (or updates) its users in the users file; naming user1
    # with the same password keeps the file at the bench users (dev re-hashes
    # user1's password, SHA512-CRYPT with 5000 rounds like the others).
    # shellcheck disable=SC2086 # word splitting of BENCH_POSTHORN_OPTS wanted
    setsid "$POSTHORN_BIN" dev --state "$FS/ph" --port-offset "$PH_OFFSET" --domain "$DOMAIN" \
        --user "user1@$DOMAIN:$PASSWORD" -o "virtual_mailbox_maps=passwd-file:$USERS_FILE" \
        ${BENCH_POSTHORN_OPTS:-} >"$TMP/posthorn.log" 2>&1 &
    PH_PID=$!
    for ((i = 0; i < 600; i++)); do
        port_listening "$PH_SMTP_PORT" && break
        if ! kill -0 "$PH_PID" 2>/dev/null; then
            PH_STATUS="posthorn dev exited at start (see below)"
            return 1
        fi
        sleep 0.1
    done
    if ! port_listening "$PH_SMTP_PORT"; then
        PH_STATUS="posthorn dev did not listen on 127.0.0.1:$PH_SMTP_PORT (SMTP) within 60 s"
        return 1
    fi
    if ! pop3_greets "$PH_PORT" "$POP3_WAIT" "$PH_PID"; then
        PH_STATUS="posthorn dev (pid $PH_PID) listens for SMTP on 127.0.0.1:$PH_SMTP_PORT but does not"
        PH_STATUS="$PH_STATUS answer POP3 on 127.0.0.1:$PH_PORT within ${POP3_WAIT}s: no POP3 service in this build?"
        return 1
    fi
    log "posthorn dev pid $PH_PID: POP3 on 127.0.0.1:$PH_PORT"
    if [ "$(grep -c . "$USERS_FILE")" != "$USERS" ]; then
        log "warning: posthorn dev changed the number of users in $USERS_FILE: $(grep -c . "$USERS_FILE")"
    fi
}

stop_posthorn() {
    local i
    kill -TERM "$PH_PID" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$PH_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$PH_PID" 2>/dev/null; then
        log "posthorn dev $PH_PID did not stop on SIGTERM within 10s; killing it"
        kill -KILL "$PH_PID" 2>/dev/null || true
    fi
    wait "$PH_PID" 2>/dev/null || true
    if group_alive "$PH_PID"; then
        log "posthorn children outlived the dev process; stopping them"
        kill -TERM -- "-$PH_PID" 2>/dev/null || true
        sleep 1
        kill -KILL -- "-$PH_PID" 2>/dev/null || true
    fi
    PH_PID=""
}

bench_posthorn() {
    if [ ! -x "$POSTHORN_BIN" ]; then
        PH_STATUS="$POSTHORN_BIN is missing (the posthorn-cli package builds it)"
        log "posthorn: not available: $PH_STATUS"
        return 0
    fi
    copy_mail "$FS/ph/mail"
    # In a condition start_posthorn runs without set -e: it checks each step.
    if start_posthorn; then
        bench_system posthorn "$PH_PORT" "$PH_PID" "$PH_PID"
        stop_posthorn
        PH_STATUS=measured
        return 0
    fi
    log "posthorn: not available: $PH_STATUS"
    if [ -s "$TMP/posthorn.log" ]; then
        log "last lines of $TMP/posthorn.log:"
        tail -n 15 "$TMP/posthorn.log" | sed 's/^/    /' >&2
    fi
    [ -n "$PH_PID" ] && stop_posthorn
    return 0
}

# --- main ---------------------------------------------------------------------

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    if [ "$ONLY" = dovecot ]; then
        cargo build --release -p posthorn-bench >&2 || die "cargo build -p posthorn-bench failed"
    else
        cargo build --release -p posthorn-bench -p posthorn-cli >&2 ||
            die "cargo build failed (BENCH_ONLY=dovecot builds only the load generator)"
    fi
fi
[ -x "$BENCH_BIN" ] || die "$BENCH_BIN is missing: build posthorn-bench first"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
TMP=$(mktemp -d /tmp/posthorn-bench-pop3.XXXXXX)
chmod 0755 "$TMP" # dovecot's processes and nobody must reach the users file and mailboxes
setup_fs
make_data

DV_VERSION="(not run)"
DV_CACHE=""
# CPU ms of one SHA512-CRYPT (5000 rounds) verification here: glibc's
# crypt(3), which Dovecot uses, timed through perl over 100 passwords.
HASH_MS=$(perl -e 'my @a = times; crypt("bench$_", q($6$0123456789abcdef$)) for 1 .. 100;
    my @b = times; printf "%.2f", ($b[0] - $a[0] + $b[1] - $a[1]) * 10' 2>/dev/null || true)
PH_STATUS="(not run)"
[ "$ONLY" != posthorn ] && bench_dovecot
[ "$ONLY" != dovecot ] && bench_posthorn

# cell SYS KEY ARRAY: the value, "n/a" when posthorn was not measured, "-" when missing.
cell() {
    local -n arr=$3
    local v=${arr[$1,$2]:-}
    if [ -n "$v" ]; then
        echo "$v"
    elif [ "$1" = posthorn ] && [ "$PH_STATUS" != measured ]; then
        echo "n/a"
    else
        echo "-"
    fi
}

{
    if [ -n "$DURATION" ]; then per_level="$DURATION s"; else per_level="$SESSIONS sessions"; fi
    echo "posthorn vs Dovecot $DV_VERSION, POP3: $USERS mailboxes of $MESSAGES messages ($MIN_SIZE-$MAX_SIZE octets," \
        "$((${DATA_OCTETS:-0} / 1048576)) MiB in all), $per_level per level, $RETR RETR per session," \
        "$([ "$SHARED" = 1 ] && echo "mailboxes shared by concurrent sessions" || echo "one session per mailbox at a time")"
    echo "host: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
        "$(uname -sr), load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end," \
        "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)"
    echo "mailboxes: $FS_DESC"
    echo "posthorn: $PH_STATUS"
    echo "session: connect, USER, PASS, STAT, LIST, UIDL, $RETR x RETR, QUIT; 'first' = warm-up: each mailbox once, every message retrieved"
    echo "sess/s, cmd/s: completed per second; ms: whole-session latency; CPU: user+sys ms per session of the server's whole process tree"
    printf '%-8s %9s %9s %7s %9s %9s %8s %8s %8s %8s %9s %9s %7s %9s %9s\n' level \
        dovecot posthorn posthorn/ dovecot posthorn dovecot posthorn dovecot posthorn \
        dovecot posthorn posthorn/ dovecot posthorn
    printf '%-8s %9s %9s %7s %9s %9s %8s %8s %8s %8s %9s %9s %7s %9s %9s\n' clients \
        "sess/s" "sess/s" dovecot "cmd/s" "cmd/s" "p50 ms" "p50 ms" "p99 ms" "p99 ms" \
        "CPU ms" "CPU ms" dovecot "$MEM_LABEL MB" "$MEM_LABEL MB"
    for level in first $LEVELS; do
        printf '%-8s %9s %9s %7s %9s %9s %8s %8s %8s %8s %9s %9s %7s %9s %9s\n' "$level" \
            "$(cell dovecot "$level" SPS)" "$(cell posthorn "$level" SPS)" \
            "$(ratio "${SPS[posthorn,$level]:-}" "${SPS[dovecot,$level]:-}")" \
            "$(cell dovecot "$level" CPS)" "$(cell posthorn "$level" CPS)" \
            "$(cell dovecot "$level" P50)" "$(cell posthorn "$level" P50)" \
            "$(cell dovecot "$level" P99)" "$(cell posthorn "$level" P99)" \
            "$(cell dovecot "$level" CPU)" "$(cell posthorn "$level" CPU)" \
            "$(ratio "${CPU[posthorn,$level]:-}" "${CPU[dovecot,$level]:-}")" \
            "$(cell dovecot "$level" RSS)" "$(cell posthorn "$level" RSS)"
    done
    echo "CPU ms per session, user / sys, processes in the tree at the end, and errors:"
    for level in first $LEVELS; do
        printf '%-8s dovecot %7s / %7s (%3s procs) %-12s  posthorn %7s / %7s (%3s procs) %s\n' "$level" \
            "$(cell dovecot "$level" USR)" "$(cell dovecot "$level" SYS)" "$(cell dovecot "$level" NPROC)" \
            "${ERRS[dovecot,$level]:-ok}" \
            "$(cell posthorn "$level" USR)" "$(cell posthorn "$level" SYS)" "$(cell posthorn "$level" NPROC)" \
            "${ERRS[posthorn,$level]:-$( [ "$PH_STATUS" = measured ] && echo ok || echo n/a)}"
    done
    echo "load generator CPU ms per session (its own process, not in the figures above):"
    for level in first $LEVELS; do
        printf '%-8s dovecot %7s   posthorn %7s\n' "$level" "$(cell dovecot "$level" GEN)" "$(cell posthorn "$level" GEN)"
    done
    echo "p50 / p99 ms per command (connect = TCP connect + greeting):"
    for sys in dovecot posthorn; do
        for level in first $LEVELS; do
            line=${LINES[$sys,$level]:-}
            [ -n "$line" ] || continue
            printf '%-8s %-8s' "$sys" "$level"
            for c in connect user pass stat list uidl retr quit; do
                printf ' %s %s/%s' "$c" "$(kv "${c}_p50_ms" "$line")" "$(kv "${c}_p99_ms" "$line")"
            done
            echo
        done
    done
    if [ "$ONLY" != posthorn ]; then
        echo "dovecot auth process at the end: ${DV_CACHE:-no cache statistics}; SHA512-CRYPT: ${HASH_MS:-?} ms CPU per verification here"
        dovecot_differences
    fi
} | tee "$RESULTS"

if [ "$ONLY" = posthorn ] && [ "$PH_STATUS" != measured ]; then
    die "posthorn was not measured: $PH_STATUS"
fi
