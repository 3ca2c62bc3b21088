"""The read-only web dashboard: builds, one build, the network.

The pages are one static HTML file with its scripts and one style sheet
(`client/static/`), the same bytes for everyone and holding no data, so they
are served without credentials. Everything the pages show comes from the
client's JSON routes (`GET /builds`, `/builds/{id}`, `/builds/{id}/nodes`,
`/builds/{id}/log`, `/network`), which keep their access rules: with a bearer
token configured, the script sends `Authorization: Bearer <token>` on every
fetch, with the token the user typed into the page once (kept in the tab's
sessionStorage). A token is never put in a URL, where access logs, proxies
and the browser's history would keep it, and never in a cookie, which the
browser would attach to requests other sites make.

The script builds every element with `textContent`, never by parsing HTML,
so a build's output or a branch name shows as the text it is. The
Content-Security-Policy below allows scripts from this origin's files only (no
inline script, no event-handler attributes, no eval), so even markup that
found its way into a page could not run.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"
# The page's scripts, in the order it runs them: dashboard.js has what every page uses and starts
# the page, each other one page's part of it.
SCRIPTS = ("dashboard.js", "builds.js", "build.js", "output.js", "network.js")
STATIC_TYPES = {**{script: "text/javascript" for script in SCRIPTS}, "dashboard.css": "text/css",
                "favicon.svg": "image/svg+xml"}
PAGE = "dashboard.html"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The files change with the client's version; a browser asks again rather than run an old script.
    "Cache-Control": "no-cache",
}
DASHBOARD_FILES = web.AppKey("dashboard_files", dict)


def add_dashboard(app: web.Application) -> None:
    """The dashboard's pages and files; `/` leads to it."""
    app[DASHBOARD_FILES] = {name: (STATIC_DIR / name).read_bytes() for name in (PAGE, *STATIC_TYPES)}
    app.on_response_prepare.append(_no_sniffing)
    app.router.add_get("/", _to_dashboard)
    app.router.add_get("/dashboard", _page)
    app.router.add_get("/dashboard/network", _page)
    app.router.add_get("/dashboard/builds/{build_id}", _build_page)
    app.router.add_get("/dashboard/repositories/{repository}/flaky", _page)
    app.router.add_get("/dashboard/static/{name}", _static)
    # Browsers ask for /favicon.ico whatever a page names; an SVG answers them all.
    app.router.add_get("/favicon.ico", _favicon)


async def _no_sniffing(request: web.Request, response: web.StreamResponse) -> None:
    # The dashboard makes a browser read every route of this client, build
    # output included: none of it may be taken for HTML by content sniffing.
    response.headers.setdefault("X-Content-Type-Options", "nosniff")


async def _to_dashboard(request: web.Request) -> web.Response:
    raise web.HTTPFound("/dashboard")


async def _page(request: web.Request) -> web.Response:
    return _file(request, PAGE, "text/html")


async def _build_page(request: web.Request) -> web.Response:
    # Whether the build exists is for the JSON routes to say, behind the token; a malformed id is refused here.
    text = request.match_info["build_id"]
    if not (text.isascii() and text.isdecimal() and len(text) <= 19):
        raise web.HTTPBadRequest(reason="build id must be a decimal number")
    return _file(request, PAGE, "text/html")


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC_TYPES:
        raise web.HTTPNotFound(reason=f"no dashboard file {name[:64]!r}")
    return _file(request, name, STATIC_TYPES[name])


async def _favicon(request: web.Request) -> web.Response:
    return _file(request, "favicon.svg", STATIC_TYPES["favicon.svg"])


def _file(request: web.Request, name: str, content_type: str) -> web.Response:
    return web.Response(
        body=request.app[DASHBOARD_FILES][name], content_type=content_type, charset="utf-8", headers=SECURITY_HEADERS
    )
