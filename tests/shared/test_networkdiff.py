"""What a change of the network document changes, as owners read it before they sign
(shared/networkdiff.py): members one by one with their full keys, settings with both values,
and nothing a change file holds printed as a control sequence."""

from shared.networkdiff import differences, printable

KEYS = {name: name[0] * 64 for name in ("ada", "bob", "cy")}
BEFORE = {
    "f": 1,
    "nodes": [{"id": node, "host": f"10.0.0.1{node}", "port": 9000, "public_key": str(node) * 64}
              for node in range(4)],
    "owners": {"threshold": 2, "keys": [{"name": "ada", "public_key": KEYS["ada"]},
                                        {"name": "bob", "public_key": KEYS["bob"]}]},
    "repositories": [{"name": "example", "url": "https://git.example.org/example.git"}],
    "build": {"memory_mb": 512},
}


def edited(**sections) -> dict:
    return {**BEFORE, **sections}


def test_members_are_listed_one_by_one_with_their_full_keys():
    nodes = [dict(node) for node in BEFORE["nodes"] if node["id"] != 2]
    nodes[1]["public_key"] = "f" * 64
    nodes.append({"id": 10, "host": "fd00::14", "port": 9000, "public_key": "e" * 64})
    owners = {"threshold": 3, "keys": [*BEFORE["owners"]["keys"], {"name": "cy", "public_key": KEYS["cy"]}]}
    assert differences(BEFORE, edited(nodes=nodes, owners=owners)) == [
        f"nodes: changes node 1: public_key {'1' * 64} -> {'f' * 64}",
        "nodes: removes node 2 at 10.0.0.12:9000",
        f"nodes: adds node 10 at [fd00::14]:9000 with public key {'e' * 64}",
        f"owners: adds cy with public key {KEYS['cy']}",
        "owners: threshold 2 -> 3",
    ]


def test_settings_show_both_values_and_a_default_left_out():
    repositories = [{"name": "example", "url": "https://git.example.org/moved.git", "builders": "f+1"},
                    {"name": "newrepo", "url": "/srv/git/newrepo"}]
    after = {key: value for key, value in edited(repositories=repositories, f=2).items() if key != "build"}
    assert differences(BEFORE, after) == [
        "build: memory_mb 512 -> (default)",
        "f: 1 -> 2",
        "repositories: changes example: builders (default) -> f+1; url https://git.example.org/example.git -> "
        "https://git.example.org/moved.git",
        "repositories: adds newrepo (url /srv/git/newrepo)",
    ]
    assert differences(BEFORE, BEFORE) == []


def test_nothing_a_change_file_holds_reaches_the_terminal_as_a_control_sequence():
    hostile = {"name": "x\x1b]0;owned\x07", "url": "a b\u202e"}
    lines = differences(BEFORE, edited(repositories=[*BEFORE["repositories"], hostile], **{"k\x1b[2J": 1}))
    assert lines == ['"k\\u001b[2J": (default) -> 1',
                     'repositories: adds "x\\u001b]0;owned\\u0007" (url "a b\\u202e")']
    assert all(line.isprintable() for line in lines)
    # Lists that are not members by their names are compared whole, not read as members.
    assert differences({"nodes": [1]}, {"nodes": [{"id": 1}, {"id": 1}]}) == ['nodes: [1] -> [{"id": 1}, {"id": 1}]']
    assert printable("refused\x1b[31m: é") == "refused\\u001b[31m: é"
