#!/bin/sh
# A tiny "program" under test: add two integers.
add() {
    echo $(($1 + $2))
}
