#!/usr/bin/env bash
# Build a Debian bookworm (minbase) image locally, one of:
#   python    pbft-ci/debian-python:bookworm: python3, python3-pytest and git, for
#             builds of real Python projects (the default; their workspace is a
#             git checkout: git describe, setuptools-scm);
#   postgres  pbft-ci/debian-postgres:bookworm: Debian's PostgreSQL 15, its programs
#             on PATH, for a pipeline's database service;
#   pg8000    pbft-ci/debian-pg8000:bookworm: python3 and what pg8000's test suite
#             imports, for the PostgreSQL-backed real-project test.
#
# No image registry is reachable from the nodes, but Debian's package mirror
# is, so the root file system is made with debootstrap and imported into
# Docker as a single layer. The build sandbox mounts the passwd entry, HOME,
# /tmp and /workspace at run time, so the image needs nothing of its own for
# the build user.
#
# Usage: scripts/build-debian-image.sh [--force|--check] [python|postgres|pg8000]
# An image already built from the same packages is kept (--force builds it again); one built
# from others is built again. --check only says, by its exit code, whether the image is there
# and built from the packages this script names.
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian),
#              TMPDIR (where the root file system is assembled; default /var/tmp),
#              PYTHON (a python3 with pip, for the one wheel Debian lacks; default python3).
# Needs root (debootstrap creates device nodes and chroots) and debootstrap,
# which it installs with apt-get when it is missing.
set -euo pipefail

help() {
    # The header comment above, whole: lines 2 up to the first line that is not a comment.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PYTHON="${PYTHON:-python3}"
BASE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

force=0
check=0
variant=python
for argument in "$@"; do
    case "$argument" in
        --force) force=1 ;;
        --check) check=1 ;;
        -h|--help) help; exit 0 ;;
        python|postgres|pg8000) variant=$argument ;;
        *) echo "usage: $0 [--force|--check] [python|postgres|pg8000]" >&2; exit 2 ;;
    esac
done

# WHEELS: pip requirement lines, each pinned by its hash, for what Debian does not
# package; pure-Python wheels, unpacked into the image's site-packages.
WHEELS=
case "$variant" in
    python)
        IMAGE=pbft-ci/debian-python:$SUITE
        # libfaketime: a repository's `vary: true` moves the clock of images that have it.
        PACKAGES=python3,python3-pytest,git,libfaketime
        IMAGE_PATH=$BASE_PATH
        CHECK="python3 -m pytest --version && test -r /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 -o -r /usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"
        ;;
    postgres)
        IMAGE=pbft-ci/debian-postgres:$SUITE
        PACKAGES=postgresql-15
        # Debian keeps initdb and postgres out of PATH (its wrappers pick a
        # cluster from /etc, which a service made at run time does not have).
        IMAGE_PATH=/usr/lib/postgresql/15/bin:$BASE_PATH
        CHECK="postgres --version"
        ;;
    pg8000)
        IMAGE=pbft-ci/debian-pg8000:$SUITE
        # pg8000's dependencies and its tests' imports; tzdata for the tests
        # that set TZ to a named zone.
        PACKAGES=python3,python3-pytest,python3-pytest-mock,python3-pytest-benchmark,python3-tz,python3-dateutil,python3-asn1crypto,tzdata
        # scramp (pg8000's SCRAM authentication) is not in bookworm.
        WHEELS="scramp==1.4.5 --hash=sha256:50e37c464fc67f37994e35bee4151e3d8f9320e9c204fca83a5d313c121bbbe7"
        IMAGE_PATH=$BASE_PATH
        CHECK="python3 -c 'import scramp, dateutil, pytz, pytest_mock, pytest_benchmark; print(\"imports ok\")'"
        ;;
esac

# What the image's comment says it was built from (docker import --message, below).
MESSAGE="pbft-ci: debootstrap --variant=minbase --include=$PACKAGES $SUITE${WHEELS:+ and ${WHEELS%% *}}"
current=0
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    if [ "$(docker image inspect -f '{{.Comment}}' "$IMAGE")" = "$MESSAGE" ]; then
        current=1
    fi
fi
if [ "$check" -eq 1 ]; then
    [ "$current" -eq 1 ]
    exit
fi
if [ "$force" -eq 0 ] && [ "$current" -eq 1 ]; then
    echo "$IMAGE already exists (use --force to rebuild)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "error: building $IMAGE needs root (debootstrap creates device nodes and runs chroot);" \
         "run: sudo $0 $variant" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    else
        echo "error: debootstrap is missing and there is no apt-get to install it;" \
             "install debootstrap (https://wiki.debian.org/Debootstrap)" >&2
        exit 1
    fi
fi

# On disk rather than a tmpfs /tmp: the tree is a few hundred megabytes.
rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/pbft-ci-debian.XXXXXX")
trap 'rm -rf "$rootfs" "$rootfs.wheels"' EXIT INT TERM

started=$(date +%s)
echo "debootstrap $SUITE from $MIRROR into $rootfs (a few minutes)"
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
        >"$rootfs.log" 2>&1; then
    tail -n 30 "$rootfs.log" >&2
    echo "error: debootstrap failed (full log: $rootfs.log); is $MIRROR reachable?" >&2
    exit 1
fi
rm -f "$rootfs.log"

if [ -n "$WHEELS" ]; then
    mkdir "$rootfs.wheels"
    echo "$WHEELS" >"$rootfs.wheels/requirements.txt"
    if ! "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
            --require-hashes -r "$rootfs.wheels/requirements.txt" -d "$rootfs.wheels" >&2; then
        echo "error: could not download $WHEELS from PyPI with $PYTHON -m pip" >&2
        exit 1
    fi
    site=$(chroot "$rootfs" python3 -c 'import site; print(site.getsitepackages()[0])')
    mkdir -p "$rootfs$site"
    for wheel in "$rootfs.wheels"/*.whl; do
        "$PYTHON" -m zipfile -e "$wheel" "$rootfs$site"
    done
fi

# The cluster Debian's package makes at install time is unused: a service
# makes its own at run time, where it may write.
rm -rf "$rootfs"/var/lib/postgresql/* "$rootfs"/etc/postgresql/*
# Downloaded packages and package lists only make the image bigger: builds
# have no network, so they could not use apt anyway.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*
mkdir -p "$rootfs/workspace"
chmod 0777 "$rootfs/workspace"

# docker import keeps no environment of its own, so PATH, a UTF-8 locale (for
# test suites that print or open non-ASCII text) and the working directory
# are set here.
tar -C "$rootfs" --numeric-owner -c . | docker import \
    --change "ENV PATH=$IMAGE_PATH" \
    --change 'ENV LANG=C.UTF-8' \
    --change 'WORKDIR /workspace' \
    --change 'USER 1000:1000' \
    --change 'CMD ["/bin/sh"]' \
    --message "$MESSAGE" \
    - "$IMAGE" >/dev/null

echo "built $IMAGE in $(( $(date +%s) - started )) s: $(docker run --rm --network none "$IMAGE" sh -c "$CHECK" 2>&1)"
