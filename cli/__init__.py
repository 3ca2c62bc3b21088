"""`pbft-ci`: the command line of a pbft-ci client's HTTP API (docs/cli.md).

    pbft-ci run REPOSITORY BRANCH [--commit SHA] [--input NAME=VALUE ...] [--wait]
    pbft-ci status BUILD
    pbft-ci logs BUILD [--node N] [--follow]
    pbft-ci cancel BUILD
    pbft-ci rerun BUILD [--failed]
    pbft-ci approve APPROVAL
    pbft-ci verify FILE --config NETWORK.yaml [--commit SHA] [--result pass|fail] [--artifact F]
    pbft-ci lint [PATH ...] [--matrix]

It talks to the client at $PBFT_CI_URL (http://localhost:8080 otherwise) with the bearer
token in $PBFT_CI_TOKEN, if any; `--url` and `--token` say otherwise. The standard library
alone speaks HTTP here, so a build machine or a laptop needs none of the service's packages;
`lint` runs the nodes' own spec reading (scripts/lint.py), which needs PyYAML and nothing more;
`verify` checks evidence offline with the network's public keys (client/index.py verify), which
needs the service's signature packages (pycryptodome, securesystemslib).
"""
