"""Writing variations of a network config file for the configuration tests."""

import yaml


def edit(path, change):
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))
    return path
