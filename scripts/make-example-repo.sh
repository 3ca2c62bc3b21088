#!/usr/bin/env bash
# Create the example git repository that the example network builds.
#
#   master   example-config/project: the test suite passes
#   feature  master plus example-config/project-feature: test.sh exits with 3
#
# Author, committer, dates and file modes are fixed, so the commit ids are the
# same on every machine. Nothing is done when DEST already holds both branches.
#
# Usage: scripts/make-example-repo.sh DEST
set -euo pipefail

help() {
    # The header comment above, whole: lines 2 up to the first line that is not a comment.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

case "${1:-}" in
    -h|--help) help; exit 0 ;;
esac
# A DEST that looks like an option would reach mkdir and git as one.
if [[ $# -ne 1 || "$1" == -* ]]; then
    echo "usage: $0 DEST  (--help says more)" >&2
    exit 2
fi
dest=$1
here=$(cd "$(dirname "$0")/.." && pwd)

if git -C "$dest" rev-parse --verify --quiet refs/heads/master >/dev/null 2>&1 \
   && git -C "$dest" rev-parse --verify --quiet refs/heads/feature >/dev/null 2>&1; then
    echo "$dest already has branches master and feature"
    exit 0
fi
if [ -e "$dest" ] && [ -n "$(ls -A "$dest")" ]; then
    echo "error: $dest exists and is not the example repository" >&2
    exit 1
fi

export GIT_AUTHOR_NAME="pbft-ci example" GIT_AUTHOR_EMAIL="example@pbft-ci.invalid"
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
# The user's own git configuration must not change the commits (signing,
# hooks, templates), so it is ignored.
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1

commit() {
    # Modes are forced, because the example files' modes on disk depend on
    # how this checkout was made.
    git -C "$dest" add --all --chmod=-x
    GIT_AUTHOR_DATE="$1" GIT_COMMITTER_DATE="$1" \
        git -C "$dest" commit --quiet --no-verify -m "$2"
}

mkdir -p "$dest"
git init --quiet --initial-branch=master --template= "$dest"
cp -R "$here/example-config/project/." "$dest/"
commit "2024-01-01T00:00:00Z" "Add calc and its test suite"

git -C "$dest" checkout --quiet -b feature
cp -R "$here/example-config/project-feature/." "$dest/"
commit "2024-01-02T00:00:00Z" "Make add faster"
git -C "$dest" checkout --quiet master

echo "master  $(git -C "$dest" rev-parse master)"
echo "feature $(git -C "$dest" rev-parse feature)"
