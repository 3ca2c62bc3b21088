"""Where things are inside a build's containers: the same on every node, so a build sees one layout."""

WORKSPACE_DIR = "/workspace"
# The build user's home in every container (builder/engine/identity.py makes its passwd entry).
HOME_DIR = "/home/build"
# The tmpfs a build with caches writes its new cache to (builder/workspace/caches.py).
OUT_DIR = "/pbft-cache/out"
OUT_TAR = f"{OUT_DIR}/cache.tar"
# The node uploads the cache a build gets here, into the same tmpfs the build
# later writes its new cache to; the wrapper deletes it once extracted.
RESTORE_TAR = f"{OUT_DIR}/restore.tar"
# Where the container that copies a large checkout onto the workspace mounts it, read-only, on
# an engine of this host (builder/engine/sources.py); no build's own container mounts anything here.
SOURCES_DIR = "/.pbft-ci/src"
