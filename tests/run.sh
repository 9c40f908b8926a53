#!/usr/bin/env bash
# Run every test of posthorn: unit, transcript and whole-suite tests (cargo),
# a short run of every fuzz target (fails on any crash or hang),
# the whole-suite tests once more as an unprivileged user when run as root,
# and, as root on Debian, the package installation test and the man page lint.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --locked

# fuzz/ is its own workspace: its harness tests replay every seed and every
# regression input; they build in this workspace's target directory (fuzz/Cargo.toml
# has the same dev profile), so the crates the tests above compiled are reused.
# Then each target runs about 5 s (fuzz/README.md). CI's budget is 25 minutes on 2
# cores: .ci/run took 30 with 7 s per target and the fuzz workspace built on its own.
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
echo "== fuzz harness tests ($SECONDS s so far)"
(cd fuzz && CARGO_TARGET_DIR=$target_dir cargo test --lib --locked)
# The whole-suite tests again as user nobody (when run as root) go on in the
# background while the fuzz targets run: afl-fuzz keeps one core busy, the
# suite mostly waits on its servers, and CI's 25 minutes are short.
nobody_pid=""
nobody_log=$(mktemp /tmp/posthorn-suite-nobody.XXXXXX)
start_nobody_suite() {
    if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null 2>&1; then
        echo "== whole-suite tests again as user nobody, in the background ($SECONDS s so far)"
        bin=$(cargo test -p posthorn-cli --test suite --locked --no-run --message-format=json 2>/dev/null |
            python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "suite":
        print(m["executable"])')
        chmod 0644 "$nobody_log"
        (cd /tmp && runuser -u nobody -- "$bin" >"$nobody_log" 2>&1) &
        nobody_pid=$!
    fi
}
finish_nobody_suite() {
    [ -n "$nobody_pid" ] || return 0
    local rc=0
    wait "$nobody_pid" || rc=$?
    echo "== whole-suite tests as user nobody finished ($SECONDS s so far)"
    cat "$nobody_log"
    rm -f "$nobody_log"
    nobody_pid=""
    return "$rc"
}

if cargo afl --version >/dev/null 2>&1; then
    echo "== fuzz targets built with cargo-afl ($SECONDS s so far)"
    # cargo-afl builds with codegen-units=1 and AFL_OPT_LEVEL (default 3);
    # for 5 s per target opt-level 1 finds as much and builds much faster.
    export AFL_OPT_LEVEL=${AFL_OPT_LEVEL:-1}
    (cd fuzz && CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target} cargo afl build --release --locked --quiet)
    start_nobody_suite
    echo "== fuzz short run, about 5 s per target ($SECONDS s so far)"
    fuzz_rc=0
    fuzz/run.sh 5 || fuzz_rc=$?
    finish_nobody_suite
    [ "$fuzz_rc" = 0 ] || exit "$fuzz_rc"
else
    echo "== fuzz short run skipped (cargo-afl not installed; .ci/run installs it)"
    start_nobody_suite
    finish_nobody_suite
fi

if [ -x tests/install/lint-man.sh ] && command -v mandoc >/dev/null 2>&1; then
    echo "== man page lint ($SECONDS s so far)"
    tests/install/lint-man.sh
fi

if [ "$(id -u)" = 0 ] && [ -x tests/install/run.sh ] && command -v dpkg-deb >/dev/null 2>&1; then
    echo "== package installation test ($SECONDS s so far)"
    # The package as packaging/build-deb.sh builds it, from the debug build
    # the tests above made (POSTHORN_PROFILE=dev: the same code and files,
    # stripped; a release build is 4-5 minutes of CI's 25 on 2 cores).
    # POSTHORN_TEST_RELEASE=1 tests the release profile as shipped.
    if [ "${POSTHORN_TEST_RELEASE:-0}" = 1 ]; then
        tests/install/run.sh
    else
        POSTHORN_PROFILE=dev tests/install/run.sh
    fi
else
    echo "== package installation test skipped (needs root on Debian)"
fi
echo "== tests/run.sh done in $SECONDS s"
