"""End to end: what the client streams stays bounded, on the README's network.

- A 60 MiB artifact downloaded 20 times at once while 20 more callers read
  nothing: the client and every node grow by less than 100 MB of resident
  memory (sampled from /proc while the downloads run), and every download
  that completes has the agreed digest.
- 300 callers follow a running build's logs: those within the client's bound
  stream, the others get 503 with `Retry-After`, `/network` still sees every
  node, and a build submitted meanwhile gets its verdict.

The one repository is a git repository of the test's own: branch `big` makes
the artifact, `slow` runs long enough to be followed, `quick` passes at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import threading
import time
from pathlib import Path

import aiohttp
import yaml

from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.e2e.example_network import OWN_NETWORK_MARKS, example_copy, webhook

pytestmark = OWN_NETWORK_MARKS

MIB = 1024 * 1024
ARTIFACT_BYTES = 60 * MIB
RSS_GROWTH_LIMIT = 100 * MIB
FOLLOWERS = 300
MAX_FOLLOWS = 200  # the client's bound in this test's config: 100 followers are refused
SPECS = {
    "big": f"commands:\n  - head -c {ARTIFACT_BYTES} /dev/zero > big.bin\nartifacts:\n  - big.bin\n",
    "slow": "commands:\n  - echo started\n  - sleep 40\n  - echo finished\n",
    "quick": "commands:\n  - echo quick\n",
}


def transfer_repository(path: Path) -> None:
    path.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True)

    git("init", "-q", "-b", "main")
    (path / "README").write_text("builds of every size\n")
    git("add", ".")
    git("commit", "-q", "-m", "start")
    for branch, spec in SPECS.items():
        git("checkout", "-q", "-b", branch, "main")
        (path / ".pbft-ci.yml").write_text(spec)
        git("add", ".")
        git("commit", "-q", "-m", branch)


def configured(tmp_path: Path, **client_settings) -> Path:
    transfer_repository(tmp_path / "repo")
    config_path = example_copy(tmp_path, allow_byzantine=False)
    data = yaml.safe_load(config_path.read_text())
    data["repositories"] = [{"name": "transfers", "url": str(tmp_path / "repo")}]
    data["clients"][0].update(client_settings)
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return config_path


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def client_pid(config_path: Path) -> int:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.endswith(b"client/index.py") for arg in args) and str(config_path).encode() in args:
            return int(cmdline.parent.name)
    raise AssertionError("the client process was not found")


class PeakRss:
    """The highest resident size of each process, sampled every 50 ms while the block runs."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before = {name: rss_bytes(pid) for name, pid in pids.items()}
        self.peak = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_bytes(pid))

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def growth(self) -> dict[str, int]:
        return {name: self.peak[name] - self.before[name] for name in self.pids}


async def download(url: str, parallel: int, stalled: int) -> tuple[list[tuple[int, str | None]], list[int]]:
    """`parallel` callers that read the file through, hashing it, while `stalled` callers take
    the answer's head and then read nothing until the others are done."""
    release = asyncio.Event()
    stalled_statuses: list[int] = []
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:

        async def stall() -> None:
            async with session.get(url) as response:
                stalled_statuses.append(response.status)
                await release.wait()

        async def read_through() -> tuple[int, str | None]:
            async with session.get(url) as response:
                if response.status != 200:
                    return response.status, None
                sha256 = hashlib.sha256()
                async for chunk in response.content.iter_chunked(MIB):
                    sha256.update(chunk)
                return 200, "sha256:" + sha256.hexdigest()

        stalls = [asyncio.create_task(stall()) for _ in range(stalled)]
        while len(stalled_statuses) < stalled:
            await asyncio.sleep(0.05)
        results = await asyncio.gather(*(read_through() for _ in range(parallel)))
        release.set()
        await asyncio.gather(*stalls)
    return list(results), stalled_statuses


def test_a_large_artifact_downloaded_by_many_at_once_keeps_memory_bounded(network, tmp_path):
    config_path = configured(tmp_path, max_downloads=48, max_downloads_per_caller=48)
    node_pids = network(str(config_path))
    config = load_config(config_path)
    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        verdict = webhook(base_url, config, "big")
        assert verdict["status"] == "success" and verdict["artifacts"], verdict
        code, manifest = http_json("GET", f"{base_url}/builds/{verdict['build_id']}/artifacts")
        assert code == 200, manifest
        digest = manifest["artifacts"]["big.bin"]
        pids = {"client": client_pid(config_path), **{f"node {i}": pid for i, pid in node_pids.items()}}
        url = f"{base_url}/builds/{verdict['build_id']}/artifacts/big.bin"
        with PeakRss(pids) as rss:
            results, stalled = asyncio.run(download(url, parallel=20, stalled=20))
        growth = rss.growth()
        print("RSS growth (MB):", {name: round(grown / MIB, 1) for name, grown in growth.items()})
        assert stalled == [200] * 20
        assert [status for status, _ in results] == [200] * 20
        assert {got for _, got in results} == {digest}
        assert all(grown < RSS_GROWTH_LIMIT for grown in growth.values()), growth
        # The spool keeps nothing once the downloads are done.
        assert not any((Path(config.data_dir) / "client-client" / "spool").iterdir())


async def follow_many(base_url: str, build_id: str, count: int, nodes: int, check) -> tuple[list[int], list]:
    """Open `count` follows of the build's logs (spread over the nodes); once every one has its
    answer's head, run `check()` in a thread while they stay open."""
    statuses: list[int] = []
    refusals = []
    opened = asyncio.Event()
    release = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def follow(i: int) -> None:
            url = f"{base_url}/builds/{build_id}/log?node={i % nodes}&follow=1"
            async with session.get(url) as response:
                statuses.append(response.status)
                if response.status == 200:
                    assert (await response.content.readline()).startswith(b"event: node")
                else:
                    refusals.append((response.status, response.headers.get("Retry-After"), await response.json()))
                if len(statuses) == count:
                    opened.set()
                await release.wait()

        tasks = [asyncio.create_task(follow(i)) for i in range(count)]
        await opened.wait()
        try:
            await asyncio.to_thread(check)
        finally:
            release.set()
            await asyncio.gather(*tasks)
    return statuses, refusals


def test_hundreds_of_log_followers_starve_neither_the_network_view_nor_a_new_build(network, tmp_path):
    config_path = configured(tmp_path, max_follows=MAX_FOLLOWS, max_follows_per_caller=1000)
    network(str(config_path))
    config = load_config(config_path)
    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        verdicts = []
        slow = threading.Thread(target=lambda: verdicts.append(webhook(base_url, config, "slow")))
        slow.start()
        deadline = time.monotonic() + 30
        while not (answer := http_json("GET", f"{base_url}/builds?limit=1")[1])["builds"]:
            assert time.monotonic() < deadline, answer
            time.sleep(0.1)
        build_id = answer["builds"][0]["build_id"]
        seen = {}

        def meanwhile() -> None:
            seen["network"] = http_json("GET", f"{base_url}/network")
            seen["quick"] = webhook(base_url, config, "quick")

        statuses, refusals = asyncio.run(follow_many(base_url, build_id, FOLLOWERS, len(config.nodes), meanwhile))
        slow.join(timeout=120)

    assert statuses.count(200) == MAX_FOLLOWS and statuses.count(503) == FOLLOWERS - MAX_FOLLOWS
    status, retry_after, body = refusals[0]
    assert retry_after == "5" and f"{MAX_FOLLOWS} log follows at once" in body["error"]
    code, view = seen["network"]
    assert code == 200 and [node["reachable"] for node in view["nodes"]] == [True] * len(config.nodes), view
    assert seen["quick"]["status"] == "success", seen["quick"]
    assert verdicts and verdicts[0]["status"] == "success", verdicts
