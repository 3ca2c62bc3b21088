"""Signed replies and a client service whose links to the nodes are in memory: the reply
collector's and the verdict's tests build on them."""

from dataclasses import replace

from client.records import BuildRecords
from client.service import ClientService
from pbft.attestation import Signed
from pbft.build import Operation, Result
from pbft.messages import Reply
from shared.config import ClientConfig, NetworkConfig, NodeConfig, ProtocolConfig, RepositoryConfig
from shared.crypto import Ed25519Authenticator, generate_private_key, public_key_hex
from tests.client.fake_nodes import CLIENT, F, N

T = 1_700_000_000_000_000
GOOD = Result("success", 0, "a" * 40)


def reply(sender: int, result: Result = GOOD, *, timestamp: int = T, client: str = CLIENT, view: int = 0) -> Reply:
    return Reply(view=view, timestamp=timestamp, client=client, sender=sender, result=result)


class MemoryLinks:
    """Links that record what the service sends and never touch a network."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []
        self.down: set[int] = set()  # nodes whose link is down: sends to them fail

    def start(self, on_frame, on_connect, on_down) -> None:
        pass

    async def close(self) -> None:
        pass

    async def send(self, node_id: int, text: str) -> bool:
        if node_id in self.down:
            return False
        self.sent.append((node_id, text))
        return True

    async def broadcast(self, text: str) -> list[int]:
        return [node_id for node_id in range(N) if await self.send(node_id, text)]


def service_with_memory_links(tmp_path, *, settle_s: float = 0.0):
    """A client service over in-memory links. `settle_s`: its client_settle_s (none by default:
    the verdict is the f+1, as the tests of counting replies expect)."""
    node_keys = [generate_private_key() for _ in range(N)]
    client_key = generate_private_key()
    config = NetworkConfig(
        path=tmp_path / "network.yaml",
        f=F,
        nodes=tuple(NodeConfig(i, "127.0.0.1", 1, public_key_hex(key)) for i, key in enumerate(node_keys)),
        clients=(ClientConfig(CLIENT, "127.0.0.1", 1, public_key_hex(client_key)),),
        repositories=(RepositoryConfig("example", "/nonexistent"),),
        protocol=ProtocolConfig(client_retransmit_s=60.0, client_deadline_s=60.0, client_settle_s=settle_s),
        data_dir=tmp_path,
    )
    public = {i: key.public_key() for i, key in enumerate(node_keys)}
    auth = Ed25519Authenticator(client_key, public, {})
    node_auths = [Ed25519Authenticator(key, public, {}) for key in node_keys]
    links = MemoryLinks()
    records = BuildRecords(tmp_path / "builds.sqlite")
    return ClientService(config, CLIENT, auth, records, links), links, node_auths, records


def attested(message: Reply, auth: Ed25519Authenticator) -> Reply:
    """`message` with the attestation signatures a replica adds (for the request service_with_memory_links's tests send)."""
    attestation = Signed(Operation("example", "main"), message.result)
    return replace(message, statement_sig=auth.sign_bytes(attestation.pae()),
                   link_sig=auth.sign_bytes(attestation.link_bytes()))
