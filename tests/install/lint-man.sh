#!/bin/sh
# tests/install/lint-man.sh — mandoc -T lint on every man page under man/.
#
# Fails (exit 1) when mandoc reports an error on any page; warnings are
# printed and fail only with STRICT=1. Needs mandoc (Debian package mandoc);
# as root it is installed with apt-get when missing.
set -u
cd "$(dirname "$0")/../.."

if ! command -v mandoc >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q mandoc >/dev/null 2>&1
    fi
    command -v mandoc >/dev/null 2>&1 || { echo "FAIL  mandoc is not installed (apt-get install mandoc)"; exit 1; }
fi

rc=0
n=0
for page in man/man[1-8]/*.[1-8]; do
    [ -f "$page" ] || continue
    n=$((n + 1))
    errors=$(mandoc -T lint -W error "$page" 2>&1)
    warnings=$(mandoc -T lint -W warning "$page" 2>&1)
    if [ -n "$errors" ]; then
        echo "FAIL  mandoc lint $page"
        echo "$errors" | sed 's/^/      /'
        rc=1
    elif [ -n "$warnings" ]; then
        if [ "${STRICT:-0}" = 1 ]; then
            echo "FAIL  mandoc lint $page (warnings, STRICT=1)"
            rc=1
        else
            echo "PASS  mandoc lint $page (with warnings)"
        fi
        echo "$warnings" | sed 's/^/      /'
    else
        echo "PASS  mandoc lint $page"
    fi
done
if [ "$n" = 0 ]; then
    echo "FAIL  no man pages under man/"
    rc=1
fi
exit $rc
