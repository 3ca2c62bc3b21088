"""Reloading the configuration while a client or node runs (SIGHUP).

A running process re-reads the file it started with, through the loader it
started with, and swaps in what may change while it runs. In a network with
owners that is the process's own settings alone (its tokens and secret files,
a client's limits): the network document changes only through the order
(shared/networkdoc.py), never at each process's own moment. Without owners it
is also the repositories
(their URLs, secrets, forge settings, statuses, notifications, schedules,
build secrets), the owner's in-toto layout, and a client's own access
settings (its token, body limits, public URL, the action runners whose reports it
takes). Everything else is what the
other processes of the network and the stored protocol state rely on: the
nodes and clients, their addresses and keys, n and f, the protocol and build
settings, the folders and TLS. A file that changes any of that is refused as
a whole, as is a file that does not load, and the running configuration stays.

A reload never stops the process from answering. The file, and every file read
with it, is read within a bound (shared.boundedread: a FIFO or a device put in
its place is refused, so is a file over MAX_CONFIG_BYTES), and the whole load
runs in a thread of its own, within RELOAD_TIMEOUT_S; the event loop goes on
serving meanwhile. SIGHUPs that arrive while a reload runs make one more reload
after it, however many they are.

`live_changes` compares two configurations; `LiveConfig` holds the one a
process runs with and replaces it; `reload_on_sighup` is the cleanup context
that makes SIGHUP call `LiveConfig.request_reload`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import signal
import threading
from dataclasses import fields, is_dataclass
from typing import Any, AsyncIterator, Callable, TypeVar

from aiohttp import web

from shared.config import ConfigError, NetworkConfig, RepositoryConfig
from shared.networkdoc import agreed, with_document

log = logging.getLogger(__name__)

# What may change live, by where it sits in the file. Everything else is fixed.
LIVE_NETWORK_KEYS = frozenset({"repositories", "in_toto_layout"})
LIVE_CLIENT_KEYS = frozenset({
    "token", "plain_without_token", "max_body_bytes", "body_timeout_s", "public_url", "public_badges", "runners",
})
_LIVE_KEYS_OF = {"NetworkConfig": LIVE_NETWORK_KEYS | {"path"}, "ClientConfig": LIVE_CLIENT_KEYS}
# Fields whose YAML key has another name, and fields compared as one key, not field by field.
_YAML_NAMES = {"docker": "docker_host", "from_address": "from"}
_WHOLE = frozenset({"docker", "smtp", "tls"})
# Derived from other keys (a node's scheme from `tls:`, the network document's digest from the
# network settings), which name the difference already.
_DERIVED = frozenset({"scheme", "digest"})
# A summary names at most this many repositories per kind of change.
MAX_NAMED = 20
# The longest a reload may take to load and check the file; past it the reload is refused and
# the running configuration stays. The example network's file loads in a few milliseconds, one
# of MAX_CONFIG_BYTES (shared.boundedread) in about 1.2 s on the project's machines.
RELOAD_TIMEOUT_S = 5.0

T = TypeVar("T")


def live_changes(old: NetworkConfig, new: NetworkConfig) -> tuple[list[str], str]:
    """The keys that differ between `old` and `new` but cannot change without a restart
    (`nodes[2].port`, `protocol.checkpoint_interval`), and a one-line summary of what may
    change live and does. Both name keys only, never values: some of them are secrets."""
    return _differences(old, new, ""), _summary(old, new)


def _differences(old: Any, new: Any, where: str) -> list[str]:
    if old == new:
        return []
    if is_dataclass(old) and type(old) is type(new):
        live = _LIVE_KEYS_OF.get(type(old).__name__, frozenset())
        found = []
        for item in fields(old):
            if item.name in live or item.name in _DERIVED:
                continue
            key = f"{where}.{_YAML_NAMES.get(item.name, item.name)}" if where else _YAML_NAMES.get(item.name, item.name)
            before, after = getattr(old, item.name), getattr(new, item.name)
            found += [key] if item.name in _WHOLE and before != after else _differences(before, after, key)
        return found
    if isinstance(old, tuple) and isinstance(new, tuple) and len(old) == len(new) and all(map(is_dataclass, old)):
        return [key for index, (a, b) in enumerate(zip(old, new)) for key in _differences(a, b, f"{where}[{index}]")]
    # A list that grew or shrank (membership), or a plain value.
    return [where]


def _summary(old: NetworkConfig, new: NetworkConfig) -> str:
    before = {repo.name: repo for repo in old.repositories}
    after = {repo.name: repo for repo in new.repositories}
    added = [name for name in after if name not in before]
    removed = [name for name in before if name not in after]
    changed = [f"{name} ({', '.join(_changed_keys(before[name], after[name]))})"
               for name in after if name in before and before[name] != after[name]]
    repositories = [f"{what}: {_named(names)}" for what, names in
                    (("added", added), ("removed", removed), ("changed", changed)) if names]
    parts = [f"repositories {'; '.join(repositories)}"] if repositories else []
    others = ["in_toto_layout"] if old.in_toto_layout != new.in_toto_layout else []
    for index, (a, b) in enumerate(zip(old.clients, new.clients)):
        others += [f"clients[{index}].{key}" for key in sorted(LIVE_CLIENT_KEYS) if getattr(a, key) != getattr(b, key)]
    if others:
        parts.append(f"changed: {', '.join(others)}")
    return "; ".join(parts) or "nothing changed"


def _changed_keys(old: RepositoryConfig, new: RepositoryConfig) -> list[str]:
    return [item.name for item in fields(old) if getattr(old, item.name) != getattr(new, item.name)]


def _named(names: list[str]) -> str:
    more = f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
    return ", ".join(names[:MAX_NAMED]) + more


class LiveConfig:
    """The configuration a process runs with now. `reload` replaces it with the file's, if that
    loads and changes only what may change live, and tells the listeners; readers that must
    follow a reload read `current` each time instead of keeping a configuration of their own."""

    def __init__(self, config: NetworkConfig, load: Callable[[], NetworkConfig], who: str,
                 count: Callable[[str], None] = lambda outcome: None, *, reads_secrets: bool = True) -> None:
        """`load` reads the file as the process read it at its start (raising ConfigError);
        `who` starts each log line (`client ci`, `node=2`); `count(outcome)` is told
        "applied" or "refused" after each reload (metrics); `reads_secrets`: whether `load`
        reads the client's secrets (a client's does, a node's not)."""
        self.current = config
        self.reads_secrets = reads_secrets
        # Whether the network document changes through the order alone: in a network with
        # owners, and in one the order changed (`adopt`). A reload then keeps it.
        self.ordered = config.owners is not None
        self._load = load
        self.who = who
        self._count = count
        self._listeners: list[Callable[[NetworkConfig], None]] = []
        # One reload at a time; what SIGHUP asked for meanwhile (request_reload).
        self._lock = asyncio.Lock()
        self._requested: asyncio.Task | None = None
        self._again = False
        # The last load's thread, as a future: it may outlive its reload's time limit.
        self._loading: concurrent.futures.Future | None = None

    def on_reload(self, listener: Callable[[NetworkConfig], None]) -> None:
        """Call `listener(new)` after each reload that applies, once `current` is the new one.
        A listener only swaps in what it derives from the configuration: it must not fail,
        or the process would run half on the old configuration and half on the new."""
        self._listeners.append(listener)

    def request_reload(self) -> None:
        """Reload in a task of the running loop (what SIGHUP does). Asked again while a reload
        runs, it reloads once more after that one, however often it was asked: the file is
        read again then, and a burst of signals never queues a reload each."""
        if self._requested is not None and not self._requested.done():
            self._again = True
            return
        self._requested = asyncio.get_running_loop().create_task(self._reload_while_asked(),
                                                                 name=f"reload {self.who}")

    async def close(self) -> None:
        """Stop a requested reload (the application stops); a load running in its thread
        finishes there unheeded."""
        if self._requested is not None:
            self._requested.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._requested

    async def _reload_while_asked(self) -> None:
        await self.reload()
        while self._again:
            self._again = False
            await self.reload()

    async def reload(self) -> str:
        """Read the file again and apply it, or refuse it; returns "applied" or "refused"."""
        async with self._lock:
            try:
                new, fixed, summary = await self._load_in_thread()
            except ConfigError as error:
                # The loader's lines name the file and each key; one log line for the whole refusal.
                log.warning("%s reload refused, the running configuration stays: %s",
                            self.who, "; ".join(str(error).splitlines()))
                return self._outcome("refused")
            except Exception:  # not a refusal the loader words, but a bug: its traceback, and nothing applied
                log.exception("%s reload failed, the running configuration stays", self.who)
                return self._outcome("refused")
            if fixed:
                log.warning("%s reload refused: %s cannot change without a restart; the running configuration stays",
                            self.who, ", ".join(fixed))
                return self._outcome("refused")
            self.current = new
            for listener in self._listeners:
                listener(new)
            log.info("%s reload: %s", self.who, summary)
            return self._outcome("applied")

    def adopt(self, config: NetworkConfig, why: str) -> None:
        """Run `config` from now on, which the order made (a change of the network document with
        this process's own settings: shared/networkdoc.py), and tell the listeners as a reload does."""
        self.current, self.ordered = config, True
        for listener in self._listeners:
            listener(config)
        log.warning("%s runs network configuration %s: %s", self.who, config.digest[:16], why)

    async def _load_in_thread(self) -> tuple[NetworkConfig, list[str], str]:
        """The file's configuration and how it differs from the running one (`live_changes`),
        worked out off the event loop; ConfigError when it does not load within RELOAD_TIMEOUT_S."""
        path, running, ordered = self.current.path, self.current, self.ordered
        if self._loading is not None and not self._loading.done():
            # One thread at a time reads the file for this process: a stuck one is not joined by more.
            raise ConfigError(path, [f"the load of an earlier reload, which ran past {RELOAD_TIMEOUT_S:g} s, "
                                     "has not ended yet"])

        def load() -> tuple[NetworkConfig, list[str], str]:
            new = self._load()
            if not ordered:
                return (new, *live_changes(running, new))
            # The network document changes through the order alone (scripts/network.py): the
            # file gives this process's own settings only.
            kept = with_document(new, agreed(running), read_secrets=self.reads_secrets)
            fixed, summary = live_changes(running, kept)
            if new.digest != running.digest:
                summary += (f"; the file's network settings ({new.digest[:16]}) are not the network's "
                            f"({running.digest[:16]}), which change through the order only: scripts/network.py")
            return kept, fixed, summary

        self._loading = _in_thread_of_its_own(load, f"reload {self.who}")
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self._loading), RELOAD_TIMEOUT_S)
        except TimeoutError:
            raise ConfigError(path, [f"not loaded within {RELOAD_TIMEOUT_S:g} s (a file this slow to read or "
                                     "check is refused)"]) from None

    def _outcome(self, outcome: str) -> str:
        self._count(outcome)
        return outcome


def _in_thread_of_its_own(work: Callable[[], T], name: str) -> concurrent.futures.Future[T]:
    """`work()` in a daemon thread. Not in the loop's default executor: a read that never ends
    (a file on a hung network mount) would hold one of its workers for ever, and the process's
    exit, which waits for them."""
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        if not done.set_running_or_notify_cancel():
            return
        try:
            done.set_result(work())
        except Exception as error:  # handed to the awaiting reload, which says what it was
            done.set_exception(error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return done


# The LiveConfigs of the running applications, by the event loop they run on. One SIGHUP
# handler per loop reloads them all: a process runs one client or one node, but tests run
# several nodes in one process, and a loop keeps one handler per signal.
_reloadable: dict[asyncio.AbstractEventLoop, list[LiveConfig]] = {}


def _reload_all(lives: list[LiveConfig]) -> None:
    for live in list(lives):
        live.request_reload()


def reload_on_sighup(live: LiveConfig) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx in which SIGHUP reloads `live`, on the running loop (as aiohttp's
    run_app handles SIGINT and SIGTERM)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        lives = _reloadable.setdefault(loop, [])
        if not lives:
            try:
                loop.add_signal_handler(signal.SIGHUP, _reload_all, lives)
            except (ValueError, RuntimeError) as error:  # a loop outside the main thread (some tests)
                log.info("%s: no reload on SIGHUP here: %s", live.who, error)
                del _reloadable[loop]
                yield
                return
        lives.append(live)
        try:
            yield
        finally:
            lives.remove(live)
            if not lives:
                del _reloadable[loop]
                loop.remove_signal_handler(signal.SIGHUP)
            await live.close()

    return ctx
