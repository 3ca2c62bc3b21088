"""Webhook bodies: every bad body is a WebhookError with a 4xx, never anything else."""

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.intake import MAX_BODY_BYTES, WebhookError, parse_webhook
from pbft.build import Operation
from pbft.wire import decode_struct, encode
from shared.refs import SHELL_METACHARACTERS

REPOSITORIES = ("example", "other")
JSON = "application/json"
SHA1 = "0123456789abcdef0123456789abcdef01234567"


def parse(body, content_type=JSON):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return parse_webhook(body, content_type, REPOSITORIES)


@pytest.mark.parametrize(
    "body, content_type, expected",
    [
        ({"branch": "master"}, JSON, Operation("example", "master")),
        ({"branch": "feature/x"}, "application/json; charset=utf-8", Operation("example", "feature/x")),
        # curl -d sends a form content type with a JSON body.
        ({"branch": "master"}, "application/x-www-form-urlencoded", Operation("example", "master")),
        ({"branch": "master"}, "", Operation("example", "master")),
        ({"branch": "dev", "repository": "other"}, JSON, Operation("other", "dev")),
        ({"branch": "dev", "commit": SHA1}, JSON, Operation("example", "dev", SHA1)),
        ({"branch": "dev", "commit": None}, JSON, Operation("example", "dev")),
        # A manual run's inputs, in the order given; a boolean or a number as the spec reads one.
        ({"branch": "dev", "inputs": {"target": "prod", "dry_run": True, "level": 3, "note": "ünï code"}}, JSON,
         Operation("example", "dev", inputs=(("target", "prod"), ("dry_run", "true"), ("level", "3"),
                                             ("note", "ünï code")))),
        ({"branch": "dev", "inputs": {}}, JSON, Operation("example", "dev")),
        ({"branch": "dev", "inputs": None}, JSON, Operation("example", "dev")),
    ],
)
def test_valid_bodies(body, content_type, expected):
    # A plain call is a manual build, as `when: event: manual` names it.
    assert parse(body, content_type) == dataclasses.replace(expected, event="manual")


@pytest.mark.parametrize(
    "body, content_type, status, reason",
    [
        (b"x" * (MAX_BODY_BYTES + 1), JSON, 413, "larger than"),
        ({"branch": "master"}, "text/plain", 415, "content type"),
        ({"branch": "master"}, "multipart/form-data; boundary=x", 415, "content type"),
        (b"{branch: master}", JSON, 400, "not valid JSON"),
        (b"", JSON, 400, "not valid JSON"),
        (b"\xff\xfe{}", JSON, 400, "not UTF-8"),
        (b"[" * 60000, JSON, 400, ""),
        (["master"], JSON, 400, "JSON object"),
        ("master", JSON, 400, "JSON object"),
        (None, JSON, 400, "JSON object"),
        ({}, JSON, 400, "branch is required"),
        ({"branch": 7}, JSON, 400, "must be a string"),
        ({"branch": None}, JSON, 400, "must be a string"),
        ({"branch": ""}, JSON, 400, "empty"),
        ({"branch": "-rf"}, JSON, 400, "starts with '-'"),
        ({"branch": "a..b"}, JSON, 400, "'..'"),
        ({"branch": "a b"}, JSON, 400, "forbidden character"),
        ({"branch": "x" * 300}, JSON, 400, "longer than"),
        ({"branch": "caf\u00e9"}, JSON, 400, "non-ASCII"),
        ({"branch": "a\nb"}, JSON, 400, "control"),
        ({"branch": "x;reboot"}, JSON, 400, "shell metacharacter ';'"),
        ({"branch": "$(id)"}, JSON, 400, "shell metacharacter '$'"),
        ({"branch": "a|b"}, JSON, 400, "shell metacharacter '|'"),
        ({"branch": "a&b"}, JSON, 400, "shell metacharacter '&'"),
        ({"branch": "`id`"}, JSON, 400, "shell metacharacter '`'"),
        ({"branch": "a<b"}, JSON, 400, "shell metacharacter '<'"),
        ({"branch": "a>b"}, JSON, 400, "shell metacharacter '>'"),
        ({"branch": "it's"}, JSON, 400, "shell metacharacter \"'\""),
        ({"branch": "wow!"}, JSON, 400, "shell metacharacter '!'"),
        ({"branch": "master", "repository": "https://evil.example/x.git"}, JSON, 400, "unknown repository"),
        ({"branch": "master", "repository": "nope"}, JSON, 400, "unknown repository"),
        ({"branch": "master", "repository": ["example"]}, JSON, 400, "must be a string"),
        ({"branch": "master", "commit": "abc"}, JSON, 400, "hex"),
        ({"branch": "master", "commit": SHA1.upper()}, JSON, 400, "hex"),
        ({"branch": "master", "commit": 1}, JSON, 400, "hex"),
        ({"branch": "master", "url": "file:///etc"}, JSON, 400, "unknown keys: 'url'"),
        ({"branch": "master", "inputs": [["a", "b"]]}, JSON, 400, "inputs must be an object"),
        ({"branch": "master", "inputs": {"A": "b"}}, JSON, 400, "inputs: 'A' is not an input's name"),
        ({"branch": "master", "inputs": {"a": "x\ny"}}, JSON, 400, "inputs: a must be one line"),
        ({"branch": "master", "inputs": {"a": "\u202eevil"}}, JSON, 400, "inputs: a must be one line"),
        ({"branch": "master", "inputs": {"a": "x" * 1025}}, JSON, 400, "inputs: a must be one line"),
        ({"branch": "master", "inputs": {"a": ["x"]}}, JSON, 400, "inputs: a must be one line"),
        ({"branch": "master", "inputs": {f"i{n}": "x" for n in range(17)}}, JSON, 400, "inputs: at most 16"),
    ],
)
def test_rejected_bodies(body, content_type, status, reason):
    with pytest.raises(WebhookError) as caught:
        parse(body, content_type)
    assert caught.value.status == status
    assert reason in caught.value.reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
webhook_like = st.fixed_dictionaries(
    {},
    optional={
        "branch": st.one_of(st.text(max_size=40), st.text(alphabet="ab/.-;|&$`<>()'\"!", max_size=12), json_values),
        "repository": st.one_of(st.sampled_from(REPOSITORIES), json_values),
        "commit": st.one_of(st.just(SHA1), json_values),
        "inputs": st.one_of(st.dictionaries(st.text(alphabet="ab_1A", max_size=6), json_values, max_size=3),
                            json_values),
    },
)
content_types = st.sampled_from([JSON, "", "application/x-www-form-urlencoded", "text/plain", "a;b;c"])


def _parses_or_refuses(body: bytes, content_type: str) -> None:
    try:
        operation = parse_webhook(body, content_type, REPOSITORIES)
    except WebhookError as error:
        assert 400 <= error.status < 500 and error.reason
    else:
        assert operation.repository in REPOSITORIES
        assert not SHELL_METACHARACTERS.intersection(operation.branch)
        # What the client accepts, every node's wire reading takes as it is.
        assert decode_struct(Operation, encode(operation)) == operation


@given(st.binary(max_size=300), content_types)
def test_random_bytes_only_raise_webhook_errors(body, content_type):
    _parses_or_refuses(body, content_type)


@given(st.one_of(json_values, webhook_like), content_types)
def test_random_json_only_raises_webhook_errors(value, content_type):
    _parses_or_refuses(json.dumps(value).encode(), content_type)
