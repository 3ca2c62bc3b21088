"""Where builds run. `Engine` is what the executor and a build's run (builder/run.py) use of
it; `DockerEngine` (host.py) is the one engine there is, and the only code that speaks the
Docker SDK is in this package. A second engine (another container runtime, a remote pool)
implements this protocol and runs the same jobs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from builder.engine.container import ContainerJob
    from builder.engine.gate import GatedContainer
    from builder.engine.sandbox import ContainerOutcome, Hooks, RunAs
    from builder.engine.steps import StepsJob, StepsOutcome
    from shared.config_build import BuildConfig


class Engine(Protocol):
    closing: bool  # set once the node stops: a build it fails is not run again

    def labels(self) -> dict[str, str]:
        """The labels of everything this engine makes for the node."""

    def image(self, name: str, digests: list, limits: BuildConfig) -> str:
        """The id of image `name`, pulled if need be from a registry `limits` allow; its registry
        digest added to `digests`."""

    def build_image(
        self, context: Path, tag: str, limits: BuildConfig, timeout_s: float, commit: str = "",
    ) -> tuple[str, str, tuple[str, ...]]:
        """A Dockerfile's image built offline from `context` (the tree of `commit`) under the
        order's `limits`: its build output, its id and the command it runs (ENTRYPOINT and CMD)."""

    def network_name(self, peer_hosts: tuple[str, ...] = ()) -> str:
        """The build network networked builds join (outside only: not this host, not its peers)."""

    def take_ready(
        self, image_id: str, user: str, limits: BuildConfig, command: tuple[str, ...] | None = None,
    ) -> GatedContainer | None:
        """A container started before its build came, for this image, user and limits, if one
        waits; with `command`, a Dockerfile build's that will run it."""

    def prepare_ready(
        self, image_id: str, user: str, limits: BuildConfig, command: tuple[str, ...] | None = None,
    ) -> None:
        """Start the next such container, in the background."""

    def run(self, job: ContainerJob, who: RunAs, hooks: Hooks, ready: GatedContainer | None) -> ContainerOutcome:
        """One build container to its end: start, fill, run, wait, copy out, remove."""

    def run_steps(self, job: StepsJob, who: RunAs, hooks: Hooks) -> StepsOutcome:
        """A pipeline's services and steps to their end, each step a container on one workspace."""

    def answers(self, within_s: float) -> bool:
        """Whether the engine answers again within `within_s` (after it went away under a build)."""

    def remove_leftovers(self) -> int:
        """Remove what a killed earlier process of this node left; how many containers and volumes."""

    def close(self) -> None:
        """Kill this node's running builds and let go of the engine."""
