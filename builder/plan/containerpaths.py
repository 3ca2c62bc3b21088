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
# Where, read-only, a spec build's container mounts its inbox (the gate copies the checkout
# from it, builder/engine/gate.py; empty once the script runs, and an empty tmpfs on an engine
# elsewhere), and a pipeline's copying container the build's checkout (builder/engine/sources.py).
SOURCES_DIR = "/.pbft-ci/src"
