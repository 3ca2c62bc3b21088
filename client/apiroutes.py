"""Every HTTP route of the client, declared once: what it is for, who may call it, what it takes
and what it answers. client.openapi makes the OpenAPI document the client serves at
`GET /openapi.json` from this table, and scripts/api_reference.py the page docs/api.md;
tests/client/test_openapi.py holds the table against the app's routes and the access its
handlers check, so neither can drift from what the client does.

Paths are in OpenAPI's form (`/builds/{build_id}/artifacts/{path}`), which is also how aiohttp
writes a route's canonical path. A route's group is the module of client.routes it lives in;
the dashboard's pages and the badges are `about`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from client.access import ADMIN, APPROVE, OPERATE, READ, ROLES, TRIGGER
from client.artifacts import DIGEST_HEADER
from client.buildlogs import NODE_HEADER
from client.dashboard import STATIC_TYPES
from client.intake import MAX_BODY_BYTES
from client.routes.params import DEFAULT_BUILDS_LIMIT, MAX_BUILDS_LIMIT
from client.tables.audit import AUDIT_ACTIONS
from client.tables.summaries import VERDICTS
from client.tables.tokens import DEFAULT_DAYS, MAX_TOKEN_DAYS
from pbft.build import ACTOR_KINDS, MAX_INPUTS
from shared.actionreport import ACTION_STATES

PUBLIC, SESSION = "public", "session"  # anyone; a person signed in (client.signin), with the session's cookie
ACCESSES = (PUBLIC, SESSION, *ROLES)

# The groups, as client.routes orders its modules, and what each holds.
GROUPS = {
    "webhook": "Asking for builds: a plain call waits for the verdict, a forge's delivery is answered at once.",
    "builds": "The build records, what action runners report of a build, and who did what (the audit).",
    "verbs": "Re-run or cancel a build, approve a fork's pull request that waits.",
    "changes": "A change of the network document, which its owners signed.",
    "signin": "People signing in and out through the team's OpenID provider, and their own API tokens.",
    "nodes": "What the nodes serve through the client: a build's logs and artifacts, the nodes' records and status.",
    "evidence": "What lets anyone check a verdict without trusting the client.",
    "about": "The client itself (its name, metrics and this document), the dashboard's pages and the badges.",
}

JSON, HTML, SVG, TEXT, EVENTS = "application/json", "text/html", "image/svg+xml", "text/plain", "text/event-stream"
TAR, BYTES, JAVASCRIPT, CSS = "application/x-tar", "application/octet-stream", "text/javascript", "text/css"


@dataclass(frozen=True)
class Field:
    """A query parameter, a path parameter or a field of a JSON body."""

    name: str
    kind: str  # its JSON Schema type
    description: str
    required: bool = False
    enum: tuple[str, ...] = ()  # the values the handler takes, when it checks a list
    nullable: bool = False  # null is taken too


@dataclass(frozen=True)
class Answer:
    """An answer of the route's other than a refusal (`{"error": reason}`)."""

    status: int
    description: str
    types: tuple[str, ...] = (JSON,)  # its media types; none for a redirect


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    group: str
    access: str  # one of ACCESSES
    summary: str
    description: str
    answers: tuple[Answer, ...]
    query: tuple[Field, ...] = ()
    body: tuple[Field, ...] = ()  # a JSON object's fields, when the route reads one
    refusals: tuple[tuple[int, str], ...] = ()  # the refusals worth naming, beyond a missing role
    everywhere: bool = False  # the role is needed on every repository: the route is the whole network's
    also: str = ""  # who else may call it, another way than `access`

    def who(self) -> str:
        """Who may call the route, in a few words."""
        who = "anyone" if self.access == PUBLIC else "a person signed in" if self.access == SESSION else self.access
        if self.everywhere:
            who += " on every repository"
        return f"{who}, or {self.also}" if self.also else who


# The path parameters, by the name the routes give them.
PATH_PARAMETERS = {
    "build_id": Field("build_id", "string", "A build's id: a decimal number (the client's request timestamp, µs)."),
    "approval_id": Field("approval_id", "string", "A pull request's approval id, as `GET /approvals` lists it."),
    "token_id": Field("token_id", "string", "A personal token's id, as `GET /tokens` lists it."),
    "action": Field("action", "string", "An action's name in the spec's `after:` section."),
    "path": Field("path", "string", "The artifact's path, as the build's manifest names it."),
    "name": Field("name", "string", "One of the dashboard's files.", enum=tuple(STATIC_TYPES)),
    "repository": Field("repository", "string", "A configured repository's name."),
    "branch": Field("branch", "string", "The branch's name (it may hold slashes)."),
}

LIMIT = Field("limit", "integer", f"How many to answer, from 1 to {MAX_BUILDS_LIMIT} (default {DEFAULT_BUILDS_LIMIT}).")
BEFORE = Field("before", "integer", "Only those older than this build id: the `next` of the page before.")
REPOSITORY = Field("repository", "string", "Only this repository's (one the caller may read).")
NOT_FOUND = (404, "no such build")
NO_SIGN_IN = (404, "sign-in is not configured for this client (clients[].sign_in)")
NO_VERDICT = (409, "the build has no certified verdict to make it from")

WEBHOOK = Route(
    "POST", "/webHook", "webhook", TRIGGER, "Ask for a build",
    "A plain call (`{\"branch\": ...}`) is ordered like every request and answered with the verdict once f+1 "
    "nodes agree on one: `status`, `exit_code`, `commit`, `agreed_by`, `build_id`, `elapsed_ms`, `logs` (and "
    "`matrix`, the builds of a matrix's combinations). A forge's delivery (GitHub, GitLab, Gitea, recognised "
    "by its event header) carries the forge's own payload instead, is authenticated by the repository's "
    "webhook secret and is answered at once.",
    (Answer(200, "The verdict of a plain call; or a forge's ping, `{\"pong\": true, \"repository\": ...}`."),
     Answer(202, "A forge's delivery taken: the `build_id` and its `status_url`; or the `approval_url` a fork's "
                 "pull request waits at; or `{\"ignored\": true, \"reason\": ...}` for an event not built.")),
    body=(Field("branch", "string", "The branch to build.", required=True),
          Field("repository", "string", "A configured repository (default: the first one)."),
          Field("commit", "string", "A full commit id on the branch to build instead of its head.",
                nullable=True),
          Field("inputs", "object", f"A manual run's inputs, by name (at most {MAX_INPUTS}), as the spec declares.")),
    refusals=((400, "a body the client cannot take, with the reason"),
              (401, "a plain call without credentials the client knows, or a forge delivery whose signature "
                    "does not match the repository's secret"),
              (403, "a caller without the role trigger on the repository, or a delivery from a repository not "
                    "configured"),
              (413, f"a plain call's body over {MAX_BODY_BYTES} bytes, or a delivery's over `max_body_bytes`"),
              (415, "a content type other than JSON (or a form, as curl -d labels JSON)"),
              (503, "the client shut down before the verdict: it follows the build again when it restarts"),
              (504, "no f+1 nodes agreed before the deadline; `build_id` and the `replies` so far")),
    also="a forge delivery signed with the repository's webhook secret",
)

BUILDS = (
    Route("GET", "/builds", "builds", READ, "List builds",
          "The newest builds first, `limit` at a time, filtered by all the parameters given. Pass `next` as "
          "`before` for the next page, until it is null: pages never repeat or skip a build while new ones arrive.",
          (Answer(200, "`{\"builds\": [record, ...], \"next\": build_id or null}`."),),
          query=(LIMIT, BEFORE, REPOSITORY, Field("branch", "string", "Only this branch's (a pull request's target)."),
                 Field("verdict", "string", "Only builds with this verdict.", enum=VERDICTS),
                 Field("number", "integer", "A repository's build by its number (with `repository`).")),
          refusals=((400, "a parameter out of its range, with the reason"),)),
    Route("GET", "/builds/{build_id}", "builds", READ, "One build",
          "The build's record: what was asked, its state and verdict, who agreed and who dissented, and, while "
          "it has no verdict, where f+1 nodes say it is (`progress`).",
          (Answer(200, "The record, with `logs`: where each node's output is."),), refusals=(NOT_FOUND,)),
    Route("POST", "/builds/{build_id}/actions", "builds", OPERATE, "Report an action after the verdict",
          "An action runner's report of how one of the spec's `after:` actions went, signed with the runner's own "
          "key (clients[].runners). The record keeps the newest report per action and who made it.",
          (Answer(200, "The report kept: `build_id`, `action`, `state`, `runner`."),),
          body=(Field("build_id", "integer", "The build the report is for.", required=True),
                Field("action", "string", "The action's name in the spec's `after:` section.", required=True),
                Field("state", "string", "How the action went.", required=True, enum=ACTION_STATES),
                Field("exit_code", "integer", "The action's exit code (null while it runs).", required=True,
                      nullable=True),
                Field("reason", "string", "Why, in a line.", required=True),
                Field("runner", "string", "The runner's name, as the client's configuration lists it.", required=True),
                Field("stamp_us", "integer", "The runner's clock in µs, above every stamp it used.", required=True),
                Field("environment", "string", "The deploy environment the action names, if any."),
                Field("approver", "string", "Who approved the deploy (`user alice`), once approved."),
                Field("sig", "string", "The runner's Ed25519 signature of the report (hex).", required=True)),
          refusals=((400, "a body that is not a report"), (403, "a report no listed runner signed for this build"),
                    NOT_FOUND, (409, "a build without a certified verdict of a `.pbft-ci.yml`, or a replayed or "
                                     "older report"))),
    Route("GET", "/audit", "builds", READ, "Who did what",
          "The newest actions first: each a request the client signed with its actor (a build, a cancel, a "
          "re-run, an approval, a change of the network), `limit` at a time, paged like `GET /builds`.",
          (Answer(200, "`{\"actions\": [entry, ...], \"next\": build_id or null}`."),),
          query=(LIMIT, BEFORE, REPOSITORY, Field("actor", "string", "Only this actor's, by name."),
                 Field("actor_kind", "string", "Only this kind of actor's.", enum=ACTOR_KINDS),
                 Field("action", "string", "Only this kind of action.", enum=AUDIT_ACTIONS)),
          refusals=((400, "a parameter out of its range, with the reason"),)),
)

VERBS = (
    Route("POST", "/builds/{build_id}/rerun", "verbs", OPERATE, "Re-run a build",
          "Build again what the build built (its repository, ref and commit), as a new build that names the old one.",
          (Answer(202, "The new build on its way: `build_id`, `status_url`, `rerun_of`."),),
          refusals=(NOT_FOUND, (409, "the build is a cancel"))),
    Route("POST", "/builds/{build_id}/rerun-failed", "verbs", OPERATE, "Re-run a matrix's failed combinations",
          "Run again each combination of a matrix build that did not pass, as a new build that names it.",
          (Answer(202, "`{\"build_id\": ..., \"reruns\": [{build_id, status_url, rerun_of, combination}, ...]}`."),),
          refusals=(NOT_FOUND, (409, "nothing to run again, or the build is a cancel"))),
    Route("POST", "/builds/{build_id}/cancel", "verbs", OPERATE, "Cancel a build",
          "Stop a build that has no verdict yet, through the client that asked for it.",
          (Answer(202, "The cancel on its way: `build_id`, `status_url`, `cancel_id`."),),
          refusals=(NOT_FOUND, (409, "the build has its verdict already, was asked for through another client, "
                                     "or is a cancel"))),
    Route("POST", "/builds/{build_id}/actions/{action}/approve", "verbs", TRIGGER, "Approve a deploy",
          "Let an `after:` action that waits for an approval deploy to its environment: an approval ordered like a "
          "cancel, which the action runner checks before it runs the action once. Who may: the role the network "
          "document's environment names (`approvers`, approve unless it says otherwise) on the build's repository.",
          (Answer(202, "The approval on its way: `build_id`, `status_url`, `approval_id`, `already_approved`."),),
          refusals=((400, "an action name that is none"), (403, "the caller lacks the environment's role (named)"),
                    NOT_FOUND, (409, "no certified verdict, an action that waits for no approval, an environment "
                                     "not in the network document, or a build asked for through another client"))),
    Route("GET", "/approvals", "verbs", READ, "Pull requests waiting",
          "Pull requests from forks that wait for an approval before they are built, newest first.",
          (Answer(200, "`{\"approvals\": [approval, ...]}`."),), query=(LIMIT,)),
    Route("GET", "/approvals/{approval_id}", "verbs", READ, "One pull request waiting",
          "A fork's pull request held back, and the build its approval started, if any.",
          (Answer(200, "The approval."),), refusals=((404, "no such approval"),)),
    Route("POST", "/approvals/{approval_id}/approve", "verbs", APPROVE, "Approve a pull request",
          "Build a fork's pull request that waited for an approval. Approving it again answers the build it started.",
          (Answer(202, "The build on its way: `build_id`, `status_url`, `already_approved`."),),
          refusals=((404, "no such approval"),)),
)

CHANGES = Route(
    "POST", "/network/changes", "changes", ADMIN, "Change the network document",
    "A change of the network document that its owners signed (scripts/network.py makes and signs one), "
    "ordered like a build. The owners' signatures make the change; the caller only hands it in. Once "
    "applied, this client runs the new document too.",
    (Answer(200, "Applied: `build_id`, `status`, `reason`, `agreed_by`, `signed_by` (the owners whose "
                 "signatures carried it)."),
     Answer(409, "Refused by f+1 nodes: `build_id`, `status`, `agreed_by` and the `reason` they gave.")),
    body=(Field("base", "string", "The sha256 of the document the change replaces.", required=True),
          Field("document", "string", "The new document, canonical JSON.", required=True),
          Field("signatures", "array", "The owners' signatures: `[{\"owner\": ..., \"sig\": ...}]`.", required=True)),
    refusals=((400, "not a signed network change"),
              (502, "the nodes do not agree on the change"), (504, "no f+1 nodes answered before the deadline")),
    everywhere=True,
)

SIGN_IN = (
    Route("GET", "/login", "signin", PUBLIC, "Sign in",
          "Sends the browser to the team's OpenID provider, with the sign-in's state in a cookie of its own: "
          "only the browser that began a sign-in can finish it.",
          (Answer(302, "To the provider.", ()),),
          query=(Field("next", "string", "The path of this client to return to (default /dashboard)."),),
          refusals=((400, "a `next` that is not a path of this client"), NO_SIGN_IN)),
    Route("GET", "/auth/callback", "signin", PUBLIC, "Return from the provider",
          "Where the provider sends the browser back: a session for the person it signed in, if this browser "
          "began the sign-in its state names.",
          (Answer(303, "To the sign-in's `next`, with the session's cookie.", ()),),
          query=(Field("state", "string", "The sign-in's state."), Field("code", "string", "The provider's code."),
                 Field("error", "string", "The provider's refusal.")),
          refusals=((400, "the provider did not sign the person in, or this browser did not begin the sign-in"),
                    NO_SIGN_IN)),
    Route("GET", "/session", "signin", SESSION, "Who is signed in",
          "The person signed in, their groups, until when, and the CSRF token their requests that change "
          "something carry in the `X-CSRF-Token` header.",
          (Answer(200, "`{\"user\", \"groups\", \"csrf\", \"expires_at\"}`."),), refusals=(NO_SIGN_IN,)),
    Route("POST", "/logout", "signin", SESSION, "Sign out", "Ends the session.",
          (Answer(200, "`{\"signed_out\": true}`."),), refusals=(NO_SIGN_IN,)),
    Route("POST", "/tokens", "signin", SESSION, "Make a personal token",
          "A token for scripts, acting as the person signed in with what the grants give them; shown in this "
          "answer only. Made only from a session, never with a token.",
          (Answer(201, "`{\"token_id\", \"token\", \"days\"}`."),),
          body=(Field("label", "string", "What the token is for (default api)."),
                Field("days", "integer", f"How long it lasts, 1 to {MAX_TOKEN_DAYS} (default {DEFAULT_DAYS}).")),
          refusals=((400, "a label or days out of bounds"), NO_SIGN_IN)),
    Route("GET", "/tokens", "signin", SESSION, "List one's tokens", "The personal tokens of the person signed in.",
          (Answer(200, "`{\"tokens\": [token, ...]}`, without the tokens themselves."),), refusals=(NO_SIGN_IN,)),
    Route("POST", "/tokens/{token_id}/revoke", "signin", SESSION, "Revoke a token",
          "Revoke one of the signed-in person's tokens.",
          (Answer(200, "`{\"revoked\": token_id}`."),),
          refusals=((404, "no such token of this person's, or sign-in is not configured"),)),
)

NODES = (
    Route("GET", "/builds/{build_id}/log", "nodes", READ, "A node's output of a build",
          "One node's output, fetched from that node with a request signed by the client: never merged with "
          "another's, as up to f nodes may lie. As text, or followed as server-sent events (`follow=1` or "
          "`Accept: text/event-stream`): `node`, then `output`, `reset`, `end` or `limit`, and `error` if the "
          "node's stream broke off.",
          (Answer(200, f"The node's output (the node in the `{NODE_HEADER}` header).", (TEXT, EVENTS)),),
          query=(Field("node", "integer", "The node whose output to show.", required=True),
                 Field("follow", "string", "Follow the output as it comes (`1`).", enum=("1", "true")),
                 Field("times", "string", "When each line began, instead of the lines (`1`).", enum=("1",))),
          refusals=((400, "no `node`, or one not in the network"), NOT_FOUND,
                    (502, "the node could not be reached or refused the client's request"))),
    Route("GET", "/builds/{build_id}/artifacts", "nodes", READ, "A build's artifacts",
          "The build's agreed artifact manifest, from the first node that serves one with the agreed digest.",
          (Answer(200, "`{\"build_id\", \"manifest_digest\", \"artifacts\": {path: digest}, \"from_node\"}`."),),
          refusals=((404, "no such build, or no artifacts"), (409, "the build has no verdict to check them by"),
                    (502, "no node served the agreed manifest"))),
    Route("GET", "/builds/{build_id}/artifacts/{path}", "nodes", READ, "One artifact",
          "One artifact's bytes, from the first node whose bytes have the agreed digest.",
          (Answer(200, f"The file (its digest in the `{DIGEST_HEADER}` header, the node in `{NODE_HEADER}`).",
                  (BYTES,)),),
          refusals=((404, "no such build or artifact"), (409, "the build has no verdict to check it by"),
                    (502, "no node served the agreed bytes"))),
    Route("GET", "/builds/{build_id}/divergence", "nodes", READ, "Why the nodes' artifacts differ",
          "The build's sides (the nodes that signed each artifact digest, the largest first) and, between the two "
          "largest, diffoscope's report of each file that differs. It says which bytes differ, never which side "
          "is right.",
          (Answer(200, "`{\"build_id\", \"sides\": [{digest, nodes}], \"compared\", \"files\": [{path, digests, "
                      "report}], \"more_files\"}`."),),
          refusals=(NOT_FOUND, (409, "the nodes signed one artifact digest: nothing differs"),
                    (502, "no node of a side served the manifest it signed"),
                    (503, "diffoscope is not installed on the client's machine"))),
    Route("GET", "/builds/{build_id}/tests", "nodes", READ, "The build's tests, node by node",
          "The outcomes each node read from the build's JUnit reports (`reports:` in its spec), a row per test and "
          "a column per node; a test whose outcome differs between nodes is marked `differs` and listed first. "
          "Each node's signed word: a node whose digest does not match its outcomes, or whose signature or "
          "statement does not hold, is set aside. A test that passed on some nodes and failed on others is "
          "marked `flaky: \"proven\"`; the table keeps each node's statement and signature, for anyone to check.",
          (Answer(200, "`{\"build_id\", \"nodes\": {node: {digest, summary, problems, statement, signature} or "
                      "{skipped}}, \"tests\": [{test, outcomes: {node: outcome}, differs, flaky?, passed_on?, "
                      "failed_on?}], \"differing\"}`."),),
          refusals=(NOT_FOUND,)),
    Route("GET", "/repositories/{repository}/flaky", "nodes", READ, "A repository's flaky tests",
          "The tests proven flaky in the repository's branch builds (never a pull request's), most often first: "
          "in how many builds, the last, and how many times each node was on the failing side. The client asks "
          "the nodes about each accepted branch build on its own, and whenever a build's table is asked for.",
          (Answer(200, "`{\"repository\", \"tests\": [{test, builds, last_build, failed_on: {node: "
                      "count}}]}`."),),
          refusals=((404, "no such repository in this network"),)),
    Route("GET", "/builds/{build_id}/nodes", "nodes", READ, "Each node's record of a build",
          "Each node's ledger record of the build, fetched from the nodes, and every vote that verifies.",
          (Answer(200, "`{\"build_id\", \"nodes\", \"votes\", \"refused_votes\"}`."),), refusals=(NOT_FOUND,)),
    Route("GET", "/network", "nodes", READ, "The network",
          "Each node's `GET /status`, or why it is unreachable, and the view and network document this client "
          "follows.",
          (Answer(200, "`{\"client\": {\"view\", \"primary\", \"network\"}, \"nodes\": [...]}`."),), everywhere=True),
)

EVIDENCE = (
    Route("GET", "/builds/{build_id}/certificate", "evidence", READ, "A verdict's certificate",
          "The client's signed request and the f+1 signed replies that carry the verdict, in canonical JSON: "
          "`pbft-ci verify` checks it with the network's public keys.",
          (Answer(200, "The certificate."),), refusals=(NOT_FOUND, NO_VERDICT)),
    Route("GET", "/builds/{build_id}/attestation", "evidence", READ, "A verdict's attestation",
          "The verdict's in-toto statement in one DSSE envelope, signed by f+1 agreeing nodes.",
          (Answer(200, "The DSSE envelope."),), refusals=(NOT_FOUND, NO_VERDICT)),
    Route("GET", "/builds/{build_id}/in-toto", "evidence", READ, "A bundle for in-toto-verify",
          "A tar of the owner's layout, f+1 agreeing nodes' links and the statement.",
          (Answer(200, "The tar.", (TAR,)),),
          refusals=(NOT_FOUND, (409, "no certified verdict, or no readable in-toto layout configured"))),
    Route("GET", "/builds/{build_id}/provenance", "evidence", READ, "The artifacts' provenance",
          "SLSA provenance of the build's artifacts in one DSSE envelope, signed by f+1 agreeing nodes.",
          (Answer(200, "The DSSE envelope."),),
          refusals=(NOT_FOUND, (409, "no certified verdict or no artifacts"), (502, "no node served the manifest"))),
)

PAGE = Answer(200, "The dashboard's page: the same bytes for everyone, its data read from the JSON routes.", (HTML,))
ABOUT = (
    Route("GET", "/client", "about", PUBLIC, "Which client answers",
          "The client's name and process id: a name from the configuration and a process id open nothing.",
          (Answer(200, "`{\"name\", \"pid\"}`."),)),
    Route("GET", "/metrics", "about", READ, "Metrics", "The client's metrics, in Prometheus's text format.",
          (Answer(200, "The metrics.", (TEXT,)),), everywhere=True),
    Route("GET", "/openapi.json", "about", PUBLIC, "This document",
          "The client's routes as an OpenAPI 3.1 document. It describes the routes and holds nothing of theirs.",
          (Answer(200, "The document."),)),
    Route("GET", "/", "about", PUBLIC, "To the dashboard", "Sends the browser to the dashboard.",
          (Answer(302, "To /dashboard.", ()),)),
    Route("GET", "/dashboard", "about", PUBLIC, "The dashboard: builds", "The page of the newest builds.", (PAGE,)),
    Route("GET", "/dashboard/network", "about", PUBLIC, "The dashboard: the network",
          "The page of the nodes and the view.", (PAGE,)),
    Route("GET", "/dashboard/builds/{build_id}", "about", PUBLIC, "The dashboard: one build",
          "The page of one build; whether the build exists is for the JSON routes to say.", (PAGE,),
          refusals=((400, "a build id that is not a decimal number"),)),
    Route("GET", "/dashboard/repositories/{repository}/flaky", "about", PUBLIC, "The dashboard: flaky tests",
          "The page of a repository's tests proven flaky; the tests are for the JSON route to say.", (PAGE,)),
    Route("GET", "/dashboard/static/{name}", "about", PUBLIC, "The dashboard's files",
          "The dashboard's scripts, style sheet and icon.",
          (Answer(200, "The file.", (JAVASCRIPT, CSS, SVG)),), refusals=((404, "no such file"),)),
    Route("GET", "/favicon.ico", "about", PUBLIC, "The icon",
          "The dashboard's icon, an SVG: browsers ask for this path whatever a page names.",
          (Answer(200, "The icon.", (SVG,)),)),
    Route("GET", "/badge/{repository}/{branch}.svg", "about", READ, "A branch's badge",
          "The verdict of the branch's newest build of its own that says something of it: passing, failing, "
          "error, disputed or unknown.",
          (Answer(200, "The badge.", (SVG,)),),
          refusals=((400, "a malformed branch name"), (404, "no such repository is configured")),
          also="anyone when the client's configuration says `public_badges: true`"),
)

ROUTES: tuple[Route, ...] = (WEBHOOK, *BUILDS, *VERBS, CHANGES, *SIGN_IN, *NODES, *EVIDENCE, *ABOUT)
