"""Every route of the client's table (client.apiroutes), called by a caller it lets through with
what a careless or hostile one sends: path parameters that are no ids (dots, NUL, huge numbers,
other scripts), query values of every wrong kind, bodies that are no JSON object, or whose
fields each hold the wrong kind of value, and a body larger than any route takes. None may
answer 500 or leave the request hanging; an API route's refusal is JSON naming the problem."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import quote

import pytest

from client.access import CSRF_HEADER
from client.apiroutes import ROUTES, SESSION, Route
from client.keys import RECORDS_KEY
from client.tables.sessions import SESSION_COOKIE
from tests.client.route_callers import PERSON, PLAUSIBLE, bearer, route_id

# What goes where an id, a name or a path is expected.
ODD_SEGMENTS = ("..", "../../etc/passwd", "-1", "0", "1" * 40, "1e400", "nan", "x" * 4000, "ärger€", "\x00",
                " ", "%", "a/b", "$(id)")
# What goes in a query parameter.
ODD_QUERIES = ("", "-1", "0", "1" * 400, "1e309", "nan", "true", "[]", "\x00", "ärger", "../x", "x" * 5000)
# What a JSON body's field holds instead of what it should.
ODD_VALUES = (None, -1, 0, 2 ** 70, 1e308, True, "", "x" * 100_000, "\x00", [], {}, [1, "a"], {"a": {"b": []}})
# Bodies that are no JSON object at all.
ODD_BODIES = (b"", b"{", b"[]", b"null", b"1", b'"text"', b"\xff\xfe", b"{" * 10_000, b'{"a": 1e999}')
REQUEST_TIMEOUT_S = 20


def headers_for(app, route: Route) -> dict:
    """A caller this route lets through: a session with its CSRF token for the session's own
    routes, the admin role's token (every repository) for the others."""
    if route.access == SESSION:
        cookie, session = app[RECORDS_KEY].sessions.begin(PERSON, (), time.time(), 1)
        return {"Cookie": f"{SESSION_COOKIE}={cookie}", CSRF_HEADER: session.csrf}
    return bearer(app, "admin")


async def answer(client, route: Route, *, path: dict | None = None, params: dict | None = None,
                 data: bytes | None = None) -> tuple[int, str, bytes]:
    """The status, content type and body of one call; a timeout fails the test."""
    url = route.path.format(**{**PLAUSIBLE, **(path or {})})
    body = {} if data is None else {"data": data, "headers": {"Content-Type": "application/json"}}
    headers = {**headers_for(client.server.app, route), **body.pop("headers", {})}
    async with asyncio.timeout(REQUEST_TIMEOUT_S):
        response = await client.request(route.method, url, params=params or {}, headers=headers,
                                        allow_redirects=False, **body)
        return response.status, response.content_type, await response.read()


def refused_clearly(route: Route, what: str, status: int, content_type: str, body: bytes) -> str | None:
    """Why the answer is not a clear one, or None."""
    if status >= 500:
        return f"{route_id(route)} {what}: {status} {body[:200]!r}"
    if status >= 400 and content_type == "application/json":
        try:
            said = json.loads(body)
        except ValueError:
            return f"{route_id(route)} {what}: {status} with a body that is no JSON: {body[:200]!r}"
        if not (isinstance(said, dict) and isinstance(said.get("error"), str) and said["error"]):
            return f"{route_id(route)} {what}: {status} without an error that says why: {body[:200]!r}"
    return None


def path_parameters(route: Route) -> list[str]:
    return [name for name in PLAUSIBLE if "{" + name + "}" in route.path]


@pytest.mark.parametrize("route", [route for route in ROUTES if path_parameters(route)], ids=route_id)
async def test_odd_path_parameters_are_refused_or_not_found_never_a_500(guarded, route):
    problems = []
    for name in path_parameters(route):
        for odd in ODD_SEGMENTS:
            found = await answer(guarded, route, path={name: quote(odd, safe="")})
            problems.append(refused_clearly(route, f"{name}={odd[:20]!r}", *found))
    assert [problem for problem in problems if problem] == []


@pytest.mark.parametrize("route", [route for route in ROUTES if route.query], ids=route_id)
async def test_odd_query_values_are_refused_or_ignored_never_a_500(guarded, route):
    problems = []
    for field in route.query:
        for odd in ODD_QUERIES:
            found = await answer(guarded, route, params={field.name: odd})
            problems.append(refused_clearly(route, f"?{field.name}={odd[:20]!r}", *found))
    # Every parameter at once, twice over, and one the route does not know.
    found = await answer(guarded, route, params=[*((field.name, "-1") for field in route.query for _ in range(2)),
                                                 ("unknown", "1")])
    problems.append(refused_clearly(route, "every parameter twice", *found))
    assert [problem for problem in problems if problem] == []


@pytest.mark.parametrize("route", [route for route in ROUTES if route.method == "POST"], ids=route_id)
async def test_bodies_that_are_no_object_or_hold_the_wrong_kinds_are_refused_never_a_500(guarded, route):
    problems = []
    for odd in ODD_BODIES:
        found = await answer(guarded, route, data=odd)
        problems.append(refused_clearly(route, f"body {odd[:20]!r}", *found))
    for field in route.body:
        for odd in ODD_VALUES:
            found = await answer(guarded, route, data=json.dumps({field.name: odd}).encode())
            problems.append(refused_clearly(route, f"{field.name}={str(odd)[:20]!r}", *found))
    # Every field wrong at once, and a body past any route's bound.
    found = await answer(guarded, route, data=json.dumps({field.name: [] for field in route.body}).encode())
    problems.append(refused_clearly(route, "every field a list", *found))
    status, content_type, body = await answer(guarded, route, data=b'{"a": "' + b"x" * 3_000_000 + b'"}')
    problems.append(refused_clearly(route, "a 3 MB body", status, content_type, body))
    assert [problem for problem in problems if problem] == []
