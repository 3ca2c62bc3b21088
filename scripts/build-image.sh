#!/usr/bin/env bash
# Build the default build image pbft-ci/busybox:latest locally.
#
# No image registry is reachable from the nodes, so the image is assembled
# FROM scratch around Debian's statically linked busybox. Builds run as the
# non-root user "build" (uid 1000) and the root file system is mounted
# read-only at run time, so the image carries its own /etc/passwd and /tmp.
#
# Usage: scripts/build-image.sh [--force]
set -euo pipefail

help() {
    # The header comment above, whole: lines 2 up to the first line that is not a comment.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

IMAGE=pbft-ci/busybox:latest
BUSYBOX=/bin/busybox

force=0
case "${1:-}" in
    --force) force=1 ;;
    -h|--help) help; exit 0 ;;
    "") ;;
    *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

if [ "$force" -eq 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE already exists (use --force to rebuild)"
    exit 0
fi

# A dynamically linked busybox would not run in an empty image, so insist on
# Debian's busybox-static and install it when we are allowed to.
if [ ! -x "$BUSYBOX" ] || ldd "$BUSYBOX" >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get install -y busybox-static
    else
        echo "error: $BUSYBOX must be Debian's busybox-static; run as root or install it" >&2
        exit 1
    fi
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT

mkdir -p "$context/root/bin" "$context/root/etc" "$context/root/tmp" \
         "$context/root/workspace"
cp "$BUSYBOX" "$context/root/bin/busybox"
cat >"$context/root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
build:x:1000:1000:build:/tmp:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$context/root/etc/group" <<'EOF'
root:x:0:
build:x:1000:
nogroup:x:65534:
EOF
# /tmp is sticky and world-writable as on any Unix; the tree is copied with
# its modes, so set them here rather than in a RUN step.
chmod 1777 "$context/root/tmp"
chmod 0777 "$context/root/workspace"

cat >"$context/Dockerfile" <<'EOF'
FROM scratch
COPY root/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin HOME=/tmp
WORKDIR /workspace
USER 1000:1000
CMD ["/bin/sh"]
EOF

docker build --network none -t "$IMAGE" "$context"
