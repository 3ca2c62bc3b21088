#!/bin/sh
# The example project's test suite. A failing check exits with code 3 so that
# a failed build is told apart from a broken shell (2) or a kill (137).
. ./calc.sh

check() {
    if [ "$2" = "$3" ]; then
        echo "ok   $1"
    else
        echo "FAIL $1: expected $3, got $2"
        exit 3
    fi
}

check "2 + 2" "$(add 2 2)" 4
check "1 + -1" "$(add 1 -1)" 0
echo "all tests passed"
