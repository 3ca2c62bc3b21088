"""The Docker engine a node runs its builds on: the environment's, or the one its configuration names.

Only the operator's configuration chooses the engine (shared/config.py,
`build.docker_host` or a node's own `docker_host`); nothing from a webhook or
a peer reaches it. Access to a Docker engine is root on its machine, so a
tcp:// engine is reached only with TLS both ways (the node checks the engine
against the configured CA, the engine checks the node's client certificate),
and ssh:// through the SDK's paramiko transport, which refuses a host whose
key is not in the node user's ~/.ssh/known_hosts and logs in with that
user's keys (or ~/.ssh/config's IdentityFile for the host). Not through the
`ssh` command (`use_ssh_client`): its connection cannot half-close, which
the end of a build's script needs (builder/engine/attach.py).
"""

import importlib.util

import docker
import docker.constants
import docker.errors
import docker.tls

from shared.config import DockerEngineConfig


def connect(engine: DockerEngineConfig) -> docker.DockerClient:
    """A client of `engine`; raises docker.errors.DockerException when it does not answer.

    The engine is asked for its API version here, so a wrong address, a
    refused certificate or a failed ssh login surfaces at once.
    """
    if not engine.host:
        return docker.from_env()
    tls = False
    if engine.tls is not None:
        tls = docker.tls.TLSConfig(
            client_cert=(str(engine.tls.cert_file), str(engine.tls.key_file)),
            ca_cert=str(engine.tls.ca_file),
            verify=True,
        )
    client = None
    try:
        # Any version will do until the engine is asked which it speaks, below;
        # a version given here means the constructor sends no request yet (over
        # ssh it does log in).
        client = docker.DockerClient(
            base_url=engine.host, tls=tls, version=docker.constants.MINIMUM_DOCKER_API_VERSION,
        )
        # Without this, requests lets REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE
        # replace the configured CA (the engine would then be trusted with
        # any certificate of a public CA), and HTTPS_PROXY route the API
        # elsewhere. The configuration alone says whom the node talks to.
        client.api.trust_env = False
        # What version="auto" does, once the session trusts only the configured CA.
        client.api._version = client.api.version(api_version=False)["ApiVersion"]
    except Exception as exc:
        if client is not None:
            client.close()
        # requests' and paramiko's own errors (a refused certificate, no route) are no DockerException.
        raise docker.errors.DockerException(f"{engine.host} did not answer: {exc}") from exc
    return client


def describe(engine: DockerEngineConfig) -> str:
    """The engine as a node's log names it."""
    return engine.host or "the environment's engine (DOCKER_HOST or the local socket)"


def missing_support(engine: DockerEngineConfig) -> str | None:
    """Why this machine cannot reach `engine` at all, or None.

    The SDK's ssh transport needs paramiko and says so only at the first
    build; a node says it at start.
    """
    if engine.host.startswith("ssh://") and importlib.util.find_spec("paramiko") is None:
        return (f"{engine.host} needs the paramiko package for the docker SDK's ssh support "
                "(.venv/bin/pip install paramiko)")
    return None
