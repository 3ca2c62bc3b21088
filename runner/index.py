"""Run the pbft-ci action runner: a spec's `after:` actions, once per certified verdict.

    .venv/bin/python runner/index.py --config runner.yaml [--once]

It needs the network's configuration (public keys, f, repositories), the
client's URL, and a Docker engine of its own (DOCKER_HOST or the local
socket). Secrets for actions are in its own configuration, never a node's.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, sys.path[0] is runner/; the repository root is what imports need.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
if __name__ == "__main__":
    from shared.project_python import use_project_python

    use_project_python()  # from a plain shell's python3: run again under .venv/bin/python

import argparse  # noqa: E402
import asyncio  # noqa: E402
import logging  # noqa: E402

import aiohttp  # noqa: E402
import docker  # noqa: E402

from runner.config import RunnerConfigError, load_runner_config  # noqa: E402
from runner.ledger import RunnerLedger  # noqa: E402
from runner.runner import ActionRunner, NotNow  # noqa: E402
from shared.cli import configure_logging  # noqa: E402
from shared.config import ConfigError  # noqa: E402


async def serve(config, once: bool) -> None:
    ledger = RunnerLedger(config.data_dir / "runner.sqlite")
    client = docker.from_env()
    try:
        async with aiohttp.ClientSession() as session:
            runner = ActionRunner(config, session, ledger, client)
            try:
                if once:
                    await runner.start()
                    await runner.poll()
                else:
                    await runner.run_forever()
            finally:
                await asyncio.to_thread(runner.close)
    finally:
        client.close()
        ledger.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=".venv/bin/python runner/index.py",
        description="Run the actions after the verdict (`after:` in .pbft-ci.yml) once per certified verdict:"
        " each build's certificate is checked with the network's public keys, the spec against its certified"
        " sha256, the artifacts against their certified digests, before anything runs.",
    )
    parser.add_argument("--config", required=True, help="the runner's YAML (runner/config.py documents it)")
    parser.add_argument("--once", action="store_true", help="examine the builds with a verdict once, then exit")
    parser.add_argument("--log-file", help="log here instead of <data_dir>/runner.log")
    args = parser.parse_args(argv)
    try:
        config = load_runner_config(Path(args.config))
    except (RunnerConfigError, ConfigError) as error:
        print(f"runner: {error}", file=sys.stderr)
        return 2
    configure_logging(Path(args.log_file) if args.log_file else config.data_dir / "runner.log")
    logging.getLogger(__name__).info("action runner starting with %s", config.path)
    try:
        asyncio.run(serve(config, args.once))
    except KeyboardInterrupt:
        pass
    except NotNow as error:  # --once only: the loop waits and tries again
        print(f"runner: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
