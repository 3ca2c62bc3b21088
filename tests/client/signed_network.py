"""A network config written with real Ed25519 keys, and requests, replies and certificates signed
with them as the client and the nodes would: what the certificate, attestation and provenance
tests tamper with."""

import sys
from pathlib import Path

from client.index import main
from harness.network import write_network
from pbft.build import Operation, Result
from pbft.encoding import canonical
from pbft.messages import Reply, Request, encode, signed
from shared.config import load_config
from shared.crypto import load_private_key, sign_bytes

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
TIMESTAMP = 1_700_000_000_000_000
SUCCESS = Result("success", 0, "0123456789abcdef" * 2 + "01234567")


class Network:
    """A written network config and the private keys of its principals."""

    def __init__(self, root: Path, **kwargs) -> None:
        self.config_path = write_network(root, **kwargs)
        self.config = load_config(self.config_path)
        self.keys = root / "keys"
        self.root = root

    def signer(self, name: str):
        key = load_private_key(self.keys / f"{name}.key")
        return lambda payload: sign_bytes(key, canonical(payload))

    def request(self, *, timestamp: int = TIMESTAMP, branch: str = "main") -> Request:
        return signed(Request("client", timestamp, Operation("example", branch)), self.signer("client-client"))

    def reply(
        self, sender: int, *, result: Result = SUCCESS, timestamp: int = TIMESTAMP, client: str = "client",
        key_of: int | None = None, builders: tuple[int, ...] = (),
    ) -> Reply:
        signer = self.signer(f"node-{sender if key_of is None else key_of}")
        return signed(Reply(0, timestamp, client, sender, result, builders=builders), signer)

    def certificate(self, replies: list[Reply], *, request: Request | None = None, result: Result = SUCCESS) -> dict:
        return {
            "version": 1,
            "request": encode(request or self.request()),
            "replies": [encode(reply) for reply in replies],
            "result": result.agreed(),
        }

    def write(self, data: dict | bytes, name: str = "cert.json") -> Path:
        path = self.root / name
        path.write_bytes(data if isinstance(data, bytes) else canonical(data))
        return path

    def verify(self, path: Path) -> int:
        return main(["verify", str(path), "--config", str(self.config_path)])


IN_TOTO_VERIFY = Path(sys.executable).parent / "in-toto-verify"
