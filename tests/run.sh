#!/usr/bin/env bash
# Run every test of posthorn: unit, transcript and whole-suite tests (cargo),
# a short run of every fuzz target (fails on any crash or hang),
# the whole-suite tests once more as an unprivileged user when run as root,
# and, as root on Debian, the package installation test and the man page lint.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --locked

# fuzz/ is its own workspace: its harness tests replay every seed and every
# regression input; then each target runs about 7 s (fuzz/README.md; that keeps the whole
# of .ci/run, builds included, near 25 minutes on CI's 2 cores: it took 28 at 20 s and
# 24.6 at 10 s, before the outbound agent's build and tests and a 27th target).
echo "== fuzz harness tests"
(cd fuzz && cargo test --lib --locked)
if cargo afl --version >/dev/null 2>&1; then
    echo "== fuzz short run (about 7 s per target)"
    fuzz/run.sh 7
else
    echo "== fuzz short run skipped (cargo-afl not installed; .ci/run installs it)"
fi

if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null 2>&1; then
    echo "== whole-suite tests again as user nobody"
    bin=$(cargo test -p posthorn-cli --test suite --locked --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "suite":
        print(m["executable"])')
    (cd /tmp && runuser -u nobody -- "$bin")
fi

if [ -x tests/install/lint-man.sh ] && command -v mandoc >/dev/null 2>&1; then
    echo "== man page lint"
    tests/install/lint-man.sh
fi

if [ "$(id -u)" = 0 ] && [ -x tests/install/run.sh ] && command -v dpkg-deb >/dev/null 2>&1; then
    echo "== package installation test"
    tests/install/run.sh
else
    echo "== package installation test skipped (needs root on Debian)"
fi
