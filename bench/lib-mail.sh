# shellcheck shell=bash
# bench/lib-mail.sh — what bench/pop3.sh and bench/imap.sh share: the users
# file and the mailboxes, one load-generator measurement with the CPU and
# memory of the server's process tree, a private Dovecot instance, `posthorn
# dev`, and the cleanup trap. Sourced after bench/lib.sh, not run.
#
# The sourcing script sets, before calling them: TMP, FS (lib.sh's
# setup_fs), USERS, DOMAIN, PATTERN, PASSWORD, MESSAGES, MIN_SIZE,
# MAX_SIZE, SEED, AUTH_CACHE, SHARED_FLAG (array), BENCH_BIN (its load
# generator), MAILDIR_BIN (the one with make-maildirs), POSTHORN_BIN,
# PH_OFFSET, PH_SMTP_PORT, GREET_WAIT, SETTLE, CLK_TCK, and defines
# bench_system SYSTEM PORT ROOT_PID PGID. The helpers set DV_PID, PH_PID,
# GEN_PID, PH_STATUS, USERS_FILE, DATA_OCTETS, and the L_* figures of
# run_load, kept per system and level by store.

DV_PID=${DV_PID:-}
DV_INSTALLED=${DV_INSTALLED:-0}
PH_PID=${PH_PID:-}
GEN_PID=${GEN_PID:-}
USERS_FILE=${USERS_FILE:-}

# --- cleanup ------------------------------------------------------------------

# cleanup: the EXIT trap: stops the generator, the sampler, Dovecot and
# posthorn, unmounts the image, removes TMP unless BENCH_KEEP=1 or failed.
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

# --- helpers ------------------------------------------------------------------

# build_binaries: the load generators (posthorn-bench) and, unless
# BENCH_ONLY=dovecot, posthorn (posthorn-cli), in release mode, unless
# BENCH_SKIP_BUILD=1; BENCH_BIN and MAILDIR_BIN must then be there.
build_binaries() {
    if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
        if [ "$ONLY" = dovecot ]; then
            cargo build --release -p posthorn-bench >&2 || die "cargo build -p posthorn-bench failed"
        else
            cargo build --release -p posthorn-bench -p posthorn-cli >&2 ||
                die "cargo build failed (BENCH_ONLY=dovecot builds only the load generators)"
        fi
    fi
    [ -x "$BENCH_BIN" ] || die "$BENCH_BIN is missing: build posthorn-bench first"
    [ -x "$MAILDIR_BIN" ] || die "$MAILDIR_BIN is missing: build posthorn-bench first"
}


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

# --- the users file and the mailboxes -----------------------------------------

# make_data [FULL]: TMP/users (passwd-file, {SHA512-CRYPT}, uid/gid of
# nobody, no home: each system puts homes under its own base as
# BASE/DOMAIN/LOCAL) for USERS users, and their mailboxes in TMP/maildirs,
# generated once (by MAILDIR_BIN make-maildirs) and copied for each system.
# With FULL < USERS only users 1..FULL get mailboxes of their own; user N
# above FULL gets hard links to the message files of user ((N-1) % FULL)+1
# (the same octets, in a Maildir of its own: new/ and cur/ are its own
# directories, and flag changes are renames, so nothing is shared but the
# files' contents, which no server rewrites). Salted hashes are computed for
# the first 50 users and reused in turn above that.
make_data() {
    local full=${1:-$USERS} uid gid i hash
    local -a hashes=()
    uid=$(id -u nobody)
    gid=$(id -g nobody)
    USERS_FILE=$TMP/users
    for ((i = 1; i <= USERS; i++)); do
        if [ "$i" -le 50 ]; then
            # 5000 rounds, what `posthorn user add` and `doveadm pw` both write.
            if command -v doveadm >/dev/null; then
                hash=$(doveadm pw -s SHA512-CRYPT -p "$PASSWORD")
            else
                hash="{SHA512-CRYPT}$(openssl passwd -6 "$PASSWORD")"
            fi
            hashes+=("$hash")
        else
            hash=${hashes[(i - 1) % 50]}
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
    out=$("$MAILDIR_BIN" make-maildirs --dir "$TMP/maildirs" --users "$full" --user-pattern "$PATTERN" \
        --messages "$MESSAGES" --min-size "$MIN_SIZE" --max-size "$MAX_SIZE" --seed "$SEED") ||
        die "make-maildirs failed"
    log "mailboxes generated: $out"
    # shellcheck disable=SC2034 # read by the sourcing script
    DATA_OCTETS=$(kv octets "$out")
    if [ "$full" -lt "$USERS" ]; then
        for ((i = full + 1; i <= USERS; i++)); do
            cp -al "$TMP/maildirs/$DOMAIN/user$(((i - 1) % full + 1))" "$TMP/maildirs/$DOMAIN/user$i"
        done
        log "users $((full + 1))..$USERS: hard links to the messages of users 1..$full"
    fi
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

# greets PORT SECONDS PID PREFIX: true once 127.0.0.1:PORT answers with a
# greeting that starts with PREFIX (POP3 "+OK", IMAP "* OK") within
# SECONDS; false if not, or if PID dies meanwhile.
greets() {
    local port=$1 secs=$2 pid=$3 prefix=$4 i line
    for ((i = 0; i < secs * 5; i++)); do
        if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
            line=""
            IFS= read -r -t 5 line <&3 || true
            # Closed without QUIT or LOGOUT: writing to a socket the server
            # may have closed could kill this shell with SIGPIPE.
            exec 3<&- 3>&-
            [[ $line == "$prefix"* ]] && return 0
            log "127.0.0.1:$port answered ${line:-nothing} instead of a greeting starting with $prefix"
            return 1
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}

# --- one measurement ----------------------------------------------------------

# run_load SYSTEM LABEL PORT ROOT_PID PGID GENERATOR-FLAGS...
# Runs the generator against 127.0.0.1:PORT and sets L_SPS (sessions/s),
# L_CPS (commands/s), L_P50, L_P99 (session ms), L_OK, L_FAILED, L_ERRS (the
# nonzero err_ keys), L_CPU (user+sys ms of the server tree per session),
# L_USR, L_SYS, L_NPROC, L_RSS (peak MB), L_CPUCMD (user+sys ms per
# command), L_LINE (the whole result line). GENERATOR-FLAGS come after the
# common ones (--users ...) and override them.
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
    L_CMDS=$(kv commands "$L_LINE")
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
    L_CPUCMD=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$L_CMDS" -v hz="$CLK_TCK" 'BEGIN {
        split(a, x, " "); split(b, y, " "); if (n < 1) n = 1
        printf "%.3f", (y[1] - x[1] + y[2] - x[2]) * 1000 / hz / n }')
    L_GEN=$(awk -v a="$gen0" -v b="$gen1" -v n="$n" 'BEGIN { if (n < 1) n = 1; printf "%.3f", (b - a) * 1000 / n }')
    log "$sys $label: $(grep -E '^[0-9]+ (sessions|rounds) ok' "$out" || true); generator CPU ${L_GEN} ms/session"
    log "$sys $label: session p50 ${L_P50} ms p99 ${L_P99} ms; cpu_ms/session=$L_CPU" \
        "(user $L_USR, sys $L_SYS; $L_NPROC processes; $L_CPUCMD ms/command) peak_${MEM}_mb=$L_RSS errors: ${L_ERRS:-none}"
    if [ "$L_FAILED" != 0 ]; then
        log "$sys $label: $L_FAILED failed sessions; first ones:"
        head -n 5 "$err" >&2
    fi
}

declare -A SPS CPS P50 P99 CPU USR SYS NPROC RSS ERRS LINES GEN CPUCMD

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
    CPUCMD[$k]=$L_CPUCMD
    LINES[$k]=$L_LINE
}

# --- Dovecot ------------------------------------------------------------------

# stop_tree PID NAME WHY: SIGTERM to PID (a child of this shell that leads
# its own process group), SIGKILL after 10 s, reaped; then the rest of its
# process group, if any outlived it (logged as WHY).
stop_tree() {
    local pid=$1 name=$2 why=$3 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name $pid did not stop on SIGTERM within 10s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    if group_alive "$pid"; then
        log "$why; stopping them"
        kill -TERM -- "-$pid" 2>/dev/null || true
        sleep 1
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
}


# stop_system_dovecot: the package's own instance must not run (it would
# hold ports 110/995/143/993 and take CPU during the measurements).
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
    for p in 110 995 143 993; do
        port_listening "$p" && die "something listens on port $p (a system Dovecot?); stop it first"
    done
    return 0
}

# ensure_dovecot PROTOCOL: Debian's dovecot-PROTOCOLd package (pop3 or imap)
# installed, the system instance stopped.
ensure_dovecot() {
    local proto=$1
    if [ ! -x /usr/sbin/dovecot ] || [ ! -x "/usr/lib/dovecot/$proto" ] ||
        [ ! -x "/usr/lib/dovecot/$proto-login" ]; then
        log "installing Debian's dovecot-${proto}d (and dovecot-core)"
        if ! apt-cache policy "dovecot-${proto}d" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            apt-get update >&2
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y "dovecot-${proto}d" >&2
        DV_INSTALLED=1
        sleep 1
    fi
    stop_system_dovecot
}

dovecot_protocols_debian() {
    local p
    # The files say "protocols = $protocols imap": take the names after it.
    # shellcheck disable=SC2016
    p=$(cat /usr/share/dovecot/protocols.d/*.protocol 2>/dev/null | sed -n 's/^protocols = \$protocols //p' | tr '\n' ' ')
    echo "Debian: ${p% }"
}

# start_dovecot PROTOCOL PORT TLS_PORT [LOGIN_LINES [TOP_LINES]]: a private
# Dovecot for PROTOCOL (pop3 or imap) on 127.0.0.1:PORT (TLS_PORT for the
# TLS wrapper listener, not measured), on a copy of the mailboxes in
# FS/dovecot/mail; LOGIN_LINES go inside `service PROTOCOL-login`,
# TOP_LINES at the end of the file. Sets DV_PID, DV_VERSION.
start_dovecot() {
    local proto=$1 port=$2 tls_port=$3 login_lines=${4:-} top_lines=${5:-}
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
# Private Dovecot instance for bench/$proto.sh: Dovecot's defaults except these
# lines (see the script's output for why each differs from Debian's).
instance_name = posthorn-bench-$proto
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
protocols = $proto
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
service $proto-login {
  inet_listener $proto {
    port = $port
  }
  inet_listener ${proto}s {
    port = $tls_port
  }
$login_lines
}
$top_lines
EOF
    doveconf -c "$dir/dovecot.conf" -n >"$dir/doveconf-n.txt" 2>&1 ||
        { cat "$dir/doveconf-n.txt" >&2; die "doveconf rejects $dir/dovecot.conf"; }
    port_listening "$port" && die "port $port is already in use"
    port_listening "$tls_port" && die "port $tls_port is already in use"
    # -F: master in the foreground, our child; setsid: its own process group.
    setsid /usr/sbin/dovecot -F -c "$dir/dovecot.conf" >"$dir/master.out" 2>&1 &
    DV_PID=$!
    wait_port "$port" 30 "$DV_PID" "dovecot"
    DV_VERSION=$(/usr/sbin/dovecot --version | awk '{ print $1 }')
    log "dovecot $DV_VERSION master pid $DV_PID on 127.0.0.1:$port (config $dir/dovecot.conf)"
}

stop_dovecot() {
    stop_tree "$DV_PID" "dovecot master" "dovecot children outlived the master"
    DV_PID=""
}

# dovecot_common_differences PROTOCOL PORT TLS_PORT DEBIAN_PORT DEBIAN_TLS_PORT:
# the lines of the settings both private instances change, and why.
dovecot_common_differences() {
    local proto=$1 port=$2 tls_port=$3 dport=$4 dtls=$5
    cat <<EOF
  protocols = $proto ($(dovecot_protocols_debian)): only ${proto^^} is measured
  listen = 127.0.0.1, $proto port $port, ${proto}s port $tls_port (Debian: *, $dport, $dtls): a private instance on loopback
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
EOF
}

# hash_ms: CPU ms of one SHA512-CRYPT (5000 rounds) verification here:
# glibc's crypt(3), which Dovecot uses, timed through perl over 100 passwords.
hash_ms() {
    perl -e 'my @a = times; crypt("bench$_", q($6$0123456789abcdef$)) for 1 .. 100;
        my @b = times; printf "%.2f", ($b[0] - $a[0] + $b[1] - $a[1]) * 10' 2>/dev/null || true
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
    for ((i = 0; i < 25; i++)); do
        grep -q 'cache hits' "$TMP/dovecot/dovecot.log" && break
        sleep 0.2
    done
    # Not logged in time (a busy log process): say so rather than fail the run.
    DV_CACHE=$({ grep -h 'cache hits' "$TMP/dovecot/dovecot.log" || true; } | tail -n 1 | sed 's/.*Info: //')
    log "dovecot auth: ${DV_CACHE:-no cache statistics logged}"
}

# --- posthorn -----------------------------------------------------------------

# start_posthorn DAEMON PORT PREFIX: `posthorn dev` on the bench file system
# with the shared users file; returns 1 (PH_STATUS says why) when its
# master.cf has no service on 127.0.0.1:PORT ("posthorn DAEMON not
# available") or nothing there greets with PREFIX.
start_posthorn() {
    local daemon=$1 port=$2 prefix=$3 i
    port_listening "$PH_SMTP_PORT" && die "port $PH_SMTP_PORT is already in use"
    port_listening "$port" && die "port $port is already in use"
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
    # dev writes master.cf into its state directory: the service must be there.
    if ! grep -Eq "^127\.0\.0\.1:${port}[[:space:]]+inet[[:space:]]" "$FS/ph/master.cf" 2>/dev/null; then
        PH_STATUS="posthorn $daemon not available: no service on 127.0.0.1:$port in $FS/ph/master.cf"
        PH_STATUS="$PH_STATUS (posthorn dev of this build does not run $daemon)"
        return 1
    fi
    if ! greets "$port" "$GREET_WAIT" "$PH_PID" "$prefix"; then
        PH_STATUS="posthorn dev (pid $PH_PID) has 127.0.0.1:$port in master.cf but nothing greets there"
        PH_STATUS="$PH_STATUS with \"$prefix\" within ${GREET_WAIT}s: posthorn $daemon not available"
        return 1
    fi
    log "posthorn dev pid $PH_PID: $daemon on 127.0.0.1:$port"
    if [ "$(grep -c . "$USERS_FILE")" != "$USERS" ]; then
        log "warning: posthorn dev changed the number of users in $USERS_FILE: $(grep -c . "$USERS_FILE")"
    fi
}

stop_posthorn() {
    stop_tree "$PH_PID" "posthorn dev" "posthorn children outlived the dev process"
    PH_PID=""
}

# bench_posthorn DAEMON PORT PREFIX: copies the mailboxes, starts posthorn
# dev, runs bench_system (the calling script's) against it, stops it; sets
# PH_STATUS to "measured" or why not.
bench_posthorn() {
    local daemon=$1 port=$2 prefix=$3
    if [ ! -x "$POSTHORN_BIN" ]; then
        PH_STATUS="$POSTHORN_BIN is missing (the posthorn-cli package builds it)"
        log "posthorn: not available: $PH_STATUS"
        return 0
    fi
    copy_mail "$FS/ph/mail"
    # In a condition start_posthorn runs without set -e: it checks each step.
    if start_posthorn "$daemon" "$port" "$prefix"; then
        bench_system posthorn "$port" "$PH_PID" "$PH_PID"
        stop_posthorn
        PH_STATUS=measured
        return 0
    fi
    log "posthorn: $PH_STATUS"
    if [ -s "$TMP/posthorn.log" ]; then
        log "last lines of $TMP/posthorn.log:"
        tail -n 15 "$TMP/posthorn.log" | sed 's/^/    /' >&2
    fi
    [ -n "$PH_PID" ] && stop_posthorn
    return 0
}

# cell SYS KEY ARRAY: ARRAY[SYS,KEY] (ARRAY[SYS] when KEY is empty), "n/a"
# when posthorn was not measured, "-" when missing.
cell() {
    local -n arr=$3
    local k=$1,$2
    [ -n "$2" ] || k=$1 # an array per system, not per system and level
    local v=${arr[$k]:-}
    if [ -n "$v" ]; then
        echo "$v"
    elif [ "$1" = posthorn ] && [ "$PH_STATUS" != measured ]; then
        echo "n/a"
    else
        echo "-"
    fi
}
