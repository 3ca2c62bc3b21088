"""The network's deploy environments: what an `after:` action's `environment:` names, who may
approve a deploy to it and whether one must (runner/approvals.py, client/verbs/deploys.py).

They are part of the network document, so every client and runner reads the same rule, and
owners change it through the order like any other setting."""

from __future__ import annotations

from pbft.build import STEP_NAME
from shared.config_principals import ROLES
from shared.schema import Bool, Choice, Text, section, setting

MAX_ENVIRONMENTS = 32
# Plain, as an action's name is: it reaches records, logs, pages and URLs.
ENVIRONMENT_NAME = STEP_NAME


@section
class EnvironmentConfig:
    """A deploy environment: an action that names it deploys there."""

    name: str = setting(Text(ENVIRONMENT_NAME, what="an environment name",
                             refusal="must be 1 to 64 letters, digits, '.', '_' or '-'"),
                        doc="what an action's `environment:` names (production, staging)")
    # `trigger` at least: whoever may approve a deploy may also have asked for the build.
    approvers: str = setting(Choice(ROLES[1:], what="a role"), default="approve",
                             doc="the role on the build's repository a person needs to approve a deploy "
                                 "(trigger, operate, approve or admin)")
    required: bool = setting(Bool(), default=True,
                             doc="does an action wait for an approval? false: it runs at once, and its record "
                                 "names the environment")
