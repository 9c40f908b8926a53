# shellcheck shell=bash
# bench/lib.sh — shell helpers shared by bench/run.sh (SMTP, Postfix) and
# bench/pop3.sh (POP3, Dovecot). Sourced, not run.
#
# What it owns: log/die, /proc accounting of a server's process tree (CPU
# time with reaped children, summed RSS or PSS, a peak-memory sampler),
# waiting for a port, and the file system under the mailboxes (a sparse ext4
# image with a journal, loop-mounted, checked with findmnt and stat -f).
#
# The sourcing script sets, before calling them: TMP (its temp directory),
# LOG_TAG (prefix of log lines; default "bench"), MEM (rss | pss),
# SAMPLE_INTERVAL (seconds between memory samples), FS_MODE (loop | tmp) and
# FS_SIZE (image size); the helpers set SAMPLER_PID, FS, FS_MOUNTED and
# FS_DESC. Nothing here starts a mail system or installs anything but
# e2fsprogs/mount/util-linux when they are missing.

SAMPLER_PID=${SAMPLER_PID:-}
FS=${FS:-}              # where queues and mailboxes live (the mount point, or TMP/fs)
FS_MOUNTED=${FS_MOUNTED:-0} # 1 while the loop-mounted image is mounted on FS
FS_DESC=${FS_DESC:-}    # what FS is, for the output

log() { printf '%s: %s\n' "${LOG_TAG:-bench}" "$*" >&2; }
die() { printf '%s: error: %s\n' "${LOG_TAG:-bench}" "$*" >&2; exit 1; }

# --- /proc helpers ------------------------------------------------------------

# port_listening PORT: true if something listens on TCP PORT (IPv4 or IPv6).
port_listening() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { found = 1 }
        END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# tree_stat ROOT_PID [PGID]: one line "pid rss utime stime cutime cstime" per
# process of the tree: ROOT_PID, its descendants (PPid chain) and, if given,
# every process in process group PGID. Fields of /proc/PID/stat: rss (24,
# pages), utime, stime, cutime, cstime (14-17, clock ticks; a process's times
# cover all its threads, live and exited). Zombies are included: their times
# are still theirs until the parent reaps them. Read in one pass.
tree_stat() {
    # Processes come and go between the glob and cat's open: ignore those.
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
        awk -v root="$1" -v pg="${2:-}" '
        {
            # comm (field 2) may hold spaces and parentheses: split after the last ")".
            s = $0; p = 0
            while ((k = index(substr(s, p + 1), ")")) > 0) p += k
            n = split(substr(s, p + 2), f, " ")
            pid = $1; ppid[pid] = f[2]; pgrp[pid] = f[3]
            line[pid] = pid " " f[22] " " f[12] " " f[13] " " f[14] " " f[15]
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
            for (q in sel) print line[q]
        }'
}

# tree_rss_kb ROOT_PID [PGID]: summed RSS in kB of the tree (see tree_stat).
# The rss field of /proc/PID/stat is the counter the kernel prints as VmRSS in
# /proc/PID/status. With BENCH_MEM=pss it sums Pss from
# /proc/PID/smaps_rollup instead.
tree_rss_kb() {
    local page_kb=$(($(getconf PAGESIZE) / 1024))
    if [ "$MEM" = pss ]; then
        # Proportional set size: shared pages divided among their users.
        tree_stat "$@" | awk '{ print "/proc/" $1 "/smaps_rollup" }' |
            xargs -r grep -hs '^Pss:' | awk '{ total += $2 } END { print total + 0 }'
    else
        tree_stat "$@" | awk -v pk="$page_kb" '{ total += $2 * pk } END { print total + 0 }'
    fi
}

# tree_cpu ROOT_PID [PGID]: "USER SYS NPROC": CPU clock ticks of the tree so far,
# user = utime + cutime, sys = stime + cstime summed over its processes, and
# how many processes it has. cutime/cstime hold the times of children that
# exited and were reaped (the master reaps its workers), so the difference of
# two samples counts the work of processes that came or went in between; only
# a child reaped between reading the parent's line and its own is missed.
tree_cpu() {
    tree_stat "$@" | awk '{ u += $3 + $5; s += $4 + $6; n++ } END { print u + 0, s + 0, n + 0 }'
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

# --- the file system under the queues and mailboxes ---------------------------

# ensure_fs_tools: mkfs.ext4 and dumpe2fs (e2fsprogs), mount, findmnt, losetup.
ensure_fs_tools() {
    local pkgs=()
    command -v mkfs.ext4 >/dev/null && command -v dumpe2fs >/dev/null || pkgs+=(e2fsprogs)
    command -v mount >/dev/null || pkgs+=(mount)
    command -v findmnt >/dev/null && command -v losetup >/dev/null || pkgs+=(util-linux)
    [ ${#pkgs[@]} -eq 0 ] && return 0
    log "installing ${pkgs[*]}"
    if ! apt-cache policy "${pkgs[0]}" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get update >&2
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}" >&2
}

# setup_fs: sets FS (the directory both systems keep their queue and mailboxes
# under) and FS_DESC. As root with BENCH_FS=loop: a sparse image of
# BENCH_FS_SIZE, mkfs.ext4 with the default journal, loop-mounted on TMP/fs.
# Inode tables and journal are written at mkfs time (lazy_*_init=0), so no
# ext4lazyinit thread writes in the background during the measurements.
# Otherwise TMP/fs on the temp directory's file system, with a warning.
setup_fs() {
    FS=$TMP/fs
    mkdir -p "$FS"
    local why=""
    if [ "$FS_MODE" != loop ]; then
        why="BENCH_FS=$FS_MODE"
    elif [ "$(id -u)" -ne 0 ]; then
        why="not root, cannot loop-mount"
    else
        ensure_fs_tools
        if ! truncate -s "$FS_SIZE" "$TMP/fs.img"; then
            why="cannot create a $FS_SIZE image in $TMP"
        elif ! mkfs.ext4 -q -F -L phbench -E lazy_itable_init=0,lazy_journal_init=0 \
            "$TMP/fs.img" >&2; then
            why="mkfs.ext4 failed"
        elif ! mount -o loop "$TMP/fs.img" "$FS"; then
            why="mount -o loop failed"
        else
            FS_MOUNTED=1
        fi
    fi
    chmod 0755 "$FS" # the mail systems' users (postfix, dovecot, nobody) must reach queues and Maildirs
    if [ "$FS_MOUNTED" = 1 ]; then
        local dev features journal
        dev=$(findmnt -n -o SOURCE --mountpoint "$FS")
        features=$(dumpe2fs -h "$dev" 2>/dev/null | sed -n 's/^Filesystem features: *//p')
        journal=$(dumpe2fs -h "$dev" 2>/dev/null | sed -n 's/^\(Total \)\{0,1\}[Jj]ournal size: *//p')
        grep -qw has_journal <<<"$features" || die "$dev on $FS has no journal (features: $features)"
        FS_DESC="ext4 with a ${journal:-?} journal, $FS_SIZE sparse image on $dev ($(findmnt -n -o OPTIONS --mountpoint "$FS"))"
    else
        local src journal="journal unknown"
        src=$(findmnt -n -o SOURCE -T "$FS")
        if command -v dumpe2fs >/dev/null && dumpe2fs -h "$src" >/dev/null 2>&1; then
            if dumpe2fs -h "$src" 2>/dev/null | grep -q '^Filesystem features:.*has_journal'; then
                journal="with a journal"
            else
                journal="WITHOUT a journal"
            fi
        fi
        log "WARNING: queues and mailboxes on the temp directory's file system ($why):" \
            "$(findmnt -n -o FSTYPE,OPTIONS -T "$FS" | tr -s ' ') on $src, $journal;" \
            "figures are not comparable with runs on the loop-mounted journaled ext4"
        FS_DESC="$(findmnt -n -o FSTYPE -T "$FS") on $src, $journal (temp directory; $why)"
    fi
    log "queues and mailboxes on $FS: $FS_DESC"
}

# check_fs NAME DIR: DIR must be on FS's file system (the mount when mounted:
# same mount point for findmnt, same file system id for stat -f); logs which
# file system it is on.
check_fs() {
    local name=$1 dir=$2 target
    target=$(findmnt -n -o TARGET -T "$dir")
    if [ "$FS_MOUNTED" = 1 ] &&
        { [ "$target" != "$FS" ] || [ "$(stat -f -c %i "$dir")" != "$(stat -f -c %i "$FS")" ]; }; then
        die "$name $dir is on $target, not on the bench file system $FS"
    fi
    log "$name $dir: $(findmnt -n -o FSTYPE -T "$dir") on $(findmnt -n -o SOURCE -T "$dir") mounted on $target"
}

# unmount_fs: unmount the image (mount -o loop set autoclear: the loop device
# goes with it); retry while processes still hold files there.
unmount_fs() {
    local i dev
    dev=$(findmnt -n -o SOURCE --mountpoint "$FS" 2>/dev/null || true)
    for ((i = 0; i < 20; i++)); do
        umount "$FS" 2>/dev/null && break
        sleep 0.5
    done
    if findmnt --mountpoint "$FS" >/dev/null 2>&1; then
        log "cannot unmount $FS (busy?); still mounted from $TMP/fs.img"
        return 1
    fi
    FS_MOUNTED=0
    # Should autoclear not have detached it, do it here.
    if [ -n "$dev" ] && losetup -j "$TMP/fs.img" 2>/dev/null | grep -q "^$dev:"; then
        losetup -d "$dev" 2>/dev/null || true
    fi
}

# ratio A B: A / B with two decimals, "-" when either is missing or B is 0.
ratio() {
    awk -v a="${1:--}" -v b="${2:--}" 'BEGIN {
        if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b + 0 == 0) print "-"
        else printf "%.2f\n", a / b
    }'
}
