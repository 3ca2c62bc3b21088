// The pbft-ci dashboard: builds, one build, the network.
//
// Everything shown comes from the client's JSON routes. Elements are built
// with createElement and textContent only, never by parsing HTML, so a
// branch name or a build's output is shown as the text it is; a build's ANSI
// colours become spans with classes (see SgrStyle), nothing else of its
// output is interpreted.
//
// With a bearer token configured on the client, every fetch carries
// `Authorization: Bearer <token>`; the user types the token once, and it is
// kept in this tab's sessionStorage (gone when the tab closes, never in a
// URL or a cookie). Live build output is read with fetch() and parsed here,
// because EventSource cannot send an Authorization header; downloads are
// fetched and saved from memory for the same reason.
//
// Where people sign in (clients[].sign_in), the session's cookie goes with every fetch,
// and what changes something also carries the session's CSRF token (GET /session), which
// only this page's own requests can know.
"use strict";

const TOKEN_KEY = "pbft-ci.token";
const POLL_MS = 2000;
const SETTLED_POLL_MS = 10000;
const RETRY_MS = 2000;
const PAGE_SIZE = 50;
// Line times read from a node, at most: its times file is capped (builder/workspace/log.py), its word is not.
const MAX_TIMED_LINES = 1000000;

class Unauthorized extends Error {}

// The signed-in session's CSRF token ("" when nobody is signed in), and whether the client
// offers sign-in at all.
let csrf = "";
let signInOffered = false;

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function authHeaders() {
  const value = token();
  return value ? { Authorization: "Bearer " + value } : {};
}

// One element; `children` are nodes or strings (which become text nodes).
function el(tag, attributes, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value !== null && value !== undefined && value !== false) element.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

function notice(text) {
  document.getElementById("notice").textContent = text || "";
}

function askForToken(refused) {
  const form = document.getElementById("token-form");
  form.hidden = false;
  notice(refused
    ? "The client refused the token: enter the right one."
    : (signInOffered ? "Sign in, or enter this client's bearer token once for this tab."
      : "This client needs its bearer token to show builds: enter it once for this tab."));
  document.getElementById("token-input").focus();
}

async function api(path, options) {
  const method = ((options && options.method) || "GET").toUpperCase();
  const headers = { ...((options && options.headers) || {}), ...authHeaders(),
    ...(csrf && method !== "GET" ? { "X-CSRF-Token": csrf } : {}) };
  const response = await fetch(path, { cache: "no-store", ...(options || {}), headers: headers });
  if (response.status === 401) {
    askForToken(Boolean(token()));
    throw new Unauthorized(path);
  }
  return response;
}

// Why the client refused: the `error` of its JSON answer, or the HTTP status.
async function failureReason(response) {
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") return body.error;
  } catch (error) {
    // Not JSON: the status is all there is.
  }
  return "HTTP " + response.status;
}

async function apiJson(path) {
  const response = await api(path);
  if (!response.ok) throw new Error(await failureReason(response));
  return response.json();
}

// Runs `step` now and again after the milliseconds it returns (POLL_MS if it returns nothing),
// until it returns null; errors are shown, not fatal. The function returned runs `step` again at
// once (the list's filters changed); `step` gets a check saying whether its answer is still the
// newest asked for, so a slow older answer never replaces a newer one.
function poll(step) {
  let timer = null;
  let generation = 0;
  const run = async () => {
    clearTimeout(timer);
    const mine = ++generation;
    const current = () => mine === generation;
    let delay = POLL_MS;
    try {
      const wanted = await step(current);
      delay = wanted === undefined ? POLL_MS : wanted;
      if (current()) notice("");
    } catch (error) {
      if (error instanceof Unauthorized) return; // waits for the token form
      if (current()) notice("Could not update: " + error.message);
    }
    if (current() && delay !== null) timer = setTimeout(run, delay);
  };
  run();
  return run;
}

function setupToken() {
  const form = document.getElementById("token-form");
  const forget = document.getElementById("token-forget");
  forget.hidden = !token();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token-input");
    const value = input.value.trim();
    input.value = "";
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    location.reload();
  });
  forget.addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
}

// Who is signed in, if the client signs people in: their name and a sign-out button, or a
// link to sign in that comes back to this page.
async function setupSession() {
  let response;
  try {
    response = await fetch("/session", { cache: "no-store" });
  } catch (error) {
    return; // the page says why once it reads the builds
  }
  if (response.status === 401) {
    signInOffered = true;
    const link = document.getElementById("sign-in");
    link.href = "/login?next=" + encodeURIComponent(location.pathname);
    link.hidden = false;
  } else if (response.ok) {
    const session = await response.json();
    csrf = session.csrf;
    const who = document.getElementById("signed-in");
    who.textContent = "Signed in as " + session.user;
    who.hidden = false;
    const out = document.getElementById("sign-out");
    out.hidden = false;
    out.addEventListener("click", async () => {
      await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": csrf } });
      location.reload();
    });
  }
}

// A link that saves what `href` answers as the file `name`. A plain link cannot carry the
// Authorization header: with a token the answer is fetched here and saved from memory.
function downloadLink(href, name, text, attributes) {
  const link = el("a", { ...(attributes || {}), href: href, download: name }, text);
  link.addEventListener("click", async (event) => {
    if (!token()) return;
    event.preventDefault();
    try {
      const response = await api(href);
      if (!response.ok) throw new Error(await failureReason(response));
      saveBlob(await response.blob(), name);
    } catch (error) {
      if (!(error instanceof Unauthorized)) notice("Could not download " + text + ": " + error.message);
    }
  });
  return link;
}

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const save = el("a", { href: url, download: name });
  document.body.append(save);
  save.click();
  save.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// --- formatting --------------------------------------------------------------

function short(commit) {
  return typeof commit === "string" ? commit.slice(0, 12) : "";
}

// "failure (exit 1)": how a build ended, as one node or the verdict says.
function statusText(result) {
  const code = result.exit_code;
  return code === null || code === undefined ? String(result.status) : result.status + " (exit " + code + ")";
}

function describeResult(result) {
  if (!result) return "—";
  let text = statusText(result);
  if (result.commit) text += " @ " + short(result.commit);
  if (Array.isArray(result.combinations)) text += ", " + result.combinations.length + " builds";
  if (typeof result.artifacts === "string") text += ", artifacts " + shortDigest(result.artifacts);
  return text;
}

// "sha256:" and the first 12 hex digits: enough to tell nodes' digests apart at a glance.
function shortDigest(digest) {
  return typeof digest === "string" ? digest.slice(0, 19) : "none";
}

function sameResult(a, b) {
  return Boolean(a && b) && a.status === b.status && a.exit_code === b.exit_code && a.commit === b.commit &&
    (a.artifacts || null) === (b.artifacts || null);
}

function seconds(ms) {
  return (ms / 1000).toFixed(1) + " s";
}

function bytesText(bytes) {
  if (bytes < 1024) return bytes + " B";
  if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + " KiB";
  return (bytes / (1024 * 1024)).toFixed(1) + " MiB";
}

function elapsed(build) {
  if (typeof build.elapsed_ms === "number") return seconds(build.elapsed_ms);
  const started = Date.parse(build.submitted_at);
  return Number.isNaN(started) ? "" : "running " + seconds(Math.max(0, Date.now() - started));
}

function firstLine(text) {
  return typeof text === "string" ? text.split("\n", 1)[0] : "";
}

// The forge's page of the commit: the client lets only http(s) links through, and so does the page.
function safeUrl(url) {
  return typeof url === "string" && /^https?:\/\//i.test(url) ? url : null;
}

// "example #42" once the client numbers builds per repository; the build id until then.
function buildName(build) {
  return typeof build.number === "number" ? build.repository + " #" + build.number : "build " + build.build_id;
}

function buildLink(buildId, text) {
  return el("a", { href: "/dashboard/builds/" + encodeURIComponent(buildId) }, text);
}

// A pull request's build shows its number next to the branch it targets.
function pullRequest(build) {
  return build.pull_request ? el("span", { class: "muted", "data-field": "pull_request" }, " ← #" + build.pull_request)
    : null;
}

// A matrix combination's build shows its combination next to its branch.
function combination(build) {
  return build.combination ? el("span", { class: "muted", "data-field": "combination" }, " [" + build.combination + "]")
    : null;
}

// --- verdicts ------------------------------------------------------------------

// The colour of each verdict: it says how the build went, not how far the record got
// (an accepted failure is red).
const VERDICT_TONES = {
  success: "good", failure: "bad", error: "bad", timeout: "bad", disputed: "bad", divergent: "bad",
  cancelled: "neutral", skipped: "neutral", matrix: "neutral", pending: "waiting",
};
const VERDICTS = ["success", "failure", "error", "timeout", "cancelled", "skipped", "disputed", "divergent", "pending"];

// The agreed result's status once accepted; otherwise the record's state (pending, timeout, disputed,
// divergent). The client says it as `verdict`; a client from before that is read the same way here.
function verdictOf(build) {
  if (typeof build.verdict === "string") return build.verdict;
  return build.state === "accepted" && build.result ? build.result.status : build.state;
}

function toneClass(verdict) {
  return "tone-" + (VERDICT_TONES[verdict] || "neutral");
}

function verdictText(build) {
  if (build.state === "accepted" && build.result) return statusText(build.result);
  if (build.state === "timeout") return "timeout: no quorum";
  return build.progress ? build.state + " (" + build.progress + ")" : build.state;
}

function dissentLine(entry) {
  if (entry.kind === "silent") return "node " + entry.node + " did not answer";
  return "node " + entry.node + " said " + (entry.said ? statusText(entry.said) : "something else");
}

// A mark on a build that some node disagreed with or never answered; its title says which and how.
function dissentMark(build) {
  if (!Array.isArray(build.dissent) || !build.dissent.length) return null;
  const said = build.dissent.map(dissentLine).join("; ") + (build.dissent_final === false ? " (so far)" : "");
  return el("span", { class: "dissent", "data-field": "dissent", title: said, "aria-label": said },
    "⚠ " + build.dissent.length);
}

// The verdict in its colour, the dissent mark, and for a build that did not succeed the reason.
function verdictCell(build) {
  const verdict = verdictOf(build);
  const reason = verdict !== "success" && build.result && build.result.reason ? build.result.reason : null;
  return el("td", { class: "verdict " + toneClass(verdict), "data-field": "verdict", "data-verdict": verdict },
    el("span", { class: "verdict-word" }, verdictText(build)), " ", dissentMark(build),
    reason ? el("div", { class: "reason", title: reason }, reason) : null);
}

// A matrix's builds, one line each: the combination, linked, and its verdict so far; then the
// combinations without a build yet (the spec's max_parallel) or for good (fail_fast stopped it).
function matrixBuilds(record) {
  if (!Array.isArray(record.matrix_builds) || !record.matrix_builds.length) return null;
  const started = new Set(record.matrix_builds.map((build) => build.combination));
  const combinations = (record.result && Array.isArray(record.result.combinations)) ? record.result.combinations : [];
  const waiting = combinations.map((pairs) => pairs.map(([axis, value]) => axis + "=" + value).join(","))
    .filter((label) => !started.has(label));
  const stopped = record.result && record.result.fail_fast && record.matrix_builds.some((build) =>
    build.state !== "pending" && !["success", "skipped"].includes(build.status));
  return el("span", {}, ...record.matrix_builds.map((build) => el("div", { "data-build-id": build.build_id },
    buildLink(build.build_id, build.combination), " ",
    el("span", { class: toneClass(build.status || build.state) }, build.status || build.state))),
  ...waiting.map((label) => el("div", { class: "muted", "data-combination": label },
    label + (stopped ? " not started: fail_fast" : " waiting: max_parallel"))));
}

// --- commits -----------------------------------------------------------------------

function commitOf(build) {
  return (build.result && build.result.commit) || build.commit_requested || null;
}

// The commit's short sha, linked to the forge's page of it when the client knows one.
function commitRef(build) {
  const sha = commitOf(build);
  if (!sha) return el("span", { class: "muted", "data-field": "commit" }, "branch head");
  const code = el("code", { title: sha }, short(sha));
  const url = safeUrl(build.commit_url);
  return url ? el("a", { href: url, rel: "noopener noreferrer", class: "commit-link", "data-field": "commit" }, code)
    : el("span", { "data-field": "commit" }, code);
}

function commitCell(build) {
  const message = firstLine(build.commit_message);
  return el("td", { class: "commit" }, commitRef(build), " ",
    message ? el("span", { class: "message", "data-field": "message", title: build.commit_message }, message) : null,
    build.author ? el("div", { class: "muted author", "data-field": "author" }, build.author) : null);
}

// --- start --------------------------------------------------------------------------

// Runs once the page's scripts have all run: deferred scripts run in order, before DOMContentLoaded,
// so the pages' functions of builds.js, build.js, output.js and network.js are there by then.
document.addEventListener("DOMContentLoaded", async () => {
  setupToken();
  await setupSession();
  const main = document.getElementById("main");
  main.replaceChildren();
  const path = location.pathname.replace(/\/+$/, "");
  const build = path.match(/^\/dashboard\/builds\/([0-9]+)$/);
  if (build) {
    document.title = "pbft-ci build " + build[1];
    showBuild(main, build[1]);
  } else if (path.match(/^\/dashboard\/repositories\/[^/]+\/flaky$/)) {
    let repository = path.split("/")[3];
    try { repository = decodeURIComponent(repository); } catch (error) { /* shown as written */ }
    document.title = "pbft-ci flaky tests of " + repository;
    showFlaky(main, repository);
  } else if (path === "/dashboard/network") {
    document.title = "pbft-ci network";
    showNetwork(main);
  } else {
    document.title = "pbft-ci builds";
    showBuilds(main);
  }
});
