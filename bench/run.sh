#!/usr/bin/env bash
# bench/run.sh — throughput and memory of posthorn next to Postfix on this machine.
#
# Run from the repository root, as root:   bench/run.sh
# (Without root only BENCH_ONLY=posthorn runs, on the temp directory's file system.)
#
# Builds posthorn-bench (the SMTP load generator in bench/src) and posthorn,
# installs Debian's postfix if missing, starts a private Postfix instance on
# 127.0.0.1:2626 and `posthorn dev` on 127.0.0.1:2625, and for each
# concurrency level sends BENCH_COUNT messages of BENCH_SIZE bytes to
# demo@example.test, measuring accepted msgs/s, delivered msgs/s (until every
# message is a file in the demo Maildir's new/), the CPU time of the mail
# system's whole process tree per message, and the peak summed RSS of its
# processes. Prints a table and writes bench/results-latest.txt.
# See bench/README.md for what each figure means.
#
# Both systems keep their queue and their mailboxes on a journaled ext4: a
# sparse image file in the temp directory, made with mkfs.ext4 (default
# journal) and loop-mounted for the run (unmounted on exit). Without root, or
# when the loop mount fails, they use the temp directory's file system and the
# script says so.
#
# Environment:
#   BENCH_COUNT=3000          messages per level
#   BENCH_LEVELS="1 10 50"    concurrent SMTP sessions per level
#   BENCH_SIZE=5120           message size in bytes
#   BENCH_PER_CONN=100        messages per connection (smtp-source -m)
#   BENCH_ONLY=both           both | postfix | posthorn
#   BENCH_TIMEOUT=300         seconds to wait for delivery, per level
#   BENCH_SKIP_BUILD=0        1: use the binaries already built
#   BENCH_BIN=...             load generator (default target/release/posthorn-bench)
#   POSTHORN_BIN=...          posthorn binary (default target/release/posthorn)
#   POSTDROP_BIN=...          postdrop binary, sendmail mode (default target/release/postdrop)
#   BENCH_POSTHORN_OPTS=""    extra flags for `posthorn dev`, e.g. "-o name=value"
#   BENCH_KEEP=0              1: keep the temp directory (logs, Maildirs)
#   BENCH_MEM=rss             rss: sum of VmRSS; pss: sum of Pss (shared pages
#                             split among the processes sharing them)
#   BENCH_FS=loop             loop: queues and mailboxes on a loop-mounted
#                             journaled ext4 (needs root); tmp: on the temp
#                             directory's file system
#   BENCH_FS_SIZE=2G          size of the (sparse) ext4 image
#   BENCH_MODE=local          local: delivered into a Maildir of the system;
#                             relay: relayed to Debian's smtp-sink on
#                             127.0.0.1:2700 (relayhost = [127.0.0.1]:2700 in
#                             both systems), counted by the sink, results in
#                             bench/results-relay-latest.txt
#                             sendmail: messages handed to each system's
#                             `sendmail -t -i`, one process per message
#                             (--sessions of them at a time), delivered into
#                             the Maildir; also the sendmail processes' own
#                             CPU; results in bench/results-sendmail-latest.txt
#                             verify: posthorn alone, twice per level: with
#                             the inbound SPF/DKIM/DMARC/ARC checks off
#                             (smtpd_authentication_checks empty) and on;
#                             every message is one message of
#                             bench@sender.test DKIM-signed once ahead
#                             (dkimpy's dkimsign, RSA-2048), whose SPF, DKIM
#                             and DMARC records bench/dns-txt.py serves on
#                             127.0.0.1:2753; delivered into the Maildir;
#                             results in bench/results-verify-latest.txt
#
# Traffic goes to 127.0.0.1 only. Everything started here is stopped on exit,
# error or interrupt (trap EXIT).

set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

COUNT=${BENCH_COUNT:-3000}
LEVELS=${BENCH_LEVELS:-"1 10 50"}
SIZE=${BENCH_SIZE:-5120}
PER_CONN=${BENCH_PER_CONN:-100}
ONLY=${BENCH_ONLY:-both}
MEM=${BENCH_MEM:-rss}
DELIVERY_TIMEOUT=${BENCH_TIMEOUT:-300}
FS_MODE=${BENCH_FS:-loop}
FS_SIZE=${BENCH_FS_SIZE:-2G}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BENCH_BIN=${BENCH_BIN:-$TARGET/release/posthorn-bench}
POSTHORN_BIN=${POSTHORN_BIN:-$TARGET/release/posthorn}
POSTDROP_BIN=${POSTDROP_BIN:-$TARGET/release/postdrop}
MODE=${BENCH_MODE:-local}
RESULTS=$ROOT/bench/results-latest.txt
[ "$MODE" = relay ] && RESULTS=$ROOT/bench/results-relay-latest.txt
[ "$MODE" = sendmail ] && RESULTS=$ROOT/bench/results-sendmail-latest.txt
[ "$MODE" = verify ] && RESULTS=$ROOT/bench/results-verify-latest.txt
# verify mode: the parameter that turns the checks off, the bench's DNS
# server, the signed message.
CHECKS_PARAM=smtpd_authentication_checks
DNS_PORT=2753
DNS_PID=""
MESSAGE_FILE=""
# sendmail mode: the command each system's messages go to (set per system).
SM=()

PF_PORT=2626
PH_OFFSET=100
PH_PORT=$((2525 + PH_OFFSET))
RCPT=demo@example.test
# relay mode: a recipient domain neither system serves, sent to the sink.
SINK_PORT=2700
RELAYHOST="[127.0.0.1]:$SINK_PORT"
[ "$MODE" = relay ] && RCPT=sink@relay.test
SINK_PID=""
SENDER=bench@example.test
[ "$MODE" = verify ] && SENDER=bench@sender.test
SAMPLE_INTERVAL=0.2

PF=/usr/sbin/postfix
TMP=""
PF_CONF=""
PF_STARTED=0
PH_PID=""
SAMPLER_PID=""
GEN_PID=""

# log, die, the /proc accounting, wait_port, the bench file system, ratio.
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

case $ONLY in both | postfix | posthorn) ;; *) die "BENCH_ONLY must be both, postfix or posthorn" ;; esac
case $MEM in rss | pss) ;; *) die "BENCH_MEM must be rss or pss" ;; esac
case $FS_MODE in loop | tmp) ;; *) die "BENCH_FS must be loop or tmp" ;; esac
case $MODE in local | relay | sendmail | verify) ;; *) die "BENCH_MODE must be local, relay, sendmail or verify" ;; esac
[ "$MODE" = verify ] && ONLY=posthorn
MEM_LABEL=$(tr a-z A-Z <<<"$MEM")
if [ "$(id -u)" -ne 0 ]; then
    # posthorn dev runs as any user; a private Postfix instance needs root.
    [ "$ONLY" = posthorn ] || die "run as root (installs postfix, runs a private Postfix instance); BENCH_ONLY=posthorn runs without"
fi
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
    stop_sink
    stop_dns
    [ "$PF_STARTED" = 1 ] && stop_postfix
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
            log "kept $TMP (logs: $TMP/pf/maillog, $TMP/posthorn.log, $TMP/gen-*.err;" \
                "queues and Maildirs $where)"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

# --- helpers only the SMTP bench needs ------------------------------------

# count_files DIR: number of entries in DIR (0 if it does not exist yet).
count_files() {
    local f
    shopt -s nullglob
    f=("$1"/*)
    shopt -u nullglob
    echo "${#f[@]}"
}

# journal_commits: transactions the bench file system's journal has committed
# so far (first line of /proc/fs/jbd2/DEV-8/info), or "-" when it is not the
# loop-mounted image. The CPU column does not count the jbd2 thread; this
# shows how many commits each system causes.
journal_commits() {
    local dev info
    [ "$FS_MOUNTED" = 1 ] || { echo -; return; }
    dev=$(findmnt -n -o SOURCE --mountpoint "$FS" 2>/dev/null)
    info=/proc/fs/jbd2/${dev##*/}-8/info
    if [ -r "$info" ]; then awk 'NR == 1 { print $1 }' "$info"; else echo -; fi
}

# --- the sink of relay mode ----------------------------------------------------

# start_sink: Debian's smtp-sink on 127.0.0.1:SINK_PORT, counting messages
# (-c writes "sess=N quit=N mesg=N" and a carriage return at each event).
start_sink() {
    local user=()
    [ -x /usr/sbin/smtp-sink ] || ensure_postfix
    port_listening "$SINK_PORT" && die "port $SINK_PORT is already in use"
    [ "$(id -u)" = 0 ] && user=(-u nobody)
    /usr/sbin/smtp-sink -c "${user[@]}" -m 1000 127.0.0.1:"$SINK_PORT" 1024 >"$TMP/sink.out" 2>"$TMP/sink.err" &
    SINK_PID=$!
    wait_port "$SINK_PORT" 10 "$SINK_PID" "smtp-sink"
    log "smtp-sink pid $SINK_PID on 127.0.0.1:$SINK_PORT"
}

stop_sink() {
    [ -n "$SINK_PID" ] || return 0
    kill -TERM "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
    SINK_PID=""
}

# sink_count: messages the sink has taken so far.
sink_count() {
    local n
    n=$(tail -c 200 "$TMP/sink.out" 2>/dev/null | tr '\r' '\n' | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -n 1)
    echo "${n:-0}"
}

# delivered NEWDIR BASE: messages delivered in this level so far (files in
# NEWDIR; in relay mode messages the sink took since it counted BASE).
delivered() {
    if [ "$MODE" = relay ]; then
        echo $(($(sink_count) - $2))
    else
        count_files "$1"
    fi
}

# --- the DNS server and signed message of verify mode ------------------------

# ensure_dkimpy: Debian's python3-dkim (dkimsign), installed when missing.
ensure_dkimpy() {
    command -v dkimsign >/dev/null 2>&1 && return
    [ "$(id -u)" = 0 ] || die "verify mode needs dkimsign (Debian's python3-dkim): install it or run as root"
    log "installing Debian's python3-dkim (dkimsign)"
    if ! apt-cache policy python3-dkim 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get update >&2
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y python3-dkim >&2
}

# setup_verify: an RSA-2048 key, the zone of sender.test (SPF for 127.0.0.1,
# the DKIM key, DMARC p=reject), the DNS server, and the signed message.
setup_verify() {
    local d=$TMP/verify pub line i
    ensure_dkimpy
    mkdir -p "$d"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/key.pem" 2>/dev/null
    pub=$(openssl pkey -in "$d/key.pem" -pubout -outform DER 2>/dev/null | base64 -w0)
    {
        echo "sender.test v=spf1 ip4:127.0.0.1 -all"
        echo "bench._domainkey.sender.test v=DKIM1; k=rsa; p=$pub"
        echo "_dmarc.sender.test v=DMARC1; p=reject; adkim=s; aspf=r"
    } >"$d/zone"
    port_listening "$DNS_PORT" && die "port $DNS_PORT is already in use"
    python3 "$ROOT/bench/dns-txt.py" "$DNS_PORT" "$d/zone" >"$d/dns.out" 2>"$d/dns.err" &
    DNS_PID=$!
    for ((i = 0; i < 50; i++)); do
        grep -q ready "$d/dns.out" 2>/dev/null && break
        sleep 0.1
    done
    grep -q ready "$d/dns.out" || die "bench/dns-txt.py did not start: $(cat "$d/dns.err")"
    # One message of about BENCH_SIZE bytes, signed once.
    line=$(printf '%075d' 0 | tr 0 x)
    {
        printf 'From: Bench <%s>\r\nTo: <%s>\r\nSubject: posthorn verify bench\r\n' "$SENDER" "$RCPT"
        printf 'Date: %s\r\nMessage-ID: <%s@sender.test>\r\nMIME-Version: 1.0\r\n' \
            "$(date -R)" "$(date +%s).$$"
        printf 'Content-Type: text/plain; charset=us-ascii\r\n\r\n'
        for ((i = 0; i < SIZE / 77; i++)); do printf '%s\r\n' "$line"; done
    } >"$d/unsigned.eml"
    dkimsign bench sender.test "$d/key.pem" <"$d/unsigned.eml" >"$d/signed.eml" ||
        die "dkimsign failed"
    grep -q '^DKIM-Signature:' "$d/signed.eml" || die "dkimsign wrote no signature"
    MESSAGE_FILE=$d/signed.eml
    log "verify: DNS server pid $DNS_PID on 127.0.0.1:$DNS_PORT;" \
        "message of $(wc -c <"$MESSAGE_FILE") bytes signed by bench._domainkey.sender.test"
}

stop_dns() {
    [ -n "$DNS_PID" ] || return 0
    kill -TERM "$DNS_PID" 2>/dev/null || true
    wait "$DNS_PID" 2>/dev/null || true
    DNS_PID=""
}

# --- one measurement ----------------------------------------------------------

# run_level SYSTEM LEVEL PORT MAILDIR_NEW ROOT_PID PGID
# Sets LEVEL_ACC (msgs/s), LEVEL_DLV (msgs/s or "timeout"), LEVEL_RSS (MB),
# LEVEL_CPU (ms of CPU per message, user + system, of the whole server tree),
# LEVEL_USR and LEVEL_SYS (the same split), LEVEL_NPROC (processes at the end),
# LEVEL_JC (journal commits of the bench file system per message, "-" when it
# is not the loop-mounted image).
run_level() {
    local sys=$1 level=$2 port=$3 newdir=$4 root=$5 pg=$6
    local rssfile=$TMP/rss-$sys-$level out accepted failed t0 t1 n=0 deadline cpu0 cpu1 base=0

    # Start each level with an empty new/ so the count below is this level's.
    [ -d "$newdir" ] && find "$newdir" -mindepth 1 -maxdepth 1 -type f -delete
    [ "$MODE" = relay ] && base=$(sink_count)

    start_sampler "$root" "$pg" "$rssfile"
    # CPU of the server tree: sampled right before the load and right after
    # the last delivery; the difference divided by the messages.
    cpu0=$(tree_cpu "$root" "$pg")
    jc0=$(journal_commits)
    t0=$EPOCHREALTIME
    # In the background and waited for, so that a signal to this script
    # interrupts the wait and the EXIT trap stops everything at once.
    local how=(--host 127.0.0.1 --port "$port" --per-conn "$PER_CONN") a
    if [ "$MODE" = sendmail ]; then
        how=(--exec "${SM[0]}")
        for a in "${SM[@]:1}"; do how+=(--exec-arg "$a"); done
    fi
    [ -n "$MESSAGE_FILE" ] && how+=(--message "$MESSAGE_FILE")
    "$BENCH_BIN" "${how[@]}" --sessions "$level" --count "$COUNT" --size "$SIZE" \
        --from "$SENDER" --to "$RCPT" >"$TMP/gen-$sys-$level.out" 2>"$TMP/gen-$sys-$level.err" &
    GEN_PID=$!
    wait "$GEN_PID" || true
    GEN_PID=""
    out=$(cat "$TMP/gen-$sys-$level.out")
    [ -n "$out" ] || { stop_sampler; cat "$TMP/gen-$sys-$level.err" >&2; die "$sys: load generator printed nothing"; }
    accepted=$(sed -n 's/.*accepted=\([0-9]*\).*/\1/p' <<<"$out")
    failed=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$out")
    LEVEL_ACC=$(sed -n 's/.*rate=\([0-9.]*\).*/\1/p' <<<"$out")
    # sendmail mode: the CPU of the sendmail processes (and what they ran),
    # ms per message; not part of the server tree's figure.
    LEVEL_SMCPU=$(sed -n 's/.*child_ticks=\([0-9]*\).*/\1/p' <<<"$out" |
        awk -v n="$COUNT" -v hz="$CLK_TCK" '{ printf "%.3f", $1 * 1000 / hz / n }')
    if [ "$failed" != 0 ]; then
        log "$sys level $level: $failed failed transactions; first ones:"
        head -n 5 "$TMP/gen-$sys-$level.err" >&2
    fi

    # Delivered: every accepted message is a file in new/ (polled every 50 ms).
    deadline=$(awk -v t="$t0" -v d="$DELIVERY_TIMEOUT" 'BEGIN { printf "%.6f", t + d }')
    LEVEL_DLV=timeout
    while :; do
        n=$(delivered "$newdir" "$base")
        t1=$EPOCHREALTIME
        if [ "$n" -ge "$accepted" ]; then
            cpu1=$(tree_cpu "$root" "$pg")
            LEVEL_DLV=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')
            break
        fi
        if awk -v a="$t1" -v b="$deadline" 'BEGIN { exit !(a > b) }'; then
            log "$sys level $level: only $n of $accepted messages delivered after ${DELIVERY_TIMEOUT}s"
            cpu1=$(tree_cpu "$root" "$pg")
            break
        fi
        sleep 0.05
    done
    jc1=$(journal_commits)
    stop_sampler
    LEVEL_JC=$(awk -v a="$jc0" -v b="$jc1" -v n="$n" 'BEGIN {
        if (a == "-" || b == "-" || n < 1) print "-"; else printf "%.2f\n", (b - a) / n }')
    LEVEL_RSS=$(awk -v kb="$(cat "$rssfile")" 'BEGIN { printf "%.1f", kb / 1024 }')
    # Per delivered message (all of them when they all arrived).
    read -r LEVEL_USR LEVEL_SYS LEVEL_CPU LEVEL_NPROC < <(awk -v a="$cpu0" -v b="$cpu1" \
        -v n="$n" -v hz="$CLK_TCK" 'BEGIN {
            split(a, x, " "); split(b, y, " ")
            if (n < 1) n = 1
            u = (y[1] - x[1]) * 1000 / hz / n; s = (y[2] - x[2]) * 1000 / hz / n
            printf "%.3f %.3f %.3f %d\n", u, s, u + s, y[3]
        }')
    log "$sys level $level: $out delivered/s=$LEVEL_DLV cpu_ms/msg=$LEVEL_CPU" \
        "(user $LEVEL_USR, sys $LEVEL_SYS; $LEVEL_NPROC processes) peak_${MEM}_mb=$LEVEL_RSS" \
        "journal_commits/msg=$LEVEL_JC"
    [ "$MODE" != relay ] && [ -d "$newdir" ] && check_fs "$sys Maildir" "$newdir"
    return 0
}

declare -A ACC DLV RSS CPU USR SYS NPROC JC SMCPU

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
    local dir=$TMP/pf uid gid PF_RELAYHOST=
    [ "$MODE" = relay ] && PF_RELAYHOST=$RELAYHOST
    PF_CONF=$dir/etc
    # Queue and mailboxes on the bench file system; configuration and log not.
    PF_QUEUE=$FS/pf/queue
    PF_MAIL=$FS/pfmail
    mkdir -p "$PF_CONF" "$PF_QUEUE" "$dir/data" "$PF_MAIL"
    uid=$(id -u nobody)
    gid=$(id -g nobody)
    chown postfix: "$dir/data"
    chown "$uid:$gid" "$PF_MAIL"
    : >"$dir/maillog"

    cat >"$PF_CONF/main.cf" <<EOF
# Private Postfix instance for bench/run.sh. Durability settings are defaults.
compatibility_level = 3.6
queue_directory = $PF_QUEUE
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.localhost
mydomain = localhost
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relayhost = $PF_RELAYHOST
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
    PF_PIDFILE=$PF_QUEUE/pid/master.pid
    local i
    for ((i = 0; i < 100; i++)); do
        [ -s "$PF_PIDFILE" ] && break
        sleep 0.1
    done
    PF_MASTER=$(tr -d ' \n' <"$PF_PIDFILE")
    wait_port "$PF_PORT" 30 "$PF_MASTER" "postfix master"
    log "postfix $(/usr/sbin/postconf -c "$PF_CONF" -h mail_version) master pid $PF_MASTER on 127.0.0.1:$PF_PORT"
    check_fs "postfix queue" "$PF_QUEUE/incoming"
    check_fs "postfix mailboxes" "$PF_MAIL"
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
    # Postfix's sendmail with this instance's configuration directory (it
    # runs postdrop, which honours -C for root).
    SM=(/usr/sbin/sendmail -C "$PF_CONF" -t -i)
    for level in $LEVELS; do
        run_level postfix "$level" "$PF_PORT" "$PF_MAIL/example.test/demo/Maildir/new" "$PF_MASTER" ""
        ACC[postfix,$level]=$LEVEL_ACC
        DLV[postfix,$level]=$LEVEL_DLV
        RSS[postfix,$level]=$LEVEL_RSS
        CPU[postfix,$level]=$LEVEL_CPU
        USR[postfix,$level]=$LEVEL_USR
        SYS[postfix,$level]=$LEVEL_SYS
        NPROC[postfix,$level]=$LEVEL_NPROC
        JC[postfix,$level]=$LEVEL_JC
        SMCPU[postfix,$level]=$LEVEL_SMCPU
    done
    PF_VERSION=$(/usr/sbin/postconf -c "$PF_CONF" -h mail_version 2>/dev/null || echo "?")
    stop_postfix
}

# --- posthorn -----------------------------------------------------------------

start_posthorn() {
    port_listening "$PH_PORT" && die "port $PH_PORT is already in use"
    # setsid: own process group, so its children can be found and stopped.
    # The same limits as the Postfix instance; BENCH_POSTHORN_OPTS adds more -o.
    local relay=()
    # relay: as the Postfix instance, loopback clients may relay.
    [ "$MODE" = relay ] && relay=(-o "relayhost=$RELAYHOST" -o "mynetworks=127.0.0.0/8")
    # verify: the bench's DNS server; the checks on or off (PH_CHECKS).
    [ "$MODE" = verify ] && relay=(-o "dns_servers=127.0.0.1:$DNS_PORT" "${PH_CHECKS[@]}")
    # shellcheck disable=SC2086 # word splitting of BENCH_POSTHORN_OPTS wanted
    setsid "$POSTHORN_BIN" dev --state "$FS/ph" --port-offset "$PH_OFFSET" \
        -o smtpd_client_connection_count_limit=1000 -o default_process_limit=200 \
        "${relay[@]}" ${BENCH_POSTHORN_OPTS:-} >"$TMP/posthorn.log" 2>&1 &
    PH_PID=$!
    wait_port "$PH_PORT" 60 "$PH_PID" "posthorn dev"
    log "posthorn dev pid $PH_PID on 127.0.0.1:$PH_PORT"
    check_fs "posthorn queue" "$FS/ph/spool/incoming"
    [ "$MODE" != relay ] && check_fs "posthorn mailboxes" "$FS/ph/mail/example.test/demo/Maildir/new"
    return 0
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
    # posthorn's sendmail as the package installs it: the program, sendmail
    # a link to it, and the small setgid postdrop beside it (sendmail runs
    # that one when it is setgid; otherwise it runs itself as postdrop), with
    # the dev instance's configuration directory.
    mkdir -p "$TMP/bin"
    cp "$POSTHORN_BIN" "$TMP/bin/posthorn"
    ln -sf posthorn "$TMP/bin/sendmail"
    if [ -x "$POSTDROP_BIN" ] && [ "$(id -u)" = 0 ]; then
        install -m 2755 -g "$(id -gn)" "$POSTDROP_BIN" "$TMP/bin/postdrop"
    else
        log "no setgid postdrop ($POSTDROP_BIN, root): sendmail runs itself as postdrop"
    fi
    SM=("$TMP/bin/sendmail" -C "$FS/ph" -t -i)
    for level in $LEVELS; do
        run_level posthorn "$level" "$PH_PORT" \
            "$FS/ph/mail/example.test/demo/Maildir/new" "$PH_PID" "$PH_PID"
        ACC[posthorn,$level]=$LEVEL_ACC
        DLV[posthorn,$level]=$LEVEL_DLV
        RSS[posthorn,$level]=$LEVEL_RSS
        CPU[posthorn,$level]=$LEVEL_CPU
        USR[posthorn,$level]=$LEVEL_USR
        SYS[posthorn,$level]=$LEVEL_SYS
        NPROC[posthorn,$level]=$LEVEL_NPROC
        JC[posthorn,$level]=$LEVEL_JC
        SMCPU[posthorn,$level]=$LEVEL_SMCPU
    done
    stop_posthorn
}

# verify mode: posthorn with the checks off, then on, each over every level;
# results under the names "off" and "on".
bench_verify() {
    local setting level
    for setting in off on; do
        if [ "$setting" = off ]; then PH_CHECKS=(-o "$CHECKS_PARAM="); else PH_CHECKS=(); fi
        start_posthorn
        for level in $LEVELS; do
            run_level "$setting" "$level" "$PH_PORT" \
                "$FS/ph/mail/example.test/demo/Maildir/new" "$PH_PID" "$PH_PID"
            ACC[$setting,$level]=$LEVEL_ACC
            DLV[$setting,$level]=$LEVEL_DLV
            RSS[$setting,$level]=$LEVEL_RSS
            CPU[$setting,$level]=$LEVEL_CPU
            USR[$setting,$level]=$LEVEL_USR
            SYS[$setting,$level]=$LEVEL_SYS
            NPROC[$setting,$level]=$LEVEL_NPROC
        done
        stop_posthorn
        # A fresh spool and Maildir for the other setting.
        rm -rf "$FS/ph"
    done
}
PH_CHECKS=()

# loss OFF ON: how much lower ON is than OFF, in percent.
loss() {
    awk -v off="$1" -v on="$2" 'BEGIN {
        if (off == "" || on == "" || off == "timeout" || on == "timeout" || off + 0 == 0) print "-"
        else printf "%.1f%%", (off - on) * 100 / off }'
}

# verify_report: the verify mode's table.
verify_report() {
    local level
    echo "posthorn inbound verification cost: $COUNT messages of $(wc -c <"$MESSAGE_FILE") bytes per level, $PER_CONN per connection"
    echo "host: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
        "$(uname -sr), $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)"
    echo "queues and mailboxes: $FS_DESC"
    echo "one message from bench@sender.test with one RSA-2048 DKIM signature: SPF (ip4) pass, DKIM pass, DMARC (p=reject) pass, records from the bench's DNS server"
    echo "off: $CHECKS_PARAM empty; on: the default checks. accept/s: 250 replies after the final dot per second; msg/s: delivered into the Maildir, end to end; CPU: user+sys ms per message of the whole server process tree"
    printf '%-8s %10s %10s %7s %10s %10s %7s %10s %10s %9s %9s\n' level \
        off on accept off on deliver off on off on
    printf '%-8s %10s %10s %7s %10s %10s %7s %10s %10s %9s %9s\n' sessions \
        "accept/s" "accept/s" loss "msg/s" "msg/s" loss "CPU ms" "CPU ms" "$MEM_LABEL MB" "$MEM_LABEL MB"
    for level in $LEVELS; do
        printf '%-8s %10s %10s %7s %10s %10s %7s %10s %10s %9s %9s\n' "$level" \
            "${ACC[off,$level]:--}" "${ACC[on,$level]:--}" "$(loss "${ACC[off,$level]:-}" "${ACC[on,$level]:-}")" \
            "${DLV[off,$level]:--}" "${DLV[on,$level]:--}" "$(loss "${DLV[off,$level]:-}" "${DLV[on,$level]:-}")" \
            "${CPU[off,$level]:--}" "${CPU[on,$level]:--}" \
            "${RSS[off,$level]:--}" "${RSS[on,$level]:--}"
    done
}

# --- main ---------------------------------------------------------------------

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    if [ "$ONLY" = postfix ]; then
        cargo build --release -p posthorn-bench >&2 || die "cargo build -p posthorn-bench failed"
    else
        cargo build --release -p posthorn-bench -p posthorn-cli -p postdrop >&2 ||
            die "cargo build failed (does the posthorn-cli package exist yet? BENCH_ONLY=postfix skips it)"
    fi
fi
[ -x "$BENCH_BIN" ] || die "$BENCH_BIN is missing: build posthorn-bench first"
if [ "$ONLY" != postfix ] && [ ! -x "$POSTHORN_BIN" ]; then
    die "$POSTHORN_BIN is missing: the posthorn-cli package must build the 'posthorn' binary (BENCH_ONLY=postfix skips posthorn)"
fi

TMP=$(mktemp -d /tmp/posthorn-bench.XXXXXX)
chmod 0755 "$TMP" # the postfix and nobody users must reach the queue and Maildirs
setup_fs

PF_VERSION="(not run)"
if [ "$MODE" = verify ]; then
    setup_verify
    bench_verify
    verify_report | tee "$RESULTS"
    exit 0
fi
[ "$MODE" = relay ] && start_sink
[ "$ONLY" != posthorn ] && bench_postfix
[ "$ONLY" != postfix ] && bench_posthorn

{
    echo "posthorn vs Postfix $PF_VERSION: $COUNT messages of $SIZE bytes per level, $PER_CONN per connection"
    echo "host: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
        "$(uname -sr), $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)"
    echo "queues and mailboxes: $FS_DESC"
    if [ "$MODE" = sendmail ]; then
        echo "msg/s: handed to \`sendmail -t -i\` (one process per message, LEVEL at a time) and delivered into the Maildir, end to end; CPU: user+sys ms per message of the whole server process tree; sendmail CPU: the sendmail processes and what they ran (postdrop)"
    elif [ "$MODE" = relay ]; then
        echo "msg/s: relayed to smtp-sink on 127.0.0.1:$SINK_PORT (relayhost), counted by the sink, end to end; CPU: user+sys ms per message of the whole server process tree (not the sink)"
    else
        echo "msg/s: delivered into the Maildir, end to end; CPU: user+sys ms per message of the whole server process tree"
    fi
    printf '%-8s %10s %10s %7s %10s %10s %7s %10s %10s %9s %9s\n' level \
        postfix posthorn posthorn/ postfix posthorn posthorn/ postfix posthorn postfix posthorn
    printf '%-8s %10s %10s %7s %10s %10s %7s %10s %10s %9s %9s\n' sessions \
        "msg/s" "msg/s" postfix "CPU ms" "CPU ms" postfix "accept/s" "accept/s" "$MEM_LABEL MB" "$MEM_LABEL MB"
    for level in $LEVELS; do
        printf '%-8s %10s %10s %7s %10s %10s %7s %10s %10s %9s %9s\n' "$level" \
            "${DLV[postfix,$level]:--}" "${DLV[posthorn,$level]:--}" \
            "$(ratio "${DLV[posthorn,$level]:-}" "${DLV[postfix,$level]:-}")" \
            "${CPU[postfix,$level]:--}" "${CPU[posthorn,$level]:--}" \
            "$(ratio "${CPU[posthorn,$level]:-}" "${CPU[postfix,$level]:-}")" \
            "${ACC[postfix,$level]:--}" "${ACC[posthorn,$level]:--}" \
            "${RSS[postfix,$level]:--}" "${RSS[posthorn,$level]:--}"
    done
    echo "CPU ms per message, user / sys, and processes in the tree at the end of the level:"
    for level in $LEVELS; do
        printf '%-8s postfix %7s / %7s (%3s procs)   posthorn %7s / %7s (%3s procs)\n' "$level" \
            "${USR[postfix,$level]:--}" "${SYS[postfix,$level]:--}" "${NPROC[postfix,$level]:--}" \
            "${USR[posthorn,$level]:--}" "${SYS[posthorn,$level]:--}" "${NPROC[posthorn,$level]:--}"
    done
    if [ "$MODE" = sendmail ]; then
        echo "sendmail processes' CPU ms per message (not in the server tree's figure):"
        for level in $LEVELS; do
            printf '%-8s postfix %7s   posthorn %7s\n' "$level" "${SMCPU[postfix,$level]:--}" "${SMCPU[posthorn,$level]:--}"
        done
    fi
    echo "journal commits of the bench file system per message (jbd2's work, not in the CPU column):"
    for level in $LEVELS; do
        printf '%-8s postfix %7s   posthorn %7s\n' "$level" "${JC[postfix,$level]:--}" "${JC[posthorn,$level]:--}"
    done
} | tee "$RESULTS"
