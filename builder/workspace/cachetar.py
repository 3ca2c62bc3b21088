"""Checking a build cache tar before the node stores it or hands it back.

A cache is written by a build, so the node treats it as hostile data: it only
reads the tar's headers (never extracts, never runs anything from it) and
accepts it when every member lies inside the cache paths the spec declares.
Extraction happens later inside the next build's sandbox; what this check
prevents is a cache reaching outside its own paths there, e.g. replacing the
commit's sources in /workspace through a link.

Reasons are deterministic texts for the build log.
"""

import posixpath
import tarfile
from pathlib import Path

# Link chains longer than this are refused, as the kernel refuses ELOOP.
_MAX_LINK_HOPS = 40


class CacheRefused(Exception):
    """The tar is not a cache this node may keep or restore; the text says why."""


def check_cache_tar(path: Path, roots: tuple[str, ...], max_bytes: int) -> tuple[str, ...]:
    """Check the tar at `path`; return the roots it holds something of, in `roots` order.

    `roots` are absolute container paths ("/home/build/.cache/pip"). Members
    are names relative to "/" (what `tar -cf … -C / home/…` writes).
    Allowed: regular files, directories, symbolic and hard links whose
    targets resolve inside the roots. Refused: devices, fifos, pax headers
    (tools disagree on them, so the node could check one name while the
    build's tar extracts another), names outside the roots.
    """
    size = path.stat().st_size
    if size > max_bytes:
        raise CacheRefused(f"larger than {_megabytes(max_bytes)}")
    try:
        with tarfile.open(path, mode="r:") as archive:
            members = archive.getmembers()
            if archive.pax_headers:
                raise CacheRefused("pax headers are not accepted")
    except tarfile.TarError as exc:
        raise CacheRefused(f"not a readable tar ({exc})") from None
    symlinks = {}
    names = []
    for member in members:
        name = _member_path(member.name)
        if member.pax_headers:
            raise CacheRefused(f"pax headers are not accepted ({member.name!r})")
        if not _inside(name, roots):
            raise CacheRefused(f"member {member.name!r} is outside the cache paths")
        if member.issym():
            symlinks[name] = member.linkname
        elif member.islnk():
            if not _inside(_member_path(member.linkname), roots):
                raise CacheRefused(f"hard link {member.name!r} points outside the cache paths")
        elif not (member.isfile() or member.isdir()):
            raise CacheRefused(f"member {member.name!r} is not a file, directory or link")
        names.append(name)
    for name in names:
        # Every name and every link target, with the archive's own links
        # followed, must stay inside: a link to /workspace followed by a
        # member below that link would otherwise write into the sources.
        if not _inside(posixpath.join(_resolve(posixpath.dirname(name), symlinks), posixpath.basename(name)), roots):
            raise CacheRefused(f"member {name!r} lies behind a link out of the cache paths")
    for name, target in symlinks.items():
        start = target if target.startswith("/") else posixpath.join(posixpath.dirname(name), target)
        if not _inside(_resolve(start, symlinks), roots):
            raise CacheRefused(f"link {name!r} points outside the cache paths")
    return tuple(root for root in roots if any(_inside(name, (root,)) for name in names))


def _member_path(name: str) -> str:
    """A member name as the absolute path tar -C / writes it to; refused when it climbs."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise CacheRefused(f"member {name!r} contains '..'")
    return "/" + "/".join(parts)


def _inside(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root + "/") for root in roots)


def _resolve(path: str, symlinks: dict[str, str]) -> str:
    """`path` with '.', '..' and the archive's symbolic links resolved, as realpath would.

    Paths the archive has no link for are taken as directories: outside the
    archive, the build's container has only real directories above the roots.
    """
    resolved: list[str] = []
    pending = [part for part in path.split("/") if part]
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = "/" + "/".join(resolved + [part])
        target = symlinks.get(candidate)
        if target is None:
            resolved.append(part)
            continue
        hops += 1
        if hops > _MAX_LINK_HOPS:
            raise CacheRefused(f"too many levels of links at {candidate!r}")
        if target.startswith("/"):
            resolved = []
        pending = [part for part in target.split("/") if part] + pending
    return "/" + "/".join(resolved)


def _megabytes(size_bytes: int) -> str:
    return f"{size_bytes / (1024 * 1024):g} MB"
