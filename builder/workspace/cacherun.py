"""One build's use of its caches: which it restores, where it saves, and under which key
(builder/workspace/caches.py keeps them, scoped by who may read them)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from builder.plan.cachemounts import CacheMounts
from builder.plan.civars import BuildFacts
from builder.plan.spec import CacheSpec
from builder.workspace.caches import (
    CacheLookup,
    CacheScope,
    CacheStore,
    CacheWriter,
    cache_key,
    cache_scopes,
    wrapper_script,
)
from builder.workspace.log import BuildLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheRun:
    """What a build with caches needs around its containers: what to restore and save where,
    under which key."""

    key: str
    roots: tuple[str, ...]  # the spec's cache paths inside the container
    mounts: CacheMounts
    scope: CacheScope  # where the build's cache is kept
    writer: CacheWriter
    restore_paths: tuple[str, ...]  # what the restored cache holds of `roots`; () with none
    save_paths: tuple[str, ...]  # what the build saves; () when the restored cache is kept as it is

    @property
    def script(self) -> str:
        """A one-script build's command: the wrapper that restores, runs the build's script, and saves."""
        return wrapper_script(self.restore_paths, self.save_paths, self.mounts.size_mb)

    @property
    def restore_script(self) -> str:
        """A pipeline's container before its first step (builder/engine/steps.py), with `true` as
        the script; "" when nothing is restored."""
        return wrapper_script(self.restore_paths, (), self.mounts.size_mb) if self.restore_paths else ""

    @property
    def save_script(self) -> str:
        """A pipeline's container after its last step; "" when nothing is saved."""
        return wrapper_script((), self.save_paths, self.mounts.size_mb) if self.save_paths else ""


def prepare_cache(store: CacheStore, facts: BuildFacts, image_id: str, cache: CacheSpec, workspace: Path,
                  output: BuildLog) -> CacheRun:
    """The cache build `facts` restores (the newest its scopes hold for its key), and where it
    saves its own; `workspace` holds the key files."""
    name, build_id = facts.repository, facts.build_id
    roots = cache.container_paths()
    key = cache_key(name, image_id, cache, workspace)
    scopes = cache_scopes(facts.event, facts.branch, facts.pull_ref)
    try:
        restore = store.restore(CacheLookup(name, scopes, key, roots), build_id, workspace, output.node_line)
        if restore is not None:
            log.info("build %s restores cache key %s of %s, %s", build_id, key[:12], restore.scope, restore.writer)
    except OSError as exc:
        # The node's own disk, not the build: go on without a cache.
        log.warning("cache restore failed for build %s", build_id, exc_info=True)
        output.node_line(f"cache restore failed on this node ({type(exc).__name__}); none restored")
        restore = None
    # Like GitHub Actions, a cache restored for its own key is kept as it
    # is: its key files have not changed, and saving it again would cost
    # every warm build what the cold one paid to save (about 2 s for
    # 20,000 files; `scripts/bench.py caches`).
    keep_as_is = restore is not None and restore.exact
    mounts = CacheMounts(
        restore_tar=restore.tar if restore else None,
        size_mb=store.size_mb,
        save_to=None if keep_as_is else store.incoming_path(name, scopes[0], build_id),
    )
    return CacheRun(key, roots, mounts, scopes[0], CacheWriter(build_id, facts.commit, facts.event),
                    restore.paths if restore else (), () if keep_as_is else roots)


def save_cache(store: CacheStore, name: str, run: CacheRun, outcome, output: BuildLog) -> None:
    """Store the cache a successful build left; a cache that cannot be kept never changes the verdict."""
    if run.mounts.save_to is None:
        output.note(f"cache not saved: key {run.key[:12]} was restored and is kept as it is")
    elif outcome.exit_code != 0:
        output.note("cache not saved: the build did not succeed")
    elif not outcome.cache_copied:
        output.note(f"cache not saved: {outcome.cache_problem}")
    else:
        try:
            output.note(store.save(name, run.scope, run.key, run.mounts.save_to, run.roots, run.writer))
        except OSError as exc:
            log.warning("cache save failed for repository %r", name, exc_info=True)
            output.note(f"cache not saved: could not store it on this node ({type(exc).__name__})")


def release_cache(store: CacheStore, build_id: str, run: CacheRun) -> None:
    """Let go of what the build held: its restore link and a save it did not finish."""
    store.release(build_id)
    if run.mounts.save_to is not None:
        run.mounts.save_to.unlink(missing_ok=True)
