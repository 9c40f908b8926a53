#!/usr/bin/env bash
# bench/run.sh — throughput and memory of posthorn next to Postfix on this machine.
#
# Run from the repository root, as root:   bench/run.sh
#
# Builds posthorn-bench (the SMTP load generator in bench/src) and posthorn,
# installs Debian's postfix if missing, starts a private Postfix instance on
# 127.0.0.1:2626 and `posthorn dev` on 127.0.0.1:2625, and for each
# concurrency level sends BENCH_COUNT messages of BENCH_SIZE bytes to
# demo@example.test, measuring accepted msgs/s, delivered msgs/s (until every
# message is a file in the demo Maildir's new/) and the peak summed RSS of the
# mail system's processes. Prints a table and writes bench/results-latest.txt.
# See bench/README.md for what each figure means.
#
# Environment:
#   BENCH_COUNT=2000          messages per level
#   BENCH_LEVELS="1 20 100"   concurrent SMTP sessions per level
#   BENCH_SIZE=5120           message size in bytes
#   BENCH_PER_CONN=100        messages per connection (smtp-source -m)
#   BENCH_ONLY=both           both | postfix | posthorn
#   BENCH_TIMEOUT=300         seconds to wait for delivery, per level
#   BENCH_SKIP_BUILD=0        1: use the binaries already built
#   BENCH_BIN=...             load generator (default target/release/posthorn-bench)
#   POSTHORN_BIN=...          posthorn binary (default target/release/posthorn)
#   BENCH_POSTHORN_OPTS=""    extra flags for `posthorn dev`, e.g. "-o name=value"
#   BENCH_KEEP=0              1: keep the temp directory (logs, Maildirs)
#   BENCH_MEM=rss             rss: sum of VmRSS; pss: sum of Pss (shared pages
#                             split among the processes sharing them)
#
# Traffic goes to 127.0.0.1 only. Everything started here is stopped on exit,
# error or interrupt (trap EXIT).

set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

COUNT=${BENCH_COUNT:-2000}
LEVELS=${BENCH_LEVELS:-"1 20 100"}
SIZE=${BENCH_SIZE:-5120}
PER_CONN=${BENCH_PER_CONN:-100}
ONLY=${BENCH_ONLY:-both}
MEM=${BENCH_MEM:-rss}
DELIVERY_TIMEOUT=${BENCH_TIMEOUT:-300}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BENCH_BIN=${BENCH_BIN:-$TARGET/release/posthorn-bench}
POSTHORN_BIN=${POSTHORN_BIN:-$TARGET/release/posthorn}
RESULTS=$ROOT/bench/results-latest.txt

PF_PORT=2626
PH_OFFSET=100
PH_PORT=$((2525 + PH_OFFSET))
RCPT=demo@example.test
SENDER=bench@example.test
SAMPLE_INTERVAL=0.2

PF=/usr/sbin/postfix
TMP=""
PF_CONF=""
PF_STARTED=0
PH_PID=""
SAMPLER_PID=""
GEN_PID=""

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

case $ONLY in both | postfix | posthorn) ;; *) die "BENCH_ONLY must be both, postfix or posthorn" ;; esac
case $MEM in rss | pss) ;; *) die "BENCH_MEM must be rss or pss" ;; esac
MEM_LABEL=$(tr a-z A-Z <<<"$MEM")
[ "$(id -u)" -eq 0 ] || die "run as root (installs postfix, runs a private Postfix instance)"

# --- cleanup ------------------------------------------------------------------

cleanup() {
    local rc=$?
    set +e
    trap - ERR
    if [ -n "$GEN_PID" ]; then
        kill -TERM "$GEN_PID" 2>/dev/null
        wait "$GEN_PID" 2>/dev/null
    fi
    stop_sampler
    [ "$PF_STARTED" = 1 ] && stop_postfix
    [ -n "$PH_PID" ] && stop_posthorn
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then
        if [ "${BENCH_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
            log "kept $TMP (logs: $TMP/pf/maillog, $TMP/posthorn.log, $TMP/gen-*.err)"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

# --- /proc helpers ------------------------------------------------------------

# port_listening PORT: true if something listens on TCP PORT (IPv4 or IPv6).
port_listening() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { found = 1 }
        END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# tree_rss_kb ROOT_PID [PGID]: summed RSS in kB of ROOT_PID, its descendants
# (PPid chain) and, if given, every process in process group PGID. Uses the
# rss field of /proc/PID/stat (field 24, pages), which is the same counter
# the kernel prints as VmRSS in /proc/PID/status, read in one pass. With
# BENCH_MEM=pss it sums Pss from /proc/PID/smaps_rollup instead.
tree_rss_kb() {
    local page_kb=$(($(getconf PAGESIZE) / 1024))
    # Processes come and go between the glob and cat's open: ignore those.
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
        awk -v root="$1" -v pg="${2:-}" -v pk="$page_kb" -v mode="$MEM" '
        {
            # comm (field 2) may hold spaces and parentheses: split after the last ")".
            s = $0; p = 0
            while ((k = index(substr(s, p + 1), ")")) > 0) p += k
            n = split(substr(s, p + 2), f, " ")
            pid = $1; ppid[pid] = f[2]; pgrp[pid] = f[3]; rss[pid] = f[22]
            pids[++np] = pid
        }
        END {
            if (root in ppid) sel[root] = 1
            if (pg != "") for (i = 1; i <= np; i++) if (pgrp[pids[i]] == pg) sel[pids[i]] = 1
            do {
                changed = 0
                for (i = 1; i <= np; i++) {
                    q = pids[i]
                    if (!(q in sel) && (ppid[q] in sel)) { sel[q] = 1; changed = 1 }
                }
            } while (changed)
            if (mode == "pss") { for (q in sel) print q; exit }
            for (q in sel) total += rss[q] * pk
            print total + 0
        }' | if [ "$MEM" = pss ]; then
        # Proportional set size: shared pages divided among their users.
        sed 's|.*|/proc/&/smaps_rollup|' | xargs -r grep -hs '^Pss:' |
            awk '{ total += $2 } END { print total + 0 }'
    else
        cat
    fi
}

# start_sampler ROOT_PID PGID OUTFILE: records the peak of tree_rss_kb in OUTFILE.
start_sampler() {
    local root=$1 pg=$2 out=$3
    echo 0 >"$out"
    (
        set +e
        trap - ERR
        trap 'exit 0' TERM
        peak=0
        while :; do
            kb=$(tree_rss_kb "$root" "$pg")
            if [ "${kb:-0}" -gt "$peak" ]; then peak=$kb; echo "$peak" >"$out"; fi
            sleep "$SAMPLE_INTERVAL"
        done
    ) &
    SAMPLER_PID=$!
}

stop_sampler() {
    if [ -n "$SAMPLER_PID" ]; then
        kill -TERM "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
        SAMPLER_PID=""
    fi
}

# group_alive PGID: true if a live (not zombie) process is in group PGID.
group_alive() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v pg="$1" '
        {
            s = $0; p = 0
            while ((k = index(substr(s, p + 1), ")")) > 0) p += k
            split(substr(s, p + 2), f, " ")
            if (f[3] == pg && f[1] != "Z") found = 1
        }
        END { exit !found }'
}

# count_files DIR: number of entries in DIR (0 if it does not exist yet).
count_files() {
    local f
    shopt -s nullglob
    f=("$1"/*)
    shopt -u nullglob
    echo "${#f[@]}"
}

# wait_port PORT SECONDS PID NAME: wait until PORT listens; fail if PID dies.
wait_port() {
    local port=$1 secs=$2 pid=$3 name=$4 i
    for ((i = 0; i < secs * 10; i++)); do
        port_listening "$port" && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            die "$name exited before listening on 127.0.0.1:$port"
        fi
        sleep 0.1
    done
    die "$name did not listen on 127.0.0.1:$port within ${secs}s"
}

# --- one measurement ----------------------------------------------------------

# run_level SYSTEM LEVEL PORT MAILDIR_NEW ROOT_PID PGID
# Sets LEVEL_ACC (msgs/s), LEVEL_DLV (msgs/s or "timeout"), LEVEL_RSS (MB).
run_level() {
    local sys=$1 level=$2 port=$3 newdir=$4 root=$5 pg=$6
    local rssfile=$TMP/rss-$sys-$level out accepted failed t0 t1 n=0 deadline

    # Start each level with an empty new/ so the count below is this level's.
    [ -d "$newdir" ] && find "$newdir" -mindepth 1 -maxdepth 1 -type f -delete

    start_sampler "$root" "$pg" "$rssfile"
    t0=$EPOCHREALTIME
    # In the background and waited for, so that a signal to this script
    # interrupts the wait and the EXIT trap stops everything at once.
    "$BENCH_BIN" --host 127.0.0.1 --port "$port" --sessions "$level" \
        --count "$COUNT" --size "$SIZE" --per-conn "$PER_CONN" \
        --from "$SENDER" --to "$RCPT" >"$TMP/gen-$sys-$level.out" 2>"$TMP/gen-$sys-$level.err" &
    GEN_PID=$!
    wait "$GEN_PID" || true
    GEN_PID=""
    out=$(cat "$TMP/gen-$sys-$level.out")
    [ -n "$out" ] || { stop_sampler; cat "$TMP/gen-$sys-$level.err" >&2; die "$sys: load generator printed nothing"; }
    accepted=$(sed -n 's/.*accepted=\([0-9]*\).*/\1/p' <<<"$out")
    failed=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$out")
    LEVEL_ACC=$(sed -n 's/.*rate=\([0-9.]*\).*/\1/p' <<<"$out")
    if [ "$failed" != 0 ]; then
        log "$sys level $level: $failed failed transactions; first ones:"
        head -n 5 "$TMP/gen-$sys-$level.err" >&2
    fi

    # Delivered: every accepted message is a file in new/ (polled every 50 ms).
    deadline=$(awk -v t="$t0" -v d="$DELIVERY_TIMEOUT" 'BEGIN { printf "%.6f", t + d }')
    LEVEL_DLV=timeout
    while :; do
        n=$(count_files "$newdir")
        t1=$EPOCHREALTIME
        if [ "$n" -ge "$accepted" ]; then
            LEVEL_DLV=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')
            break
        fi
        if awk -v a="$t1" -v b="$deadline" 'BEGIN { exit !(a > b) }'; then
            log "$sys level $level: only $n of $accepted messages delivered after ${DELIVERY_TIMEOUT}s"
            break
        fi
        sleep 0.05
    done
    stop_sampler
    LEVEL_RSS=$(awk -v kb="$(cat "$rssfile")" 'BEGIN { printf "%.1f", kb / 1024 }')
    log "$sys level $level: $out delivered/s=$LEVEL_DLV peak_${MEM}_mb=$LEVEL_RSS"
}

declare -A ACC DLV RSS

# --- Postfix ------------------------------------------------------------------

ensure_postfix() {
    if [ -x "$PF" ] && [ -x /usr/sbin/smtp-source ]; then
        return
    fi
    log "installing Debian's postfix (no system configuration)"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    if ! apt-cache policy postfix 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get update >&2
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y postfix >&2
    # The package must not leave a system instance running (port 25).
    if "$PF" status >/dev/null 2>&1; then
        log "stopping the system postfix instance the package started"
        "$PF" stop >&2 || true
    fi
    sleep 1
    if port_listening 25; then
        die "something listens on port 25 after installing postfix; stop it first"
    fi
}

# master.cf: the SMTP listener on 127.0.0.1:PF_PORT plus the internal
# services of Debian's default master.cf, none chrooted (the private queue
# has no chroot jail files).
write_master_cf() {
    printf '127.0.0.1:%s inet n - n - - smtpd\n' "$PF_PORT"
    awk '
        BEGIN {
            split("pickup cleanup qmgr tlsmgr rewrite bounce defer trace verify flush " \
                  "proxymap proxywrite smtp relay showq error retry discard local virtual " \
                  "lmtp anvil scache postlog", names, " ")
            for (i in names) keep[names[i]] = 1
        }
        /^#/ || /^[ \t]*$/ { next }
        /^[ \t]/ { if (take) print; next }     # continuation of the previous service
        { take = ($1 in keep) && $2 != "inet" }
        take { $5 = "n"; print }
    ' /usr/share/postfix/master.cf.dist
}

start_postfix() {
    local dir=$TMP/pf uid gid
    PF_CONF=$dir/etc
    PF_MAIL=$TMP/pfmail
    mkdir -p "$PF_CONF" "$dir/queue" "$dir/data" "$PF_MAIL"
    uid=$(id -u nobody)
    gid=$(id -g nobody)
    chown postfix: "$dir/data"
    chown "$uid:$gid" "$PF_MAIL"
    : >"$dir/maillog"

    cat >"$PF_CONF/main.cf" <<EOF
# Private Postfix instance for bench/run.sh. Durability settings are defaults.
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.localhost
mydomain = localhost
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relayhost =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = example.test
virtual_mailbox_base = $PF_MAIL
virtual_mailbox_maps = texthash:$PF_CONF/vmailbox
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
default_process_limit = 200
smtpd_client_connection_count_limit = 1000
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
biff = no
EOF
    echo "$RCPT example.test/demo/Maildir/" >"$PF_CONF/vmailbox"
    write_master_cf >"$PF_CONF/master.cf"

    "$PF" -c "$PF_CONF" check >&2 || die "postfix check failed for $PF_CONF"
    port_listening "$PF_PORT" && die "port $PF_PORT is already in use"
    PF_STARTED=1
    "$PF" -c "$PF_CONF" start >&2 || die "postfix start failed (see $dir/maillog)"
    PF_PIDFILE=$dir/queue/pid/master.pid
    local i
    for ((i = 0; i < 100; i++)); do
        [ -s "$PF_PIDFILE" ] && break
        sleep 0.1
    done
    PF_MASTER=$(tr -d ' \n' <"$PF_PIDFILE")
    wait_port "$PF_PORT" 30 "$PF_MASTER" "postfix master"
    log "postfix $(/usr/sbin/postconf -c "$PF_CONF" -h mail_version) master pid $PF_MASTER on 127.0.0.1:$PF_PORT"
}

stop_postfix() {
    local i
    "$PF" -c "$PF_CONF" stop >/dev/null 2>&1 || true
    for ((i = 0; i < 100; i++)); do
        [ -n "${PF_MASTER:-}" ] && kill -0 "$PF_MASTER" 2>/dev/null || break
        sleep 0.1
    done
    if [ -n "${PF_MASTER:-}" ] && kill -0 "$PF_MASTER" 2>/dev/null; then
        log "postfix master $PF_MASTER did not stop; killing it"
        kill -KILL "$PF_MASTER" 2>/dev/null || true
    fi
    PF_STARTED=0
}

bench_postfix() {
    ensure_postfix
    start_postfix
    local level
    for level in $LEVELS; do
        run_level postfix "$level" "$PF_PORT" "$PF_MAIL/example.test/demo/Maildir/new" "$PF_MASTER" ""
        ACC[postfix,$level]=$LEVEL_ACC
        DLV[postfix,$level]=$LEVEL_DLV
        RSS[postfix,$level]=$LEVEL_RSS
    done
    PF_VERSION=$(/usr/sbin/postconf -c "$PF_CONF" -h mail_version 2>/dev/null || echo "?")
    stop_postfix
}

# --- posthorn -----------------------------------------------------------------

start_posthorn() {
    port_listening "$PH_PORT" && die "port $PH_PORT is already in use"
    # setsid: own process group, so its children can be found and stopped.
    # The same limits as the Postfix instance; BENCH_POSTHORN_OPTS adds more -o.
    # shellcheck disable=SC2086 # word splitting of BENCH_POSTHORN_OPTS wanted
    setsid "$POSTHORN_BIN" dev --state "$TMP/ph" --port-offset "$PH_OFFSET" \
        -o smtpd_client_connection_count_limit=1000 -o default_process_limit=200 \
        ${BENCH_POSTHORN_OPTS:-} >"$TMP/posthorn.log" 2>&1 &
    PH_PID=$!
    wait_port "$PH_PORT" 60 "$PH_PID" "posthorn dev"
    log "posthorn dev pid $PH_PID on 127.0.0.1:$PH_PORT"
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
    # Children left behind in its process group (ours: setsid above).
    if group_alive "$PH_PID"; then
        log "posthorn children outlived the dev process; stopping them"
        kill -TERM -- "-$PH_PID" 2>/dev/null || true
        sleep 1
        kill -KILL -- "-$PH_PID" 2>/dev/null || true
    fi
    PH_PID=""
}

bench_posthorn() {
    start_posthorn
    local level
    for level in $LEVELS; do
        run_level posthorn "$level" "$PH_PORT" \
            "$TMP/ph/mail/example.test/demo/Maildir/new" "$PH_PID" "$PH_PID"
        ACC[posthorn,$level]=$LEVEL_ACC
        DLV[posthorn,$level]=$LEVEL_DLV
        RSS[posthorn,$level]=$LEVEL_RSS
    done
    stop_posthorn
}

# --- main ---------------------------------------------------------------------

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    if [ "$ONLY" = postfix ]; then
        cargo build --release -p posthorn-bench >&2 || die "cargo build -p posthorn-bench failed"
    else
        cargo build --release -p posthorn-bench -p posthorn-cli >&2 ||
            die "cargo build failed (does the posthorn-cli package exist yet? BENCH_ONLY=postfix skips it)"
    fi
fi
[ -x "$BENCH_BIN" ] || die "$BENCH_BIN is missing: build posthorn-bench first"
if [ "$ONLY" != postfix ] && [ ! -x "$POSTHORN_BIN" ]; then
    die "$POSTHORN_BIN is missing: the posthorn-cli package must build the 'posthorn' binary (BENCH_ONLY=postfix skips posthorn)"
fi

TMP=$(mktemp -d /tmp/posthorn-bench.XXXXXX)
chmod 0755 "$TMP" # the postfix and nobody users must reach the queue and Maildirs

PF_VERSION="(not run)"
[ "$ONLY" != posthorn ] && bench_postfix
[ "$ONLY" != postfix ] && bench_posthorn

{
    echo "posthorn vs Postfix $PF_VERSION: $COUNT messages of $SIZE bytes per level, $PER_CONN per connection"
    echo "host: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
        "$(uname -sr), $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)"
    printf '%-8s %12s %12s %12s %12s %11s %11s\n' level "postfix" "posthorn" "postfix" "posthorn" "postfix" "posthorn"
    printf '%-8s %12s %12s %12s %12s %11s %11s\n' sessions "accepted/s" "accepted/s" "delivered/s" "delivered/s" "peak $MEM_LABEL MB" "peak $MEM_LABEL MB"
    for level in $LEVELS; do
        printf '%-8s %12s %12s %12s %12s %11s %11s\n' "$level" \
            "${ACC[postfix,$level]:--}" "${ACC[posthorn,$level]:--}" \
            "${DLV[postfix,$level]:--}" "${DLV[posthorn,$level]:--}" \
            "${RSS[postfix,$level]:--}" "${RSS[posthorn,$level]:--}"
    done
} | tee "$RESULTS"
