"""A runner's configuration file beside a network's, as the runner's tests write it."""

import yaml

from harness.network import write_network


def runner_yaml(tmp_path, **settings) -> object:
    network = write_network(tmp_path, runners=("deployer",))
    (tmp_path / "deploy-token").write_text("s3cr3t-value\n")
    # Its key: keys/runner-deployer.key beside the network's YAML, where the network's keys_dir says.
    data = {"network": str(network), "name": "deployer", "client_url": "http://127.0.0.1:8080",
            "repositories": {"example": {"secrets": {"DEPLOY_TOKEN": "deploy-token"}}}, **settings}
    path = tmp_path / "runner.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
