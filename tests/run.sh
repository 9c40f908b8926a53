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
if cargo afl --version >/dev/null 2>&1; then
    echo "== fuzz short run, about 5 s per target ($SECONDS s so far)"
    # cargo-afl builds with codegen-units=1 and AFL_OPT_LEVEL (default 3);
    # for 5 s per target opt-level 1 finds as much and builds much faster.
    AFL_OPT_LEVEL=${AFL_OPT_LEVEL:-1} fuzz/run.sh 5
else
    echo "== fuzz short run skipped (cargo-afl not installed; .ci/run installs it)"
fi

if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null 2>&1; then
    echo "== whole-suite tests again as user nobody ($SECONDS s so far)"
    bin=$(cargo test -p posthorn-cli --test suite --locked --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "suite":
        print(m["executable"])')
    (cd /tmp && runuser -u nobody -- "$bin")
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
