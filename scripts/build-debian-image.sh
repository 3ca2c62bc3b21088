#!/bin/sh
# Build pbft-ci/debian-python:bookworm locally: Debian bookworm (minbase) with
# python3, python3-pytest and git, for builds of real Python projects (their
# workspace is a git checkout: git describe, setuptools-scm).
#
# No image registry is reachable from the nodes, but Debian's package mirror
# is, so the root file system is made with debootstrap and imported into
# Docker as a single layer. The build sandbox mounts the passwd entry, HOME,
# /tmp and /workspace at run time, so the image needs nothing of its own for
# the build user.
#
# Usage: scripts/build-debian-image.sh [--force]
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian),
#              TMPDIR (where the root file system is assembled; default /var/tmp).
# Needs root (debootstrap creates device nodes and chroots) and debootstrap,
# which it installs with apt-get when it is missing.
set -eu

IMAGE=pbft-ci/debian-python:bookworm
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES=python3,python3-pytest,git

force=0
case "${1:-}" in
    --force) force=1 ;;
    "") ;;
    *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

if [ "$force" -eq 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE already exists (use --force to rebuild)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "error: building $IMAGE needs root (debootstrap creates device nodes and runs chroot);" \
         "run: sudo $0" >&2
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
trap 'rm -rf "$rootfs"' EXIT INT TERM

started=$(date +%s)
echo "debootstrap $SUITE from $MIRROR into $rootfs (a few minutes)"
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
        >"$rootfs.log" 2>&1; then
    tail -n 30 "$rootfs.log" >&2
    echo "error: debootstrap failed (full log: $rootfs.log); is $MIRROR reachable?" >&2
    exit 1
fi
rm -f "$rootfs.log"

# Downloaded packages and package lists only make the image bigger: builds
# have no network, so they could not use apt anyway.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*
mkdir -p "$rootfs/workspace"
chmod 0777 "$rootfs/workspace"

# docker import keeps no environment of its own, so PATH, a UTF-8 locale (for
# test suites that print or open non-ASCII text) and the working directory
# are set here.
tar -C "$rootfs" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'WORKDIR /workspace' \
    --change 'USER 1000:1000' \
    --change 'CMD ["/bin/sh"]' \
    --message "pbft-ci: debootstrap --variant=minbase --include=$PACKAGES $SUITE" \
    - "$IMAGE" >/dev/null

echo "built $IMAGE in $(( $(date +%s) - started )) s: $(docker run --rm --network none "$IMAGE" python3 -m pytest --version 2>&1)"
