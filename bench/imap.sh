#!/usr/bin/env bash
# bench/imap.sh — IMAP throughput, latency, CPU and memory per idle connection
# of posthorn next to Dovecot.
#
# Run from the repository root, as root:   bench/imap.sh
#
# Builds posthorn-imap-bench (the IMAP load generator in bench/src/imap) and
# posthorn, installs Debian's dovecot-imapd if missing (the package's own
# system instance is stopped, and disabled when this script installed it),
# generates the mailboxes once (BENCH_MESSAGES messages for each of the
# clients' mailboxes; the mailboxes of the idle connections are hard links to
# those messages) and copies them for each system onto a loop-mounted
# journaled ext4, then runs a private Dovecot instance on 127.0.0.1:2253 and
# `posthorn dev` (IMAP on 127.0.0.1:2443) against the same users file, one
# after the other. For each system:
#   first  warm-up: each mailbox once (its first SELECT: Maildir new/ to cur/,
#          indexes built), one client
#   (a)    for each level of BENCH_LEVELS concurrent clients, BENCH_SESSIONS
#          whole sessions: connect, LOGIN, SELECT INBOX, FETCH 1:* (FLAGS UID
#          RFC822.SIZE), BENCH_FETCH x FETCH BODY.PEEK[] of random messages,
#          STORE +FLAGS (\Seen) on them, SEARCH UNSEEN, NOOP, LOGOUT
#   (b)    BENCH_LONG_CLIENTS clients, one long session each, rounds of the
#          same commands (SELECT to NOOP) for BENCH_LONG_SECONDS
#   (c)    BENCH_IDLE connections, each its own mailbox, LOGIN and SELECT
#          INBOX, held idle: PSS of the server's whole process tree before and
#          BENCH_IDLE_SETTLE seconds after all are selected; per connection =
#          the difference / connections (after a warm-up session on each of
#          those mailboxes, so both systems hold steady, indexed mailboxes)
# measuring sessions/s, commands/s, latency p50/p99, the CPU time of the
# server's whole process tree per session and per command, and memory. Prints
# both side by side and writes bench/results-imap-latest.txt. See the IMAP
# section of bench/README.md for what each figure means.
#
# posthorn's IMAP service is found in the master.cf that `posthorn dev`
# writes into its state directory: without a service on 127.0.0.1:2443 there
# (or when nothing greets with "* OK" on it) posthorn is reported "posthorn
# imapd not available" and only Dovecot's figures are printed.
#
# Environment:
#   BENCH_LEVELS="1 10 50"    (a): concurrent clients, one level each
#   BENCH_SESSIONS=2000       (a): successful sessions per level
#   BENCH_SECONDS=            (a): if set, run each level this many seconds instead
#   BENCH_LONG_CLIENTS=10     (b): clients, one long session each
#   BENCH_LONG_SECONDS=20     (b): seconds
#   BENCH_IDLE=1000           (c): idle connections (and their mailboxes)
#   BENCH_IDLE_SETTLE=5       (c): seconds between "all selected" and the measurement
#   BENCH_IDLE_QUIET=65       (c): seconds between the idle warm-up and the first
#                             sample: posthorn's mailbox processes keep a user's
#                             folders 60 s after a session (imapd/src/session/kept.rs),
#                             which the idle connections would take over and
#                             release, hiding their own memory (the same wait for both)
#   BENCH_MODES="a b c"       which of the loads to run
#   BENCH_USERS=              mailboxes with messages of their own for (a) and
#                             (b); default the largest of BENCH_LEVELS,
#                             BENCH_LONG_CLIENTS and 10 (one per client)
#   BENCH_MESSAGES=1000       messages per mailbox
#   BENCH_MIN_SIZE=1024       smallest message in octets
#   BENCH_MAX_SIZE=12288      largest message in octets
#   BENCH_FETCH=3             FETCH BODY.PEEK[] of random messages per session (round)
#   BENCH_SEED=1              seed of the messages and of the choices
#   BENCH_AUTH_CACHE=10M      Dovecot's auth_cache_size (see pop3.sh: no effect with passwd-file)
#   BENCH_ONLY=both           both | dovecot | posthorn
#   BENCH_SKIP_BUILD=0        1: use the binaries already built
#   BENCH_BIN=...             load generator (default target/release/posthorn-imap-bench)
#   MAILDIR_BIN=...           mailbox generator (default target/release/posthorn-pop3-bench)
#   POSTHORN_BIN=...          posthorn binary (default target/release/posthorn)
#   BENCH_POSTHORN_OPTS=""    extra flags for `posthorn dev`, e.g. "-o name=value"
#   BENCH_KEEP=0              1: keep the temp directory (logs, image)
#   BENCH_MEM=pss             memory of (a) and (b): pss (sum of Pss) or rss; (c) is always PSS
#   BENCH_FS=loop             loop: mailboxes on a loop-mounted journaled ext4;
#                             tmp: on the temp directory's file system
#   BENCH_FS_SIZE=8G          size of the (sparse) ext4 image
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
LONG_CLIENTS=${BENCH_LONG_CLIENTS:-10}
LONG_SECONDS=${BENCH_LONG_SECONDS:-20}
IDLE=${BENCH_IDLE:-1000}
IDLE_SETTLE=${BENCH_IDLE_SETTLE:-5}
IDLE_QUIET=${BENCH_IDLE_QUIET:-65}
MODES=${BENCH_MODES:-"a b c"}
MESSAGES=${BENCH_MESSAGES:-1000}
MIN_SIZE=${BENCH_MIN_SIZE:-1024}
MAX_SIZE=${BENCH_MAX_SIZE:-12288}
FETCH=${BENCH_FETCH:-3}
SEED=${BENCH_SEED:-1}
AUTH_CACHE=${BENCH_AUTH_CACHE:-10M}
ONLY=${BENCH_ONLY:-both}
MEM=${BENCH_MEM:-pss}
FS_MODE=${BENCH_FS:-loop}
FS_SIZE=${BENCH_FS_SIZE:-8G}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BENCH_BIN=${BENCH_BIN:-$TARGET/release/posthorn-imap-bench}
MAILDIR_BIN=${MAILDIR_BIN:-$TARGET/release/posthorn-pop3-bench}
POSTHORN_BIN=${POSTHORN_BIN:-$TARGET/release/posthorn}
RESULTS=$ROOT/bench/results-imap-latest.txt

DOMAIN=example.test
PATTERN="user%d@$DOMAIN"
PASSWORD=bench-imap-secret
DV_PORT=2253       # Dovecot imap (plain, STARTTLS); not 2243, posthorn's imap under run.sh's offset 100
DV_PORT_TLS=2254   # Dovecot imaps (listening, not measured)
PH_OFFSET=300      # posthorn dev --port-offset: imap 2443, smtp 2825, pop3 2410 (clear of pop3.sh's 200)
PH_PORT=$((2143 + PH_OFFSET))
PH_SMTP_PORT=$((2525 + PH_OFFSET))
GREET_WAIT=10      # seconds posthorn gets to greet on IMAP once it listens for SMTP
SETTLE=0.5         # seconds after a load before the CPU sample (last exits reaped)
SAMPLE_INTERVAL=0.2
IDLE_CLIENTS=10    # threads that open the idle connections
NOFILE=65536       # ulimit -n for the servers and the generator (1,000 connections)
LOG_TAG=bench-imap

TMP=""
SAMPLER_PID=""

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
[ "$(id -u)" -eq 0 ] || die "run as root (installs dovecot-imapd, runs a private Dovecot instance, loop-mounts an image)"
for n in $LEVELS $SESSIONS $LONG_CLIENTS $LONG_SECONDS $IDLE $IDLE_SETTLE $IDLE_QUIET $MESSAGES $MIN_SIZE $MAX_SIZE \
    $FETCH $SEED ${BENCH_USERS:-}; do
    [[ $n =~ ^[0-9]+$ ]] || die "not a number: $n (BENCH_LEVELS, BENCH_SESSIONS, BENCH_IDLE, ...)"
done
for n in $LEVELS $LONG_CLIENTS $IDLE ${BENCH_USERS:-}; do
    [ "$n" -ge 1 ] || die "BENCH_LEVELS, BENCH_LONG_CLIENTS, BENCH_IDLE and BENCH_USERS must be at least 1"
done
for m in $MODES; do
    case $m in a | b | c) ;; *) die "BENCH_MODES: $m is not a, b or c" ;; esac
done
[ -z "$DURATION" ] || [[ $DURATION =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "BENCH_SECONDS is not a number: $DURATION"
has_mode() { [[ " $MODES " == *" $1 "* ]]; }
MAX_LEVEL=$(tr ' ' '\n' <<<"$LEVELS $LONG_CLIENTS 10" | sort -n | tail -n 1)
FULL_USERS=${BENCH_USERS:-$MAX_LEVEL}
if [ "$FULL_USERS" -lt "$MAX_LEVEL" ]; then
    log "warning: $FULL_USERS mailboxes for up to $MAX_LEVEL clients: at most $FULL_USERS sessions run at once" \
        "(one client per mailbox, so that SEARCH UNSEEN can be checked exactly)"
fi
USERS=$FULL_USERS
if has_mode c && [ "$IDLE" -gt "$USERS" ]; then USERS=$IDLE; fi
SHARED_FLAG=()
CLK_TCK=$(getconf CLK_TCK)

trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

# --- the loads ----------------------------------------------------------------

declare -A IDLE_HELD IDLE_BEFORE IDLE_AFTER IDLE_PER IDLE_NP0 IDLE_NP1 IDLE_SETUP IDLE_ERRS IDLE_RSS_PER

# run_idle SYSTEM PORT ROOT_PID PGID: load (c). Sets IDLE_*[SYSTEM] (read
# through cell's nameref). PSS (and RSS) of the tree
# before, then the generator opens BENCH_IDLE connections; once it says all
# are selected, BENCH_IDLE_SETTLE seconds later, PSS again; per connection =
# the difference / connections held.
# shellcheck disable=SC2034
run_idle() {
    local sys=$1 port=$2 root=$3 pg=$4
    local out=$TMP/gen-$sys-idle.out err=$TMP/gen-$sys-idle.err
    local hold pss0 pss1 rss0 rss1 np0 np1 i rc=0 line held
    # Held long enough for the settle time and the reading of ~IDLE
    # processes' smaps_rollup on a busy machine.
    hold=$((IDLE_SETTLE + 60))
    pss0=$(MEM=pss tree_rss_kb "$root" "$pg")
    rss0=$(MEM=rss tree_rss_kb "$root" "$pg")
    np0=$(tree_cpu "$root" "$pg" | awk '{ print $3 }')
    "$BENCH_BIN" --host 127.0.0.1 --port "$port" --mode idle --connections "$IDLE" --clients "$IDLE_CLIENTS" \
        --users "$IDLE" --user-pattern "$PATTERN" --password "$PASSWORD" --hold "$hold" >"$out" 2>"$err" &
    GEN_PID=$!
    line=""
    for ((i = 0; i < 6000; i++)); do
        line=$(grep '^selected ' "$out" || true)
        [ -n "$line" ] && break
        kill -0 "$GEN_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$line" ] || { cat "$err" >&2; die "$sys idle: the generator did not report its connections selected"; }
    log "$sys idle: $line; measuring in ${IDLE_SETTLE}s"
    sleep "$IDLE_SETTLE"
    pss1=$(MEM=pss tree_rss_kb "$root" "$pg")
    rss1=$(MEM=rss tree_rss_kb "$root" "$pg")
    np1=$(tree_cpu "$root" "$pg" | awk '{ print $3 }')
    if grep -q '^result ' "$out"; then
        die "$sys idle: the connections were released before the measurement ended (hold ${hold}s)"
    fi
    wait "$GEN_PID" || rc=$?
    GEN_PID=""
    L_LINE=$(grep '^result ' "$out" || true)
    [ -n "$L_LINE" ] || { cat "$err" >&2; die "$sys idle: the load generator printed no result (exit $rc)"; }
    held=$(kv held "$L_LINE")
    IDLE_HELD[$sys]=$held
    IDLE_SETUP[$sys]=$(kv setup_seconds "$L_LINE")
    IDLE_BEFORE[$sys]=$(awk -v k="$pss0" 'BEGIN { printf "%.1f", k / 1024 }')
    IDLE_AFTER[$sys]=$(awk -v k="$pss1" 'BEGIN { printf "%.1f", k / 1024 }')
    IDLE_PER[$sys]=$(awk -v a="$pss0" -v b="$pss1" -v n="$held" 'BEGIN { if (n < 1) n = 1; printf "%.1f", (b - a) / n }')
    IDLE_RSS_PER[$sys]=$(awk -v a="$rss0" -v b="$rss1" -v n="$held" 'BEGIN { if (n < 1) n = 1; printf "%.1f", (b - a) / n }')
    IDLE_NP0[$sys]=$np0
    IDLE_NP1[$sys]=$np1
    IDLE_ERRS[$sys]=$(tr ' ' '\n' <<<"$L_LINE" | awk -F= '/^err_/ && $2 != 0 { printf "%s%s=%s", sep, substr($1, 5), $2; sep = " " }')
    log "$sys idle: $held of $IDLE connections held; PSS ${IDLE_BEFORE[$sys]} -> ${IDLE_AFTER[$sys]} MB" \
        "(${IDLE_PER[$sys]} KiB per connection; RSS ${IDLE_RSS_PER[$sys]} KiB), processes $np0 -> $np1," \
        "errors: ${IDLE_ERRS[$sys]:-none}"
    if [ "$(kv failed "$L_LINE")" != 0 ]; then
        log "$sys idle: failures; first ones:"
        head -n 5 "$err" >&2
    fi
}

# bench_system SYSTEM PORT ROOT_PID PGID: the warm-up, then (a), (b), (c).
bench_system() {
    local sys=$1 port=$2 root=$3 pg=$4 level
    local -a amount common
    if [ -n "$DURATION" ]; then amount=(--seconds "$DURATION"); else amount=(--sessions "$SESSIONS"); fi
    common=(--users "$FULL_USERS" --fetch "$FETCH")
    # Warm-up: each mailbox once (one client, in order): the first SELECT
    # moves new/ to cur/ and builds the indexes. Reported as "first".
    run_load "$sys" first "$port" "$root" "$pg" "${common[@]}" --clients 1 --sessions "$FULL_USERS"
    store "$sys" first
    if has_mode a; then
        for level in $LEVELS; do
            run_load "$sys" "$level" "$port" "$root" "$pg" "${common[@]}" --clients "$level" "${amount[@]}"
            store "$sys" "$level"
        done
    fi
    if has_mode b; then
        run_load "$sys" long "$port" "$root" "$pg" "${common[@]}" --mode long --clients "$LONG_CLIENTS" \
            --seconds "$LONG_SECONDS"
        store "$sys" long
    fi
    if has_mode c; then
        # Each idle mailbox's first session, so that (c) measures selected,
        # indexed mailboxes on both systems, not their first sync.
        run_load "$sys" idle-warm "$port" "$root" "$pg" --users "$IDLE" --fetch 0 --clients "$IDLE_CLIENTS" \
            --sessions "$IDLE"
        store "$sys" idle-warm
        # Nothing of the warm-up left in the first sample (posthorn's kept
        # folders expire after 60 s; Dovecot's sessions are gone already).
        log "$sys idle: waiting ${IDLE_QUIET}s for what the warm-up left to expire"
        sleep "$IDLE_QUIET"
        run_idle "$sys" "$port" "$root" "$pg"
    fi
}

# --- Dovecot ------------------------------------------------------------------

# Inside `service imap-login`, and at the top level: what Dovecot needs to
# hold BENCH_IDLE connections (each an imap process of its own: client_limit
# 1 is the imap service's default).
dovecot_limits() {
    local procs=$((IDLE + 100))
    DV_LOGIN_LINES="  process_limit = $procs"
    DV_TOP_LINES="disable_plaintext_auth = no
default_client_limit = $((2 * procs + 1000))
default_process_limit = $procs
service imap {
  process_limit = $procs
}"
}

# The settings of the private instance that differ from Debian's defaults
# (doveconf -n of a fresh dovecot-core + dovecot-imapd), and why.
dovecot_differences() {
    cat <<EOF
Dovecot settings that differ from Debian's defaults (everything else is Dovecot's default:
  an imap-login process per connection (service_count = 1), which hands the connection to an
  imap process of its own once logged in (client_limit = 1), mail_fsync = optimized,
  mail_max_userip_connections = 10, imap_hibernate_timeout = 0, index files in the Maildir):
EOF
    dovecot_common_differences imap "$DV_PORT" "$DV_PORT_TLS" 143 993
    cat <<EOF
  disable_plaintext_auth = no (Debian: yes): LOGIN without TLS; Dovecot counts loopback as secured
    anyway, so this changes nothing here, it says what is measured
  service imap { process_limit = $((IDLE + 100)) } (Dovecot: 1024), service imap-login { process_limit =
    $((IDLE + 100)) } and default_process_limit = $((IDLE + 100)) (Dovecot: 100), default_client_limit =
    $((2 * (IDLE + 100) + 1000)) (Dovecot: 1000): room for $IDLE idle connections, each an imap process,
    and for the auth, anvil and log connections they bring; ulimit -n $(ulimit -n)
  Debian's namespace inbox with special-use folders: not included (only INBOX is used)
EOF
}

bench_dovecot() {
    ensure_dovecot imap
    dovecot_limits
    start_dovecot imap "$DV_PORT" "$DV_PORT_TLS" "$DV_LOGIN_LINES" "$DV_TOP_LINES"
    if grep -qi 'warning' "$TMP/dovecot/doveconf-n.txt"; then
        log "doveconf warnings:"
        grep -i 'warning' "$TMP/dovecot/doveconf-n.txt" >&2
    fi
    dovecot_differences | while IFS= read -r l; do log "$l"; done
    bench_system dovecot "$DV_PORT" "$DV_PID" "$DV_PID"
    dovecot_auth_cache
    stop_dovecot
}

# --- main ---------------------------------------------------------------------

build_binaries

# 1,000 connections: a descriptor each in the generator, several per
# connection in the server (the servers inherit this limit).
ulimit -n "$NOFILE" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
log "ulimit -n $(ulimit -n)"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
TMP=$(mktemp -d /tmp/posthorn-bench-imap.XXXXXX)
chmod 0755 "$TMP" # dovecot's processes and nobody must reach the users file and mailboxes
setup_fs
make_data "$FULL_USERS"

DV_VERSION="(not run)"
DV_CACHE=""
HASH_MS=$(hash_ms)
PH_STATUS="(not run)"
[ "$ONLY" != posthorn ] && bench_dovecot
[ "$ONLY" != dovecot ] && bench_posthorn imapd "$PH_PORT" "* OK"

# target WHAT VALUE OP LIMIT: "met" or "not met" (or "pending" without a value).
target() {
    awk -v v="$2" -v op="$3" -v l="$4" 'BEGIN {
        if (v !~ /^[0-9.]+$/) { print "pending"; exit }
        ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 <= l + 0)
        print (ok ? "met" : "not met")
    }'
}

# A load with any error makes the run a failed one.
FAILED_LOADS=""
for k in "${!ERRS[@]}"; do
    [ -z "${ERRS[$k]}" ] || FAILED_LOADS="$FAILED_LOADS $k"
done
for k in "${!IDLE_ERRS[@]}"; do
    [ -z "${IDLE_ERRS[$k]}" ] || FAILED_LOADS="$FAILED_LOADS $k,idle"
done

{
    if [ -n "$DURATION" ]; then per_level="$DURATION s"; else per_level="$SESSIONS sessions"; fi
    echo "posthorn vs Dovecot $DV_VERSION, IMAP: $FULL_USERS mailboxes of $MESSAGES messages ($MIN_SIZE-$MAX_SIZE octets," \
        "$((${DATA_OCTETS:-0} / 1048576)) MiB in all) for (a) and (b), one client per mailbox at a time;" \
        "$( has_mode c && echo "$IDLE mailboxes (the same messages, hard links) for (c)" || echo "(c) not run")"
    echo "host: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
        "$(uname -sr), load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end," \
        "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)"
    echo "mailboxes: $FS_DESC"
    echo "posthorn: $PH_STATUS"
    echo "(a) session: connect, LOGIN, SELECT INBOX, FETCH 1:* (FLAGS UID RFC822.SIZE), $FETCH x FETCH n (BODY.PEEK[])," \
        "STORE +FLAGS (\\Seen), SEARCH UNSEEN, NOOP, LOGOUT; $per_level per level; 'first' = warm-up, each mailbox once"
    echo "sess/s, cmd/s: completed per second; ms: whole-session latency; CPU: user+sys ms per session of the" \
        "server's whole process tree; $MEM_LABEL: peak sum over the tree"
    printf '%-8s %9s %9s %7s %9s %9s %8s %8s %8s %8s %9s %9s %7s %9s %9s\n' level \
        dovecot posthorn posthorn/ dovecot posthorn dovecot posthorn dovecot posthorn \
        dovecot posthorn posthorn/ dovecot posthorn
    printf '%-8s %9s %9s %7s %9s %9s %8s %8s %8s %8s %9s %9s %7s %9s %9s\n' clients \
        "sess/s" "sess/s" dovecot "cmd/s" "cmd/s" "p50 ms" "p50 ms" "p99 ms" "p99 ms" \
        "CPU ms" "CPU ms" dovecot "$MEM_LABEL MB" "$MEM_LABEL MB"
    rows="first"
    has_mode a && rows="$rows $LEVELS"
    for level in $rows; do
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
    if has_mode b; then
        echo "(b) $LONG_CLIENTS clients, one long session each, ${LONG_SECONDS}s of rounds (SELECT INBOX ... NOOP, as in (a));" \
            "ms: round latency; CPU: ms per command"
        printf '%-8s %9s %9s %7s %9s %9s %8s %8s %8s %8s %9s %9s %7s %9s %9s\n' "" \
            dovecot posthorn posthorn/ dovecot posthorn dovecot posthorn dovecot posthorn \
            dovecot posthorn posthorn/ dovecot posthorn
        printf '%-8s %9s %9s %7s %9s %9s %8s %8s %8s %8s %9s %9s %7s %9s %9s\n' "" \
            "cmd/s" "cmd/s" dovecot "rounds/s" "rounds/s" "p50 ms" "p50 ms" "p99 ms" "p99 ms" \
            "CPU/cmd" "CPU/cmd" dovecot "$MEM_LABEL MB" "$MEM_LABEL MB"
        printf '%-8s %9s %9s %7s %9s %9s %8s %8s %8s %8s %9s %9s %7s %9s %9s\n' long \
            "$(cell dovecot long CPS)" "$(cell posthorn long CPS)" \
            "$(ratio "${CPS[posthorn,long]:-}" "${CPS[dovecot,long]:-}")" \
            "$(cell dovecot long SPS)" "$(cell posthorn long SPS)" \
            "$(cell dovecot long P50)" "$(cell posthorn long P50)" \
            "$(cell dovecot long P99)" "$(cell posthorn long P99)" \
            "$(cell dovecot long CPUCMD)" "$(cell posthorn long CPUCMD)" \
            "$(ratio "${CPUCMD[posthorn,long]:-}" "${CPUCMD[dovecot,long]:-}")" \
            "$(cell dovecot long RSS)" "$(cell posthorn long RSS)"
    fi
    if has_mode c; then
        echo "(c) $IDLE connections, each LOGIN + SELECT INBOX on its own mailbox, held idle; PSS of the server's" \
            "whole process tree before and ${IDLE_SETTLE}s after all were selected"
        for sys in dovecot posthorn; do
            printf '%-8s held %5s of %s in %7s s; PSS %8s -> %8s MB: %7s KiB per connection (RSS %7s KiB); processes %5s -> %5s; errors: %s\n' \
                "$sys" "$(cell "$sys" "" IDLE_HELD)" "$IDLE" "$(cell "$sys" "" IDLE_SETUP)" \
                "$(cell "$sys" "" IDLE_BEFORE)" "$(cell "$sys" "" IDLE_AFTER)" "$(cell "$sys" "" IDLE_PER)" \
                "$(cell "$sys" "" IDLE_RSS_PER)" "$(cell "$sys" "" IDLE_NP0)" "$(cell "$sys" "" IDLE_NP1)" \
                "${IDLE_ERRS[$sys]:-$( [ "$sys" = posthorn ] && [ "$PH_STATUS" != measured ] && echo n/a || echo none)}"
        done
    fi
    echo "CPU ms per session (long: per round), user / sys, processes in the tree at the end, and errors:"
    for level in $rows long idle-warm; do
        [ -n "${LINES[dovecot,$level]:-}${LINES[posthorn,$level]:-}" ] || continue
        printf '%-9s dovecot %7s / %7s (%4s procs) %-12s  posthorn %7s / %7s (%4s procs) %s\n' "$level" \
            "$(cell dovecot "$level" USR)" "$(cell dovecot "$level" SYS)" "$(cell dovecot "$level" NPROC)" \
            "${ERRS[dovecot,$level]:-ok}" \
            "$(cell posthorn "$level" USR)" "$(cell posthorn "$level" SYS)" "$(cell posthorn "$level" NPROC)" \
            "${ERRS[posthorn,$level]:-$( [ "$PH_STATUS" = measured ] && echo ok || echo n/a)}"
    done
    echo "load generator CPU ms per session (its own process, not in the figures above):"
    for level in $rows long; do
        [ -n "${GEN[dovecot,$level]:-}${GEN[posthorn,$level]:-}" ] || continue
        printf '%-9s dovecot %7s   posthorn %7s\n' "$level" "$(cell dovecot "$level" GEN)" "$(cell posthorn "$level" GEN)"
    done
    echo "p50 / p99 ms per command (connect = TCP connect + greeting):"
    for sys in dovecot posthorn; do
        for level in $rows long; do
            line=${LINES[$sys,$level]:-}
            [ -n "$line" ] || continue
            printf '%-8s %-6s' "$sys" "$level"
            for c in connect login select fetch_all fetch_body store search noop logout; do
                printf ' %s %s/%s' "$c" "$(kv "${c}_p50_ms" "$line")" "$(kv "${c}_p99_ms" "$line")"
            done
            echo
        done
    done
    if [ -n "$FAILED_LOADS" ]; then
        echo "run FAILED: errors in${FAILED_LOADS} (see the errors above and the generator's output)"
    else
        echo "run: no errors (every response of every load checked)"
    fi
    echo "targets (issue 8), posthorn against Dovecot in this run:"
    echo "  (a) sessions/s at 10 clients >= 3x: $(ratio "${SPS[posthorn,10]:-}" "${SPS[dovecot,10]:-}")" \
        "$(target a "$(ratio "${SPS[posthorn,10]:-}" "${SPS[dovecot,10]:-}")" ">=" 3)"
    echo "  (b) commands/s >= 1.5x: $(ratio "${CPS[posthorn,long]:-}" "${CPS[dovecot,long]:-}")" \
        "$(target b "$(ratio "${CPS[posthorn,long]:-}" "${CPS[dovecot,long]:-}")" ">=" 1.5)"
    echo "  (c) PSS per idle connection <= 48 KiB: $(cell posthorn "" IDLE_PER)" \
        "$(target c "${IDLE_PER[posthorn]:-}" "<=" 48)"
    echo "  p99 no worse than Dovecot's: session p99 at 10 clients $(cell posthorn 10 P99) vs $(cell dovecot 10 P99) ms" \
        "$(target p99 "${P99[posthorn,10]:-}" "<=" "${P99[dovecot,10]:-0}"),"\
        "round p99 $(cell posthorn long P99) vs $(cell dovecot long P99) ms" \
        "$(target p99 "${P99[posthorn,long]:-}" "<=" "${P99[dovecot,long]:-0}")"
    if [ "$ONLY" != posthorn ]; then
        echo "dovecot auth process at the end: ${DV_CACHE:-no cache statistics}; SHA512-CRYPT: ${HASH_MS:-?} ms CPU per verification here"
        dovecot_differences
    fi
} | tee "$RESULTS"

if [ "$ONLY" = posthorn ] && [ "$PH_STATUS" != measured ]; then
    die "posthorn was not measured: $PH_STATUS"
fi
[ -z "$FAILED_LOADS" ] || die "errors in${FAILED_LOADS}: the run failed"
