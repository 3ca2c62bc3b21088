"""The client's OpenAPI document (client.openapi) and the table of routes it is made from
(client.apiroutes): the table lists exactly the routes the app serves, in the groups that serve
them, with the access their handlers check and the bodies they read; the client serves the
document without credentials, and it is well-formed OpenAPI 3.1; docs/api.md and
docs/openapi.json are what the table says (scripts/api_reference.py --check)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client.access import CSRF_HEADER, ROLES
from client.apiroutes import PUBLIC, ROUTES, SESSION, Route
from client.app import make_app
from client.intake import KNOWN_KEYS
from client.keys import RECORDS_KEY
from client.openapi import changes, openapi_document, operation_id, path_parameters
from client.tables.sessions import SESSION_COOKIE
from pbft.networkchange import NetworkChange
from shared.actionreport import OPTIONAL_FIELDS, SIGNED_FIELDS
from tests.client.client_token import BEARER
from tests.client.fake_nodes import CLIENT
from tests.client.route_callers import PERSON, PLAUSIBLE, bearer, route_id

ROOT = Path(__file__).resolve().parents[2]
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# The groups of the modules that add routes without being one of client.routes: client.routes.about adds them.
PAGES = {"client.dashboard": "about", "client.badge": "about"}


def served_routes(app) -> dict[tuple[str, str], str]:
    """The app's routes, HEAD left out (aiohttp adds one for every GET), and the group of each one's module."""
    return {(route.method, route.resource.canonical): PAGES.get(route.handler.__module__,
                                                                 route.handler.__module__.rpartition(".")[2])
            for route in app.router.routes() if route.method != "HEAD"}


async def test_the_table_lists_every_route_the_app_serves_and_no_other(cluster):
    served = served_routes(make_app(cluster.config, CLIENT))
    documented = {(route.method, route.path): route.group for route in ROUTES}
    assert len(documented) == len(ROUTES), "a route is in client/apiroutes.py twice"
    missing, extra = sorted(served.keys() - documented.keys()), sorted(documented.keys() - served.keys())
    assert not missing, f"the app serves routes client/apiroutes.py does not list: {missing}"
    assert not extra, f"client/apiroutes.py lists routes the app does not serve: {extra}"
    misgrouped = {key: (group, served[key]) for key, group in documented.items() if served[key] != group}
    assert misgrouped == {}, "routes whose group (as listed, as served) is not their module's"


def test_the_bodies_are_the_fields_the_handlers_read():
    bodies = {route_id(route): {field.name for field in route.body} for route in ROUTES}
    assert bodies["POST /webHook"] == KNOWN_KEYS
    assert bodies["POST /builds/{build_id}/actions"] == {*SIGNED_FIELDS, *OPTIONAL_FIELDS, "sig"}
    assert bodies["POST /network/changes"] == {field.name for field in dataclasses.fields(NetworkChange)}
    assert bodies["POST /tokens"] == {"label", "days"}
    assert {name for name, fields in bodies.items() if fields} == {
        "POST /webHook", "POST /builds/{build_id}/actions", "POST /network/changes", "POST /tokens"}


# --- who may call each route, as its handler checks ------------------------------------------


async def call(client, route: Route, headers: dict):
    url = route.path.format(**PLAUSIBLE)
    query = {field.name: "0" for field in route.query if field.required}
    body = {"json": {}} if route.method == "POST" else {}
    return await client.request(route.method, url, params=query, headers=headers, allow_redirects=False, **body)


def let_through(status: int) -> bool:
    """Whether the access check let the caller through: whatever the route answers past it (a 404
    for a build that does not exist, a 400 for an empty body) is neither a 401 nor a 403."""
    return status not in (401, 403)


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_each_route_asks_for_the_access_the_table_says(guarded, route):
    app = guarded.server.app
    anonymous = await call(guarded, route, {})
    if route.access == PUBLIC:
        assert let_through(anonymous.status) and anonymous.status < 500, anonymous.status
        return
    assert anonymous.status == 401, anonymous.status
    assert set(await anonymous.json()) == {"error"}
    cookie, session = app[RECORDS_KEY].sessions.begin(PERSON, (), time.time(), 1)
    signed_in = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
    if route.access == SESSION:
        # A token, even the machine's, is no session: tokens cannot beget tokens.
        assert (await call(guarded, route, BEARER)).status == 401
    else:
        held = ROLES.index(route.access)
        if held > 0:
            assert (await call(guarded, route, bearer(app, ROLES[held - 1]))).status == 403
        assert let_through((await call(guarded, route, bearer(app, route.access))).status)
        on_one = (await call(guarded, route, bearer(app, route.access, frozenset({"hello"})))).status
        assert on_one == 403 if route.everywhere else let_through(on_one), on_one
    # The session, with the CSRF token where the request changes something.
    without_csrf = (await call(guarded, route, signed_in)).status
    assert without_csrf == 403 if changes(route) else let_through(without_csrf), without_csrf
    assert let_through((await call(guarded, route, {**signed_in, CSRF_HEADER: session.csrf})).status)


# --- the document ----------------------------------------------------------------------------


def operations(document: dict) -> list[tuple[str, str, dict]]:
    return [(path, method, operation) for path, item in document["paths"].items()
            for method, operation in item.items() if method in HTTP_METHODS]


def references(node) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in references(value)]
    return []


def resolve(document: dict, ref: str):
    assert ref.startswith("#/"), ref
    node = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


async def test_the_client_serves_the_document_to_anyone(guarded):
    response = await guarded.get("/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    assert await response.json() == json.loads(json.dumps(openapi_document()))


def test_the_document_is_well_formed_openapi_3_1():
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "pbft-ci client" and document["info"]["version"]
    found = operations(document)
    assert len(found) == len(ROUTES)
    ids = [operation["operationId"] for _, _, operation in found]
    assert len(set(ids)) == len(ids), sorted(ids)
    tags = [tag["name"] for tag in document["tags"]]
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert (schemes["session"]["type"], schemes["session"]["in"], schemes["session"]["name"]) == (
        "apiKey", "cookie", SESSION_COOKIE)
    for path, method, operation in found:
        declared = [parameter["name"] for parameter in operation.get("parameters", ()) if parameter["in"] == "path"]
        assert sorted(declared) == sorted(path_parameters(path)), (method, path)
        assert all(parameter["required"] is True for parameter in operation.get("parameters", ())
                   if parameter["in"] == "path")
        keys = [(parameter["name"], parameter["in"]) for parameter in operation.get("parameters", ())]
        assert len(set(keys)) == len(keys), (method, path)
        assert set(operation["tags"]) <= set(tags)
        assert any(status[0] in "23" for status in operation["responses"]), (method, path)
        assert all(status == "4XX" or (status.isdecimal() and len(status) == 3)
                   for status in operation["responses"]), (method, path)
        assert all(set(requirement) <= set(schemes) for requirement in operation["security"])
    refs = references(document)
    assert refs, "the document refers to nothing"
    for ref in refs:
        resolve(document, ref)


def test_a_public_route_needs_no_credentials_in_the_document_and_a_guarded_one_names_them():
    by_id = {operation["operationId"]: operation for _, _, operation in operations(openapi_document())}
    for route in ROUTES:
        security = by_id[operation_id(route)]["security"]
        if route.access == PUBLIC:
            assert security == [], route_id(route)
        elif route.access == SESSION:
            assert [set(requirement) for requirement in security] == [
                {"session", "csrf"} if route.method == "POST" else {"session"}], route_id(route)
        else:
            assert {"bearer": []} in security, route_id(route)


def test_the_resolver_and_the_parameter_check_see_what_is_wrong():
    document = {"components": {"schemas": {"Error": {}}}}
    resolve(document, "#/components/schemas/Error")
    with pytest.raises(KeyError):
        resolve(document, "#/components/schemas/Missing")
    assert path_parameters("/badge/{repository}/{branch}.svg") == ["repository", "branch"]


def test_the_api_reference_and_the_published_document_are_what_the_table_says():
    checked = subprocess.run([sys.executable, "scripts/api_reference.py", "--check"], cwd=ROOT,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert json.loads((ROOT / "docs" / "openapi.json").read_text()) == json.loads(json.dumps(openapi_document()))
