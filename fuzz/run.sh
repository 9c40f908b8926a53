#!/usr/bin/env bash
# Build the fuzz targets with cargo-afl and run each for SECONDS (default 30).
#
#   fuzz/run.sh [SECONDS] [TARGET...]      (no TARGET: every src/bin/*.rs)
#
# Starts from fuzz/corpus/TARGET (plus fuzz/dict/TARGET.dict when present),
# writes to fuzz/out/TARGET (emptied first; FUZZ_OUT=DIR for another place),
# and prints per target the
# executions, corpus size, edges, crashes and hangs. Exits non-zero when a
# target finds a crash or a hang (printing each file and the command that
# reproduces it) or when afl-fuzz cannot run. Non-interactive; needs
# cargo-afl (.ci/run installs it).
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-30}
shift || true
case $secs in
'' | *[!0-9]*)
    echo "usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2
    exit 2
    ;;
esac
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in src/bin/*.rs; do
        t=${f##*/}
        targets+=("${t%.rs}")
    done
fi
for t in "${targets[@]}"; do
    if [ ! -f "src/bin/$t.rs" ]; then
        echo "fuzz/run.sh: no target $t (see fuzz/src/bin/)" >&2
        exit 2
    fi
done

if ! cargo afl --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: cargo-afl is not installed (.ci/run installs it)" >&2
    exit 2
fi
cargo afl build --release --locked --quiet
bin=${CARGO_TARGET_DIR:-target}/release
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac

# Robust on CI and on shared machines: no UI, no CPU frequency or core_pattern
# checks, no pinning to a core that another job may hold.
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export AFL_NO_AFFINITY=1

stat() { sed -n "s/^$1 *: *//p" "$2"; }

failed=0
printf '%-14s %10s %8s %8s %12s %8s %6s\n' target execs exec/s corpus edges crashes hangs
for t in "${targets[@]}"; do
    out=${FUZZ_OUT:-out}/$t
    rm -rf "$out"
    mkdir -p "$out"
    dict=()
    [ -f "dict/$t.dict" ] && dict=(-x "dict/$t.dict")
    # -t: 2 s per input counts as a hang (generous: the machine may be shared).
    if ! cargo afl fuzz -V "$secs" -t 2000 -m none "${dict[@]}" \
        -i "corpus/$t" -o "$out" -- "$bin/$t" \
        </dev/null >"$out.log" 2>&1; then
        echo "$t: afl-fuzz failed; the end of $PWD/$out.log:" >&2
        tail -n 20 "$out.log" >&2
        failed=1
        continue
    fi
    stats=$out/default/fuzzer_stats
    if [ ! -f "$stats" ]; then
        echo "$t: afl-fuzz wrote no statistics; see $PWD/$out.log" >&2
        failed=1
        continue
    fi
    crashes=$(stat saved_crashes "$stats")
    hangs=$(stat saved_hangs "$stats")
    printf '%-14s %10s %8s %8s %12s %8s %6s\n' "$t" "$(stat execs_done "$stats")" \
        "$(stat execs_per_sec "$stats")" "$(stat corpus_count "$stats")" \
        "$(stat edges_found "$stats")/$(stat total_edges "$stats")" "$crashes" "$hangs"
    for kind in crash hang; do
        dir=${kind}es
        [ $kind = hang ] && dir=hangs
        for f in "$out/default/$dir"/id:*; do
            [ -e "$f" ] || continue
            failed=1
            echo "$t: $kind found: $PWD/$f"
            echo "    reproduce: $bin/$t < '$PWD/$f'"
        done
    done
done
exit $failed
