#!/usr/bin/env bash
# Prepare this machine to run pbft-ci: scripts/setup.sh [CONFIG]
#
# Every step checks before it acts, so a second run only looks and takes a
# fraction of a second. The steps: the Debian packages the executor and the
# build images need, Python packages in .venv, a Docker engine, the local build
# images (and, for the tests, a headless browser), the key pairs of CONFIG (and
# for the example network, an owner key and its in-toto layout), and the example
# git repository.
#
# Installing system packages or starting a Docker engine needs root and
# apt-get (Debian); elsewhere the script stops and says what to install.
set -euo pipefail

help() {
    # The header comment above, whole: lines 2 up to the first line that is not a comment.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

case "${1:-}" in
    -h|--help) help; exit 0 ;;
esac

config="${1:-example-config/network.yaml}"
# A path given relative to the caller's directory must survive the cd below.
if [[ $# -ge 1 && "$config" != /* ]]; then
    config="$(pwd)/$config"
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "setup: $*"; }
fail() { echo "setup: error: $*" >&2; exit 1; }

# Run a step quietly and print the gist of its output on one line (a short
# output joined, a long one's last line); show everything if it fails.
step() {
    local label=$1 out
    shift
    if out=$("$@" 2>&1); then
        if [[ $(wc -l <<<"$out") -le 2 ]]; then
            say "$label: $(paste -sd ' ' <<<"$out")"
        else
            say "$label: $(tail -n 1 <<<"$out")"
        fi
    else
        echo "$out" >&2
        fail "$label failed"
    fi
}

can_apt() { [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; }

apt_updated=0
apt_install() {
    # The package lists of a fresh machine are empty, so update once, and only
    # when something is actually missing.
    if [[ $apt_updated -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

deb_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# --- Debian packages: git for the executor, busybox-static for the default
# build image, debootstrap for the Debian image of the real-project test.
missing=()
command -v git >/dev/null || missing+=(git)
if command -v dpkg-query >/dev/null; then
    deb_installed busybox-static || missing+=(busybox-static)
    deb_installed debootstrap || missing+=(debootstrap)
fi
# The multi-host test (PBFT_CI_TEST_IMAGES=1, set by scripts/test.sh) gives each
# node a network namespace (ip) and delays its packets (iptables NFQUEUE); the image
# tests pull from a real registry they start (Debian's docker-registry).
if [[ "${PBFT_CI_TEST_IMAGES:-0}" == 1 ]]; then
    command -v ip >/dev/null || missing+=(iproute2)
    command -v iptables >/dev/null || missing+=(iptables)
    command -v docker-registry >/dev/null || missing+=(docker-registry)
fi
# python3 -m venv needs ensurepip, which Debian ships separately.
if [[ ! -x .venv/bin/python ]] && ! python3 -c "import ensurepip, venv" 2>/dev/null; then
    missing+=(python3-venv)
fi
if [[ ${#missing[@]} -eq 0 ]]; then
    say "system packages present"
elif can_apt; then
    say "installing ${missing[*]}"
    apt_install "${missing[@]}"
elif [[ " ${missing[*]} " == *" git "* || " ${missing[*]} " == *" python3-venv "* ]]; then
    fail "missing ${missing[*]}: install them (Debian: apt-get install ${missing[*]}) or run this script as root"
else
    # busybox-static and debootstrap are only needed to build the images; their
    # scripts say so if they must.
    say "not root: skipping ${missing[*]}"
fi
# diffoscope says why nodes' artifacts differ (client/divergence.py). Its minimal package,
# without the format tools it recommends (hundreds of MB), compares text, archives and bytes.
if ! command -v diffoscope >/dev/null; then
    if can_apt; then
        say "installing diffoscope-minimal"
        apt_install --no-install-recommends diffoscope-minimal
    else
        say "not root: skipping diffoscope (a build's page then says it cannot compare artifacts)"
    fi
fi

# --- Python packages, reinstalled only when requirements.txt changes. uv, Astral's installer,
# makes the .venv and installs into it from its cache: about 3 s for a new clone where
# `python3 -m venv` and pip took 40 (8.8 s of it ensurepip). It is installed once per user, in a
# venv of its own under the user's cache (UV_HOME); PBFT_CI_NO_UV=1, a machine where it cannot
# be installed, or a uv that fails leaves the work to venv and pip, as before.
UV_VERSION=0.13.9
UV_HOME="${XDG_CACHE_HOME:-$HOME/.cache}/pbft-ci/uv-$UV_VERSION"
uv=""
if [[ "${PBFT_CI_NO_UV:-0}" != 1 ]]; then
    if [[ -x "$UV_HOME/bin/uv" ]] ||
       { say "installing uv $UV_VERSION into $UV_HOME (once)"; rm -rf "$UV_HOME";
         python3 -m venv "$UV_HOME" >/dev/null 2>&1 &&
         "$UV_HOME/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION" >/dev/null 2>&1; }; then
        uv="$UV_HOME/bin/uv"
    else
        rm -rf "$UV_HOME"
        say "uv could not be installed: pip installs the python packages"
    fi
fi
if [[ ! -x .venv/bin/python ]]; then
    say "creating .venv"
    # --seed: the venv has pip too, for what the docs install by hand.
    if [[ -z $uv ]] || ! "$uv" venv --quiet --seed --python "$(command -v python3)" .venv; then
        rm -rf .venv
        python3 -m venv .venv
    fi
fi
# The stamp's suffix names how they were installed: with their bytecode compiled (below).
wanted="$(sha256sum requirements.txt | cut -d' ' -f1) bytecode"
stamp=.venv/.requirements.sha256
if [[ -f $stamp && "$(cat "$stamp")" == "$wanted" ]]; then
    say "python packages up to date (.venv)"
else
    say "installing python packages into .venv"
    if [[ -n $uv ]] && out=$("$uv" pip install --quiet --compile-bytecode --python .venv/bin/python -r requirements.txt 2>&1); then
        :
    elif ! out=$(.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1); then
        echo "$out" >&2
        fail "pip could not install requirements.txt"
    fi
    echo "$wanted" >"$stamp"
fi

# Bytecode of pbft-ci's own modules, made once here: where PYTHONDONTWRITEBYTECODE is set (as on
# some CI machines), every node, client and test worker would otherwise compile each module it
# imports from source at each start, about a second of CPU per process. uv is told the same for
# the packages (--compile-bytecode; pip does it by default). Only changed files are compiled again.
# One process: a set-up with nothing to compile (every ./startNetwork.sh) takes 0.16 s so, and
# 0.6 s with a pool of workers; a fresh clone's 2.5 s is paid once.
if ! out=$(.venv/bin/python -m compileall -q pbft node client shared builder runner cli harness bench scripts tests 2>&1); then
    say "could not compile every module's bytecode (processes will compile at start): ${out%%$'\n'*}"
fi

# The command line (cli/): .venv/bin/pbft-ci runs it from any folder, with this checkout's code.
launcher="#!/bin/sh
PYTHONPATH=\"$PWD\" exec \"$PWD/.venv/bin/python\" -m cli \"\$@\""
if [[ ! -x .venv/bin/pbft-ci || "$(cat .venv/bin/pbft-ci)" != "$launcher" ]]; then
    printf '%s\n' "$launcher" >.venv/bin/pbft-ci.partial
    chmod +x .venv/bin/pbft-ci.partial
    mv .venv/bin/pbft-ci.partial .venv/bin/pbft-ci
    say "installed .venv/bin/pbft-ci"
fi

# --- Docker engine: use one that answers; start one only where none runs.
if docker info >/dev/null 2>&1; then
    say "docker engine answers"
else
    if ! can_apt; then
        fail "no Docker engine answers. Install and start one (Debian: apt-get install docker.io; dockerd), or run this script as root to have it done"
    fi
    if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
        say "installing docker.io"
        apt_install docker.io
    fi
    if pgrep -x dockerd >/dev/null 2>&1; then
        say "dockerd is running but not answering yet; waiting"
    else
        say "starting dockerd (log/dockerd.log)"
        mkdir -p log
        # Its own session, so it outlives this script and the shell that ran it.
        setsid nohup dockerd --storage-driver=overlay2 --iptables=false --ip-forward=false --bridge=none \
            </dev/null >>log/dockerd.log 2>&1 &
    fi
    for _ in $(seq 120); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || fail "dockerd did not answer within 60 s; see log/dockerd.log"
    say "docker engine answers"
fi

# --- The default build image, built locally (no registry is reachable).
if docker image inspect pbft-ci/busybox:latest >/dev/null 2>&1; then
    say "build image pbft-ci/busybox:latest present"
else
    step "build image" scripts/build-image.sh
fi

# --- The Debian images real projects build in: Python (harness/real_project.py),
# and PostgreSQL with the test image of pg8000 (harness/postgres_project.py).
# Only for the tests (scripts/test.sh sets PBFT_CI_TEST_IMAGES=1): the example
# network does not need them, and debootstrap takes minutes. It needs root;
# without it, say what to run and go on.
debian_images=(python:pbft-ci/debian-python:bookworm postgres:pbft-ci/debian-postgres:bookworm
               pg8000:pbft-ci/debian-pg8000:bookworm)
for entry in "${debian_images[@]}"; do
    variant=${entry%%:*} debian_image=${entry#*:}
    if [[ "${PBFT_CI_TEST_IMAGES:-0}" != 1 ]]; then
        :
    elif scripts/build-debian-image.sh --check "$variant"; then
        say "build image $debian_image present"
    elif [[ "$(id -u)" -eq 0 ]]; then
        say "building $debian_image with debootstrap (once; a few minutes)"
        # The pg8000 image takes one wheel from PyPI, downloaded with the venv's pip.
        step "build image" env PYTHON=.venv/bin/python scripts/build-debian-image.sh "$variant"
    else
        say "warning: $debian_image is missing and building it needs root:" \
            "run sudo scripts/build-debian-image.sh $variant (the real-project tests need it)"
    fi
done

# --- A headless browser for the dashboard's browser test
# (tests/e2e/test_end_to_end_dashboard.py), for the tests only like the Debian
# image: Debian's chromium and its chromedriver, so that selenium never
# downloads a browser or a driver. Without root, say what to install and go on
# (the test skips itself without them).
browser_packages=(chromium chromium-driver)
if [[ "${PBFT_CI_TEST_IMAGES:-0}" != 1 ]] || ! command -v dpkg-query >/dev/null; then
    :
else
    browser_missing=()
    for package in "${browser_packages[@]}"; do
        deb_installed "$package" || browser_missing+=("$package")
    done
    if [[ ${#browser_missing[@]} -eq 0 ]]; then
        say "headless browser present (${browser_packages[*]})"
    elif can_apt; then
        say "installing ${browser_missing[*]}"
        apt_install "${browser_missing[@]}"
    else
        say "warning: ${browser_missing[*]} missing and installing needs root:" \
            "run sudo apt-get install ${browser_missing[*]} (the dashboard's browser test needs them)"
    fi
fi

# --- An OpenID provider for the sign-in tests (tests/client/test_client_signin.py), for the
# tests only: panva's certified oidc-provider from the npm registry, pinned by
# tests/oidc/package-lock.json, run by the machine's Node.js (Debian's nodejs and npm
# where it has none).
if [[ "${PBFT_CI_TEST_IMAGES:-0}" == 1 ]]; then
    if ! command -v npm >/dev/null; then
        if can_apt; then
            say "installing nodejs npm"
            apt_install nodejs npm
        else
            fail "the sign-in tests need Node.js and npm: install them (Debian: apt-get install nodejs npm)"
        fi
    fi
    if [[ ! tests/oidc/node_modules/.package-lock.json -nt tests/oidc/package-lock.json ]]; then
        step "OpenID provider for the tests" npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error
    else
        say "OpenID provider for the tests present (tests/oidc)"
    fi
fi

# --- Key pairs of every node and client of the configuration, and the example's in-toto layout.
# For the example, both are checked again only when what they read has changed (its
# configuration, its keys folder, the two scripts) or on another day (a layout expires): each
# check is a Python start of about 1.2 s, and startNetwork.sh then startClient.sh run them twice
# within seconds.
keys_stamp=.venv/.example-keys-checked
example_keys_fingerprint() {
    { date +%F; cat example-config/network.yaml scripts/keygen.py scripts/owner.py;
      find example-config/keys -maxdepth 1 -printf '%f %s %T@\n' 2>/dev/null | sort; } | sha256sum | cut -d' ' -f1
}
if [[ "$config" -ef example-config/network.yaml && -f $keys_stamp &&
      "$(cat "$keys_stamp")" == "$(example_keys_fingerprint)" ]]; then
    say "keys and in-toto layout: unchanged since they were last checked"
else
    rm -f "$keys_stamp"
    # keygen.py exits 2 for a configuration that does not load, and its lines (each naming the file and
    # the key) are the whole message: the configuration, not the key step, is wrong.
    keys_status=0
    keys_out=$(.venv/bin/python scripts/keygen.py "$config" 2>&1) || keys_status=$?
    case $keys_status in
        0) say "keys: $(tail -n 1 <<<"$keys_out")" ;;
        2) echo "$keys_out" >&2; exit 2 ;;
        *) echo "$keys_out" >&2; fail "keys failed" ;;
    esac

    # The example network's in-toto layout (in_toto_layout in its YAML), signed with an
    # owner key made here beside its node keys, so that `curl .../in-toto | tar x` and
    # in-toto-verify work out of the box. Only for the example: a real network's owner
    # keeps their key offline and signs its layout there (docs/attestations.md).
    if [[ "$config" -ef example-config/network.yaml ]]; then
        step "in-toto layout" .venv/bin/python scripts/owner.py local --config example-config/network.yaml \
            --key example-config/keys/owner.key
        example_keys_fingerprint >"$keys_stamp"
    fi
fi

# --- The example repository the example configuration builds.
step "example repository" scripts/make-example-repo.sh data/example-repo
