"""A branch's status badge: `GET /badge/{repository}/{branch}.svg`, "pbft-ci | passing".

The badge says the verdict of the newest build of a branch's own (a push, a
plain call or a schedule; not a pull request, a tag, one combination of a
matrix, or a cancel) that has one on the branch: `passing` (success),
`failing` (failure), `error` (error, or timeout: no verdict within the time,
or the build's own time ran out), `disputed` (the nodes disagree: disputed or
divergent), or `unknown` when there is none. Cancelled and skipped builds
say nothing of the branch and are passed over; a matrix build says the worst
of its combinations once they all have their verdict.

READMEs embed badges where no token can be sent, so a client with a token
serves them only to callers with it, like the build records, unless its
configuration says `public_badges: true`: then anyone may learn a configured
branch's latest verdict, and nothing more. The repository must be configured
(404) and the branch well formed (400); every text in the image is
XML-escaped all the same.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from aiohttp import web

from client.access import READ
from client.dashboard import SECURITY_HEADERS
from client.intake import checked_branch
from client.keys import ACCESS_KEY, LIVE_KEY, NAME_KEY, RECORDS_KEY
from client.tables.builds import Builds

LABEL = "pbft-ci"
# A verdict (client.tables.summaries.VERDICTS) as the badge says it; the others say nothing of a branch.
WORDS = {"success": "passing", "failure": "failing", "error": "error", "timeout": "error",
         "disputed": "disputed", "divergent": "disputed"}
# Worst first: what a matrix build says of its combinations.
WORST_FIRST = ("failing", "error", "disputed", "passing")
COLOURS = {"passing": "#44cc11", "failing": "#e05d44", "error": "#fe7d37", "disputed": "#dfb317",
           "unknown": "#9f9f9f"}
# How far back a branch's builds are looked through for one that says something.
LOOK_BACK = 20
# Verdana 11 px averages about 7 px a character; a badge a little wide is better than one cut.
CHAR_WIDTH_PX = 7
PADDING_PX = 10


def add_badge(app: web.Application) -> None:
    """Serve the badge of each configured repository's branches."""
    app.router.add_get("/badge/{repository}/{branch:.+}.svg", _badge)


async def _badge(request: web.Request) -> web.Response:
    # The reader's check is every other reader route's, unless badges are public.
    config = request.app[LIVE_KEY].current
    if not config.client(request.app[NAME_KEY]).public_badges:
        request.app[ACCESS_KEY].require(request.headers, READ, request.match_info["repository"])
    repository = request.match_info["repository"]
    if repository not in {configured.name for configured in config.repositories}:
        raise web.HTTPNotFound(reason="no such repository is configured")
    branch = checked_branch(request.match_info["branch"])
    word = branch_word(request.app[RECORDS_KEY].builds, repository, branch)
    return web.Response(body=svg(LABEL, word, f"{repository} {branch}"), content_type="image/svg+xml",
                        headers=SECURITY_HEADERS)


def branch_word(builds: Builds, repository: str, branch: str) -> str:
    """What the badge of a branch says (see the module's doc)."""
    for build in builds.branch_verdicts(repository, branch, LOOK_BACK):
        if build["verdict"] == "matrix":
            word = _matrix_word(builds, int(build["build_id"]))
        else:
            word = WORDS.get(build["verdict"])
        if word is not None:
            return word
    return "unknown"


def _matrix_word(builds: Builds, build_id: int) -> str | None:
    """The worst word of a matrix build's combinations, once each has its verdict; else None."""
    record = builds.get(build_id)
    combinations = [] if record is None else record["matrix_builds"]
    if not combinations or any(combination["state"] == "pending" for combination in combinations):
        return None
    words = {WORDS.get(combination["status"] or combination["state"]) for combination in combinations}
    return next((word for word in WORST_FIRST if word in words), None)


def svg(label: str, message: str, title: str) -> bytes:
    """A flat two-part badge, its texts XML-escaped."""
    label_px = len(label) * CHAR_WIDTH_PX + PADDING_PX
    message_px = len(message) * CHAR_WIDTH_PX + PADDING_PX
    width = label_px + message_px
    colour = COLOURS.get(message, COLOURS["unknown"])
    title = escape(f"{title}: {message}", {'"': "&quot;"})
    label, message = escape(label), escape(message)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" aria-label="{title}">'
        f"<title>{title}</title>"
        '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>'
        '<stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{label_px}" height="20" fill="#555"/>'
        f'<rect x="{label_px}" width="{message_px}" height="20" fill="{colour}"/>'
        f'<rect width="{width}" height="20" fill="url(#s)"/></g>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{label_px / 2:g}" y="14">{label}</text>'
        f'<text x="{label_px + message_px / 2:g}" y="14">{message}</text></g></svg>'
    ).encode()
