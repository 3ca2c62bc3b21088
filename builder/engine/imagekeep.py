"""How many of a repository's Dockerfile images a node's engine keeps.

Each Dockerfile build leaves its image on the engine, tagged
`pbft-ci-build/<repository>:<commit>` (builder/plan/compilebuild.py): a push that changes
the sources makes a new one, so a node that builds a repository for months would fill its
disk with one image per commit. After each Dockerfile build the node removes that
repository's tags beyond the newest `build.images_keep`, newest by when the engine last
tagged their image (a build, cached or not, tags it; a node that runs an image it built
before tags it again, `BuiltImages.get`); and at its start it does so for every repository,
so that the images of one no longer built, or left by a killed node, go too.

Several nodes may share one engine and build one repository at once, so a tag is removed
only if its image was last tagged more than `grace_s` ago (longer than a build takes from
its `docker build` to its container's start), and never with force: the engine refuses to
remove an image a container uses (a running build, a container started ahead for the next
one, `ready.py`), and that tag stays for a later pass. Removing a tag whose image has other
tags only untags it; removing its last tag deletes the image and the layers no other image
uses.

Nodes that share an engine and build one tag at once, each missing the layer cache, each make
an image of their own, and the tag names the last one tagged: the others are named by nothing
(`docker images --filter dangling=true`). A node remembers the images it built (`Orphans`)
and removes those no tag names after the same grace, and all such when it stops (those
another node still runs, the engine keeps).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from datetime import datetime, timezone

import docker
import docker.errors
import requests.exceptions

log = logging.getLogger(__name__)

# What every Dockerfile build's image is named under (builder/plan/compilebuild.py).
PREFIX = "pbft-ci-build"
# The images a node remembers having built and seen untagged at once (Orphans), at most.
ORPHANS_KEPT = 64
# Longer than any build takes from its image's tagging to its container's creation; an hour
# also lets an operator look at the image of a build that just ran.
GRACE_S = 3600.0
_NEVER = datetime.min.replace(tzinfo=timezone.utc)
_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


def tagged_at(attrs: dict) -> datetime:
    """When the engine last tagged the image (`Metadata.LastTagTime`), or made it (`Created`)
    if it never tagged it since; the zero time if it says neither."""
    times = [_parse((attrs.get("Metadata") or {}).get("LastTagTime")), _parse(attrs.get("Created"))]
    return max(times)


def _parse(text: object) -> datetime:
    # The engine writes nanoseconds, which datetime does not take: keep six digits.
    found = _TIMESTAMP.fullmatch(text) if isinstance(text, str) else None
    if found is None:
        return _NEVER
    seconds, fraction, zone = found.groups()
    zone = "+00:00" if zone == "Z" else zone
    try:
        return datetime.fromisoformat(f"{seconds}.{(fraction or '0')[:6]:0<6}{zone}")
    except ValueError:
        return _NEVER


def stale_tags(images: list[dict], repository: str, keep: int, now: datetime, grace_s: float) -> list[str]:
    """The tags of `repository` (`pbft-ci-build/<name>`) among `images` (the engine's
    attributes of each) to remove: all but the `keep` newest, none tagged within `grace_s`."""
    tags = sorted(
        ((tagged_at(attrs), tag) for attrs in images for tag in attrs.get("RepoTags") or ()
         if tag.rpartition(":")[0] == repository),
        reverse=True,
    )
    return [tag for when, tag in tags[keep:] if (now - when).total_seconds() > grace_s]


def prune_images(client: docker.DockerClient, repository: str, keep: int, *, grace_s: float | None = None,
                 now: datetime | None = None) -> list[str]:
    """Remove the stale tags of `repository` (`pbft-ci-build/<name>`) from the engine
    (`stale_tags`, within GRACE_S unless `grace_s` says); the tags removed. A tag the engine
    refuses to remove (its image in use) or that is gone already is skipped."""
    images = _listed(client, {"name": repository})
    now, grace_s = now or datetime.now(timezone.utc), GRACE_S if grace_s is None else grace_s
    stale = stale_tags(images, repository, keep, now, grace_s)
    return _remove_tags(client, stale, f"{repository} beyond the newest {keep}")


def prune_every_repository(client: docker.DockerClient, keep: int, *, grace_s: float | None = None) -> list[str]:
    """`prune_images` for each repository under PREFIX on the engine, each kept to its newest `keep`."""
    images = _listed(client, {"filters": {"reference": f"{PREFIX}/*"}})
    repositories = sorted({tag.rpartition(":")[0] for attrs in images for tag in attrs.get("RepoTags") or ()
                           if tag.startswith(f"{PREFIX}/")})
    now, grace_s = datetime.now(timezone.utc), GRACE_S if grace_s is None else grace_s
    stale = [tag for repository in repositories for tag in stale_tags(images, repository, keep, now, grace_s)]
    return _remove_tags(client, stale, f"{PREFIX}/* beyond the newest {keep} of each")


def _listed(client: docker.DockerClient, which: dict) -> list[dict]:
    try:
        return [image.attrs for image in client.images.list(**which)]
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        log.warning("could not list the images %s: %s", which, exc)
        return []


def _remove_tags(client: docker.DockerClient, stale: list[str], what: str) -> list[str]:
    removed = []
    for tag in stale:
        try:
            client.images.remove(tag, force=False, noprune=False)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            log.info("kept image %s: %s", tag, exc.explanation or exc)
            continue
        removed.append(tag)
    if removed:
        log.info("removed %d image(s) of %s: %s", len(removed), what, ", ".join(removed))
    return removed


class Orphans:
    """The images this node built lately, of which those no tag names (another node on the
    engine tagged its own build of the tag since) are removed once `GRACE_S` old, unforced.
    One a tag names is kept and looked at again on the next pass: its tag may move later."""

    def __init__(self, keep: int = ORPHANS_KEPT) -> None:
        self._keep = keep
        self._since: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, image_id: str) -> None:
        with self._lock:
            self._since[image_id] = time.monotonic()
            while len(self._since) > self._keep:
                self._since.popitem(last=False)  # forgotten: left on the engine, as before nodes pruned

    def remove(self, client: docker.DockerClient, *, grace_s: float | None = None) -> list[str]:
        """Remove the orphans older than `grace_s` (GRACE_S); the ids removed."""
        grace_s = GRACE_S if grace_s is None else grace_s
        with self._lock:
            due = [image_id for image_id, since in self._since.items() if time.monotonic() - since >= grace_s]
        removed = []
        for image_id in due:
            try:
                if client.images.get(image_id).tags:
                    continue
                client.images.remove(image_id, force=False, noprune=False)
                removed.append(image_id)
            except docker.errors.NotFound:
                pass
            except requests.exceptions.RequestException as exc:
                # The engine is away: the next pass tries them all again, and a stopping node
                # does not wait on it once per image.
                log.info("kept the images this node built: %s", exc)
                break
            except docker.errors.DockerException as exc:
                log.info("kept image %s: %s", image_id[:19], getattr(exc, "explanation", None) or exc)
                continue  # in use: tried again on the next pass
            with self._lock:
                self._since.pop(image_id, None)
        return removed
