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
MAILDIR_BIN=$BENCH_BIN
RESULTS=$ROOT/bench/results-pop3-latest.txt

DOMAIN=example.test
PATTERN="user%d@$DOMAIN"
PASSWORD=bench-pop3-secret
DV_PORT=2210       # Dovecot pop3 (plain, STLS)
DV_PORT_TLS=2211   # Dovecot pop3s (listening, not measured)
PH_OFFSET=200      # posthorn dev --port-offset: pop3 2310, pop3s 3195, smtp 2725
PH_PORT=$((2110 + PH_OFFSET))
PH_SMTP_PORT=$((2525 + PH_OFFSET))
GREET_WAIT=10      # seconds posthorn gets to answer POP3 once it listens for SMTP
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
# The users file and mailboxes, run_load and store, Dovecot, posthorn dev,
# the cleanup trap.
# shellcheck source=bench/lib-mail.sh
. "$ROOT/bench/lib-mail.sh"

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

trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

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

# --- Dovecot ------------------------------------------------------------------

# The settings of the private instance that differ from Debian's defaults
# (doveconf -n of a fresh dovecot-core + dovecot-pop3d), and why; printed in
# the log and the results.
dovecot_differences() {
    cat <<EOF
Dovecot settings that differ from Debian's defaults (everything else is Dovecot's default:
  a pop3-login process and a pop3 process per connection (service_count = 1), mail_fsync =
  optimized, pop3_lock_session = no, mail_max_userip_connections = 10, index files in the Maildir):
EOF
    dovecot_common_differences pop3 "$DV_PORT" "$DV_PORT_TLS" 110 995
    echo "  Debian's namespace inbox with special-use folders: not included (POP3 reads only INBOX)"
}

bench_dovecot() {
    ensure_dovecot pop3
    start_dovecot pop3 "$DV_PORT" "$DV_PORT_TLS"
    dovecot_differences | while IFS= read -r l; do log "$l"; done
    bench_system dovecot "$DV_PORT" "$DV_PID" "$DV_PID"
    dovecot_auth_cache
    stop_dovecot
}

# --- main ---------------------------------------------------------------------

build_binaries

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
TMP=$(mktemp -d /tmp/posthorn-bench-pop3.XXXXXX)
chmod 0755 "$TMP" # dovecot's processes and nobody must reach the users file and mailboxes
setup_fs
make_data "$USERS"

DV_VERSION="(not run)"
DV_CACHE=""
HASH_MS=$(hash_ms)
PH_STATUS="(not run)"
[ "$ONLY" != posthorn ] && bench_dovecot
[ "$ONLY" != dovecot ] && bench_posthorn pop3d "$PH_PORT" "+OK"

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
