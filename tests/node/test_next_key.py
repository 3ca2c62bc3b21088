"""A node loads the key that is to replace its own (keys/node-<id>.next.key, made on its host by
scripts/network.py join --next) beside it: its replica signs with it once a change of the
network document names its public half (pbft.epochs, Authenticator.sign_as)."""

from harness.network import write_network
from node.server import authenticator_for
from shared.cli import next_keys
from shared.config import load_config
from shared.config_files import node_next_key_file
from shared.crypto import generate_private_key, load_private_key, public_key_hex, save_private_key


def test_a_node_signs_with_its_next_key_when_told_and_only_if_it_holds_it(tmp_path):
    config = load_config(write_network(tmp_path))
    assert next_keys(config, 1) == ()
    next_key = generate_private_key()
    save_private_key(next_key, node_next_key_file(config.keys_dir, 1))
    auth = authenticator_for(config, load_private_key(config.node_key_path(1)), next_keys(config, 1))
    assert not auth.sign_as(public_key_hex(generate_private_key()))  # a key it does not hold
    assert auth.sign_as(public_key_hex(next_key))
    signed_payload = auth.sign({"a": 1})
    assert auth.verify_key(public_key_hex(next_key), {"a": 1}, signed_payload)
