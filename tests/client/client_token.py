"""The client's bearer token, and a fake network whose client requires it."""

import dataclasses

from tests.client.forge_deliveries import REPOSITORIES

TOKEN = "c0ffee" * 8  # 48 characters
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def with_client_settings(cluster, **settings):
    client = dataclasses.replace(cluster.config.clients[0], **settings)
    cluster.config = dataclasses.replace(cluster.config, clients=(client,), repositories=REPOSITORIES)
    return cluster
