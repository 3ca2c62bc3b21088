"""A spec's `concurrency:`: builds of one group of a repository run one at a time on each node,
in the order the network ordered them (builder/queue.py GroupTurns).

    concurrency:
      group: deploy-lab          # builds of the repository whose spec names this group
      cancel_in_progress: false  # true: a newer build of the group cancels the older, through the order

Every node reads the group from the spec at the build's commit, so every node holds the same
builds back behind the same ones; none of it changes what a build produces.
"""

from __future__ import annotations

from pbft.build import STEP_NAME
from shared.schema import Bool, Text, section, setting

GROUP_NAME = STEP_NAME  # plain: it reaches the node's log and the build's page


@section
class ConcurrencySpec:
    """Builds that must not run at the same time on a node: a deploy to a lab, a shared account."""

    group: str = setting(Text(GROUP_NAME, what="a group name", refusal="must be 1 to 64 letters, digits, '.', '_' "
                                                                        "or '-'"),
                         doc="the group; builds of the repository that name it run one at a time on each node")
    cancel_in_progress: bool = setting(Bool(), default=False,
                                       doc="a newer build of the group cancels the older one still running, "
                                           "through the order")
