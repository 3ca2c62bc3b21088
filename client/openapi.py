"""The client's HTTP routes as an OpenAPI 3.1 document, made from their table (client.apiroutes).

The client serves it at `GET /openapi.json`; scripts/api_reference.py writes it to
docs/openapi.json beside the page docs/api.md. It depends on no configuration: every client
serves the same routes, and the document holds no address, name or secret of one.
"""

from __future__ import annotations

import re
from typing import Sequence

from client.access import CSRF_HEADER, READ
from client.apiroutes import GROUPS, PATH_PARAMETERS, PUBLIC, ROUTES, SESSION, Answer, Field, Route
from client.tables.sessions import SESSION_COOKIE
from client.tables.tokens import TOKEN_PREFIX

OPENAPI_VERSION = "3.1.0"
TITLE = "pbft-ci client"
# The client has no version number of its own: a client serves the document of the very
# routes it runs, so this one counts only changes to the document's form.
VERSION = "1"
ERROR = {"$ref": "#/components/schemas/Error"}
REFUSED = "#/components/responses/Refused"
TEXT_TYPES = ("text/", "application/json")
_PARAMETER = re.compile(r"{(\w+)}")  # a path template's parameter

DESCRIPTION = (
    "The HTTP routes of a pbft-ci client. A caller is whoever its `Authorization: Bearer` token (the client's "
    "machine token or a personal API token) or its session cookie (a person signed in through the team's "
    "OpenID provider) names, with a role on each repository: read < trigger < operate < approve < admin, "
    "each including the ones before it. A request sent with the session cookie that changes something also "
    f"carries the session's CSRF token in the `{CSRF_HEADER}` header (`GET /session` gives it). A client "
    "configured with neither a token nor sign-in reads openly. Every refusal is JSON, "
    "`{\"error\": reason}`: 401 for a caller who is nobody, 403 for one without the role, another 4xx "
    "for a request the client cannot take, 500 for a bug in the client."
)

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "The client's machine token (`token_file`), or a personal API token "
                              f"(`{TOKEN_PREFIX}...`)."},
    "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                "description": "The session of a person signed in (`GET /login`)."},
    "csrf": {"type": "apiKey", "in": "header", "name": CSRF_HEADER,
             "description": "The session's CSRF token, which `GET /session` gives: with the session cookie, on "
                            "every request that changes something."},
}


def openapi_document(routes: Sequence[Route] = ROUTES) -> dict:
    """The OpenAPI 3.1 document of `routes`, in their order, grouped by path."""
    paths: dict[str, dict] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = operation(route)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": TITLE, "version": VERSION, "description": DESCRIPTION},
        "tags": [{"name": name, "description": description} for name, description in GROUPS.items()
                 if any(route.group == name for route in routes)],
        "paths": paths,
        "components": {
            "securitySchemes": SECURITY_SCHEMES,
            "schemas": {"Error": {"type": "object", "required": ["error"],
                                  "properties": {"error": {"type": "string", "description": "Why, in a line."}}}},
            "responses": {"Refused": {"description": "Refused, with the reason.",
                                      "content": {"application/json": {"schema": ERROR}}}},
        },
    }


def operation_id(route: Route) -> str:
    """`GET /builds/{build_id}/log` → `get_builds_build_id_log`; `GET /` → `get_root`."""
    words = re.sub(r"[^a-z0-9]+", "_", route.path.lower()).strip("_")
    return f"{route.method.lower()}_{words or 'root'}"


def path_parameters(path: str) -> list[str]:
    return _PARAMETER.findall(path)


def operation(route: Route) -> dict:
    parameters = [_parameter(PATH_PARAMETERS[name], "path") for name in path_parameters(route.path)]
    parameters += [_parameter(field, "query") for field in route.query]
    answer = {
        "tags": [route.group],
        "summary": route.summary,
        "description": f"{route.description}\n\nWho may: {route.who()}.",
        "operationId": operation_id(route),
        "security": security(route),
        "x-access": route.who(),
        "responses": responses(route),
    }
    if parameters:
        answer["parameters"] = parameters
    if route.body:
        answer["requestBody"] = {"required": True, "content": {"application/json": {"schema": _object(route.body)}}}
    return answer


def security(route: Route) -> list[dict]:
    """Who may call `route`, as OpenAPI's alternatives: a bearer token, or the session cookie (with the
    CSRF header where the request changes something); none for a public route."""
    if route.access == PUBLIC:
        return []
    session = {"session": [], "csrf": []} if changes(route) else {"session": []}
    return [session] if route.access == SESSION else [{"bearer": []}, session]


def changes(route: Route) -> bool:
    """Whether a request of `route` changes something, so that one sent with the session cookie must
    carry the CSRF token: client.access asks it for every role above read, client.routes.signin
    for every POST."""
    return route.method != "GET" if route.access == SESSION else route.access not in (PUBLIC, READ)


def responses(route: Route) -> dict:
    answers = {answer.status: _answer(answer) for answer in route.answers}
    refusals = dict(route.refusals)
    if route.access != PUBLIC:
        refusals.setdefault(401, "nobody signed in" if route.access == SESSION else
                            "no credentials, or a token the client does not know")
        if route.access != SESSION:
            refusals.setdefault(403, f"the caller lacks the role `{route.access}`" +
                                (" on every repository" if route.everywhere else ""))
        elif changes(route):
            refusals.setdefault(403, f"no `{CSRF_HEADER}` header with the session's CSRF token")
    # OpenAPI 3.1 lets a reference say its own description: the refusal's shape, and why here.
    for status, why in refusals.items():
        answers[status] = {"$ref": REFUSED, "description": why[:1].upper() + why[1:] + "."}
    return {**{str(status): answers[status] for status in sorted(answers)}, "4XX": {"$ref": REFUSED}}


def _answer(answer: Answer) -> dict:
    described: dict = {"description": answer.description}
    if 300 <= answer.status < 400:
        described["headers"] = {"Location": {"description": "Where to go.", "schema": {"type": "string"}}}
    if answer.types:
        described["content"] = {media: _content(media) for media in answer.types}
    return described


def _content(media: str) -> dict:
    if media == "application/json":
        return {"schema": {"type": "object"}}
    return {"schema": {"type": "string"}} if media.startswith(TEXT_TYPES) else {}


def _parameter(field: Field, where: str) -> dict:
    return {"name": field.name, "in": where, "description": field.description,
            "required": field.required or where == "path", "schema": _schema(field)}


def _schema(field: Field) -> dict:
    schema: dict = {"type": [field.kind, "null"] if field.nullable else field.kind}
    if field.enum:
        schema["enum"] = list(field.enum)
    return schema


def _object(fields: Sequence[Field]) -> dict:
    schema: dict = {"type": "object", "properties": {field.name: {**_schema(field), "description": field.description}
                                                     for field in fields}}
    required = [field.name for field in fields if field.required]
    if required:
        schema["required"] = required
    return schema
