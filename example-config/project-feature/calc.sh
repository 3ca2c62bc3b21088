#!/bin/sh
# A tiny "program" under test: add two integers.
# Branch feature "optimises" add and breaks it: test.sh exits with code 3.
add() {
    echo $(($1 * $2))
}
